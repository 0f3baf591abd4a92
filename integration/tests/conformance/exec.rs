//! runc's `exec` contract (containerd's `Exec`, podman/conmon's exec): a new process in a running container, with
//! the container's namespaces, cgroup and process settings from config.json unless overridden.

use polis_integration::*;

fn running<'a>(rt: &'a Runtime, b: &mut Bundle) -> Container<'a> {
    b.probe(&["sleep", "60"]);
    let c = rt.container();
    c.create_running(b);
    c
}

fn exec_report(c: &Container<'_>, flags: &[&str]) -> Value {
    let out = c.exec_with(flags, &["/bin/polis-probe", "report"]);
    out.ok();
    out.json()
}

conformance_test!(
    /// exec: the process's stdout reaches the caller and its arguments arrive verbatim.
    exec_args_and_stdout,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let out = c.exec(&["/bin/polis-probe", "args", "a b", "c"]);
        out.ok();
        assert_eq!(out.json()["args"], json!(["/bin/polis-probe", "args", "a b", "c"]));
    }
);

conformance_test!(
    /// exec: `exec` exits with the process's exit code.
    exec_exit_code,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        assert_eq!(c.exec(&["/bin/polis-probe", "exit", "7"]).code, Some(7));
        assert_eq!(c.exec(&["/bin/polis-probe", "exit", "0"]).code, Some(0));
    }
);

conformance_test!(
    /// exec: the process joins every namespace of the container.
    exec_joins_namespaces,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let v = exec_report(&c, &[]);
        let pid = c.pid();
        for ns in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
            assert_eq!(v["namespaces"][ns].as_str(), Some(process_namespace(pid, ns).as_str()), "{ns}: {v}");
        }
        assert_eq!(v["hostname"], "polis-test");
    }
);

conformance_test!(
    /// exec: the process joins the container's cgroup.
    exec_joins_cgroup,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let mut exec = rt.command(&["exec", &c.id, "/bin/polis-probe", "sleep", "30"]);
        let mut child = exec.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        eventually("the exec'd process is in the container's cgroup", COMMAND_TIMEOUT, || c.processes().len() >= 2);
        let _ = child.kill();
        let _ = child.wait();
    }
);

conformance_test!(
    /// exec: by default the process gets config.json's user, env, cwd and capabilities.
    exec_inherits_process_config,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        b.set("/process/env", json!(["PATH=/bin", "POLIS_FROM_CONFIG=yes"]));
        b.set("/process/cwd", json!("/home/polis"));
        let c = running(rt, &mut b);
        let v = exec_report(&c, &[]);
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["gid"], 1000);
        assert_eq!(v["cwd"], "/home/polis");
        assert!(v["env"].as_array().unwrap().contains(&json!("POLIS_FROM_CONFIG=yes")), "{v}");
        assert_eq!(v["NoNewPrivs"], "1");
    }
);

conformance_test!(
    /// exec: `--env K=V` adds to the environment.
    exec_env_flag,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let v = exec_report(&c, &["--env", "POLIS_EXEC=1", "--env", "POLIS_TWO=two words"]);
        let env = v["env"].as_array().unwrap();
        assert!(env.contains(&json!("POLIS_EXEC=1")), "{v}");
        assert!(env.contains(&json!("POLIS_TWO=two words")), "{v}");
    }
);

conformance_test!(
    /// exec: `--cwd DIR` sets the working directory.
    exec_cwd_flag,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        assert_eq!(exec_report(&c, &["--cwd", "/tmp"])["cwd"], "/tmp");
    }
);

conformance_test!(
    /// exec: `--user UID:GID` sets the user.
    exec_user_flag,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let v = exec_report(&c, &["--user", "1000:1000"]);
        assert_eq!((v["uid"].as_u64(), v["gid"].as_u64()), (Some(1000), Some(1000)));
    }
);

conformance_test!(
    /// exec: `--user NAME` resolves the name through the container's own /etc/passwd; one that the container made a
    /// symbolic link to a host file (here an absolute path that exists only on the host) is read inside the
    /// rootfs, where the link leads nowhere, so the host's file is never read and the name is not found.
    exec_user_name_never_reads_a_host_file,
    runc_lacks = "runc 1.1.5's exec --user takes only uid[:gid]",
    |rt| {
        let mut b = Bundle::new();
        let passwd = b.rootfs().join("etc/passwd");
        let _ = std::fs::remove_file(&passwd);
        std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\nbyname:x:1234:1235::/:/bin/sh\n").unwrap();
        let c = running(rt, &mut b);
        let v = exec_report(&c, &["--user", "byname"]);
        assert_eq!((v["uid"].as_u64(), v["gid"].as_u64()), (Some(1234), Some(1235)));

        let host = temp_dir("polis-it-host-passwd-");
        let host_passwd = host.path().join("passwd");
        std::fs::write(&host_passwd, "hostonly:x:4321:4321::/:/bin/sh\n").unwrap();
        std::fs::remove_file(&passwd).unwrap();
        std::os::unix::fs::symlink(&host_passwd, &passwd).unwrap();
        let out = c.exec_with(&["--user", "hostonly"], &["/bin/polis-probe", "report"]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("hostonly");
        }
    }
);

conformance_test!(
    /// exec: `--additional-gids` adds supplementary groups.
    exec_additional_gids_flag,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let v = exec_report(&c, &["--user", "1000:1000", "--additional-gids", "10", "--additional-gids", "2000"]);
        let groups: Vec<u64> = v["groups"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
        assert!(groups.contains(&10) && groups.contains(&2000), "{groups:?}");
    }
);

