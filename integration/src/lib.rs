//! Harness for the OCI runtime-spec conformance suite.
//!
//! Every conformance test is written once against a [`Runtime`] and run twice by [`conformance_test!`]: against
//! Debian's runc (the control, `/usr/sbin/runc`) and against polis-runc (`$POLIS_RUNC`, default
//! `<workspace>/target/release/polis-runc`). A [`Bundle`] is a private temp dir with a busybox rootfs, the static
//! `polis-probe` binary and a `config.json` that tests edit as JSON. A [`Container`] owns one container ID and deletes
//! the container (`delete --force`), its cgroup and its files when dropped, so a failing test cleans up too.
//!
//! This module touches the host: it runs container runtimes, reads cgroup files and creates network namespaces.

use std::cell::RefCell;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod containerd;
pub mod image_builder;
pub mod netns;
pub mod pki;
pub mod polisd;
pub mod registry_front;
pub use netns::NetNs;
pub use serde_json::{Value, json};

/// Deadline for one runtime command and for a wait on a container state. Healthy commands take well under a second
/// even on a loaded 2-core machine; a short deadline keeps a hung runtime from stalling the suite for hours.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Parent of every test container's cgroup, so that leftovers are easy to find: `/sys/fs/cgroup/*/polis-test/`.
pub const CGROUP_PARENT: &str = "polis-test";

/// Host path of Debian's busybox-static, copied into every rootfs.
pub const BUSYBOX: &str = "/bin/busybox";

/// Host path of the control runtime.
pub const RUNC: &str = "/usr/sbin/runc";

/// Applets linked into every rootfs as symlinks to `/bin/busybox`.
const APPLETS: &[&str] = &[
    "sh",
    "cat",
    "echo",
    "ls",
    "sleep",
    "true",
    "false",
    "id",
    "hostname",
    "mount",
    "umount",
    "grep",
    "stat",
    "touch",
    "mkdir",
    "rm",
    "rmdir",
    "env",
    "pwd",
    "ps",
    "kill",
    "head",
    "tail",
    "wc",
    "ln",
    "chmod",
    "chown",
    "readlink",
    "test",
    "printf",
    "whoami",
    "uname",
    "dd",
    "cut",
    "tr",
    "sed",
    "awk",
    "find",
    "mknod",
    "sort",
    "cp",
    "mv",
    "date",
    "nproc",
    "mkfifo",
    "domainname",
    "sync",
    "xargs",
    "seq",
    "basename",
    "dirname",
];

/// Runs `$body` against both runtimes: `mod $name { #[test] fn runc(); #[test] fn polis() }`.
///
/// Doc comments before the name go on the module; by convention they cite the spec clause the test checks.
#[macro_export]
macro_rules! conformance_test {
    ($(#[$meta:meta])* $name:ident, |$rt:ident| $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn check($rt: &$crate::Runtime) $body

            #[test]
            fn runc() {
                if let Some(rt) = $crate::Runtime::runc(stringify!($name)) {
                    check(&rt)
                }
            }

            #[test]
            fn polis() {
                if let Some(rt) = $crate::Runtime::polis(stringify!($name)) {
                    check(&rt)
                }
            }
        }
    };
    // A clause the control runtime (runc 1.1.5, runtime-spec 1.0.2) does not implement: its variant is ignored
    // with the reason, and still runs with `--ignored`.
    ($(#[$meta:meta])* $name:ident, runc_lacks = $why:literal, |$rt:ident| $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn check($rt: &$crate::Runtime) $body

            #[test]
            #[ignore = $why]
            fn runc() {
                if let Some(rt) = $crate::Runtime::runc(stringify!($name)) {
                    check(&rt)
                }
            }

            #[test]
            fn polis() {
                if let Some(rt) = $crate::Runtime::polis(stringify!($name)) {
                    check(&rt)
                }
            }
        }
    };
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// True where a missing peer is a failure rather than a skip: under `make test` (which sets
/// POLIS_REQUIRE_PEERS=1) and under CI (CI=true).
pub fn is_ci() -> bool {
    let set = |var: &str, value: &str| std::env::var(var).is_ok_and(|v| v == value);
    set("POLIS_REQUIRE_PEERS", "1") || set("CI", "true")
}

/// A peer binary is missing: a failure under `make test` and CI, a notice otherwise (a developer's `cargo test`).
/// Returns `None` for the caller to skip.
pub fn missing_peer<T>(what: &str) -> Option<T> {
    if is_ci() {
        panic!(
            "{what} is missing, and `make test` (POLIS_REQUIRE_PEERS=1) or CI=true makes a missing peer a failure"
        );
    }
    eprintln!("notice: {what} is missing; skipping this test (set CI=true to make this a failure)");
    None
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A temp dir readable by everyone (user-namespaced containers must traverse bundles), removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

// ---------------------------------------------------------------------------------------------------------------
// The probe

/// Path of the static `polis-probe` binary: `$POLIS_PROBE`, or `<workspace>/target/polis-probe`, built on first use
/// (under a file lock, into a target dir of its own) when missing or older than its source.
pub fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        if let Some(p) = std::env::var_os("POLIS_PROBE") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "POLIS_PROBE={} does not exist", p.display());
            return p;
        }
        let ws = workspace_root();
        let target = ws.join("target/polis-probe");
        let source = ws.join("integration/src/bin/polis-probe.rs");
        let fresh = |t: &Path| match (
            fs::metadata(t).and_then(|m| m.modified()),
            fs::metadata(&source).and_then(|m| m.modified()),
        ) {
            (Ok(built), Ok(src)) => built >= src,
            (Ok(_), Err(_)) => true,
            _ => false,
        };
        if fresh(&target) {
            return target;
        }
        fs::create_dir_all(ws.join("target")).expect("create target dir");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(ws.join("target/polis-probe.lock"))
            .expect("open probe lock");
        // SAFETY: flock on a descriptor we own; released when `lock` is closed.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock probe lock");
        if fresh(&target) {
            return target;
        }
        let build_dir = ws.join("target/probe-build");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&ws)
            .args([
                "rustc",
                "--release",
                "-p",
                "polis-integration",
                "--bin",
                "polis-probe",
                "--target-dir",
            ])
            .arg(&build_dir)
            .args(["--", "-C", "target-feature=+crt-static"])
            .status()
            .expect("run cargo to build polis-probe");
        assert!(status.success(), "building polis-probe failed");
        let tmp = ws.join(format!("target/polis-probe.{}", std::process::id()));
        fs::copy(build_dir.join("release/polis-probe"), &tmp).expect("copy polis-probe");
        fs::rename(&tmp, &target).expect("install polis-probe");
        drop(lock);
        target
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Command output

