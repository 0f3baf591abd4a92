//! The last step inside the container before the user's program runs.
//!
//! libcontainer calls an `Executor` once namespaces, rootfs, user and capabilities are set. Ours
//! adds what libcontainer 0.7 leaves out:
//! - the signal mask polis-runc blocked (to never lose a child's exit) is cleared, so the
//!   program starts with the mask a fresh process has;
//! - the seccomp profile is loaded here, as the very last step before execve, for `create` and
//!   `exec` alike. libcontainer 0.7 drops `linux.seccomp` for processes joining a container, and
//!   for the init process it loads the filter before its own last steps (which an allowlist
//!   profile then breaks) and, with `noNewPrivileges: false`, after dropping CAP_SYS_ADMIN, which
//!   the kernel then refuses. Without no_new_privileges the kernel requires CAP_SYS_ADMIN to load
//!   a filter, so polis-runc asks libcontainer for CAP_SYS_ADMIN and CAP_SETPCAP on top of the
//!   requested capabilities, and they are dropped here right after the filter is loaded, in the
//!   order runc uses (seccomp first, then the final capabilities). Profiles that notify a
//!   listener (SCMP_ACT_NOTIFY) stay with libcontainer, which owns the listener handshake.
//!   Syscall names this host's libseccomp does not know are left out of the profile when the
//!   executor is made, in polis-runc itself, so that the one warning naming them goes to
//!   polis-runc's log and not to the container's stderr.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use crate::hooks::StartContainerHooks;
use caps::{CapSet, CapsHashSet};
use libcontainer::capabilities::CapabilityExt;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxSeccomp, Process, Spec};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone, Default)]
pub struct PolisExecutor {
    /// Seccomp profile to load before exec (only for `exec`; init gets it from libcontainer).
    seccomp: Option<LinuxSeccomp>,
    /// The capabilities the process must end with, when more were granted to load seccomp.
    final_caps: Option<LinuxCapabilities>,
    /// Name of a new session keyring to join (runc does this unless --no-new-keyring).
    session_keyring: Option<String>,
    /// Write end of the container's exec FIFO: one byte there tells `start` that the init process
    /// got past its startContainer hooks and is about to execute the user's program.
    exec_fifo: Option<RawFd>,
    /// startContainer hooks of the init process, run right before the user's program.
    start_container_hooks: Option<StartContainerHooks>,
}

impl PolisExecutor {
    pub fn for_init(
        session_keyring: Option<String>,
        seccomp: Option<LinuxSeccomp>,
        final_caps: Option<LinuxCapabilities>,
        exec_fifo: RawFd,
        start_container_hooks: Option<StartContainerHooks>,
    ) -> Self {
        PolisExecutor {
            seccomp: seccomp.as_ref().map(known_syscalls_only),
            final_caps,
            session_keyring,
            exec_fifo: Some(exec_fifo),
            start_container_hooks,
        }
    }

    pub fn for_exec(seccomp: Option<LinuxSeccomp>, final_caps: Option<LinuxCapabilities>) -> Self {
        PolisExecutor {
            seccomp: seccomp.as_ref().map(known_syscalls_only),
            final_caps,
            session_keyring: None,
            exec_fifo: None,
            start_container_hooks: None,
        }
    }
}

/// Grants CAP_SYS_ADMIN and CAP_SETPCAP so the executor can load seccomp without
/// no_new_privileges; returns the capabilities to end with.
pub fn grant_executor_caps(process: &mut Process) -> Option<LinuxCapabilities> {
    // Without a capabilities object libcontainer leaves the process all of root's: nothing to
    // grant, nothing to drop.
    let final_caps = process.capabilities().clone()?;
    let mut granted = final_caps.clone();
    let add = |set: &Option<Capabilities>| {
        let mut s = set.clone().unwrap_or_default();
        s.insert(Capability::SysAdmin);
        s.insert(Capability::Setpcap);
        Some(s)
    };
    granted.set_bounding(add(granted.bounding()));
    granted.set_effective(add(granted.effective()));
    granted.set_permitted(add(granted.permitted()));
    process.set_capabilities(Some(granted));
    Some(final_caps)
}

fn fail(msg: String) -> ExecutorError {
    ExecutorError::Other(msg)
}

fn to_set(caps: &Option<oci_spec::runtime::Capabilities>) -> CapsHashSet {
    caps.as_ref()
        .map(|set| set.iter().map(|c| c.to_cap()).collect())
        .unwrap_or_default()
}

fn apply_final_caps(c: &LinuxCapabilities) -> Result<(), ExecutorError> {
    let bounding = to_set(c.bounding());
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| fail(format!("drop {cap} from bounding set: {e}")))?;
        }
    }
    // Lower the effective set before the permitted one: the kernel refuses a permitted set
    // that no longer covers the effective set.
    let permitted = to_set(c.permitted());
    let effective: CapsHashSet = to_set(c.effective())
        .intersection(&permitted)
        .copied()
        .collect();
    let sets = [
        (CapSet::Inheritable, to_set(c.inheritable())),
        (CapSet::Effective, effective),
        (CapSet::Permitted, permitted),
    ];
    for (set, value) in sets {
        caps::set(None, set, &value).map_err(|e| fail(format!("set {set:?} capabilities: {e}")))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| fail(format!("clear ambient: {e}")))?;
    // The kernel raises an ambient capability only if it is permitted and inheritable; others
    // are skipped, as libcontainer does when it sets the capabilities itself.
    for cap in to_set(c.ambient()) {
        let _ = caps::raise(None, CapSet::Ambient, cap);
    }
    Ok(())
}

