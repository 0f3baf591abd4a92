//! Bad input: runtime.md#errors ("generating an error MUST leave the state of the environment as if the operation
//! were never attempted"), runtime.md#create (invalid IDs, duplicates) and config.md validation. Each case must fail,
//! name the problem (asserted for polis-runc, whose wording we own), and leave no state, cgroup or process.

use polis_integration::*;

/// Creates `b` under `c` and asserts failure with nothing left behind; returns the output.
#[track_caller]
fn create_fails_clean(c: &Container<'_>, b: &Bundle) -> Output {
    let out = c.create(b);
    out.fails();
    c.assert_gone();
    out
}

conformance_test!(
    /// runtime.md#create: "This operation MUST generate an error if it is not provided a path to the bundle" — a
    /// bundle directory that does not exist.
    missing_bundle,
    |rt| {
        let c = rt.container();
        let out = rt.cmd(&["create", "--bundle", "/nonexistent/polis-bundle", &c.id]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("/nonexistent/polis-bundle");
        }
        c.assert_gone();
    }
);

conformance_test!(
    /// bundle.md: "config.json: This REQUIRED file MUST reside in the root of this directory" — a bundle without it.
    missing_config_json,
    |rt| {
        let b = Bundle::new();
        let c = rt.container();
        let out = rt.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &c.id]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("config.json");
        }
        c.assert_gone();
    }
);

conformance_test!(
    /// config.md: config.json must be JSON; a malformed file is an error.
    malformed_config_json,
    |rt| {
        let b = Bundle::new();
        b.write_raw("{\"ociVersion\": \"1.2.0\", \"process\": ");
        let c = rt.container();
        let out = rt.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &c.id]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("config.json");
        }
        c.assert_gone();
    }
);

conformance_test!(
    /// config.md#process: "args (array of strings ...)" — a config whose args is not an array of strings violates
    /// the schema.
    schema_invalid_args_type,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/args", json!("not-an-array"));
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("args");
        }
    }
);

conformance_test!(
    /// config.md#root: "path (string, REQUIRED)" — a root path that does not exist.
    missing_rootfs,
    |rt| {
        let mut b = Bundle::new();
        b.set("/root/path", json!("no-such-rootfs"));
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("no-such-rootfs");
        }
    }
);

conformance_test!(
    /// config.md#specification-version: "ociVersion (string, REQUIRED) MUST be in SemVer v2.0.0 format and specifies
    /// the version of the Open Container Initiative Runtime Specification with which the bundle complies." A runtime
    /// cannot honour a config of an unknown major version.
    unsupported_oci_version,
    runc_lacks = "runc 1.1.5 does not check ociVersion",
    |rt| {
        let mut b = Bundle::new();
        b.set("/ociVersion", json!("2.0.0"));
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("2.0.0");
        }
    }
);

conformance_test!(
    /// config.md#linux-process: "Any value which cannot be mapped to a relevant kernel interface, or cannot be
    /// granted otherwise MUST be logged as a warning by the runtime. Runtimes SHOULD NOT fail if the container
    /// configuration requests capabilities that cannot be granted." An unknown capability name is warned about by
    /// name, and the known ones are still granted.
    unknown_capability_warned,
    |rt| {
        let mut b = Bundle::new();
        let caps = json!(["CAP_KILL", "CAP_POLIS_BOGUS"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        b.probe(&["report"]);
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        out.stderr_mentions("CAP_POLIS_BOGUS");
        assert_eq!(cap_mask(out.json()["CapEff"].as_str().unwrap()), caps_mask(&["CAP_KILL"]));
    }
);

conformance_test!(
    /// config.md#process: "cwd (string, REQUIRED) ... This value MUST be an absolute path."
    relative_cwd,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/cwd", json!("relative/dir"));
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("cwd");
        }
    }
);

conformance_test!(
    /// config.md#process: "args ... REQUIRED" on create for a process to run; an empty args array is an error.
    empty_args,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/args", json!([]));
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("args");
        }
    }
);

conformance_test!(
    /// config.md#posix-process: rlimit "type (string, REQUIRED) the platform resource being limited" — an unknown
    /// type is an error.
    unknown_rlimit_type,
    |rt| {
        let mut b = Bundle::new();
        b.push("/process/rlimits", json!({"type": "RLIMIT_POLIS", "soft": 1, "hard": 1}));
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("RLIMIT_POLIS");
        }
    }
);

