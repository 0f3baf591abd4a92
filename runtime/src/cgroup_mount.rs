//! config.md#mounts: a `cgroup` mount on a cgroup v1 or hybrid host, made by polis-runc rather
//! than by libcontainer.
//!
//! libcontainer 0.7 looks the init process's parent up in the host's /proc by the PID it has in
//! its own PID namespace. In a container that joins another container's PID namespace (a
//! Kubernetes pod that shares its process namespace) that number names some other host process or
//! none, and `create` failed now and then with "failed to mount cgroup v1: procfs failed". So
//! polis-runc takes `cgroup` mounts out of libcontainer's config on v1 and hybrid hosts and makes
//! them as runc does, from outside the container once its rootfs is ready (container_mounts.rs):
//! a tmpfs at the destination, in it one bind mount per v1 hierarchy of the container's own
//! cgroup, named as the host names the hierarchy's directory, and a symbolic link for each
//! controller of a co-mounted hierarchy (`cpu` -> `cpu,cpuacct`). Like runc, it leaves out the
//! cgroup2 hierarchy a hybrid host mounts at `unified`. On a cgroup v2 host libcontainer's own
//! cgroup2 mount is kept.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libcgroups::common::CgroupSetup;
use nix::mount::{MsFlags, mount};
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

/// A hierarchy's cgroup, cloned from the host's mount table (open_tree(2) with OPEN_TREE_CLONE)
/// before the child that mounts it enters the container's mount namespace, where the host's
/// paths cannot be reached.
pub struct DetachedBind {
    pub name: String,
    tree: OwnedFd,
}

/// Clones each hierarchy's cgroup directory into a detached mount (host side).
pub fn detach_binds(binds: Vec<HierarchyBind>) -> Result<Vec<DetachedBind>, String> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    binds
        .into_iter()
        .map(|b| {
            let path = CString::new(b.source.as_os_str().as_bytes())
                .map_err(|_| format!("cgroup path {} has a NUL byte", b.source.display()))?;
            // SAFETY: open_tree with a NUL-terminated path; the result is a new descriptor.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
                )
            };
            if fd < 0 {
                return Err(format!(
                    "clone the mount of the container's cgroup {}: {}",
                    b.source.display(),
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: open_tree returned a new descriptor that nothing else owns.
            let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            Ok(DetachedBind { name: b.name, tree })
        })
        .collect()
}

/// Mounts the tmpfs and the hierarchies at `dest`, in the current mount namespace (the
/// container's, entered by a child of polis-runc).
pub fn mount_in_namespace(
    dest: &Path,
    flags: MsFlags,
    binds: &[DetachedBind],
) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dest, Some("tmpfs"), base, Some("mode=755"))
        .map_err(|e| format!("mount a tmpfs on {}: {e}", dest.display()))?;
    for bind in binds {
        let target = dest.join(&bind.name);
        std::fs::create_dir(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
        move_mount(&bind.tree, &target).map_err(|e| {
            format!(
                "mount the {} hierarchy on {}: {e}",
                bind.name,
                target.display()
            )
        })?;
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | base | (flags & MsFlags::MS_RDONLY),
            None::<&str>,
        )
        .map_err(|e| format!("set the flags of {}: {e}", target.display()))?;
        for controller in bind.name.split(',').filter(|c| *c != bind.name) {
            let link = dest.join(controller);
            if let Err(e) = std::os::unix::fs::symlink(&bind.name, &link)
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(format!("link {} to {}: {e}", link.display(), bind.name));
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            dest,
            None::<&str>,
            MsFlags::MS_REMOUNT | base | MsFlags::MS_RDONLY,
            Some("mode=755"),
        )
        .map_err(|e| format!("remount {} read-only: {e}", dest.display()))?;
    }
    Ok(())
}

/// Attaches a detached mount at `target` (move_mount(2)).
fn move_mount(tree: &OwnedFd, target: &Path) -> std::io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let target = CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: move_mount with a descriptor we own and NUL-terminated paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