/// What one command did: exit code (or signal), stdout and stderr.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmd: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole output unless the command succeeded.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "command failed but should succeed: {self}");
        self
    }

    /// Panics unless the command failed.
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(!self.success(), "command succeeded but should fail: {self}");
        self
    }

    /// Panics unless stderr mentions `needle` (case-insensitive).
    #[track_caller]
    pub fn stderr_mentions(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}: {self}"
        );
        self
    }

    /// stdout as one JSON object, else its last line that parses as one.
    #[track_caller]
    pub fn json(&self) -> Value {
        parse_last_json(&self.stdout).unwrap_or_else(|| panic!("no JSON in stdout: {self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with code {:?} signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.code, self.signal, self.stdout, self.stderr
        )
    }
}

/// `text` as one JSON object, else the last line of `text` that parses as a JSON object.
pub fn parse_last_json(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text.trim()) {
        if v.is_object() {
            return Some(v);
        }
    }
    text.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l.trim())
            .ok()
            .filter(Value::is_object)
    })
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into files under `scratch` (a container started by the
/// command may keep them open after the command exits); panics if it is still running after `timeout` (after
/// killing it).
pub fn run_command(cmd: Command, scratch: &Path, timeout: Duration) -> Output {
    match try_run_command(cmd, scratch, timeout) {
        Ok(out) => out,
        Err(out) => panic!(
            "{} did not finish in {timeout:?}; stderr so far: {}",
            out.cmd, out.stderr
        ),
    }
}

/// Like [`run_command`] but never panics: `Err` (with what the command printed) when it timed out and was killed.
/// Cleanup code (`Drop`) uses this, since a panic while a test is already panicking aborts the whole test binary
/// and skips every other cleanup.
pub fn try_run_command(
    mut cmd: Command,
    scratch: &Path,
    timeout: Duration,
) -> Result<Output, Output> {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let out_path = scratch.join(format!("cmd-{n}.out"));
    let err_path = scratch.join(format!("cmd-{n}.err"));
    let desc = format!("{cmd:?}").replace('"', "");
    let failed = |msg: String| Output {
        cmd: desc.clone(),
        code: None,
        signal: None,
        stdout: String::new(),
        stderr: msg,
    };
    let (Ok(out), Ok(err)) = (fs::File::create(&out_path), fs::File::create(&err_path)) else {
        return Err(failed(format!(
            "cannot create capture files in {}",
            scratch.display()
        )));
    };
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Err(failed(format!("spawn failed: {e}"))),
    };
    let deadline = Instant::now() + timeout;
    let status = wait_until(&mut child, deadline);
    let output = Output {
        cmd: desc.clone(),
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    };
    if status.is_some() {
        Ok(output)
    } else {
        Err(output)
    }
}

/// The harness's one poll loop: calls `attempt` until it returns Some and returns that, or None once `limit` has
/// passed (after one last call at the deadline). It pauses 10 ms after the first call and twice as long after each
/// next one, up to 50 ms, so that a condition that holds at once costs nothing and a slow one few calls.
///
/// Tests wait through [`eventually`] and [`eventually_some`], which fail naming what was awaited. Call this directly
/// only where a timeout must not panic (a `Drop`, a thread that reports errors as values) or where the failure
/// should show what was seen instead (a daemon's log, the last state), read once at the deadline.
pub fn poll_until<T>(limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(found) = attempt() {
            return Some(found);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // The poll helper's own pause between attempts (see above).
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Polls `done` (see [`poll_until`]) until it holds; panics naming `what` after `limit`.
#[track_caller]
pub fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    eventually_some(what, limit, || done().then_some(()))
}

/// Polls `found` (see [`poll_until`]) until it returns Some, and returns that value; panics naming `what` after
/// `limit`.
#[track_caller]
pub fn eventually_some<T>(what: &str, limit: Duration, found: impl FnMut() -> Option<T>) -> T {
    match poll_until(limit, found) {
        Some(value) => value,
        None => panic!("timed out after {limit:?} waiting until {what}"),
    }
}

/// Waits for `child` until `deadline`; kills it then (None). The low-level wait under every command the harness
/// runs, so it keeps its own loop: it checks every 5 ms (not [`poll_until`]'s up to 50 ms) because most runtime
/// commands end within a few tens of milliseconds and each test runs dozens of them.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            // The low-level wait's own 5 ms pause (see above).
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return None,
        }
    }
}

