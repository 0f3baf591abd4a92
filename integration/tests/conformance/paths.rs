//! runtime-spec config.md#root (readonly) and config-linux.md#masked-paths / #readonly-paths.

use polis_integration::*;

fn probe(rt: &Runtime, b: &Bundle) -> Value {
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

conformance_test!(
    /// config.md#root: "readonly (bool, OPTIONAL) If true then the root filesystem MUST be read-only inside the
    /// container."
    root_readonly_true,
    |rt| {
        let mut b = Bundle::new();
        b.set("/root/readonly", json!(true));
        b.probe(&["write", "/newfile"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EROFS);
        assert!(!b.rootfs().join("newfile").exists());
    }
);

conformance_test!(
    /// config.md#root: "readonly ... defaults to false": a writable root lets the process create files.
    root_readonly_false,
    |rt| {
        let mut b = Bundle::new();
        b.set("/root/readonly", json!(false));
        b.probe(&["write", "/newfile", "data"]);
        assert_eq!(probe(rt, &b)["errno"], 0);
        assert_eq!(std::fs::read_to_string(b.rootfs().join("newfile")).unwrap(), "data");
    }
);

conformance_test!(
    /// config.md#root: a read-only root does not make the mounts on top of it read-only (/dev/shm stays writable).
    root_readonly_mounts_writable,
    |rt| {
        let mut b = Bundle::new();
        b.set("/root/readonly", json!(true));
        b.probe(&["write", "/dev/shm/f"]);
        assert_eq!(probe(rt, &b)["errno"], 0);
    }
);

conformance_test!(
    /// config-linux.md#masked-paths: "maskedPaths (array of strings, OPTIONAL) will mask over the provided paths
    /// inside the container so that they cannot be read." (a file)
    masked_file_unreadable,
    |rt| {
        let mut b = Bundle::new();
        std::fs::write(b.rootfs().join("secret"), "top secret").unwrap();
        b.push("/linux/maskedPaths", json!("/secret"));
        b.probe(&["read", "/secret"]);
        let v = probe(rt, &b);
        assert!(v["errno"] != 0 || v["len"] == 0, "masked file still readable: {v}");
        assert!(!v.to_string().contains("top secret"));
    }
);

conformance_test!(
    /// config-linux.md#masked-paths: a masked directory shows none of its entries.
    masked_dir_hidden,
    |rt| {
        let mut b = Bundle::new();
        std::fs::create_dir(b.rootfs().join("secretdir")).unwrap();
        std::fs::write(b.rootfs().join("secretdir/key"), "top secret").unwrap();
        b.push("/linux/maskedPaths", json!("/secretdir"));
        b.probe(&["read", "/secretdir/key"]);
        let v = probe(rt, &b);
        assert_eq!(v["errno"], libc::ENOENT, "masked dir entry visible: {v}");
    }
);

conformance_test!(
    /// config-linux.md#masked-paths: the default masked /proc/keys reads nothing in the container, though the host's
    /// has content.
    masked_proc_keys,
    |rt| {
        assert!(!std::fs::read_to_string("/proc/keys").unwrap_or_default().is_empty(), "host /proc/keys is empty");
        let mut b = Bundle::new();
        b.probe(&["read", "/proc/keys"]);
        let v = probe(rt, &b);
        assert_eq!(v["errno"], 0, "{v}");
        assert_eq!(v["len"], 0, "/proc/keys not masked: {v}");
    }
);

conformance_test!(
    /// config-linux.md#masked-paths: the default masked directory /sys/firmware shows no entries, while
    /// without masking it shows the host's.
    masked_sys_firmware_dir,
    |rt| {
        let mut b = Bundle::new();
        b.sh("ls -A /sys/firmware | wc -l");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.stdout.trim(), "0", "{out}");
        let mut b = Bundle::new();
        b.sh("ls -A /sys/firmware | wc -l");
        b.set("/linux/maskedPaths", json!([]));
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let host_entries = std::fs::read_dir("/sys/firmware").map(|d| d.count()).unwrap_or(0);
        assert_eq!(out.stdout.trim(), host_entries.to_string(), "unmasked /sys/firmware differs: {out}");
    }
);

conformance_test!(
    /// config-linux.md#masked-paths: a path that does not exist in the rootfs is not an error and is not created.
    masked_missing_path_ignored,
    |rt| {
        let mut b = Bundle::new();
        b.push("/linux/maskedPaths", json!("/does/not/exist"));
        b.probe(&["stat", "/does/not/exist"]);
        assert_eq!(probe(rt, &b)["errno"], libc::ENOENT);
    }
);

conformance_test!(
    /// config-linux.md#readonly-paths: "readonlyPaths (array of strings, OPTIONAL) will set the provided paths as
    /// readonly inside the container."
    readonly_path_write_fails,
    |rt| {
        let mut b = Bundle::new();
        std::fs::create_dir(b.rootfs().join("data")).unwrap();
        std::fs::write(b.rootfs().join("data/file"), "original").unwrap();
        b.push("/linux/readonlyPaths", json!("/data"));
        b.sh("polis-probe write /data/file changed; polis-probe read /data/file");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["errno"], libc::EROFS, "{out}");
        assert_eq!(lines[1]["content"], "original", "{out}");
    }
);

conformance_test!(
    /// config-linux.md#readonly-paths: the default read-only /proc/sys refuses writes.
    readonly_proc_sys,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["write", "/proc/sys/kernel/hostname", "nope"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EROFS);
    }
);

conformance_test!(
    /// config-linux.md#readonly-paths: a read-only file stays readable.
    readonly_path_readable,
    |rt| {
        let mut b = Bundle::new();
        std::fs::write(b.rootfs().join("ro-file"), "readable").unwrap();
        b.push("/linux/readonlyPaths", json!("/ro-file"));
        b.probe(&["read", "/ro-file"]);
        assert_eq!(probe(rt, &b)["content"], "readable");
    }
);

conformance_test!(
    /// config-linux.md#readonly-paths: a read-only path is mounted read-only (mountinfo shows `ro`).
    readonly_path_mount_flag,
    |rt| {
        let mut b = Bundle::new();
        std::fs::create_dir(b.rootfs().join("data")).unwrap();
        b.push("/linux/readonlyPaths", json!("/data"));
        b.probe(&["report"]);
        let v = probe(rt, &b);
        let m = mount_at(&v, "/data").unwrap_or_else(|| panic!("/data is not a mount point: {v}"));
        assert!(m.options.iter().any(|o| o == "ro"), "{m:?}");
    }
);

conformance_test!(
    /// config.md#root: "path (string, REQUIRED) Specifies the path to the root filesystem for the container. The
    /// value is either an absolute path or a relative path to the bundle." (absolute)
    root_path_absolute,
    |rt| {
        let mut b = Bundle::new();
        std::fs::write(b.rootfs().join("marker"), "absolute root").unwrap();
        b.set("/root/path", json!(b.rootfs()));
        b.probe(&["read", "/marker"]);
        assert_eq!(probe(rt, &b)["content"], "absolute root");
    }
);

conformance_test!(
    /// config-linux.md#readonly-paths: a read-only path that does not exist in the rootfs is not an error and is
    /// not created.
    readonly_missing_path_ignored,
    |rt| {
        let mut b = Bundle::new();
        b.push("/linux/readonlyPaths", json!("/does/not/exist"));
        b.probe(&["stat", "/does/not/exist"]);
        assert_eq!(probe(rt, &b)["errno"], libc::ENOENT);
    }
);
