//! config.md#mounts: a `cgroup` mount on a cgroup v1 or hybrid host, made as runc makes it: a
//! tmpfs at the destination, in it one bind mount per v1 hierarchy of the container's own cgroup,
//! named as the host names the hierarchy's directory, and a symbolic link for each controller of a
//! co-mounted hierarchy (`cpu` -> `cpu,cpuacct`). Like runc, it leaves out the cgroup2 hierarchy a
//! hybrid host mounts at `unified`. This module finds the hierarchies (host side, from the host's
//! mountinfo and the init process's /proc/PID/cgroup, whose paths are the host's); the init process
//! mounts them (init/rootfs.rs).

use std::path::{Path, PathBuf};

use libcgroups::common::CgroupSetup;
use polis_host::mountinfo::Mount;

/// Where the host mounts its cgroup hierarchies; others (a test's own mount, say) are not shown.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether polis-runc makes `cgroup` mounts itself on this host: on v1 and hybrid hosts.
pub fn made_by_polis_runc() -> bool {
    matches!(
        crate::cgroups::host_setup(),
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid)
    )
}

/// One v1 hierarchy as the container gets it.
#[derive(Debug, PartialEq, Eq)]
pub struct HierarchyBind {
    /// The directory name under the mount's destination: the host's ("cpu,cpuacct", "systemd").
    pub name: String,
    /// The container's cgroup in this hierarchy, as a host path.
    pub source: PathBuf,
}

/// The container's cgroup in each v1 hierarchy the host mounts under /sys/fs/cgroup, from the
/// host's mountinfo and the init process's /proc/PID/cgroup (read from the host, so its paths are
/// the host's).
pub fn hierarchies(mountinfo: &str, proc_cgroup: &str) -> Result<Vec<HierarchyBind>, String> {
    let mounts: Vec<Mount> = polis_host::mountinfo::parse(mountinfo)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" && m.mount_point.parent() == Some(Path::new(CGROUP_ROOT)))
        .collect();
    let mut binds: Vec<HierarchyBind> = Vec::new();
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            continue; // the cgroup2 hierarchy
        }
        let Some(m) = mounts.iter().find(|m| {
            controllers
                .split(',')
                .all(|c| m.super_options.iter().any(|o| o == c))
        }) else {
            continue; // a hierarchy the host does not mount under /sys/fs/cgroup
        };
        let Ok(below_root) = Path::new(path).strip_prefix(&m.root) else {
            return Err(format!(
                "the container's cgroup {path} in the {controllers} hierarchy lies outside its \
                 mount at {}",
                m.mount_point.display()
            ));
        };
        let name = m
            .mount_point
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if binds.iter().all(|b| b.name != name) {
            binds.push(HierarchyBind {
                name,
                source: m.mount_point.join(below_root),
            });
        }
    }
    Ok(binds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
        40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
        50 27 0:39 / /tmp/test\\040cg rw - cgroup cgroup rw,pids\n";

    #[test]
    fn finds_the_containers_cgroup_in_each_v1_hierarchy() {
        let proc_cgroup = "12:name=systemd:/c1\n4:memory:/pod/c1\n2:cpu,cpuacct:/pod/c1\n\
                           1:pids:/pod/c1\n0::/c1\n";
        let binds = hierarchies(HYBRID, proc_cgroup).unwrap();
        assert_eq!(
            binds,
            vec![
                HierarchyBind {
                    name: "systemd".into(),
                    source: "/sys/fs/cgroup/systemd/c1".into()
                },
                HierarchyBind {
                    name: "memory".into(),
                    source: "/sys/fs/cgroup/memory/pod/c1".into()
                },
                HierarchyBind {
                    name: "cpu,cpuacct".into(),
                    source: "/sys/fs/cgroup/cpu,cpuacct/pod/c1".into()
                },
            ]
        );
    }

    #[test]
    fn a_cgroup_outside_the_mounted_root_is_an_error() {
        let info = "32 31 0:29 /pod /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let err = hierarchies(info, "4:memory:/other/c1\n").unwrap_err();
        assert!(err.contains("/other/c1"), "{err}");
        let ok = hierarchies(info, "4:memory:/pod/c1\n").unwrap();
        assert_eq!(ok[0].source, PathBuf::from("/sys/fs/cgroup/memory/c1"));
    }
}
