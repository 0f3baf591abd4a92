//! runtime-spec runtime.md#delete.

use polis_integration::*;

conformance_test!(
    /// runtime.md#delete: "Deleting a container MUST delete the resources that were created during the create
    /// step." After delete of a stopped container, `state` fails and nothing remains.
    delete_stopped,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        c.delete().ok();
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#delete: delete of a container whose process was killed frees its cgroup.
    delete_removes_cgroup,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/resources/memory", json!({"limit": 67108864}));
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        assert!(!c.cgroup_dirs().is_empty(), "no cgroup made");
        c.kill("KILL").ok();
        c.wait_stopped();
        c.delete().ok();
        assert!(c.cgroup_dirs().is_empty(), "cgroup left: {:?}", c.cgroup_dirs());
    }
);

conformance_test!(
    /// runc contract (containerd's `Delete`): `delete --force` of a running container kills it and removes it.
    delete_force_running,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let pid = c.pid();
        c.delete_force().ok();
        eventually(&format!("process {pid} is gone after delete --force"), std::time::Duration::from_secs(2), || {
            !process_alive(pid)
        });
        c.assert_gone();
    }
);

conformance_test!(
    /// runc contract: `delete --force` of a container that does not exist succeeds (it is already gone).
    delete_force_unknown_succeeds,
    |rt| {
        let c = rt.container();
        c.delete_force().ok();
    }
);

conformance_test!(
    /// runtime.md#delete: a container created but never started can be deleted; its init never runs the process.
    delete_created_kills_init,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create(&b).ok();
        let pid = c.pid();
        c.delete().ok();
        eventually(&format!("init process {pid} is gone after delete"), std::time::Duration::from_secs(2), || {
            !process_alive(pid)
        });
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#delete: "Note that resources associated with the container, but not created by this container,
    /// MUST NOT be deleted." A bind-mounted host directory and a joined network namespace survive delete.
    delete_keeps_foreign_resources,
    |rt| {
        let host = temp_dir("polis-it-keep-");
        std::fs::write(host.path().join("keep"), "keep me").unwrap();
        let netns = NetNs::new("conf-delete");
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/mnt/h", "type": "bind", "source": host.path(), "options": ["rbind"]}));
        b.with_namespace("network", Some(&netns.path()));
        b.probe(&["exit", "0"]);
        let c = rt.container();
        c.create_start_wait(&b);
        c.delete().ok();
        assert_eq!(std::fs::read_to_string(host.path().join("keep")).unwrap(), "keep me");
        assert!(std::path::Path::new(&netns.path()).exists(), "joined netns was removed");
        assert_eq!(netns.link(), {
            use std::os::unix::fs::MetadataExt;
            format!("net:[{}]", std::fs::metadata(netns.path()).unwrap().ino())
        });
        assert!(b.rootfs().join("bin/busybox").exists(), "rootfs was removed");
    }
);

conformance_test!(
    /// runtime.md#delete: delete kills every process of the container, also ones started by exec (with --force).
    delete_force_kills_exec_processes,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let mut exec = rt.command(&["exec", &c.id, "/bin/polis-probe", "sleep", "60"]);
        let mut child = exec.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        eventually("the exec'd process is in the container's cgroup", COMMAND_TIMEOUT, || c.processes().len() >= 2);
        c.delete_force().ok();
        let _ = child.wait();
        c.assert_gone();
    }
);

conformance_test!(
    /// runtime.md#delete: "Deleting a container MUST delete the resources that were created during the create
    /// step." Without a PID namespace, a process the init left behind lives on in the container's cgroup after the
    /// init exits; delete must kill it and remove the cgroup.
    delete_kills_leftovers_without_pid_namespace,
    |rt| {
        let mut b = Bundle::new();
        b.without_namespace("pid");
        b.sh("/bin/polis-probe sleep 60 & echo started");
        let c = rt.container();
        c.create(&b).ok();
        c.start().ok();
        c.wait_stopped();
        eventually("the background process is in the container's cgroup", COMMAND_TIMEOUT, || {
            !c.processes().is_empty()
        });
        let left = c.processes();
        c.delete().ok();
        for pid in &left {
            eventually(&format!("leftover process {pid} is gone after delete"), std::time::Duration::from_secs(2), || {
                !process_alive(*pid)
            });
        }
        c.assert_gone();
    }
);