/// Runs `cmd` whose stdout the caller already redirected; stderr is captured. Panics on timeout.
fn run_command_keep_stdout(mut cmd: Command, scratch: &Path, timeout: Duration) -> Output {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let err_path = scratch.join(format!("cmd-{n}.err"));
    let err = fs::File::create(&err_path).expect("create stderr file");
    let desc = format!("{cmd:?}").replace('"', "");
    cmd.stdin(Stdio::null()).stderr(err);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let Some(status) = wait_until(&mut child, Instant::now() + timeout) else {
        panic!(
            "{desc} did not finish in {timeout:?}: {}",
            fs::read_to_string(&err_path).unwrap_or_default()
        );
    };
    Output {
        cmd: desc,
        code: status.code(),
        signal: status.signal(),
        stdout: String::new(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Runtime

/// One runtime binary with a private `--root` state directory for one test.
pub struct Runtime {
    /// "runc" or "polis"
    pub name: &'static str,
    pub path: PathBuf,
    test: String,
    dir: tempfile::TempDir,
    /// Whether commands run in a mount namespace where /sys/fs/cgroup is the cgroup2 hierarchy.
    cgroup2_view: std::cell::Cell<bool>,
}

impl Runtime {
    /// Debian's runc, the control. `None` (after a notice) when it is missing outside CI.
    pub fn runc(test: &str) -> Option<Runtime> {
        let path = PathBuf::from(RUNC);
        if !path.is_file() {
            return missing_peer(&format!("runc ({RUNC})"));
        }
        Some(Runtime::new("runc", path, test))
    }

    /// polis-runc from `$POLIS_RUNC` or `<workspace>/target/release/polis-runc`.
    pub fn polis(test: &str) -> Option<Runtime> {
        let path = polis_runc_path();
        if !path.is_file() {
            return missing_peer(&format!("polis-runc ({})", path.display()));
        }
        Some(Runtime::new("polis", path, test))
    }

    fn new(name: &'static str, path: PathBuf, test: &str) -> Runtime {
        let dir = temp_dir(&format!("polis-it-{name}-"));
        fs::create_dir(dir.path().join("root")).expect("create runtime root");
        fs::create_dir(dir.path().join("scratch")).expect("create scratch dir");
        Runtime {
            name,
            path,
            test: test.replace('_', "-"),
            dir,
            cgroup2_view: std::cell::Cell::new(false),
        }
    }

    /// Makes this runtime see a cgroup v2 host from now on, so that it takes its cgroup v2 code paths. On a v2
    /// host that is the host itself. On a hybrid host each command runs in a mount namespace of its own where
    /// /sys/fs/cgroup is the cgroup2 hierarchy (bind-mounted from /sys/fs/cgroup/unified): every v2 mechanism
    /// works there (cgroup.procs, cgroup.freeze, cgroup.kill, eBPF device programs), but no resource controller
    /// is available, since they are bound to the v1 hierarchies. False (after a notice) on a v1-only host.
    pub fn use_cgroup2_view(&self) -> bool {
        match cgroup::mode() {
            cgroup::Mode::Unified => true,
            cgroup::Mode::Hybrid => {
                self.cgroup2_view.set(true);
                true
            }
            cgroup::Mode::Legacy => {
                eprintln!("notice: {}: no cgroup2 hierarchy on this host", self.test);
                false
            }
        }
    }

    pub fn is_polis(&self) -> bool {
        self.name == "polis"
    }

    /// The runtime's `--root` directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A directory for this test's throw-away files (hook output, captured stdio).
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// `<runtime> --root R ARGS...`
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = if self.cgroup2_view.get() {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup && exec \"$0\" \"$@\"")
                .arg(&self.path);
            c
        } else {
            Command::new(&self.path)
        };
        cmd.arg("--root").arg(self.root()).args(args);
        cmd
    }

    /// Runs `<runtime> --root R ARGS...` to completion.
    pub fn cmd<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        run_command(self.command(args), &self.scratch(), COMMAND_TIMEOUT)
    }

    /// A new container ID owned by this test; the container is force-deleted when the handle drops.
    pub fn container(&self) -> Container<'_> {
        let id = unique(&format!("{}-{}", self.test, self.name));
        Container {
            rt: self,
            id,
            stdout: RefCell::new(None),
        }
    }

    /// A handle for a container ID chosen by the test (bad IDs, duplicates); cleaned up like any other.
    pub fn container_named(&self, id: &str) -> Container<'_> {
        Container {
            rt: self,
            id: id.to_string(),
            stdout: RefCell::new(None),
        }
    }

    /// Per-container entries in the `--root` directory: every visible entry (a runtime keeps one per container),
    /// and every file inside a hidden directory (polis-runc keeps its lock files in `.locks/`; an empty lock
    /// directory is bookkeeping, a lock file left for a deleted container is a leak).
    pub fn state_entries(&self) -> Vec<String> {
        state_entries(&self.root())
    }

    /// Asserts that the runtime keeps no state at all: no container directory under `--root`.
    #[track_caller]
    pub fn assert_no_state(&self) {
        let entries = self.state_entries();
        assert!(
            entries.is_empty(),
            "{} left state under its --root: {entries:?}",
            self.name
        );
    }
}

/// Per-container entries of a runtime state directory `root` (see [`Runtime::state_entries`]).
pub fn state_entries(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            v.push(name);
        } else if e.path().is_dir() {
            for inner in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                v.push(format!("{name}/{}", inner.file_name().to_string_lossy()));
            }
        } else {
            v.push(name);
        }
    }
    v.sort();
    v
}

/// `$POLIS_RUNC`, else `<workspace>/target/release/polis-runc`.
pub fn polis_runc_path() -> PathBuf {
    workspace_binary("POLIS_RUNC", "polis-runc")
}

/// Address number `index` of a CNI result (`ips[index].address`), without its prefix length.
pub fn cni_result_address(result: &serde_json::Value, index: usize) -> String {
    result["ips"][index]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address {index} in {result}"))
        .to_string()
}

/// A binary of the workspace: `$ENV_VAR` when set, else `<workspace>/target/release/NAME` (what `make build` made).
pub fn workspace_binary(env_var: &str, name: &str) -> PathBuf {
    std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release").join(name))
}

