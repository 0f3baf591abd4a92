//! The `polis` command line against a polisd of the test's own: `target/release/polis -H <its gRPC socket>`
//! (Polisd::polis_command). Each command of the CLI is run as a user would run it, and checked by what it prints,
//! its exit code, and what polisd then holds (through the CLI itself or the docker CLI). The CLI follows the docker
//! CLI where its issue is silent: docker's column names, `run -d` printing the ID, `rm` the names, 125 when polis
//! fails before the container runs, 126/127 for a command that cannot run. `run -it` and `exec -it` run on a real
//! pty (util-linux `script`, as tty.rs does for docker). The client library's example (`examples/run.rs`) runs here
//! too, against the same kind of polisd.

use super::{assert_interactive_shell, assert_nothing_left, unix_now};
use polis_integration::pki;
use polis_integration::polisd::{DOCKER_TIMEOUT, IMAGE, Polisd};
use polis_integration::{Output, eventually, workspace_root};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// `polis ARGS`, which must succeed.
#[track_caller]
fn polis_ok(d: &Polisd, args: &[&str]) -> Output {
    let out = d.polis(args);
    out.ok();
    out
}

/// Every line of stdout as JSON (the `--format json` of lists).
#[track_caller]
fn json_lines(out: &Output) -> Vec<Value> {
    out.ok();
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{out}")))
        .collect()
}

/// stdout as one JSON value (inspect's array, version's object).
#[track_caller]
fn json(out: &Output) -> Value {
    out.ok();
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}"))
}

/// The command failed with `code`, and its error is one line on stderr, "Error: ...", that mentions `needle`.
#[track_caller]
fn fails_with_one_line(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.code, Some(code), "{out}");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let last = errors.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("Error: ") && last.to_lowercase().contains(&needle.to_lowercase()),
        "the last line of stderr should be the error, naming {needle:?}: {out}"
    );
    assert_eq!(
        errors.iter().filter(|l| l.starts_with("Error: ")).count(),
        1,
        "one error line: {out}"
    );
}

/// Non-empty stdout lines.
fn lines(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

/// A command as one shell line, each word quoted.
fn shell_line(cmd: &Command) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(cmd.get_program().to_str().unwrap());
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(a.to_str().unwrap()));
    }
    line
}

/// `cmd` on a pty (`script -qec`), with `typed` as the keystrokes; its output and exit code.
fn on_a_pty(d: &Polisd, cmd: Command, typed: &[u8]) -> Output {
    shell_on_a_pty(d, &shell_line(&cmd), typed)
}

/// A shell line on a pty (`script -qec`), with `typed` as the keystrokes; its output and exit code.
fn shell_on_a_pty(d: &Polisd, line: &str, typed: &[u8]) -> Output {
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", line, "/dev/null"]);
    d.spawn_with_input(script, Some(typed))
        .wait(Duration::from_secs(60))
}

/// `polis ARGS` on a pty between two `stty -g`: its output, and whether the terminal's settings after it are
/// those before it (raw mode undone).
fn restores_the_terminal(d: &Polisd, args: &[&str], typed: &[u8]) -> (Output, bool) {
    let line = format!(
        "stty -g; {}; echo \"polis exited $?\"; stty -g",
        shell_line(&d.polis_command(args))
    );
    let out = shell_on_a_pty(d, &line, typed);
    let settings: Vec<&str> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.split(':').count() > 10 && !l.contains(' '))
        .collect();
    let same = settings.len() == 2 && settings[0] == settings[1];
    (out, same)
}

