//! runtime-spec config.md#posix-platform-hooks and runtime.md#lifecycle (hook order and failure handling).
//!
//! Hooks that run in the runtime namespace use the host's /bin/sh and write to the host path of a file in the rootfs;
//! hooks that run in the container (startContainer) use the rootfs's busybox sh and write the same file by its
//! container path.

use polis_integration::*;

/// A hook that appends `name` to <rootfs>/hooks.log (host path).
fn host_hook(b: &Bundle, name: &str) -> Value {
    let log = b.rootfs().join("hooks.log");
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {}", log.display())]})
}

fn log_lines(b: &Bundle) -> Vec<String> {
    std::fs::read_to_string(b.rootfs().join("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

conformance_test!(
    /// runtime.md#lifecycle: hooks run in lifecycle order: prestart, createRuntime and createContainer during
    /// create, startContainer during start before the user process, poststop during delete.
    hook_order,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/prestart", json!([host_hook(&b, "prestart")]));
        b.set("/hooks/createRuntime", json!([host_hook(&b, "createRuntime")]));
        b.set("/hooks/createContainer", json!([host_hook(&b, "createContainer")]));
        b.set(
            "/hooks/startContainer",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /hooks.log"]}]),
        );
        b.set("/hooks/poststop", json!([host_hook(&b, "poststop")]));
        b.sh("echo process >> /hooks.log; sleep 1");
        let c = rt.container();
        c.create(&b).ok();
        assert_eq!(log_lines(&b), vec!["prestart", "createRuntime", "createContainer"], "after create");
        c.start().ok();
        c.wait_stopped();
        let lines = log_lines(&b);
        assert_eq!(&lines[..4], &["prestart", "createRuntime", "createContainer", "startContainer"], "{lines:?}");
        let pos = |n: &str| lines.iter().position(|l| l == n).unwrap_or_else(|| panic!("{n} missing: {lines:?}"));
        assert!(pos("startContainer") < pos("process"), "{lines:?}");
        assert!(!lines.contains(&"poststop".to_string()), "poststop before delete: {lines:?}");
        c.delete().ok();
        let lines = log_lines(&b);
        assert_eq!(lines.last().map(String::as_str), Some("poststop"), "{lines:?}");
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "The poststart hooks MUST be invoked by the runtime" after the user-specified process
    /// is started (step 10, after `start`), not during `create`.
    poststart_runs_after_start,
    runc_lacks = "runc 1.1.5 runs poststart hooks at the end of create",
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/hooks/startContainer",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /hooks.log"]}]),
        );
        b.set("/hooks/poststart", json!([host_hook(&b, "poststart")]));
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        assert!(log_lines(&b).is_empty(), "hooks ran during create: {:?}", log_lines(&b));
        c.start().ok();
        assert_eq!(log_lines(&b), vec!["startContainer", "poststart"]);
    }
);

conformance_test!(
    /// config.md#posix-platform-hooks: "The state of the container MUST be passed to hooks over stdin so that they
    /// may do work appropriate to the current state of the container." (id, pid and bundle)
    hook_receives_state_on_stdin,
    |rt| {
        let mut b = Bundle::new();
        let out = b.rootfs().join("state.json");
        b.set(
            "/hooks/createRuntime",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]}]),
        );
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        let st: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).expect("state JSON on stdin");
        assert_eq!(st["id"], c.id.as_str(), "{st}");
        assert_eq!(st["pid"].as_i64(), Some(c.pid() as i64), "{st}");
        let bundle = st["bundle"].as_str().unwrap_or_default();
        assert_eq!(std::fs::canonicalize(bundle).ok(), std::fs::canonicalize(b.path()).ok(), "{st}");
        assert!(st["ociVersion"].is_string(), "{st}");
    }
);

conformance_test!(
    /// config.md#posix-platform-hooks: poststop hooks get the state too, with status `stopped`.
    poststop_state_stopped,
    |rt| {
        let mut b = Bundle::new();
        let out = b.rootfs().join("poststop.json");
        b.set("/hooks/poststop", json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]}]));
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        c.delete().ok();
        let st: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).expect("state JSON");
        assert_eq!(st["status"], "stopped", "{st}");
        assert_eq!(st["id"], c.id.as_str());
    }
);

