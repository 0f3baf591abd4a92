//! runtime-spec config.md#process and config-linux.md process attributes, checked from inside the container by
//! `polis-probe report`.

use polis_integration::*;

/// Runs the bundle's process to completion and returns the probe's JSON.
fn report(rt: &Runtime, b: &mut Bundle) -> Value {
    if b.get("/process/args/1").is_none_or(|a| a != "report") {
        b.probe(&["report"]);
    }
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

fn probe_json(rt: &Runtime, b: &Bundle) -> Value {
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

conformance_test!(
    /// config.md#process: "args (array of strings, OPTIONAL) with similar semantics to IEEE Std 1003.1-2008 execvp's
    /// argv." Every argument reaches the process unchanged.
    args_passed_verbatim,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["args", "", "with space", "quote\"d", "ünïcode", "$HOME", "--flag=1"]);
        let v = probe_json(rt, &b);
        assert_eq!(
            v["args"],
            json!(["/bin/polis-probe", "args", "", "with space", "quote\"d", "ünïcode", "$HOME", "--flag=1"])
        );
    }
);

conformance_test!(
    /// config.md#process: args "with similar semantics to ... execvp": a bare program name is looked up in the
    /// PATH given in `env`.
    args_path_lookup,
    |rt| {
        let mut b = Bundle::new();
        b.args(&["polis-probe", "args", "x"]);
        let v = probe_json(rt, &b);
        assert_eq!(v["args"], json!(["polis-probe", "args", "x"]));
    }
);

conformance_test!(
    /// config.md#process: "env (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008's
    /// environ."
    env_set,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/env", json!(["PATH=/bin", "POLIS_A=1", "POLIS_B=with space=and equals"]));
        let v = report(rt, &mut b);
        let env: Vec<&str> = v["env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(env.contains(&"POLIS_A=1"), "{env:?}");
        assert!(env.contains(&"POLIS_B=with space=and equals"), "{env:?}");
        assert!(env.contains(&"PATH=/bin"), "{env:?}");
    }
);

conformance_test!(
    /// config.md#process: the environment is the one in `env`; nothing of the runtime caller's environment leaks
    /// into the container.
    env_no_host_leak,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["report"]);
        let c = rt.container();
        b.write_config(Some(&c.cgroups_path()));
        let mut cmd = rt.command(&["run", "--bundle"]);
        cmd.arg(b.path()).arg(&c.id).env("POLIS_HOST_SECRET", "leaked");
        let out = run_command(cmd, &rt.scratch(), COMMAND_TIMEOUT);
        out.ok();
        let env = out.json()["env"].to_string();
        assert!(!env.contains("POLIS_HOST_SECRET"), "host environment leaked: {env}");
    }
);

conformance_test!(
    /// config.md#process: "cwd (string, REQUIRED) is the working directory that will be set for the executable."
    cwd_set,
    |rt| {
        let mut b = Bundle::new();
        std::fs::create_dir_all(b.rootfs().join("work/dir")).unwrap();
        b.set("/process/cwd", json!("/work/dir"));
        assert_eq!(report(rt, &mut b)["cwd"], "/work/dir");
    }
);

conformance_test!(
    /// config.md#process: cwd set for a non-root user as well.
    cwd_set_for_user,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/cwd", json!("/home/polis"));
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        assert_eq!(report(rt, &mut b)["cwd"], "/home/polis");
    }
);

conformance_test!(
    /// config.md#user: "uid (int, REQUIRED) specifies the user ID in the container namespace." and "gid (int,
    /// REQUIRED) specifies the group ID in the container namespace."
    user_uid_gid,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        let v = report(rt, &mut b);
        assert_eq!((v["uid"].as_u64(), v["euid"].as_u64()), (Some(1000), Some(1000)));
        assert_eq!((v["gid"].as_u64(), v["egid"].as_u64()), (Some(1000), Some(1000)));
    }
);

conformance_test!(
    /// config.md#user: uid and gid are independent: a uid without a matching passwd group still gets the given gid.
    user_uid_gid_distinct,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/user", json!({"uid": 4321, "gid": 8765}));
        let v = report(rt, &mut b);
        assert_eq!(v["uid"], 4321);
        assert_eq!(v["gid"], 8765);
    }
);

