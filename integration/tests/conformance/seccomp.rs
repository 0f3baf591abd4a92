//! runtime-spec config-linux.md#seccomp.

use polis_integration::*;

/// A profile allowing everything but `rules`.
fn allow_all_but(rules: Value) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules})
}

fn probe(rt: &Runtime, b: &Bundle) -> Value {
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

conformance_test!(
    /// config-linux.md#seccomp: "errnoRet (uint, OPTIONAL) - the errno return code to use." A syscall ruled
    /// SCMP_ACT_ERRNO fails with that errno (EPERM).
    errno_eperm,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EPERM);
        assert!(!b.rootfs().join("tmp/blocked").exists());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: `args` with `op` SCMP_CMP_MASKED_EQ compare `(arg & value) == valueTwo`: `value` is
    /// the mask and `valueTwo` the datum, as runc and libseccomp (`SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, datum)`)
    /// read them, and as Docker's default profile writes its clone rule. personality(0x0008) matches
    /// `(0x0008 & 0xff) == 0x08` and is refused.
    masked_eq_value_is_the_mask,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}])),
        );
        b.probe(&["syscall", "personality", "8"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EPERM);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: SCMP_CMP_MASKED_EQ lets through what does not match: personality(0xffffffff) (a
    /// query) is `(0xffffffff & 0xff) == 0xff`, not 0x08.
    masked_eq_lets_other_values_through,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}])),
        );
        b.probe(&["syscall", "personality", "4294967295"]);
        assert_eq!(probe(rt, &b)["errno"], 0);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: errnoRet is returned as configured (38, ENOSYS), not a fixed value.
    errno_custom,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}])),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        assert_eq!(probe(rt, &b)["errno"], 38);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "defaultAction (string, REQUIRED) the default action for seccomp." Syscalls no rule
    /// names take the default action (SCMP_ACT_ALLOW): other syscalls keep working.
    default_allow_unaffected,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])),
        );
        b.probe(&["syscall", "chmod", "/tmp", "0o1777"]);
        assert_eq!(probe(rt, &b)["errno"], 0);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: with a seccomp profile the process runs in filter mode (Seccomp: 2).
    filter_mode_active,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", allow_all_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])));
        b.probe(&["report"]);
        assert_eq!(probe(rt, &b)["Seccomp"], "2");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: without linux.seccomp no filter is installed (Seccomp: 0).
    no_profile_no_filter,
    |rt| {
        let mut b = Bundle::new();
        b.remove("/linux/seccomp");
        b.probe(&["report"]);
        assert_eq!(probe(rt, &b)["Seccomp"], "0");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "args (array of objects, OPTIONAL) - the specific syscall in seccomp": a rule with an
    /// argument condition (chmod mode == 0777) blocks only matching calls.
    args_condition,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{
                "names": ["chmod", "fchmodat"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 13,
                "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]
            }])),
        );
        std::fs::write(b.rootfs().join("tmp/f"), "x").unwrap();
        std::fs::set_permissions(b.rootfs().join("tmp/f"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        b.sh("polis-probe syscall chmod /tmp/f 0o777; polis-probe syscall chmod /tmp/f 0o644");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["errno"], 13, "{out}");
        assert_eq!(lines[1]["errno"], 0, "{out}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "SCMP_ACT_KILL" kills the process that makes the call (SIGSYS; `run` exits 128+31).
    action_kill,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}])));
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let c = rt.container();
        let out = c.run(&b);
        assert_eq!(out.code, Some(128 + libc::SIGSYS), "{out}");
        assert!(!b.rootfs().join("tmp/blocked").exists());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: a rule with several names applies to each of them.
    several_names_in_rule,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["sethostname", "setdomainname", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}])),
        );
        let caps = json!(["CAP_SYS_ADMIN"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        b.sh("polis-probe syscall sethostname x; polis-probe syscall mkdir /tmp/d");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["errno"], 95, "{out}");
        assert_eq!(lines[1]["errno"], 95, "{out}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp with config.md#process: a process started by `exec` in the container gets the same
    /// seccomp profile as the container's process.
    exec_gets_profile,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}])),
        );
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let out = c.exec(&["/bin/polis-probe", "syscall", "mkdir", "/tmp/from-exec"]);
        out.ok();
        assert_eq!(out.json()["errno"], 38, "{out}");
        let out = c.exec(&["/bin/polis-probe", "report"]);
        out.ok();
        assert_eq!(out.json()["Seccomp"], "2", "{out}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: a default action of SCMP_ACT_ERRNO with an allow list: a syscall not allowed fails
    /// with the default errnoRet, listed ones work.
    default_errno_with_allowlist,
    |rt| {
        let mut b = Bundle::new();
        // Everything the probe and the runtime's final exec need, except mkdir.
        let allowed = [
            "execve", "execveat", "brk", "mmap", "munmap", "mprotect", "arch_prctl", "set_tid_address",
            "set_robust_list", "rseq", "prlimit64", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
            "poll", "ppoll", "write", "writev", "read", "exit", "exit_group", "getrandom", "futex", "sched_getaffinity",
            "close", "fstat", "newfstatat", "statx", "readlink", "readlinkat", "openat", "open", "ioctl", "fcntl",
            "getpid", "gettid", "tgkill", "madvise", "uname", "capget", "capset", "prctl", "setgroups", "setuid",
            "setgid", "setresuid", "setresgid", "getppid", "getuid", "geteuid", "getgid", "getegid", "lseek",
            "mremap", "clone", "clone3", "wait4", "nanosleep", "clock_nanosleep", "seccomp", "fchdir", "chdir",
            "getcwd", "dup", "dup2", "dup3", "pipe2", "getdents64", "umask", "access", "faccessat", "faccessat2",
            "fstatfs", "statfs", "close_range", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait", "stat",
            "lstat", "sched_yield", "pread64", "pselect6", "select", "kill", "getpgrp", "setsid", "fchown", "fchmod",
        ];
        b.set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": allowed.to_vec(), "action": "SCMP_ACT_ALLOW"}]
            }),
        );
        b.set("/process/noNewPrivileges", json!(true));
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let v = probe(rt, &b);
        assert_eq!(v["errno"], libc::EPERM, "{v}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "SCMP_ACT_KILL_PROCESS" kills the whole process (SIGSYS; `run` exits 128+31).
    action_kill_process,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}])),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let out = rt.container().run(&b);
        assert_eq!(out.code, Some(128 + libc::SIGSYS), "{out}");
        assert!(!b.rootfs().join("tmp/blocked").exists());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "SCMP_ACT_LOG" lets the call through (and logs it): mkdir succeeds.
    action_log_allows,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}])));
        b.probe(&["syscall", "mkdir", "/tmp/logged"]);
        let out = rt.container().run(&b);
        out.ok();
        assert_eq!(out.json()["errno"], 0, "{out}");
        assert!(b.rootfs().join("tmp/logged").is_dir());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "architectures (array of strings, OPTIONAL) the architecture used for system calls":
    /// a profile listing the native and compatible architectures applies its rules to native calls.
    several_architectures,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30}]
            }),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let out = rt.container().run(&b);
        out.ok();
        assert_eq!(out.json()["errno"], 30, "{out}");
    }
);