fn process_env_path(spec: &Spec) -> String {
    spec.process()
        .as_ref()
        .and_then(|p| p.env().as_ref())
        .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
        .unwrap_or(DEFAULT_PATH)
        .to_string()
}

/// Finds the program as execvp would, with the container's PATH.
fn find_program(name: &str, path_var: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|p| is_executable_file(p))
}

fn is_executable_file(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
        && std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

impl Executor for PolisExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let args = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                ExecutorValidationError::ArgValidationError("process.args is empty".into())
            })?;
        let name = &args[0];
        match find_program(name, &process_env_path(spec)) {
            Some(path) if is_executable_file(&path) => Ok(()),
            Some(path) if !path.exists() => Err(ExecutorValidationError::ArgValidationError(
                format!("exec: {name:?}: no such file or directory"),
            )),
            Some(path) => Err(ExecutorValidationError::ArgValidationError(format!(
                "exec: {:?}: {} is not an executable file",
                name,
                path.display()
            ))),
            None => Err(ExecutorValidationError::ArgValidationError(format!(
                "exec: {name:?}: executable file not found in $PATH"
            ))),
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .filter(|a| !a.is_empty())
            .ok_or(ExecutorError::InvalidArg)?;
        if let Some(name) = &self.session_keyring {
            join_session_keyring(name);
        }
        set_console_size(spec);
        if let Some(hooks) = &self.start_container_hooks
            && let Err(e) = hooks.run()
        {
            // `start` waits on the exec FIFO: it reads why, and reports it.
            if let Some(fd) = self.exec_fifo {
                let msg = format!("E{e}");
                // SAFETY: writing a buffer we own to a descriptor inherited from create.
                unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len().min(4000)) };
            }
            return Err(fail(e.to_string()));
        }
        if let Some(fd) = self.exec_fifo {
            // SAFETY: writing one byte from a static buffer to a descriptor inherited from create.
            unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        }
        if let Some(seccomp) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(&masked_eq_as_runc(seccomp))
                .map_err(|e| fail(format!("load the container's seccomp profile: {e}")))?;
        }
        if let Some(final_caps) = &self.final_caps {
            apply_final_caps(final_caps)?;
        }
        let path = find_program(&args[0], &process_env_path(spec)).ok_or_else(|| {
            fail(format!(
                "exec: {:?}: executable file not found in $PATH",
                args[0]
            ))
        })?;
        let path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let argv: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        // The environment was set by libcontainer (setup_envs) from process.env.
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        let err = nix::unistd::execv(&path, &argv).unwrap_err();
        Err(fail(format!("exec {:?}: {err}", args[0])))
    }
}

/// Joins a new session keyring so the container does not share the caller's. Failure is not
/// fatal: a seccomp profile may deny keyctl, and older kernels may lack keyrings.
fn join_session_keyring(name: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    if let Ok(name) = CString::new(name) {
        // SAFETY: keyctl with a valid NUL-terminated name; no memory is handed back.
        unsafe {
            libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr());
        }
    }
}

/// runtime-spec config.md#process: consoleSize sets the terminal's size. At this point the
/// process's stdin is the pseudo-terminal, when there is one.
fn set_console_size(spec: &Spec) {
    let Some(process) = spec.process() else {
        return;
    };
    let (Some(true), Some(size)) = (process.terminal(), process.console_size()) else {
        return;
    };
    let ws = libc::winsize {
        ws_row: size.height() as u16,
        ws_col: size.width() as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
    unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) };
}

/// SCMP_CMP_MASKED_EQ compares `(arg & value) == valueTwo` in runc and libseccomp (`value` is the mask), and
/// Docker's default profile is written that way; libcontainer 0.7 takes `valueTwo` as the mask. The two are
/// swapped before the profile is handed to it, or a rule such as Docker's clone rule would let every call through.
fn masked_eq_as_runc(seccomp: &LinuxSeccomp) -> LinuxSeccomp {
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompOperator};
    let mut out = seccomp.clone();
    let Some(syscalls) = seccomp.syscalls() else {
        return out;
    };
    let swapped: Vec<_> = syscalls
        .iter()
        .map(|call| {
            let mut call = call.clone();
            if let Some(args) = call.args() {
                let args = args
                    .iter()
                    .map(|a| {
                        if a.op() != LinuxSeccompOperator::ScmpCmpMaskedEq {
                            return *a;
                        }
                        LinuxSeccompArgBuilder::default()
                            .index(a.index())
                            .op(a.op())
                            .value(a.value_two().unwrap_or(0))
                            .value_two(a.value())
                            .build()
                            .unwrap_or(*a)
                    })
                    .collect();
                call.set_args(Some(args));
            }
            call
        })
        .collect();
    out.set_syscalls(Some(swapped));
    out
}

