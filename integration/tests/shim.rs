//! containerd-shim-polis-v2 under a real containerd (Debian's 1.6, private socket, root and state): what a person
//! sees through `ctr` with `--runtime io.containerd.polis.v2`. The protocol is containerd's shim v2
//! (runtime/v2/README.md in containerd: the Task service, its events, and the `start`/`delete` subcommands).
//!
//! Each test starts its own containerd and imports the busybox image; on drop every task is killed and deleted,
//! the daemon and its shims are killed, and everything mounted below the test's dir is unmounted.

use polis_integration::containerd::*;
use polis_integration::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RUNTIME: &str = "io.containerd.polis.v2";

fn shim_binary() -> std::path::PathBuf {
    workspace_root().join("target/release/containerd-shim-polis-v2")
}

/// A containerd with the image imported, or None (a notice; a failure under CI) when a peer is missing.
fn containerd_with_image() -> Option<Containerd> {
    if !containerd_available() {
        return None;
    }
    assert!(
        shim_binary().is_file() && polis_runc_path().is_file(),
        "{} or polis-runc is not built: run `make build`",
        shim_binary().display()
    );
    let ctrd = Containerd::start();
    ctr_import(&ctrd);
    Some(ctrd)
}

fn unique_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// `ctr run --rm --runtime io.containerd.polis.v2 IMAGE ID ARGS...`
fn shim_run(ctrd: &Containerd, id: &str, flags: &[&str], args: &[&str]) -> Output {
    let mut a = vec!["run", "--rm", "--runtime", RUNTIME];
    a.extend_from_slice(flags);
    a.extend_from_slice(&[IMAGE, id]);
    a.extend_from_slice(args);
    ctrd.ctr(&a)
}

/// Starts a detached task running `sleep 300`.
fn shim_run_detached(ctrd: &Containerd, id: &str) {
    ctrd.ctr(&["run", "-d", "--runtime", RUNTIME, IMAGE, id, "sleep", "300"])
        .ok();
}

/// The STATUS column of `ctr task ls` for `id`.
fn task_status(ctrd: &Containerd, id: &str) -> String {
    let out = ctrd.ctr(&["task", "ls"]);
    out.ok();
    out.stdout
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
        .unwrap_or_default()
}

fn task_pid(ctrd: &Containerd, id: &str) -> i32 {
    let out = ctrd.ctr(&["task", "ls"]);
    out.stdout
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(1)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no task {id}: {out}"))
}

/// The socket of the shim that serves `id`: /run/containerd/s/sha256(<containerd address>/<namespace>/<id>), as
/// containerd-shim derives it.
fn shim_socket(ctrd: &Containerd, id: &str) -> std::path::PathBuf {
    let key = format!("{}/{}/{id}", ctrd.socket().display(), ctrd.namespace);
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), key.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    Path::new("/run/containerd/s").join(hex)
}

fn shim_processes(ctrd: &Containerd) -> Vec<i32> {
    let marker = ctrd.dir.path().display().to_string();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
        if cmdline.contains("containerd-shim-polis-v2") && cmdline.contains(&marker) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
/// User behaviour: `ctr run --rm` prints the container's stdout and stderr and returns its exit code
/// (Task Create/Start/Wait/Delete; TaskExit carries the status).
fn shim_run_prints_output_and_returns_the_exit_code() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("out");
    let out = shim_run(
        &ctrd,
        &id,
        &[],
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"],
    );
    assert_eq!(out.code, Some(7), "{out}\ncontainerd log:\n{}", ctrd.log());
    assert_eq!(out.stdout.trim(), "to-stdout", "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    assert!(
        shim_processes(&ctrd).is_empty(),
        "the shim outlived its only container"
    );
    let socket = shim_socket(&ctrd, &id);
    assert!(
        !socket.exists(),
        "the shim left its socket {}",
        socket.display()
    );
}

#[test]
/// User behaviour: stdin reaches the container, and the end of ctr's stdin (its fifo closed) is the container's EOF.
fn shim_forwards_stdin_until_close() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let mut cmd = ctrd.ctr_command(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        &unique_id("stdin"),
        "sh",
        "-c",
        "cat; echo done",
    ]);
    let input = ctrd.dir.path().join("input.txt");
    std::fs::write(&input, "line one\nline two\n").unwrap();
    cmd.stdin(std::fs::File::open(&input).unwrap());
    let out = run_command_with_stdin(cmd, &ctrd.dir.path().join("scratch"));
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, "line one\nline two\ndone\n", "{out}");
}

