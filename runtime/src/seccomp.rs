//! config-linux.md#seccomp: the profile as polis-runc hands it to libseccomp (through
//! libcontainer's seccomp module, which compiles it), fixed where the two read the spec differently:
//! - SCMP_CMP_MASKED_EQ's operands are swapped into runc's order (masked_eq_as_runc);
//! - syscall names this host's libseccomp does not know are left out, with one warning that
//!   names them, in polis-runc's log rather than on the container's stderr (known_syscalls_only).

use std::collections::BTreeSet;
use std::ffi::CString;

use oci_spec::runtime::LinuxSeccomp;

/// The profile to load for a container's processes: None without one. Profiles that notify a
/// listener (SCMP_ACT_NOTIFY) are refused: polis-runc does not pass the listener its descriptor.
pub fn profile_to_load(spec: &oci_spec::runtime::Spec) -> crate::Result<Option<LinuxSeccomp>> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    if libcontainer::seccomp::is_notify(seccomp) {
        return Err(crate::Error::Invalid(
            "linux.seccomp: SCMP_ACT_NOTIFY (a seccomp listener) is not supported".into(),
        ));
    }
    Ok(Some(masked_eq_as_runc(&known_syscalls_only(seccomp))))
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