// ---------------------------------------------------------------------------------------------------------------
// Container

/// One container ID under one runtime. Dropping it runs `delete --force` and removes its cgroup.
pub struct Container<'a> {
    pub rt: &'a Runtime,
    pub id: String,
    stdout: RefCell<Option<PathBuf>>,
}

impl Container<'_> {
    /// The cgroupsPath the harness gives this container unless the test set one.
    pub fn cgroups_path(&self) -> String {
        format!("/{CGROUP_PARENT}/{}", self.id)
    }

    fn prepare(&self, bundle: &Bundle) {
        bundle.write_config(Some(&self.cgroups_path()));
    }

    fn run_captured(&self, args: Vec<std::ffi::OsString>, timeout: Duration) -> Output {
        let scratch = self.rt.scratch();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // The container's process inherits stdout: keep it in a file of its own that `output()` reads later.
        let out_path = scratch.join(format!("container-{n}.stdout"));
        let out = fs::File::create(&out_path).expect("create container stdout file");
        let mut cmd = self.rt.command(&args);
        cmd.stdout(out);
        *self.stdout.borrow_mut() = Some(out_path.clone());
        let mut output = run_command_keep_stdout(cmd, &scratch, timeout);
        output.stdout = fs::read_to_string(&out_path).unwrap_or_default();
        output
    }

    /// `create --bundle B ID`; the container's stdout goes to a file that [`Container::output`] reads.
    pub fn create(&self, bundle: &Bundle) -> Output {
        self.create_with(bundle, &[])
    }

    /// `create --bundle B EXTRA... ID`
    pub fn create_with(&self, bundle: &Bundle, extra: &[&str]) -> Output {
        self.prepare(bundle);
        let mut args: Vec<std::ffi::OsString> =
            vec!["create".into(), "--bundle".into(), bundle.path().into()];
        args.extend(extra.iter().map(Into::into));
        args.push(self.id.clone().into());
        self.run_captured(args, COMMAND_TIMEOUT)
    }

    /// `--log FILE --log-format json create --bundle B ID` (runc's log contract, which containerd and conmon read);
    /// returns the output and every log line, each parsed as JSON (a line that is not JSON fails the test).
    pub fn create_with_json_log(&self, bundle: &Bundle) -> (Output, Vec<Value>) {
        self.prepare(bundle);
        let log = self.rt.scratch().join(format!("{}.log", self.id));
        let out = self.rt.cmd(&[
            "--log".as_ref(),
            log.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
            "create".as_ref(),
            "--bundle".as_ref(),
            bundle.path().as_os_str(),
            self.id.as_ref(),
        ]);
        let lines = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
            })
            .collect();
        (out, lines)
    }

    /// `run --bundle B ID`: waits for the container's process; stdout is the container's.
    pub fn run(&self, bundle: &Bundle) -> Output {
        self.run_with(bundle, &[])
    }

    /// `run --bundle B EXTRA... ID`
    pub fn run_with(&self, bundle: &Bundle, extra: &[&str]) -> Output {
        self.prepare(bundle);
        let mut args: Vec<std::ffi::OsString> =
            vec!["run".into(), "--bundle".into(), bundle.path().into()];
        args.extend(extra.iter().map(Into::into));
        args.push(self.id.clone().into());
        self.run_captured(args, COMMAND_TIMEOUT)
    }

    /// Starts `run` in the background; returns the child (stdout/stderr to files under scratch) and the path of
    /// its stdout file.
    pub fn spawn_run(&self, bundle: &Bundle) -> (std::process::Child, PathBuf) {
        self.prepare(bundle);
        let out_path = self.rt.scratch().join(format!(
            "{}.run.stdout",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let out = fs::File::create(&out_path).expect("stdout file");
        let mut cmd = self.rt.command(&["run", "--bundle"]);
        cmd.arg(bundle.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null());
        (cmd.spawn().expect("spawn run"), out_path)
    }

    pub fn start(&self) -> Output {
        self.rt.cmd(&["start", &self.id])
    }

    pub fn state(&self) -> Output {
        self.rt.cmd(&["state", &self.id])
    }

    /// The parsed `state` JSON; panics if `state` fails.
    #[track_caller]
    pub fn state_json(&self) -> Value {
        let out = self.state();
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state is not JSON ({e}): {out}"))
    }

    #[track_caller]
    pub fn status(&self) -> String {
        self.state_json()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The host PID of the container's process from `state`.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let st = self.state_json();
        st["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("state has no pid: {st}")) as i32
    }

    pub fn kill(&self, signal: &str) -> Output {
        self.rt.cmd(&["kill", &self.id, signal])
    }

    pub fn delete(&self) -> Output {
        self.rt.cmd(&["delete", &self.id])
    }

    pub fn delete_force(&self) -> Output {
        self.rt.cmd(&["delete", "--force", &self.id])
    }

    /// `exec ID ARGS...` (no terminal); waits for the process.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_with(&[], args)
    }

    /// `exec FLAGS... ID ARGS...`
    pub fn exec_with(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut a: Vec<std::ffi::OsString> = vec!["exec".into()];
        a.extend(flags.iter().map(Into::into));
        a.push(self.id.clone().into());
        a.extend(args.iter().map(Into::into));
        let out = self.rt.command(&a);
        run_command(out, &self.rt.scratch(), COMMAND_TIMEOUT)
    }

    /// Polls `state` until the status is `want`; panics after `COMMAND_TIMEOUT`.
    #[track_caller]
    pub fn wait_status(&self, want: &str) {
        let mut last = Value::Null;
        let reached = poll_until(COMMAND_TIMEOUT, || {
            let st = self.state_json();
            if st["status"] == want {
                return Some(());
            }
            // A stopped container never becomes anything else: fail now instead of at the deadline.
            assert!(
                st["status"] != "stopped",
                "container {} stopped instead of reaching {want}: {st}; its stdout: {:?}",
                self.id,
                self.output()
            );
            last = st;
            None
        });
        assert!(
            reached.is_some(),
            "container {} never reached {want} in {COMMAND_TIMEOUT:?}: {last}",
            self.id
        );
    }

    #[track_caller]
    pub fn wait_stopped(&self) {
        self.wait_status("stopped")
    }

    /// What the container's process wrote to stdout so far (after `create` or `run`).
    pub fn output(&self) -> String {
        self.stdout
            .borrow()
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Waits until the container's stdout has a line that parses as JSON and returns the last such line.
    #[track_caller]
    pub fn wait_output_json(&self) -> Value {
        poll_until(COMMAND_TIMEOUT, || parse_last_json(&self.output())).unwrap_or_else(|| {
            panic!(
                "container {} printed no JSON in {COMMAND_TIMEOUT:?}: {:?}",
                self.id,
                self.output()
            )
        })
    }

    /// create + start + wait until stopped; returns the container's stdout.
    #[track_caller]
    pub fn create_start_wait(&self, bundle: &Bundle) -> String {
        self.create(bundle).ok();
        self.start().ok();
        self.wait_stopped();
        self.output()
    }

    /// create + start a long-running container and wait until it is running.
    #[track_caller]
    pub fn create_running(&self, bundle: &Bundle) {
        self.create(bundle).ok();
        self.start().ok();
        self.wait_status("running");
    }

    /// Host directories of this container's cgroup that exist now.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup::existing_dirs(&self.cgroups_path())
    }

    /// Host processes whose cgroup is this container's.
    pub fn processes(&self) -> Vec<i32> {
        cgroup::processes_in(&self.cgroups_path())
    }

    /// Asserts the runtime left nothing behind for this ID: no state, no cgroup, no process. Reports every leftover
    /// at once.
    #[track_caller]
    pub fn assert_gone(&self) {
        let mut problems = Vec::new();
        let procs = self.processes();
        if !procs.is_empty() {
            problems.push(format!("processes left in its cgroup: {procs:?}"));
        }
        let dirs = self.cgroup_dirs();
        if !dirs.is_empty() {
            problems.push(format!("cgroup dirs left: {dirs:?}"));
        }
        let st = self.state();
        if st.success() {
            problems.push(format!("`state` still succeeds: {}", st.stdout.trim()));
        }
        let entries = self.rt.state_entries();
        if !entries.is_empty() {
            problems.push(format!("state left under --root: {entries:?}"));
        }
        assert!(
            problems.is_empty(),
            "{} left container {} behind:\n  {}",
            self.rt.name,
            self.id,
            problems.join("\n  ")
        );
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if self.id.is_empty() || self.id.contains('/') || self.id == "." || self.id == ".." {
            return;
        }
        // Never panic here (see try_run_command); a hung delete is reported and the processes are killed below.
        if let Err(out) = try_run_command(
            self.rt.command(&["delete", "--force", &self.id]),
            &self.rt.scratch(),
            Duration::from_secs(20),
        ) {
            eprintln!(
                "cleanup: `{}` hung and was killed; killing the container's processes",
                out.cmd
            );
        }
        for pid in self.processes() {
            // SAFETY: plain kill of a process that lives in this test's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // The killed processes leave the cgroup a moment later; until then rmdir fails with EBUSY. A Drop must not
        // panic, so a cgroup still busy after a second is left (and reported by the next run's leftovers check).
        for dir in self.cgroup_dirs() {
            poll_until(Duration::from_secs(1), || {
                (fs::remove_dir(&dir).is_ok() || !dir.exists()).then_some(())
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bundle

/// A bundle directory: `rootfs/` (busybox, its applets, /etc files, /bin/polis-probe) and `config.json`.
pub struct Bundle {
    dir: tempfile::TempDir,
    config: Value,
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

impl Bundle {
    /// A bundle with the default config ([`default_config`]) running `polis-probe report`.
    pub fn new() -> Bundle {
        let dir = temp_dir("polis-it-bundle-");
        let rootfs = dir.path().join("rootfs");
        make_rootfs(&rootfs);
        Bundle {
            dir,
            config: default_config(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Sets the value at JSON pointer `ptr`, creating missing objects on the way.
    pub fn set(&mut self, ptr: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        let parts: Vec<String> = ptr
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, path) = parts.split_last().expect("non-empty JSON pointer");
        for p in path {
            if let Value::Array(a) = cur {
                let i: usize = p.parse().expect("array index");
                cur = &mut a[i];
                continue;
            }
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(p.clone())
                .or_insert_with(|| json!({}));
        }
        match cur {
            Value::Array(a) => {
                let i: usize = last.parse().expect("array index");
                a[i] = value;
            }
            _ => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                cur.as_object_mut()
                    .expect("object")
                    .insert(last.clone(), value);
            }
        }
        self
    }

    pub fn get(&self, ptr: &str) -> Option<&Value> {
        self.config.pointer(ptr)
    }

    /// Removes the value at `ptr` (an object key or an array index).
    pub fn remove(&mut self, ptr: &str) -> &mut Self {
        let (parent, last) = ptr.rsplit_once('/').expect("JSON pointer");
        match self.config.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(last);
            }
            Some(Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
            }
            _ => {}
        }
        self
    }

    /// Appends `value` to the array at `ptr`, creating it if missing.
    pub fn push(&mut self, ptr: &str, value: Value) -> &mut Self {
        if !matches!(self.config.pointer(ptr), Some(Value::Array(_))) {
            self.set(ptr, json!([]));
        }
        if let Some(Value::Array(a)) = self.config.pointer_mut(ptr) {
            a.push(value);
        }
        self
    }

    /// `process.args`
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// `process.args = ["/bin/polis-probe", ARGS...]`
    pub fn probe(&mut self, args: &[&str]) -> &mut Self {
        let mut v = vec!["/bin/polis-probe"];
        v.extend_from_slice(args);
        self.set("/process/args", json!(v))
    }

    /// `process.args = ["sh", "-c", SCRIPT]`
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.set("/process/args", json!(["sh", "-c", script]))
    }

    /// Removes the namespace of type `ns` from `linux.namespaces`.
    pub fn without_namespace(&mut self, ns: &str) -> &mut Self {
        if let Some(Value::Array(a)) = self.config.pointer_mut("/linux/namespaces") {
            a.retain(|n| n["type"] != ns);
        }
        self
    }

    /// Adds (or replaces) a namespace entry.
    pub fn with_namespace(&mut self, ns: &str, path: Option<&str>) -> &mut Self {
        self.without_namespace(ns);
        let entry = match path {
            Some(p) => json!({"type": ns, "path": p}),
            None => json!({"type": ns}),
        };
        self.push("/linux/namespaces", entry)
    }

    /// Writes `config.json`, setting `linux.cgroupsPath` to `cgroups_path` unless the test set one.
    pub fn write_config(&self, cgroups_path: Option<&str>) {
        let mut cfg = self.config.clone();
        if let (Some(cg), Some(linux)) = (
            cgroups_path,
            cfg.get_mut("linux").and_then(Value::as_object_mut),
        ) {
            linux.entry("cgroupsPath").or_insert_with(|| json!(cg));
        }
        self.write_raw(&serde_json::to_string_pretty(&cfg).expect("serialize config"));
    }

    /// Writes `text` as `config.json` verbatim (for malformed-config tests).
    pub fn write_raw(&self, text: &str) {
        let mut f = fs::File::create(self.path().join("config.json")).expect("create config.json");
        f.write_all(text.as_bytes()).expect("write config.json");
    }
}

/// Builds a busybox rootfs at `rootfs` with the probe, users root, polis (1000) and nobody (65534).
pub fn make_rootfs(rootfs: &Path) {
    if !Path::new(BUSYBOX).is_file() {
        panic!("{BUSYBOX} is missing: install Debian's busybox-static");
    }
    for d in [
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "root",
        "home/polis",
        "var",
        "run",
        "usr/bin",
        "mnt",
    ] {
        fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
    }
    fs::create_dir_all(rootfs.join("tmp")).expect("create /tmp");
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755)).expect("chmod rootfs");
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).expect("link applet");
    }
    fs::copy(probe_binary(), rootfs.join("bin/polis-probe")).expect("copy polis-probe");
    fs::set_permissions(
        rootfs.join("bin/polis-probe"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod probe");
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\npolis:x:1000:1000:polis:/home/polis:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("write passwd");
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nwheel:x:10:polis\npolis:x:1000:\nnogroup:x:65534:\n",
    )
    .expect("write group");
    fs::write(rootfs.join("etc/hostname"), "rootfs\n").expect("write hostname");
    std::os::unix::fs::chown(rootfs.join("home/polis"), Some(1000), Some(1000))
        .expect("chown home");
}

/// The default Linux config, as `runc spec` writes it, with these differences: ociVersion 1.2.0, no terminal, the
/// probe as the process, `root.readonly` false (tests write files) and hostname `polis-test`.
pub fn default_config() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/polis-probe", "report"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "polis-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Host inspection

/// Cgroup layout of the host and where a container's cgroup files live.
pub mod cgroup {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        /// Only cgroup v1 hierarchies.
        Legacy,
        /// v1 controllers plus a v2 hierarchy at /sys/fs/cgroup/unified (controllers are in v1).
        Hybrid,
        /// Only cgroup v2 at /sys/fs/cgroup.
        Unified,
    }

    /// The directory of `cgroups_path` in the cgroup2 hierarchy (what [`Runtime::use_cgroup2_view`] shows).
    pub fn v2_dir(cgroups_path: &str) -> PathBuf {
        let root = match mode() {
            Mode::Unified => Path::new("/sys/fs/cgroup"),
            _ => Path::new("/sys/fs/cgroup/unified"),
        };
        root.join(cgroups_path.trim_start_matches('/'))
    }

    pub fn mode() -> Mode {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Mode::Unified
        } else if Path::new("/sys/fs/cgroup/unified").exists() {
            Mode::Hybrid
        } else {
            Mode::Legacy
        }
    }

    /// The file of a controller setting for `cgroups_path`: the v1 file on legacy/hybrid hosts, the v2 file on
    /// unified ones.
    pub fn file(controller: &str, cgroups_path: &str, v1_file: &str, v2_file: &str) -> PathBuf {
        let rel = cgroups_path.trim_start_matches('/');
        match mode() {
            Mode::Unified => Path::new("/sys/fs/cgroup").join(rel).join(v2_file),
            _ => Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(rel)
                .join(v1_file),
        }
    }

    /// Reads a controller setting file, trimmed.
    #[track_caller]
    pub fn read(controller: &str, cgroups_path: &str, v1_file: &str, v2_file: &str) -> String {
        let f = file(controller, cgroups_path, v1_file, v2_file);
        fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("read {}: {e}", f.display()))
            .trim()
            .to_string()
    }

    /// Every hierarchy mounted under /sys/fs/cgroup (v1 controllers, the unified dir, or the v2 root itself).
    pub fn hierarchies() -> Vec<PathBuf> {
        if mode() == Mode::Unified {
            return vec![PathBuf::from("/sys/fs/cgroup")];
        }
        let mut v: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_type()
                            .map(|t| t.is_dir() && !t.is_symlink())
                            .unwrap_or(false)
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Directories named by `cgroups_path` that exist in any hierarchy.
    pub fn existing_dirs(cgroups_path: &str) -> Vec<PathBuf> {
        let rel = cgroups_path.trim_start_matches('/');
        if rel.is_empty() {
            return vec![];
        }
        hierarchies()
            .into_iter()
            .map(|h| h.join(rel))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Host PIDs whose /proc/PID/cgroup names `cgroups_path` (or a child of it) in any hierarchy.
    pub fn processes_in(cgroups_path: &str) -> Vec<i32> {
        let mut v = Vec::new();
        let Ok(dir) = fs::read_dir("/proc") else {
            return v;
        };
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cg) = fs::read_to_string(e.path().join("cgroup")) else {
                continue;
            };
            if cg.lines().any(|l| {
                let p = l.splitn(3, ':').nth(2).unwrap_or("");
                p == cgroups_path || p.starts_with(&format!("{cgroups_path}/"))
            }) {
                v.push(pid);
            }
        }
        v
    }
}