conformance_test!(
    /// config.md#posix-platform-hooks: "path (string, REQUIRED) with similar semantics to IEEE Std 1003.1-2008
    /// execv's path", "args (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008 execv's
    /// argv", "env (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008's environ".
    hook_args_and_env,
    |rt| {
        let mut b = Bundle::new();
        let log = b.rootfs().join("hook.out");
        b.set(
            "/hooks/createRuntime",
            json!([{
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("echo \"$0 $1 $POLIS_HOOK_VAR\" > {}", log.display()), "first", "second"],
                "env": ["POLIS_HOOK_VAR=from-env"]
            }]),
        );
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first second from-env\n");
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If any createRuntime hook fails, the runtime MUST generate an error, stop the
    /// container, and continue the lifecycle at step 12" — create fails and the container is gone.
    create_runtime_hook_failure_fails_create,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/createRuntime", json!([{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]));
        b.sh("echo ran > /ran");
        let c = rt.container();
        c.create(&b).fails();
        assert!(!b.rootfs().join("ran").exists());
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If any prestart hook fails, the runtime MUST generate an error, stop the container,
    /// and continue the lifecycle at step 12."
    prestart_hook_failure_fails_create,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/prestart", json!([{"path": "/bin/false"}]));
        let c = rt.container();
        c.create(&b).fails();
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If any createContainer hook fails, the runtime MUST generate an error, stop the
    /// container, and continue the lifecycle at step 12."
    create_container_hook_failure_fails_create,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/createContainer", json!([{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]));
        let c = rt.container();
        c.create(&b).fails();
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If any startContainer hook fails, the runtime MUST ... stop the container" — the user
    /// process never runs and the container ends stopped (or gone).
    start_container_hook_failure_stops_container,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/startContainer", json!([{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]));
        b.sh("echo ran > /ran");
        let c = rt.container();
        c.create(&b).ok();
        let _ = c.start();
        // Once the container has ended (its init is dead), the user process can no longer run.
        eventually("the container is stopped or gone", COMMAND_TIMEOUT, || {
            let st = c.state();
            !st.success() || st.json()["status"] == "stopped"
        });
        assert!(!b.rootfs().join("ran").exists(), "user process ran after startContainer failed");
        let st = c.state();
        assert!(!st.success() || st.json()["status"] == "stopped", "container not stopped: {st}");
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If any startContainer hook fails, the runtime MUST generate an error" — `start`
    /// itself fails.
    start_container_hook_failure_fails_start,
    runc_lacks = "runc 1.1.5 start exits 0 when a startContainer hook fails in runc init",
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/startContainer", json!([{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]));
        b.sh("echo ran > /ran");
        let c = rt.container();
        c.create(&b).ok();
        c.start().fails();
        // Once the container has ended (its init is dead), the user process can no longer run.
        eventually("the container is stopped or gone", COMMAND_TIMEOUT, || {
            let st = c.state();
            !st.success() || st.json()["status"] == "stopped"
        });
        assert!(!b.rootfs().join("ran").exists(), "user process ran after startContainer failed");
        let st = c.state();
        assert!(!st.success() || st.json()["status"] == "stopped", "container not stopped: {st}");
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If any poststop hook fails, the runtime MUST log a warning, but the remaining hooks
    /// and lifecycle continue as if the hook had succeeded." (delete still removes the container)
    poststop_hook_failure_ignored,
    runc_lacks = "runc 1.1.5 skips the remaining poststop hooks after one fails",
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/poststop", json!([{"path": "/bin/false"}, host_hook(&b, "second-poststop")]));
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        c.delete().ok();
        assert_eq!(log_lines(&b), vec!["second-poststop"]);
        c.assert_gone();
    }
);

conformance_test!(
    /// config.md#posix-platform-hooks: "timeout (int, OPTIONAL) is the number of seconds before aborting the hook.
    /// If set, timeout MUST be greater than zero." A hook past its timeout is a failed hook: create fails.
    hook_timeout,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/createRuntime", json!([{"path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1}]));
        let c = rt.container();
        let start = std::time::Instant::now();
        c.create(&b).fails();
        assert!(start.elapsed() < std::time::Duration::from_secs(15), "hook timeout not applied");
        c.assert_gone();
    }
);

