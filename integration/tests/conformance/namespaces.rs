//! runtime-spec config-linux.md#namespaces.

use polis_integration::*;

fn namespaces(rt: &Runtime, b: &mut Bundle) -> Value {
    b.probe(&["report"]);
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()["namespaces"].clone()
}

macro_rules! new_namespace {
    ($name:ident, $ns:literal, $link:literal) => {
        conformance_test!(
            /// config-linux.md#namespaces: "If a namespace type is specified but no path is provided, the runtime
            /// MUST create a new namespace of that type" (the container's differs from the host's).
            $name,
            |rt| {
                let mut b = Bundle::new();
                let ns = namespaces(rt, &mut b);
                let host = host_namespace($link);
                assert!(!host.is_empty());
                assert!(ns[$link].as_str().is_some_and(|s| s.starts_with($link)), "{ns}");
                assert_ne!(ns[$link].as_str(), Some(host.as_str()), "{} namespace is the host's", $ns);
            }
        );
    };
}

new_namespace!(new_pid_namespace, "pid", "pid");
new_namespace!(new_network_namespace, "network", "net");
new_namespace!(new_ipc_namespace, "ipc", "ipc");
new_namespace!(new_uts_namespace, "uts", "uts");
new_namespace!(new_mount_namespace, "mount", "mnt");
new_namespace!(new_cgroup_namespace, "cgroup", "cgroup");

macro_rules! shared_namespace {
    ($name:ident, $ns:literal, $link:literal) => {
        conformance_test!(
            /// config-linux.md#namespaces: "If a namespace type is not specified in the namespaces array, the
            /// container MUST inherit the runtime namespace of that type."
            $name,
            |rt| {
                let mut b = Bundle::new();
                b.without_namespace($ns);
                if $ns == "uts" {
                    b.remove("/hostname");
                }
                let ns = namespaces(rt, &mut b);
                assert_eq!(ns[$link].as_str(), Some(host_namespace($link).as_str()), "{ns}");
            }
        );
    };
}

shared_namespace!(inherit_network_namespace, "network", "net");
shared_namespace!(inherit_ipc_namespace, "ipc", "ipc");
shared_namespace!(inherit_uts_namespace, "uts", "uts");
shared_namespace!(inherit_cgroup_namespace, "cgroup", "cgroup");
shared_namespace!(inherit_pid_namespace, "pid", "pid");

conformance_test!(
    /// config-linux.md#namespaces: "path (string, OPTIONAL) namespace file. ... the runtime MUST place the container
    /// process in the namespace specified by that path." (a network namespace made by `ip netns add`)
    join_network_namespace_by_path,
    |rt| {
        let netns = NetNs::new("conf-ns");
        let mut b = Bundle::new();
        b.with_namespace("network", Some(&netns.path()));
        let ns = namespaces(rt, &mut b);
        assert_eq!(ns["net"].as_str(), Some(netns.link().as_str()), "{ns}");
    }
);

conformance_test!(
    /// config-linux.md#namespaces: joining another container's UTS and IPC namespaces by /proc path shares its
    /// hostname.
    join_other_container_namespaces,
    |rt| {
        let mut first = Bundle::new();
        first.set("/hostname", json!("first-container"));
        first.probe(&["sleep", "30"]);
        let a = rt.container();
        a.create_running(&first);
        let pid = a.pid();
        let mut b = Bundle::new();
        b.remove("/hostname");
        b.with_namespace("uts", Some(&format!("/proc/{pid}/ns/uts")));
        b.with_namespace("ipc", Some(&format!("/proc/{pid}/ns/ipc")));
        b.probe(&["report"]);
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let v = out.json();
        assert_eq!(v["hostname"], "first-container");
        assert_eq!(v["namespaces"]["uts"].as_str(), Some(process_namespace(pid, "uts").as_str()));
        assert_eq!(v["namespaces"]["ipc"].as_str(), Some(process_namespace(pid, "ipc").as_str()));
    }
);

