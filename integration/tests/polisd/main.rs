//! polisd as people use dockerd: the docker CLI, docker-py and raw HTTP against its Docker Engine API (v1.41) socket.
//! Each test starts its own polisd (integration/src/polisd.rs: a private root and socket, a loopback registry with a
//! busybox image, all in a network namespace of the test's own) and checks what a user would look at: output, exit
//! codes, `docker ps`, `docker inspect`, error messages. The doc comments cite the Engine API reference (v1.41) or
//! the docker CLI behaviour each test expects.

mod alerts;
mod archive;
mod cli;
mod crash;
mod dashboard;
mod grpc;
mod grpc_objects;
mod grpc_stdio;
mod health;
mod metrics;
mod networks;
mod tls;
mod tty;

use polis_integration::polisd::{IMAGE, Polisd, python_with_docker};
use polis_integration::{Output, eventually, eventually_some, process_alive, workspace_root};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Non-empty stdout lines, trimmed.
fn lines(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `docker ps ARGS --format {{.Names}}`, which must succeed.
#[track_caller]
fn names(d: &Polisd, args: &[&str]) -> Vec<String> {
    let mut a = vec!["ps"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--format", "{{.Names}}"]);
    let out = d.docker(&a);
    out.ok();
    lines(&out)
}

/// The full ID of a container.
#[track_caller]
fn full_id(d: &Polisd, name: &str) -> String {
    let id = d.inspect(name, "{{.Id}}");
    assert_eq!(id.len(), 64, "not a container ID: {id:?}");
    id
}

/// `docker run -d ARGS`; returns the ID it printed.
#[track_caller]
fn run_detached(d: &Polisd, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    let out = d.docker(&a);
    out.ok();
    let id = out.stdout.trim().to_string();
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "docker run -d should print the container's ID: {out}"
    );
    id
}

/// `docker run -d --memory 32m` of a container whose child shell grows past the limit: the OOM killer kills the
/// child (the largest process of the cgroup), and the container goes on sleeping. Returns its ID.
fn run_oom_child(d: &Polisd, name: &str) -> String {
    run_detached(
        d,
        &[
            "--name",
            name,
            "--memory",
            "32m",
            IMAGE,
            "sh",
            "-c",
            "sh -c 'x=$(yes | head -c 200000000)'; sleep 300",
        ],
    )
}

/// Waits until `docker logs NAME` shows `needle` on stdout.
#[track_caller]
fn wait_for_log(d: &Polisd, name: &str, needle: &str) {
    eventually(
        &format!("docker logs {name} shows {needle:?}"),
        Duration::from_secs(20),
        || d.docker(&["logs", name]).stdout.contains(needle),
    );
}

/// Nothing is left: no container in `ps -a`, no container directory, nothing mounted under polisd's dir.
#[track_caller]
fn assert_nothing_left(d: &Polisd) {
    assert_eq!(
        d.all_containers(),
        Vec::<String>::new(),
        "docker ps -a should be empty"
    );
    assert_eq!(
        d.container_dirs(),
        Vec::<String>::new(),
        "no container directory should be left under polisd's root"
    );
    assert_eq!(
        d.mounts(),
        Vec::<String>::new(),
        "nothing should stay mounted"
    );
}

/// stdout as one JSON value (object or array); panics naming the output when it is not.
#[track_caller]
fn stdout_json(out: &Output) -> serde_json::Value {
    out.ok();
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}"))
}