conformance_test!(
    /// config.md#createcontainer-hooks: "The createContainer hooks MUST be called ... in the container namespace"
    /// (after the mount namespace is created): the hook's mount namespace is the container's.
    create_container_hook_in_container_mount_ns,
    |rt| {
        let mut b = Bundle::new();
        let out = b.path().join("hook-mnt");
        b.set(
            "/hooks/createContainer",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("readlink /proc/self/ns/mnt > {}", out.display())]}]),
        );
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        let hook_ns = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(hook_ns.trim(), process_namespace(c.pid(), "mnt"));
        assert_ne!(hook_ns.trim(), host_namespace("mnt"));
    }
);

conformance_test!(
    /// config.md#startcontainer-hooks: "The startContainer hooks MUST be called ... in the container namespace": the
    /// hook sees the container's hostname and root filesystem.
    start_container_hook_in_container,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hostname", json!("hook-host"));
        b.set("/hooks/startContainer", json!([{"path": "/bin/sh", "args": ["sh", "-c", "hostname > /hook-hostname"]}]));
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        assert_eq!(std::fs::read_to_string(b.rootfs().join("hook-hostname")).unwrap(), "hook-host\n");
    }
);

conformance_test!(
    /// config.md#createruntime-hooks: "The createRuntime hooks MUST be called ... in the runtime namespace": the
    /// hook's mount and UTS namespaces are the host's.
    create_runtime_hook_in_runtime_namespace,
    |rt| {
        let mut b = Bundle::new();
        let out = b.path().join("hook-ns");
        b.set(
            "/hooks/createRuntime",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("readlink /proc/self/ns/mnt /proc/self/ns/uts > {}", out.display())]}]),
        );
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, format!("{}\n{}\n", host_namespace("mnt"), host_namespace("uts")));
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If any poststart hook fails, the runtime MUST log a warning, but the remaining hooks
    /// and lifecycle continue as if the hook had succeeded."
    poststart_hook_failure_ignored,
    runc_lacks = "runc 1.1.5 runs poststart hooks in create and fails create when one fails",
    |rt| {
        let mut b = Bundle::new();
        b.set("/hooks/poststart", json!([{"path": "/bin/false"}]));
        b.sh("sleep 1; echo ran > /ran");
        let c = rt.container();
        c.create(&b).ok();
        c.start().ok();
        c.wait_stopped();
        assert!(b.rootfs().join("ran").exists(), "user process did not complete");
    }
);

conformance_test!(
    /// runtime.md#state: "bundle (string, REQUIRED) is the absolute path to the container's bundle directory",
    /// and config.md#posix-platform-hooks passes that state to every hook. Checked with a seccomp profile, which
    /// polis-runc hands to libcontainer through a rewritten copy of config.json: every hook must still see the
    /// user's bundle, not the copy's directory.
    every_hook_sees_the_users_bundle,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["swapon"], "action": "SCMP_ACT_ERRNO"}]}),
        );
        let rootfs = b.rootfs();
        let host_cat = |kind: &str| {
            let out = rootfs.join(format!("state-{kind}.json"));
            json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]}])
        };
        for kind in ["prestart", "createRuntime", "createContainer", "poststart", "poststop"] {
            let hook = host_cat(kind);
            b.set(&format!("/hooks/{kind}"), hook);
        }
        b.set(
            "/hooks/startContainer",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", "cat > /state-startContainer.json"]}]),
        );
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        c.start().ok();
        c.delete_force().ok();
        for kind in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
            let text = std::fs::read_to_string(b.rootfs().join(format!("state-{kind}.json")))
                .unwrap_or_else(|e| panic!("{kind} hook wrote no state: {e}"));
            let st: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind} state {text:?}: {e}"));
            let bundle = st["bundle"].as_str().unwrap_or_default();
            assert_eq!(
                std::fs::canonicalize(bundle).ok(),
                std::fs::canonicalize(b.path()).ok(),
                "{kind} hook got {st}"
            );
            assert_eq!(st["id"], c.id.as_str(), "{kind} hook got {st}");
        }
    }
);