conformance_test!(
    /// exec: `--cap CAP` adds a capability to the process.
    exec_cap_flag,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let base = cap_mask(exec_report(&c, &[])["CapEff"].as_str().unwrap());
        assert_eq!(base & caps_mask(&["CAP_CHOWN"]), 0);
        let with = cap_mask(exec_report(&c, &["--cap", "CAP_CHOWN"])["CapEff"].as_str().unwrap());
        assert_ne!(with & caps_mask(&["CAP_CHOWN"]), 0, "CAP_CHOWN not added");
    }
);

conformance_test!(
    /// exec: `--process FILE` takes a whole process.json (containerd's way of calling exec).
    exec_process_json,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let mut process = b.get("/process").unwrap().clone();
        process["args"] = json!(["/bin/polis-probe", "report"]);
        process["env"] = json!(["PATH=/bin", "FROM_PROCESS_JSON=1"]);
        process["cwd"] = json!("/home");
        process["user"] = json!({"uid": 65534, "gid": 65534});
        let file = rt.scratch().join("process.json");
        std::fs::write(&file, process.to_string()).unwrap();
        let out = c.exec_with(&["--process", file.to_str().unwrap()], &[]);
        out.ok();
        let v = out.json();
        assert_eq!(v["uid"], 65534);
        assert_eq!(v["cwd"], "/home");
        assert!(v["env"].as_array().unwrap().contains(&json!("FROM_PROCESS_JSON=1")), "{v}");
    }
);

conformance_test!(
    /// exec: a stopped container cannot exec (runc: "cannot exec in a stopped container").
    exec_stopped_fails,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        let out = c.exec(&["/bin/polis-probe", "exit", "0"]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("stopped");
        }
    }
);

conformance_test!(
    /// exec: an unknown container is an error naming it missing.
    exec_unknown_fails,
    |rt| {
        let c = rt.container();
        let out = c.exec(&["/bin/true"]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("does not exist");
        }
    }
);

conformance_test!(
    /// exec: a program that does not exist in the container makes exec fail, and the container keeps running.
    exec_missing_program_fails,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let out = c.exec(&["/bin/polis-no-such-program"]);
        out.fails();
        assert_eq!(c.status(), "running");
    }
);

conformance_test!(
    /// exec: the exec'd process is not PID 1 of the container's PID namespace.
    exec_not_pid_one,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let v = exec_report(&c, &[]);
        assert_ne!(v["pid"], 1);
        assert_eq!(v["ppid"], 0, "exec'd process should be parented outside the namespace: {v}");
    }
);

conformance_test!(
    /// exec: the exec'd process gets config.json's rlimits (RLIMIT_MSGQUEUE, RLIMIT_NPROC).
    exec_rlimits,
    |rt| {
        let mut b = Bundle::new();
        b.push("/process/rlimits", json!({"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192}));
        b.push("/process/rlimits", json!({"type": "RLIMIT_NPROC", "soft": 333, "hard": 444}));
        let c = running(rt, &mut b);
        let v = exec_report(&c, &[]);
        assert_eq!(v["rlimits"]["RLIMIT_MSGQUEUE"], json!([4096, 8192]), "{v}");
        assert_eq!(v["rlimits"]["RLIMIT_NPROC"], json!([333, 444]), "{v}");
    }
);

conformance_test!(
    /// exec: the exec'd process gets config.json's RLIMIT_NOFILE, not the runtime's own (Go runtimes raise their
    /// soft NOFILE limit at start and must restore the configured one).
    exec_rlimit_nofile,
    runc_lacks = "runc 1.1.5 exec sometimes leaks its raised soft RLIMIT_NOFILE (Go 1.19 behaviour)",
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/rlimits", json!([{"type": "RLIMIT_NOFILE", "soft": 333, "hard": 444}]));
        let c = running(rt, &mut b);
        for _ in 0..5 {
            assert_eq!(exec_report(&c, &[])["rlimits"]["RLIMIT_NOFILE"], json!([333, 444]));
        }
    }
);

conformance_test!(
    /// exec into a created (not started) container: runc allows it; the process runs in the container.
    exec_into_created,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create(&b).ok();
        let out = c.exec(&["/bin/polis-probe", "exit", "5"]);
        assert_eq!(out.code, Some(5), "{out}");
    }
);

conformance_test!(
    /// runc contract (`runc exec` joins the container's cgroups), and config-linux.md#cgroups-path: "If the value
    /// is not specified, the runtime MAY define the default cgroups path" — the default is the container's, and a
    /// process started by exec must land in that same cgroup, not one of its own. Checked with a config.json that
    /// has no cgroupsPath, as `runc spec` writes it: the exec'd process shares every v1 controller's (or the v2)
    /// cgroup with the init process.
    exec_joins_the_default_cgroup,
    |rt| {
        let c = rt.container();
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        b.write_config(None);
        let bundle = b.path().to_str().unwrap().to_string();
        rt.cmd(&["create", "--bundle", &bundle, &c.id]).ok();
        c.start().ok();
        let pid_file = rt.scratch().join(format!("{}-exec.pid", c.id));
        let pid_arg = pid_file.to_str().unwrap().to_string();
        let exec = c.exec_with(&["--detach", "--pid-file", &pid_arg], &["/bin/polis-probe", "sleep", "60"]);
        let cgroups_of = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.contains("name=") && !l.starts_with("0::") || cgroup::mode() == cgroup::Mode::Unified)
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let exec_pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let (init, joined) = (cgroups_of(&c.pid().to_string()), cgroups_of(exec_pid.trim()));
        c.delete_force().ok();
        // Whatever cgroup a faulty exec made for itself (libcontainer's default is ":youki:<id>").
        for dir in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(dir.path().join(format!(":youki:{}", c.id)));
        }
        exec.ok();
        assert!(!init.is_empty(), "no cgroups for init");
        assert_eq!(init, joined, "exec'd process {exec_pid} is in other cgroups than the init process");
    }
);