/// The namespace link of the calling (host) process, e.g. `net:[4026531840]`.
pub fn host_namespace(ns: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{ns}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The namespace link of process `pid`.
pub fn process_namespace(pid: i32, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Whether the network namespace of process `pid` has a TCP socket listening on `port` (any address, v4 or v6).
pub fn tcp_listening(pid: i32, port: u16) -> bool {
    let local = format!(":{port:04X}");
    // /proc/PID/net/tcp: "sl local_address rem_address st ...", state 0A is LISTEN.
    ["tcp", "tcp6"].iter().any(|table| {
        fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|f| f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A")
    })
}

/// Whether process `pid` is blocked in flock(2) on `path`, waiting for another holder to let go: /proc/locks lists a
/// waiter under the lock it waits for, as "N: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF" (the device numbers
/// in hex, as the kernel prints them).
pub fn waiting_for_flock(pid: i32, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    let file = format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    );
    let pid = pid.to_string();
    fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| f.len() > 6 && f[1] == "->" && f[2] == "FLOCK" && f[5] == pid && f[6] == file)
}

/// True while process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// A unix socket for `--console-socket`: the runtime connects and sends the pty master with SCM_RIGHTS (runc's
/// contract for `process.terminal: true`). A thread accepts the connection and then reads the master until the
/// terminal closes, so a process that writes more than the pty buffer never blocks.
pub struct ConsoleSocket {
    pub path: PathBuf,
    handle: Option<std::thread::JoinHandle<Result<Vec<u8>, String>>>,
}