/// Like [`run_command`], but keeps the stdin the command was given.
fn run_command_with_stdin(mut cmd: Command, scratch: &Path) -> Output {
    let out_path = scratch.join(format!("stdin-{}.out", std::process::id()));
    let err_path = scratch.join(format!("stdin-{}.err", std::process::id()));
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("spawn ctr");
    let Some(status) = poll_until(Duration::from_secs(60), || child.try_wait().unwrap()) else {
        let _ = child.kill();
        panic!("ctr with stdin did not finish in 60 s");
    };
    Output {
        cmd: format!("{cmd:?}"),
        code: status.code(),
        signal: None,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

#[test]
/// User behaviour: `ctr task exec` runs a process in the running container with its own output and exit code
/// (Task Exec/Start/Wait/Delete with an exec_id; TaskExecAdded, TaskExecStarted).
fn shim_exec_runs_in_the_container() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("exec");
    shim_run_detached(&ctrd, &id);
    let out = ctrd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo in-exec; exit 3",
    ]);
    assert_eq!(out.code, Some(3), "{out}\ncontainerd log:\n{}", ctrd.log());
    assert_eq!(out.stdout.trim(), "in-exec", "{out}");
    // The exec's process shares the container's PID namespace: it sees the init as PID 1.
    let out = ctrd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        &id,
        "cat",
        "/proc/1/cmdline",
    ]);
    out.ok();
    assert!(out.stdout.starts_with("sleep"), "{out}");
}

#[test]
/// Bad requests get clear errors and change nothing: an exec ID in use, a task that does not exist, starting a
/// task twice.
fn shim_refuses_bad_requests() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("bad");
    shim_run_detached(&ctrd, &id);
    ctrd.ctr(&[
        "task",
        "exec",
        "-d",
        "--exec-id",
        "dup",
        &id,
        "sleep",
        "300",
    ])
    .ok();
    let out = ctrd.ctr(&["task", "exec", "--exec-id", "dup", &id, "true"]);
    out.fails().stderr_mentions("already exists");
    ctrd.ctr(&["task", "start", &id])
        .fails()
        .stderr_mentions("already");
    ctrd.ctr(&["task", "kill", "no-such-task"])
        .fails()
        .stderr_mentions("not found");
    assert_eq!(
        task_status(&ctrd, &id),
        "RUNNING",
        "a refused request changed the task"
    );
}

#[test]
/// User behaviour: `ctr task kill` signals the container; its exit status is 128+signal (SIGKILL: 137), reported
/// by TaskExit and by `ctr task delete`.
fn shim_kill_reports_the_signal_exit_status() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("kill");
    shim_run_detached(&ctrd, &id);
    assert_eq!(task_status(&ctrd, &id), "RUNNING");
    ctrd.ctr(&["task", "kill", "--signal", "SIGKILL", &id]).ok();
    eventually("the task stops", Duration::from_secs(20), || {
        task_status(&ctrd, &id) == "STOPPED"
    });
    let out = ctrd.ctr(&["task", "delete", &id]);
    out.ok();
    assert!(
        out.stderr.contains("137"),
        "ctr should report exit code 137: {out}"
    );
    ctrd.ctr(&["containers", "delete", &id]).ok();
}

#[test]
/// User behaviour: `ctr task pause` freezes every process of the container (the freezer cgroup says FROZEN, the
/// task says PAUSED) and `resume` thaws it (TaskPaused, TaskResumed).
fn shim_pause_and_resume() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("pause");
    shim_run_detached(&ctrd, &id);
    let pid = task_pid(&ctrd, &id);
    ctrd.ctr(&["task", "pause", &id]).ok();
    assert_eq!(task_status(&ctrd, &id), "PAUSED");
    assert!(is_frozen(pid), "the paused container's cgroup is frozen");
    ctrd.ctr(&["task", "resume", &id]).ok();
    assert_eq!(task_status(&ctrd, &id), "RUNNING");
    assert!(!is_frozen(pid), "the resumed container's cgroup is thawed");
}