/// What the shell on the other side must show for the keystrokes `tty; echo $((6*7)); exit CODE`: its terminal
/// is a pty, the typed command line comes back as the terminal's echo, and the arithmetic ran in the container.
#[track_caller]
fn assert_interactive_shell(out: &Output, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "the CLI exits with the shell's code: {out}"
    );
    assert!(
        out.stdout.contains("/dev/pts/"),
        "the process should have a pty: {out}"
    );
    assert!(
        out.stdout.contains("echo $((6*7))"),
        "the typed line should be echoed: {out}"
    );
    assert!(
        out.stdout.lines().any(|l| l.trim() == "42"),
        "the typed command should run: {out}"
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------------------------
// System

/// `GET /version` (SystemVersion: Platform.Name, Version, ApiVersion) and `GET /info` (SystemInfo: ServerVersion,
/// OSType, Containers, ContainersStopped, Images): `docker version` names the server "Polis" and API 1.41 (the
/// CLI negotiates down to it through `/_ping`'s `API-Version`), `docker info` counts what exists.
#[test]
fn version_and_info_answer() {
    let d = Polisd::start("pd-version");
    let plain = d.docker(&["version"]);
    plain.ok();
    assert!(
        plain.stdout.contains("Server: Polis"),
        "docker version should show the server's platform: {plain}"
    );
    let server = d
        .docker(&["version", "--format", "{{json .Server}}"])
        .json();
    assert_eq!(server["Platform"]["Name"], "Polis", "{server}");
    assert_eq!(server["ApiVersion"], "1.41", "{server}");
    assert_eq!(server["Os"], "linux", "{server}");
    let version = server["Version"].as_str().unwrap_or_default().to_string();
    assert!(!version.is_empty(), "no server version: {server}");

    d.docker(&["info"]).ok();
    let info = d.docker(&["info", "--format", "{{json .}}"]).json();
    assert_eq!(info["ServerVersion"], version.as_str(), "{info}");
    assert_eq!(info["OSType"], "linux", "{info}");
    assert_eq!(info["Containers"], 0, "{info}");
    assert_eq!(info["Images"], 0, "{info}");

    d.docker(&["create", "--name", "counted", IMAGE, "true"])
        .ok();
    let info = d.docker(&["info", "--format", "{{json .}}"]).json();
    assert_eq!(info["Containers"], 1, "{info}");
    assert_eq!(info["ContainersStopped"], 1, "{info}");
    assert_eq!(info["ContainersRunning"], 0, "{info}");
    assert_eq!(info["Images"], 1, "{info}");
}

// ---------------------------------------------------------------------------------------------------------------
// Images

/// `POST /images/create?fromImage=` pulls (progress as a JSON stream, ending with the digest), `GET /images/json`
/// lists it under its RepoTags, `GET /images/{name}/json` inspects it, `DELETE /images/{name}` untags and deletes
/// it; afterwards `docker image inspect` answers "No such image".
#[test]
fn pull_list_inspect_remove_image() {
    let d = Polisd::start("pd-images");
    let pull = d.docker(&["pull", IMAGE]);
    pull.ok();
    assert!(
        pull.stdout.contains("Digest: sha256:"),
        "docker pull should end with the digest: {pull}"
    );
    let images = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    images.ok();
    assert_eq!(lines(&images), vec![IMAGE.to_string()], "{images}");
    let id = d.docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    id.ok();
    assert!(id.stdout.trim().starts_with("sha256:"), "{id}");
    let tags = d.docker(&["image", "inspect", "--format", "{{json .RepoTags}}", IMAGE]);
    assert_eq!(stdout_json(&tags), serde_json::json!([IMAGE]), "{tags}");

    let rmi = d.docker(&["rmi", IMAGE]);
    rmi.ok();
    assert!(
        rmi.stdout.contains(&format!("Untagged: {IMAGE}")),
        "docker rmi should say what it untagged: {rmi}"
    );
    let images = d.docker(&["images", "-q"]);
    images.ok();
    assert_eq!(lines(&images), Vec::<String>::new(), "{images}");
    d.docker(&["image", "inspect", IMAGE])
        .fails()
        .stderr_mentions("no such image");
}

/// `docker pull` of an image that is already there and unchanged: dockerd's last progress message is
/// "Status: Image is up to date for NAME" (not "Downloaded newer image").
#[test]
fn pull_again_says_up_to_date() {
    let d = Polisd::start("pd-repull");
    d.pull();
    let again = d.docker(&["pull", IMAGE]);
    again.ok();
    assert!(
        again
            .stdout
            .contains(&format!("Image is up to date for {IMAGE}")),
        "a second pull of the same image should say it is up to date: {again}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Running

/// `docker run --rm`: create (HostConfig.AutoRemove), attach (stdout and stderr multiplexed separately),
/// start, `wait?condition=removed`; the CLI exits with the container's exit code, and the container is gone when it
/// returns. The image is pulled on the way (create answers 404 "No such image", the CLI pulls and creates again).
#[test]
fn run_rm_prints_output_and_exit_code_and_leaves_nothing() {
    let d = Polisd::start("pd-run");
    let out = d.docker(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.code, Some(3), "docker run should exit 3: {out}");
    assert_eq!(out.stdout, "out\n", "{out}");
    assert_eq!(
        out.stderr.lines().last(),
        Some("err"),
        "the container's stderr goes to docker's stderr: {out}"
    );
    assert_nothing_left(&d);
}

/// `docker run -i`: `OpenStdin`, `AttachStdin` and `StdinOnce`; what is piped into the CLI reaches the container's
/// stdin through the attach stream, and its end closes the container's stdin.
#[test]
fn run_interactive_passes_stdin() {
    let d = Polisd::start("pd-stdin");
    let out = d.docker_with_input(&["run", "-i", "--rm", IMAGE, "cat"], b"hello\n");
    out.ok();
    assert_eq!(out.stdout, "hello\n", "{out}");
    let big = vec![b'x'; 300_000];
    let out = d.docker_with_input(&["run", "-i", "--rm", IMAGE, "wc", "-c"], &big);
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        "300000",
        "all of stdin should arrive: {out}"
    );
    assert_nothing_left(&d);
}

/// `docker run -d` prints the ID; `GET /containers/{id}/logs?stdout&stderr` returns the json-file log, each stream to
/// its own CLI stream; with `follow=1` the stream stays open while the container runs and ends when it exits.
#[test]
fn detached_logs_and_follow() {
    let d = Polisd::start("pd-logs");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "talker",
            IMAGE,
            "sh",
            "-c",
            "echo one; echo eins >&2; trap 'echo two; exit 0' USR1; while :; do sleep 0.1; done",
        ],
    );
    wait_for_log(&d, "talker", "one");
    let logs = d.docker(&["logs", "talker"]);
    logs.ok();
    assert_eq!(logs.stdout, "one\n", "{logs}");
    assert_eq!(logs.stderr, "eins\n", "{logs}");

    let mut follow = d.docker_spawn(&["logs", "-f", "talker"]);
    eventually(
        "docker logs -f shows the first line",
        Duration::from_secs(20),
        || follow.stdout().contains("one"),
    );
    assert!(
        follow.exited().is_none(),
        "docker logs -f should keep following a running container: {}",
        follow.stdout()
    );
    d.docker(&["kill", "--signal", "USR1", "talker"]).ok();
    let out = follow.wait(Duration::from_secs(30));
    out.ok();
    assert_eq!(
        out.stdout, "one\ntwo\n",
        "docker logs -f should show the last line and end: {out}"
    );
    let wait = d.docker(&["wait", "talker"]);
    wait.ok();
    assert_eq!(wait.stdout.trim(), "0", "{wait}");
    assert_eq!(d.inspect("talker", "{{.State.Running}}"), "false");
    assert_eq!(d.inspect("talker", "{{.State.ExitCode}}"), "0");
}

/// A script that follows a container's logs and then removes it (`docker logs -f C; docker rm C`): dockerd closes
/// the followers only after the container is marked stopped (the exit is handled under the container's lock), so
/// `GET /containers/{id}/json` shows it stopped and `docker rm` without -f succeeds right after `logs -f` returned.
#[test]
fn rm_right_after_logs_follow_ends() {
    let d = Polisd::start("pd-follow-rm");
    d.pull();
    for n in 0..10 {
        let name = format!("brief{n}");
        run_detached(
            &d,
            &[
                "--name",
                &name,
                IMAGE,
                "sh",
                "-c",
                "echo started; trap 'exit 0' USR1; while :; do sleep 0.1; done",
            ],
        );
        wait_for_log(&d, &name, "started");
        let follow = d.docker_spawn(&["logs", "-f", &name]);
        eventually(
            "docker logs -f shows the line",
            Duration::from_secs(20),
            || follow.stdout().contains("started"),
        );
        d.docker(&["kill", "--signal", "USR1", &name]).ok();
        follow.wait(Duration::from_secs(30)).ok();
        let state = d.http("GET", &format!("/v1.41/containers/{name}/json"), None);
        assert_eq!(
            state.json()["State"]["Running"],
            false,
            "round {n}: the container should be stopped once docker logs -f has ended"
        );
        let rm = d.docker(&["rm", &name]);
        assert!(
            rm.success(),
            "round {n}: docker rm right after docker logs -f ended should find the container stopped: {rm}"
        );
    }
    assert_nothing_left(&d);
}

