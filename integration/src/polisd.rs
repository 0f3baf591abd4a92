//! A private polisd for tests, driven the way people drive dockerd: with the docker CLI (Debian's docker.io client,
//! or any `docker` on PATH), docker-py, and raw HTTP on its unix socket.
//!
//! [`Polisd::start`] makes a [`NetNs`] with Debian's docker-registry on 127.0.0.1:5000 inside it (registries on
//! 127.0.0.0/8 are plain HTTP for polisd, as for dockerd), pushes a busybox image there as [`IMAGE`], and starts
//! `target/release/polisd` (`$POLISD`) in that namespace with its root, exec root and socket under a temp dir. polisd
//! runs its shims, and they their containers, from there, so two tests' daemons never share a bridge, a port or a
//! registry. The docker CLI reaches it through the socket (a file), with a private `DOCKER_CONFIG`.
//!
//! Dropping it removes every container through the API (`docker rm -f`), stops polisd (SIGTERM, then SIGKILL),
//! deletes what polis-runc still has under the test's runtime root, kills the shims whose working directory or
//! command line is under the test's dir (and removes their sockets), kills what is left in the containers'
//! cgroups, unmounts everything below the dir and removes it; the namespace goes last with whatever still runs in
//! it (the registry). It never panics, so it also cleans up after a failed test.

use crate::containerd::{Registry, build_image, unmount_below};
use crate::{
    NetNs, Output, cgroup, polis_runc_path, poll_until, temp_dir, try_run_command, workspace_binary,
};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The busybox image every polisd test pulls: the harness's busybox rootfs (`make_rootfs`), Cmd `/bin/sh`.
pub const IMAGE: &str = "127.0.0.1:5000/busybox:latest";

/// How long one docker command may take unless a test says otherwise (a pull on a loaded 2-core machine included).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(90);

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The docker CLI: `$POLIS_DOCKER`, else `docker` on PATH. Missing is a failure (hack/install-deps installs
/// Debian's docker.io for it), never a skip.
pub fn docker_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("POLIS_DOCKER") {
        return PathBuf::from(p);
    }
    find_on_path("docker").unwrap_or_else(|| {
        panic!("the docker CLI is missing: run hack/install-deps (Debian's docker.io provides the client)")
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A python3 that has docker-py: Debian's (`/usr/bin/python3` with python3-docker) first, else `python3` on PATH.
/// Missing is a failure, never a skip.
pub fn python_with_docker() -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/bin/python3")];
    candidates.extend(find_on_path("python3"));
    candidates
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import docker"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "no python3 with the docker module: run hack/install-deps (Debian's python3-docker)"
            )
        })
}

/// One HTTP answer from polisd's socket.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpReply {
    /// The body as JSON; panics naming the reply when it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.0 request over a unix socket (the connection closes after the answer, so the body is what follows
/// the headers). No chunked encoding: HTTP/1.0 answers are never chunked.
pub fn unix_http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<HttpReply> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: polisd\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line in {head:?}")))?;
    Ok(HttpReply {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    })
}

