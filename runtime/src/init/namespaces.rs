//! config-linux.md#namespaces: which namespaces the container's process gets new, which it joins by
//! path, and in what order, decided in polis-runc before anything is cloned.
//!
//! The common case is one clone(2): the new user and PID namespaces (and, when no user namespace is
//! joined, the other new ones) come with the process. A PID namespace given by path is entered by
//! the parent around the clone (setns to it, clone, setns back), so the child starts in it without a
//! second fork. New cgroup and time namespaces are unshared by the child once the parent has moved
//! it into its cgroup (the cgroup namespace's root is the cgroup the process is in when it
//! unshares). Joining a user namespace while making a new PID namespace needs a second fork: the
//! child joins, unshares and forks the process that becomes the container's init (mod.rs,
//! `fork_init`).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::{CloneFlags, setns, unshare};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The namespaces of one process to start.
#[derive(Debug)]
pub struct NamespacePlan {
    /// Flags for the clone that starts the process.
    pub clone_flags: CloneFlags,
    /// Namespaces the child unshares after joining `joins`.
    pub unshare_flags: CloneFlags,
    /// Namespaces to join by descriptor, user first.
    pub joins: Vec<(CloneFlags, OwnedFd)>,
    /// A PID namespace the parent enters around the clone.
    pub pid_join: Option<OwnedFd>,
    /// Whether the child must fork once more after unsharing a PID namespace.
    pub extra_fork: bool,
    /// Whether the process gets a new user namespace (the parent writes its id mappings).
    pub new_user: bool,
    /// Whether the process gets a new mount namespace (so its rootfs is set up).
    pub new_mount: bool,
    /// Whether the process has a mount namespace of its own at all (new or joined).
    pub own_mount: bool,
    pub new_cgroup: bool,
}

impl Default for NamespacePlan {
    fn default() -> Self {
        NamespacePlan {
            clone_flags: CloneFlags::empty(),
            unshare_flags: CloneFlags::empty(),
            joins: Vec::new(),
            pid_join: None,
            extra_fork: false,
            new_user: false,
            new_mount: false,
            own_mount: false,
            new_cgroup: false,
        }
    }
}

pub fn flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of a namespace under /proc/PID/ns.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// Joining order: the user namespace first (it owns the others), the mount namespace last but one
/// and cgroup last, as runc orders them.
const ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Cgroup,
];

fn open_ns(path: &std::path::Path, typ: LinuxNamespaceType) -> Result<OwnedFd, String> {
    let file = File::open(path)
        .map_err(|e| format!("{} namespace path {}: {e}", proc_name(typ), path.display()))?;
    Ok(file.into())
}

/// config-linux.md#namespaces: the namespaces the config lists.
fn listed(spec: &Spec) -> Vec<oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
}

/// The plan for a container's init process (config-linux.md#namespaces).
pub fn for_init(spec: &Spec) -> Result<NamespacePlan, String> {
    let namespaces = listed(spec);
    let mut plan = NamespacePlan::default();
    let mut new = CloneFlags::empty();
    for typ in ORDER {
        let Some(ns) = namespaces.iter().find(|n| n.typ() == typ) else {
            continue;
        };
        if namespaces.iter().filter(|n| n.typ() == typ).count() > 1 {
            return Err(format!(
                "linux.namespaces lists the {} namespace more than once",
                proc_name(typ)
            ));
        }
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                let fd = open_ns(path, typ)?;
                if typ == LinuxNamespaceType::Pid {
                    plan.pid_join = Some(fd);
                } else {
                    plan.joins.push((flag(typ), fd));
                }
                if typ == LinuxNamespaceType::Mount {
                    plan.own_mount = true;
                }
            }
            _ => {
                new |= flag(typ);
                match typ {
                    LinuxNamespaceType::User => plan.new_user = true,
                    LinuxNamespaceType::Mount => {
                        plan.new_mount = true;
                        plan.own_mount = true;
                    }
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    _ => {}
                }
            }
        }
    }
    let late = CloneFlags::CLONE_NEWCGROUP | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    let joins_user = plan
        .joins
        .iter()
        .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER);
    if joins_user {
        // Everything new must belong to the joined user namespace: made after joining it.
        plan.unshare_flags = new;
        plan.extra_fork = new.contains(CloneFlags::CLONE_NEWPID);
        if plan.extra_fork && plan.pid_join.is_some() {
            return Err("a PID namespace cannot be both new and joined".into());
        }
    } else {
        plan.clone_flags = new & !late;
        plan.unshare_flags = new & late;
    }
    Ok(plan)
}

