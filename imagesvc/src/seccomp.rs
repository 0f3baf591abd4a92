//! The default seccomp profile of containers made from images (runtime-spec config-linux.md "Seccomp").
//!
//! Everything is allowed except the system calls that reach past the container into the host kernel's global
//! state: kernel modules, kexec, reboot, swap, clocks, accounting, quotas, keyrings, BPF and perf, mounting and
//! namespaces (the container's own capabilities do not include CAP_SYS_ADMIN anyway), file handles (the
//! open_by_handle_at escape), userfaultfd, io_uring, and obsolete calls. They fail with EPERM, as under Docker's
//! profile. Docker's profile lists what is allowed instead; a deny list keeps new harmless system calls working
//! and is short enough to review.

use serde_json::{Value, json};

pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
];

fn architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => vec![],
    }
}

pub fn default_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": [{
            "names": DENIED,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM
        }]
    })
}
