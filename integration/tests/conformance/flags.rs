//! runc's command-line flags that containerd, podman and go-runc pass, checked by what they do:
//! `--no-pivot`, `--preserve-fds`, `exec --no-new-privs` and `--systemd-cgroup`.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use polis_integration::*;

conformance_test!(
    /// runc `create/run --no-pivot`: the root filesystem is switched with MS_MOVE + chroot instead of pivot_root
    /// (needed on ramdisk roots); the process still sees the bundle's rootfs as `/`.
    no_pivot_uses_the_rootfs,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["read", "/etc/hostname"]);
        let c = rt.container();
        let out = c.run_with(&b, &["--no-pivot"]);
        out.ok();
        assert_eq!(out.json()["content"].as_str().map(str::trim), Some("rootfs"), "{out}");
    }
);

conformance_test!(
    /// runc `create/run --preserve-fds N`: "Pass N additional file descriptors to the container (stdio + $LISTEN_FDS
    /// + N in total)": descriptor 3 of the runtime is descriptor 3 of the container's process.
    preserve_fds_passes_descriptor_three,
    |rt| {
        let scratch = rt.scratch();
        let file = scratch.join("passed.txt");
        std::fs::write(&file, "through fd 3\n").unwrap();
        let passed = std::fs::File::open(&file).unwrap();
        let raw = passed.as_raw_fd();
        let mut b = Bundle::new();
        b.sh("cat <&3");
        let c = rt.container();
        b.write_config(Some(&c.cgroups_path()));
        let mut cmd = rt.command(&["run", "--preserve-fds", "1", "--bundle"]);
        cmd.arg(b.path()).arg(&c.id);
        // SAFETY: only dup2 and fcntl between fork and exec. dup2 onto itself keeps close-on-exec, so the flag is
        // cleared explicitly.
        unsafe {
            cmd.pre_exec(move || {
                if (raw != 3 && libc::dup2(raw, 3) < 0) || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = run_command(cmd, &scratch, Duration::from_secs(20));
        out.ok();
        assert_eq!(out.stdout.trim(), "through fd 3", "{out}");
    }
);

conformance_test!(
    /// runc `exec --no-new-privs`: the new process has no_new_privs set even when the container's own process
    /// does not (kernel: /proc/self/status NoNewPrivs).
    exec_no_new_privs_flag,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/noNewPrivileges", json!(false));
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let plain = c.exec(&["/bin/polis-probe", "report"]);
        plain.ok();
        assert_eq!(plain.json()["NoNewPrivs"], "0", "{plain}");
        let out = c.exec_with(&["--no-new-privs"], &["/bin/polis-probe", "report"]);
        out.ok();
        assert_eq!(out.json()["NoNewPrivs"], "1", "{out}");
    }
);

/// runc `--systemd-cgroup` with `cgroupsPath` "slice:prefix:name": on a host without systemd managing cgroups
/// (cgroup v1 or hybrid), the container's cgroup is the path systemd would have made,
/// `/<slice path>/<prefix>-<name>.scope`, and `delete` removes it. runc needs a running systemd for this, so only
/// polis-runc is checked.
#[test]
fn systemd_cgroups_path_is_translated() {
    let Some(rt) = Runtime::polis("systemd-cgroup") else {
        return;
    };
    if cgroup::mode() == cgroup::Mode::Unified {
        eprintln!(
            "notice: translation applies to cgroup v1 and hybrid hosts; this host is cgroup v2"
        );
        return;
    }
    let c = rt.container();
    let mut b = Bundle::new();
    b.probe(&["sleep", "60"]);
    b.set(
        "/linux/cgroupsPath",
        json!(format!("polistest.slice:polis:{}", c.id)),
    );
    b.write_config(None);
    let mut cmd = rt.command(&["--systemd-cgroup", "create", "--bundle"]);
    cmd.arg(b.path()).arg(&c.id);
    run_command(cmd, &rt.scratch(), Duration::from_secs(20)).ok();
    let scope =
        Path::new("/sys/fs/cgroup/memory/polistest.slice").join(format!("polis-{}.scope", c.id));
    let procs = std::fs::read_to_string(scope.join("cgroup.procs"));
    let deleted = rt.cmd(&["--systemd-cgroup", "delete", "--force", &c.id]);
    deleted.ok();
    let gone = !scope.exists();
    for ctrl in [
        "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids",
    ] {
        let _ = std::fs::remove_dir(
            Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join("polistest.slice"),
        );
    }
    let procs = procs.unwrap_or_else(|e| panic!("no cgroup at {}: {e}", scope.display()));
    assert_eq!(
        procs.lines().count(),
        1,
        "init process in {}: {procs}",
        scope.display()
    );
    assert!(gone, "{} left after delete", scope.display());
}
