//! runtime-spec config-linux.md#control-groups: resources written to the container's cgroup files (v1 files on
//! legacy and hybrid hosts, v2 files on unified ones).

use polis_integration::cgroup::{Mode, mode, read};
use polis_integration::*;

/// Creates a sleeping container with `resources` and returns it running.
fn running_with<'a>(rt: &'a Runtime, b: &mut Bundle, resources: Value) -> Container<'a> {
    for (k, v) in resources.as_object().unwrap() {
        b.set(&format!("/linux/resources/{k}"), v.clone());
    }
    b.probe(&["sleep", "60"]);
    let c = rt.container();
    c.create_running(b);
    c
}

conformance_test!(
    /// config-linux.md#memory: "limit (int64, OPTIONAL) - sets limit of memory usage in bytes"
    memory_limit,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"memory": {"limit": 67108864}}));
        assert_eq!(read("memory", &c.cgroups_path(), "memory.limit_in_bytes", "memory.max"), "67108864");
    }
);

conformance_test!(
    /// config-linux.md#memory: "reservation (int64, OPTIONAL) - sets soft limit of memory usage in bytes"
    memory_reservation,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"memory": {"limit": 134217728, "reservation": 33554432}}));
        assert_eq!(read("memory", &c.cgroups_path(), "memory.soft_limit_in_bytes", "memory.low"), "33554432");
    }
);

conformance_test!(
    /// config-linux.md#memory: "swap (int64, OPTIONAL) - sets limit of memory+Swap usage" (v1 memsw; v2
    /// memory.swap.max holds swap minus limit).
    memory_swap,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"memory": {"limit": 67108864, "swap": 134217728}}));
        let got = read("memory", &c.cgroups_path(), "memory.memsw.limit_in_bytes", "memory.swap.max");
        let want = if mode() == Mode::Unified { "67108864" } else { "134217728" };
        assert_eq!(got, want);
    }
);

conformance_test!(
    /// config-linux.md#memory: "swappiness (uint64, OPTIONAL) - sets swappiness parameter of vmscan" (cgroup v1).
    memory_swappiness,
    |rt| {
        if mode() == Mode::Unified {
            eprintln!("notice: memory.swappiness is a cgroup v1 setting; host is cgroup v2");
            return;
        }
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"memory": {"limit": 67108864, "swappiness": 17}}));
        assert_eq!(read("memory", &c.cgroups_path(), "memory.swappiness", ""), "17");
    }
);

conformance_test!(
    /// config-linux.md#memory: the memory limit is enforced: a process allocating past it is OOM-killed
    /// (exit by SIGKILL, 137 from `run`), while the host survives.
    memory_limit_enforced,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/resources/memory", json!({"limit": 16777216, "swap": 16777216}));
        // A shell variable that doubles until it needs far more than 16 MiB.
        b.sh("x=0123456789abcdef; while true; do x=$x$x; done");
        let c = rt.container();
        let out = c.run(&b);
        assert_eq!(out.code, Some(137), "{out}");
    }
);

conformance_test!(
    /// config-linux.md#cpu: "shares (uint64, OPTIONAL) - specifies a relative share of CPU time available to the
    /// tasks in a cgroup"
    cpu_shares,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"cpu": {"shares": 512}}));
        let got = read("cpu", &c.cgroups_path(), "cpu.shares", "cpu.weight");
        // v2: runc/crun convert shares to weight as 1 + ((shares - 2) * 9999) / 262142.
        let want = if mode() == Mode::Unified { (1 + ((512 - 2) * 9999) / 262142).to_string() } else { "512".into() };
        assert_eq!(got, want);
    }
);

conformance_test!(
    /// config-linux.md#cpu: "quota (int64, OPTIONAL) - specifies the total amount of time in microseconds for which
    /// all tasks in a cgroup can run during one period" and "period (uint64, OPTIONAL) - specifies a period of time
    /// in microseconds for how regularly a cgroup's access to CPU resources should be reallocated"
    cpu_quota_period,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"cpu": {"quota": 50000, "period": 200000}}));
        if mode() == Mode::Unified {
            assert_eq!(read("cpu", &c.cgroups_path(), "", "cpu.max"), "50000 200000");
        } else {
            assert_eq!(read("cpu", &c.cgroups_path(), "cpu.cfs_quota_us", ""), "50000");
            assert_eq!(read("cpu", &c.cgroups_path(), "cpu.cfs_period_us", ""), "200000");
        }
    }
);

conformance_test!(
    /// config-linux.md#cpu: "cpus (string, OPTIONAL) - list of CPUs the container will run on"
    cpuset_cpus,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"cpu": {"cpus": "0"}}));
        assert_eq!(read("cpuset", &c.cgroups_path(), "cpuset.cpus", "cpuset.cpus"), "0");
        let allowed = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
        let line = allowed.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
);

