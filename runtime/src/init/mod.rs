//! polis-runc's own container set-up: from a checked config.json to the container's first
//! instruction, for `create`/`run` (the init process) and `exec` (a process joining a running
//! container). One clone(2) per process in the common case; the parent and the child follow each
//! other over a socket pair (sync.rs):
//!
//! ```text
//! parent                                   child (the container's process)
//! clone(new user/pid/... namespaces) ───▶  waits for GO
//! id mappings, GO ─────────────────────▶  joins and unshares the other namespaces,
//! cgroup placement, PLACED ────────────▶  mounts (rootfs.rs; the first `cgroup` mount and
//!                                          the new cgroup namespace wait for PLACED), HOOKS ──▶
//! prestart + createRuntime hooks,
//! HOOKS_DONE ──────────────────────────▶  createContainer hooks, pivot_root, masked and
//!                                          read-only paths, sysctls, limits, terminal, user,
//!                                          capabilities, READY ──▶
//! records the container, exits             waits for `start` on its socket, startContainer
//!                                          hooks, seccomp, execve
//! ```
//! With SCMP_ACT_NOTIFY rules the profile is loaded before READY instead (as runc does), and its
//! listener goes to the parent (SECCOMP), which passes it on to the agent at `listenerPath` before
//! `create` returns (SECCOMP_DONE).
//! Every descriptor polis-runc opens is close-on-exec and the process's working directory is
//! set inside the container after pivot_root (CVE-2024-21626); the binary the process was
//! cloned from is polis-runc's sealed copy (seal.rs, CVE-2019-5736).

pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod sync;
pub mod sys;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::hooks::StartContainerHooks;
use namespaces::{NamespacePlan, PidNamespaceGuard, clone_process};
use rootfs::{CgroupHierarchy, RootfsContext};
use sync::Channel;

type Result<T> = std::result::Result<T, String>;

/// What the parent tells the child once it is in its cgroup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Go {
    /// The child's PID as the host sees it (hooks get it in the state).
    pub pid: i32,
    /// On cgroup v1 and hybrid hosts: the container's cgroup in each hierarchy.
    pub cgroup_v1: Option<Vec<CgroupHierarchy>>,
    /// On cgroup v2 hosts: the container's cgroup directory.
    pub cgroup_v2_dir: Option<PathBuf>,
}

/// The init process of a container to create.
pub struct InitConfig<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub no_pivot: bool,
    /// Join a new session keyring named after the container.
    pub new_keyring: bool,
    /// A connected console socket, for `process.terminal`.
    pub console: Option<UnixStream>,
    /// The socket `start` connects to.
    pub start_listener: UnixListener,
    pub preserve_fds: i32,
    /// The profile to load last (unknown syscalls left out, runc's masked-eq order).
    pub seccomp: Option<LinuxSeccomp>,
    pub start_container_hooks: Option<StartContainerHooks>,
}

/// What the parent does at its two points of the hand-over.
pub trait Parent {
    /// Right after the clone: cgroups and anything else the child needs before it goes on.
    fn place(&mut self, pid: i32) -> Result<Go>;
    /// prestart and createRuntime hooks, once the child's mounts are made.
    fn runtime_hooks(&mut self, pid: i32) -> Result<()>;
}

