//! runtime-spec config-linux.md#user-namespace-mappings (user namespace with uid/gid mappings).

use polis_integration::*;

const HOST_BASE: u32 = 200000;

/// A bundle whose rootfs is owned by the mapped root, with a user namespace mapping 0..65536 to
/// HOST_BASE..HOST_BASE+65536.
fn userns_bundle() -> Bundle {
    let mut b = Bundle::new();
    chown_tree(&b.rootfs(), HOST_BASE);
    b.with_namespace("user", None);
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]),
    );
    // A user namespace cannot mount sysfs or cgroupfs of the host's network/cgroup namespaces read-write; keep the
    // default ro mounts but bind /sys instead of mounting a new sysfs (what runc's rootless spec does).
    if let Some(Value::Array(mounts)) = b.get("/mounts").cloned() {
        let mounts: Vec<Value> = mounts
            .into_iter()
            .filter(|m| m["destination"] != "/sys/fs/cgroup")
            .map(|m| {
                if m["destination"] == "/sys" {
                    json!({"destination": "/sys", "type": "none", "source": "/sys",
                           "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
                } else {
                    m
                }
            })
            .collect();
        b.set("/mounts", json!(mounts));
    }
    b
}

/// Shifts the ownership of every file under `dir` by `base`.
fn chown_tree(dir: &std::path::Path, base: u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).unwrap();
    std::os::unix::fs::lchown(dir, Some(base + meta.uid()), Some(base + meta.gid())).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            chown_tree(&e.path(), base);
        }
    }
}

/// A running container with a new user namespace, the path of that namespace, and a bundle that joins it (with the
/// same mappings) and makes every other namespace new.
fn joining_user_namespace(rt: &Runtime) -> (Container<'_>, String, Bundle) {
    let mut holder = userns_bundle();
    holder.probe(&["sleep", "60"]);
    let first = rt.container();
    first.create_running(&holder);
    let user_ns = format!("/proc/{}/ns/user", first.pid());
    let mut b = userns_bundle();
    b.with_namespace("user", Some(&user_ns));
    (first, user_ns, b)
}

