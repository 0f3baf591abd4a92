//! runtime-spec runtime.md#kill, and runc's exit-code contract for signalled processes.

use polis_integration::*;

fn waiting_container<'a>(rt: &'a Runtime, b: &mut Bundle) -> Container<'a> {
    b.probe(&["signal-wait"]);
    let c = rt.container();
    c.create_running(b);
    assert_eq!(c.wait_output_json()["ready"], true);
    c
}

fn received_signal(c: &Container<'_>) -> Value {
    c.wait_stopped();
    parse_last_json(&c.output())
        .map(|v| v["signal"].clone())
        .unwrap_or(Value::Null)
}

conformance_test!(
    /// runtime.md#kill: "This operation MUST send the specified signal to the container process." (SIGTERM by
    /// name)
    kill_sends_sigterm,
    |rt| {
        let mut b = Bundle::new();
        let c = waiting_container(rt, &mut b);
        c.kill("SIGTERM").ok();
        assert_eq!(received_signal(&c), libc::SIGTERM);
    }
);

conformance_test!(
    /// runtime.md#kill: the signal given is the one delivered (SIGUSR1).
    kill_sends_sigusr1,
    |rt| {
        let mut b = Bundle::new();
        let c = waiting_container(rt, &mut b);
        c.kill("SIGUSR1").ok();
        assert_eq!(received_signal(&c), libc::SIGUSR1);
    }
);

conformance_test!(
    /// runtime.md#kill / runc contract: a signal may be named without the SIG prefix ("HUP").
    kill_signal_name_without_prefix,
    |rt| {
        let mut b = Bundle::new();
        let c = waiting_container(rt, &mut b);
        c.kill("HUP").ok();
        assert_eq!(received_signal(&c), libc::SIGHUP);
    }
);

conformance_test!(
    /// runtime.md#kill / runc contract: a signal may be given by number ("10" is SIGUSR1).
    kill_signal_by_number,
    |rt| {
        let mut b = Bundle::new();
        let c = waiting_container(rt, &mut b);
        c.kill("10").ok();
        assert_eq!(received_signal(&c), 10);
    }
);

conformance_test!(
    /// runc contract: `kill ID` without a signal sends SIGTERM.
    kill_default_is_sigterm,
    |rt| {
        let mut b = Bundle::new();
        let c = waiting_container(rt, &mut b);
        rt.cmd(&["kill", &c.id]).ok();
        assert_eq!(received_signal(&c), libc::SIGTERM);
    }
);

conformance_test!(
    /// runtime.md#kill: "When the process in the container is stopped, irrespective of it being as a result of a
    /// kill operation or any other reason, the status property of this container MUST be stopped."
    sigkill_gives_stopped,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let pid = c.pid();
        c.kill("KILL").ok();
        c.wait_stopped();
        assert!(!process_alive(pid));
    }
);

conformance_test!(
    /// runtime.md#kill: a signal the process handles does not stop the container; the state stays `running` until
    /// the process exits (checks that kill does not mark the container stopped by itself).
    handled_signal_keeps_running,
    |rt| {
        let mut b = Bundle::new();
        b.sh("trap 'echo got-usr1' USR1; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done");
        let c = rt.container();
        c.create_running(&b);
        poll_until(COMMAND_TIMEOUT, || c.output().contains("ready").then_some(()))
            .unwrap_or_else(|| panic!("trap never installed: {:?}", c.output()));
        c.kill("USR1").ok();
        // The shell runs the trap once its current `sleep 0.1` ends; the container must still run after that.
        poll_until(COMMAND_TIMEOUT, || c.output().contains("got-usr1").then_some(()))
            .unwrap_or_else(|| panic!("trap did not run: {:?}", c.output()));
        assert_eq!(c.status(), "running");
        assert!(process_alive(c.pid()));
    }
);

conformance_test!(
    /// runtime.md#kill: "Attempting to send a signal to a container that is neither created nor running MUST have
    /// no effect on the container and MUST generate an error."
    kill_stopped_fails,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        let out = c.kill("KILL");
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("not running");
        }
        assert_eq!(c.status(), "stopped");
    }
);

conformance_test!(
    /// runtime.md#kill: a created (not yet started) container can be signalled; SIGKILL stops it.
    kill_created,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo ran > /ran");
        let c = rt.container();
        c.create(&b).ok();
        c.kill("KILL").ok();
        c.wait_stopped();
        assert!(!b.rootfs().join("ran").exists());
    }
);

