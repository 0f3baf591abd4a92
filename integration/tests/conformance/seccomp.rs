//! runtime-spec config-linux.md#seccomp.

use polis_integration::*;

/// A profile allowing everything but `rules`.
fn allow_all_but(rules: Value) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules})
}

fn probe(rt: &Runtime, b: &Bundle) -> Value {
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

conformance_test!(
    /// config-linux.md#seccomp: "errnoRet (uint, OPTIONAL) - the errno return code to use." A syscall ruled
    /// SCMP_ACT_ERRNO fails with that errno (EPERM).
    errno_eperm,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EPERM);
        assert!(!b.rootfs().join("tmp/blocked").exists());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: `args` with `op` SCMP_CMP_MASKED_EQ compare `(arg & value) == valueTwo`: `value` is
    /// the mask and `valueTwo` the datum, as runc and libseccomp (`SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, datum)`)
    /// read them, and as Docker's default profile writes its clone rule. personality(0x0008) matches
    /// `(0x0008 & 0xff) == 0x08` and is refused.
    masked_eq_value_is_the_mask,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}])),
        );
        b.probe(&["syscall", "personality", "8"]);
        assert_eq!(probe(rt, &b)["errno"], libc::EPERM);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: SCMP_CMP_MASKED_EQ lets through what does not match: personality(0xffffffff) (a
    /// query) is `(0xffffffff & 0xff) == 0xff`, not 0x08.
    masked_eq_lets_other_values_through,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}])),
        );
        b.probe(&["syscall", "personality", "4294967295"]);
        assert_eq!(probe(rt, &b)["errno"], 0);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: errnoRet is returned as configured (38, ENOSYS), not a fixed value.
    errno_custom,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}])),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        assert_eq!(probe(rt, &b)["errno"], 38);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "defaultAction (string, REQUIRED) the default action for seccomp." Syscalls no rule
    /// names take the default action (SCMP_ACT_ALLOW): other syscalls keep working.
    default_allow_unaffected,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])),
        );
        b.probe(&["syscall", "chmod", "/tmp", "0o1777"]);
        assert_eq!(probe(rt, &b)["errno"], 0);
    }
);

conformance_test!(
    /// config-linux.md#seccomp: with a seccomp profile the process runs in filter mode (Seccomp: 2).
    filter_mode_active,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", allow_all_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])));
        b.probe(&["report"]);
        assert_eq!(probe(rt, &b)["Seccomp"], "2");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: without linux.seccomp no filter is installed (Seccomp: 0).
    no_profile_no_filter,
    |rt| {
        let mut b = Bundle::new();
        b.remove("/linux/seccomp");
        b.probe(&["report"]);
        assert_eq!(probe(rt, &b)["Seccomp"], "0");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "args (array of objects, OPTIONAL) - the specific syscall in seccomp": a rule with an
    /// argument condition (chmod mode == 0777) blocks only matching calls.
    args_condition,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{
                "names": ["chmod", "fchmodat"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 13,
                "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]
            }])),
        );
        std::fs::write(b.rootfs().join("tmp/f"), "x").unwrap();
        std::fs::set_permissions(b.rootfs().join("tmp/f"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        b.sh("polis-probe syscall chmod /tmp/f 0o777; polis-probe syscall chmod /tmp/f 0o644");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["errno"], 13, "{out}");
        assert_eq!(lines[1]["errno"], 0, "{out}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "SCMP_ACT_KILL" kills the process that makes the call (SIGSYS; `run` exits 128+31).
    action_kill,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}])));
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let c = rt.container();
        let out = c.run(&b);
        assert_eq!(out.code, Some(128 + libc::SIGSYS), "{out}");
        assert!(!b.rootfs().join("tmp/blocked").exists());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: a rule with several names applies to each of them.
    several_names_in_rule,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["sethostname", "setdomainname", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}])),
        );
        let caps = json!(["CAP_SYS_ADMIN"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        b.sh("polis-probe syscall sethostname x; polis-probe syscall mkdir /tmp/d");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let lines: Vec<Value> = out.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines[0]["errno"], 95, "{out}");
        assert_eq!(lines[1]["errno"], 95, "{out}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp with config.md#process: a process started by `exec` in the container gets the same
    /// seccomp profile as the container's process.
    exec_gets_profile,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}])),
        );
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let out = c.exec(&["/bin/polis-probe", "syscall", "mkdir", "/tmp/from-exec"]);
        out.ok();
        assert_eq!(out.json()["errno"], 38, "{out}");
        let out = c.exec(&["/bin/polis-probe", "report"]);
        out.ok();
        assert_eq!(out.json()["Seccomp"], "2", "{out}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: a default action of SCMP_ACT_ERRNO with an allow list: a syscall not allowed fails
    /// with the default errnoRet, listed ones work.
    default_errno_with_allowlist,
    |rt| {
        let mut b = Bundle::new();
        // Everything the probe and the runtime's final exec need, except mkdir.
        let allowed = [
            "execve", "execveat", "brk", "mmap", "munmap", "mprotect", "arch_prctl", "set_tid_address",
            "set_robust_list", "rseq", "prlimit64", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
            "poll", "ppoll", "write", "writev", "read", "exit", "exit_group", "getrandom", "futex", "sched_getaffinity",
            "close", "fstat", "newfstatat", "statx", "readlink", "readlinkat", "openat", "open", "ioctl", "fcntl",
            "getpid", "gettid", "tgkill", "madvise", "uname", "capget", "capset", "prctl", "setgroups", "setuid",
            "setgid", "setresuid", "setresgid", "getppid", "getuid", "geteuid", "getgid", "getegid", "lseek",
            "mremap", "clone", "clone3", "wait4", "nanosleep", "clock_nanosleep", "seccomp", "fchdir", "chdir",
            "getcwd", "dup", "dup2", "dup3", "pipe2", "getdents64", "umask", "access", "faccessat", "faccessat2",
            "fstatfs", "statfs", "close_range", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait", "stat",
            "lstat", "sched_yield", "pread64", "pselect6", "select", "kill", "getpgrp", "setsid", "fchown", "fchmod",
        ];
        b.set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": allowed.to_vec(), "action": "SCMP_ACT_ALLOW"}]
            }),
        );
        b.set("/process/noNewPrivileges", json!(true));
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let v = probe(rt, &b);
        assert_eq!(v["errno"], libc::EPERM, "{v}");
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "SCMP_ACT_KILL_PROCESS" kills the whole process (SIGSYS; `run` exits 128+31).
    action_kill_process,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}])),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let out = rt.container().run(&b);
        assert_eq!(out.code, Some(128 + libc::SIGSYS), "{out}");
        assert!(!b.rootfs().join("tmp/blocked").exists());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "SCMP_ACT_LOG" lets the call through (and logs it): mkdir succeeds.
    action_log_allows,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", allow_all_but(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}])));
        b.probe(&["syscall", "mkdir", "/tmp/logged"]);
        let out = rt.container().run(&b);
        out.ok();
        assert_eq!(out.json()["errno"], 0, "{out}");
        assert!(b.rootfs().join("tmp/logged").is_dir());
    }
);