/// `GET /containers/json` lists running containers; `all=1` adds the others; `filters` `status` and `name` (a
/// name filter matches a part of the name) are ANDed across keys.
#[test]
fn ps_lists_and_filters() {
    let d = Polisd::start("pd-ps");
    d.pull();
    let running = run_detached(&d, &["--name", "sleeper", IMAGE, "sleep", "300"]);
    d.docker(&["run", "--name", "finished", IMAGE, "true"]).ok();
    assert_eq!(names(&d, &[]), vec!["sleeper"]);
    let mut all = names(&d, &["-a"]);
    all.sort();
    assert_eq!(all, vec!["finished", "sleeper"]);
    let exited = d.docker(&[
        "ps",
        "-a",
        "--filter",
        "status=exited",
        "--filter",
        "name=finished",
        "--format",
        "{{.Names}}|{{.Status}}",
    ]);
    exited.ok();
    let l = lines(&exited);
    assert_eq!(l.len(), 1, "{exited}");
    assert!(l[0].starts_with("finished|Exited (0)"), "{exited}");
    assert_eq!(
        names(&d, &["-a", "--filter", "status=running"]),
        vec!["sleeper"]
    );
    assert_eq!(
        names(
            &d,
            &[
                "-a",
                "--filter",
                "status=exited",
                "--filter",
                "name=sleeper"
            ]
        ),
        Vec::<String>::new()
    );
    let q = d.docker(&["ps", "-q"]);
    q.ok();
    assert_eq!(lines(&q), vec![running[..12].to_string()], "{q}");
}

/// `POST /containers/{id}/stop?t=N`: the StopSignal (SIGTERM), then SIGKILL after N seconds. A PID 1 without a TERM
/// handler ignores TERM, so it is killed: exit code 137 after the timeout. One whose handler exits stops at once with
/// the handler's code.
#[test]
fn stop_kills_after_timeout_or_ends_on_term() {
    let d = Polisd::start("pd-stop");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "stubborn",
            IMAGE,
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    wait_for_log(&d, "stubborn", "ready");
    let t = Instant::now();
    let stop = d.docker(&["stop", "-t", "1", "stubborn"]);
    stop.ok();
    assert_eq!(stop.stdout.trim(), "stubborn", "{stop}");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "docker stop -t 1 should wait 1 s before SIGKILL"
    );
    assert_eq!(d.inspect("stubborn", "{{.State.Running}}"), "false");
    assert_eq!(d.inspect("stubborn", "{{.State.ExitCode}}"), "137");

    run_detached(
        &d,
        &[
            "--name",
            "polite",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got TERM; exit 143' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    wait_for_log(&d, "polite", "ready");
    let t = Instant::now();
    d.docker(&["stop", "-t", "60", "polite"]).ok();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "a container that exits on TERM should stop without waiting for the timeout ({:?})",
        t.elapsed()
    );
    assert_eq!(d.inspect("polite", "{{.State.ExitCode}}"), "143");
    assert!(d.docker(&["logs", "polite"]).stdout.contains("got TERM"));
    assert_eq!(names(&d, &[]), Vec::<String>::new());
}

