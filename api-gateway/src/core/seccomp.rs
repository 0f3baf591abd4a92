//! The default seccomp profile of the containers polisd makes (runtime-spec config-linux.md "Seccomp"), behaving as
//! Docker's: an allow list. A system call that is not listed fails with EPERM; the calls a Linux userland needs are
//! allowed; those that reach into the host kernel's global state are allowed only to a container holding the
//! capability the kernel would check anyway (mount with CAP_SYS_ADMIN, reboot with CAP_SYS_BOOT, ...), and some
//! (kexec, keyrings, io_uring, userfaultfd, obsolete calls) never. clone may not make namespaces without
//! CAP_SYS_ADMIN, and clone3, whose flags a filter cannot read, fails with ENOSYS then so that libcs fall back to
//! clone. Only names libseccomp 2.5 knows are listed (polis-runc, like runc, leaves unknown names out with a warning).

use serde_json::{Value, json};

/// Allowed to every container, on every architecture.
const ALLOWED: &[&str] = &[
    // Files and descriptors.
    "_llseek",
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "ioctl",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pipe",
    "pipe2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    // Asynchronous I/O (not io_uring).
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    // Waiting for descriptors.
    "_newselect",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    // Memory.
    "brk",
    "cachestat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "process_mrelease",
    "remap_file_pages",
    // Signals.
    "alarm",
    "kill",
    "pause",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaction",
    "sigaltstack",
    "signal",
    "signalfd",
    "signalfd4",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "tgkill",
    "tkill",
    // Processes and threads (clone and clone3 have rules of their own).
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "ioprio_get",
    "ioprio_set",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setpgid",
    "setpriority",
    "setrlimit",
    "setsid",
    "times",
    "ugetrlimit",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    // Users and groups.
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
    // Futexes.
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // Sockets (raw ones need CAP_NET_RAW, which the kernel checks).
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socket",
    "socketcall",
    "socketpair",
    // System V and POSIX IPC (the container's IPC namespace).
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // Time and timers (reading the clocks; setting them is CAP_SYS_TIME's).
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // The system; the host and domain names are the container's UTS namespace's.
    "getrandom",
    "setdomainname",
    "sethostname",
    "sysinfo",
    "uname",
];

/// Allowed on x86 (x86_64, x32, i386) hosts only.
const ALLOWED_X86: &[&str] = &["arch_prctl", "modify_ldt"];

/// Allowed on arm (aarch64, arm) hosts only.
const ALLOWED_ARM: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// The calls a capability unlocks: one of the capabilities, then the calls.
const BY_CAPABILITY: &[(&[&str], &[&str])] = &[
    (
        &["CAP_SYS_ADMIN"],
        &[
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setns",
            "umount2",
            "unshare",
        ],
    ),
    (&["CAP_BPF", "CAP_SYS_ADMIN"], &["bpf"]),
    (&["CAP_PERFMON", "CAP_SYS_ADMIN"], &["perf_event_open"]),
    (&["CAP_DAC_READ_SEARCH"], &["open_by_handle_at"]),
    (&["CAP_SYS_BOOT"], &["reboot"]),
    (&["CAP_SYS_CHROOT"], &["chroot"]),
    (
        &["CAP_SYS_MODULE"],
        &["delete_module", "finit_module", "init_module"],
    ),
    (&["CAP_SYS_PACCT"], &["acct"]),
    (
        &["CAP_SYS_PTRACE"],
        &[
            "kcmp",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (&["CAP_SYS_RAWIO"], &["ioperm", "iopl"]),
    (
        &["CAP_SYS_TIME"],
        &[
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
            "clock_settime",
            "clock_settime64",
            "settimeofday",
            "stime",
        ],
    ),
    (&["CAP_SYS_TTY_CONFIG"], &["vhangup"]),
    (
        &["CAP_SYS_NICE"],
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (&["CAP_SYSLOG"], &["syslog"]),
];

/// The personality(2) arguments allowed, as Docker's: PER_LINUX (0x0), PER_LINUX32 (0x8), each with UNAME26
/// (0x20000), and 0xffffffff, which only queries the current personality.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The clone flags that make namespaces: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
pub const CLONE_NAMESPACES: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

fn architectures() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" | "x86" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" | "arm" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => &[],
    }
}

fn arch_allowed() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" | "x86" => ALLOWED_X86,
        "aarch64" | "arm" => ALLOWED_ARM,
        _ => &[],
    }
}

/// Whether the running kernel is at least `major.minor` (unknown: assumed recent).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(ma), Some(mi)) => (ma, mi) >= (major, minor),
        _ => true,
    }
}