/// A profile whose rules name syscalls libseccomp does not know: a rule with an unknown and a known name, one with
/// only unknown names, and the deny rule for mkdir (errnoRet 1, EPERM) with an unknown name among its own.
fn profile_with_unknown_names() -> Value {
    allow_all_but(json!([
        {"names": ["polis_no_such_syscall", "getpid"], "action": "SCMP_ACT_LOG"},
        {"names": ["polis_no_such_syscall_either"], "action": "SCMP_ACT_KILL"},
        {"names": ["mkdir", "polis_no_such_syscall", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    ]))
}

conformance_test!(
    /// config-linux.md#seccomp: "names (array of strings, REQUIRED) - the names of the syscalls." A name the host's
    /// libseccomp does not know (a syscall newer than it, as Docker's default profile lists) is skipped, as runc
    /// skips it: the container runs, a rule left with no name is dropped, and the rules for known syscalls still
    /// apply (mkdir fails with the errnoRet asked). polis-runc warns, naming the skipped syscalls.
    unknown_syscall_names_are_skipped,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", profile_with_unknown_names());
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let out = rt.container().run(&b);
        out.ok();
        assert_eq!(out.json()["errno"], libc::EPERM, "{out}");
        assert!(!b.rootfs().join("tmp/blocked").exists());
        if rt.is_polis() {
            out.stderr_mentions("polis_no_such_syscall,").stderr_mentions("polis_no_such_syscall_either");
        }
    }
);

conformance_test!(
    /// config-linux.md#seccomp with config.md#process: a process started by `exec` gets the container's profile with
    /// the syscall names the host's libseccomp does not know skipped, as runc skips them: the exec succeeds and mkdir
    /// fails with the errnoRet asked.
    unknown_syscall_names_are_skipped_for_exec,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", profile_with_unknown_names());
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let out = c.exec(&["/bin/polis-probe", "syscall", "mkdir", "/tmp/from-exec"]);
        out.ok();
        assert_eq!(out.json()["errno"], libc::EPERM, "{out}");
        assert!(!b.rootfs().join("tmp/from-exec").exists());
        if rt.is_polis() {
            out.stderr_mentions("polis_no_such_syscall");
        }
    }
);

/// A seccomp agent at a `listenerPath` (config-linux.md#seccomp): on its own thread it takes every connection, reads
/// the container process state and the listener that came with it, and answers every call the listeners notify
/// with ENOMEDIUM, an errno nothing else in these tests gives.
struct Agent {
    dir: tempfile::TempDir,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<AgentLog>>,
}

