//! Cgroup paths, stats and updates, straight over libcgroups.
//!
//! libcgroups 0.7 picks its v1 manager on hybrid and v1 hosts and ignores the systemd flag
//! there, so a systemd-style `cgroupsPath` (`slice:prefix:name`) would become a directory literally
//! named `slice:prefix:name`. polis-runc translates it into the path systemd would have made, as
//! runc does: `system.slice:polis:abc` becomes `/system.slice/polis-abc.scope`.

use std::path::{Path, PathBuf};

use libcgroups::common::{
    AnyCgroupManager, CgroupConfig, CgroupManager, CgroupSetup, ControllerOpt,
    create_cgroup_manager, get_cgroup_setup,
};

use crate::error::{Error, Result};

/// Expands a systemd slice name into its path: `a-b.slice` is `/a.slice/a-b.slice`.
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    let invalid = || Error::Invalid(format!("invalid systemd slice name {slice:?}"));
    if slice == "-.slice" {
        return Ok(PathBuf::from("/"));
    }
    let name = slice.strip_suffix(".slice").ok_or_else(invalid)?;
    if name.is_empty() || name.contains('/') || name.starts_with('-') || name.ends_with('-') {
        return Err(invalid());
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(invalid());
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// The cgroup path for a container, as a cgroupfs path below each hierarchy's root.
///
/// `systemd` is runc's `--systemd-cgroup`. Without a `cgroupsPath`, runc's defaults are used:
/// `/<id>` for cgroupfs, `system.slice:polis:<id>` for systemd.
pub fn resolve_cgroup_path(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> Result<PathBuf> {
    let raw = match cgroups_path {
        Some(p) => p.to_string_lossy().into_owned(),
        None if systemd => format!("system.slice:polis:{id}"),
        None => return Ok(PathBuf::from("/").join(id)),
    };
    if !systemd {
        if raw.contains(':') && !raw.starts_with('/') {
            return Err(Error::Invalid(format!(
                "cgroupsPath {raw:?} is systemd-style: pass --systemd-cgroup to use it"
            )));
        }
        let p = PathBuf::from(&raw);
        return Ok(if p.is_absolute() {
            p
        } else {
            PathBuf::from("/").join(p)
        });
    }
    let parts: Vec<&str> = raw.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else {
        return Err(Error::Invalid(format!(
            "cgroupsPath {raw:?} must be slice:prefix:name with --systemd-cgroup"
        )));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = expand_slice(slice)?;
    let unit = if name.ends_with(".slice") {
        // runc: a name ending in .slice is a slice of its own below the parent.
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// What kind of cgroup host this is.
pub fn host_setup() -> Result<CgroupSetup> {
    get_cgroup_setup().map_err(|e| Error::Invalid(format!("detect cgroup setup: {e}")))
}

/// A cgroupfs manager for the container's cgroup path (never systemd: the path is resolved).
pub fn manager_for(id: &str, cgroup_path: &Path) -> Result<AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: cgroup_path.to_path_buf(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| Error::Cgroup {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// Removes a container's cgroup from every hierarchy it was made in (host side).
///
/// libcgroups' managers find each v1 hierarchy through a hardened walk of /proc (about a dozen
/// reads of mountinfo and /proc/self/cgroup, some 600 system calls): for a container that has
/// stopped, one read of mountinfo and one rmdir per hierarchy do the same. Processes still in
/// the cgroup (forked off and left behind) are killed and the removal retried, as libcgroups does.
/// Hierarchies mounted below their root (inside a cgroup namespace) are left to libcgroups.
pub fn remove_cgroup_on_host(id: &str, cgroup_path: &Path) -> Result<()> {
    let err = |reason: String| Error::Cgroup {
        id: id.to_string(),
        reason,
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| err(format!("read /proc/self/mountinfo: {e}")))?;
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    if relative.as_os_str().is_empty() || relative.components().any(|c| c.as_os_str() == "..") {
        return Err(err(format!(
            "refusing to remove cgroup {}",
            cgroup_path.display()
        )));
    }
    let Some(mount_points) = cgroup_mount_points(&mountinfo) else {
        return manager_for(id, cgroup_path)?
            .remove()
            .map_err(|e| err(e.to_string()));
    };
    for point in mount_points {
        let dir = point.join(relative);
        remove_cgroup_dir(&dir).map_err(|e| err(format!("remove {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The mount points of the cgroup (v1) and cgroup2 hierarchies, or None when one is mounted
/// from below its root.
fn cgroup_mount_points(mountinfo: &str) -> Option<Vec<PathBuf>> {
    let mut points = Vec::new();
    for m in polis_host::mountinfo::parse(mountinfo) {
        if !matches!(m.fstype.as_str(), "cgroup" | "cgroup2") {
            continue;
        }
        if m.root != Path::new("/") {
            return None;
        }
        points.push(m.mount_point);
    }
    Some(points)
}

fn remove_cgroup_dir(dir: &Path) -> std::io::Result<()> {
    let mut delay = std::time::Duration::from_millis(10);
    for attempt in 0..5 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt == 4 => return Err(e),
            Err(_) => {}
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// config-linux.md#memory `disableOOMKiller`, which libcgroups 0.7 is never asked to apply
/// (cgroup v1 `memory.oom_control`; cgroup v2 has no such switch). Touches the host's cgroups.
pub fn apply_disable_oom_killer_on_host(
    id: &str,
    cgroup_path: &Path,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<()> {
    let disable = resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.disable_oom_killer())
        .unwrap_or(false);
    if !disable || matches!(host_setup()?, CgroupSetup::Unified) {
        return Ok(());
    }
    let file = Path::new("/sys/fs/cgroup/memory")
        .join(cgroup_path.strip_prefix("/").unwrap_or(cgroup_path))
        .join("memory.oom_control");
    std::fs::write(&file, "1").map_err(|e| Error::Cgroup {
        id: id.to_string(),
        reason: format!("disable the OOM killer in {}: {e}", file.display()),
    })
}

/// On a cgroup v2 host, makes the parent directories of the container's cgroup. libcgroups 0.7
/// checks that each exists and then creates it, so two containers created at once under a new
/// parent race, and the loser fails with EEXIST ("failed to create dir"); `create_dir_all`
/// accepts a directory that appears meanwhile. Touches the host's cgroups.
pub fn make_parent_cgroups_on_host(cgroup_path: &Path) -> Result<()> {
    if !matches!(host_setup()?, CgroupSetup::Unified) {
        return Ok(());
    }
    let Some(parent) = cgroup_path.parent() else {
        return Ok(());
    };
    let dir = Path::new("/sys/fs/cgroup").join(parent.strip_prefix("/").unwrap_or(parent));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create cgroup", &dir, e))
}

/// On a cgroup v2 host, attaches the container's device rules to its cgroup (device_filter.rs);
/// cgroup v1 hosts get them from `place_v1`. Touches the host's cgroups.
pub fn apply_device_rules_on_host(
    cgroup_path: &Path,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<()> {
    if !matches!(host_setup()?, CgroupSetup::Unified) {
        return Ok(());
    }
    let dir =
        Path::new("/sys/fs/cgroup").join(cgroup_path.strip_prefix("/").unwrap_or(cgroup_path));
    let rules = crate::device_filter::container_rules(resources);
    crate::device_filter::attach_on_host(&dir, &crate::device_filter::program(&rules))
}

/// The v1 controllers a container's cgroup is made in (those libcgroups' v1 manager knows).
const V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// On a cgroup v1 or hybrid host: makes the container's cgroup in each v1 hierarchy, moves `pid`
/// into it and writes the device rules (config-linux.md#allowed-device-list), with one read of
/// mountinfo. libcgroups' v1 manager finds each hierarchy through two hardened reads of /proc per
/// controller; polis-runc asks it only for the resources beyond these (`setup::place_in_cgroup`).
/// Touches the host's cgroups.
pub fn place_v1(
    id: &str,
    cgroup_path: &Path,
    pid: i32,
    device_rules: &[oci_spec::runtime::LinuxDeviceCgroup],
) -> Result<()> {
    let err = |reason: String| Error::Cgroup {
        id: id.to_string(),
        reason,
    };
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    if relative.components().any(|c| c.as_os_str() == "..") {
        return Err(err(format!(
            "invalid cgroup path {}",
            cgroup_path.display()
        )));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| err(format!("read /proc/self/mountinfo: {e}")))?;
    for m in polis_host::mountinfo::parse(&mountinfo) {
        let controllers: Vec<&str> = m
            .super_options
            .iter()
            .map(String::as_str)
            .filter(|o| V1_CONTROLLERS.contains(o))
            .collect();
        if m.fstype != "cgroup" || m.root != Path::new("/") || controllers.is_empty() {
            continue;
        }
        let dir = m.mount_point.join(relative);
        if controllers.contains(&"cpuset") {
            make_cpuset_dirs(&m.mount_point, relative)
                .map_err(|e| err(format!("make {}: {e}", dir.display())))?;
        } else {
            std::fs::create_dir_all(&dir)
                .map_err(|e| err(format!("make {}: {e}", dir.display())))?;
        }
        // The rules go in before the process: it may be making its device nodes meanwhile
        // (init/mod.rs), and between the rules' first line (deny all) and the allows that follow,
        // mknod of an allowed device would fail.
        if controllers.contains(&"devices") {
            write_v1_device_rules(&dir, device_rules).map_err(err)?;
        }
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| err(format!("add process {pid} to {}: {e}", procs.display())))?;
    }
    Ok(())
}

/// A cpuset cgroup takes no task until its cpus and mems are set: each new directory gets its
/// parent's, as the kernel's clone_children would give them.
fn make_cpuset_dirs(root: &Path, relative: &Path) -> std::io::Result<()> {
    let mut dir = root.to_path_buf();
    for part in relative.components() {
        let parent = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = std::fs::read_to_string(dir.join(file))?;
            if own.trim().is_empty() {
                std::fs::write(dir.join(file), std::fs::read_to_string(parent.join(file))?)?;
            }
        }
    }
    Ok(())
}

/// The device rules in order, each to devices.allow or devices.deny (cgroup-v1 devices.rst).
fn write_v1_device_rules(
    dir: &Path,
    rules: &[oci_spec::runtime::LinuxDeviceCgroup],
) -> std::result::Result<(), String> {
    for rule in rules {
        let typ = rule
            .typ()
            .map_or("a".to_string(), |t| t.as_str().to_string());
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        let line = format!(
            "{typ} {}:{} {}",
            num(rule.major()),
            num(rule.minor()),
            rule.access().as_deref().unwrap_or("rwm")
        );
        let file = dir.join(if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        });
        std::fs::write(&file, &line)
            .map_err(|e| format!("write {line:?} to {}: {e}", file.display()))?;
    }
    Ok(())
}

/// runc's `exec`: the new process joins every cgroup the container's init process is in, in each
/// v1 hierarchy and the unified one (a hybrid host's too), read from the init process's
/// /proc/PID/cgroup and one read of mountinfo. Touches the host's cgroups.
pub fn join_cgroups_of(id: &str, init_pid: i32, pid: i32) -> Result<()> {
    let err = |reason: String| Error::Cgroup {
        id: id.to_string(),
        reason,
    };
    let table = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup"))
        .map_err(|e| err(format!("read the cgroups of process {init_pid}: {e}")))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| err(format!("read /proc/self/mountinfo: {e}")))?;
    let mounts: Vec<_> = polis_host::mountinfo::parse(&mountinfo)
        .into_iter()
        .filter(|m| matches!(m.fstype.as_str(), "cgroup" | "cgroup2"))
        .collect();
    for line in table.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mount = if controllers.is_empty() {
            mounts.iter().find(|m| m.fstype == "cgroup2")
        } else {
            mounts.iter().find(|m| {
                m.fstype == "cgroup"
                    && controllers
                        .split(',')
                        .all(|c| m.super_options.iter().any(|o| o == c))
            })
        };
        let Some(mount) = mount else { continue };
        let Ok(below) = Path::new(path).strip_prefix(&mount.root) else {
            continue;
        };
        let procs = mount.mount_point.join(below).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| err(format!("add process {pid} to {}: {e}", procs.display())))?;
    }
    Ok(())
}

pub fn pids(id: &str, cgroup_path: &Path) -> Result<Vec<i32>> {
    let manager = manager_for(id, cgroup_path)?;
    let pids = manager.get_all_pids().map_err(|e| Error::Cgroup {
        id: id.to_string(),
        reason: format!("list processes: {e}"),
    })?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}

pub fn stats(id: &str, cgroup_path: &Path) -> Result<libcgroups::stats::Stats> {
    manager_for(id, cgroup_path)?
        .stats()
        .map_err(|e| Error::Cgroup {
            id: id.to_string(),
            reason: format!("read stats: {e}"),
        })
}

pub fn update_resources(
    id: &str,
    cgroup_path: &Path,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    manager_for(id, cgroup_path)?
        .apply(&ControllerOpt {
            resources,
            disable_oom_killer: resources
                .memory()
                .as_ref()
                .and_then(|m| m.disable_oom_killer())
                .unwrap_or(false),
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| Error::Cgroup {
            id: id.to_string(),
            reason: format!("update resources: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mount_points_from_mountinfo() {
        let info = "\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
32 25 0:27 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
33 32 0:28 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
36 32 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
37 32 0:32 / /sys/fs/cgroup/pids rw shared:15 - cgroup cgroup rw,pids
";
        assert_eq!(
            cgroup_mount_points(info).unwrap(),
            [
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/pids"
            ]
            .map(PathBuf::from)
        );
        let nested = "40 32 0:33 /user.slice /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(cgroup_mount_points(nested).is_none());
    }

    #[test]
    fn slices_expand_like_systemd() {
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::from("/"));
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            PathBuf::from("/system.slice")
        );
        assert_eq!(
            expand_slice("kubepods-besteffort-pod1.slice").unwrap(),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
            )
        );
        assert!(expand_slice("a--b.slice").is_err());
        assert!(expand_slice("nodot").is_err());
    }

    #[test]
    fn systemd_paths_translate_as_runc_does() {
        let p = |s: &str| resolve_cgroup_path(Some(Path::new(s)), "c1", true).unwrap();
        assert_eq!(
            p("system.slice:polis:c1"),
            PathBuf::from("/system.slice/polis-c1.scope")
        );
        assert_eq!(p(":cri:c1"), PathBuf::from("/system.slice/cri-c1.scope"));
        assert_eq!(
            p("kubepods-pod1.slice:cri-containerd:abc"),
            PathBuf::from("/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope")
        );
        assert!(resolve_cgroup_path(Some(Path::new("/a/b")), "c1", true).is_err());
    }

    #[test]
    fn cgroupfs_paths_and_defaults() {
        assert_eq!(
            resolve_cgroup_path(None, "c1", false).unwrap(),
            PathBuf::from("/c1")
        );
        assert_eq!(
            resolve_cgroup_path(None, "c1", true).unwrap(),
            PathBuf::from("/system.slice/polis-c1.scope")
        );
        assert_eq!(
            resolve_cgroup_path(Some(Path::new("/default/c1")), "c1", false).unwrap(),
            PathBuf::from("/default/c1")
        );
        assert!(resolve_cgroup_path(Some(Path::new("a:b:c")), "c1", false).is_err());
    }
}
