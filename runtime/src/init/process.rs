//! The process's own settings, applied in the container right before the user's program runs:
//! config.md#process (terminal, consoleSize, cwd, env, args, rlimits, user, umask),
//! config.md#linux-process (capabilities, noNewPrivileges, oomScoreAdj, scheduler, ioPriority,
//! apparmorProfile), config-linux.md#personality, #sysctl, config.md#hostname and #domainname,
//! and config-linux.md#seccomp.

use std::ffi::CString;
use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use libcontainer::capabilities::CapabilityExt;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, LinuxSeccomp, Process, Spec};

type Result<T> = std::result::Result<T, String>;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The name of an enum value of oci-spec as config.json spells it.
fn spelled<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// config-linux.md#sysctl and config.md#hostname: refused before anything is made when the
/// container does not have the namespace the setting belongs to (runc's validation): changing it
/// would change the host's.
pub fn check_namespaced_settings(spec: &Spec) -> Result<()> {
    let has = |typ: oci_spec::runtime::LinuxNamespaceType| {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|n| n.iter().any(|n| n.typ() == typ))
    };
    use oci_spec::runtime::LinuxNamespaceType as T;
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(T::Uts) {
        return Err("unable to set hostname without a private UTS namespace".into());
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has(T::Uts) {
        return Err("unable to set domainname without a private UTS namespace".into());
    }
    for key in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flat_map(|s| s.keys())
    {
        let ipc = [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ];
        let ok = if ipc.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            has(T::Ipc)
        } else if key.starts_with("net.") {
            has(T::Network)
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            has(T::Uts)
        } else {
            return Err(format!(
                "sysctl {key:?} is not in a separate kernel namespace: refused"
            ));
        };
        if !ok {
            return Err(format!(
                "sysctl {key:?} is not allowed: the container does not have the namespace it belongs to"
            ));
        }
    }
    Ok(())
}