conformance_test!(
    /// config.md#posix-process: an rlimit whose soft value exceeds its hard value cannot be applied.
    rlimit_soft_above_hard,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/rlimits", json!([{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]));
        create_fails_clean(&rt.container(), &b);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "action (string, REQUIRED) - the action for seccomp rules" — an unknown action is an
    /// error.
    unknown_seccomp_action,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_POLIS"}]}),
        );
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("SCMP_ACT_POLIS");
        }
    }
);

conformance_test!(
    /// config.md#mounts: a bind mount whose source does not exist cannot be created.
    bind_mount_missing_source,
    |rt| {
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/mnt/x", "type": "bind", "source": "/nonexistent/polis-src", "options": ["rbind"]}),
        );
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("/nonexistent/polis-src");
        }
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "If the runtime is unable to create the environment specified in the config.json, it
    /// MUST generate an error." A process whose program does not exist fails at create or start, never runs, and
    /// `run` reports failure.
    missing_program,
    |rt| {
        let mut b = Bundle::new();
        b.args(&["/bin/polis-no-such-program"]);
        let c = rt.container();
        let out = c.run(&b);
        out.fails();
        c.assert_gone();
    }
);

macro_rules! bad_id {
    ($name:ident, $id:expr) => {
        conformance_test!(
            /// runtime.md#create: "If the ID provided is not unique across all containers within the scope of the
            /// runtime, or is not valid in any other way, the implementation MUST generate an error and a new
            /// container MUST NOT be created."
            $name,
            |rt| {
                let b = Bundle::new();
                b.write_config(None);
                let id: String = $id;
                let out = rt.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
                out.fails();
                if rt.is_polis() {
                    assert!(
                        out.stderr.to_lowercase().contains("id"),
                        "error should say the ID is invalid: {out}"
                    );
                }
                rt.assert_no_state();
                assert!(!std::path::Path::new(&format!("{}/{}", rt.root().display(), "a")).exists());
            }
        );
    };
}

bad_id!(id_empty, String::new());
bad_id!(id_dot, ".".to_string());
bad_id!(id_dotdot, "..".to_string());
bad_id!(id_slash, "a/b".to_string());
bad_id!(id_too_long, "x".repeat(256));
bad_id!(id_traversal, "../escape".to_string());
bad_id!(id_space, "with space".to_string());

conformance_test!(
    /// runtime.md#create: "If the ID provided is not unique across all containers within the scope of the runtime
    /// ... the implementation MUST generate an error and a new container MUST NOT be created." The first container
    /// is untouched.
    duplicate_id,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create(&b).ok();
        let pid = c.pid();
        let mut b2 = Bundle::new();
        b2.probe(&["sleep", "60"]);
        b2.write_config(Some("/polis-test/duplicate-second"));
        let out = rt.cmd(&["create", "--bundle", b2.path().to_str().unwrap(), &c.id]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("already exists");
        }
        assert_eq!(c.pid(), pid);
        assert_eq!(c.status(), "created");
        let st = c.state_json();
        assert_eq!(
            std::fs::canonicalize(st["bundle"].as_str().unwrap()).ok(),
            std::fs::canonicalize(b.path()).ok(),
            "duplicate create replaced the bundle"
        );
        assert!(cgroup::existing_dirs("/polis-test/duplicate-second").is_empty());
    }
);

conformance_test!(
    /// runtime.md#query-state: "This operation MUST generate an error if it is not provided the ID of a container."
    state_without_id,
    |rt| {
        rt.cmd(&["state"]).fails();
    }
);

conformance_test!(
    /// runtime.md#start: "This operation MUST generate an error if it is not provided the container ID."
    start_without_id,
    |rt| {
        rt.cmd(&["start"]).fails();
    }
);

conformance_test!(
    /// runtime.md#kill: "This operation MUST generate an error if it is not provided the container ID."
    kill_without_id,
    |rt| {
        rt.cmd(&["kill"]).fails();
    }
);

conformance_test!(
    /// runtime.md#delete: "This operation MUST generate an error if it is not provided the container ID."
    delete_without_id,
    |rt| {
        rt.cmd(&["delete"]).fails();
    }
);

