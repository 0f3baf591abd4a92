//! Mount settings libcontainer 0.7 leaves out, applied by `create` once the container's rootfs
//! is ready and before its program runs, from a child process that joins the container's mount
//! namespace (no capability is lent to the container for this). In runc's order:
//! - config.md#mounts: `cgroup` mounts on v1 and hybrid hosts (cgroup_mount.rs);
//! - config.md#mounts: propagation options (`shared`, `rslave`, `private`, ...) of bind mounts;
//! - config.md#mounts: a `cgroup` mount with the `ro` option is read-only, and so is every
//!   controller mounted below it (libcontainer mounts cgroup v1 controllers writable);
//! - config-linux.md#rootfs-mount-propagation: `linux.rootfsPropagation` as runc applies it once
//!   the container's root is `/`: the root mount made shared, slave or unbindable, recursively
//!   for the r-forms (`private` and `rprivate` are already in place). libcontainer 0.7 knows only
//!   the plain words, so it is handed the plain word (`rshared` -> `shared`), whose first step
//!   (the container's copy of the host's mounts made shared, slave or private, recursively) is
//!   the one runc takes for the recursive forms.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Spec;

use crate::cgroup_mount::DetachedBind;

/// What polis-runc fixes in the container's mounts after libcontainer made them.
#[derive(Debug, Clone, Default)]
pub struct MountFixups {
    /// `cgroup` mounts polis-runc makes itself (destination and flags), on v1 and hybrid hosts.
    pub cgroup_v1: Vec<(PathBuf, MsFlags)>,
    /// Destinations of read-only cgroup mounts that libcontainer made.
    pub read_only_cgroups: Vec<PathBuf>,
    /// Bind mounts with their propagation flags.
    pub propagation: Vec<(PathBuf, MsFlags)>,
    /// What runc applies to the container's `/` for `linux.rootfsPropagation`.
    pub root_propagation: Option<MsFlags>,
}

/// A propagation word of runc's (config.md#mounts options, `linux.rootfsPropagation`) as mount
/// flags.
pub fn propagation_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// The `linux.rootfsPropagation` word libcontainer 0.7 is given for one of runc's: the plain
/// form of a recursive one.
pub fn libcontainer_rootfs_propagation(value: &str) -> &str {
    value.strip_prefix('r').unwrap_or(value)
}

/// Whether a mount is a `cgroup` mount that polis-runc makes itself (see cgroup_mount.rs).
pub fn is_cgroup_mount_made_here(m: &oci_spec::runtime::Mount, cgroup_v1_host: bool) -> bool {
    cgroup_v1_host && m.typ().as_deref() == Some("cgroup")
}

/// Whether another mount goes below a `cgroup` mount's destination: then libcontainer makes the
/// `cgroup` mount, in its place among the others.
pub fn mounts_below_a_cgroup_mount(spec: &Spec) -> bool {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("cgroup"))
        .any(|cg| {
            mounts.iter().any(|m| {
                m.destination() != cg.destination() && m.destination().starts_with(cg.destination())
            })
        })
}

fn mount_flags(options: &[&str]) -> MsFlags {
    let mut flags = MsFlags::empty();
    for o in options {
        flags |= match *o {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            _ => MsFlags::empty(),
        };
    }
    flags
}

