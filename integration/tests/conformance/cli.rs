//! runc's command-line contract beyond the spec's operations: the commands and output formats containerd's shims,
//! go-runc and podman/conmon call and parse (features.md for `features`).

use polis_integration::*;

fn running<'a>(rt: &'a Runtime, b: &mut Bundle) -> Container<'a> {
    b.probe(&["sleep", "60"]);
    let c = rt.container();
    c.create_running(b);
    c
}

conformance_test!(
    /// features.md: "ociVersionMin (string, REQUIRED)", "ociVersionMax (string, REQUIRED)", "hooks (array of
    /// strings, OPTIONAL)", "mountOptions (array of strings, OPTIONAL)", and linux.namespaces / linux.capabilities.
    features_json,
    |rt| {
        let out = rt.cmd(&["features"]);
        out.ok();
        let v: Value = serde_json::from_str(&out.stdout).expect("features JSON");
        assert!(v["ociVersionMin"].as_str().is_some_and(|s| s.starts_with("1.")), "{v}");
        assert!(v["ociVersionMax"].as_str().is_some_and(|s| s.starts_with("1.")), "{v}");
        let hooks: Vec<&str> = v["hooks"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for h in ["createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
            assert!(hooks.contains(&h), "hook {h} missing: {hooks:?}");
        }
        let opts: Vec<&str> = v["mountOptions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for o in ["ro", "nosuid", "nodev", "noexec", "rbind", "rprivate"] {
            assert!(opts.contains(&o), "mount option {o} missing");
        }
        let ns: Vec<&str> = v["linux"]["namespaces"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for n in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
            assert!(ns.contains(&n), "namespace {n} missing: {ns:?}");
        }
        let caps: Vec<&str> = v["linux"]["capabilities"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(caps.contains(&"CAP_SYS_ADMIN") && caps.contains(&"CAP_CHOWN"), "{caps:?}");
    }
);

conformance_test!(
    /// features.md: "ociVersionMax" is at least the version of the default spec this runtime writes, and a config
    /// of ociVersionMin is accepted.
    features_oci_version_min_accepted,
    |rt| {
        let out = rt.cmd(&["features"]);
        out.ok();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let min = v["ociVersionMin"].as_str().unwrap().to_string();
        let mut b = Bundle::new();
        b.set("/ociVersion", json!(min));
        b.probe(&["exit", "0"]);
        rt.container().run(&b).ok();
    }
);

conformance_test!(
    /// runc contract (go-runc `Ps`, containerd `Pids`): `ps --format json ID` prints the host PIDs of the container's
    /// processes as a JSON array.
    ps_json,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        let out = rt.cmd(&["ps", "--format", "json", &c.id]);
        out.ok();
        let pids: Vec<i64> = serde_json::from_str(&out.stdout).expect("JSON array of PIDs");
        assert_eq!(pids, vec![c.pid() as i64]);
    }
);

conformance_test!(
    /// runc contract (go-runc `Stats`): `events --stats ID` prints one JSON event of type "stats" with the
    /// container's id and cgroup data (memory usage and pids current).
    events_stats,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/resources/memory", json!({"limit": 67108864}));
        let c = running(rt, &mut b);
        let out = rt.cmd(&["events", "--stats", &c.id]);
        out.ok();
        let v = out.json();
        assert_eq!(v["type"], "stats", "{v}");
        assert_eq!(v["id"], c.id.as_str(), "{v}");
        assert_eq!(v["data"]["pids"]["current"], 1, "{v}");
        assert!(v["data"]["memory"]["usage"]["usage"].as_u64().is_some_and(|u| u > 0), "{v}");
        assert_eq!(v["data"]["memory"]["usage"]["limit"], 67108864, "{v}");
    }
);

conformance_test!(
    /// runc contract (containerd and conmon read errors from `--log` with `--log-format json`): every log line is a
    /// JSON object with "level", "msg" and "time", and a failed create logs its error at level "error".
    log_format_json,
    |rt| {
        let mut b = Bundle::new();
        b.set("/root/path", json!("no-such-rootfs"));
        let c = rt.container();
        let (out, lines) = c.create_with_json_log(&b);
        out.fails();
        assert!(!lines.is_empty(), "nothing logged; stderr: {}", out.stderr);
        for l in &lines {
            assert!(l["level"].is_string() && l["msg"].is_string() && l["time"].is_string(), "{l}");
        }
        assert!(lines.iter().any(|l| l["level"] == "error"), "no error line: {lines:?}");
    }
);