/// Hostname, domain name and sysctls, in the container's namespaces (after pivot_root: /proc/sys
/// is the container's).
pub fn apply_namespace_settings(spec: &Spec) -> Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| format!("set hostname {h:?}: {e}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: a buffer of the length given.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
            return Err(format!(
                "set domainname {d:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    for (key, value) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| format!("sysctl {key}={value}: {e}"))?;
    }
    Ok(())
}

/// rlimits, OOM score, personality, scheduler and I/O priority: settings that stay with the
/// process across the user change.
pub fn apply_limits(process: &Process, spec: &Spec) -> Result<()> {
    for rl in process.rlimits().iter().flatten() {
        let name = spelled(&rl.typ());
        let resource = rlimit_resource(&name).ok_or_else(|| format!("unknown rlimit {name}"))?;
        let limit = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: setrlimit with a struct that outlives the call.
        if unsafe { libc::setrlimit(resource, &limit) } < 0 {
            return Err(format!(
                "set rlimit {name} (soft {}, hard {}): {}",
                rl.soft(),
                rl.hard(),
                std::io::Error::last_os_error()
            ));
        }
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("set oomScoreAdj {adj}: {e}"))?;
    }
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        let persona = match spelled(&p.domain()).as_str() {
            "LINUX" => 0,
            "LINUX32" => 0x0008,
            other => return Err(format!("unknown personality domain {other:?}")),
        };
        // SAFETY: personality takes a plain integer.
        if unsafe { libc::personality(persona) } < 0 {
            return Err(format!(
                "set personality: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    if let Some(s) = process.scheduler() {
        set_scheduler(s)?;
    }
    if let Some(io) = process.io_priority() {
        let class = match spelled(&io.class()).as_str() {
            "IOPRIO_CLASS_RT" => 1,
            "IOPRIO_CLASS_BE" => 2,
            "IOPRIO_CLASS_IDLE" => 3,
            other => return Err(format!("unknown I/O priority class {other:?}")),
        };
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        // SAFETY: ioprio_set takes plain integers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                (class << 13) | io.priority(),
            )
        };
        if rc < 0 {
            return Err(format!(
                "set I/O priority: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    let policy = match spelled(&s.policy()).as_str() {
        "SCHED_OTHER" => 0,
        "SCHED_FIFO" => 1,
        "SCHED_RR" => 2,
        "SCHED_BATCH" => 3,
        "SCHED_ISO" => 4,
        "SCHED_IDLE" => 5,
        "SCHED_DEADLINE" => 6,
        other => return Err(format!("unknown scheduler policy {other:?}")),
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match spelled(f).as_str() {
            "SCHED_FLAG_RESET_ON_FORK" => 0x01,
            "SCHED_FLAG_RECLAIM" => 0x02,
            "SCHED_FLAG_DL_OVERRUN" => 0x04,
            "SCHED_FLAG_KEEP_POLICY" => 0x08,
            "SCHED_FLAG_KEEP_PARAMS" => 0x10,
            "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
            "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
            other => return Err(format!("unknown scheduler flag {other:?}")),
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr reads a sched_attr of the size it carries.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc < 0 {
        return Err(format!(
            "set the scheduler: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// apparmorProfile: asked of the kernel for the next execve, where AppArmor is enabled.
pub fn apply_apparmor(process: &Process) -> Result<()> {
    let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    else {
        return Ok(());
    };
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if !enabled {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/attr/apparmor/exec")
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/proc/self/attr/exec")
        })
        .map_err(|e| format!("apparmor: {e}"))?;
    f.write_all(format!("exec {profile}").as_bytes())
        .map_err(|e| format!("apparmor profile {profile}: {e}"))
}

/// config.md#process `terminal`: a new pseudo-terminal in the container's devpts; its master goes
/// to the console socket, its slave becomes the process's controlling terminal and stdio.
pub fn make_terminal(console: RawFd, process: &Process) -> Result<()> {
    let master = crate::init::sys::openat2(
        libc::AT_FDCWD,
        Path::new("/dev/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY,
        0,
    )
    .map_err(|e| format!("open /dev/ptmx: {e}"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on a descriptor we own with arguments of the kernel's types.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(format!(
                "unlock the pty: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: as above; TIOCGPTPEER returns a new descriptor.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(format!(
            "open the pty's slave: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel just returned this descriptor.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
    let name = format!("/dev/pts/{n}");
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console,
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("send the terminal to the console socket: {e}"))?;
    drop(master);
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    // SAFETY: TIOCSCTTY with a plain integer.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!(
            "make the pty the controlling terminal: {}",
            std::io::Error::last_os_error()
        ));
    }
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).map_err(|e| format!("dup2: {e}"))?;
    }
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
        unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) };
    }
    Ok(())
}

/// Joins a new session keyring named after the container (runc does this unless
/// --no-new-keyring). Not fatal: a seccomp profile may deny keyctl.
pub fn join_session_keyring(name: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    if let Ok(name) = CString::new(name) {
        // SAFETY: keyctl with a valid NUL-terminated name; no memory is handed back.
        unsafe {
            libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr());
        }
    }
}

fn to_set(caps: &Option<Capabilities>) -> CapsHashSet {
    caps.as_ref()
        .map(|set| set.iter().map(|c| c.to_cap()).collect())
        .unwrap_or_default()
}

/// Drops what the bounding set does not list (needs CAP_SETPCAP, so before the user changes).
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<()> {
    let bounding = to_set(c.bounding());
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| format!("drop {cap} from the bounding set: {e}"))?;
        }
    }
    Ok(())
}