conformance_test!(
    /// config.md#user: "additionalGids (array of ints, OPTIONAL) specifies additional group IDs in the container
    /// namespace to be added to the process."
    user_additional_gids,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/user", json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000, 3000]}));
        let v = report(rt, &mut b);
        let groups: Vec<u64> = v["groups"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
        for g in [10, 2000, 3000] {
            assert!(groups.contains(&g), "group {g} missing from {groups:?}");
        }
    }
);

conformance_test!(
    /// config.md#user: without additionalGids a uid-0 process gets no supplementary groups beyond its gid.
    user_no_additional_gids,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/user", json!({"uid": 0, "gid": 0}));
        let v = report(rt, &mut b);
        let groups: Vec<u64> = v["groups"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
        assert!(groups.iter().all(|g| *g == 0), "unexpected groups {groups:?}");
    }
);

conformance_test!(
    /// config.md#user: "umask (int, OPTIONAL) specifies the umask of the user."
    umask_set,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/user/umask", json!(0o027));
        assert_eq!(report(rt, &mut b)["umask"], "0027");
    }
);

conformance_test!(
    /// config.md#user: umask applies to files the process creates.
    umask_applies_to_new_files,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/user/umask", json!(0o077));
        b.sh("touch /tmp/f && stat -c %a /tmp/f");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.stdout.trim(), "600");
    }
);

conformance_test!(
    /// config.md#posix-process: rlimits "type (string, REQUIRED) the platform resource being limited", "soft" and
    /// "hard": "the value of the limit enforced for the corresponding resource" (RLIMIT_NOFILE).
    rlimit_nofile,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/rlimits", json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]));
        assert_eq!(report(rt, &mut b)["rlimits"]["RLIMIT_NOFILE"], json!([512, 1024]));
    }
);

conformance_test!(
    /// config.md#posix-process: rlimits, RLIMIT_CORE lowered to zero.
    rlimit_core,
    |rt| {
        let mut b = Bundle::new();
        b.push("/process/rlimits", json!({"type": "RLIMIT_CORE", "soft": 0, "hard": 0}));
        assert_eq!(report(rt, &mut b)["rlimits"]["RLIMIT_CORE"], json!([0, 0]));
    }
);

