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
bad_id!(id_too_long, "x".repeat(1025));
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
    /// runc contract: an unknown global flag is an error, never silently ignored (DESIGN: "a flag it cannot honour
    /// is an error").
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
