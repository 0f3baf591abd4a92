//! runtime-spec config.md#mounts and config-linux.md#default-filesystems.

use polis_integration::*;

fn run_report(rt: &Runtime, b: &mut Bundle) -> Value {
    b.probe(&["report"]);
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

fn probe(rt: &Runtime, b: &Bundle) -> Value {
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

/// A host directory for bind mounts, removed with the guard.
fn host_dir() -> tempfile::TempDir {
    temp_dir("polis-it-bind-")
}

conformance_test!(
    /// config.md#mounts: "destination (string, REQUIRED) Destination of mount point: path inside container." A tmpfs
    /// mount appears there with its type.
    tmpfs_mount,
    |rt| {
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}));
        let v = run_report(rt, &mut b);
        let m = mount_at(&v, "/data").unwrap_or_else(|| panic!("no mount at /data: {v}"));
        assert_eq!(m.fstype, "tmpfs");
    }
);

conformance_test!(
    /// config.md#mounts: "options (array of strings, OPTIONAL) Mount options of the filesystem to be used."
    /// (tmpfs size and mode)
    tmpfs_options_applied,
    |rt| {
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700"]}),
        );
        b.sh("polis-probe stat /data; polis-probe report");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let st: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
        assert_eq!(st["mode"], 0o700, "{st}");
        let m = mount_at(&out.json(), "/data").expect("mount at /data");
        assert!(m.super_options.iter().any(|o| o == "size=1024k"), "{m:?}");
    }
);

conformance_test!(
    /// config.md#mounts: the `ro` option makes the mount read-only (writes fail with EROFS).
    mount_ro_option,
    |rt| {
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}));
        b.probe(&["write", "/data/f"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EROFS);
    }
);

conformance_test!(
    /// config.md#mounts: nosuid, nodev and noexec options show in the mount's flags.
    mount_flag_options,
    |rt| {
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec"]}),
        );
        let v = run_report(rt, &mut b);
        let m = mount_at(&v, "/data").expect("mount at /data");
        for o in ["nosuid", "nodev", "noexec"] {
            assert!(m.has_option(o), "{o} missing: {m:?}");
        }
    }
);

conformance_test!(
    /// config.md#mounts: noexec is enforced: executing a program from a noexec mount fails.
    mount_noexec_enforced,
    |rt| {
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["noexec", "mode=755"]}),
        );
        b.sh("cp /bin/polis-probe /data/p && /data/p exit 0; echo rc=$?");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert!(out.stdout.contains("rc=126"), "exec on noexec mount did not fail with 126: {out}");
    }
);

conformance_test!(
    /// config.md#mounts: "source (string, OPTIONAL) A device name, but can also be a file or directory name for bind
    /// mounts". A bind mount shows the host directory's files.
    bind_mount_dir,
    |rt| {
        let host = host_dir();
        std::fs::write(host.path().join("hello"), "from host").unwrap();
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/mnt/host", "type": "bind", "source": host.path(), "options": ["rbind"]}),
        );
        b.probe(&["read", "/mnt/host/hello"]);
        assert_eq!(probe(rt, &b)["content"], "from host");
    }
);

conformance_test!(
    /// config.md#mounts: a read-write bind mount carries the container's writes back to the host directory.
    bind_mount_rw,
    |rt| {
        let host = host_dir();
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/mnt/host", "type": "bind", "source": host.path(), "options": ["rbind", "rw"]}),
        );
        b.probe(&["write", "/mnt/host/out", "from container"]);
        assert_eq!(probe(rt, &b)["errno"], 0);
        assert_eq!(std::fs::read_to_string(host.path().join("out")).unwrap(), "from container");
    }
);

conformance_test!(
    /// config.md#mounts: a bind mount with `ro` refuses writes (EROFS) and the host directory stays unchanged.
    bind_mount_ro,
    |rt| {
        let host = host_dir();
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/mnt/host", "type": "bind", "source": host.path(), "options": ["rbind", "ro"]}),
        );
        b.probe(&["write", "/mnt/host/out"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EROFS);
        assert!(!host.path().join("out").exists());
    }
);