#[derive(Default, Debug)]
struct AgentLog {
    /// The container process states received, one per connection.
    states: Vec<Value>,
    /// How many descriptors came with them.
    listeners: usize,
    /// The syscall numbers notified.
    calls: Vec<i32>,
    /// What went wrong on the agent's side.
    errors: Vec<String>,
}

impl Agent {
    fn start() -> Agent {
        let dir = temp_dir("polis-it-seccomp-agent-");
        let socket = std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock")).unwrap();
        socket.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || serve(socket, &stopped));
        Agent {
            dir,
            stop,
            thread: Some(thread),
        }
    }

    fn path(&self) -> String {
        self.dir.path().join("agent.sock").display().to_string()
    }

    /// Stops the agent once its listeners are done (every process using them has exited) or a while has passed.
    fn finish(mut self) -> AgentLog {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    socket: std::os::unix::net::UnixListener,
    stop: &std::sync::atomic::AtomicBool,
) -> AgentLog {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut log = AgentLog::default();
    let mut listeners: Vec<std::os::fd::OwnedFd> = Vec::new();
    // After `stop`, the listeners get 20 s to hang up (their processes exit), then the agent gives up.
    let mut deadline: Option<std::time::Instant> = None;
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            let d = *deadline.get_or_insert_with(|| {
                std::time::Instant::now() + std::time::Duration::from_secs(20)
            });
            if listeners.is_empty() || std::time::Instant::now() > d {
                return log;
            }
        }
        let mut fds = vec![PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            listeners
                .iter()
                .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)),
        );
        if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) == 0 {
            continue;
        }
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if ready[0].contains(PollFlags::POLLIN) {
            match receive_state(&socket) {
                Ok((state, fd)) => {
                    log.states.push(state);
                    if let Some(fd) = fd {
                        log.listeners += 1;
                        listeners.push(fd);
                    }
                }
                Err(e) => log.errors.push(e),
            }
        }
        let mut gone = Vec::new();
        for (i, flags) in ready[1..].iter().enumerate() {
            if flags.contains(PollFlags::POLLIN) {
                match answer(&listeners[i]) {
                    Ok(nr) => log.calls.push(nr),
                    Err(e) => log.errors.push(e),
                }
            } else if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            listeners.remove(i);
        }
    }
}

/// One connection: the JSON state and the descriptor sent with it. The state is read until it is whole JSON, not
/// until end-of-file: runc 1.1 keeps the connection open while `runc run` waits for the container.
fn receive_state(
    socket: &std::os::unix::net::UnixListener,
) -> Result<(Value, Option<std::os::fd::OwnedFd>), String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd};
    let (conn, _) = socket.accept().map_err(|e| format!("accept: {e}"))?;
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    let mut listener = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg: {e}"))?;
        for cmsg in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us.
                    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                    listener.get_or_insert(fd);
                }
            }
        }
        let n = msg.bytes;
        text.extend_from_slice(&buf[..n]);
        match serde_json::from_slice::<Value>(&text) {
            Ok(state) => return Ok((state, listener)),
            Err(e) if n == 0 => {
                return Err(format!(
                    "the state is not JSON ({e}): {}",
                    String::from_utf8_lossy(&text)
                ));
            }
            Err(_) => {}
        }
    }
}