impl MountFixups {
    /// The fixups a config needs; `cgroup_v1_host` says whether polis-runc makes `cgroup` mounts
    /// itself (`cgroup_mount::made_by_polis_runc`).
    pub fn from_spec(spec: &Spec, cgroup_v1_host: bool) -> Self {
        let mut fixups = MountFixups::default();
        for m in spec.mounts().iter().flatten() {
            let options: Vec<&str> = m.options().iter().flatten().map(String::as_str).collect();
            let typ = m.typ().as_deref().unwrap_or_default();
            if is_cgroup_mount_made_here(m, cgroup_v1_host) {
                fixups
                    .cgroup_v1
                    .push((m.destination().clone(), mount_flags(&options)));
            } else if typ == "cgroup" && options.contains(&"ro") {
                fixups.read_only_cgroups.push(m.destination().clone());
            }
            let is_bind = typ == "bind" || options.iter().any(|o| *o == "bind" || *o == "rbind");
            if is_bind {
                for flag in options.iter().filter_map(|o| propagation_flag(o)) {
                    fixups.propagation.push((m.destination().clone(), flag));
                }
            }
        }
        // runc: "MS_PRIVATE is skipped as rootfsParentMountPrivate() is already called".
        fixups.root_propagation = spec
            .linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().as_deref())
            .and_then(propagation_flag)
            .filter(|f| !f.contains(MsFlags::MS_PRIVATE));
        fixups
    }

    pub fn is_empty(&self) -> bool {
        self.cgroup_v1.is_empty()
            && self.read_only_cgroups.is_empty()
            && self.propagation.is_empty()
            && self.root_propagation.is_none()
    }

    /// Applies the fixups to the mount namespace of process `pid` (the container's init).
    pub fn apply_to_container(&self, pid: i32) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        // Read through the host's /proc: inside, /proc belongs to the container's PID namespace.
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .map_err(|e| format!("read mountinfo of {pid}: {e}"))?;
        let cgroup_binds = if self.cgroup_v1.is_empty() {
            Vec::new()
        } else {
            let host = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
            let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map_err(|e| format!("read the cgroups of {pid}: {e}"))?;
            crate::cgroup_mount::detach_binds(crate::cgroup_mount::hierarchies(&host, &own)?)?
        };
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
            .map_err(|e| format!("open mount namespace of {pid}: {e}"))?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("make a pipe: {e}"))?;
        // SAFETY: the only other thread, the cgroup migration primer (cgroups.rs), holds no lock
        // (it makes nothing but system calls); the child only makes syscalls and exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
            nix::unistd::ForkResult::Child => {
                drop(read);
                let ok = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| format!("join mount namespace: {e}"))
                    .and_then(|()| self.apply_in_namespace(&mountinfo, &cgroup_binds));
                if let Err(e) = &ok {
                    let _ = nix::unistd::write(&write, e.as_bytes());
                }
                // SAFETY: leaving the forked child without running the parent's destructors.
                unsafe { libc::_exit(i32::from(ok.is_err())) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(write);
                let mut reason = String::new();
                let _ = std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut reason);
                match nix::sys::wait::waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                    _ if !reason.is_empty() => Err(reason),
                    other => Err(format!("applying mount settings failed: {other:?}")),
                }
            }
        }
    }

    /// Applies the fixups in the current mount namespace, given its mountinfo from before.
    fn apply_in_namespace(
        &self,
        mountinfo: &str,
        cgroup_binds: &[DetachedBind],
    ) -> Result<(), String> {
        for (dest, flags) in &self.cgroup_v1 {
            crate::cgroup_mount::mount_in_namespace(dest, *flags, cgroup_binds)
                .map_err(|e| format!("cgroup mount on {}: {e}", dest.display()))?;
        }
        for (dest, flag) in &self.propagation {
            mount(None::<&str>, dest, None::<&str>, *flag, None::<&str>)
                .map_err(|e| format!("set propagation of {}: {e}", dest.display()))?;
        }
        for dest in &self.read_only_cgroups {
            for (point, flags) in mounts_at_or_below(mountinfo, dest) {
                if flags.contains(MsFlags::MS_RDONLY) {
                    continue;
                }
                mount(
                    None::<&str>,
                    point.as_path(),
                    None::<&str>,
                    flags | MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| format!("remount {} read-only: {e}", point.display()))?;
            }
        }
        if let Some(flags) = self.root_propagation {
            mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(|e| {
                format!("apply linux.rootfsPropagation ({flags:?}) to the container's root: {e}")
            })?;
        }
        Ok(())
    }
}

/// Mount points at or below `dest`, with their per-mount flags, from mountinfo text.
fn mounts_at_or_below(mountinfo: &str, dest: &Path) -> Vec<(PathBuf, MsFlags)> {
    let mounts = polis_host::mountinfo::parse(mountinfo);
    polis_host::mountinfo::at_or_below(&mounts, dest)
        .map(|m| {
            let flags = m
                .options
                .iter()
                .map(|o| match o.as_str() {
                    "ro" => MsFlags::MS_RDONLY,
                    "nosuid" => MsFlags::MS_NOSUID,
                    "nodev" => MsFlags::MS_NODEV,
                    "noexec" => MsFlags::MS_NOEXEC,
                    "noatime" => MsFlags::MS_NOATIME,
                    "nodiratime" => MsFlags::MS_NODIRATIME,
                    "relatime" => MsFlags::MS_RELATIME,
                    "strictatime" => MsFlags::MS_STRICTATIME,
                    _ => MsFlags::empty(),
                })
                .fold(MsFlags::empty(), |a, b| a | b);
            (m.mount_point.clone(), flags)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup_controllers_below_the_mount() {
        let info = "30 29 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs rw\n\
                    31 30 0:27 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu\n\
                    32 29 0:28 / /proc rw - proc proc rw\n";
        let found = mounts_at_or_below(info, Path::new("/sys/fs/cgroup"));
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].0, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert!(
            found[1]
                .1
                .contains(MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME)
        );
    }

    #[test]
    fn propagation_options_become_flags() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "mounts": [
                {"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "rshared"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
            ]
        }))
        .unwrap();
        let f = MountFixups::from_spec(&spec, false);
        assert_eq!(
            f.propagation,
            vec![(PathBuf::from("/mnt"), MsFlags::MS_SHARED | MsFlags::MS_REC)]
        );
        assert_eq!(f.read_only_cgroups, vec![PathBuf::from("/sys/fs/cgroup")]);
    }
}
