//! runtime-spec config-linux.md#devices, #default-devices and runtime-linux.md#dev-symbolic-links.

use polis_integration::*;

fn stat(rt: &Runtime, b: &mut Bundle, path: &str) -> Value {
    b.probe(&["stat", path]);
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

macro_rules! default_device {
    ($name:ident, $path:literal, $major:literal, $minor:literal) => {
        conformance_test!(
            /// config-linux.md#default-devices: "the runtime MUST supply these devices" (char device with the
            /// host's major:minor).
            $name,
            |rt| {
                let mut b = Bundle::new();
                let v = stat(rt, &mut b, $path);
                assert_eq!(v["type"], "char", "{}: {v}", $path);
                assert_eq!((v["major"].as_u64(), v["minor"].as_u64()), (Some($major), Some($minor)), "{v}");
            }
        );
    };
}

default_device!(default_dev_null, "/dev/null", 1, 3);
default_device!(default_dev_zero, "/dev/zero", 1, 5);
default_device!(default_dev_full, "/dev/full", 1, 7);
default_device!(default_dev_random, "/dev/random", 1, 8);
default_device!(default_dev_urandom, "/dev/urandom", 1, 9);
default_device!(default_dev_tty, "/dev/tty", 5, 0);

conformance_test!(
    /// config-linux.md#default-devices: /dev/null is usable: writes succeed and reads return nothing.
    default_dev_null_usable,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo x > /dev/null && polis-probe read /dev/null");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.json()["len"], 0);
    }
);

conformance_test!(
    /// config-linux.md#default-devices: /dev/ptmx "a bind-mount or symlink of the container's ptmx" (into
    /// /dev/pts).
    default_dev_ptmx,
    |rt| {
        let mut b = Bundle::new();
        let v = stat(rt, &mut b, "/dev/ptmx");
        let ok = (v["type"] == "symlink" && v["target"] == "pts/ptmx") || v["type"] == "char";
        assert!(ok, "/dev/ptmx: {v}");
    }
);

macro_rules! dev_symlink {
    ($name:ident, $path:literal, $target:literal) => {
        conformance_test!(
            /// runtime-linux.md#dev-symbolic-links: "the runtime MUST set up the following symlinks" in /dev.
            $name,
            |rt| {
                let mut b = Bundle::new();
                let v = stat(rt, &mut b, $path);
                assert_eq!(v["type"], "symlink", "{v}");
                assert_eq!(v["target"], $target, "{v}");
            }
        );
    };
}

dev_symlink!(dev_fd_symlink, "/dev/fd", "/proc/self/fd");
dev_symlink!(dev_stdin_symlink, "/dev/stdin", "/proc/self/fd/0");
dev_symlink!(dev_stdout_symlink, "/dev/stdout", "/proc/self/fd/1");
dev_symlink!(dev_stderr_symlink, "/dev/stderr", "/proc/self/fd/2");

/// Adds a device to linux.devices and allows it in the device cgroup.
fn add_device(b: &mut Bundle, dev: Value) {
    let (t, major, minor) = (
        dev["type"].clone(),
        dev["major"].clone(),
        dev["minor"].clone(),
    );
    b.push("/linux/devices", dev);
    b.push(
        "/linux/resources/devices",
        json!({"allow": true, "type": t, "major": major, "minor": minor, "access": "rwm"}),
    );
}

conformance_test!(
    /// config-linux.md#devices: "type (string, REQUIRED) type of device: c, b, u or p", "major, minor (int64,
    /// REQUIRED unless type is p)": a char device node is created with them.
    device_char_created,
    |rt| {
        let mut b = Bundle::new();
        add_device(&mut b, json!({"path": "/dev/polis-null", "type": "c", "major": 1, "minor": 3}));
        let v = stat(rt, &mut b, "/dev/polis-null");
        assert_eq!(v["type"], "char", "{v}");
        assert_eq!((v["major"].as_u64(), v["minor"].as_u64()), (Some(1), Some(3)));
    }
);