conformance_test!(
    /// config.md#posix-process: several rlimits at once, each applied (RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_MSGQUEUE).
    rlimit_several,
    |rt| {
        let mut b = Bundle::new();
        b.push("/process/rlimits", json!({"type": "RLIMIT_NPROC", "soft": 500, "hard": 600}));
        b.push("/process/rlimits", json!({"type": "RLIMIT_FSIZE", "soft": 1048576, "hard": 2097152}));
        b.push("/process/rlimits", json!({"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192}));
        let v = report(rt, &mut b);
        assert_eq!(v["rlimits"]["RLIMIT_NPROC"], json!([500, 600]));
        assert_eq!(v["rlimits"]["RLIMIT_FSIZE"], json!([1048576, 2097152]));
        assert_eq!(v["rlimits"]["RLIMIT_MSGQUEUE"], json!([4096, 8192]));
        assert_eq!(v["rlimits"]["RLIMIT_NOFILE"], json!([1024, 1024]));
    }
);

conformance_test!(
    /// config.md#posix-process: an rlimit is enforced, not only reported: with RLIMIT_FSIZE of 1024 bytes a larger
    /// write fails (EFBIG).
    rlimit_fsize_enforced,
    |rt| {
        let mut b = Bundle::new();
        b.push("/process/rlimits", json!({"type": "RLIMIT_FSIZE", "soft": 1024, "hard": 1024}));
        b.push("/process/rlimits", json!({"type": "RLIMIT_CORE", "soft": 0, "hard": 0}));
        let big = "x".repeat(4096);
        b.probe(&["write", "/tmp/big", &big]);
        let v = probe_json(rt, &b);
        assert_eq!(v["errno"], libc::EFBIG, "{v}");
    }
);

/// Sets all five capability sets of the bundle to `caps`.
fn set_caps(b: &mut Bundle, caps: &[&str]) {
    let c = json!(caps);
    b.set(
        "/process/capabilities",
        json!({"bounding": c, "effective": c, "permitted": c, "inheritable": c, "ambient": c}),
    );
}

conformance_test!(
    /// config.md#linux-process: "bounding (array of strings, OPTIONAL) the bounding field contains the set of
    /// bounding capabilities."
    capabilities_bounding_exact,
    |rt| {
        let mut b = Bundle::new();
        let caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"];
        b.set("/process/capabilities/bounding", json!(caps));
        let v = report(rt, &mut b);
        assert_eq!(cap_mask(v["CapBnd"].as_str().unwrap()), caps_mask(&caps));
    }
);

conformance_test!(
    /// config.md#linux-process: "effective (array of strings, OPTIONAL) the effective field contains the set of
    /// effective capabilities." and "permitted ... the set of permitted capabilities."
    capabilities_effective_permitted,
    |rt| {
        let mut b = Bundle::new();
        let caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL"];
        set_caps(&mut b, &caps);
        let v = report(rt, &mut b);
        assert_eq!(cap_mask(v["CapEff"].as_str().unwrap()), caps_mask(&caps));
        assert_eq!(cap_mask(v["CapPrm"].as_str().unwrap()), caps_mask(&caps));
    }
);

conformance_test!(
    /// config.md#linux-process: "inheritable (array of strings, OPTIONAL) the inheritable field contains the set of
    /// inheritable capabilities."
    capabilities_inheritable,
    |rt| {
        let mut b = Bundle::new();
        let caps = ["CAP_NET_BIND_SERVICE", "CAP_SETGID"];
        set_caps(&mut b, &caps);
        let v = report(rt, &mut b);
        assert_eq!(cap_mask(v["CapInh"].as_str().unwrap()), caps_mask(&caps));
    }
);

conformance_test!(
    /// config.md#linux-process: "ambient (array of strings, OPTIONAL) the ambient field contains the set of ambient
    /// capabilities." Ambient capabilities survive the execve of a non-root user's process.
    capabilities_ambient_nonroot,
    |rt| {
        let mut b = Bundle::new();
        let caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"];
        set_caps(&mut b, &caps);
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        let v = report(rt, &mut b);
        assert_eq!(cap_mask(v["CapAmb"].as_str().unwrap()), caps_mask(&caps));
        assert_eq!(cap_mask(v["CapEff"].as_str().unwrap()), caps_mask(&caps));
    }
);

conformance_test!(
    /// config.md#linux-process: with every capability set empty the process has no capabilities at all.
    capabilities_none,
    |rt| {
        let mut b = Bundle::new();
        set_caps(&mut b, &[]);
        let v = report(rt, &mut b);
        for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
            assert_eq!(cap_mask(v[set].as_str().unwrap()), 0, "{set} not empty: {v}");
        }
    }
);

conformance_test!(
    /// config.md#linux-process: a non-root process without ambient capabilities ends with an empty effective set.
    capabilities_nonroot_without_ambient,
    |rt| {
        let mut b = Bundle::new();
        let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        let v = report(rt, &mut b);
        assert_eq!(cap_mask(v["CapEff"].as_str().unwrap()), 0, "{v}");
        assert_eq!(cap_mask(v["CapBnd"].as_str().unwrap()), caps_mask(&["CAP_CHOWN", "CAP_KILL"]));
    }
);

conformance_test!(
    /// config.md#linux-process: capabilities take effect: without CAP_CHOWN, root's chown of a file fails with
    /// EPERM.
    capability_chown_withheld,
    |rt| {
        let mut b = Bundle::new();
        set_caps(&mut b, &["CAP_KILL"]);
        std::fs::write(b.rootfs().join("tmp/f"), "x").unwrap();
        b.probe(&["syscall", "chown", "/tmp/f", "1000", "1000"]);
        assert_eq!(probe_json(rt, &b)["errno"], libc::EPERM);
    }
);

conformance_test!(
    /// config.md#linux-process: capabilities take effect: with CAP_CHOWN, root's chown succeeds.
    capability_chown_granted,
    |rt| {
        let mut b = Bundle::new();
        set_caps(&mut b, &["CAP_CHOWN"]);
        std::fs::write(b.rootfs().join("tmp/f"), "x").unwrap();
        b.probe(&["syscall", "chown", "/tmp/f", "1000", "1000"]);
        assert_eq!(probe_json(rt, &b)["errno"], 0);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(b.rootfs().join("tmp/f")).unwrap().uid(), 1000);
    }
);

conformance_test!(
    /// config.md#linux-process: without CAP_SYS_ADMIN, sethostname fails with EPERM even in a private UTS namespace.
    capability_sys_admin_withheld,
    |rt| {
        let mut b = Bundle::new();
        set_caps(&mut b, &["CAP_KILL"]);
        b.probe(&["syscall", "sethostname", "changed"]);
        assert_eq!(probe_json(rt, &b)["errno"], libc::EPERM);
    }
);

conformance_test!(
    /// config.md#linux-process: with CAP_SYS_ADMIN, sethostname in the container's UTS namespace succeeds.
    capability_sys_admin_granted,
    |rt| {
        let mut b = Bundle::new();
        set_caps(&mut b, &["CAP_SYS_ADMIN"]);
        b.probe(&["syscall", "sethostname", "changed"]);
        assert_eq!(probe_json(rt, &b)["errno"], 0);
    }
);

conformance_test!(
    /// config.md#linux-process: "noNewPrivileges (bool, OPTIONAL) setting noNewPrivileges to true prevents the
    /// process from gaining additional privileges."
    no_new_privileges_true,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/noNewPrivileges", json!(true));
        assert_eq!(report(rt, &mut b)["NoNewPrivs"], "1");
    }
);

