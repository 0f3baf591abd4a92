//! config-linux.md#control-groups on a cgroup v2 host. This machine is hybrid: the tests run the runtimes in a
//! mount namespace where /sys/fs/cgroup is the cgroup2 hierarchy (`Runtime::use_cgroup2_view`), so their cgroup v2
//! code paths run for real, without resource controllers (those are bound to v1 here). The device cgroup on v2 is
//! checked in devices.rs.

use polis_integration::*;

/// A running `sleep` container of `rt` seen as on a cgroup v2 host; None on a host without cgroup2.
fn running_in_cgroup2_view(rt: &Runtime) -> Option<Container<'_>> {
    if !rt.use_cgroup2_view() {
        return None;
    }
    let mut b = Bundle::new();
    b.probe(&["sleep", "60"]);
    let c = rt.container();
    c.create_running(&b);
    Some(c)
}

conformance_test!(
    /// config-linux.md#cgroups-path: on cgroup v2 the container's processes are in the cgroup2 directory named by
    /// `cgroupsPath`; runtime.md#delete: delete removes it.
    v2_cgroup_holds_the_container,
    |rt| {
        let Some(c) = running_in_cgroup2_view(rt) else {
            return;
        };
        let dir = cgroup::v2_dir(&c.cgroups_path());
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pid = c.pid();
        c.delete_force().ok();
        assert!(procs.lines().any(|l| l.trim() == pid.to_string()), "pid {pid} not in {}: {procs:?}", dir.display());
        assert!(!dir.exists(), "{} left after delete", dir.display());
    }
);

conformance_test!(
    /// runc's `pause` and `resume` on cgroup v2 freeze and thaw the container's cgroup (cgroup.freeze).
    v2_pause_and_resume_freeze_the_cgroup,
    |rt| {
        let Some(c) = running_in_cgroup2_view(rt) else {
            return;
        };
        let freeze = cgroup::v2_dir(&c.cgroups_path()).join("cgroup.freeze");
        rt.cmd(&["pause", &c.id]).ok();
        let (paused, frozen) = (c.status(), std::fs::read_to_string(&freeze).unwrap_or_default());
        rt.cmd(&["resume", &c.id]).ok();
        let (resumed, thawed) = (c.status(), std::fs::read_to_string(&freeze).unwrap_or_default());
        assert_eq!((paused.as_str(), frozen.trim()), ("paused", "1"));
        assert_eq!((resumed.as_str(), thawed.trim()), ("running", "0"));
    }
);