/// A command running in the background (`docker events`, `docker logs -f`), its output going to files; killed
/// (SIGKILL, never SIGTERM: docker forwards that to containers) when dropped.
pub struct Background {
    child: Child,
    pub cmd: String,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

impl Background {
    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Its exit status, once it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for it to exit by itself; panics (after killing it) if it has not after `limit`.
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> Output {
        let done = poll_until(limit, || self.exited());
        let Some(st) = done else {
            panic!(
                "`{}` still runs after {limit:?}; stdout so far: {}\nstderr: {}",
                self.cmd,
                self.stdout(),
                self.stderr()
            );
        };
        Output {
            cmd: self.cmd.clone(),
            code: st.code(),
            signal: st.signal(),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private polisd in a network namespace of its own with a loopback registry holding [`IMAGE`].
pub struct Polisd {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    docker: PathBuf,
    registry: Option<Registry>,
    netns: NetNs,
}

impl Polisd {
    /// Starts polisd (its registry, the pushed image) and waits until `/_ping` answers.
    pub fn start(tag: &str) -> Polisd {
        Self::start_with_config(tag, "")
    }

    /// [`Polisd::start`] with `extra` (TOML: keys and tables) appended to the test's polisd.toml.
    pub fn start_with_config(tag: &str, extra: &str) -> Polisd {
        let docker = docker_cli();
        let binary = Self::binary();
        assert!(
            binary.is_file(),
            "{} is not built: run `cargo build --release -p polisd`",
            binary.display()
        );
        for helper in ["containerd-shim-polis-v2", "polis-runc"] {
            let p = binary.with_file_name(helper);
            assert!(
                p.is_file(),
                "{} is missing beside polisd: run `make build`",
                p.display()
            );
        }
        let netns = NetNs::new(tag);
        let registry = Registry::start(&netns);
        let dir = temp_dir("polis-it-polisd-");
        let mut d = Polisd {
            dir,
            daemon: None,
            docker,
            registry: Some(registry),
            netns,
        };
        for sub in ["root", "run", "scratch", "docker-config"] {
            std::fs::create_dir_all(d.dir.path().join(sub)).unwrap();
        }
        let config = format!(
            "root = \"{}\"\nexec_root = \"{}\"\nsocket = \"{}\"\ngrpc_socket = \"{}\"\n{extra}",
            d.root().display(),
            d.exec_root().display(),
            d.socket().display(),
            d.exec_root().join("polis-grpc.sock").display()
        );
        std::fs::write(d.config_path(), config).unwrap();
        let image = build_image(&d.dir.path().join("image"));
        d.registry().push(&image.oci_archive, "busybox:latest");
        let _ = std::fs::remove_dir_all(d.dir.path().join("image"));
        d.start_daemon();
        d
    }

    /// `$POLISD`, else `target/release/polisd`.
    pub fn binary() -> PathBuf {
        workspace_binary("POLISD", "polisd")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// polisd's `root` (database, images, containers).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// polisd's `exec_root` (fifos, events socket, polis-runc's root).
    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The Docker Engine API socket.
    pub fn socket(&self) -> PathBuf {
        self.exec_root().join("polis.sock")
    }

    /// `unix:///...polis.sock`, as DOCKER_HOST and docker-py take it.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("polisd.toml")
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    pub fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("the registry runs")
    }

    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// What polisd logged, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("polisd.log")).unwrap_or_default()
    }

    /// polisd's PID while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    /// Starts polisd on this dir's config (also again after [`Polisd::kill_daemon`]) and waits for `/_ping`.
    pub fn start_daemon(&mut self) {
        self.start_daemon_with(&[]);
    }

    /// Starts polisd set to kill itself at the crash point `point` (api-gateway/src/core/crash.rs), and waits for
    /// `/_ping`; [`Polisd::wait_for_crash`] then waits for the crash.
    pub fn start_daemon_crashing_at(&mut self, point: &str) {
        self.start_daemon_with(&[("POLISD_CRASH_AT", point)]);
    }

    /// Waits until polisd has ended by SIGKILL (a crash point it reached); panics if it did not, or ended otherwise.
    pub fn wait_for_crash(&mut self) {
        let mut d = self.daemon.take().expect("polisd runs");
        let status = poll_until(Duration::from_secs(30), || d.try_wait().ok().flatten());
        use std::os::unix::process::ExitStatusExt;
        match status {
            Some(st) if st.signal() == Some(libc::SIGKILL) => {}
            Some(st) => {
                panic!("polisd should have been killed at its crash point, but it exited with {st}")
            }
            None => {
                let _ = d.kill();
                let _ = d.wait();
                panic!(
                    "polisd did not reach its crash point in 30 s: {}",
                    self.log()
                );
            }
        }
    }

    fn start_daemon_with(&mut self, env: &[(&str, &str)]) {
        assert!(self.daemon.is_none(), "polisd already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("polisd.log"))
            .unwrap();
        // nsenter execs polisd in the namespace: the child is polisd itself.
        let child = self
            .netns
            .command(Self::binary().to_str().unwrap())
            .arg("--config")
            .arg(self.config_path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start polisd");
        self.daemon = Some(child);
        let limit = Duration::from_secs(30);
        let answered = poll_until(limit, || {
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|d| d.try_wait()) {
                return Some(Err(st));
            }
            match unix_http(&self.socket(), "GET", "/_ping", None) {
                Ok(r) if r.status == 200 && r.body == "OK" => Some(Ok(())),
                _ => None,
            }
        });
        match answered {
            Some(Ok(())) => {}
            Some(Err(st)) => {
                self.daemon = None;
                panic!("polisd exited with {st}: {}", self.log());
            }
            None => panic!("polisd never answered /_ping in {limit:?}: {}", self.log()),
        }
    }

    /// Sends `signal` to polisd and waits for it to exit (SIGKILL after 15 s).
    pub fn signal_daemon(&mut self, signal: i32) {
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: signalling the polisd this harness started.
            unsafe { libc::kill(d.id() as i32, signal) };
            if poll_until(Duration::from_secs(15), || d.try_wait().ok().flatten()).is_none() {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
    }

    /// SIGKILLs polisd, as a crash would end it; its shims and containers keep running.
    pub fn kill_daemon(&mut self) {
        self.signal_daemon(libc::SIGKILL);
    }

    /// The docker CLI aimed at this polisd, with a private config dir and no inherited Docker settings.
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.docker);
        for var in [
            "DOCKER_CONTEXT",
            "DOCKER_API_VERSION",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("DOCKER_HOST", self.url())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env("DOCKER_CLI_HINTS", "false")
            .args(args);
        cmd
    }

    /// The polis CLI (`$POLIS_CLI`, else `target/release/polis`) aimed at this polisd's gRPC socket with `-H`, no
    /// POLIS_HOST inherited. Like the docker CLI it reaches polisd through a socket file, so, as
    /// [`Polisd::docker_command`] does, it runs where the test runs (polisd's network namespace matters only to
    /// what polisd and its containers reach). A missing binary is a failure, never a skip.
    pub fn polis_command(&self, args: &[&str]) -> Command {
        let polis = workspace_binary("POLIS_CLI", "polis");
        assert!(
            polis.is_file(),
            "{} is not built: run `cargo build --release -p polis-cli`",
            polis.display()
        );
        let mut cmd = Command::new(polis);
        cmd.env_remove("POLIS_HOST")
            .arg("-H")
            .arg(self.exec_root().join("polis-grpc.sock"))
            .args(args);
        cmd
    }

    /// Runs `polis ARGS` (stdin empty); panics if it runs longer than [`DOCKER_TIMEOUT`].
    #[track_caller]
    pub fn polis(&self, args: &[&str]) -> Output {
        self.polis_with_input(args, None)
    }

    /// Runs `polis ARGS`, stdin from `input` (else empty); panics, after SIGKILLing it, past [`DOCKER_TIMEOUT`].
    #[track_caller]
    pub fn polis_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut bg = self.spawn_with_input(self.polis_command(args), input);
        if poll_until(DOCKER_TIMEOUT, || bg.exited()).is_none() {
            panic!(
                "`{}` did not finish in {DOCKER_TIMEOUT:?}; stdout so far: {}\nstderr: {}\npolisd's log: {}",
                bg.cmd,
                bg.stdout(),
                bg.stderr(),
                self.log()
            );
        }
        bg.wait(Duration::ZERO)
    }

    /// Runs `docker ARGS` (stdin empty); panics if it runs longer than [`DOCKER_TIMEOUT`].
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_within(args, None, DOCKER_TIMEOUT)
    }

    /// Runs `docker ARGS` with `input` on its stdin.
    #[track_caller]
    pub fn docker_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        self.docker_within(args, Some(input), DOCKER_TIMEOUT)
    }