conformance_test!(
    /// config.md#linux-process: noNewPrivileges false leaves the no_new_privs bit clear.
    no_new_privileges_false,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/noNewPrivileges", json!(false));
        assert_eq!(report(rt, &mut b)["NoNewPrivs"], "0");
    }
);

conformance_test!(
    /// config.md#linux-process: "oomScoreAdj (int, OPTIONAL) adjusts the oom-killer score in
    /// [pid]/oom_score_adj for the process's [pid] in a proc pseudo-filesystem."
    oom_score_adj_set,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/oomScoreAdj", json!(345));
        assert_eq!(report(rt, &mut b)["oom_score_adj"], 345);
    }
);

conformance_test!(
    /// config.md#linux-process: "If oomScoreAdj is not set, the runtime MUST NOT change the value of
    /// oom_score_adj." (the caller's value, 0 here, is kept)
    oom_score_adj_unset_unchanged,
    |rt| {
        let host: i64 = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
        let mut b = Bundle::new();
        assert_eq!(report(rt, &mut b)["oom_score_adj"], host);
    }
);

conformance_test!(
    /// config.md#process: "terminal (bool, OPTIONAL) specifies whether a terminal is attached to the process,
    /// defaults to false." With false, no stdio stream is a terminal.
    terminal_false_no_tty,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/terminal", json!(false));
        assert_eq!(report(rt, &mut b)["tty"], json!([false, false, false]));
    }
);

conformance_test!(
    /// runtime-linux.md / config-linux.md#namespaces (pid): the container's process is PID 1 of its new PID
    /// namespace.
    process_is_pid_one,
    |rt| {
        let mut b = Bundle::new();
        let v = report(rt, &mut b);
        assert_eq!(v["pid"], 1);
        assert_eq!(v["ppid"], 0);
    }
);

conformance_test!(
    /// config.md#process: the process's stdout reaches the caller of `run` (runc contract for `terminal: false`).
    stdout_passthrough,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo hello-stdout; echo hello-stderr >&2");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.stdout, "hello-stdout\n");
        assert!(out.stderr.contains("hello-stderr"), "{out}");
    }
);

conformance_test!(
    /// config.md#linux-process: "ioPriority (object, OPTIONAL) configures the I/O priority settings for the
    /// container's processes" with "class (string, REQUIRED)" and "priority (int, REQUIRED)".
    io_priority,
    runc_lacks = "runc 1.1.5 predates runtime-spec 1.2 process.ioPriority",
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 6}));
        b.probe(&["syscall", "ioprio_get"]);
        // IOPRIO_CLASS_BE is 2; the kernel reports class << 13 | level.
        assert_eq!(probe_json(rt, &b)["ret"], (2 << 13) | 6);
    }
);

conformance_test!(
    /// config.md#linux-process: "scheduler (object, OPTIONAL) is an object describing the scheduler properties for
    /// the process", "policy (string, REQUIRED)" (SCHED_BATCH).
    scheduler_policy,
    runc_lacks = "runc 1.1.5 predates runtime-spec 1.2 process.scheduler",
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/scheduler", json!({"policy": "SCHED_BATCH"}));
        b.probe(&["syscall", "sched_getscheduler"]);
        assert_eq!(probe_json(rt, &b)["ret"], libc::SCHED_BATCH);
    }
);