/// `run` end to end: the image pulled when missing (plain progress off a terminal), output split between stdout and
/// stderr, the container's exit code, stdin with `-i`, `-e` and `--env-file`, `--memory`/`--cpus`/`--restart`
/// reaching the container's config, `--rm` leaving nothing; the exit codes docker gives: 127 for a command not
/// found, 126 for one that cannot be executed, 125 when polis fails before the container runs (a missing image, a
/// bad flag), each with one error line. Then `exec` (its output, exit code and stdin) and `logs` (`--tail`, `-f`).
#[test]
fn cli_run_exec_and_logs() {
    let d = Polisd::start("pd-cli-run");

    let out = polis_ok(&d, &["run", "--rm", IMAGE, "echo", "hello from polis run"]);
    assert_eq!(out.stdout, "hello from polis run\n", "{out}");
    assert!(
        out.stderr
            .contains(&format!("Unable to find image '{IMAGE}' locally")),
        "run pulls a missing image: {out}"
    );
    assert!(
        out.stderr.lines().any(|l| l.starts_with("Pulling from")) && !out.stderr.contains('\x1b'),
        "plain progress lines off a terminal: {out}"
    );

    let out = d.polis(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.code, Some(3), "the container's exit code: {out}");
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n"),
        "{out}"
    );

    let out = d.polis_with_input(
        &["run", "-i", "--rm", IMAGE, "sh", "-c", "cat; echo done"],
        Some(b"typed line\n"),
    );
    out.ok();
    assert_eq!(
        out.stdout, "typed line\ndone\n",
        "stdin forwarded, then closed: {out}"
    );

    let env_file = d.scratch().join("cli.env");
    std::fs::write(
        &env_file,
        "# a comment\n\nFROM_FILE=file value\nOVERRIDDEN=file\n",
    )
    .unwrap();
    let out = polis_ok(
        &d,
        &[
            "run",
            "--rm",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "OVERRIDDEN=flag",
            "-e",
            "PLAIN=1",
            IMAGE,
            "sh",
            "-c",
            "echo \"$FROM_FILE|$OVERRIDDEN|$PLAIN\"",
        ],
    );
    assert_eq!(out.stdout, "file value|flag|1\n", "{out}");

    let out = polis_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "limited",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--restart",
            "on-failure:3",
            IMAGE,
            "true",
        ],
    );
    let id = out.stdout.trim();
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "run -d prints the ID: {out}"
    );
    assert_eq!(
        d.inspect(
            "limited",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "67108864 500000000 on-failure:3"
    );
    polis_ok(&d, &["rm", "-f", "limited"]);

    // Exit codes when the container cannot run its command, or never gets made.
    let out = d.polis(&["run", "--rm", IMAGE, "no-such-command"]);
    fails_with_one_line(&out, 127, "no-such-command");
    let out = d.polis(&["run", "--rm", IMAGE, "/etc"]);
    fails_with_one_line(&out, 126, "/etc");
    let out = d.polis(&["run", "--rm", "127.0.0.1:5000/nosuch:latest", "true"]);
    fails_with_one_line(&out, 125, "nosuch");
    let out = d.polis(&["run", "--rm", "--memory", "lots", IMAGE, "true"]);
    fails_with_one_line(&out, 125, "lots");
    let out = d.polis(&["run", "--rm", "-p", "x:80", IMAGE, "true"]);
    fails_with_one_line(&out, 125, "x:80");
    let out = d.polis(&["run", "--no-such-flag", IMAGE]);
    fails_with_one_line(&out, 125, "--no-such-flag");
    let out = polis_ok(&d, &["ps", "-a", "-q"]);
    assert_eq!(
        out.stdout, "",
        "--rm leaves nothing, also when the start failed: {out}"
    );

    // exec and logs in a running container.
    let out = polis_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "box",
            IMAGE,
            "sh",
            "-c",
            "echo first; echo second >&2; exec sleep 300",
        ],
    );
    let id = out.stdout.trim().to_string();
    eventually("box logs both lines", Duration::from_secs(20), || {
        d.polis(&["logs", "box"]).stderr.contains("second")
    });
    // (The two streams are read apart: their order in the log is not the order written.)
    let out = polis_ok(&d, &["logs", &id[..12]]);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("first\n", "second\n"),
        "{out}"
    );
    let out = d.polis(&["exec", "box", "sh", "-c", "echo in exec; exit 4"]);
    assert_eq!(out.code, Some(4), "exec's exit code: {out}");
    assert_eq!(out.stdout, "in exec\n", "{out}");
    let out = d.polis_with_input(&["exec", "-i", "box", "cat"], Some(b"through exec\n"));
    out.ok();
    assert_eq!(out.stdout, "through exec\n", "{out}");
    let out = d.polis(&["exec", "box", "no-such-command"]);
    assert_eq!(out.code, Some(127), "{out}");
    let out = d.polis(&["exec", "no-such-box", "true"]);
    fails_with_one_line(&out, 1, "no-such-box");

    // Without a terminal, SIGINT and SIGTERM go to the container.
    let out_file = d.scratch().join("signals.out");
    let mut child = d
        .polis_command(&[
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got INT' INT; trap 'echo got TERM; exit 9' TERM; echo ready; \
             while :; do sleep 0.1; done",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let shown = || std::fs::read_to_string(&out_file).unwrap_or_default();
    let pid = child.id() as i32;
    eventually(
        "the trapping shell is ready",
        Duration::from_secs(30),
        || shown().contains("ready"),
    );
    // SAFETY: signalling the polis CLI this test started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    eventually(
        "SIGINT reaches the container",
        Duration::from_secs(20),
        || shown().contains("got INT"),
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = polis_integration::poll_until(DOCKER_TIMEOUT, || child.try_wait().unwrap());
    let Some(status) = status else {
        let _ = child.kill();
        panic!("polis run did not end after SIGTERM: {}", shown());
    };
    assert_eq!(status.code(), Some(9), "the trap's exit code: {}", shown());
    assert!(shown().contains("got TERM"), "{}", shown());

    // logs -f follows until the container stops.
    polis_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "talker",
            IMAGE,
            "sh",
            "-c",
            "echo one; sleep 1; echo two",
        ],
    );
    let out = polis_ok(&d, &["logs", "-f", "talker"]);
    assert_eq!(out.stdout, "one\ntwo\n", "{out}");
    let out = polis_ok(&d, &["logs", "--tail", "1", "talker"]);
    assert_eq!(out.stdout, "two\n", "{out}");
    let out = d.polis(&["logs", "no-such-box"]);
    fails_with_one_line(&out, 1, "no-such-box");

    polis_ok(&d, &["rm", "-f", "box", "talker"]);
    assert_nothing_left(&d);
}