    /// Runs `docker ARGS`, stdin from `input` (else empty); panics, after SIGKILLing it, if it runs past `limit`.
    #[track_caller]
    pub fn docker_within(&self, args: &[&str], input: Option<&[u8]>, limit: Duration) -> Output {
        let mut bg = self.spawn_with_input(self.docker_command(args), input);
        let done = poll_until(limit, || bg.exited());
        if done.is_none() {
            panic!(
                "`{}` did not finish in {limit:?}; stdout so far: {}\nstderr: {}\npolisd's log: {}",
                bg.cmd,
                bg.stdout(),
                bg.stderr(),
                self.log()
            );
        }
        bg.wait(Duration::ZERO)
    }

    /// Starts `docker ARGS` in the background.
    pub fn docker_spawn(&self, args: &[&str]) -> Background {
        self.spawn_with_input(self.docker_command(args), None)
    }

    /// Starts `cmd` with its stdin from `input` (else /dev/null) and its output into files in the scratch dir.
    pub fn spawn_with_input(&self, mut cmd: Command, input: Option<&[u8]>) -> Background {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let scratch = self.scratch();
        let out = scratch.join(format!("bg-{n}.out"));
        let err = scratch.join(format!("bg-{n}.err"));
        let stdin = match input {
            Some(bytes) => {
                let p = scratch.join(format!("bg-{n}.in"));
                std::fs::write(&p, bytes).unwrap();
                Stdio::from(std::fs::File::open(&p).unwrap())
            }
            None => Stdio::null(),
        };
        let desc = format!("{cmd:?}").replace('"', "");
        let child = cmd
            .stdin(stdin)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
        Background {
            child,
            cmd: desc,
            out,
            err,
            status: None,
        }
    }

