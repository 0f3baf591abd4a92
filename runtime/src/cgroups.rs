//! Cgroup paths, stats and updates, straight over libcgroups.
//!
//! libcgroups 0.7 picks its v1 manager on hybrid and v1 hosts and ignores the systemd flag
//! there, so a systemd-style `cgroupsPath` (`slice:prefix:name`) would become a directory literally
//! named `slice:prefix:name`. polis-runc translates it into the path systemd would have made, as
//! runc does: `system.slice:polis:abc` becomes `/system.slice/polis-abc.scope`.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use libcgroups::common::{
    AnyCgroupManager, CgroupConfig, CgroupManager, CgroupSetup, ControllerOpt,
    create_cgroup_manager, get_cgroup_setup,
};

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

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
/// cgroup v1 hosts have them from libcgroups. Touches the host's cgroups.
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
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| err(format!("add process {pid} to {}: {e}", procs.display())))?;
        if controllers.contains(&"devices") {
            write_v1_device_rules(&dir, device_rules).map_err(err)?;
        }
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

/// Keeps the kernel's cgroup migration lock ready while a container is being set up, so that
/// joining the container's cgroups does not wait for an RCU grace period.
///
/// Every write to a `cgroup.procs` file takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, and the first writer after a quiet spell waits for a full RCU grace period (measured in
/// docs/BENCHMARKS.md, "What changed between the 20:28 and 22:05 runs"). Writers that come
/// within a grace period of the last one do not wait. A background thread therefore moves itself
/// into the cgroup it is already in (a no-op) every 2 ms: the first wait overlaps with reading the
/// bundle and setting up the container, and libcontainer's own migration finds the lock ready.
/// It stops when the guard is dropped, right before the container's process is cloned
/// (`stop_migration_primer`), or after a second at most. Best effort: errors end it quietly, since
/// the migration that matters happens anyway.
///
/// The thread is a bare pthread that only makes system calls (no allocation, no Rust runtime) and
/// takes no signals, and it is joined before polis-runc clones: a thread that is exiting holds
/// glibc's locks, which a child cloned at that moment would wait on for ever.
pub struct MigrationLockPrimer(());

static PRIMER_STOP: AtomicBool = AtomicBool::new(false);
/// The primer's pthread_t while it may run (0: none).
static PRIMER_THREAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Stops the primer thread and waits until it is gone.
pub fn stop_migration_primer() {
    PRIMER_STOP.store(true, Ordering::Relaxed);
    let thread = PRIMER_THREAD.swap(0, Ordering::AcqRel);
    if thread != 0 {
        // SAFETY: a joinable thread this process created and nobody joined yet (the swap above
        // hands its handle to one caller only).
        unsafe { libc::pthread_join(thread as libc::pthread_t, std::ptr::null_mut()) };
    }
}

impl MigrationLockPrimer {
    pub fn start() -> Self {
        let Some(procs) = own_cgroup_procs_file()
            .and_then(|p| CString::new(p.into_os_string().into_encoded_bytes()).ok())
        else {
            return Self(());
        };
        // Handed to the thread for the life of the process; freeing it there would allocate.
        let procs: &'static CStr = Box::leak(procs.into_boxed_c_str());
        PRIMER_STOP.store(false, Ordering::Relaxed);
        let all = SigSet::all();
        let mut old_mask = SigSet::empty();
        let masked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&all), Some(&mut old_mask));
        // SAFETY: the attribute object is initialised before use and destroyed after; the thread
        // gets a 'static C string and runs `prime_migration_lock`, which only makes system calls.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_attr_init(&mut attr) == 0 {
                libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
                let mut thread: libc::pthread_t = std::mem::zeroed();
                if libc::pthread_create(
                    &mut thread,
                    &attr,
                    prime_migration_lock,
                    procs.as_ptr() as *mut libc::c_void,
                ) == 0
                {
                    PRIMER_THREAD.store(thread as u64, Ordering::Release);
                }
                libc::pthread_attr_destroy(&mut attr);
            }
        }
        if masked.is_ok() {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
        }
        Self(())
    }
}

impl Drop for MigrationLockPrimer {
    fn drop(&mut self) {
        stop_migration_primer();
    }
}

extern "C" fn prime_migration_lock(procs: *mut libc::c_void) -> *mut libc::c_void {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 2_000_000,
    };
    for _ in 0..500 {
        if PRIMER_STOP.load(Ordering::Relaxed) {
            break;
        }
        // SAFETY: `procs` is the NUL-terminated 'static path `start` passed in; the buffer
        // written is a static byte.
        let written = unsafe {
            let fd = libc::open(
                procs as *const libc::c_char,
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                break;
            }
            // "0" is the writing task itself (cgroup-v1.rst and cgroup-v2.rst, cgroup.procs).
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            n
        };
        if written != 1 {
            break;
        }
        // SAFETY: nanosleep reads a timespec that outlives the call.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    std::ptr::null_mut()
}

/// The `cgroup.procs` file of this process's own cgroup in the unified hierarchy (pure v2, or
/// hybrid's controller-less cgroup2) or else in the v1 `pids` hierarchy.
fn own_cgroup_procs_file() -> Option<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let unified = table.lines().find_map(|l| l.strip_prefix("0::"));
    let (root, own) = match get_cgroup_setup().ok()? {
        CgroupSetup::Unified => (Path::new("/sys/fs/cgroup"), unified?),
        CgroupSetup::Hybrid => (Path::new("/sys/fs/cgroup/unified"), unified?),
        CgroupSetup::Legacy => (
            Path::new("/sys/fs/cgroup/pids"),
            table.lines().find_map(|l| {
                let (_, rest) = l.split_once(':')?;
                rest.strip_prefix("pids:")
            })?,
        ),
    };
    Some(root.join(own.trim_start_matches('/')).join("cgroup.procs"))
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