/// Receives one notification and answers it with ENOMEDIUM; returns the syscall's number.
fn answer(listener: &std::os::fd::OwnedFd) -> Result<i32, String> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain data the kernel fills in (it wants it zeroed).
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV writes a seccomp_notif.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    } < 0
    {
        return Err(format!(
            "SECCOMP_IOCTL_NOTIF_RECV: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 0,
        error: -libc::ENOMEDIUM,
        flags: 0,
    };
    // SAFETY: SECCOMP_IOCTL_NOTIF_SEND reads a seccomp_notif_resp.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        )
    } < 0
    {
        return Err(format!(
            "SECCOMP_IOCTL_NOTIF_SEND: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(req.data.nr)
}

/// An agent, and a bundle whose profile sends mkdir and mkdirat to it.
fn notify_mkdir() -> (Agent, Bundle) {
    let agent = Agent::start();
    let mut b = Bundle::new();
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "listenerPath": agent.path(),
            "listenerMetadata": "polis-test-metadata",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    (agent, b)
}

fn is_mkdir(nr: &i32) -> bool {
    [libc::SYS_mkdir, libc::SYS_mkdirat].contains(&i64::from(*nr))
}

conformance_test!(
    /// config-linux.md#seccomp: with SCMP_ACT_NOTIFY, "the runtime will send the container process state data
    /// structure" to listenerPath, with the listener ("fds": ["seccompFd"]) and listenerMetadata; the agent then
    /// decides the notified calls: mkdir fails with the agent's ENOMEDIUM, and nothing is made. runtime.md#state:
    /// the state is the container's (its ID, bundle and PID, status "creating").
    notify_reaches_the_agent,
    |rt| {
        let (agent, mut b) = notify_mkdir();
        b.probe(&["syscall", "mkdir", "/tmp/notified"]);
        let c = rt.container();
        let out = c.run(&b);
        let log = agent.finish();
        out.ok();
        assert_eq!(out.json()["errno"], libc::ENOMEDIUM, "{out}\nagent: {log:?}");
        assert!(!b.rootfs().join("tmp/notified").exists());
        assert!(log.errors.is_empty(), "{log:?}");
        assert_eq!((log.states.len(), log.listeners), (1, 1), "one state and one listener per process: {log:?}");
        assert!(log.calls.iter().any(is_mkdir), "the agent saw no mkdir: {log:?}");
        let s = &log.states[0];
        assert_eq!(s["fds"], json!(["seccompFd"]), "{s}");
        assert_eq!(s["metadata"], "polis-test-metadata", "{s}");
        assert!(s["ociVersion"].as_str().is_some_and(|v| !v.is_empty()), "{s}");
        assert!(s["pid"].as_i64().is_some_and(|p| p > 1), "{s}");
        assert_eq!(s["state"]["id"], c.id.as_str(), "{s}");
        assert_eq!(s["state"]["status"], "creating", "{s}");
        assert_eq!(s["state"]["pid"], s["pid"], "{s}");
        let bundle = std::fs::canonicalize(b.path()).unwrap();
        assert_eq!(s["state"]["bundle"], bundle.display().to_string(), "{s}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp with runtime.md#exec-style `exec`: a process started in the container gets its own
    /// listener, sent on a connection of its own ("exactly one container process state per connection"), with its
    /// PID and the container's state.
    notify_exec_has_its_own_listener,
    |rt| {
        let (agent, mut b) = notify_mkdir();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let out = c.exec(&["/bin/polis-probe", "syscall", "mkdir", "/tmp/from-exec"]);
        c.kill("KILL").ok();
        c.wait_status("stopped");
        let log = agent.finish();
        out.ok();
        assert_eq!(out.json()["errno"], libc::ENOMEDIUM, "{out}\nagent: {log:?}");
        assert!(log.errors.is_empty(), "{log:?}");
        assert_eq!((log.states.len(), log.listeners), (2, 2), "the init's and the exec's: {log:?}");
        let (init, exec) = (&log.states[0], &log.states[1]);
        assert_eq!(exec["state"]["id"], c.id.as_str(), "{exec}");
        assert_eq!(exec["state"]["pid"], init["pid"], "the container's PID is its init's: {exec}");
        assert_ne!(exec["pid"], init["pid"], "the exec'd process's own PID: {exec}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp with config.md#linux-process `noNewPrivileges: false`: the profile is loaded with
    /// CAP_SYS_ADMIN held for it, and the agent still gets the listener and decides mkdir; the process ends with
    /// the capabilities it asked for, not the one held for loading.
    notify_without_no_new_privileges,
    |rt| {
        let (agent, mut b) = notify_mkdir();
        b.set("/process/noNewPrivileges", json!(false));
        b.sh("polis-probe syscall mkdir /tmp/notified; polis-probe report");
        let c = rt.container();
        let out = c.run(&b);
        let log = agent.finish();
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["errno"], libc::ENOMEDIUM, "{out}\nagent: {log:?}");
        assert_eq!(lines[1]["NoNewPrivs"], "0", "{out}");
        let cap_eff = u64::from_str_radix(lines[1]["CapEff"].as_str().unwrap_or("0"), 16).unwrap();
        // linux/capability.h
        const CAP_SYS_ADMIN: u32 = 21;
        assert_eq!(cap_eff & (1 << CAP_SYS_ADMIN), 0, "CAP_SYS_ADMIN was only held to load the profile: {out}");
        assert_eq!(log.listeners, 1, "{log:?}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: the listener is the agent's alone. A container process that held its own listener
    /// could answer its own notified calls and so pass the profile by; no descriptor of the container's process
    /// (here the shell's and the `ls` it starts) is a seccomp listener.
    notify_listener_not_left_in_the_container,
    |rt| {
        let (agent, mut b) = notify_mkdir();
        b.sh("ls -l /proc/$$/fd /proc/self/fd");
        let c = rt.container();
        let out = c.run(&b);
        let log = agent.finish();
        out.ok();
        assert!(out.stdout.contains("/dev/null") || out.stdout.contains("pipe:"), "the listing ran: {out}");
        assert!(!out.stdout.contains("seccomp"), "a listener is open in the container: {out}");
        assert_eq!(log.listeners, 1, "{log:?}");
    }
);