    /// One raw HTTP request to the API socket; panics if polisd does not answer.
    #[track_caller]
    pub fn http(&self, method: &str, path: &str, body: Option<&[u8]>) -> HttpReply {
        unix_http(&self.socket(), method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\npolisd's log: {}", self.log()))
    }

    /// `docker pull IMAGE`, which must succeed.
    pub fn pull(&self) {
        self.docker(&["pull", IMAGE]).ok();
    }

    /// IDs of every container (`docker ps -aq --no-trunc`).
    #[track_caller]
    pub fn all_containers(&self) -> Vec<String> {
        let out = self.docker(&["ps", "-aq", "--no-trunc"]);
        out.ok();
        out.stdout.split_whitespace().map(String::from).collect()
    }

    /// `docker inspect -f FORMAT NAME`, trimmed.
    #[track_caller]
    pub fn inspect(&self, name: &str, format: &str) -> String {
        let out = self.docker(&["inspect", "-f", format, name]);
        out.ok();
        out.stdout.trim().to_string()
    }

    /// The bundle polisd made for container `id` (full ID).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.root().join("containers").join(id).join("bundle")
    }

    /// Container IDs that have a directory under polisd's root.
    pub fn container_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.root().join("containers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// PIDs of this polisd's shims: processes whose working directory is under its root or whose command line
    /// names its dir (the shim's `-address` is polisd's events socket).
    pub fn shim_processes(&self) -> Vec<i32> {
        let dir = self.dir.path().display().to_string();
        let me = std::process::id() as i32;
        let daemon = self.pid();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me || Some(pid) == daemon {
                continue;
            }
            let cwd = std::fs::read_link(e.path().join("cwd"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cwd.starts_with(&dir) || cmdline.contains(&dir) {
                v.push(pid);
            }
        }
        v
    }

    /// The PID of the shim serving container `id` (full ID): the process whose working directory is its bundle.
    pub fn shim_of(&self, id: &str) -> Option<i32> {
        let bundle = self.bundle(id);
        self.shim_processes()
            .into_iter()
            .find(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|p| p == bundle))
    }

    /// Everything below the test's dir that is mounted.
    pub fn mounts(&self) -> Vec<String> {
        let prefix = self.dir.path().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|p| p.starts_with(&prefix))
            .collect()
    }