conformance_test!(
    /// config.md#mounts: a single file can be bind-mounted onto a file path.
    bind_mount_file,
    |rt| {
        let host = host_dir();
        std::fs::write(host.path().join("conf"), "file content").unwrap();
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/etc/polis.conf", "type": "bind", "source": host.path().join("conf"), "options": ["bind", "ro"]}),
        );
        b.probe(&["read", "/etc/polis.conf"]);
        assert_eq!(probe(rt, &b)["content"], "file content");
    }
);

conformance_test!(
    /// config.md#mounts: a missing destination directory is created in the rootfs (runc contract), nested too.
    mount_destination_created,
    |rt| {
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/a/b/c", "type": "tmpfs", "source": "tmpfs"}));
        let v = run_report(rt, &mut b);
        assert!(mount_at(&v, "/a/b/c").is_some(), "{v}");
    }
);

conformance_test!(
    /// config.md#mounts: "The runtime MUST mount entries in the listed order." A later mount nested in an earlier one
    /// is visible, and an earlier mount covered by a later one at the same place is hidden.
    mounts_in_listed_order,
    |rt| {
        let host = host_dir();
        std::fs::write(host.path().join("marker"), "bind").unwrap();
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}));
        b.push(
            "/mounts",
            json!({"destination": "/data/inner", "type": "bind", "source": host.path(), "options": ["rbind"]}),
        );
        b.push("/mounts", json!({"destination": "/over", "type": "bind", "source": host.path(), "options": ["rbind"]}));
        b.push("/mounts", json!({"destination": "/over", "type": "tmpfs", "source": "tmpfs"}));
        b.sh("polis-probe read /data/inner/marker; polis-probe read /over/marker");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["content"], "bind", "{out}");
        assert_eq!(lines[1]["errno"], libc::ENOENT, "later tmpfs did not cover earlier bind: {out}");
    }
);

conformance_test!(
    /// config.md#mounts: recursive bind (`rbind`) brings submounts of the source along.
    rbind_includes_submounts,
    |rt| {
        let host = host_dir();
        let sub = host.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "polis-sub"]).arg(&sub).status().unwrap();
        assert!(st.success());
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
        let _guard = Unmount(sub.clone());
        std::fs::write(sub.join("inside"), "submount").unwrap();
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/mnt/r", "type": "bind", "source": host.path(), "options": ["rbind"]}));
        b.probe(&["read", "/mnt/r/sub/inside"]);
        assert_eq!(probe(rt, &b)["content"], "submount");
    }
);

conformance_test!(
    /// config-linux.md#mount-propagation: "rootfsPropagation (string, OPTIONAL) sets the rootfs's mount
    /// propagation." With `private`, the root mount has no shared peer group.
    rootfs_propagation_private,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/rootfsPropagation", json!("private"));
        let v = run_report(rt, &mut b);
        let m = mount_at(&v, "/").expect("root mount");
        assert!(!m.optional.iter().any(|o| o.starts_with("shared:")), "{m:?}");
    }
);

conformance_test!(
    /// config.md#mounts (propagation options): a bind mount with `rshared` is a shared mount (mountinfo `shared:N`).
    bind_propagation_shared,
    |rt| {
        let host = host_dir();
        let mut b = Bundle::new();
        b.push(
            "/mounts",
            json!({"destination": "/mnt/s", "type": "bind", "source": host.path(), "options": ["rbind", "rshared"]}),
        );
        b.set("/linux/rootfsPropagation", json!("shared"));
        let v = run_report(rt, &mut b);
        let m = mount_at(&v, "/mnt/s").expect("mount at /mnt/s");
        assert!(m.optional.iter().any(|o| o.starts_with("shared:")), "{m:?}");
    }
);

conformance_test!(
    /// config-linux.md#default-filesystems: "/proc proc" — the default config's /proc is a procfs of the
    /// container's PID namespace.
    proc_mounted,
    |rt| {
        let mut b = Bundle::new();
        let v = run_report(rt, &mut b);
        assert_eq!(mount_at(&v, "/proc").expect("/proc").fstype, "proc");
        b.probe(&["read", "/proc/1/cmdline"]);
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let cmdline = out.json()["content"].as_str().unwrap_or_default().to_string();
        assert!(cmdline.starts_with("/bin/polis-probe"), "/proc/1 is not the container's init: {cmdline:?}");
    }
);