conformance_test!(
    /// config-linux.md#cpu: "mems (string, OPTIONAL) - list of Memory Nodes the container will run on"
    cpuset_mems,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"cpu": {"mems": "0"}}));
        assert_eq!(read("cpuset", &c.cgroups_path(), "cpuset.mems", "cpuset.mems"), "0");
    }
);

conformance_test!(
    /// config-linux.md#pids: "limit (int64, REQUIRED) - specifies the maximum number of tasks in the cgroup"
    pids_limit,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"pids": {"limit": 32}}));
        assert_eq!(read("pids", &c.cgroups_path(), "pids.max", "pids.max"), "32");
    }
);

conformance_test!(
    /// config-linux.md#pids: the pids limit is enforced: forks past it fail.
    pids_limit_enforced,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/resources/pids", json!({"limit": 4}));
        b.sh("i=0; while [ $i -lt 8 ]; do sleep 5 & i=$((i+1)); done; echo spawned");
        let c = rt.container();
        let out = c.run(&b);
        assert!(out.stderr.contains("fork"), "no fork failure with pids.max=4: {out}");
    }
);

conformance_test!(
    /// config-linux.md#block-io: "weight (uint16, OPTIONAL) - specifies per-cgroup weight" (blkio.weight, or
    /// blkio.bfq.weight where the kernel has only BFQ's file; io.bfq.weight or io.weight on v2).
    blkio_weight,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"blockIO": {"weight": 300}}));
        let dir = if mode() == Mode::Unified {
            std::path::Path::new("/sys/fs/cgroup").join(c.cgroups_path().trim_start_matches('/'))
        } else {
            std::path::Path::new("/sys/fs/cgroup/blkio").join(c.cgroups_path().trim_start_matches('/'))
        };
        let candidates = ["blkio.weight", "blkio.bfq.weight", "io.bfq.weight", "io.weight"];
        let file = candidates.iter().map(|f| dir.join(f)).find(|p| p.exists());
        let Some(file) = file else {
            return missing_peer::<()>("a blkio weight file in the kernel").unwrap_or_default();
        };
        let content = std::fs::read_to_string(&file).unwrap();
        assert!(content.split_whitespace().any(|w| w == "300"), "{}: {content}", file.display());
    }
);

conformance_test!(
    /// config-linux.md#cgroups-path: "cgroupsPath (string, OPTIONAL) path to the cgroups." An explicit absolute path
    /// is used as given in every hierarchy.
    cgroups_path_explicit,
    |rt| {
        let mut b = Bundle::new();
        let c = rt.container();
        let path = format!("/{CGROUP_PARENT}/explicit-{}", c.id);
        b.set("/linux/cgroupsPath", json!(path));
        b.probe(&["sleep", "60"]);
        c.create_running(&b);
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
        let in_path = cg.lines().filter(|l| l.ends_with(&format!(":{path}"))).count();
        assert!(in_path >= 1, "process not in {path}:\n{cg}");
        assert!(cgroup::existing_dirs(&path).iter().any(|d| d.join("cgroup.procs").exists()));
        c.kill("KILL").ok();
        c.wait_stopped();
        c.delete().ok();
        assert!(cgroup::existing_dirs(&path).is_empty(), "cgroup {path} left after delete");
    }
);

conformance_test!(
    /// runc contract (containerd `Update`): `update --memory` changes the running container's memory limit.
    update_memory_limit,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"memory": {"limit": 67108864}}));
        rt.cmd(&["update", "--memory", "100663296", &c.id]).ok();
        assert_eq!(read("memory", &c.cgroups_path(), "memory.limit_in_bytes", "memory.max"), "100663296");
    }
);

conformance_test!(
    /// runc contract (containerd `Update`): `update --pids-limit` changes pids.max.
    update_pids_limit,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"pids": {"limit": 32}}));
        rt.cmd(&["update", "--pids-limit", "64", &c.id]).ok();
        assert_eq!(read("pids", &c.cgroups_path(), "pids.max", "pids.max"), "64");
    }
);

conformance_test!(
    /// runc contract (containerd `Pause`/`Resume`): `pause` freezes the cgroup and the state says `paused`;
    /// `resume` thaws it back to `running`.
    pause_resume,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({}));
        rt.cmd(&["pause", &c.id]).ok();
        assert_eq!(c.status(), "paused");
        let frozen = read("freezer", &c.cgroups_path(), "freezer.state", "cgroup.freeze");
        assert!(frozen == "FROZEN" || frozen == "1", "freezer: {frozen}");
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.pid())).unwrap();
        let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next().unwrap().to_string();
        assert!(state == "D" || state == "S" || state == "T", "paused process state {state}");
        rt.cmd(&["resume", &c.id]).ok();
        assert_eq!(c.status(), "running");
        let thawed = read("freezer", &c.cgroups_path(), "freezer.state", "cgroup.freeze");
        assert!(thawed == "THAWED" || thawed == "0", "freezer: {thawed}");
    }
);