/// Starts a container's init process; returns its PID once it waits for `start`. On failure the
/// process is gone.
pub fn spawn_init(cfg: &InitConfig<'_>, parent: &mut dyn Parent) -> Result<i32> {
    let ns = namespaces::for_init(cfg.spec)?;
    let (ours, theirs) = sync::pair().map_err(|e| format!("make the sync socket: {e}"))?;
    let pid = {
        let _guard = PidNamespaceGuard::enter(ns.pid_join.as_ref())?;
        clone_process(ns.clone_flags)?
    };
    if pid == 0 {
        drop(ours);
        let err = if ns.extra_fork {
            fork_init(cfg, &ns, &theirs)
        } else {
            init_child(cfg, &ns, &theirs, false)
        };
        let _ = theirs.send(sync::ERROR, err.as_bytes());
        // SAFETY: leaving the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(1) };
    }
    drop(theirs);
    let pid = if ns.extra_fork {
        take_forked(&ours, pid)?
    } else {
        pid
    };
    let result = (|| {
        if ns.new_user {
            write_id_mappings(pid, cfg.spec)?;
        }
        let signal = |tag: u8, go: &Go| -> Result<()> {
            let body = serde_json::to_vec(go).map_err(|e| e.to_string())?;
            ours.tell(tag, &body)
        };
        // The child makes its mounts while the parent makes and joins its cgroup.
        signal(
            sync::GO,
            &Go {
                pid,
                ..Go::default()
            },
        )?;
        signal(sync::PLACED, &parent.place(pid)?)?;
        ours.expect(sync::HOOKS)?;
        parent.runtime_hooks(pid)?;
        ours.tell(sync::HOOKS_DONE, b"")?;
        let state = || crate::hooks::creating_state(cfg.id, cfg.bundle, cfg.spec, pid);
        await_listener(&ours, cfg.seccomp.as_ref(), pid, &state)?;
        ours.expect(sync::READY)?;
        Ok(pid)
    })();
    if result.is_err() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
    }
    result
}

/// With SCMP_ACT_NOTIFY rules: the child's listener, passed on to the agent with the state
/// `state` gives (config-linux.md#seccomp).
fn await_listener(
    ch: &Channel,
    seccomp: Option<&LinuxSeccomp>,
    pid: i32,
    state: &dyn Fn() -> libcontainer::container::State,
) -> Result<()> {
    let Some(seccomp) = seccomp.filter(|s| crate::seccomp::is_notify(s)) else {
        return Ok(());
    };
    let listener = match ch.recv_fd() {
        Ok(Some((sync::SECCOMP, _, Some(fd)))) => fd,
        Ok(Some((sync::ERROR, body, _))) => return Err(String::from_utf8_lossy(&body).into()),
        Ok(Some((t, _, _))) => return Err(format!("unexpected message {:?}", t as char)),
        Ok(None) => return Err("the process exited during set-up".into()),
        Err(e) => return Err(format!("read from the process: {e}")),
    };
    crate::seccomp::send_to_listener(seccomp, pid, &state(), &listener)?;
    drop(listener);
    ch.tell(sync::SECCOMP_DONE, b"")
}

/// The child's side of [`await_listener`]: hands its listener over and waits until the agent has
/// it; the process keeps no copy.
fn hand_listener_over(ch: &Channel, listener: Option<OwnedFd>) -> Result<()> {
    let Some(listener) = listener else {
        return Ok(());
    };
    ch.send_fd(sync::SECCOMP, &listener)
        .map_err(|e| format!("hand the seccomp listener over: {e}"))?;
    drop(listener);
    ch.expect(sync::SECCOMP_DONE).map(drop)
}

/// config-linux.md#user-namespace-mappings: written by the parent, which runs as root in the
/// initial user namespace, so several ranges need no helper.
fn write_id_mappings(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let write = |file: &str, maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        let Some(maps) = maps.filter(|m| !m.is_empty()) else {
            return Ok(());
        };
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| format!("write {path}: {e}"))
    };
    write("uid_map", linux.and_then(|l| l.uid_mappings().as_ref()))?;
    write("gid_map", linux.and_then(|l| l.gid_mappings().as_ref()))
}