/// `POST /containers/{id}/kill` (default SIGKILL); `POST /containers/{id}/wait` returns StatusCode 137; inspect shows
/// State.Status "exited", and the container's process is gone.
#[test]
fn kill_and_wait() {
    let d = Polisd::start("pd-kill");
    d.pull();
    run_detached(&d, &["--name", "victim", IMAGE, "sleep", "300"]);
    let pid: i32 = d.inspect("victim", "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0 && process_alive(pid), "State.Pid {pid} should run");
    let kill = d.docker(&["kill", "victim"]);
    kill.ok();
    assert_eq!(kill.stdout.trim(), "victim", "{kill}");
    let wait = d.docker(&["wait", "victim"]);
    wait.ok();
    assert_eq!(wait.stdout.trim(), "137", "{wait}");
    assert_eq!(d.inspect("victim", "{{.State.Status}}"), "exited");
    assert_eq!(d.inspect("victim", "{{.State.ExitCode}}"), "137");
    eventually(
        "the killed container's process is gone",
        Duration::from_secs(10),
        || !process_alive(pid),
    );
}

/// `DELETE /containers/{id}?force=1` kills a running container and removes it: it leaves `ps -a`, its process, its
/// directory and its rootfs mount.
#[test]
fn rm_force_removes_a_running_container() {
    let d = Polisd::start("pd-rmf");
    d.pull();
    let id = run_detached(&d, &["--name", "doomed", IMAGE, "sleep", "300"]);
    let pid: i32 = d.inspect("doomed", "{{.State.Pid}}").parse().unwrap();
    let rm = d.docker(&["rm", "-f", "doomed"]);
    rm.ok();
    assert_eq!(rm.stdout.trim(), "doomed", "{rm}");
    eventually(
        "the removed container's process is gone",
        Duration::from_secs(10),
        || !process_alive(pid),
    );
    assert!(!d.container_dirs().contains(&id));
    assert_nothing_left(&d);
}

/// `GET /containers/{id}/json`: Name ("/" + name), Path and Args, Config.Image, State.Running/Status/Pid/ExitCode,
/// for a running and for an exited container.
#[test]
fn inspect_shows_state_and_exit_code() {
    let d = Polisd::start("pd-inspect");
    d.pull();
    let out = d.docker(&["run", "--name", "three", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(out.code, Some(3), "{out}");
    let c = d.docker(&["inspect", "three"]);
    c.ok();
    let c = &stdout_json(&c)[0];
    assert_eq!(c["Name"], "/three", "{c}");
    assert_eq!(c["Path"], "sh", "{c}");
    assert_eq!(c["Args"], serde_json::json!(["-c", "exit 3"]), "{c}");
    assert_eq!(c["Config"]["Image"], IMAGE, "{c}");
    assert_eq!(c["State"]["Running"], false, "{c}");
    assert_eq!(c["State"]["Status"], "exited", "{c}");
    assert_eq!(c["State"]["ExitCode"], 3, "{c}");

    let id = run_detached(&d, &["--name", "alive", IMAGE, "sleep", "300"]);
    let state = d.docker(&["inspect", "--format", "{{json .State}}", "alive"]);
    state.ok();
    let s = state.json();
    assert_eq!(s["Running"], true, "{s}");
    assert_eq!(s["Status"], "running", "{s}");
    let pid = s["Pid"].as_i64().unwrap_or(0) as i32;
    assert!(pid > 0 && process_alive(pid), "State.Pid should run: {s}");
    assert_eq!(full_id(&d, "alive"), id);
    assert_eq!(
        full_id(&d, &id[..12]),
        id,
        "a unique ID prefix names the container"
    );
}

/// `POST /containers/{id}/rename?name=`: the new name lists and inspects, the old one is free again, and a name in
/// use is refused (409).
#[test]
fn rename_a_container() {
    let d = Polisd::start("pd-rename");
    d.pull();
    run_detached(&d, &["--name", "before", IMAGE, "sleep", "300"]);
    d.docker(&["rename", "before", "after"]).ok();
    assert_eq!(names(&d, &[]), vec!["after"]);
    assert_eq!(d.inspect("after", "{{.Name}}"), "/after");
    d.docker(&["inspect", "before"])
        .fails()
        .stderr_mentions("no such");
    d.docker(&["create", "--name", "before", IMAGE, "true"])
        .ok();
    d.docker(&["rename", "after", "before"])
        .fails()
        .stderr_mentions("already in use");
}

/// `GET /events` streams one JSON message per event as it happens (Type, Action, Actor.Attributes.name): a
/// container's create, start, die and destroy, in that order.
#[test]
fn events_stream_while_a_container_lives() {
    let d = Polisd::start("pd-events");
    d.pull();
    let events = d.docker_spawn(&[
        "events",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    // The stream is live once it shows an event made after it started.
    let mut n = 0;
    eventually(
        "docker events shows a container made after it started",
        Duration::from_secs(30),
        || {
            n += 1;
            let name = format!("warmup{n}");
            d.docker(&["create", "--name", &name, IMAGE, "true"]).ok();
            d.docker(&["rm", &name]).ok();
            events.stdout().contains("container create warmup")
        },
    );
    d.docker(&["run", "--name", "watched", IMAGE, "true"]).ok();
    d.docker(&["rm", "watched"]).ok();
    let want = ["create", "start", "die", "destroy"];
    eventually(
        "docker events shows create, start, die and destroy of the container",
        Duration::from_secs(20),
        || {
            let seen: Vec<String> = events
                .stdout()
                .lines()
                .filter_map(|l| l.strip_suffix(" watched"))
                .filter_map(|l| l.strip_prefix("container "))
                .map(String::from)
                .collect();
            let mut at = 0;
            want.iter()
                .all(|w| match seen[at..].iter().position(|s| s == w) {
                    Some(i) => {
                        at += i + 1;
                        true
                    }
                    None => false,
                })
        },
    );
}

/// `GET /events?since=&until=`: events since a past time are replayed (dockerd keeps the recent ones), and the
/// stream ends by itself at `until`.
#[test]
fn events_since_until_replays_past_events() {
    let d = Polisd::start("pd-events-past");
    d.pull();
    let since = unix_now().saturating_sub(1);
    d.docker(&["run", "--rm", "--name", "past", IMAGE, "true"])
        .ok();
    let until = unix_now() + 1;
    let out = d.docker_within(
        &[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "container=past",
            "--format",
            "{{.Action}}",
        ],
        None,
        Duration::from_secs(30),
    );
    out.ok();
    let seen = lines(&out);
    for want in ["create", "start", "die", "destroy"] {
        assert!(
            seen.iter().any(|s| s == want),
            "docker events --since/--until should list {want:?} of the container: {out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bad input

/// Container names must match `/?[a-zA-Z0-9][a-zA-Z0-9_.-]+` (dockerd: "Invalid container name (NAME), only
/// [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", 400); nothing is created.
#[test]
fn invalid_name_is_refused_and_leaves_nothing() {
    let d = Polisd::start("pd-badname");
    d.pull();
    let out = d.docker(&["run", "--name", "a b", IMAGE, "true"]);
    out.fails()
        .stderr_mentions("invalid container name")
        .stderr_mentions("(a b)");
    assert_nothing_left(&d);
}

/// A name in use: `POST /containers/create?name=` answers 409 Conflict, "Conflict. The container name "/NAME" is
/// already in use by container ...", and the first container stays the only one.
#[test]
fn duplicate_name_is_a_conflict() {
    let d = Polisd::start("pd-dupname");
    d.pull();
    d.docker(&["create", "--name", "twin", IMAGE, "true"]).ok();
    d.docker(&["create", "--name", "twin", IMAGE, "true"])
        .fails()
        .stderr_mentions("already in use");
    let reply = d.http(
        "POST",
        "/v1.41/containers/create?name=twin",
        Some(
            serde_json::json!({"Image": IMAGE, "Cmd": ["true"]})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(reply.status, 409, "{reply:?}");
    let message = reply.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("twin"), "{reply:?}");
    assert_eq!(d.all_containers().len(), 1);
}

/// `docker run` of an image the registry does not have: the pull fails (`POST /images/create` reports the
/// registry's error), the CLI fails, and neither a container nor an image is left.
#[test]
fn missing_image_fails_and_leaves_nothing() {
    let d = Polisd::start("pd-noimage");
    let missing = "127.0.0.1:5000/nosuch:latest";
    let out = d.docker(&["run", "--rm", missing, "true"]);
    out.fails().stderr_mentions("error response from daemon");
    let tag = d.docker(&["run", "--rm", "127.0.0.1:5000/busybox:nosuchtag", "true"]);
    tag.fails().stderr_mentions("error response from daemon");
    assert_nothing_left(&d);
    let images = d.docker(&["images", "-q"]);
    images.ok();
    assert_eq!(lines(&images), Vec::<String>::new(), "{images}");
}

/// `DELETE /containers/{id}` of a running container without `force`: 409, "You cannot remove a running container
/// ... Stop the container before attempting removal or force remove"; it keeps running.
#[test]
fn rm_of_running_container_needs_force() {
    let d = Polisd::start("pd-rmrun");
    d.pull();
    run_detached(&d, &["--name", "busy", IMAGE, "sleep", "300"]);
    d.docker(&["rm", "busy"])
        .fails()
        .stderr_mentions("cannot remove a running container")
        .stderr_mentions("force");
    assert_eq!(d.inspect("busy", "{{.State.Running}}"), "true");
}

/// `HostConfig.Mounts` of type bind whose source does not exist (`--mount type=bind,source=...`): dockerd refuses
/// it at create, "invalid mount config for type "bind": bind source path does not exist: PATH"; nothing is left.
#[test]
fn bind_of_missing_host_path_fails_and_leaves_nothing() {
    let d = Polisd::start("pd-badbind");
    d.pull();
    let missing = "/nonexistent-polis-test/data";
    let out = d.docker(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={missing},target=/data"),
        IMAGE,
        "true",
    ]);
    out.fails()
        .stderr_mentions("bind source path does not exist")
        .stderr_mentions(missing);
    assert_nothing_left(&d);
}

/// Malformed JSON in a request body is a client error: 400 with Docker's error body `{"message": "..."}`. A
/// version prefix above the daemon's maximum (`/v1.99/`) is refused with 400 too ("client version 1.99 is too new.
/// Maximum supported API version is 1.41").
#[test]
fn malformed_json_and_unknown_api_version_get_400() {
    let d = Polisd::start("pd-badjson");
    let reply = d.http("POST", "/containers/create", Some(b"{\"Image\": "));
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.json()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply:?}"
    );
    let reply = d.http("POST", "/v1.41/containers/create", Some(b"[1, 2"));
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.json()["message"].is_string(), "{reply:?}");
    let reply = d.http("GET", "/v1.99/version", None);
    assert_eq!(reply.status, 400, "{reply:?}");
    let message = reply.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("1.99") && message.contains("1.41"),
        "{reply:?}"
    );
    assert_eq!(d.http("GET", "/v1.41/version", None).status, 200);
    assert_eq!(d.all_containers(), Vec::<String>::new());
}

/// A body over `max_body_size` (10 MiB by default) is refused with 413 and Docker's JSON error shape, naming the
/// limit, and creates nothing.
#[test]
fn body_over_the_limit_gets_413_in_json() {
    let d = Polisd::start("pd-bigbody");
    let mut body = b"{\"Image\": \"busybox\", \"Labels\": {\"big\": \"".to_vec();
    body.resize(body.len() + (10 << 20), b'x');
    body.extend_from_slice(b"\"}}");
    let reply = d.http("POST", "/v1.41/containers/create", Some(&body));
    assert_eq!(reply.status, 413, "{}", reply.body);
    let message = reply.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.to_lowercase().contains("length limit")
            || message.to_lowercase().contains("too large"),
        "the message should name the limit: {message:?}"
    );
    assert_eq!(d.all_containers(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------------------------
// Crashes

/// A container outlives polisd (dockerd's live-restore): after polisd is SIGKILLed and started again on the same
/// root, `docker ps` shows the container running, `docker logs` has its output from before and after the crash,
/// and `docker stop` stops it.
#[test]
fn container_outlives_a_polisd_crash() {
    let mut d = Polisd::start("pd-crash");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "survivor",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done",
        ],
    );
    wait_for_log(&d, "survivor", "tick 2");
    let pid: i32 = d.inspect("survivor", "{{.State.Pid}}").parse().unwrap();
    d.kill_daemon();
    assert!(process_alive(pid), "the container should outlive polisd");
    d.start_daemon();
    assert_eq!(names(&d, &[]), vec!["survivor"], "{}", d.log());
    assert_eq!(d.inspect("survivor", "{{.State.Running}}"), "true");
    assert_eq!(d.inspect("survivor", "{{.State.Pid}}"), pid.to_string());
    // Output written while polisd was down and after its restart reaches the log.
    let last_before = d
        .docker(&["logs", "survivor"])
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    eventually(
        "docker logs shows ticks written after the restart",
        Duration::from_secs(20),
        || {
            d.docker(&["logs", "survivor"])
                .stdout
                .lines()
                .filter_map(|l| l.strip_prefix("tick ")?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
                > last_before + 5
        },
    );
    let t = Instant::now();
    d.docker(&["stop", "-t", "60", "survivor"]).ok();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the TERM should reach the container"
    );
    assert_eq!(d.inspect("survivor", "{{.State.Running}}"), "false");
    assert_eq!(d.inspect("survivor", "{{.State.ExitCode}}"), "0");
    assert!(d.docker(&["logs", "survivor"]).stdout.contains("bye"));
    eventually(
        "the stopped container's process is gone",
        Duration::from_secs(10),
        || !process_alive(pid),
    );
    d.docker(&["rm", "survivor"]).ok();
    assert_nothing_left(&d);
}

/// A container whose shim died while polisd was down is exited when polisd starts again (dockerd restores a
/// container whose task is gone as stopped), its process is gone (containerd runs the shim's `delete`, which
/// kills it), and it can be removed without a trace.
#[test]
fn container_whose_shim_died_is_exited_after_restart() {
    let mut d = Polisd::start("pd-shimdead");
    d.pull();
    let id = run_detached(&d, &["--name", "orphan", IMAGE, "sleep", "300"]);
    let pid: i32 = d.inspect("orphan", "{{.State.Pid}}").parse().unwrap();
    let shim = d
        .shim_of(&id)
        .unwrap_or_else(|| panic!("no shim process has {} as its cwd", d.bundle(&id).display()));
    // The shim's socket (/run/containerd/s/HASH), which outlives a killed shim until its `delete` runs.
    let address = std::fs::read_to_string(d.bundle(&id).join("address")).unwrap();
    let socket = RemoveOnDrop(address.trim().trim_start_matches("unix://").into());
    d.kill_daemon();
    // SAFETY: the shim this test's polisd started for its container.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    eventually("the shim is gone", Duration::from_secs(10), || {
        !process_alive(shim)
    });
    d.start_daemon();
    let status = d.docker(&[
        "ps",
        "-a",
        "--filter",
        "name=orphan",
        "--format",
        "{{.Status}}",
    ]);
    status.ok();
    assert!(
        status.stdout.starts_with("Exited"),
        "a container whose shim is gone should be exited: {status}"
    );
    assert_eq!(d.inspect("orphan", "{{.State.Running}}"), "false");
    assert_eq!(names(&d, &[]), Vec::<String>::new());
    eventually(
        "the container's process is gone once it shows as exited",
        Duration::from_secs(10),
        || !process_alive(pid),
    );
    d.docker(&["rm", "orphan"]).ok();
    assert_nothing_left(&d);
    assert!(
        !socket.0.exists(),
        "the dead shim's socket {} should be removed",
        socket.0.display()
    );
}

/// Removes a file when dropped (a socket a test's killed shim left).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Load

/// 50 `docker run --rm IMAGE echo N`, at most 10 at a time: each prints its own N and exits 0, and nothing is left.
#[test]
fn fifty_concurrent_runs() {
    let d = Polisd::start("pd-many");
    d.pull();
    const TOTAL: usize = 50;
    const AT_ONCE: usize = 10;
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let done = Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for _ in 0..AT_ONCE {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= TOTAL {
                        break;
                    }
                    let out = d.docker_within(
                        &["run", "--rm", IMAGE, "echo", &n.to_string()],
                        None,
                        Duration::from_secs(180),
                    );
                    if out.success() && out.stdout == format!("{n}\n") {
                        done.lock().unwrap().insert(n);
                    } else {
                        failures.lock().unwrap().push(out.to_string());
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {TOTAL} runs failed; first: {}",
        failures.len(),
        failures[0]
    );
    assert_eq!(done.into_inner().unwrap().len(), TOTAL);
    assert_nothing_left(&d);
}

// ---------------------------------------------------------------------------------------------------------------
// docker-py

/// docker-py (`docker.DockerClient`, API version negotiated with `version="auto"`): pull, a run with output,
/// a detached container listed while it runs, kill, wait, remove (integration/tests/polisd/docker_py.py).
#[test]
fn docker_py_pulls_runs_lists_removes() {
    let d = Polisd::start("pd-dockerpy");
    let python = python_with_docker();
    let script = workspace_root().join("integration/tests/polisd/docker_py.py");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script).arg(d.url()).arg(IMAGE);
    let out = d.spawn_with_input(cmd, None).wait(Duration::from_secs(180));
    out.ok();
    let got: Vec<String> = lines(&out);
    let expect = [
        "platform Polis".to_string(),
        format!("pulled {IMAGE}"),
        "output hello from docker-py".to_string(),
        "status running".to_string(),
        "listed pyc".to_string(),
        "exit 137".to_string(),
        "remaining 0".to_string(),
    ];
    assert_eq!(got, expect, "{out}");
    assert_nothing_left(&d);
}

// ---------------------------------------------------------------------------------------------------------------
// exec, top, cp, stats, volumes, networks, published ports

/// `POST /containers/{id}/exec` + `POST /exec/{id}/start` (`docker exec`): output, stdin with `-i`, the exit code
/// (`GET /exec/{id}/json` ExitCode), and a missing binary fails with 126/127 as runc reports it.
#[test]
fn exec_runs_in_a_running_container() {
    let d = Polisd::start("pd-exec");
    d.pull();
    run_detached(&d, &["--name", "host", IMAGE, "sleep", "300"]);
    let out = d.docker(&["exec", "host", "sh", "-c", "echo in; echo err >&2; exit 4"]);
    assert_eq!(out.code, Some(4), "{out}");
    assert_eq!(out.stdout, "in\n", "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
    let out = d.docker_with_input(&["exec", "-i", "host", "cat"], b"piped\n");
    out.ok();
    assert_eq!(out.stdout, "piped\n", "{out}");
    let out = d.docker(&["exec", "host", "/no/such/binary"]);
    out.fails();
    assert!(matches!(out.code, Some(126) | Some(127)), "{out}");
    let ps = d.docker(&["exec", "host", "ps", "-o", "comm"]);
    ps.ok();
    assert!(ps.stdout.contains("sleep"), "{ps}");
}

/// `GET /containers/{id}/top` (`docker top`): the container's processes, with a header row.
#[test]
fn top_lists_the_processes() {
    let d = Polisd::start("pd-top");
    d.pull();
    run_detached(&d, &["--name", "topped", IMAGE, "sleep", "300"]);
    // `docker run -d` returns once the task is started, which may be before the kernel has laid out the new
    // program's arguments (ps shows `[sleep]` in that window): poll as a user would look again.
    let out = eventually_some(
        "docker top shows `sleep 300`",
        Duration::from_secs(10),
        || {
            let out = d.docker(&["top", "topped"]);
            out.ok();
            out.stdout.contains("sleep 300").then_some(out)
        },
    );
    assert!(out.stdout.contains("PID"), "{out}");
}

/// `PUT /containers/{id}/archive` and `GET /containers/{id}/archive` (`docker cp` both ways): a file copied in is
/// read by the container, a file the container wrote is copied out; a missing path is an error.
#[test]
fn cp_into_and_out_of_a_container() {
    let d = Polisd::start("pd-cp");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "box",
            IMAGE,
            "sh",
            "-c",
            "echo made > /tmp/made; sleep 300",
        ],
    );
    let src = d.scratch().join("in.txt");
    std::fs::write(&src, "copied in\n").unwrap();
    d.docker(&["cp", src.to_str().unwrap(), "box:/tmp/in.txt"])
        .ok();
    let read = d.docker(&["exec", "box", "cat", "/tmp/in.txt"]);
    read.ok();
    assert_eq!(read.stdout, "copied in\n", "{read}");
    let dst = d.scratch().join("out.txt");
    eventually(
        "docker cp copies the container's file out",
        Duration::from_secs(10),
        || {
            d.docker(&["cp", "box:/tmp/made", dst.to_str().unwrap()])
                .success()
        },
    );
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "made\n");
    let back = d.scratch().join("back.txt");
    d.docker(&["cp", "box:/tmp/in.txt", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");
    d.docker(&["cp", "box:/no/such/file", back.to_str().unwrap()])
        .fails();
}

/// `GET /containers/{id}/stats?stream=0` (`docker stats --no-stream`): one sample with the container's memory use.
#[test]
fn stats_sample_of_a_running_container() {
    let d = Polisd::start("pd-stats");
    d.pull();
    run_detached(&d, &["--name", "measured", IMAGE, "sleep", "300"]);
    let out = d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "measured",
    ]);
    out.ok();
    assert!(out.stdout.starts_with("measured "), "{out}");
    let reply = d.http("GET", "/v1.41/containers/measured/stats?stream=0", None);
    assert_eq!(reply.status, 200, "{reply:?}");
    let v = reply.json();
    assert!(v["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0, "{v}");
}

/// Volumes (`POST /volumes/create`, `GET /volumes`, `DELETE /volumes/{name}`): a named volume keeps what one
/// container wrote for the next; `docker volume rm` of a volume in use is refused.
#[test]
fn named_volume_keeps_data_between_containers() {
    let d = Polisd::start("pd-volume");
    d.pull();
    d.docker(&["volume", "create", "keep"]).ok();
    let ls = d.docker(&["volume", "ls", "--format", "{{.Name}}"]);
    ls.ok();
    assert_eq!(lines(&ls), vec!["keep"]);
    d.docker(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        IMAGE,
        "sh",
        "-c",
        "echo kept > /data/f",
    ])
    .ok();
    let out = d.docker(&["run", "--rm", "-v", "keep:/data", IMAGE, "cat", "/data/f"]);
    out.ok();
    assert_eq!(out.stdout, "kept\n", "{out}");
    run_detached(
        &d,
        &["--name", "user", "-v", "keep:/data", IMAGE, "sleep", "300"],
    );
    d.docker(&["volume", "rm", "keep"]).fails();
    d.docker(&["rm", "-f", "user"]).ok();
    d.docker(&["volume", "rm", "keep"]).ok();
}

/// The default bridge network: a container gets an address (NetworkSettings.IPAddress) and reaches another
/// container by it; a user network (`docker network create --subnet`) gives addresses from its subnet and names
/// of its containers resolve.
#[test]
fn bridge_and_user_networks() {
    let d = Polisd::start("pd-net");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "server",
            IMAGE,
            "sh",
            "-c",
            "while :; do echo pong | nc -l -p 7000; done",
        ],
    );
    let ip = d.inspect("server", "{{.NetworkSettings.IPAddress}}");
    assert!(
        !ip.is_empty(),
        "the container should have an address on the default bridge"
    );
    let out = d.docker(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        &format!("nc -w 5 {ip} 7000 </dev/null"),
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "pong", "{out}");

    d.docker(&[
        "network",
        "create",
        "--subnet",
        "198.18.77.0/24",
        "polisnet",
    ])
    .ok();
    run_detached(
        &d,
        &[
            "--name",
            "named",
            "--network",
            "polisnet",
            IMAGE,
            "sh",
            "-c",
            "while :; do echo hi | nc -l -p 7001; done",
        ],
    );
    let ip = d.inspect(
        "named",
        "{{(index .NetworkSettings.Networks \"polisnet\").IPAddress}}",
    );
    assert!(ip.starts_with("198.18.77."), "{ip}");
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "polisnet",
        IMAGE,
        "sh",
        "-c",
        "nc -w 5 named 7001 </dev/null",
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "hi", "{out}");
    d.docker(&["rm", "-f", "named"]).ok();
    d.docker(&["network", "rm", "polisnet"]).ok();
}

