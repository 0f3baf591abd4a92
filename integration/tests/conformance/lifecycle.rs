//! runtime-spec runtime.md: state, lifecycle and the create/start/state/delete operations.

use polis_integration::*;

conformance_test!(
    /// runtime.md#create: "Upon successful completion of this operation the `status` property of this container
    /// MUST be `created`."
    create_gives_created,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        assert_eq!(c.status(), "created");
    }
);

conformance_test!(
    /// runtime.md#create: "the user-specified code MUST NOT be run at this time."
    create_does_not_run_process,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo started > /started");
        let c = rt.container();
        c.create(&b).ok();
        // Not synchronisation but the observation window: the process must NOT run during it, so a correct runtime
        // gives no event to poll for.
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!b.rootfs().join("started").exists(), "the process ran before start");
        c.start().ok();
        c.wait_stopped();
        assert_eq!(std::fs::read_to_string(b.rootfs().join("started")).unwrap(), "started\n");
    }
);

conformance_test!(
    /// runtime.md#state: "pid (int, REQUIRED when status is created or running on Linux) is the ID of the container
    /// process, as seen by the host."
    created_pid_is_live_process_in_container_namespaces,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        let pid = c.pid();
        assert!(pid > 0);
        assert!(process_alive(pid), "state pid {pid} is not a live process");
        assert_ne!(process_namespace(pid, "pid"), host_namespace("pid"), "pid {pid} is not in the container's pid ns");
    }
);

conformance_test!(
    /// runtime.md#start: "Upon successful completion of this operation the `status` property of this container
    /// MUST be `running`."
    start_gives_running,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        c.start().ok();
        assert_eq!(c.status(), "running");
    }
);

conformance_test!(
    /// runtime.md#start: "This operation MUST run the user-specified program as specified by process."
    start_runs_process,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["args", "one", "two words"]);
        let c = rt.container();
        let out = c.create_start_wait(&b);
        let v = parse_last_json(&out).expect("probe output");
        assert_eq!(v["args"], json!(["/bin/polis-probe", "args", "one", "two words"]));
    }
);

conformance_test!(
    /// runtime.md#state: "stopped: the container process has exited"; runtime.md#kill: "When the process in the
    /// container is stopped ... the status property of this container MUST be stopped."
    exit_gives_stopped,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create(&b).ok();
        c.start().ok();
        c.wait_stopped();
        assert_eq!(c.status(), "stopped");
    }
);

conformance_test!(
    /// runtime.md#state: the state MUST include ociVersion, id, status, pid and bundle ("the absolute path to the
    /// container's bundle directory").
    state_has_required_fields,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        let st = c.state_json();
        assert!(st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()), "ociVersion: {st}");
        assert_eq!(st["id"], c.id.as_str());
        assert_eq!(st["status"], "created");
        assert!(st["pid"].as_i64().is_some_and(|p| p > 0), "pid: {st}");
        let bundle = st["bundle"].as_str().expect("bundle field");
        assert!(bundle.starts_with('/'), "bundle is not absolute: {bundle}");
        assert_eq!(
            std::fs::canonicalize(bundle).unwrap(),
            std::fs::canonicalize(b.path()).unwrap(),
            "bundle path in state"
        );
    }
);

conformance_test!(
    /// runtime.md#state: "annotations (map, OPTIONAL) contains the list of annotations associated with the
    /// container."
    state_has_annotations,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        b.set("/annotations", json!({"org.polis.test": "value-1", "other": "two"}));
        let c = rt.container();
        c.create(&b).ok();
        let st = c.state_json();
        assert_eq!(st["annotations"]["org.polis.test"], "value-1", "{st}");
        assert_eq!(st["annotations"]["other"], "two", "{st}");
    }
);

conformance_test!(
    /// runtime.md#query-state: "Attempting to query a container that does not exist MUST generate an error."
    state_of_unknown_container_fails,
    |rt| {
        let c = rt.container();
        let out = c.state();
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("does not exist");
        }
    }
);

conformance_test!(
    /// runtime.md#start: "Attempting to start an already started container MUST have no effect on the container
    /// and MUST generate an error."
    start_twice_fails,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create_running(&b);
        let pid = c.pid();
        c.start().fails();
        assert_eq!(c.status(), "running");
        assert_eq!(c.pid(), pid, "second start changed the process");
    }
);

conformance_test!(
    /// runtime.md#start: "Attempting to start an already started container MUST have no effect on the container
    /// and MUST generate an error." (a stopped container was started once)
    start_stopped_fails,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo x >> /runs");
        let c = rt.container();
        c.create_start_wait(&b);
        c.start().fails();
        // Not synchronisation but the observation window: a second run of the process must NOT happen in it, so a
        // correct runtime gives no event to poll for.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(std::fs::read_to_string(b.rootfs().join("runs")).unwrap(), "x\n", "process ran twice");
        assert_eq!(c.status(), "stopped");
    }
);