conformance_test!(
    /// config-linux.md#default-filesystems: "/sys sysfs", mounted read-only as configured.
    sysfs_mounted_ro,
    |rt| {
        let mut b = Bundle::new();
        let v = run_report(rt, &mut b);
        let m = mount_at(&v, "/sys").expect("/sys");
        assert_eq!(m.fstype, "sysfs");
        assert!(m.options.iter().any(|o| o == "ro"), "{m:?}");
    }
);

conformance_test!(
    /// config-linux.md#default-filesystems: "/dev/pts devpts" is a new devpts instance.
    devpts_mounted,
    |rt| {
        let mut b = Bundle::new();
        let v = run_report(rt, &mut b);
        assert_eq!(mount_at(&v, "/dev/pts").expect("/dev/pts").fstype, "devpts");
    }
);

conformance_test!(
    /// config-linux.md#default-filesystems: "/dev/shm tmpfs" with the configured mode 1777.
    dev_shm_mounted,
    |rt| {
        let mut b = Bundle::new();
        b.sh("polis-probe stat /dev/shm; polis-probe report");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let st: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
        assert_eq!(st["mode"], 0o1777, "{st}");
        assert_eq!(mount_at(&out.json(), "/dev/shm").expect("/dev/shm").fstype, "tmpfs");
    }
);

conformance_test!(
    /// config.md#mounts: the `cgroup` mount with `ro` gives the container a read-only view of its cgroups: every
    /// cgroup filesystem mounted at or under /sys/fs/cgroup is read-only.
    cgroup_mount_ro,
    |rt| {
        let mut b = Bundle::new();
        let v = run_report(rt, &mut b);
        let mounts: Vec<MountInfo> = v["mountinfo"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str().and_then(MountInfo::parse))
            .filter(|m| m.mount_point.starts_with("/sys/fs/cgroup") && m.fstype.starts_with("cgroup"))
            .collect();
        assert!(!mounts.is_empty(), "nothing mounted at /sys/fs/cgroup: {v}");
        for m in mounts {
            assert!(m.options.iter().any(|o| o == "ro"), "writable cgroup mount: {m:?}");
        }
    }
);

conformance_test!(
    /// config.md#mounts: mounts happen in the container's mount namespace; the host's mount table is unchanged
    /// after the container ran.
    mounts_invisible_on_host,
    |rt| {
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/data", "type": "tmpfs", "source": "polis-marker-tmpfs"}));
        b.probe(&["sleep", "30"]);
        let c = rt.container();
        c.create_running(&b);
        // Other tests mount and unmount on the host meanwhile: only this container's mounts are looked for (its
        // marker, and anything at or below its bundle, where the rootfs is).
        let bundle = b.path().to_str().unwrap().to_string();
        let ours = |table: &str| -> Vec<String> {
            table
                .lines()
                .filter(|l| l.contains("polis-marker-tmpfs") || l.contains(&bundle))
                .map(str::to_string)
                .collect()
        };
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(ours(&host).is_empty(), "container mounts visible on host: {:?}", ours(&host));
        c.kill("KILL").ok();
        c.wait_stopped();
        c.delete().ok();
        let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(ours(&after).is_empty(), "container mounts left on host: {:?}", ours(&after));
    }
);

conformance_test!(
    /// config.md#mounts (Linux mount options): "rro" makes a recursive bind read-only all the way down, submounts
    /// included (mount_setattr with AT_RECURSIVE).
    rro_recursive_readonly,
    |rt| {
        let host = host_dir();
        let sub = host.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "polis-rro"]).arg(&sub).status().unwrap();
        assert!(st.success());
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
        let _guard = Unmount(sub.clone());
        let mut b = Bundle::new();
        b.push("/mounts", json!({"destination": "/mnt/r", "type": "bind", "source": host.path(), "options": ["rbind", "rro"]}));
        b.sh("polis-probe write /mnt/r/top; polis-probe write /mnt/r/sub/inner");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["errno"], libc::EROFS, "{out}");
        assert_eq!(lines[1]["errno"], libc::EROFS, "submount stayed writable: {out}");
        assert!(!sub.join("inner").exists());
    }
);