/// Whether `pid`'s cgroup is frozen: the v1 freezer's `freezer.state`, else cgroup v2's `cgroup.events`.
fn is_frozen(pid: i32) -> bool {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v1 = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == "freezer")
            .then(|| path.to_string())
    });
    if let Some(path) = v1 {
        let file = Path::new("/sys/fs/cgroup/freezer")
            .join(path.trim_start_matches('/'))
            .join("freezer.state");
        return std::fs::read_to_string(&file).unwrap().trim() == "FROZEN";
    }
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 path");
    let file = Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("cgroup.events");
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .any(|l| l == "frozen 1")
}

#[test]
/// User behaviour: `ctr task metrics` shows the container's cgroup statistics (Task Stats returns containerd's
/// cgroups Metrics), and `ctr task ps` lists its processes with the exec's ID (Task Pids).
fn shim_metrics_and_ps() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("metrics");
    shim_run_detached(&ctrd, &id);
    ctrd.ctr(&[
        "task",
        "exec",
        "-d",
        "--exec-id",
        "sleeper",
        &id,
        "sleep",
        "300",
    ])
    .ok();
    let out = ctrd.ctr(&["task", "metrics", &id]);
    out.ok();
    let value = |name: &str| -> Option<u64> {
        out.stdout.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&name)).then(|| f.get(1)?.parse().ok())?
        })
    };
    if cgroup::mode() != cgroup::Mode::Unified {
        assert_eq!(value("pids.current"), Some(2), "{out}");
        assert!(value("memory.usage_in_bytes").unwrap_or(0) > 0, "{out}");
        assert!(value("cpuacct.usage").unwrap_or(0) > 0, "{out}");
    } else {
        assert_eq!(value("pids.current"), Some(2), "{out}");
    }
    let ps = ctrd.ctr(&["task", "ps", &id]);
    ps.ok();
    let rows: Vec<&str> = ps.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "init and the exec: {ps}");
    assert!(
        rows.iter().any(|r| r.contains("sleeper")),
        "the exec's ID in INFO: {ps}"
    );
}

/// Runs `cmd` (whose process runs `polis-probe tty` and exits with `code`) on a terminal of `rows` x `cols` and
/// checks that the process had a terminal on all three streams, of that size, and that its exit code came back.
fn assert_probe_on_terminal(cmd: Command, rows: u16, cols: u16, code: i32) {
    let session = run_on_terminal(cmd, rows, cols, "", None);
    assert_eq!(session.code, Some(code), "{}", session.output);
    let probe = parse_last_json(&session.output.replace('\r', ""))
        .unwrap_or_else(|| panic!("{}", session.output));
    assert_eq!(
        probe["tty"],
        json!([true, true, true]),
        "{}",
        session.output
    );
    assert_eq!(probe["winsize"], json!([rows, cols]), "{}", session.output);
}

/// A script that waits (up to 10 s) until its terminal has a size, runs `polis-probe tty` and exits with `code`.
/// The terminal starts at 0x0 (where `stty size` fails): ctr sends the caller's size (ResizePty) only after the
/// task has started, so the script polls the probe's own reading until it is not 0x0.
fn sized_then_probe_tty(code: i32) -> String {
    format!(
        "i=0; while /bin/polis-probe tty | grep -q '\"winsize\":\\[0,0\\]' && [ $i -lt 200 ]; do \
         sleep 0.05; i=$((i+1)); done; /bin/polis-probe tty; exit {code}"
    )
}

#[test]
/// User behaviour: `ctr run -t` gives the container a terminal of the caller's size (console socket, ResizePty)
/// and returns its exit code.
fn shim_run_with_a_terminal() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let cmd = ctrd.ctr_command(&[
        "run",
        "--rm",
        "-t",
        "--runtime",
        RUNTIME,
        IMAGE,
        &unique_id("tty"),
        "sh",
        "-c",
        &sized_then_probe_tty(5),
    ]);
    assert_probe_on_terminal(cmd, 33, 111, 5);
}