conformance_test!(
    /// runtime.md#start: "Attempting to start a container that does not exist MUST generate an error."
    start_unknown_fails,
    |rt| {
        let c = rt.container();
        let out = c.start();
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("does not exist");
        }
        rt.assert_no_state();
    }
);

conformance_test!(
    /// runtime.md#delete: "Deleting a container MUST delete the resources that were created during the create
    /// step." (state, runtime directory, cgroup)
    delete_removes_everything,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        assert!(!rt.state_entries().is_empty(), "no state kept before delete");
        c.delete().ok();
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#delete: "Attempting to delete a container whose process is still running MUST generate an error."
    delete_running_fails,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create_running(&b);
        let pid = c.pid();
        c.delete().fails();
        assert_eq!(c.status(), "running");
        assert!(process_alive(pid), "delete without --force killed the process");
    }
);

conformance_test!(
    /// runtime.md#delete: "Attempting to delete a container that does not exist MUST generate an error."
    delete_unknown_fails,
    |rt| {
        let c = rt.container();
        let out = c.delete();
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("does not exist");
        }
    }
);

conformance_test!(
    /// runtime.md#delete: deleting a created (never started) container destroys it; its init process is gone and
    /// the user-specified program never runs.
    delete_created,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo ran > /ran");
        let c = rt.container();
        c.create(&b).ok();
        let pid = c.pid();
        c.delete().ok();
        eventually(&format!("init process {pid} is gone after delete"), std::time::Duration::from_secs(2), || {
            !process_alive(pid)
        });
        assert!(!b.rootfs().join("ran").exists(), "the process ran although never started");
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "Once a container is deleted its ID MAY be used by a subsequent container." runc's
    /// contract: a deleted ID can be reused.
    id_reusable_after_delete,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        c.delete().ok();
        c.create(&b).ok();
        assert_eq!(c.status(), "created");
    }
);

conformance_test!(
    /// runtime.md#lifecycle: "Any updates to config.json after this step MUST NOT affect the container."
    config_changes_after_create_ignored,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["args", "original"]);
        let c = rt.container();
        c.create(&b).ok();
        b.probe(&["args", "changed"]);
        b.write_config(None);
        c.start().ok();
        c.wait_stopped();
        let v = parse_last_json(&c.output()).expect("probe output");
        assert_eq!(v["args"][2], "original");
    }
);

conformance_test!(
    /// config-linux.md#cgroups-path: the container's process is placed in the cgroup named by `cgroupsPath`.
    process_in_cgroups_path,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create_running(&b);
        let pid = c.pid();
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = c.cgroups_path();
        assert!(
            cg.lines().any(|l| l.ends_with(&format!(":{want}"))),
            "process {pid} is not in {want}:\n{cg}"
        );
    }
);

conformance_test!(
    /// runc contract (runtime.md#state via `list`): `list --format json` names each container with its status.
    list_json_names_container,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create(&b).ok();
        let out = rt.cmd(&["list", "--format", "json"]);
        out.ok();
        let v: Value = serde_json::from_str(&out.stdout).expect("list JSON");
        let entry = v.as_array().and_then(|a| a.iter().find(|e| e["id"] == c.id.as_str())).cloned();
        let entry = entry.unwrap_or_else(|| panic!("container missing from list: {v}"));
        assert_eq!(entry["status"], "created");
        assert_eq!(entry["pid"].as_i64(), Some(c.pid() as i64));
    }
);

conformance_test!(
    /// runc contract: `run` creates, starts and waits for the container, then deletes it, and exits with the
    /// process's exit code.
    run_removes_container_after_exit,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.run(&b).ok();
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#state: "bundle (string, REQUIRED) is the absolute path to the container's bundle directory" —
    /// also when create was given a relative path.
    state_bundle_absolute_from_relative,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        b.write_config(Some(&c.cgroups_path()));
        let parent = b.path().parent().unwrap().to_path_buf();
        let name = b.path().file_name().unwrap().to_str().unwrap().to_string();
        let mut cmd = rt.command(&["create", "--bundle", &name, &c.id]);
        cmd.current_dir(&parent);
        run_command(cmd, &rt.scratch(), COMMAND_TIMEOUT).ok();
        let st = c.state_json();
        let bundle = st["bundle"].as_str().unwrap_or_default();
        assert!(bundle.starts_with('/'), "bundle not absolute: {st}");
        assert_eq!(std::fs::canonicalize(bundle).ok(), std::fs::canonicalize(b.path()).ok());
    }
);