conformance_test!(
    /// config-linux.md#devices: "fileMode (uint32, OPTIONAL) file mode for the device."
    device_file_mode,
    |rt| {
        let mut b = Bundle::new();
        add_device(&mut b, json!({"path": "/dev/polis-zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o640}));
        let v = stat(rt, &mut b, "/dev/polis-zero");
        assert_eq!(v["mode"], 0o640, "{v}");
    }
);

conformance_test!(
    /// config-linux.md#devices: "uid (uint32, OPTIONAL) id of device owner" and "gid (uint32, OPTIONAL) id of
    /// device group".
    device_owner,
    |rt| {
        let mut b = Bundle::new();
        add_device(
            &mut b,
            json!({"path": "/dev/polis-full", "type": "c", "major": 1, "minor": 7, "uid": 1000, "gid": 1000, "fileMode": 0o600}),
        );
        let v = stat(rt, &mut b, "/dev/polis-full");
        assert_eq!((v["uid"].as_u64(), v["gid"].as_u64()), (Some(1000), Some(1000)), "{v}");
    }
);

conformance_test!(
    /// config-linux.md#devices: a device can be created in a subdirectory of /dev that does not exist yet.
    device_in_subdir,
    |rt| {
        let mut b = Bundle::new();
        add_device(&mut b, json!({"path": "/dev/polis/dir/null", "type": "c", "major": 1, "minor": 3}));
        let v = stat(rt, &mut b, "/dev/polis/dir/null");
        assert_eq!(v["type"], "char", "{v}");
    }
);

conformance_test!(
    /// config-linux.md#devices: a device listed in linux.devices and allowed in the device cgroup is usable.
    device_usable,
    |rt| {
        let mut b = Bundle::new();
        add_device(&mut b, json!({"path": "/dev/polis-zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666}));
        b.sh("head -c 4 /dev/polis-zero | wc -c");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.stdout.trim(), "4");
    }
);

conformance_test!(
    /// config-linux.md#devices: "type ... b (block)" — a block device node gets type b.
    device_block_created,
    |rt| {
        let mut b = Bundle::new();
        add_device(&mut b, json!({"path": "/dev/polis-loop", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600}));
        let v = stat(rt, &mut b, "/dev/polis-loop");
        assert_eq!(v["type"], "block", "{v}");
        assert_eq!((v["major"].as_u64(), v["minor"].as_u64()), (Some(7), Some(200)));
    }
);

conformance_test!(
    /// config-linux.md#devices: "type ... p (FIFO)" — a FIFO is created without major/minor.
    device_fifo_created,
    |rt| {
        let mut b = Bundle::new();
        b.push("/linux/devices", json!({"path": "/dev/polis-fifo", "type": "p", "fileMode": 0o600}));
        let v = stat(rt, &mut b, "/dev/polis-fifo");
        assert_eq!(v["type"], "fifo", "{v}");
    }
);

/// Creates /tmp/dev (c 240:0, a local-use number without a driver: open gives ENXIO when the device cgroup allows
/// it, EPERM when it denies it) with mknod inside the container under device rules `rules`, then opens it; returns
/// the probe's errno.
fn open_mknod_dev(rt: &Runtime, rules: Value) -> Value {
    let mut b = Bundle::new();
    for r in rules.as_array().unwrap() {
        b.push("/linux/resources/devices", r.clone());
    }
    let caps = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE"]);
    b.set(
        "/process/capabilities",
        json!({"bounding": caps, "effective": caps, "permitted": caps}),
    );
    b.sh("mknod /tmp/dev c 240 0 && polis-probe read /tmp/dev");
    let c = rt.container();
    let out = c.run(&b);
    out.ok();
    out.json()["errno"].clone()
}

conformance_test!(
    /// config-linux.md#allowed-device-list: "allow (boolean, REQUIRED) whether the entry is allowed or denied." An
    /// allowed device passes the cgroup check (open reaches the missing driver: ENXIO).
    device_cgroup_allow,
    |rt| {
        let errno = open_mknod_dev(rt, json!([{"allow": true, "type": "c", "major": 240, "minor": 0, "access": "rwm"}]));
        assert_eq!(errno, libc::ENXIO, "allowed device refused");
    }
);

conformance_test!(
    /// config-linux.md#allowed-device-list: the entries apply in order: a later deny overrides an earlier allow of
    /// the same device (open fails with EPERM).
    device_cgroup_deny_after_allow,
    |rt| {
        let errno = open_mknod_dev(
            rt,
            json!([
                {"allow": true, "type": "c", "major": 240, "minor": 0, "access": "rwm"},
                {"allow": false, "type": "c", "major": 240, "minor": 0, "access": "rwm"}
            ]),
        );
        assert_eq!(errno, libc::EPERM);
    }
);

conformance_test!(
    /// config-linux.md#allowed-device-list: "access (string, OPTIONAL) cgroup permissions for device. A composition
    /// of r (read), w (write), and m (mknod)." With only `w`, opening the device for reading fails with EPERM.
    device_cgroup_access_write_only,
    |rt| {
        let errno = open_mknod_dev(rt, json!([{"allow": true, "type": "c", "major": 240, "minor": 0, "access": "w"}]));
        assert_eq!(errno, libc::EPERM);
    }
);

conformance_test!(
    /// config-linux.md#allowed-device-list: a device not in the allow list and created with mknod inside the
    /// container cannot be opened.
    device_cgroup_default_deny,
    |rt| {
        let mut b = Bundle::new();
        let caps = json!(["CAP_MKNOD"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        b.sh("mknod /tmp/mem c 1 1 2>/dev/null; polis-probe read /tmp/mem");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.json()["errno"], libc::EPERM, "{out}");
    }
);

conformance_test!(
    /// config-linux.md#allowed-device-list on a cgroup v2 host, where the device cgroup is an eBPF program
    /// (cgroup-v2.rst, "Device controller"): an allowed device passes (ENXIO from the missing driver), one the
    /// rules deny or never allow fails with EPERM, and a later rule overrides an earlier one.
    device_cgroup_on_cgroup_v2,
    |rt| {
        if !rt.use_cgroup2_view() {
            return;
        }
        let allow = json!({"allow": true, "type": "c", "major": 240, "minor": 0, "access": "rwm"});
        assert_eq!(open_mknod_dev(rt, json!([allow.clone()])), libc::ENXIO, "allowed device refused");
        let deny = json!({"allow": false, "type": "c", "major": 240, "minor": 0, "access": "rwm"});
        assert_eq!(open_mknod_dev(rt, json!([allow, deny])), libc::EPERM, "later deny ignored");
        let write_only = json!({"allow": true, "type": "c", "major": 240, "minor": 0, "access": "w"});
        assert_eq!(open_mknod_dev(rt, json!([write_only])), libc::EPERM, "read allowed by a w rule");
        assert_eq!(open_mknod_dev(rt, json!([])), libc::EPERM, "a device no rule allows was opened");
    }
);