fn report(rt: &Runtime, b: &mut Bundle) -> Value {
    b.probe(&["report"]);
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

conformance_test!(
    /// config-linux.md#namespaces (user): "If a namespace type is specified but no path is provided, the runtime
    /// MUST create a new namespace": a new user namespace differs from the host's.
    user_namespace_created,
    |rt| {
        let mut b = userns_bundle();
        let v = report(rt, &mut b);
        assert_ne!(v["namespaces"]["user"].as_str(), Some(host_namespace("user").as_str()), "{v}");
    }
);

conformance_test!(
    /// config-linux.md#user-namespace-mappings: "uidMappings (array of objects, OPTIONAL) describes the user
    /// namespace uid mappings from the host to the container." containerID, hostID and size reach
    /// /proc/self/uid_map.
    uid_mappings_applied,
    |rt| {
        let mut b = userns_bundle();
        let v = report(rt, &mut b);
        let map: Vec<&str> = v["uid_map"].as_str().unwrap().split_whitespace().collect();
        assert_eq!(map, vec!["0", &HOST_BASE.to_string(), "65536"], "{v}");
    }
);

conformance_test!(
    /// config-linux.md#user-namespace-mappings: "gidMappings (array of objects, OPTIONAL) describes the user
    /// namespace gid mappings from the host to the container."
    gid_mappings_applied,
    |rt| {
        let mut b = userns_bundle();
        let v = report(rt, &mut b);
        let map: Vec<&str> = v["gid_map"].as_str().unwrap().split_whitespace().collect();
        assert_eq!(map, vec!["0", &HOST_BASE.to_string(), "65536"], "{v}");
    }
);

conformance_test!(
    /// config-linux.md#user-namespace-mappings: container root is the mapped host ID as seen from the host (the
    /// process in `state` runs as HOST_BASE on the host, as 0 inside).
    container_root_is_mapped_host_uid,
    |rt| {
        let mut b = userns_bundle();
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create_running(&b);
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let uids: Vec<&str> = uid_line.split_whitespace().skip(1).collect();
        assert_eq!(uids, vec![HOST_BASE.to_string(); 4], "{uid_line}");
        let inside = c.exec(&["/bin/polis-probe", "report"]);
        inside.ok();
        assert_eq!(inside.json()["uid"], 0);
    }
);

conformance_test!(
    /// config-linux.md#user-namespace-mappings: a mapped non-root user (process.user.uid 1000) is host uid
    /// HOST_BASE + 1000.
    mapped_user_uid,
    |rt| {
        let mut b = userns_bundle();
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create_running(&b);
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_eq!(uid_line.split_whitespace().nth(1), Some((HOST_BASE + 1000).to_string().as_str()));
    }
);

conformance_test!(
    /// config-linux.md#user-namespace-mappings: several mapping ranges are all written to uid_map.
    multiple_mapping_ranges,
    |rt| {
        let mut b = userns_bundle();
        b.set(
            "/linux/uidMappings",
            json!([
                {"containerID": 0, "hostID": HOST_BASE, "size": 1000},
                {"containerID": 1000, "hostID": HOST_BASE + 1000, "size": 64536}
            ]),
        );
        let v = report(rt, &mut b);
        let lines: Vec<Vec<String>> = v["uid_map"]
            .as_str()
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        assert_eq!(lines.len(), 2, "{v}");
        assert_eq!(lines[1], vec!["1000".to_string(), (HOST_BASE + 1000).to_string(), "64536".to_string()]);
    }
);

conformance_test!(
    /// config-linux.md#user-namespace-mappings: capabilities inside a user namespace are confined to it: container
    /// root cannot write a host-root-owned file that is bind-mounted in.
    userns_root_not_host_root,
    |rt| {
        let host = temp_dir("polis-it-userns-");
        std::fs::write(host.path().join("owned-by-host-root"), "original").unwrap();
        std::fs::set_permissions(
            host.path().join("owned-by-host-root"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let mut b = userns_bundle();
        b.push(
            "/mounts",
            json!({"destination": "/mnt/host", "type": "bind", "source": host.path(), "options": ["rbind"]}),
        );
        let caps = json!(["CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_CHOWN"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        b.probe(&["write", "/mnt/host/owned-by-host-root", "changed"]);
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_ne!(out.json()["errno"], 0, "{out}");
        assert_eq!(std::fs::read_to_string(host.path().join("owned-by-host-root")).unwrap(), "original");
    }
);

conformance_test!(
    /// config-linux.md#namespaces: "path ... the runtime MUST place the container process in the namespace specified
    /// by that path", here a user namespace, while the PID, mount and other namespaces are new ("If a namespace type
    /// is specified but no path is provided, the runtime MUST create a new namespace"): the new ones belong to the
    /// joined user namespace, so /proc mounts, and the process is PID 1 of its own PID namespace. Kubernetes pods with
    /// `hostUsers: false` start their containers this way: each joins the pod's user namespace.
    join_user_namespace_with_new_pid_namespace,
    |rt| {
        // The holder stays until the end (its guard removes it).
        let (_holder, user_ns, mut b) = joining_user_namespace(rt);
        b.sh("readlink /proc/self/ns/user; echo $$; grep -c . /proc/self/uid_map");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        let joined = std::fs::read_link(&user_ns).unwrap().display().to_string();
        assert_eq!(lines.first().copied(), Some(joined.as_str()), "the joined user namespace: {out}");
        assert_eq!(lines.get(1).copied(), Some("1"), "PID 1 of a new PID namespace: {out}");
        assert_eq!(lines.get(2).copied(), Some("1"), "the joined namespace's one mapping: {out}");
    }
);

conformance_test!(
    /// runtime.md#state, `exec` and #kill with the container of join_user_namespace_with_new_pid_namespace: `state`
    /// gives the host PID of the process that runs the program (in the joined user namespace, PID 1 of its own), a
    /// process started by `exec` is in that user namespace too, `kill` reaches the program and the container stops.
    join_user_namespace_with_new_pid_namespace_lifecycle,
    |rt| {
        let (first, _, mut b) = joining_user_namespace(rt);
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let pid = c.pid();
        let ns = |p: i32, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
        assert_eq!(ns(pid, "user"), ns(first.pid(), "user"));
        assert_ne!(ns(pid, "pid"), ns(first.pid(), "pid"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap_or_default().to_string();
        assert!(nspid.split_whitespace().last() == Some("1"), "PID 1 inside: {nspid}");
        assert!(status.starts_with("Name:\tpolis-probe"), "the program runs, not a runtime process: {status}");
        let exec = c.exec(&["/bin/readlink", "/proc/self/ns/user"]);
        exec.ok();
        assert_eq!(exec.stdout.trim(), ns(first.pid(), "user").display().to_string(), "exec joins it too: {exec}");
        c.kill("KILL").ok();
        c.wait_status("stopped");
    }
);