#[test]
/// Reliability: when containerd kills a shim (SIGKILL), its cleanup (`containerd-shim-polis-v2 delete`) leaves no
/// container process, runtime state, cgroup or mount behind.
fn shim_killed_leaves_nothing_behind() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("shimkill");
    shim_run_detached(&ctrd, &id);
    let pid = task_pid(&ctrd, &id);
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let shims = shim_processes(&ctrd);
    assert_eq!(shims.len(), 1, "one shim for the task");
    // SAFETY: killing the shim this test's containerd started.
    unsafe { libc::kill(shims[0], libc::SIGKILL) };
    eventually(
        "the container's init is gone",
        Duration::from_secs(30),
        || !Path::new(&format!("/proc/{pid}")).exists(),
    );
    ctrd.ctr(&["task", "delete", &id]);
    ctrd.ctr(&["containers", "delete", &id]).ok();
    let socket = shim_socket(&ctrd, &id);
    // containerd runs the cleanup when it notices the shim's connection closed; give it a moment under load.
    let removed = poll_until(Duration::from_secs(10), || (!socket.exists()).then_some(()));
    if removed.is_none() {
        let listeners = Command::new("ss")
            .args(["-xlp"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        panic!(
            "the dead shim's socket is left: {}\nlisteners on it: {:?}\ncontainerd log:\n{}",
            socket.display(),
            listeners
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&socket.display().to_string()))
                .collect::<Vec<_>>(),
            ctrd.log()
        );
    }
    let state = Path::new("/run/containerd/polis-runc")
        .join(CGROUP_PARENT)
        .join(&id);
    assert!(!state.exists(), "runtime state left: {}", state.display());
    let bundle_mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&id))
        .map(str::to_string)
        .collect();
    assert!(bundle_mounts.is_empty(), "mounts left: {bundle_mounts:?}");
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let ctrl = ctrls.split(',').next().unwrap_or_default();
        if ctrl.is_empty() || ctrl.starts_with("name=") || !path.contains(&id) {
            continue;
        }
        let dir = Path::new("/sys/fs/cgroup")
            .join(ctrl)
            .join(path.trim_start_matches('/'));
        assert!(!dir.exists(), "cgroup left: {}", dir.display());
    }
}

#[test]
/// A container's stdio is its own: the shim's `start` prints nothing but the address, and a container that
/// exits at once (before Start returns to ctr) still reports its exit code.
fn shim_reports_an_immediate_exit() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    for n in 0..5 {
        let out = shim_run(
            &ctrd,
            &unique_id(&format!("quick{n}")),
            &[],
            &["sh", "-c", "exit 42"],
        );
        assert_eq!(out.code, Some(42), "{out}");
    }
}

/// The containerd namespace whose label updates tell that `ctr events` has subscribed.
const EVENTS_CANARY: &str = "polis-events-canary";

/// `ctr events` running in the background; `topics()` lists what it printed for `id`, in order.
struct EventLog {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl EventLog {
    fn start(ctrd: &Containerd) -> EventLog {
        let file = ctrd
            .dir
            .path()
            .join(format!("events-{}.txt", std::process::id()));
        let mut cmd = ctrd.ctr_command(&["events"]);
        cmd.stdout(std::fs::File::create(&file).unwrap())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("start ctr events");
        // ctr subscribes asynchronously, and a subscriber sees only the events published after it subscribed. So
        // publish harmless ones (label updates of a namespace of its own, which name no container) until ctr prints
        // one: from then on it sees every event.
        ctrd.ctr(&["namespaces", "create", EVENTS_CANARY]).ok();
        let mut n = 0;
        eventually(
            "`ctr events` has subscribed (prints a /namespaces/update event)",
            Duration::from_secs(20),
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("ctr events exited with {st}");
                }
                n += 1;
                ctrd.ctr(&[
                    "namespaces",
                    "label",
                    EVENTS_CANARY,
                    &format!("subscribed={n}"),
                ])
                .ok();
                std::fs::read_to_string(&file)
                    .unwrap_or_default()
                    .contains(&format!(
                        "/namespaces/update {{\"name\":\"{EVENTS_CANARY}\""
                    ))
            },
        );
        EventLog { child, file }
    }

    /// The topics of the events that name container `id`, as `ctr events` printed them.
    fn topics(&self, id: &str) -> Vec<String> {
        let text =
            String::from_utf8_lossy(&std::fs::read(&self.file).unwrap_or_default()).into_owned();
        text.lines()
            .filter(|l| l.contains(&format!("\"container_id\":\"{id}\"")))
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_string))
            .collect()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