/// Containers and images managed one command at a time: `pull` (plain lines, `-q`), `images` (docker's columns,
/// `-q`, JSON), `ps` (docker's columns, `-a`, `-q`, `--filter`, JSON with enum names), `inspect` (a JSON array, for
/// a container and an image), `stats --no-stream` (table and JSON), `stop`, `start`, `restart`, `kill` and `rm`
/// (printing the names), `events --since/--until`, `info`, `version`, `rmi`; a missing container is one error
/// line and exit code 1.
#[test]
fn cli_manages_containers_and_images() {
    let d = Polisd::start("pd-cli-manage");
    let t0 = unix_now();

    let out = polis_ok(&d, &["pull", IMAGE]);
    let shown = lines(&out);
    assert!(shown.iter().any(|l| l.starts_with("Pulling from")), "{out}");
    assert!(
        shown.iter().any(|l| l.ends_with(": Pull complete")),
        "one line per layer status: {out}"
    );
    assert!(
        !out.stdout.contains('\x1b'),
        "no bars off a terminal: {out}"
    );
    assert_eq!(shown.last().map(String::as_str), Some(IMAGE), "{out}");
    let out = polis_ok(&d, &["pull", "-q", IMAGE]);
    assert_eq!(out.stdout, format!("{IMAGE}\n"), "{out}");

    let out = polis_ok(&d, &["images"]);
    let rows = lines(&out);
    for column in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(rows[0].contains(column), "{column}: {out}");
    }
    let row: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(row[..2], ["127.0.0.1:5000/busybox", "latest"], "{out}");
    let images = json_lines(&polis_ok(&d, &["images", "--format", "json"]));
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["name"], IMAGE);
    let image_id = images[0]["id"].as_str().unwrap().to_string();
    let out = polis_ok(&d, &["images", "-q"]);
    assert_eq!(
        out.stdout.trim(),
        &image_id[7..19],
        "12 hex digits of the ID: {out}"
    );

    let out = polis_ok(
        &d,
        &[
            "run", "-d", "--name", "web", "--label", "role=web", IMAGE, "sleep", "300",
        ],
    );
    let id = out.stdout.trim().to_string();
    assert_eq!(
        d.polis(&["run", "--name", "done", IMAGE, "sh", "-c", "exit 2"])
            .code,
        Some(2)
    );
    let out = polis_ok(&d, &["ps"]);
    let rows = lines(&out);
    for column in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(rows[0].contains(column), "{column}: {out}");
    }
    assert_eq!(rows.len(), 2, "only the running container: {out}");
    assert!(
        rows[1].starts_with(&id[..12]) && rows[1].ends_with("web"),
        "{out}"
    );
    assert!(
        rows[1].contains("\"sleep 300\"") && rows[1].contains("Up "),
        "{out}"
    );
    let out = polis_ok(&d, &["ps", "-a"]);
    assert!(out.stdout.contains("Exited (2) "), "{out}");
    let listed = json_lines(&polis_ok(&d, &["ps", "--format", "json"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["name"], "web");
    assert_eq!(listed[0]["state"]["status"], "CONTAINER_STATUS_RUNNING");
    let out = polis_ok(
        &d,
        &["ps", "-a", "-q", "--no-trunc", "--filter", "status=exited"],
    );
    assert_eq!(lines(&out), [d.inspect("done", "{{.Id}}")], "{out}");
    let out = polis_ok(&d, &["ps", "-q", "--filter", "label=role=web"]);
    assert_eq!(out.stdout.trim(), &id[..12], "{out}");
    let out = d.polis(&["ps", "--filter", "colour=red"]);
    fails_with_one_line(&out, 1, "colour");

    let inspected = json(&polis_ok(&d, &["inspect", "web"]));
    assert_eq!(inspected[0]["id"], id.as_str(), "{inspected}");
    assert_eq!(inspected[0]["state"]["status"], "CONTAINER_STATUS_RUNNING");
    assert_eq!(inspected[0]["labels"]["role"], "web");
    let inspected = json(&polis_ok(&d, &["inspect", "--format", "json", IMAGE]));
    assert_eq!(
        inspected[0]["image"]["id"],
        image_id.as_str(),
        "{inspected}"
    );
    let out = d.polis(&["inspect", "no-such-thing"]);
    fails_with_one_line(&out, 1, "no-such-thing");

    let out = polis_ok(&d, &["stats", "--no-stream", "web"]);
    let rows = lines(&out);
    for column in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(rows[0].contains(column), "{column}: {out}");
    }
    assert!(
        rows[1].starts_with(&id[..12]) && rows[1].contains(" web "),
        "{out}"
    );
    let samples = json_lines(&polis_ok(
        &d,
        &["stats", "--no-stream", "--format", "json", "web"],
    ));
    assert_eq!(samples[0]["name"], "web", "{samples:?}");
    assert!(samples[0]["pids"].as_u64().unwrap() >= 1, "{samples:?}");

    assert_eq!(polis_ok(&d, &["stop", "-t", "1", "web"]).stdout, "web\n");
    let status = || d.inspect("web", "{{.State.Status}}");
    assert_eq!(status(), "exited");
    assert_eq!(polis_ok(&d, &["start", "web"]).stdout, "web\n");
    assert_eq!(status(), "running");
    assert_eq!(polis_ok(&d, &["restart", "-t", "1", "web"]).stdout, "web\n");
    assert_eq!(status(), "running");
    assert_eq!(d.inspect("web", "{{.Id}}"), id);
    assert_eq!(polis_ok(&d, &["kill", "web"]).stdout, "web\n");
    eventually("web is killed", Duration::from_secs(20), || {
        status() == "exited"
    });
    assert_eq!(d.inspect("web", "{{.State.ExitCode}}"), "137");
    let out = d.polis(&["kill", "web"]);
    fails_with_one_line(&out, 1, "not running");

    let out = d.polis(&["rm", "web", "no-such-box", "done"]);
    assert_eq!(out.code, Some(1), "one of three failed: {out}");
    assert_eq!(
        out.stdout, "web\ndone\n",
        "rm prints the names it removed: {out}"
    );
    fails_with_one_line(&out, 1, "no-such-box");

    let until = unix_now() + 1;
    let since = t0.to_string();
    let until = until.to_string();
    let out = polis_ok(&d, &["events", "--since", &since, "--until", &until]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(" container start ") && l.contains(&id)),
        "{out}"
    );
    let events = json_lines(&polis_ok(
        &d,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--format",
            "json",
            "--filter",
            "type=container",
            "--filter",
            "event=die",
        ],
    ));
    assert!(!events.is_empty(), "no die events");
    assert!(
        events
            .iter()
            .all(|e| e["kind"] == "OBJECT_KIND_CONTAINER" && e["action"] == "die"),
        "{events:?}"
    );

    let out = polis_ok(&d, &["info"]);
    assert!(
        out.stdout.contains("Containers: 0\n") && out.stdout.contains("Images: 1\n"),
        "{out}"
    );
    let info = json(&polis_ok(&d, &["info", "--format", "json"]));
    assert_eq!(info["root_dir"], d.root().display().to_string(), "{info}");
    let out = polis_ok(&d, &["version"]);
    assert!(
        out.stdout.starts_with("Client:\n") && out.stdout.contains("\nServer:\n"),
        "{out}"
    );
    let version = json(&polis_ok(&d, &["version", "--format", "json"]));
    assert_eq!(
        version["client"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{version}"
    );
    assert_eq!(version["server"]["api_version"], "v1", "{version}");

    let out = polis_ok(&d, &["rmi", IMAGE]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l == format!("Untagged: {IMAGE}")),
        "{out}"
    );
    assert_eq!(polis_ok(&d, &["images", "-q"]).stdout, "");
    let out = d.polis(&["rmi", IMAGE]);
    fails_with_one_line(&out, 1, "busybox");
    assert_nothing_left(&d);
}