/// The shared host mount (SharedHostDir) with a file `marker` saying "host" at its top.
fn shared_host_mount() -> SharedHostDir {
    let host = SharedHostDir::new();
    std::fs::write(host.path().join("marker"), "host").unwrap();
    host
}

/// runtime-spec config.md#mounts (bind propagation options) with config-linux.md#rootfs-mount-propagation
/// (runc's recursive forms too). Not the unbindable values: runc 1.1.5 cannot bind an unbindable rootfs.
const ROOT_PROPAGATIONS: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];
const BIND_PROPAGATIONS: [&str; 6] = [
    "rshared", "rslave", "rprivate", "shared", "slave", "private",
];

conformance_test!(
    /// config-linux.md#rootfs-mount-propagation: every rootfsPropagation value runc accepts (containerd's CRI writes
    /// `rshared` and `rslave` for Kubernetes' Bidirectional and HostToContainer hostPaths) starts the container, and
    /// bind mounts with each propagation option (config.md#mounts) keep working under each of them.
    rootfs_propagation_with_bind_propagation,
    |rt| {
        let host = host_dir();
        std::fs::write(host.path().join("marker"), "bound").unwrap();
        for root in ROOT_PROPAGATIONS {
            let mut b = Bundle::new();
            b.set("/linux/rootfsPropagation", json!(root));
            let mut script = String::new();
            for opt in BIND_PROPAGATIONS {
                b.push(
                    "/mounts",
                    json!({"destination": format!("/mnt/{opt}"), "type": "bind", "source": host.path(),
                           "options": ["rbind", opt]}),
                );
                script.push_str(&format!("echo {opt}=$(cat /mnt/{opt}/marker); "));
            }
            b.sh(&script);
            let out = rt.container().run(&b);
            out.ok();
            for opt in BIND_PROPAGATIONS {
                assert!(out.stdout.contains(&format!("{opt}=bound")), "rootfsPropagation {root}, bind {opt}: {out}");
            }
        }
    }
);

/// The container's `/` and `/proc` mounts as its mountinfo shows them, for `linux.rootfsPropagation` = `value`.
fn root_and_proc(rt: &Runtime, value: &str) -> (MountInfo, MountInfo) {
    let mut b = Bundle::new();
    b.set("/linux/rootfsPropagation", json!(value));
    let v = run_report(rt, &mut b);
    let root = mount_at(&v, "/").unwrap_or_else(|| panic!("no root mount: {v}"));
    let proc = mount_at(&v, "/proc").unwrap_or_else(|| panic!("no /proc: {v}"));
    (root, proc)
}

fn has_optional(m: &MountInfo, prefix: &str) -> bool {
    m.optional.iter().any(|o| o.starts_with(prefix))
}

conformance_test!(
    /// config-linux.md#rootfs-mount-propagation: "sets the rootfs's mount propagation": with `shared` the container's
    /// root mount is shared (mountinfo `shared:N`), with `rshared` the mounts below it are too; the slave and
    /// private values leave it without a peer group.
    rootfs_propagation_shared_root,
    runc_lacks = "runc 1.1.5 leaves the container's root private for shared and rshared (runc 1.2 applies the value after pivot_root)",
    |rt| {
        let (root, proc) = root_and_proc(rt, "shared");
        assert!(has_optional(&root, "shared:"), "{root:?}");
        assert!(!has_optional(&proc, "shared:"), "shared is not recursive: {proc:?}");
        let (root, proc) = root_and_proc(rt, "rshared");
        assert!(has_optional(&root, "shared:") && has_optional(&proc, "shared:"), "{root:?} {proc:?}");
        for value in ["slave", "rslave", "private", "rprivate"] {
            let (root, _) = root_and_proc(rt, value);
            assert!(!has_optional(&root, "shared:"), "{value}: {root:?}");
        }
    }
);