/// The `linux.seccomp` object for a container whose process has the capabilities `caps` (`CAP_...` names).
pub fn default_profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let sys_admin = has("CAP_SYS_ADMIN");
    let mut allowed: Vec<&str> = ALLOWED.iter().chain(arch_allowed()).copied().collect();
    // Since 4.8 seccomp filters are re-run after a tracer changes a call, so ptrace cannot bypass the profile.
    if kernel_at_least(4, 8) {
        allowed.extend(["ptrace"]);
    }
    let mut rules = vec![];
    for (needed, names) in BY_CAPABILITY {
        if needed.iter().any(|c| has(c)) {
            for n in *names {
                if !allowed.contains(n) {
                    allowed.push(n);
                }
            }
        }
    }
    if sys_admin {
        allowed.extend(["clone", "clone3"]);
    } else {
        // MASKED_EQ reads (arg & value) == valueTwo, as runc, crun and Docker's profile do. (libcontainer 0.7,
        // under polis-runc, reads value and valueTwo the other way round: the rule then allows every clone.)
        rules.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
        }));
        rules.push(
            json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        );
    }
    for p in PERSONALITIES {
        rules.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]
        }));
    }
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    syscalls.extend(rules);
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": architectures(),
        "syscalls": syscalls
    })
}

/// The architecture names Docker's profiles use for this machine: Go's (`includes.arches`, `excludes.arches`) and
/// libseccomp's (`archMap[].architecture`).
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        other => (other, ""),
    }
}