conformance_test!(
    /// runc contract: an unknown global flag is an error, never silently ignored (docs/ARCHITECTURE.md: "a flag it
    /// cannot honour is an error").
    unknown_flag,
    |rt| {
        let c = rt.container();
        let out = rt.cmd(&["state", "--polis-bogus-flag", &c.id]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("polis-bogus-flag");
        }
    }
);

conformance_test!(
    /// runtime.md#errors: a failed create (invalid mount type) leaves no process, cgroup or state behind, and the
    /// same ID can then be used.
    failed_create_leaves_id_free,
    |rt| {
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/mnt/x", "type": "polisfs", "source": "none"}));
        let c = rt.container();
        create_fails_clean(&c, &b);
        let mut good = Bundle::new();
        good.probe(&["sleep", "60"]);
        c.create(&good).ok();
        assert_eq!(c.status(), "created");
    }
);

conformance_test!(
    /// runtime.md#create: an ID that is "not valid in any other way" is refused: polis-runc's IDs are file names in
    /// its state root, so one over 255 bytes (NAME_MAX) is refused by ID validation, naming the rule, before any
    /// file is made (runc finds out from the file system: "file name too long").
    id_over_255_bytes_names_the_rule,
    |rt| {
        let b = Bundle::new();
        b.write_config(None);
        let id = "x".repeat(256);
        let out = rt.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("longer than 255 bytes");
        }
        rt.assert_no_state();
        let ok = format!("{}{}", rt.name, "y".repeat(255 - rt.name.len()));
        let c = rt.container_named(&ok);
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        c.run(&b).ok();
    }
);

// ---------------------------------------------------------------------------------------------------------------
// Errors that say why: the last line of stderr, and the last "level":"error" line of `--log-format json` (the line
// containerd's shims show to kubectl users), name the cause and the object. Asserted for polis-runc, whose wording
// we own; runc must fail and leave nothing too.

/// `create` with runc's JSON log, which must fail and leave nothing; returns the output and the msg of the log's
/// last error line.
fn create_logged(c: &Container<'_>, b: &Bundle) -> (Output, String) {
    let (out, lines) = c.create_with_json_log(b);
    out.fails();
    c.assert_gone();
    let last_error = lines
        .iter()
        .rev()
        .find(|v| v["level"] == "error")
        .map(|v| v["msg"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (out, last_error)
}

/// For polis-runc: the last stderr line and the last JSON error line both name every one of `needles`, and
/// neither doubles a word ("error error").
#[track_caller]
fn assert_error_names(rt: &Runtime, (out, log_msg): &(Output, String), needles: &[&str]) {
    if !rt.is_polis() {
        return;
    }
    let last = out.stderr.lines().last().unwrap_or_default();
    for line in [last, log_msg.as_str()] {
        for needle in needles {
            assert!(
                line.contains(needle),
                "{needle:?} missing from {line:?}\n{out}"
            );
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            !words.windows(2).any(|w| w[0] == w[1]),
            "doubled word in {line:?}"
        );
    }
}

conformance_test!(
    /// config.md#mounts: a mount whose source does not exist fails create, naming the mount's source, its
    /// destination and the reason.
    error_names_bad_mount_source,
    |rt| {
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/mnt/dev", "type": "ext4", "source": "/dev/polis-no-such-device"}));
        let c = rt.container();
        let r = create_logged(&c, &b);
        assert_error_names(rt, &r, &["/dev/polis-no-such-device", "/mnt/dev", "No such file or directory"]);
    }
);

conformance_test!(
    /// config-linux.md#rootfs-mount-propagation: an unknown rootfsPropagation word is refused by name.
    error_names_unknown_propagation,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/rootfsPropagation", json!("rsharde"));
        let c = rt.container();
        let r = create_logged(&c, &b);
        assert_error_names(rt, &r, &["rootfsPropagation", "rsharde"]);
    }
);

/// Whether the host can apply hugetlb limits (a v1 hugetlb hierarchy, or hugetlb among the v2 controllers).
fn host_has_hugetlb() -> bool {
    std::path::Path::new("/sys/fs/cgroup/hugetlb").is_dir()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.contains("hugetlb"))
}

