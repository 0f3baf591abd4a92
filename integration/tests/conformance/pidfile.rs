//! runc's `--pid-file` contract (containerd and podman read it to find the container's process).

use polis_integration::*;

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(-1)
}

conformance_test!(
    /// runc contract: `create --pid-file F` writes the container process's host PID (the one `state` reports).
    create_pid_file,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let pidfile = rt.scratch().join("create.pid");
        let c = rt.container();
        c.create_with(&b, &["--pid-file", pidfile.to_str().unwrap()]).ok();
        assert_eq!(read_pid(&pidfile), c.pid());
        assert!(process_alive(read_pid(&pidfile)));
    }
);

conformance_test!(
    /// runc contract: a relative `--pid-file` is relative to the caller's working directory.
    create_pid_file_relative,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        b.write_config(Some(&c.cgroups_path()));
        let mut cmd = rt.command(&["create", "--bundle"]);
        cmd.arg(b.path()).args(["--pid-file", "rel.pid", &c.id]).current_dir(rt.scratch());
        run_command(cmd, &rt.scratch(), COMMAND_TIMEOUT).ok();
        assert_eq!(read_pid(&rt.scratch().join("rel.pid")), c.pid());
    }
);

conformance_test!(
    /// runc contract: the pid file is complete when create returns (written atomically: never empty or partial).
    create_pid_file_complete,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let pidfile = rt.scratch().join("atomic.pid");
        let c = rt.container();
        c.create_with(&b, &["--pid-file", pidfile.to_str().unwrap()]).ok();
        let text = std::fs::read_to_string(&pidfile).unwrap();
        assert!(text.trim().chars().all(|ch| ch.is_ascii_digit()) && !text.trim().is_empty(), "{text:?}");
    }
);

conformance_test!(
    /// runc contract: `exec --pid-file F` writes the exec'd process's host PID, a process inside the container.
    exec_pid_file,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create_running(&b);
        let pidfile = rt.scratch().join("exec.pid");
        let mut exec = rt.command(&["exec", "--pid-file", pidfile.to_str().unwrap(), &c.id, "/bin/polis-probe", "sleep", "30"]);
        let mut child = exec.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let pid = eventually_some("exec writes its pid file", COMMAND_TIMEOUT, || Some(read_pid(&pidfile)).filter(|p| *p > 0));
        assert_ne!(pid, c.pid());
        assert_eq!(process_namespace(pid, "pid"), process_namespace(c.pid(), "pid"));
        let _ = child.kill();
        let _ = child.wait();
    }
);

conformance_test!(
    /// runc contract: `run --detach --pid-file F` returns once the container runs and writes its PID.
    run_detach_pid_file,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let pidfile = rt.scratch().join("run.pid");
        let c = rt.container();
        c.run_with(&b, &["--detach", "--pid-file", pidfile.to_str().unwrap()]).ok();
        assert_eq!(c.status(), "running");
        assert_eq!(read_pid(&pidfile), c.pid());
    }
);