conformance_test!(
    /// runtime.md#kill: "Attempting to send a signal to a container that does not exist" fails (runc: "container
    /// does not exist").
    kill_unknown_fails,
    |rt| {
        let c = rt.container();
        let out = c.kill("TERM");
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("does not exist");
        }
    }
);

conformance_test!(
    /// runc contract: an unknown signal name is an error and the container is untouched.
    kill_invalid_signal_fails,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let out = c.kill("SIGPOLIS");
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("SIGPOLIS");
        }
        assert_eq!(c.status(), "running");
    }
);

conformance_test!(
    /// runc contract (used by containerd and podman): `run` exits with the process's exit code.
    run_exit_code_propagated,
    |rt| {
        for code in [0, 1, 3, 42, 255] {
            let mut b = Bundle::new();
            b.probe(&["exit", &code.to_string()]);
            let c = rt.container();
            let out = c.run(&b);
            assert_eq!(out.code, Some(code), "{out}");
        }
    }
);

conformance_test!(
    /// runc contract: a container process killed by a signal from outside makes `run` exit with 128+signal (137
    /// for SIGKILL).
    run_exit_code_sigkill,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        let (mut child, _) = c.spawn_run(&b);
        eventually("`run` has the container running", COMMAND_TIMEOUT, || {
            c.state().success() && c.status() == "running"
        });
        c.kill("KILL").ok();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + libc::SIGKILL));
    }
);

conformance_test!(
    /// runc contract: 128+signal for SIGTERM delivered to a process that does not handle it (143), here a process
    /// in the container other than PID 1 signalled from outside: the shell waits for it and reports 143.
    run_exit_code_sigterm_child,
    |rt| {
        let mut b = Bundle::new();
        b.sh("/bin/polis-probe sleep 60; echo child-status=$?");
        let c = rt.container();
        c.create_running(&b);
        let init = c.pid();
        // The probe is the init's only child.
        let child = eventually_some("the probe starts as the init's child", COMMAND_TIMEOUT, || {
            let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
            children.split_whitespace().next().map(|p| p.parse::<i32>().unwrap())
        });
        // SAFETY: signalling the container's own child process.
        unsafe { libc::kill(child, libc::SIGTERM) };
        c.wait_stopped();
        assert!(c.output().contains("child-status=143"), "{:?}", c.output());
    }
);

conformance_test!(
    /// runc contract (containerd's `Kill` with all=true): `kill --all` signals every process of the container,
    /// including ones started by exec.
    kill_all,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let mut exec = rt.command(&["exec", &c.id, "/bin/polis-probe", "sleep", "60"]);
        let mut exec_child = exec.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        eventually("the exec'd process is in the container's cgroup", COMMAND_TIMEOUT, || c.processes().len() >= 2);
        rt.cmd(&["kill", "--all", &c.id, "KILL"]).ok();
        let status = exec_child.wait().unwrap();
        assert!(!status.success(), "exec'd process survived kill --all");
        c.wait_stopped();
    }
);

conformance_test!(
    /// runc contract: a foreground `run` forwards the signals it receives to the container's process (Ctrl-C,
    /// `kill <run pid>`).
    run_forwards_signals,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["signal-wait"]);
        let c = rt.container();
        let (mut child, stdout) = c.spawn_run(&b);
        eventually("the probe prints ready (it blocked the signals it waits for)", COMMAND_TIMEOUT, || {
            std::fs::read_to_string(&stdout).unwrap_or_default().contains("ready")
        });
        // SAFETY: signalling the `run` process this test spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        let status = child.wait().unwrap();
        let out = std::fs::read_to_string(&stdout).unwrap();
        assert_eq!(parse_last_json(&out).map(|v| v["signal"].clone()), Some(json!(libc::SIGUSR1)), "{out}");
        assert_eq!(status.code(), Some(0), "{out}");
    }
);

conformance_test!(
    /// runtime.md#kill: "When the process in the container is stopped, irrespective of it being as a result of a
    /// kill operation or any other reason, the status property of this container MUST be stopped." (killed from the
    /// host, not through the runtime)
    external_kill_gives_stopped,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        // SAFETY: the container's own init process, started by this test.
        unsafe { libc::kill(c.pid(), libc::SIGKILL) };
        c.wait_stopped();
        c.delete().ok();
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#start: a container whose init was killed before start cannot be started (it is stopped), and the
    /// program never runs.
    start_after_kill_of_created_fails,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo ran > /ran");
        let c = rt.container();
        c.create(&b).ok();
        c.kill("KILL").ok();
        c.wait_stopped();
        c.start().fails();
        assert!(!b.rootfs().join("ran").exists());
    }
);