/// The plan for a process `exec` starts in the running container `pid`: every namespace the
/// container's config lists, joined through the init process's /proc/PID/ns.
pub fn for_exec(spec: &Spec, pid: i32) -> Result<NamespacePlan, String> {
    let namespaces = listed(spec);
    let mut plan = NamespacePlan::default();
    for typ in ORDER {
        if !namespaces.iter().any(|n| n.typ() == typ) {
            continue;
        }
        let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(typ)));
        // The process may share this namespace with polis-runc (a joined host namespace):
        // joining one's own user namespace is an error, so those are left alone.
        let own = std::path::PathBuf::from(format!("/proc/self/ns/{}", proc_name(typ)));
        if same_file(&path, &own) {
            continue;
        }
        let fd = open_ns(&path, typ)?;
        match typ {
            LinuxNamespaceType::Pid => plan.pid_join = Some(fd),
            _ => plan.joins.push((flag(typ), fd)),
        }
        if typ == LinuxNamespaceType::Mount {
            plan.own_mount = true;
        }
    }
    Ok(plan)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// In the child: joins the namespaces by descriptor, in order, then unshares the new ones but a
/// new cgroup namespace, whose root is the cgroup the process is in when it unshares: that one
/// waits for `enter_cgroup_namespace`, once the parent has placed the process.
pub fn enter(plan: &NamespacePlan) -> Result<(), String> {
    for (flag, fd) in &plan.joins {
        setns(fd.as_fd(), *flag).map_err(|e| format!("join namespace {flag:?}: {e}"))?;
    }
    // Raw bits: CLONE_NEWTIME is not one of nix's flags, and a complement drops unknown bits.
    let now = CloneFlags::from_bits_retain(
        plan.unshare_flags.bits() & !CloneFlags::CLONE_NEWCGROUP.bits(),
    );
    if !now.is_empty() {
        unshare(now).map_err(|e| format!("unshare namespaces {now:?}: {e}"))?;
    }
    Ok(())
}

/// The new cgroup namespace, once the process is in its cgroup.
pub fn enter_cgroup_namespace(plan: &NamespacePlan) -> Result<(), String> {
    if plan.unshare_flags.contains(CloneFlags::CLONE_NEWCGROUP) {
        unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| format!("unshare the cgroup namespace: {e}"))?;
    }
    Ok(())
}

/// Enters a PID namespace for the children this process makes next, and back with the guard.
pub struct PidNamespaceGuard(Option<OwnedFd>);

impl PidNamespaceGuard {
    pub fn enter(target: Option<&OwnedFd>) -> Result<Self, String> {
        let Some(target) = target else {
            return Ok(PidNamespaceGuard(None));
        };
        let own: OwnedFd = File::open("/proc/self/ns/pid")
            .map_err(|e| format!("open own PID namespace: {e}"))?
            .into();
        setns(target.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|e| format!("join the PID namespace: {e}"))?;
        Ok(PidNamespaceGuard(Some(own)))
    }
}

impl Drop for PidNamespaceGuard {
    fn drop(&mut self) {
        if let Some(own) = &self.0 {
            let _ = setns(own.as_fd(), CloneFlags::CLONE_NEWPID);
            let _ = own.as_raw_fd();
        }
    }
}

/// clone(2) without a new stack: the child continues from here like fork(2) (returns 0 in the
/// child, its PID in the parent).
pub fn clone_process(flags: CloneFlags) -> Result<i32, String> {
    // SAFETY: raw clone without CLONE_VM behaves as fork: the child gets a copy of the address
    // space and continues on its copy of this stack. polis-runc runs no other thread, so no lock
    // is held that the child could need.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc < 0 {
        return Err(format!(
            "clone the container's process: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(rc as i32)
}
