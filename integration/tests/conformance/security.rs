//! Runtime hardening a user relies on, checked from both sides: no host descriptor reaches the container
//! (CVE-2024-21626), the runtime binary on the host is never the container's init (CVE-2019-5736), and the
//! container's root cannot reach the host through what the runtime set up.

use polis_integration::*;

conformance_test!(
    /// runtime.md#lifecycle: the container's process starts with only the stdio the runtime was given; no other
    /// descriptor of the runtime (state dir, cgroup dirs, host files) is inherited (CVE-2024-21626).
    no_leaked_descriptors,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["fds"]);
        let out = rt.container().run(&b);
        out.ok();
        let v = out.json();
        let fds = v["fds"].as_object().unwrap_or_else(|| panic!("{v}"));
        let mut numbers: Vec<&str> = fds.keys().map(String::as_str).collect();
        numbers.sort();
        assert_eq!(numbers, vec!["0", "1", "2"], "extra descriptors in the container: {v}");
    }
);

conformance_test!(
    /// runtime.md#lifecycle: a process started by exec gets no runtime descriptor either.
    exec_no_leaked_descriptors,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let out = c.exec(&["/bin/polis-probe", "fds"]);
        out.ok();
        let v = out.json();
        let mut numbers: Vec<String> = v["fds"].as_object().unwrap().keys().cloned().collect();
        numbers.sort();
        assert_eq!(numbers, vec!["0", "1", "2"], "extra descriptors in the exec'd process: {v}");
    }
);

conformance_test!(
    /// CVE-2019-5736: while a container is created, its init process does not run the writable host binary of the
    /// runtime: /proc/PID/exe is either another file (a sealed memfd copy) or the binary on a read-only mount, so a
    /// container process cannot overwrite the host's runtime through it.
    init_cannot_reach_host_binary,
    |rt| {
        use std::os::unix::fs::MetadataExt;
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create(&b).ok();
        let exe = format!("/proc/{}/exe", c.pid());
        let host = std::fs::metadata(&rt.path).unwrap();
        let init = std::fs::metadata(&exe).unwrap();
        if (init.dev(), init.ino()) != (host.dev(), host.ino()) {
            return;
        }
        let path = std::ffi::CString::new(exe.clone()).unwrap();
        // SAFETY: O_PATH open of a magic link and fstatvfs into a zeroed struct we own; the fd is closed below.
        let readonly = unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            assert!(fd >= 0, "open {exe}");
            let mut st: libc::statvfs = std::mem::zeroed();
            let rc = libc::fstatvfs(fd, &mut st);
            libc::close(fd);
            rc == 0 && st.f_flag & libc::ST_RDONLY != 0
        };
        assert!(readonly, "the created container's init runs the writable host binary {}", rt.path.display());
    }
);

conformance_test!(
    /// config-linux.md#masked-paths with the default config: the host's kernel keyring list and timer list are not
    /// readable, and sysrq-trigger cannot be written.
    default_sensitive_proc_paths,
    |rt| {
        let mut b = Bundle::new();
        b.sh("polis-probe read /proc/keys; polis-probe read /proc/timer_list; polis-probe write /proc/sysrq-trigger h");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["len"], 0, "/proc/keys readable: {out}");
        assert_eq!(lines[1]["len"], 0, "/proc/timer_list readable: {out}");
        assert_ne!(lines[2]["errno"], 0, "/proc/sysrq-trigger writable: {out}");
    }
);

conformance_test!(
    /// config-linux.md#namespaces (mount): the host's root filesystem is not reachable from the container after the
    /// root switch (no path back through `..` of /).
    host_root_unreachable,
    |rt| {
        let marker = temp_dir("polis-it-hostroot-");
        std::fs::write(marker.path().join("host-only"), "host").unwrap();
        let rel = marker.path().strip_prefix("/").unwrap().join("host-only");
        let mut b = Bundle::new();
        let escape = format!("/../../../../{}", rel.display());
        b.sh(&format!("polis-probe read {escape}; cd /; cd ..; polis-probe read {}", rel.display()));
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert!(!out.stdout.contains("\"content\":\"host\""), "host file reachable: {out}");
    }
);