conformance_test!(
    /// config-linux.md#memory: "disableOOMKiller (bool, OPTIONAL) - disables the OOM killer for out of memory
    /// conditions" (cgroup v1 memory.oom_control).
    memory_disable_oom_killer,
    |rt| {
        if mode() == Mode::Unified {
            eprintln!("notice: disableOOMKiller is a cgroup v1 setting; host is cgroup v2");
            return;
        }
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"memory": {"limit": 67108864, "disableOOMKiller": true}}));
        let ctl = read("memory", &c.cgroups_path(), "memory.oom_control", "");
        assert!(ctl.lines().any(|l| l == "oom_kill_disable 1"), "{ctl}");
    }
);

conformance_test!(
    /// config-linux.md#pids: a limit of -1 (or 0) means unlimited: pids.max is "max".
    pids_limit_unlimited,
    |rt| {
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"pids": {"limit": -1}}));
        assert_eq!(read("pids", &c.cgroups_path(), "pids.max", "pids.max"), "max");
    }
);

conformance_test!(
    /// config-linux.md#block-io: "throttleReadBpsDevice, throttleWriteBpsDevice (array of objects, OPTIONAL) -
    /// specify the list of devices which will be bandwidth rate limited": major, minor and rate reach the cgroup.
    blkio_throttle_bps,
    |rt| {
        let dev = std::fs::read_dir("/sys/block")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
            .map(|d| d.trim().to_string())
            .find(|d| !d.starts_with("7:") && !d.starts_with("1:"));
        let Some(dev) = dev else {
            return missing_peer::<()>("a block device in /sys/block").unwrap_or_default();
        };
        let (major, minor) = dev.split_once(':').unwrap();
        let (major, minor): (u64, u64) = (major.parse().unwrap(), minor.parse().unwrap());
        let mut b = Bundle::new();
        let c = running_with(
            rt,
            &mut b,
            json!({"blockIO": {
                "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": 2097152}]
            }}),
        );
        if mode() == Mode::Unified {
            let io = read("io", &c.cgroups_path(), "", "io.max");
            assert!(io.contains(&format!("{major}:{minor} rbps=1048576 wbps=2097152")), "{io}");
        } else {
            let r = read("blkio", &c.cgroups_path(), "blkio.throttle.read_bps_device", "");
            let w = read("blkio", &c.cgroups_path(), "blkio.throttle.write_bps_device", "");
            assert_eq!(r, format!("{major}:{minor} 1048576"));
            assert_eq!(w, format!("{major}:{minor} 2097152"));
        }
    }
);

conformance_test!(
    /// config.md#mounts with config-linux.md#control-groups: with the default `cgroup` mount (`ro`), the
    /// container's root cannot raise its own memory limit by writing its cgroup files; the host keeps the limit.
    limits_not_writable_from_container,
    |rt| {
        if mode() == Mode::Unified {
            eprintln!("notice: this test writes the cgroup v1 memory controller; host is cgroup v2");
            return;
        }
        let mut b = Bundle::new();
        b.set("/linux/resources/memory", json!({"limit": 67108864}));
        b.probe(&["write", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "134217728"]);
        let c = rt.container();
        b.write_config(Some(&c.cgroups_path()));
        c.create(&b).ok();
        c.start().ok();
        c.wait_stopped();
        let v = c.wait_output_json();
        assert_ne!(v["errno"], 0, "the container rewrote its memory limit: {v}");
        assert_eq!(read("memory", &c.cgroups_path(), "memory.limit_in_bytes", "memory.max"), "67108864");
    }
);

conformance_test!(
    /// runc contract (go-runc `Update`, used by containerd's shim): `update --resources -` reads LinuxResources
    /// JSON from stdin and applies it.
    update_resources_from_stdin,
    |rt| {
        use std::io::Write as _;
        let mut b = Bundle::new();
        let c = running_with(rt, &mut b, json!({"memory": {"limit": 67108864}, "pids": {"limit": 32}}));
        let mut child = rt
            .command(&["update", "--resources", "-", &c.id])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let resources = json!({"memory": {"limit": 134217728}, "pids": {"limit": 48}, "cpu": {"quota": 20000, "period": 100000}});
        child.stdin.take().unwrap().write_all(resources.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "update failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(read("memory", &c.cgroups_path(), "memory.limit_in_bytes", "memory.max"), "134217728");
        assert_eq!(read("pids", &c.cgroups_path(), "pids.max", "pids.max"), "48");
        if mode() == Mode::Unified {
            assert_eq!(read("cpu", &c.cgroups_path(), "", "cpu.max"), "20000 100000");
        } else {
            assert_eq!(read("cpu", &c.cgroups_path(), "cpu.cfs_quota_us", ""), "20000");
        }
    }
);