/// Whether the running kernel is at least `version` ("MAJOR.MINOR", a profile's `minKernel`).
fn kernel_at_least_text(version: &str) -> Result<bool, String> {
    let bad = || format!("invalid minKernel {version:?} in the seccomp profile");
    let (major, minor) = version.split_once('.').ok_or_else(bad)?;
    let minor = minor.split('.').next().unwrap_or_default();
    Ok(kernel_at_least(
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// A profile in Docker's format (`docker run --security-opt seccomp=FILE`: the CLI sends the file's text) as the
/// `linux.seccomp` of a process with the capabilities `caps`, converted as dockerd's `setupSeccomp` does: `archMap`
/// gives the architectures (this machine's and its sub-architectures), `name` becomes `names`, and a rule applies
/// only when its `includes` (all of `caps`, one of `arches`, `minKernel` at most the running kernel) hold and its
/// `excludes` (any of `caps`, one of `arches`, `minKernel`) do not.
pub fn from_docker(profile: &Value, caps: &[String]) -> Result<Value, String> {
    let p = profile
        .as_object()
        .ok_or("the seccomp profile is not a JSON object")?;
    let mut out = serde_json::Map::new();
    if !p.get("defaultAction").is_some_and(Value::is_string) {
        return Err("the seccomp profile has no defaultAction".into());
    }
    for key in [
        "defaultAction",
        "defaultErrnoRet",
        "listenerPath",
        "listenerMetadata",
        "flags",
    ] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (go_arch, scmp_arch) = native_arch();
    let mut arches = list(p.get("architectures"));
    let arch_map = p.get("archMap").and_then(Value::as_array);
    if let Some(map) = arch_map.filter(|m| !m.is_empty()) {
        if !arches.is_empty() {
            return Err("the seccomp profile gives both 'architectures' and 'archMap'".into());
        }
        for a in map.iter().filter(|a| a["architecture"] == scmp_arch) {
            arches.push(scmp_arch.into());
            arches.extend(list(a.get("subArchitectures")));
        }
    }
    if !arches.is_empty() {
        out.insert("architectures".into(), json!(arches));
    }
    let has = |c: &String| caps.iter().any(|x| x.eq_ignore_ascii_case(c));
    let mut syscalls = vec![];
    for call in p
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = call["name"].as_str().filter(|n| !n.is_empty());
        let mut names = list(call.get("names"));
        match name {
            Some(_) if !names.is_empty() => {
                return Err("a seccomp rule gives both 'name' and 'names'".into());
            }
            Some(n) => names.push(n.into()),
            None => {}
        }
        let (inc, exc) = (&call["includes"], &call["excludes"]);
        let excluded = list(exc.get("arches")).iter().any(|a| a == go_arch)
            || list(exc.get("caps")).iter().any(has)
            || match exc["minKernel"].as_str().filter(|k| !k.is_empty()) {
                Some(k) => kernel_at_least_text(k)?,
                None => false,
            };
        let inc_arches = list(inc.get("arches"));
        let included = (inc_arches.is_empty() || inc_arches.iter().any(|a| a == go_arch))
            && list(inc.get("caps")).iter().all(has)
            && match inc["minKernel"].as_str().filter(|k| !k.is_empty()) {
                Some(k) => kernel_at_least_text(k)?,
                None => true,
            };
        if excluded || !included || names.is_empty() {
            continue;
        }
        let mut rule = json!({"names": names, "action": call["action"]});
        for key in ["errnoRet", "args"] {
            if let Some(v) = call.get(key).filter(|v| !v.is_null()) {
                rule[key] = v.clone();
            }
        }
        syscalls.push(rule);
    }
    out.insert("syscalls".into(), json!(syscalls));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker's default capabilities.
    fn docker_caps() -> Vec<String> {
        polis_imagesvc::spec::DEFAULT_CAPABILITIES
            .map(String::from)
            .to_vec()
    }

    /// The rules naming `name`.
    fn rules<'a>(profile: &'a Value, name: &str) -> Vec<&'a Value> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
            .collect()
    }

    /// Whether `name` is allowed unconditionally.
    fn allowed(profile: &Value, name: &str) -> bool {
        rules(profile, name)
            .iter()
            .any(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
    }

    #[test]
    fn the_default_is_eperm_and_ordinary_calls_are_allowed() {
        let p = default_profile(&docker_caps());
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        for name in [
            "read", "write", "execve", "openat", "socket", "chroot", "ptrace",
        ] {
            assert!(allowed(&p, name), "{name}");
        }
        for name in [
            "kexec_load",
            "keyctl",
            "io_uring_setup",
            "userfaultfd",
            "mount",
            "bpf",
        ] {
            assert!(rules(&p, name).is_empty(), "{name}");
        }
    }

    #[test]
    fn capabilities_unlock_their_calls() {
        let p = default_profile(&["CAP_SYS_ADMIN".to_string()]);
        for name in [
            "mount", "umount2", "unshare", "setns", "bpf", "clone", "clone3",
        ] {
            assert!(allowed(&p, name), "{name}");
        }
        assert!(!allowed(&p, "chroot"));
        assert!(!allowed(&p, "open_by_handle_at"));
        let p = default_profile(&["CAP_BPF".to_string(), "CAP_SYS_TIME".to_string()]);
        assert!(allowed(&p, "bpf") && allowed(&p, "clock_settime"));
        assert!(!allowed(&p, "mount"));
    }

    #[test]
    fn clone_may_not_make_namespaces_without_sys_admin() {
        let p = default_profile(&docker_caps());
        assert!(!allowed(&p, "clone"));
        let clone = rules(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["action"], "SCMP_ACT_ALLOW");
        let arg = &clone[0]["args"][0];
        assert_eq!(arg["index"], 0);
        assert_eq!(arg["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(arg["value"], 0x7e02_0000u64);
        assert_eq!(arg["valueTwo"], 0);
        let clone3 = rules(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], libc::ENOSYS);
    }

    #[test]
    fn personality_takes_only_dockers_values() {
        let p = default_profile(&docker_caps());
        let values: Vec<u64> = rules(&p, "personality")
            .iter()
            .map(|r| {
                assert_eq!(r["action"], "SCMP_ACT_ALLOW");
                assert_eq!(r["args"][0]["op"], "SCMP_CMP_EQ");
                assert_eq!(r["args"][0]["index"], 0);
                r["args"][0]["value"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(values, [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn names_are_listed_once() {
        let mut all: Vec<&str> = ALLOWED
            .iter()
            .chain(ALLOWED_X86)
            .chain(ALLOWED_ARM)
            .chain(BY_CAPABILITY.iter().flat_map(|(_, n)| n.iter()))
            .copied()
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn dockers_profile_format_is_converted() {
        let (go_arch, scmp_arch) = native_arch();
        let docker = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": scmp_arch, "subArchitectures": ["SCMP_ARCH_SUB"]},
                {"architecture": "SCMP_ARCH_OTHER", "subArchitectures": ["SCMP_ARCH_NOPE"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "x", "includes": {}, "excludes": {}},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
                 "args": [{"index": 0, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["here"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": [go_arch]}},
                {"names": ["there"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["nowhere"]}},
                {"names": ["old"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "2.6"}},
                {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "999.0"}}
            ]
        });
        let p = from_docker(&docker, &["CAP_CHOWN".to_string()]).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(p["architectures"], json!([scmp_arch, "SCMP_ARCH_SUB"]));
        let names: Vec<&Value> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["names"])
            .collect();
        assert_eq!(
            names,
            [
                &json!(["read", "write"]),
                &json!(["mkdir"]),
                &json!(["clone"]),
                &json!(["here"]),
                &json!(["old"])
            ]
        );
        assert_eq!(p["syscalls"][1]["errnoRet"], 13);
        assert_eq!(p["syscalls"][2]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert!(p["syscalls"][0].get("comment").is_none());
        let admin = from_docker(&docker, &["CAP_SYS_ADMIN".to_string()]).unwrap();
        assert!(
            admin["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["names"] == json!(["mount"]))
        );
        assert!(
            !admin["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["names"] == json!(["clone"]))
        );
        assert!(from_docker(&json!({"syscalls": []}), &[]).is_err());
        assert!(from_docker(&json!([1]), &[]).is_err());
        let both = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], "archMap": docker["archMap"]});
        assert!(from_docker(&both, &[]).is_err());
    }

    /// `cargo test -p polisd -- --ignored print_default_profile --nocapture` (POLIS_CAPS=CAP_A,CAP_B to choose).
    #[test]
    #[ignore]
    fn print_default_profile() {
        let caps = std::env::var("POLIS_CAPS")
            .map(|c| c.split(',').map(String::from).collect())
            .unwrap_or_else(|_| docker_caps());
        println!("{}", default_profile(&caps));
    }
}