impl ConsoleSocket {
    pub fn new(dir: &Path) -> ConsoleSocket {
        let path = dir.join(format!(
            "console-{}.sock",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind console socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking console socket");
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + COMMAND_TIMEOUT;
            // Errors are this thread's result, not a panic: poll_until rather than eventually.
            let accepted = poll_until(COMMAND_TIMEOUT, || match listener.accept() {
                Ok((s, _)) => Some(Ok(s)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                Err(e) => Some(Err(e)),
            });
            let stream = match accepted {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    return Err(format!("no runtime connected to the console socket: {e}"));
                }
                None => {
                    return Err(format!(
                        "no runtime connected to the console socket in {COMMAND_TIMEOUT:?}"
                    ));
                }
            };
            let master = recv_fd(&stream).map_err(|e| format!("receive pty master: {e}"))?;
            let mut file = fs::File::from(master);
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match std::io::Read::read(&mut file, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                    // EIO: every slave descriptor is closed (the process exited).
                    Err(_) => break,
                }
                if Instant::now() > deadline {
                    break;
                }
            }
            Ok(data)
        });
        ConsoleSocket {
            path,
            handle: Some(handle),
        }
    }

    /// Everything the container wrote to its terminal, once the terminal closed.
    #[track_caller]
    pub fn output(mut self) -> String {
        let h = self.handle.take().expect("console output taken twice");
        let data = h
            .join()
            .expect("console thread")
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&data).into_owned()
    }
}