conformance_test!(
    /// config-linux.md#huge-page-limits: limits the host's cgroups cannot apply (this host has no hugetlb
    /// controller) fail create, naming the controller; on a host that has it, the container runs.
    error_names_missing_cgroup_controller,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/resources/hugepageLimits", json!([{"pageSize": "2MB", "limit": 2097152}]));
        let c = rt.container();
        if host_has_hugetlb() {
            b.probe(&["exit", "0"]);
            c.run(&b).ok();
            return;
        }
        let r = create_logged(&c, &b);
        assert_error_names(rt, &r, &["hugetlb"]);
    }
);

conformance_test!(
    /// config.md#linux-process: an effective capability that is not permitted is refused by the kernel (capset(2));
    /// create fails naming the capability.
    error_names_refused_capability,
    |rt| {
        let mut b = Bundle::new();
        b.push("/process/capabilities/effective", json!("CAP_NET_ADMIN"));
        let c = rt.container();
        let r = create_logged(&c, &b);
        assert_error_names(rt, &r, &["CAP_NET_ADMIN", "permitted"]);
    }
);

conformance_test!(
    /// config.md#process: "args ... with similar semantics to IEEE Std 1003.1-2008 execvp's argv": a program that
    /// does not exist fails create, naming it.
    error_names_missing_executable,
    |rt| {
        let mut b = Bundle::new();
        b.args(&["/bin/polis-no-such-program"]);
        let c = rt.container();
        let r = create_logged(&c, &b);
        assert_error_names(rt, &r, &["/bin/polis-no-such-program", "no such file or directory"]);
    }
);

conformance_test!(
    /// config.md#process: a program that is a file without execute permission fails create, naming it.
    error_names_non_executable_file,
    |rt| {
        let mut b = Bundle::new();
        std::fs::write(b.rootfs().join("data.txt"), "not a program").unwrap();
        b.args(&["/data.txt"]);
        let c = rt.container();
        let r = create_logged(&c, &b);
        assert_error_names(rt, &r, &["/data.txt", "not an executable file"]);
    }
);

// ---------------------------------------------------------------------------------------------------------------
// Odd bundles, as runc handles them.

conformance_test!(
    /// config.md#process: "cwd (string, REQUIRED) is the working directory that will be set for the executable".
    /// One that does not exist is made inside the rootfs (Docker's `-w /newdir`), also for a non-root user, and a
    /// symbolic link on the way is followed inside the rootfs, never out of it.
    missing_cwd_is_made_inside_the_rootfs,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/cwd", json!("/new/work dir"));
        b.set("/process/user", json!({"uid": 65534, "gid": 65534}));
        b.sh("pwd");
        let out = rt.container().run(&b);
        out.ok();
        assert_eq!(out.stdout.trim(), "/new/work dir");

        // An absolute link to a host directory, whose path also exists in the rootfs: the container's is meant.
        let outside = temp_dir("polis-it-odd-");
        let mut b = Bundle::new();
        std::os::unix::fs::symlink(outside.path(), b.rootfs().join("esc")).unwrap();
        let inside = b.rootfs().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        b.set("/process/cwd", json!("/esc/work"));
        b.sh("pwd");
        let out = rt.container().run(&b);
        out.ok();
        // The shell prints the directory it is in, the link resolved (inside the container).
        assert_eq!(out.stdout.trim(), format!("{}/work", outside.path().display()));
        assert!(!outside.path().join("work").exists(), "cwd was made outside the rootfs");
        assert!(inside.join("work").is_dir(), "cwd was not made inside the rootfs at {}", inside.display());
    }
);

conformance_test!(
    /// config.md#root: a `root.path` that is a symbolic link is refused (runc: "invalid rootfs: not an absolute
    /// path, or a symlink"), naming the path.
    root_path_symlink_is_refused,
    |rt| {
        let mut b = Bundle::new();
        std::os::unix::fs::symlink("rootfs", b.path().join("rootlink")).unwrap();
        b.set("/root/path", json!("rootlink"));
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("rootlink");
        }
    }
);