/// Port publishing (`-p HOSTPORT:CONTAINERPORT`): a connection to the host's port reaches the container's port;
/// `docker port` shows the mapping.
#[test]
fn published_port_reaches_the_container() {
    let d = Polisd::start("pd-ports");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "web",
            "-p",
            "18080:80",
            IMAGE,
            "sh",
            "-c",
            "while :; do echo served | nc -l -p 80; done",
        ],
    );
    let port = d.docker(&["port", "web", "80"]);
    port.ok();
    assert!(port.stdout.contains(":18080"), "{port}");
    // From the network namespace polisd runs in (its "host"), to a non-loopback address of it.
    let out = d
        .netns()
        .command("sh")
        .args([
            "-c",
            "addr=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1); \
             busybox nc -w 5 \"$addr\" 18080 </dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "served");
}

// ---------------------------------------------------------------------------------------------------------------
// Security options, --init, other clients

/// `docker run --security-opt seccomp=unconfined|FILE` (Docker's "Seccomp security profiles for Docker": the default
/// profile refuses `unshare` without CAP_SYS_ADMIN, `unconfined` runs without a profile, and `seccomp=FILE` takes a
/// profile in Docker's format, which the CLI reads and sends as the option's value). A user namespace needs no
/// capability, so `unshare -U` (busybox's: the image links
/// only some applets) shows the filter alone at work.
#[test]
fn security_opt_seccomp_default_unconfined_and_a_profile_file() {
    let d = Polisd::start("pd-seccomp");
    d.pull();
    let out = d.docker(&["run", "--rm", IMAGE, "busybox", "unshare", "-U", "true"]);
    out.fails();
    assert!(
        out.stderr.contains("Operation not permitted"),
        "the default profile refuses unshare: {out}"
    );
    d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        IMAGE,
        "busybox",
        "unshare",
        "-U",
        "true",
    ])
    .ok();
    // Docker's format: archMap, and a rule included only with CAP_SYS_ADMIN, which the container lacks.
    let profile = d.scratch().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["unlink", "unlinkat"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}}
            ]
        }"#,
    )
    .unwrap();
    let seccomp = format!("seccomp={}", profile.display());
    let out = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        &seccomp,
        IMAGE,
        "sh",
        "-c",
        "touch /tmp/f && rm /tmp/f && echo touched && mkdir /tmp/x",
    ]);
    out.fails();
    assert_eq!(out.stdout, "touched\n", "{out}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "the profile refuses mkdir: {out}"
    );
    assert_nothing_left(&d);
}

