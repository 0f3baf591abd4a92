//! config-linux.md#seccomp: the profile as polis-runc hands it to libseccomp (through
//! libcontainer's seccomp module, which compiles it), fixed where the two read the spec differently:
//! - SCMP_CMP_MASKED_EQ's operands are swapped into runc's order (masked_eq_as_runc);
//! - syscall names this host's libseccomp does not know are left out, with one warning that
//!   names them, in polis-runc's log rather than on the container's stderr (known_syscalls_only).
//!
//! And the agent of SCMP_ACT_NOTIFY rules: each process's listener goes to the socket at
//! `listenerPath` with the container process state (send_to_listener).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

/// Whether a rule of the profile notifies an agent (SCMP_ACT_NOTIFY).
pub use libcontainer::seccomp::is_notify;

/// The profile to load for a container's processes: None without one. A profile with
/// SCMP_ACT_NOTIFY rules is checked here, before anything is made: it needs `listenerPath`, and
/// the calls the hand-over of the listener makes itself cannot wait for the agent that is to get it.
pub fn profile_to_load(spec: &oci_spec::runtime::Spec) -> crate::Result<Option<LinuxSeccomp>> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    check_notify(seccomp).map_err(|e| crate::Error::Invalid(format!("linux.seccomp: {e}")))?;
    Ok(Some(masked_eq_as_runc(&known_syscalls_only(seccomp))))
}

/// The calls a process makes between loading its profile and handing its listener over (the
/// message to polis-runc); a rule that notified on them would wait for ever.
const HAND_OVER_CALLS: [&str; 3] = ["write", "sendmsg", "sendto"];

fn check_notify(seccomp: &LinuxSeccomp) -> Result<(), String> {
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(
            "defaultAction SCMP_ACT_NOTIFY is not supported (as in runc): the process \
                    could not hand its listener over"
                .into(),
        );
    }
    if !is_notify(seccomp) {
        return Ok(());
    }
    // "If no listenerPath is given but the action is used, the runtime MUST generate an error."
    if seccomp
        .listener_path()
        .as_ref()
        .is_none_or(|p| p.as_os_str().is_empty())
    {
        return Err(
            "SCMP_ACT_NOTIFY rules need listenerPath, the socket of the agent that \
                    handles them"
                .into(),
        );
    }
    let notified = seccomp
        .syscalls()
        .iter()
        .flatten()
        .filter(|c| c.action() == LinuxSeccompAction::ScmpActNotify)
        .flat_map(|c| c.names())
        .find(|n| HAND_OVER_CALLS.contains(&n.as_str()));
    if let Some(name) = notified {
        return Err(format!(
            "SCMP_ACT_NOTIFY on {name} is not supported: the process makes that call to hand \
             its listener over"
        ));
    }
    Ok(())
}

/// runtime.md's container process state, which goes with a listener (config-linux.md#seccomp);
/// `state` is the container's state as hooks get it.
#[derive(serde::Serialize)]
struct ContainerProcessState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    fds: [&'a str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    metadata: &'a str,
    state: &'a libcontainer::container::State,
}

/// config-linux.md#seccomp listenerPath: "the runtime will send the container process state data
/// structure when the SCMP_ACT_NOTIFY action is used. This socket MUST use AF_UNIX domain and
/// SOCK_STREAM type. The runtime MUST send exactly one container process state per connection.
/// The connection MUST NOT be reused and it MUST be closed after sending a seccomp state. If
/// sending to this socket fails, the runtime MUST generate an error." The listener goes with the
/// state as SCM_RIGHTS, named "seccompFd" in `fds`.
pub fn send_to_listener(
    seccomp: &LinuxSeccomp,
    pid: i32,
    state: &libcontainer::container::State,
    listener: &OwnedFd,
) -> Result<(), String> {
    let path = seccomp.listener_path().as_deref().unwrap_or(Path::new(""));
    let message = serde_json::to_vec(&ContainerProcessState {
        oci_version: crate::OCI_VERSION,
        fds: ["seccompFd"],
        pid,
        metadata: seccomp.listener_metadata().as_deref().unwrap_or(""),
        state,
    })
    .map_err(|e| e.to_string())?;
    let fail = |e: &dyn std::fmt::Display| {
        format!(
            "send the seccomp listener to linux.seccomp.listenerPath {}: {e}",
            path.display()
        )
    };
    let conn = UnixStream::connect(path).map_err(|e| fail(&e))?;
    let fds = [listener.as_raw_fd()];
    let mut sent = 0;
    while sent < message.len() {
        let cmsgs = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let n = nix::sys::socket::sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(&message[sent..])],
            if sent == 0 { &cmsgs } else { &[] },
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match n {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(fail(&e)),
        }
    }
    Ok(())
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

#[cfg(test)]
mod notify_tests {
    use super::*;

    fn profile(value: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn notify_rules_need_a_listener_path_and_spare_the_hand_over() {
        let rule = |name: &str| serde_json::json!([{"names": [name], "action": "SCMP_ACT_NOTIFY"}]);
        let with_path = |name: &str| {
            profile(
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                "syscalls": rule(name)}),
            )
        };
        assert!(check_notify(&with_path("mkdir")).is_ok());
        for call in HAND_OVER_CALLS {
            let e = check_notify(&with_path(call)).unwrap_err();
            assert!(e.contains(call), "{e}");
        }
        let no_path = profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rule("mkdir")}),
        );
        assert!(check_notify(&no_path).unwrap_err().contains("listenerPath"));
        let default = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY",
            "listenerPath": "/run/agent.sock"}));
        assert!(
            check_notify(&default)
                .unwrap_err()
                .contains("defaultAction")
        );
        let plain = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        assert!(check_notify(&plain).is_ok() && !is_notify(&plain));
    }
}