/// Until the hand-over is done, the child dies with polis-runc.
fn exit_on_parent_death() {
    // SAFETY: prctl with plain integers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}

fn keep_on_parent_death() {
    // SAFETY: prctl with plain integers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
}

/// The init process's side; `entered` when the namespaces are already joined and made (by the
/// first child of an extra fork). Returns only with the reason it failed.
fn init_child(cfg: &InitConfig<'_>, ns: &NamespacePlan, ch: &Channel, entered: bool) -> String {
    match init_steps(cfg, ns, ch, entered) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// The first child when a user namespace is joined and a PID namespace made (namespaces.rs): it
/// joins and unshares, so that the new namespaces belong to the joined user namespace, and starts
/// the init process, the first of the new PID namespace, as polis-runc's own child (CLONE_PARENT,
/// as runc's nsexec does), so that polis-runc waits for it as for any container's process.
/// Returns only with the reason it failed (in the init process, with that one's).
fn fork_init(cfg: &InitConfig<'_>, ns: &NamespacePlan, ch: &Channel) -> String {
    exit_on_parent_death();
    if let Err(e) = namespaces::enter(ns).and_then(|()| become_root_if_joined(ns)) {
        return e;
    }
    let pid = match clone_process(nix::sched::CloneFlags::CLONE_PARENT) {
        Ok(pid) => pid,
        Err(e) => return e,
    };
    if pid == 0 {
        return init_child(cfg, ns, ch, true);
    }
    match ch.send(sync::FORKED, pid.to_string().as_bytes()) {
        // SAFETY: leaving without running the parent's destructors or atexit handlers.
        Ok(()) => unsafe { libc::_exit(0) },
        Err(e) => format!("report the init process: {e}"),
    }
}

/// The parent's side of [`fork_init`]: the init process's PID; the first child is reaped.
fn take_forked(ch: &Channel, first: i32) -> Result<i32> {
    let pid = ch.expect(sync::FORKED).and_then(|body| {
        String::from_utf8_lossy(&body)
            .parse::<i32>()
            .map_err(|e| format!("the init process's PID: {e}"))
    });
    if pid.is_err() {
        let _ = kill(Pid::from_raw(first), Signal::SIGKILL);
    }
    let _ = waitpid(Pid::from_raw(first), None);
    pid
}

enum Never {}

fn init_steps(
    cfg: &InitConfig<'_>,
    ns: &NamespacePlan,
    ch: &Channel,
    entered: bool,
) -> Result<Never> {
    exit_on_parent_death();
    let go: Go = serde_json::from_slice(&ch.expect(sync::GO)?).map_err(|e| e.to_string())?;
    if ns.new_user {
        become_root_in_user_namespace()?;
    }
    if !entered {
        namespaces::enter(ns)?;
        become_root_if_joined(ns)?;
    }
    let placement = std::cell::OnceCell::new();
    let placed = || -> Result<Go> {
        if let Some(go) = placement.get() {
            return Ok(Go::clone(go));
        }
        let go: Go =
            serde_json::from_slice(&ch.expect(sync::PLACED)?).map_err(|e| e.to_string())?;
        namespaces::enter_cgroup_namespace(ns)?;
        Ok(placement.get_or_init(|| go).clone())
    };
    // Devices and mount points get the modes asked for.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let spec = cfg.spec;
    let process = spec.process().clone().unwrap_or_default();
    let root = if ns.new_mount {
        let ctx = RootfsContext {
            spec,
            rootfs: cfg.rootfs,
            bundle: cfg.bundle,
            user_ns: ns.new_user
                || ns
                    .joins
                    .iter()
                    .any(|(f, _)| *f == nix::sched::CloneFlags::CLONE_NEWUSER),
            cgroup_ns: ns.new_cgroup,
            placed: &placed,
        };
        let root = rootfs::prepare(&ctx)?;
        // config.md#process: a missing cwd is made (runc's contract, Docker's `-w /newdir`), as
        // root, after the mounts and inside the rootfs.
        rootfs::make_in_root(root.as_raw_fd(), process.cwd(), false)
            .map_err(|e| format!("process.cwd {}: {e}", process.cwd().display()))?;
        Some(root)
    } else {
        None
    };
    // The hooks see the process in its cgroup.
    placed()?;
    ch.send(sync::HOOKS, b"").map_err(|e| e.to_string())?;
    ch.expect(sync::HOOKS_DONE)?;
    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_ref())
    {
        crate::hooks::run_in_container("createContainer", hooks, cfg.id, cfg.bundle, spec, go.pid)?;
    }
    if let Some(root) = &root {
        rootfs::enter_root(root, cfg.no_pivot)?;
        // runc's order: sysctls before the read-only paths (/proc/sys is one).
        process::apply_namespace_settings(spec)?;
        rootfs::finish(spec)?;
    } else if !ns.own_mount {
        return Err("the container has no mount namespace of its own".into());
    } else {
        process::apply_namespace_settings(spec)?;
    }
    process::apply_limits(&process, spec)?;
    process::apply_apparmor(&process)?;
    if process.terminal() == Some(true) {
        let console = cfg
            .console
            .as_ref()
            .ok_or_else(|| "process.terminal is true but there is no console socket".to_string())?;
        process::make_terminal(console.as_raw_fd(), &process)?;
    }
    if cfg.new_keyring {
        process::join_session_keyring(cfg.id);
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| format!("chdir to cwd {}: {e}", cwd.display()))?;
    let program = process::Program::resolve(&process)?;
    let finish = become_user(&process, cfg.seccomp.is_some())?;
    // A profile that notifies an agent is loaded now, so that its listener reaches the agent
    // before `create` returns; any other as late as possible.
    let notify = cfg
        .seccomp
        .as_ref()
        .filter(|s| crate::seccomp::is_notify(s));
    if notify.is_some() {
        hand_listener_over(ch, finish.apply(notify)?)?;
    }
    // `create` returns once it reads READY; the process stays.
    keep_on_parent_death();
    ch.send(sync::READY, b"").map_err(|e| e.to_string())?;
    let mut conn = wait_for_start(&cfg.start_listener)?;
    if let Some(hooks) = &cfg.start_container_hooks
        && let Err(e) = hooks.run()
    {
        let _ = conn.write_all(format!("E{e}").as_bytes());
        return Err(e.to_string());
    }
    let _ = conn.write_all(b"0");
    drop(conn);
    if notify.is_none() {
        finish.apply(cfg.seccomp.as_ref())?;
    }
    Err(program.exec(3 + cfg.preserve_fds.max(0) as u32))
}

/// In a joined user namespace the process's host IDs are not mapped (files it made would fail
/// with EOVERFLOW): it becomes that namespace's root, as in a new one.
fn become_root_if_joined(ns: &NamespacePlan) -> Result<()> {
    if ns
        .joins
        .iter()
        .any(|(f, _)| *f == nix::sched::CloneFlags::CLONE_NEWUSER)
    {
        become_root_in_user_namespace()?;
    }
    Ok(())
}

/// In a new user namespace, once the parent has written the mappings: root of that namespace.
fn become_root_in_user_namespace() -> Result<()> {
    // SAFETY: plain integer arguments.
    unsafe {
        if libc::setresgid(0, 0, 0) < 0 || libc::setresuid(0, 0, 0) < 0 {
            return Err(format!(
                "become root in the user namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// What is left to do right before the program: no_new_privileges, seccomp, and the final
/// capabilities when more were held to load seccomp.
struct Finish {
    no_new_privileges: bool,
    final_caps: Option<oci_spec::runtime::LinuxCapabilities>,
}

impl Finish {
    /// Returns the profile's listener when it notifies an agent.
    fn apply(&self, seccomp: Option<&LinuxSeccomp>) -> Result<Option<OwnedFd>> {
        if self.no_new_privileges {
            process::set_no_new_privileges()?;
        }
        let listener = match seccomp {
            Some(profile) => process::load_seccomp(profile)?,
            None => None,
        };
        if let Some(caps) = &self.final_caps {
            process::drop_bounding(caps)?;
            process::set_capabilities(caps)?;
        }
        Ok(listener)
    }
}

/// config.md#user and #linux-process: the bounding set, the user, the capabilities and the umask.
/// Without no_new_privileges, loading seccomp needs CAP_SYS_ADMIN: the process holds it (and
/// CAP_SETPCAP) until the profile is loaded.
fn become_user(process: &Process, seccomp: bool) -> Result<Finish> {
    let nnp = process.no_new_privileges() == Some(true);
    let mut final_caps = None;
    if let Some(caps) = process.capabilities() {
        let hold = if seccomp && !nnp {
            final_caps = Some(caps.clone());
            process::with_seccomp_caps(caps)
        } else {
            caps.clone()
        };
        process::drop_bounding(&hold)?;
        process::set_user(process)?;
        process::set_capabilities(&hold)?;
    } else {
        process::set_user(process)?;
    }
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    Ok(Finish {
        no_new_privileges: nnp,
        final_caps,
    })
}

/// Blocks until `start` connects.
fn wait_for_start(listener: &UnixListener) -> Result<UnixStream> {
    loop {
        match listener.accept() {
            Ok((conn, _)) => return Ok(conn),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("wait for start: {e}")),
        }
    }
}

/// `start`'s side: connects to the init process and waits until it is about to run the program
/// ("0"), or says why it cannot ("E" and a message). Err(None) when the process is gone.
pub fn signal_start(socket: &Path) -> std::result::Result<(), Option<String>> {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let Ok(dir_fd) = std::fs::File::open(dir) else {
        return Err(None);
    };
    let short = format!(
        "/proc/self/fd/{}/{}",
        dir_fd.as_raw_fd(),
        socket.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut conn = UnixStream::connect(short).map_err(|_| None)?;
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply);
    match reply.first() {
        Some(b'0') => Ok(()),
        Some(b'E') => Err(Some(String::from_utf8_lossy(&reply[1..]).into_owned())),
        _ => Err(None),
    }
}

/// A process `exec` starts in a running container.
pub struct ExecConfig<'a> {
    pub spec: &'a Spec,
    /// The container's init process.
    pub init_pid: i32,
    pub process: &'a Process,
    pub console: Option<UnixStream>,
    pub preserve_fds: i32,
    pub seccomp: Option<LinuxSeccomp>,
    /// The container's state, for a seccomp agent (config-linux.md#seccomp).
    pub state: libcontainer::container::State,
}

/// Starts the process; returns its PID once it has executed the program. `place` puts it in the
/// container's cgroup before it goes on.
pub fn spawn_exec(cfg: &ExecConfig<'_>, place: &mut dyn FnMut(i32) -> Result<()>) -> Result<i32> {
    let ns = namespaces::for_exec(cfg.spec, cfg.init_pid)?;
    let (ours, theirs) = sync::pair().map_err(|e| format!("make the sync socket: {e}"))?;
    let pid = {
        let _guard = PidNamespaceGuard::enter(ns.pid_join.as_ref())?;
        clone_process(nix::sched::CloneFlags::empty())?
    };
    if pid == 0 {
        drop(ours);
        let err = match exec_steps(cfg, &ns, &theirs) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = theirs.send(sync::ERROR, err.as_bytes());
        // SAFETY: leaving the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(1) };
    }
    drop(theirs);
    let result = (|| {
        place(pid)?;
        ours.tell(sync::GO, b"{}")?;
        await_listener(&ours, cfg.seccomp.as_ref(), pid, &|| cfg.state.clone())?;
        match ours.recv() {
            Ok(None) => Ok(pid),
            Ok(Some((sync::ERROR, body))) => Err(String::from_utf8_lossy(&body).into_owned()),
            Ok(Some((t, _))) => Err(format!("unexpected message {:?}", t as char)),
            Err(e) => Err(format!("read from the process: {e}")),
        }
    })();
    if result.is_err() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
    }
    result
}

fn exec_steps(cfg: &ExecConfig<'_>, ns: &NamespacePlan, ch: &Channel) -> Result<Never> {
    exit_on_parent_death();
    ch.expect(sync::GO)?;
    namespaces::enter(ns)?;
    let process = cfg.process;
    process::apply_limits(process, cfg.spec)?;
    process::apply_apparmor(process)?;
    if process.terminal() == Some(true) {
        let console = cfg
            .console
            .as_ref()
            .ok_or_else(|| "--tty needs a console socket".to_string())?;
        process::make_terminal(console.as_raw_fd(), process)?;
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| format!("chdir to cwd {}: {e}", cwd.display()))?;
    let program = process::Program::resolve(process)?;
    let finish = become_user(process, cfg.seccomp.is_some())?;
    hand_listener_over(ch, finish.apply(cfg.seccomp.as_ref())?)?;
    // The death signal would survive the execve: `exec --detach` returns right after it.
    keep_on_parent_death();
    Err(program.exec(3 + cfg.preserve_fds.max(0) as u32))
}