/// Networks, volumes and ports: `network create|ls|inspect|connect|disconnect|rm` with two containers reaching each
/// other by name on a user network; `volume create|ls|inspect|rm|prune` with a volume's data outliving the
/// container that wrote it (and a read-only mount refusing writes); a published port answering over TCP from
/// polisd's network namespace.
#[test]
fn cli_networks_volumes_and_ports() {
    let d = Polisd::start("pd-cli-net");
    polis_ok(&d, &["pull", "-q", IMAGE]);

    let out = polis_ok(&d, &["network", "create", "--label", "tier=front", "front"]);
    let net_id = out.stdout.trim().to_string();
    assert!(
        !net_id.is_empty() && !net_id.contains(' '),
        "network create prints the ID: {out}"
    );
    let out = polis_ok(&d, &["network", "ls"]);
    let rows = lines(&out);
    for column in ["NETWORK ID", "NAME", "DRIVER", "SCOPE"] {
        assert!(rows[0].contains(column), "{column}: {out}");
    }
    assert!(
        rows.iter()
            .any(|r| r.split_whitespace().collect::<Vec<_>>()[1..] == ["front", "bridge", "local"]),
        "{out}"
    );
    let networks = json_lines(&polis_ok(
        &d,
        &[
            "network",
            "ls",
            "--format",
            "json",
            "--filter",
            "name=front",
        ],
    ));
    assert_eq!(networks.len(), 1, "{networks:?}");
    assert_eq!(networks[0]["id"], net_id.as_str());
    assert_eq!(networks[0]["labels"]["tier"], "front");

    polis_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "front",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    polis_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "cli",
            "--network",
            "front",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    wait_until_pings(&d, "cli", "srv");
    polis_ok(&d, &["run", "-d", "--name", "lone", IMAGE, "sleep", "300"]);
    polis_ok(
        &d,
        &["network", "connect", "--alias", "lonely", "front", "lone"],
    );
    let inspected = json(&polis_ok(&d, &["network", "inspect", "front"]));
    let endpoints: Vec<&str> = inspected[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["container_name"].as_str().unwrap())
        .collect();
    for name in ["srv", "cli", "lone"] {
        assert!(endpoints.contains(&name), "{name} in {inspected}");
    }
    wait_until_pings(&d, "cli", "lonely");
    polis_ok(&d, &["network", "disconnect", "front", "lone"]);
    let inspected = json(&polis_ok(
        &d,
        &["network", "inspect", "--format", "json", "front"],
    ));
    assert!(!inspected.to_string().contains("\"lone\""), "{inspected}");
    let out = d.polis(&["network", "rm", "front"]);
    fails_with_one_line(&out, 1, "front");
    polis_ok(&d, &["rm", "-f", "srv", "cli", "lone"]);
    assert_eq!(polis_ok(&d, &["network", "rm", "front"]).stdout, "front\n");
    let out = d.polis(&["network", "inspect", "front"]);
    fails_with_one_line(&out, 1, "front");

    assert_eq!(polis_ok(&d, &["volume", "create", "data"]).stdout, "data\n");
    polis_ok(
        &d,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data",
            IMAGE,
            "sh",
            "-c",
            "echo kept > /data/file",
        ],
    );
    let out = polis_ok(
        &d,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            IMAGE,
            "cat",
            "/data/file",
        ],
    );
    assert_eq!(
        out.stdout, "kept\n",
        "the volume's data outlives its container: {out}"
    );
    let out = d.polis(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        IMAGE,
        "sh",
        "-c",
        "echo x > /data/file",
    ]);
    assert_ne!(out.code, Some(0), "a read-only mount refuses writes: {out}");
    let out = polis_ok(&d, &["volume", "ls"]);
    let rows = lines(&out);
    assert!(
        rows[0].contains("DRIVER") && rows[0].contains("VOLUME NAME"),
        "{out}"
    );
    assert!(
        rows[1..]
            .iter()
            .any(|r| r.split_whitespace().collect::<Vec<_>>() == ["local", "data"]),
        "{out}"
    );
    let volumes = json_lines(&polis_ok(&d, &["volume", "ls", "--format", "json"]));
    assert!(volumes.iter().any(|v| v["name"] == "data"), "{volumes:?}");
    let inspected = json(&polis_ok(&d, &["volume", "inspect", "data"]));
    let mountpoint = inspected[0]["mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{mountpoint}/file")).unwrap(),
        "kept\n"
    );
    // An anonymous volume left by a container, then pruned.
    polis_ok(
        &d,
        &["run", "--name", "anon", "-v", "/scratch", IMAGE, "true"],
    );
    polis_ok(&d, &["rm", "anon"]);
    let out = polis_ok(&d, &["volume", "prune", "-f"]);
    assert!(out.stdout.contains("Total reclaimed space:"), "{out}");
    let left = json_lines(&polis_ok(&d, &["volume", "ls", "--format", "json"]));
    assert_eq!(left.len(), 1, "only the named volume stays: {left:?}");
    assert_eq!(polis_ok(&d, &["volume", "rm", "data"]).stdout, "data\n");
    let out = d.polis(&["volume", "inspect", "data"]);
    fails_with_one_line(&out, 1, "data");

    polis_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "18081:80",
            IMAGE,
            "sh",
            "-c",
            "while :; do echo served | nc -l -p 80; done",
        ],
    );
    let reply = eventually_reply(&d, 18081);
    assert_eq!(reply, "served");
    polis_ok(&d, &["rm", "-f", "web"]);
    assert_nothing_left(&d);
}