conformance_test!(
    /// config-linux.md#seccomp: "architectures (array of strings, OPTIONAL) the architecture used for system calls":
    /// a profile listing the native and compatible architectures applies its rules to native calls.
    several_architectures,
    |rt| {
        let mut b = Bundle::new();
        b.set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30}]
            }),
        );
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let out = rt.container().run(&b);
        out.ok();
        assert_eq!(out.json()["errno"], 30, "{out}");
    }
);

/// A profile whose rules name syscalls libseccomp does not know: a rule with an unknown and a known name, one with
/// only unknown names, and the deny rule for mkdir (errnoRet 1, EPERM) with an unknown name among its own.
fn profile_with_unknown_names() -> Value {
    allow_all_but(json!([
        {"names": ["polis_no_such_syscall", "getpid"], "action": "SCMP_ACT_LOG"},
        {"names": ["polis_no_such_syscall_either"], "action": "SCMP_ACT_KILL"},
        {"names": ["mkdir", "polis_no_such_syscall", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    ]))
}

conformance_test!(
    /// config-linux.md#seccomp: "names (array of strings, REQUIRED) - the names of the syscalls." A name the host's
    /// libseccomp does not know (a syscall newer than it, as Docker's default profile lists) is skipped, as runc
    /// skips it: the container runs, a rule left with no name is dropped, and the rules for known syscalls still
    /// apply (mkdir fails with the errnoRet asked). polis-runc warns, naming the skipped syscalls.
    unknown_syscall_names_are_skipped,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", profile_with_unknown_names());
        b.probe(&["syscall", "mkdir", "/tmp/blocked"]);
        let out = rt.container().run(&b);
        out.ok();
        assert_eq!(out.json()["errno"], libc::EPERM, "{out}");
        assert!(!b.rootfs().join("tmp/blocked").exists());
        if rt.is_polis() {
            out.stderr_mentions("polis_no_such_syscall,").stderr_mentions("polis_no_such_syscall_either");
        }
    }
);

conformance_test!(
    /// config-linux.md#seccomp with config.md#process: a process started by `exec` gets the container's profile with
    /// the syscall names the host's libseccomp does not know skipped, as runc skips them: the exec succeeds and mkdir
    /// fails with the errnoRet asked.
    unknown_syscall_names_are_skipped_for_exec,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/seccomp", profile_with_unknown_names());
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let out = c.exec(&["/bin/polis-probe", "syscall", "mkdir", "/tmp/from-exec"]);
        out.ok();
        assert_eq!(out.json()["errno"], libc::EPERM, "{out}");
        assert!(!b.rootfs().join("tmp/from-exec").exists());
        if rt.is_polis() {
            out.stderr_mentions("polis_no_such_syscall");
        }
    }
);