/// Sets the effective, permitted, inheritable and ambient sets.
pub fn set_capabilities(c: &LinuxCapabilities) -> Result<()> {
    // The kernel refuses an effective set that the permitted set does not cover.
    let permitted = to_set(c.permitted());
    let effective: CapsHashSet = to_set(c.effective())
        .intersection(&permitted)
        .copied()
        .collect();
    for (set, value) in [
        (CapSet::Inheritable, to_set(c.inheritable())),
        (CapSet::Effective, effective),
        (CapSet::Permitted, permitted),
    ] {
        caps::set(None, set, &value).map_err(|e| format!("set {set:?} capabilities: {e}"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clear ambient: {e}"))?;
    // The kernel raises an ambient capability only if it is permitted and inheritable.
    for cap in to_set(c.ambient()) {
        let _ = caps::raise(None, CapSet::Ambient, cap);
    }
    Ok(())
}

/// The capabilities to hold until seccomp is loaded: without no_new_privileges the kernel wants
/// CAP_SYS_ADMIN to load a filter, and CAP_SETPCAP lets the final sets be applied after it.
pub fn with_seccomp_caps(c: &LinuxCapabilities) -> LinuxCapabilities {
    use oci_spec::runtime::Capability;
    let mut granted = c.clone();
    let add = |set: &Option<Capabilities>| {
        let mut s = set.clone().unwrap_or_default();
        s.insert(Capability::SysAdmin);
        s.insert(Capability::Setpcap);
        Some(s)
    };
    granted.set_bounding(add(granted.bounding()));
    granted.set_effective(add(granted.effective()));
    granted.set_permitted(add(granted.permitted()));
    granted
}

/// config.md#user: supplementary groups, gid and uid, keeping the capabilities across the change
/// (they are set right after).
pub fn set_user(process: &Process) -> Result<()> {
    let user = process.user();
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // setgroups is refused in a user namespace whose setgroups file says "deny"; runc then goes on.
    // SAFETY: a buffer of the length given.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) || !groups.is_empty() {
            return Err(format!("set supplementary groups {groups:?}: {e}"));
        }
    }
    // SAFETY: prctl with plain integers.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let (uid, gid) = (user.uid(), user.gid());
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } < 0 {
        return Err(format!(
            "set gid {gid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } < 0 {
        return Err(format!(
            "set uid {uid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: prctl with plain integers.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    Ok(())
}

pub fn set_no_new_privileges() -> Result<()> {
    // SAFETY: prctl with plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(format!(
            "set no_new_privileges: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Loads the profile; returns its listener when a rule notifies an agent (SCMP_ACT_NOTIFY).
pub fn load_seccomp(seccomp: &LinuxSeccomp) -> Result<Option<OwnedFd>> {
    let fd = libcontainer::seccomp::initialize_seccomp(seccomp)
        .map_err(|e| format!("load the container's seccomp profile: {e}"))?;
    // SAFETY: libseccomp made this descriptor for the process and hands it over; nothing else
    // closes it.
    Ok(fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The program and its environment, resolved in the container (after pivot_root).
pub struct Program {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

fn env_path(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// Finds the program as execvp would, with the container's PATH; errors as runc words them.
pub fn find_program(name: &str, env: &[String]) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
            && std::fs::metadata(p).is_ok_and(|m| m.is_file())
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        if is_exec(&path) {
            return Ok(path);
        }
        if !path.exists() {
            return Err(format!("exec: {name:?}: no such file or directory"));
        }
        return Err(format!(
            "exec: {name:?}: {} is not an executable file",
            path.display()
        ));
    }
    env_path(env)
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|p| is_exec(p))
        .ok_or_else(|| format!("exec: {name:?}: executable file not found in $PATH"))
}

/// HOME from the user's entry in the container's /etc/passwd, "/" without one (runc's rule).
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

impl Program {
    pub fn resolve(process: &Process) -> Result<Self> {
        let args = process
            .args()
            .as_ref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| "process.args is empty".to_string())?;
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", home_of(process.user().uid())));
        }
        let path = find_program(&args[0], &env)?;
        let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} has a NUL byte"));
        Ok(Program {
            path: CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| "program path has a NUL byte".to_string())?,
            argv: args.iter().map(|a| c(a)).collect::<Result<_>>()?,
            env: env.iter().map(|e| c(e)).collect::<Result<_>>()?,
        })
    }

    /// Executes the program with a fresh signal state; descriptors from `first_closed` on are
    /// closed by the exec. Returns only on error.
    pub fn exec(&self, first_closed: u32) -> String {
        // SAFETY: close_range with plain integers; descriptors are only marked close-on-exec.
        unsafe { libc::close_range(first_closed, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
        // Rust ignores SIGPIPE in its processes; the program gets the default.
        // SAFETY: restoring a default disposition.
        let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        let err = nix::unistd::execve(&self.path, &self.argv, &self.env).unwrap_err();
        format!("exec {:?}: {err}", self.argv[0])
    }
}