conformance_test!(
    /// config.md#posix-platform-hooks: a hook whose path does not exist or is not executable fails the lifecycle
    /// step it belongs to; the error names the hook's kind, its index and its path.
    hook_that_cannot_run_is_named,
    |rt| {
        let scratch = temp_dir("polis-it-odd-");
        let not_executable = scratch.path().join("not-executable");
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        let missing = scratch.path().join("missing-hook");
        let cases = [
            ("prestart", json!([{"path": "/bin/true"}, {"path": missing}]), "prestart hook 1", &missing),
            ("createRuntime", json!([{"path": not_executable}]), "createRuntime hook 0", &not_executable),
            ("createContainer", json!([{"path": missing}]), "createContainer hook 0", &missing),
        ];
        for (kind, hooks, name, path) in cases {
            let mut b = Bundle::new();
            b.set(&format!("/hooks/{kind}"), hooks);
            let out = create_fails_clean(&rt.container(), &b);
            if rt.is_polis() {
                out.stderr_mentions(name);
                out.stderr_mentions(path.to_str().unwrap());
            }
        }
        // startContainer hooks run in the container: their path is the container's.
        let mut b = Bundle::new();
        b.set("/hooks/startContainer", json!([{"path": "/bin/polis-missing-hook"}]));
        b.probe(&["exit", "0"]);
        let c = rt.container();
        let out = c.run(&b);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("startContainer hook 0");
            out.stderr_mentions("/bin/polis-missing-hook");
        }
    }
);

/// `list`, `list -q`, `list -f json` and `state` against a `--root` of the caller's choice.
fn list_and_state(rt: &Runtime, root: &std::path::Path) -> [std::process::Output; 4] {
    let run = |args: &[&str]| {
        std::process::Command::new(&rt.path)
            .arg("--root")
            .arg(root)
            .args(args)
            .output()
            .unwrap()
    };
    [
        run(&["list"]),
        run(&["list", "-q"]),
        run(&["list", "-f", "json"]),
        run(&["state", "polis-none"]),
    ]
}

#[track_caller]
fn assert_empty_root(outputs: &[std::process::Output; 4]) {
    let [table, quiet, json, state] = outputs;
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.status.success() && text(table).lines().count() <= 1,
        "list: {table:?}"
    );
    assert!(
        quiet.status.success() && text(quiet).trim().is_empty(),
        "list -q: {quiet:?}"
    );
    assert!(
        json.status.success() && matches!(text(json).trim(), "[]" | "null"),
        "list -f json: {json:?}"
    );
    assert!(
        !state.status.success(),
        "state of a container that does not exist: {state:?}"
    );
    let err = String::from_utf8_lossy(&state.stderr);
    assert!(err.contains("does not exist"), "state: {err}");
}

conformance_test!(
    /// runc's behaviour: with a `--root` that does not exist, or an existing one on a read-only file system, `list`
    /// prints an empty list and `state` says the container does not exist (no state directory is needed for that).
    list_and_state_without_a_usable_root,
    |rt| {
        let dir = temp_dir("polis-it-odd-");
        assert_empty_root(&list_and_state(rt, &dir.path().join("missing")));
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "ro", "polis-ro-root"]).arg(&ro).status();
        assert!(st.unwrap().success());
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
        let _guard = Unmount(ro.clone());
        assert_empty_root(&list_and_state(rt, &ro));
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "If no listenerPath is given but the action is used, the runtime MUST generate an
    /// error."
    seccomp_notify_without_listener_path,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("listenerPath");
        }
    }
);

conformance_test!(
    /// config-linux.md#seccomp listenerPath: "If sending to this socket fails, the runtime MUST generate an error" —
    /// no agent listens there.
    seccomp_listener_path_without_agent,
    |rt| {
        let mut b = Bundle::new();
        let path = b.path().join("no-agent.sock").display().to_string();
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path,
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions(&path);
        }
    }
);

conformance_test!(
    /// config-linux.md#seccomp: SCMP_ACT_NOTIFY on `write` is refused, as runc refuses it: the process writes to
    /// hand its listener over, and would wait for an agent that has not got it yet.
    seccomp_notify_on_write,
    |rt| {
        let mut b = Bundle::new();
        let path = b.path().join("agent.sock").display().to_string();
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path,
                   "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        let out = create_fails_clean(&rt.container(), &b);
        if rt.is_polis() {
            out.stderr_mentions("write");
        }
    }
);