/// What a command printed on a terminal it was given as stdin, stdout and stderr, and how it exited.
pub struct TerminalSession {
    pub output: String,
    pub code: Option<i32>,
}

/// A change of a terminal's size in the middle of a session: once the output shows `after_output`, the terminal
/// becomes `rows` x `cols` (as when a person resizes their window; the kernel sends SIGWINCH).
pub struct Resize {
    pub after_output: &'static str,
    pub rows: u16,
    pub cols: u16,
}

fn set_window_size(fd: &std::os::fd::OwnedFd, rows: u16, cols: u16) {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(
        rc,
        0,
        "resize the terminal: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `cmd` on a new pseudo-terminal of `rows` x `cols` (as a person at a shell would: the terminal is the
/// controlling terminal of the command's own session), typing `input` into it, and collects everything written to
/// the terminal until the command exits. Killed after [`COMMAND_TIMEOUT`].
pub fn run_on_terminal(
    mut cmd: Command,
    rows: u16,
    cols: u16,
    input: &str,
    resize: Option<Resize>,
) -> TerminalSession {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the integers.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two new descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_window_size(&master, rows, cols);
    let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup terminal"));
    cmd.stdin(stdio(&slave))
        .stdout(stdio(&slave))
        .stderr(stdio(&slave));
    // SAFETY: between fork and exec the child only makes two async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn the command on a terminal");
    // The master reports EIO only once no slave descriptor is left: the Command holds copies too.
    drop(cmd);
    drop(slave);
    let mut writer = fs::File::from(master.try_clone().expect("dup master"));
    std::io::Write::write_all(&mut writer, input.as_bytes()).expect("type into the terminal");
    let control = master.try_clone().expect("dup master");
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let reader = {
        let output = output.clone();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let mut file = fs::File::from(master);
            let mut buf = [0u8; 4096];
            // Ends with EIO once the command and everything it started closed the terminal, or at the deadline
            // when something it left behind still holds it.
            while Instant::now() < deadline {
                let mut pfd = libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll reads and writes one pollfd that outlives the call.
                if unsafe { libc::poll(&mut pfd, 1, 100) } < 1 {
                    continue;
                }
                match std::io::Read::read(&mut file, &mut buf) {
                    Ok(n @ 1..) => output
                        .lock()
                        .expect("output lock")
                        .extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
        })
    };
    let mut resize = resize;
    // Until the command exits: resize the terminal once the output shows what `resize` waits for.
    poll_until(deadline.saturating_duration_since(Instant::now()), || {
        if let Some(r) = &resize {
            let seen = String::from_utf8_lossy(&output.lock().expect("output lock"))
                .contains(r.after_output);
            if seen {
                set_window_size(&control, r.rows, r.cols);
                resize = None;
            }
        }
        // Done when it exited, or when it cannot be waited for (wait_until then reports None).
        child.try_wait().map_or(Some(()), |st| st.map(|_| ()))
    });
    let status = wait_until(&mut child, deadline);
    drop(writer);
    drop(control);
    reader.join().expect("terminal reader");
    let data = output.lock().expect("output lock").clone();
    TerminalSession {
        output: String::from_utf8_lossy(&data).into_owned(),
        code: status.and_then(|s| s.code()),
    }
}

/// Receives one file descriptor sent with SCM_RIGHTS on `stream`.
fn recv_fd(stream: &std::os::unix::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    stream.set_nonblocking(false)?;
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr points at buffers that outlive the call; CMSG_* only walk inside `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        if libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(std::io::Error::other("no SCM_RIGHTS message"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
        Ok(std::os::fd::OwnedFd::from_raw_fd(fd))
    }
}

/// Parses a hex capability mask from /proc/PID/status (`CapEff` etc.).
pub fn cap_mask(hex: &str) -> u64 {
    u64::from_str_radix(hex.trim(), 16)
        .unwrap_or_else(|e| panic!("bad capability mask {hex:?}: {e}"))
}

/// Linux capability numbers by their spec names.
pub fn cap_number(name: &str) -> u32 {
    CAPABILITY_NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("unknown capability {name}")) as u32
}

/// Every capability the runtime-spec names, by number (CAP_CHOWN is 0).
pub const CAPABILITY_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The mask of a list of capability names.
pub fn caps_mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |m, n| m | (1u64 << cap_number(n)))
}

/// Capabilities this host lets a root process keep (its own bounding set): tests only ask for these.
pub fn host_bounding_set() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(cap_mask)
        .unwrap_or(0)
}

/// A host directory with a tmpfs of its own, made a shared mount: CRI accepts Bidirectional propagation only from a
/// shared mount and HostToContainer only from a shared or slave one, and this machine's root mount is private. On
/// drop (also when the test fails) everything mounted at or below it is unmounted (lazily: containers may still hold
/// copies) and the directory removed.
pub struct SharedHostDir {
    dir: tempfile::TempDir,
}

impl SharedHostDir {
    pub fn new() -> SharedHostDir {
        let shared = SharedHostDir {
            dir: temp_dir("polis-it-prop-"),
        };
        let dir = shared.path().to_str().unwrap();
        host(&["mount", "-t", "tmpfs", "polis-prop", dir]);
        host(&["mount", "--make-shared", dir]);
        shared
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Mounts a tmpfs at `name` below the directory, with the file `marker` in it saying "from-host".
    pub fn mount_tmpfs_below(&self, name: &str) {
        let at = self.path().join(name);
        std::fs::create_dir_all(&at).unwrap();
        host(&["mount", "-t", "tmpfs", "polis-host", at.to_str().unwrap()]);
        std::fs::write(at.join("marker"), "from-host\n").unwrap();
    }

    /// The tmpfs mounted at `name` below the directory, if this (the host's) mount namespace has one there.
    pub fn mount_below(&self, name: &str) -> Option<MountInfo> {
        let at = self.path().join(name).display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(MountInfo::parse)
            .find(|m| m.mount_point == at && m.fstype == "tmpfs")
    }
}

impl Default for SharedHostDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SharedHostDir {
    fn drop(&mut self) {
        crate::containerd::unmount_below(self.dir.path());
    }
}

/// Runs a command on the host; panics with its output unless it succeeds.
pub fn host(cmd: &[&str]) {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One line of /proc/PID/mountinfo, split into the fields tests look at.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: String,
    pub options: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountInfo {
    pub fn parse(line: &str) -> Option<MountInfo> {
        let (pre, post) = line.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        Some(MountInfo {
            mount_point: pre.get(4)?.replace("\\040", " "),
            options: pre.get(5)?.split(',').map(str::to_string).collect(),
            optional: pre.iter().skip(6).map(|s| s.to_string()).collect(),
            fstype: post.first()?.to_string(),
            source: post.get(1).map(|s| s.to_string()).unwrap_or_default(),
            super_options: post
                .get(2)
                .map(|s| s.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        })
    }

    pub fn has_option(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt) || self.super_options.iter().any(|o| o == opt)
    }
}

/// The last (topmost) mount at `mount_point` in a probe report's mountinfo.
pub fn mount_at(report: &Value, mount_point: &str) -> Option<MountInfo> {
    report["mountinfo"]
        .as_array()?
        .iter()
        .rev()
        .filter_map(|l| l.as_str().and_then(MountInfo::parse))
        .find(|m| m.mount_point == mount_point)
}