/// `--security-opt no-new-privileges[=true|false]` (docker run reference, "Security configuration"): the process's
/// no_new_privs bit, which /proc/self/status shows as NoNewPrivs. polisd runs as dockerd with
/// `--no-new-privileges` (its /info SecurityOptions), so the bit is set unless the container asks otherwise.
#[test]
fn security_opt_no_new_privileges() {
    let d = Polisd::start("pd-nnp");
    d.pull();
    let nnp = |opt: Option<&str>| -> String {
        let mut args = vec!["run", "--rm"];
        if let Some(o) = opt {
            args.extend(["--security-opt", o]);
        }
        args.extend([IMAGE, "grep", "NoNewPrivs", "/proc/self/status"]);
        let out = d.docker(&args);
        out.ok();
        out.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert_eq!(nnp(Some("no-new-privileges")), "NoNewPrivs: 1");
    assert_eq!(nnp(Some("no-new-privileges=true")), "NoNewPrivs: 1");
    assert_eq!(nnp(Some("no-new-privileges=false")), "NoNewPrivs: 0");
    assert_eq!(nnp(None), "NoNewPrivs: 1");
}

/// `--security-opt apparmor=PROFILE` and `label=...` need AppArmor and SELinux, which polisd has not: only the options
/// that turn them off (`apparmor=unconfined`, `label=disable`) are taken; the others, and unknown options, fail the
/// create with the option named (dockerd: "invalid --security-opt"), and nothing is left.
#[test]
fn security_opt_apparmor_label_and_unknown_options() {
    let d = Polisd::start("pd-secopt");
    d.pull();
    let out = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "apparmor=unconfined",
        "--security-opt",
        "label=disable",
        IMAGE,
        "echo",
        "ran",
    ]);
    out.ok();
    assert_eq!(out.stdout, "ran\n", "{out}");
    for (opt, says) in [
        ("apparmor=foo", "apparmor=foo"),
        ("label=type:svirt_t", "label=type:svirt_t"),
        ("bogus=1", "invalid --security-opt"),
    ] {
        let out = d.docker(&["run", "--rm", "--security-opt", opt, IMAGE, "true"]);
        assert_eq!(out.code, Some(125), "the create fails: {out}");
        assert!(out.stderr.contains(says), "{opt}: {out}");
    }
    assert_nothing_left(&d);
}