/// runtime-spec config-linux.md#seccomp: "names (array of strings, REQUIRED) - the names of the
/// syscalls. `names` MUST contain at least one entry." A name this host's libseccomp cannot
/// resolve (a syscall newer than it: Docker's default profile lists some that libseccomp 2.5
/// does not know) is left out, as runc leaves it out, and the container runs with the rest of the
/// profile; a rule whose names are all left out is dropped, and one warning names every syscall
/// left out.
fn known_syscalls_only(seccomp: &LinuxSeccomp) -> LinuxSeccomp {
    let (out, unknown) = drop_unknown_syscalls(seccomp, libseccomp_knows);
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.into_iter().collect();
        tracing::warn!(
            "seccomp syscalls {} are unknown to this host's libseccomp: left out of the \
             seccomp profile",
            names.join(", ")
        );
    }
    out
}

/// The profile without the names `known` refuses, and those names.
fn drop_unknown_syscalls(
    seccomp: &LinuxSeccomp,
    known: impl Fn(&str) -> bool,
) -> (LinuxSeccomp, BTreeSet<String>) {
    let mut out = seccomp.clone();
    let mut unknown = BTreeSet::new();
    let Some(syscalls) = seccomp.syscalls() else {
        return (out, unknown);
    };
    let kept: Vec<_> = syscalls
        .iter()
        .filter_map(|call| {
            let names: Vec<String> = call
                .names()
                .iter()
                .filter(|name| {
                    let keep = known(name);
                    if !keep {
                        unknown.insert(name.to_string());
                    }
                    keep
                })
                .cloned()
                .collect();
            // Only a rule whose names were all left out goes; one config.json gave without names
            // is passed on as it is.
            if names.is_empty() && !call.names().is_empty() {
                return None;
            }
            let mut call = call.clone();
            call.set_names(names);
            Some(call)
        })
        .collect();
    out.set_syscalls(Some(kept));
    (out, unknown)
}

/// Whether this host's libseccomp resolves `name` for the native architecture, as the
/// `libseccomp` crate's `ScmpSyscall::from_name` asks it. libcontainer links libseccomp (through
/// that crate), so its C function is called here directly.
fn libseccomp_knows(name: &str) -> bool {
    // SAFETY: the declaration matches seccomp.h: `int seccomp_syscall_resolve_name(const char *)`.
    unsafe extern "C" {
        /// The syscall's number (negative for a pseudo-syscall), or __NR_SCMP_ERROR.
        fn seccomp_syscall_resolve_name(name: *const libc::c_char) -> libc::c_int;
    }
    const NR_SCMP_ERROR: libc::c_int = -1;
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string that outlives the call; libseccomp keeps no pointer to it.
    unsafe { seccomp_syscall_resolve_name(name.as_ptr()) != NR_SCMP_ERROR }
}

#[cfg(test)]
mod masked_eq_tests {
    use super::*;

    #[test]
    fn masked_eq_arguments_are_swapped_for_libcontainer() {
        let seccomp: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                {"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}
            ]}]
        }))
        .unwrap();
        let out = masked_eq_as_runc(&seccomp);
        let args = out.syscalls().as_ref().unwrap()[0].args().clone().unwrap();
        assert_eq!(
            (args[0].value(), args[0].value_two()),
            (0, Some(2114060288))
        );
        assert_eq!((args[1].value(), args[1].value_two()), (5, None));
    }
}

#[cfg(test)]
mod unknown_syscall_tests {
    use super::*;

    #[test]
    fn unknown_syscall_names_are_left_out() {
        let seccomp: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["polis_no_such_syscall", "getpid"], "action": "SCMP_ACT_LOG"},
                {"names": ["polis_no_such_syscall_either"], "action": "SCMP_ACT_KILL"},
                {"names": ["mkdir", "polis_no_such_syscall"], "action": "SCMP_ACT_ERRNO",
                 "errnoRet": 1, "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]}
            ]
        }))
        .unwrap();
        let (out, unknown) = drop_unknown_syscalls(&seccomp, libseccomp_knows);
        assert_eq!(
            unknown.into_iter().collect::<Vec<_>>(),
            ["polis_no_such_syscall", "polis_no_such_syscall_either"]
        );
        let calls = out.syscalls().as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].names(), &["getpid"]);
        assert_eq!(calls[1].names(), &["mkdir"]);
        assert_eq!(calls[1].errno_ret(), Some(1));
        assert_eq!(
            calls[1].args(),
            seccomp.syscalls().as_ref().unwrap()[2].args()
        );
        assert_eq!(out.default_action(), seccomp.default_action());
    }

    #[test]
    fn known_syscall_names_leave_the_profile_as_it_was() {
        let seccomp: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write", "mkdirat"], "action": "SCMP_ACT_ALLOW"}]
        }))
        .unwrap();
        let (out, unknown) = drop_unknown_syscalls(&seccomp, libseccomp_knows);
        assert!(unknown.is_empty());
        assert_eq!(out, seccomp);
    }
}