conformance_test!(
    /// config-linux.md#rootfs-mount-propagation: `unbindable` makes the container's root mount unbindable,
    /// `runbindable` the mounts below it too.
    rootfs_propagation_unbindable,
    runc_lacks = "runc 1.1.5 fails to bind-mount an unbindable rootfs (EINVAL)",
    |rt| {
        let (root, proc) = root_and_proc(rt, "unbindable");
        assert!(has_optional(&root, "unbindable"), "{root:?}");
        assert!(!has_optional(&proc, "unbindable"), "unbindable is not recursive: {proc:?}");
        let (root, proc) = root_and_proc(rt, "runbindable");
        assert!(has_optional(&root, "unbindable") && has_optional(&proc, "unbindable"), "{root:?} {proc:?}");
    }
);

/// A running container with the shared host mount bound at /mnt/h with `bind_option`, and CAP_SYS_ADMIN so that
/// it can mount below it; with its bundle, which must outlive it.
fn container_on_shared_mount<'a>(
    rt: &'a Runtime,
    host: &SharedHostDir,
    root: Option<&str>,
    bind_option: &str,
) -> (Container<'a>, Bundle) {
    let mut b = Bundle::new();
    if let Some(root) = root {
        b.set("/linux/rootfsPropagation", json!(root));
    }
    b.push(
        "/mounts",
        json!({"destination": "/mnt/h", "type": "bind", "source": host.path(), "options": ["rbind", bind_option]}),
    );
    let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
    b.set(
        "/process/capabilities",
        json!({"bounding": caps, "effective": caps, "permitted": caps}),
    );
    b.probe(&["sleep", "60"]);
    let c = rt.container();
    c.create_running(&b);
    (c, b)
}

/// Reads /mnt/h/SUB/marker in the container.
fn container_reads(c: &Container<'_>, sub: &str) -> String {
    let out = c.exec(&["/bin/polis-probe", "read", &format!("/mnt/h/{sub}/marker")]);
    out.ok();
    out.json()["content"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string()
}

conformance_test!(
    /// config.md#mounts (propagation options) as Kubernetes' HostToContainer and Bidirectional use them: a mount
    /// made on the host below an `rslave` or `rshared` bind source after the container started appears inside it.
    host_mounts_propagate_into_slave_and_shared_binds,
    |rt| {
        for (root, bind) in [("rslave", "rslave"), ("rshared", "rshared")] {
            let host = shared_host_mount();
            let (c, _bundle) = container_on_shared_mount(rt, &host, Some(root), bind);
            assert_eq!(container_reads(&c, "."), "host");
            host.mount_tmpfs_below("late");
            assert_eq!(container_reads(&c, "late"), "from-host", "rootfsPropagation {root}, bind {bind}");
        }
    }
);

conformance_test!(
    /// config.md#mounts with config-linux.md#rootfs-mount-propagation `rshared` (Kubernetes' Bidirectional): a mount
    /// made inside the container below an `rshared` bind appears on the host.
    container_mounts_propagate_to_the_host_with_rshared,
    |rt| {
        let host = shared_host_mount();
        let (c, _bundle) = container_on_shared_mount(rt, &host, Some("rshared"), "rshared");
        c.exec(&["sh", "-c", "mkdir -p /mnt/h/inner && mount -t tmpfs polis-from-container /mnt/h/inner"]).ok();
        assert!(host.mount_below("inner").is_some(), "the container's mount did not reach the host");
    }
);

conformance_test!(
    /// config.md#mounts: an `rprivate` bind (Kubernetes' default, PROPAGATION_PRIVATE) receives no mount from the host
    /// and sends none to it.
    rprivate_bind_propagates_nothing,
    |rt| {
        let host = shared_host_mount();
        let (c, _bundle) = container_on_shared_mount(rt, &host, None, "rprivate");
        assert_eq!(container_reads(&c, "."), "host");
        host.mount_tmpfs_below("late");
        let out = c.exec(&["/bin/polis-probe", "read", "/mnt/h/late/marker"]);
        out.ok();
        assert_eq!(out.json()["errno"], libc::ENOENT, "the host's mount reached the container: {out}");
        c.exec(&["sh", "-c", "mkdir -p /mnt/h/inner && mount -t tmpfs polis-from-container /mnt/h/inner"]).ok();
        assert!(host.mount_below("inner").is_none(), "the container's mount reached the host");
    }
);