conformance_test!(
    /// config-linux.md#namespaces ("the runtime MUST place the container process in the namespace specified by that
    /// path") with config.md#mounts (a `cgroup` mount, as containerd's CRI writes for every container): containers
    /// that join another container's pid, ipc, uts and network namespaces start every time, as the containers of a
    /// Kubernetes pod that shares its process namespace do. 30 in a row: each gets the next PID of the shared
    /// namespace, and polis-runc used to fail when no host process had that number ("procfs failed").
    join_pid_ipc_uts_net_with_cgroup_mount_in_a_loop,
    |rt| {
        let mut first = Bundle::new();
        first.set("/hostname", json!("pod-sandbox"));
        first.probe(&["sleep", "120"]);
        let sandbox = rt.container();
        sandbox.create_running(&first);
        let pid = sandbox.pid();
        let mut b = Bundle::new();
        b.remove("/hostname");
        for (ns, link) in [("pid", "pid"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net")] {
            b.with_namespace(ns, Some(&format!("/proc/{pid}/ns/{link}")));
        }
        assert!(
            b.get("/mounts").unwrap().as_array().unwrap().iter().any(|m| m["type"] == "cgroup"),
            "the config has a cgroup mount"
        );
        b.probe(&["report"]);
        for round in 1..=30 {
            let c = rt.container();
            let out = c.run(&b);
            assert!(out.success(), "round {round}: {out}");
            let v = out.json();
            assert_eq!(v["hostname"], "pod-sandbox", "round {round}");
            assert_eq!(v["namespaces"]["pid"].as_str(), Some(process_namespace(pid, "pid").as_str()), "round {round}");
            assert!(v["pid"].as_i64().unwrap_or(1) > 1, "round {round}: not in the shared PID namespace: {v}");
        }
    }
);

conformance_test!(
    /// config-linux.md#namespaces: "If a path is specified ... the runtime MUST generate an error" when the path is
    /// not a namespace that can be joined (here it does not exist).
    join_missing_namespace_path_fails,
    |rt| {
        let mut b = Bundle::new();
        b.with_namespace("network", Some("/run/netns/polis-test-does-not-exist"));
        let c = rt.container();
        let out = c.create(&b);
        out.fails();
        c.assert_gone();
    }
);

conformance_test!(
    /// config-linux.md#namespaces: "If a namespace type is specified ... more than once, the runtime MUST generate an
    /// error" — duplicated namespace types are rejected.
    duplicate_namespace_type_fails,
    |rt| {
        let mut b = Bundle::new();
        b.push("/linux/namespaces", json!({"type": "ipc"}));
        let c = rt.container();
        let out = c.create(&b);
        out.fails();
        c.assert_gone();
    }
);

conformance_test!(
    /// config-linux.md#namespaces: "type (string, REQUIRED) namespace type. The following namespace types SHOULD be
    /// supported" — an unknown type is an error.
    unknown_namespace_type_fails,
    |rt| {
        let mut b = Bundle::new();
        b.push("/linux/namespaces", json!({"type": "polis-bogus"}));
        let c = rt.container();
        let out = c.create(&b);
        out.fails();
        c.assert_gone();
    }
);

conformance_test!(
    /// config-linux.md#namespaces (network): a new network namespace holds only a loopback interface.
    new_network_namespace_only_loopback,
    |rt| {
        let mut b = Bundle::new();
        b.sh("ls /sys/class/net");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), vec!["lo"], "{out}");
    }
);

conformance_test!(
    /// config-linux.md#namespaces (cgroup): in a new cgroup namespace the process sees its own cgroup as the root.
    cgroup_namespace_root_view,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["report"]);
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let v = out.json();
        for line in v["cgroup"].as_array().unwrap() {
            let path = line.as_str().unwrap().splitn(3, ':').nth(2).unwrap_or("");
            assert!(!path.contains(CGROUP_PARENT), "cgroup path leaks the host layout: {line}");
        }
    }
);

conformance_test!(
    /// config-linux.md#namespaces (mount): the container's mount namespace shows the rootfs at /, not the host's
    /// root.
    mount_namespace_has_rootfs,
    |rt| {
        let mut b = Bundle::new();
        std::fs::write(b.rootfs().join("rootfs-marker"), "in rootfs").unwrap();
        b.probe(&["read", "/rootfs-marker"]);
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.json()["content"], "in rootfs");
    }
);

conformance_test!(
    /// config-linux.md#namespaces: "time the container will be able to have its own clock" — a new time namespace
    /// differs from the host's.
    new_time_namespace,
    runc_lacks = "runc 1.1.5 predates runtime-spec 1.2 time namespaces",
    |rt| {
        let mut b = Bundle::new();
        b.with_namespace("time", None);
        let ns = namespaces(rt, &mut b);
        assert_ne!(ns["time"].as_str(), Some(host_namespace("time").as_str()), "{ns}");
    }
);