conformance_test!(
    /// config-linux.md#personality: "domain (string, REQUIRED) the execution domain" (LINUX32: uname reports a
    /// 32-bit machine).
    personality_linux32,
    runc_lacks = "runc 1.1.5 predates linux.personality",
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/personality", json!({"domain": "LINUX32"}));
        b.sh("uname -m; polis-probe syscall personality 4294967295");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.stdout.lines().next(), Some("i686"), "{out}");
        assert_eq!(out.json()["ret"].as_i64().map(|p| p & 0xff), Some(0x0008) /* PER_LINUX32 */, "{out}");
    }
);

conformance_test!(
    /// runc contract (Docker and podman rely on it): when `env` has no HOME, the runtime sets HOME from the user's
    /// /etc/passwd entry in the rootfs.
    home_from_passwd,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/env", json!(["PATH=/bin"]));
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        let v = report(rt, &mut b);
        assert!(v["env"].as_array().unwrap().contains(&json!("HOME=/home/polis")), "{v}");
    }
);

conformance_test!(
    /// config.md#process: an explicit HOME in `env` is kept as given.
    home_explicit_kept,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/env", json!(["PATH=/bin", "HOME=/custom"]));
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        let v = report(rt, &mut b);
        let homes: Vec<&Value> = v["env"].as_array().unwrap().iter().filter(|e| e.as_str().is_some_and(|s| s.starts_with("HOME="))).collect();
        assert_eq!(homes, vec![&json!("HOME=/custom")], "{v}");
    }
);

/// Runs `cmd` with `input` on stdin and returns (exit code, stdout).
fn with_stdin(mut cmd: std::process::Command, input: &str) -> (Option<i32>, String) {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

conformance_test!(
    /// runc contract (`echo x | runc run ...`): with `terminal: false` the process's stdin is the caller's.
    run_stdin_passthrough,
    |rt| {
        let mut b = Bundle::new();
        b.args(&["cat"]);
        let c = rt.container();
        b.write_config(Some(&c.cgroups_path()));
        let mut cmd = rt.command(&["run", "--bundle"]);
        cmd.arg(b.path()).arg(&c.id);
        let (code, out) = with_stdin(cmd, "line one\nline two\n");
        assert_eq!(code, Some(0));
        assert_eq!(out, "line one\nline two\n");
    }
);

conformance_test!(
    /// runc contract (`kubectl exec -i`, `ctr tasks exec`): exec passes the caller's stdin to the new process.
    exec_stdin_passthrough,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let cmd = rt.command(&["exec", &c.id, "sh", "-c", "wc -l"]);
        let (code, out) = with_stdin(cmd, "a\nb\nc\n");
        assert_eq!(code, Some(0));
        assert_eq!(out.trim(), "3");
    }
);

conformance_test!(
    /// config.md#linux-process: "Runtimes SHOULD NOT fail if the container configuration requests capabilities that
    /// cannot be granted, for example, if the runtime operates in a restricted environment with limited
    /// capabilities", and such values "MUST be logged as a warning". A config that asks for every capability up to
    /// CAP_LAST_CAP gets exactly the host's bounding set in every set, with a warning naming what was left out.
    all_capabilities_become_the_hosts_bounding_set,
    runc_lacks = "runc 1.1.5 fails (\"unable to apply caps: operation not permitted\") when the host's bounding set lacks a requested capability, as this host's lacks CAP_SYS_RESOURCE",
    |rt| {
        let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap().trim().parse().unwrap();
        let all: Vec<&str> = CAPABILITY_NAMES[..=last.min(CAPABILITY_NAMES.len() - 1)].to_vec();
        let mut b = Bundle::new();
        set_caps(&mut b, &all);
        b.probe(&["report"]);
        let out = rt.container().run(&b);
        out.ok();
        let v = out.json();
        let host = host_bounding_set();
        for set in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(cap_mask(v[set].as_str().unwrap()), host, "{set}: {v}");
        }
        for name in all.iter().filter(|n| host & (1 << cap_number(n)) == 0) {
            out.stderr_mentions(name);
        }
    }
);