/// Waits until `polis exec FROM busybox ping -c1 -W2 TARGET` gets an answer (the image links busybox's applets only
/// in part); a failure shows the last attempt.
#[track_caller]
fn wait_until_pings(d: &Polisd, from: &str, target: &str) {
    let mut last = None;
    let pinged = polis_integration::poll_until(Duration::from_secs(20), || {
        let out = d.polis(&["exec", from, "busybox", "ping", "-c1", "-W2", target]);
        let ok = out.success();
        last = Some(out);
        ok.then_some(())
    });
    assert!(
        pinged.is_some(),
        "{from} never pinged {target}: {}",
        last.unwrap()
    );
}

/// What a TCP client in polisd's network namespace (its "host") reads from `port` on a non-loopback address of it.
fn eventually_reply(d: &Polisd, port: u16) -> String {
    let read = || {
        let out = d
            .netns()
            .command("sh")
            .args([
                "-c",
                &format!(
                    "addr=$(ip -4 -o addr show scope global | awk '{{print $4}}' | cut -d/ -f1 | head -1); \
                     busybox nc -w 5 \"$addr\" {port} </dev/null"
                ),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut last = String::new();
    eventually(
        &format!("port {port} answers"),
        Duration::from_secs(20),
        || {
            last = read();
            !last.is_empty()
        },
    );
    last
}

/// On a terminal: `pull` draws progress bars in place, `run -it --rm` and `exec -it` give the process a pty that
/// echoes what is typed, run the typed commands and exit with the shell's code (the local terminal is restored:
/// `script` would hang or garble otherwise), and `stats` draws a live table.
#[test]
fn cli_on_a_terminal() {
    let d = Polisd::start("pd-cli-tty");
    let out = on_a_pty(&d, d.polis_command(&["pull", IMAGE]), b"");
    out.ok();
    assert!(
        out.stdout.contains("\x1b[") && out.stdout.contains("Pull complete"),
        "bars redrawn in place: {out}"
    );

    let typed = b"tty; echo $((6*7)); exit 5\n";
    let out = on_a_pty(
        &d,
        d.polis_command(&["run", "-it", "--rm", IMAGE, "sh"]),
        typed,
    );
    assert_interactive_shell(&out, 5);

    // The container's terminal has the size of ours.
    let line = format!(
        "stty cols 100 rows 30; {}",
        shell_line(&d.polis_command(&["run", "-it", "--rm", IMAGE, "sh"]))
    );
    let out = shell_on_a_pty(&d, &line, b"stty size; exit 0\n");
    out.ok();
    assert!(
        out.stdout.lines().any(|l| l.trim() == "30 100"),
        "the terminal's size: {out}"
    );

    // SIGWINCH: when our terminal's size changes, the container's follows (its shell's WINCH trap prints it).
    let out_file = d.scratch().join("winch.out");
    let polis = shell_line(&d.polis_command(&[
        "run",
        "-t",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.1; done",
    ]));
    let out = out_file.display();
    let line = format!(
        "stty cols 100 rows 30; {polis} </dev/tty >{out} 2>&1 & pid=$!; \
         while kill -0 $pid 2>/dev/null && ! grep -q ready {out}; do sleep 0.1; done; \
         stty cols 120 rows 40; wait $pid; echo \"polis exited $?\"; cat {out}"
    );
    let out = shell_on_a_pty(&d, &line, b"");
    out.ok();
    assert!(
        out.stdout.contains("polis exited 0") && out.stdout.lines().any(|l| l.trim() == "40 120"),
        "the new size reaches the container: {out}"
    );

    // Raw mode is undone on each way out: the shell's exit, and a start that fails after raw mode was set.
    let (out, same) = restores_the_terminal(&d, &["run", "-it", "--rm", IMAGE, "sh"], b"exit 6\n");
    assert!(same && out.stdout.contains("polis exited 6"), "{out}");
    let (out, same) =
        restores_the_terminal(&d, &["run", "-it", "--rm", IMAGE, "no-such-command"], b"");
    assert!(same && out.stdout.contains("polis exited 127"), "{out}");

    polis_ok(
        &d,
        &["run", "-d", "--name", "ttyexec", IMAGE, "sleep", "300"],
    );
    let typed = b"tty; echo $((6*7)); exit 3\n";
    let out = on_a_pty(
        &d,
        d.polis_command(&["exec", "-it", "ttyexec", "sh"]),
        typed,
    );
    assert_interactive_shell(&out, 3);

    // A live table until interrupted: redrawn (clear screen, then the table) with the container's row.
    let mut stats = d.spawn_with_input(
        {
            let cmd = d.polis_command(&["stats", "ttyexec"]);
            let mut line = String::new();
            for part in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
                line.push_str(&format!("'{}' ", part.to_str().unwrap()));
            }
            let mut script = Command::new("script");
            script.args(["-q", "-c", &line, "/dev/null"]);
            script
        },
        None,
    );
    eventually("stats draws its table", Duration::from_secs(20), || {
        let shown = stats.stdout();
        shown.contains("\x1b[2J") && shown.contains("ttyexec") && shown.contains("CPU %")
    });
    assert!(
        stats.exited().is_none(),
        "stats keeps running: {}",
        stats.stdout()
    );
    drop(stats);

    // Without -i and -t a pty changes nothing: the output is the container's.
    let out = on_a_pty(
        &d,
        d.polis_command(&["run", "--rm", IMAGE, "echo", "plain"]),
        b"",
    );
    out.ok();
    assert!(out.stdout.contains("plain"), "{out}");
    // `-it` off a terminal is refused, as docker does.
    let out = d.polis(&["run", "-it", "--rm", IMAGE, "true"]);
    fails_with_one_line(&out, 1, "not a TTY");

    polis_ok(&d, &["rm", "-f", "ttyexec"]);
    assert_nothing_left(&d);
}

/// Shell completion (`completion bash` is a script `bash -n` accepts; zsh and fish print theirs), errors without a
/// polisd (a missing socket, an unknown command: one line each), and the client library's example
/// (`target/release/examples/run SOCKET IMAGE`: pulls, runs a container printing a line, streams its logs, removes
/// it) against this polisd.
#[test]
fn cli_completion_errors_and_the_client_example() {
    let d = Polisd::start("pd-cli-misc");

    let out = polis_ok(&d, &["completion", "bash"]);
    assert!(
        out.stdout.contains("polis") && out.stdout.contains("complete"),
        "{out}"
    );
    let script = d.scratch().join("polis.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = polis_ok(&d, &["completion", shell]);
        assert!(out.stdout.contains("polis"), "{out}");
    }

    let mut cmd = Command::new(d.polis_command(&[]).get_program());
    cmd.args(["-H", "/nonexistent/polis-grpc.sock", "ps"]);
    let out = d.spawn_with_input(cmd, None).wait(DOCKER_TIMEOUT);
    fails_with_one_line(&out, 1, "/nonexistent/polis-grpc.sock");
    let out = d.polis(&["frobnicate"]);
    fails_with_one_line(&out, 125, "frobnicate");
    let out = d.polis(&["stop", "no-such-box"]);
    fails_with_one_line(&out, 1, "no-such-box");

    let example = workspace_root().join("target/release/examples/run");
    assert!(
        example.is_file(),
        "{} is not built: run `cargo build --release -p polis-client --examples` (make build does)",
        example.display()
    );
    let mut cmd = Command::new(&example);
    cmd.arg(d.exec_root().join("polis-grpc.sock")).arg(IMAGE);
    let out = d.spawn_with_input(cmd, None).wait(DOCKER_TIMEOUT);
    out.ok();
    assert!(out.stdout.starts_with("polisd "), "{out}");
    assert!(
        out.stdout.contains(&format!("pulled {IMAGE} (sha256:")),
        "{out}"
    );
    assert!(out.stdout.contains("hello from polis\n"), "{out}");
    assert!(out.stdout.contains("exit code 0\n"), "{out}");
    assert_nothing_left(&d);
}

/// `-H tcp://HOST:PORT` with `--tlscacert`, `--tlscert` and `--tlskey`: polisd's `[grpc_tcp]` listener (mutual TLS)
/// serves the CLI as the socket does, `run` included; the TLS flags missing is one error line.
#[test]
fn cli_over_tcp_with_tls() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    pki::make(dir, "cli");
    let config = pki::polisd_listener("grpc_tcp", "127.0.0.1:2377", dir, "cli");
    let d = Polisd::start_with_config("pd-cli-tcp", &config);
    // The TCP address is on the loopback of polisd's network namespace: the CLI runs there.
    let over_tcp = |tls: bool, args: &[&str]| {
        let polis = d.polis_command(&[]);
        let mut cmd = d.netns().command(polis.get_program().to_str().unwrap());
        cmd.env_remove("POLIS_HOST")
            .args(["-H", "tcp://127.0.0.1:2377"]);
        if tls {
            cmd.arg("--tlscacert").arg(pki::pem(dir, "cli-ca"));
            cmd.arg("--tlscert").arg(pki::pem(dir, "cli-client"));
            cmd.arg("--tlskey").arg(pki::pem(dir, "cli-client-key"));
        }
        cmd.args(args);
        d.spawn_with_input(cmd, None).wait(DOCKER_TIMEOUT)
    };
    let version = json(&over_tcp(true, &["version", "--format", "json"]));
    assert_eq!(version["server"]["api_version"], "v1", "{version}");
    let out = over_tcp(
        true,
        &[
            "run", "--rm", "--name", "tcp-run", IMAGE, "echo", "over tcp",
        ],
    );
    out.ok();
    assert_eq!(out.stdout, "over tcp\n", "{out}");
    polis_ok(&d, &["run", "-d", "--name", "local", IMAGE, "sleep", "300"]);
    let listed = json_lines(&over_tcp(true, &["ps", "--format", "json"]));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["name"], "local",
        "the socket's containers, over TCP"
    );
    let out = over_tcp(false, &["ps"]);
    fails_with_one_line(&out, 1, "--tlscacert");
    polis_ok(&d, &["rm", "-f", "local"]);
    assert_nothing_left(&d);
}