conformance_test!(
    /// runc contract: `spec --bundle B` writes a config.json that names rootfs as the root, a process, and the
    /// default namespaces; with terminal off it runs as is.
    spec_writes_runnable_config,
    |rt| {
        let mut b = Bundle::new();
        let out = rt.cmd(&["spec", "--bundle", b.path().to_str().unwrap()]);
        out.ok();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(b.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(v["root"]["path"], "rootfs", "{v}");
        assert!(v["process"]["args"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
        let ns: Vec<&str> =
            v["linux"]["namespaces"].as_array().unwrap().iter().filter_map(|n| n["type"].as_str()).collect();
        for n in ["pid", "ipc", "uts", "mount"] {
            assert!(ns.contains(&n), "{n} missing from {ns:?}");
        }
        // Run what `spec` wrote, with only the process changed.
        let mut spec = v.clone();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["/bin/polis-probe", "exit", "0"]);
        for (k, val) in spec.as_object().unwrap() {
            b.set(&format!("/{k}"), val.clone());
        }
        b.remove("/linux/cgroupsPath");
        rt.container().run(&b).ok();
    }
);

conformance_test!(
    /// runc contract: `spec` refuses to overwrite an existing config.json.
    spec_keeps_existing_config,
    |rt| {
        let b = Bundle::new();
        b.write_raw("{\"keep\": true}");
        rt.cmd(&["spec", "--bundle", b.path().to_str().unwrap()]).fails();
        assert_eq!(std::fs::read_to_string(b.path().join("config.json")).unwrap(), "{\"keep\": true}");
    }
);

conformance_test!(
    /// runc contract: `list --quiet` prints one container ID per line.
    list_quiet,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c1 = rt.container();
        c1.create(&b).ok();
        let c2 = rt.container();
        c2.create(&b).ok();
        let out = rt.cmd(&["list", "--quiet"]);
        out.ok();
        let mut ids: Vec<&str> = out.stdout.lines().collect();
        ids.sort();
        let mut want = vec![c1.id.as_str(), c2.id.as_str()];
        want.sort();
        assert_eq!(ids, want);
    }
);

conformance_test!(
    /// runc contract: `list --format json` on an empty root prints an empty list (`null` or `[]`), not an error.
    list_empty,
    |rt| {
        let out = rt.cmd(&["list", "--format", "json"]);
        out.ok();
        let v: Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
        assert!(v.is_null() || v.as_array().is_some_and(Vec::is_empty), "{v}");
    }
);

conformance_test!(
    /// runc contract (containerd's `Pause`): `state` of a paused container says "paused", `kill` still reaches it
    /// and `delete --force` removes it.
    delete_force_paused,
    |rt| {
        let mut b = Bundle::new();
        let c = running(rt, &mut b);
        rt.cmd(&["pause", &c.id]).ok();
        assert_eq!(c.status(), "paused");
        c.delete_force().ok();
        c.assert_gone();
    }
);

/// The last `"level":"error"` line of a runtime's JSON log for `ARGS...`.
fn last_error_line(rt: &Runtime, args: &[&str]) -> Value {
    let log = rt.scratch().join("last-error.log");
    let _ = std::fs::remove_file(&log);
    let mut full = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
    full.extend_from_slice(args);
    rt.cmd(&full).fails();
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["level"] == "error")
        .unwrap_or_else(|| panic!("no error line for {args:?}"))
}

conformance_test!(
    /// polis-runc's log contract (README): the last error line of `--log-format json` carries, beside runc's
    /// "level", "msg" and "time", a stable `kind` that programs (containerd-shim-polis-v2) map to status codes instead
    /// of matching words: `not-found`, `already-exists`, `invalid`, `failed-precondition`.
    json_error_lines_carry_a_kind,
    runc_lacks = "runc's log lines have no kind",
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let bundle = b.path().to_str().unwrap();
        let kind = |args: &[&str]| last_error_line(rt, args)["kind"].as_str().unwrap_or_default().to_string();
        assert_eq!(kind(&["state", "polis-no-such-container"]), "not-found");
        assert_eq!(kind(&["create", "--bundle", bundle, &c.id]), "already-exists");
        assert_eq!(kind(&["start", &c.id]), "failed-precondition");
        let mut missing_source = Bundle::new();
        missing_source.push(
            "/mounts",
            json!({"destination": "/mnt", "type": "bind", "source": "/polis-no-such-dir", "options": ["rbind"]}),
        );
        let other = rt.container();
        missing_source.write_config(Some(&other.cgroups_path()));
        assert_eq!(kind(&["create", "--bundle", missing_source.path().to_str().unwrap(), &other.id]), "invalid");
    }
);