/// `docker run --init` (docker run reference, "Specify an init process"): an init (Docker's docker-init, tini) is
/// PID 1 and runs the command as its child, and the container exits with the command's exit code.
#[test]
fn run_init_makes_docker_init_pid_1() {
    let d = Polisd::start("pd-init");
    d.pull();
    let out = d.docker(&["run", "--rm", "--init", IMAGE, "ps", "-o", "pid,comm"]);
    out.ok();
    let pid1 = lines(&out)
        .into_iter()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_default();
    assert!(
        pid1.ends_with("docker-init") || pid1.ends_with("tini"),
        "PID 1 should be the init: {out}"
    );
    assert!(
        lines(&out).iter().any(|l| l.ends_with(" ps")),
        "the command runs under it: {out}"
    );
    let out = d.docker(&["run", "--rm", "--init", IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(out.code, Some(3), "{out}");
    assert_nothing_left(&d);
}

/// "bollard from Rust": the Rust Docker client (bollard) against polisd's socket, as a Rust program uses dockerd:
/// negotiate the API version, create and start a container (`POST /containers/create`, `/start`), wait for it
/// (`POST /containers/{id}/wait`), read its logs (`GET /containers/{id}/logs?stdout=1`) and remove it.
#[tokio::test(flavor = "current_thread")]
async fn bollard_creates_runs_waits_reads_logs_and_removes() {
    use bollard::Docker;
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        StartContainerOptions, WaitContainerOptions,
    };
    use futures_util::StreamExt;

    let d = Polisd::start("pd-bollard");
    d.pull();
    let docker = Docker::connect_with_unix(
        d.socket().to_str().unwrap(),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
    .negotiate_version()
    .await
    .unwrap();
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name("rusty").build()),
            ContainerCreateBody {
                image: Some(IMAGE.to_string()),
                cmd: Some(
                    ["sh", "-c", "echo hello from bollard; exit 5"]
                        .map(String::from)
                        .to_vec(),
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.id.len(), 64, "{created:?}");
    docker
        .start_container("rusty", None::<StartContainerOptions>)
        .await
        .unwrap();
    let waited = docker
        .wait_container("rusty", None::<WaitContainerOptions>)
        .next()
        .await
        .expect("the wait stream ends without an answer");
    // bollard reports a non-zero exit code as an error carrying it.
    let code = match waited {
        Ok(r) => r.status_code,
        Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => code,
        Err(e) => panic!("wait: {e}"),
    };
    assert_eq!(code, 5);
    let logs: Vec<String> = docker
        .logs(
            "rusty",
            Some(LogsOptionsBuilder::new().stdout(true).build()),
        )
        .map(|l| l.unwrap().to_string())
        .collect()
        .await;
    assert_eq!(logs.concat(), "hello from bollard\n");
    docker
        .remove_container("rusty", Some(RemoveContainerOptionsBuilder::new().build()))
        .await
        .unwrap();
    assert_nothing_left(&d);
}