/// The shim publishes the task events containerd expects, in order (shim v2 protocol, "Events"): create, start,
/// exec-added, exec-started, the exec's exit, paused, resumed, the init's exit, delete.
fn shim_publishes_task_events() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let events = EventLog::start(&ctrd);
    let id = unique_id("events");
    shim_run_detached(&ctrd, &id);
    ctrd.ctr(&["task", "exec", "--exec-id", "e1", &id, "true"])
        .ok();
    ctrd.ctr(&["task", "pause", &id]).ok();
    ctrd.ctr(&["task", "resume", &id]).ok();
    ctrd.ctr(&["task", "kill", "--signal", "SIGKILL", &id]).ok();
    eventually("the task stops", Duration::from_secs(20), || {
        task_status(&ctrd, &id) == "STOPPED"
    });
    ctrd.ctr(&["task", "delete", &id]).ok();
    let want = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/delete",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    eventually("every event arrives", Duration::from_secs(10), || {
        events.topics(&id).len() >= want.len()
    });
    assert_eq!(events.topics(&id), want);
}

#[test]
/// The kernel's OOM killer acting in the container's memory cgroup is published as /tasks/oom.
fn shim_reports_oom_kills() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let events = EventLog::start(&ctrd);
    let id = unique_id("oom");
    // dd's 64 MiB buffer cannot fit under a 16 MiB limit (this machine has no swap to hide it).
    let out = shim_run(
        &ctrd,
        &id,
        &["--memory-limit", "16777216"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd-status=$?",
        ],
    );
    out.ok();
    assert!(
        out.stdout.contains("dd-status=137"),
        "dd should be OOM-killed: {out}"
    );
    eventually("/tasks/oom arrives", Duration::from_secs(10), || {
        events.topics(&id).iter().any(|t| t == "/tasks/oom")
    });
}

#[test]
/// Reliability: containerd restarted while a container runs: the container keeps running, stays manageable (exec,
/// kill, delete), and its exit still reaches containerd.
fn shim_survives_a_containerd_restart() {
    let Some(mut ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("restart");
    shim_run_detached(&ctrd, &id);
    let pid = task_pid(&ctrd, &id);
    ctrd.restart();
    assert_eq!(
        task_status(&ctrd, &id),
        "RUNNING",
        "containerd log:\n{}",
        ctrd.log()
    );
    assert_eq!(task_pid(&ctrd, &id), pid);
    let out = ctrd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        &id,
        "echo",
        "still-here",
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "still-here");
    ctrd.ctr(&["task", "kill", "--signal", "SIGKILL", &id]).ok();
    eventually("the task stops", Duration::from_secs(20), || {
        task_status(&ctrd, &id) == "STOPPED"
    });
    let out = ctrd.ctr(&["task", "delete", &id]);
    out.ok();
    assert!(out.stderr.contains("137"), "{out}");
    ctrd.ctr(&["containers", "delete", &id]).ok();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
/// Reliability: 50 containers started in parallel through containerd each return their own exit code, and
/// nothing is left afterwards: no task, no shim, no runtime state.
fn shim_runs_fifty_containers_in_parallel() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let ctrd = &ctrd;
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..50)
            .map(|n| {
                scope.spawn(move || {
                    let id = unique_id(&format!("par{n}"));
                    let out = shim_run(
                        ctrd,
                        &id,
                        &[],
                        &["sh", "-c", &format!("echo run-{n}; exit {}", n + 1)],
                    );
                    (n, out)
                })
            })
            .collect();
        for run in runs {
            let (n, out) = run.join().expect("a run thread panicked");
            assert_eq!(out.code, Some(n + 1), "{out}");
            assert_eq!(out.stdout.trim(), format!("run-{n}"), "{out}");
        }
    });
    let tasks = ctrd.ctr(&["task", "ls", "-q"]);
    assert!(tasks.stdout.trim().is_empty(), "tasks left: {tasks}");
    assert!(shim_processes(ctrd).is_empty(), "shims left");
    let root = Path::new("/run/containerd/polis-runc").join(CGROUP_PARENT);
    let left: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("par") && n.ends_with(&format!("-{}", std::process::id())))
        .collect();
    assert!(left.is_empty(), "runtime state left: {left:?}");
}