    /// `polis-runc list -q` under this polisd's runtime root (its containers' IDs), for cleanup.
    fn runc_list(&self) -> String {
        let mut list = Command::new(polis_runc_path());
        list.arg("--root")
            .arg(self.exec_root().join("runc"))
            .args(["list", "-q"]);
        self.quietly(list, 20).map(|o| o.stdout).unwrap_or_default()
    }

    /// Runs `cmd` for cleanup: never panics, at most `secs` seconds.
    fn quietly(&self, cmd: Command, secs: u64) -> Option<Output> {
        try_run_command(cmd, &self.scratch(), Duration::from_secs(secs)).ok()
    }
}

impl Drop for Polisd {
    /// Never panics (a panic while a failing test unwinds aborts the test binary).
    fn drop(&mut self) {
        // Every container this polisd knows of, noted before the API removes their records and directories: what
        // the removal leaves behind (a process in the container's cgroup, a killed shim's socket) is found by them.
        let alive = self
            .daemon
            .as_mut()
            .is_some_and(|d| d.try_wait().ok().flatten().is_none());
        let listed = if alive {
            self.quietly(self.docker_command(&["ps", "-aq", "--no-trunc"]), 30)
                .map(|o| o.stdout)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut ids: Vec<String> = self.container_dirs();
        ids.extend(listed.split_whitespace().map(String::from));
        ids.extend(self.runc_list().split_whitespace().map(String::from));
        ids.sort();
        ids.dedup();
        // A killed shim leaves its socket (/run/containerd/s/HASH, named in the bundle's `address` file).
        let sockets: Vec<PathBuf> = ids
            .iter()
            .filter_map(|id| std::fs::read_to_string(self.bundle(id).join("address")).ok())
            .filter_map(|a| a.trim().strip_prefix("unix://").map(PathBuf::from))
            .collect();
        let listed: Vec<&str> = listed.split_whitespace().collect();
        if !listed.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(listed);
            let _ = self.quietly(self.docker_command(&args), 60);
        }
        self.signal_daemon(libc::SIGTERM);
        // What the API could not remove: polis-runc's containers under the test's runtime root.
        for id in self.runc_list().split_whitespace() {
            let mut del = Command::new(polis_runc_path());
            del.arg("--root")
                .arg(self.exec_root().join("runc"))
                .args(["delete", "--force", id]);
            let _ = self.quietly(del, 20);
        }
        // Shims (and anything else started for this test) whose working directory or command line is ours.
        for pid in self.shim_processes() {
            // SAFETY: a process of this test (its cwd or command line names the test's unique temp dir).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = poll_until(Duration::from_secs(5), || {
            self.shim_processes().is_empty().then_some(())
        });
        for socket in sockets {
            let _ = std::fs::remove_file(socket);
        }
        for id in &ids {
            for pid in cgroup::processes_in(&format!("/polis/{id}")) {
                // SAFETY: a process in this test's container's cgroup (the ID is a random 256-bit name).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for id in &ids {
            let cgroups_path = format!("/polis/{id}");
            let _ = poll_until(Duration::from_secs(5), || {
                cgroup::processes_in(&cgroups_path).is_empty().then_some(())
            });
            // A killed task keeps its cgroup busy (EBUSY) for a moment after it left /proc.
            let _ = poll_until(Duration::from_secs(5), || {
                for d in cgroup::existing_dirs(&cgroups_path) {
                    let _ = std::fs::remove_dir(d);
                }
                cgroup::existing_dirs(&cgroups_path)
                    .is_empty()
                    .then_some(())
            });
        }
        unmount_below(self.dir.path());
        let _ = std::fs::remove_dir_all(self.root());
        // The registry, then the namespace (fields drop after this), with whatever still runs in it.
        drop(self.registry.take());
    }
}