#[test]
/// Checkpoint is not something polis-runc can do: the Task API's Checkpoint answers with a clear "not supported"
/// error, and the task keeps running.
fn shim_refuses_checkpoint_clearly() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("ckpt");
    shim_run_detached(&ctrd, &id);
    ctrd.ctr(&["task", "checkpoint", &id])
        .fails()
        .stderr_mentions("not supported");
    assert_eq!(task_status(&ctrd, &id), "RUNNING");
}

#[test]
/// User behaviour: `ctr task kill --all` signals every process of the container, execs included (Kill with all).
fn shim_kill_all_reaches_every_process() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("killall");
    shim_run_detached(&ctrd, &id);
    ctrd.ctr(&[
        "task",
        "exec",
        "-d",
        "--exec-id",
        "extra",
        &id,
        "sleep",
        "300",
    ])
    .ok();
    let ps = ctrd.ctr(&["task", "ps", &id]);
    let pids: Vec<i32> = ps
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{ps}");
    ctrd.ctr(&["task", "kill", "--all", "--signal", "SIGKILL", &id])
        .ok();
    eventually(
        "every process of the task is gone",
        Duration::from_secs(20),
        || {
            pids.iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        },
    );
    eventually("the task stops", Duration::from_secs(20), || {
        task_status(&ctrd, &id) == "STOPPED"
    });
}

#[test]
/// User behaviour: `ctr task exec -t` gives the exec its own terminal of the caller's size (console socket and
/// ResizePty for an exec) and returns its exit code.
fn shim_exec_with_a_terminal() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let id = unique_id("exectty");
    shim_run_detached(&ctrd, &id);
    let cmd = ctrd.ctr_command(&[
        "task",
        "exec",
        "-t",
        "--exec-id",
        "tty",
        &id,
        "sh",
        "-c",
        &sized_then_probe_tty(6),
    ]);
    assert_probe_on_terminal(cmd, 27, 99, 6);
}

#[test]
/// Regression, and one shim per pod: `containerd-shim-polis-v2 start` for another container of a pod whose shim
/// already runs (same `io.kubernetes.cri.sandbox-id`) answers with that shim's address at once, 60 times in a row.
/// It used to spawn a second shim that found the address taken and exited, and that early exit could make `start`
/// spin for ever in containerd-shim's signal handlers (SIGCHLD, EPIPE on signal-hook's closed pipe, SIGPIPE):
/// containerd saw a hung task create (about once in 40 `start`s here).
fn shim_start_for_a_pods_second_container_reuses_its_shim() {
    let Some(ctrd) = containerd_with_image() else {
        return;
    };
    let pod = unique_id("pod");
    shim_run_detached(&ctrd, &pod);
    let pod_socket = shim_socket(&ctrd, &pod);
    assert!(
        pod_socket.exists(),
        "the pod's shim serves {}",
        pod_socket.display()
    );
    let dir = temp_dir("polis-it-shim-start-");
    let bundle = dir.path();
    std::fs::write(
        bundle.join("config.json"),
        json!({"ociVersion": "1.2.0", "annotations": {"io.kubernetes.cri.sandbox-id": pod}})
            .to_string(),
    )
    .unwrap();
    // The shim's log fifo, with the reader containerd keeps on it (a spawned shim opens it for writing first).
    let log = bundle.join("log");
    let st = Command::new("mkfifo").arg(&log).status().unwrap();
    assert!(st.success(), "mkfifo {}", log.display());
    let _log_reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)
        .unwrap();
    let scratch = bundle.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    for n in 0..60 {
        let mut cmd = Command::new(shim_binary());
        cmd.current_dir(bundle)
            .env(
                "TTRPC_ADDRESS",
                ctrd.dir.path().join("containerd.sock.ttrpc"),
            )
            .args(["-namespace", &ctrd.namespace, "-address"])
            .arg(ctrd.socket())
            .args([
                "-publish-binary",
                "/usr/bin/containerd",
                "-id",
                &format!("second-{n}"),
                "start",
            ]);
        let out = run_command(cmd, &scratch, Duration::from_secs(10));
        out.ok();
        assert_eq!(
            out.stdout,
            format!("unix://{}", pod_socket.display()),
            "{out}"
        );
    }
    assert_eq!(shim_processes(&ctrd).len(), 1, "still one shim for the pod");
}
