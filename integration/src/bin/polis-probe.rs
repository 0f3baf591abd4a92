//! `polis-probe`: the static binary that conformance tests run inside a container to look at the container from
//! within. Each subcommand prints one JSON object on stdout. std + libc only, so that it links statically and runs in
//! a rootfs that holds nothing but busybox.
//!
//! Subcommands:
//! - `report`: identity, process attributes, capabilities, limits, namespaces and mounts of the probe itself
//! - `args ARG...`: the argv it was started with
//! - `syscall NAME [ARG...]`: try one syscall and print the errno it got (0 on success)
//! - `read PATH`, `write PATH [DATA]`, `stat PATH`: file access and the errno it got
//! - `sleep SECS`, `exit CODE`
//! - `signal-wait`: print `{"ready":true}`, wait for a signal, print its number
//! - `tty`: whether stdin/stdout/stderr are terminals, and the terminal's size
//! - `fds`: the open file descriptors (other than the one reading /proc/self/fd) and what they point at

use std::ffi::CString;
use std::fmt::Write as _;
use std::io::Write as _;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sub = args.get(1).map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(2)..];
    let code = match sub {
        "report" => {
            emit(&report());
            0
        }
        "args" => {
            emit(&format!("{{\"args\":{}}}", json_str_array(&args)));
            0
        }
        "syscall" => syscall(rest),
        "read" => read(rest),
        "write" => write(rest),
        "stat" => stat(rest),
        "sleep" => {
            let secs: u64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(1);
            // The probe's `sleep` command itself (a container process that stays alive), not synchronisation.
            std::thread::sleep(std::time::Duration::from_secs(secs));
            0
        }
        "exit" => rest.first().and_then(|s| s.parse().ok()).unwrap_or(0),
        "signal-wait" => signal_wait(),
        "tty" => {
            emit(&tty());
            0
        }
        "fds" => {
            emit(&fds());
            0
        }
        _ => {
            eprintln!(
                "usage: polis-probe report|args|syscall NAME|read PATH|write PATH|stat PATH|sleep SECS|exit CODE|signal-wait"
            );
            2
        }
    };
    std::process::exit(code);
}

fn emit(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_str_array<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| json_str(s.as_ref())).collect();
    format!("[{}]", parts.join(","))
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// The value of one `Key:\tvalue` line of /proc/self/status.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn utsname() -> (String, String) {
    // SAFETY: uname fills a zeroed struct we own.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.nodename), field(&u.domainname))
}

fn report() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut o = String::from("{");
    // SAFETY: these getters cannot fail.
    let (uid, gid, euid, egid, pid, ppid) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
            libc::getpid(),
            libc::getppid(),
        )
    };
    let _ = write!(
        o,
        "\"uid\":{uid},\"gid\":{gid},\"euid\":{euid},\"egid\":{egid},\"pid\":{pid},\"ppid\":{ppid}"
    );
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: the buffer holds 256 entries.
    let n = unsafe { libc::getgroups(256, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    let g: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let _ = write!(o, ",\"groups\":[{}]", g.join(","));
    let _ = write!(
        o,
        ",\"umask\":{}",
        json_str(&status_field(&status, "Umask"))
    );
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = write!(o, ",\"cwd\":{}", json_str(&cwd));
    let (host, domain) = utsname();
    let _ = write!(
        o,
        ",\"hostname\":{},\"domainname\":{}",
        json_str(&host),
        json_str(&domain)
    );
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    let _ = write!(o, ",\"env\":{}", json_str_array(&env));
    for key in [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ] {
        let _ = write!(o, ",\"{key}\":{}", json_str(&status_field(&status, key)));
    }
    let resources: [(&str, u32); 16] = [
        ("RLIMIT_CPU", libc::RLIMIT_CPU),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        ("RLIMIT_DATA", libc::RLIMIT_DATA),
        ("RLIMIT_STACK", libc::RLIMIT_STACK),
        ("RLIMIT_CORE", libc::RLIMIT_CORE),
        ("RLIMIT_RSS", libc::RLIMIT_RSS),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        ("RLIMIT_AS", libc::RLIMIT_AS),
        ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        ("RLIMIT_NICE", libc::RLIMIT_NICE),
        ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ];
    let mut rl = Vec::new();
    for (name, res) in resources {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: lim is a valid out-pointer.
        unsafe { libc::getrlimit(res, &mut lim) };
        rl.push(format!("\"{name}\":[{},{}]", lim.rlim_cur, lim.rlim_max));
    }
    let _ = write!(o, ",\"rlimits\":{{{}}}", rl.join(","));
    let oom = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
    let _ = write!(
        o,
        ",\"oom_score_adj\":{}",
        oom.trim().parse::<i64>().unwrap_or(i64::MIN)
    );
    let mut ns = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/ns") {
        let mut names: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let target = std::fs::read_link(format!("/proc/self/ns/{n}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            ns.push(format!("{}:{}", json_str(&n), json_str(&target)));
        }
    }
    let _ = write!(o, ",\"namespaces\":{{{}}}", ns.join(","));
    let lines = |path: &str| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let _ = write!(
        o,
        ",\"mountinfo\":{}",
        json_str_array(&lines("/proc/self/mountinfo"))
    );
    let _ = write!(
        o,
        ",\"cgroup\":{}",
        json_str_array(&lines("/proc/self/cgroup"))
    );
    let _ = write!(
        o,
        ",\"uid_map\":{}",
        json_str(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default())
    );
    let _ = write!(
        o,
        ",\"gid_map\":{}",
        json_str(&std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default())
    );
    // SAFETY: isatty only inspects the descriptor.
    let (i, out, e) = unsafe { (libc::isatty(0), libc::isatty(1), libc::isatty(2)) };
    let _ = write!(o, ",\"tty\":[{},{},{}]", i == 1, out == 1, e == 1);
    o.push('}');
    o
}

fn fds() -> String {
    // Collect the names first: read_dir holds a descriptor of its own while iterating.
    let names: Vec<String> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return format!("{{\"errno\":{}}}", e.raw_os_error().unwrap_or(-1)),
    };
    let mut entries = Vec::new();
    for n in names {
        // The read_dir descriptor is closed by now, so its link no longer resolves.
        if let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{n}")) {
            entries.push(format!(
                "{}:{}",
                json_str(&n),
                json_str(&target.display().to_string())
            ));
        }
    }
    format!("{{\"fds\":{{{}}}}}", entries.join(","))
}

fn tty() -> String {
    // SAFETY: isatty and TIOCGWINSZ only inspect descriptor 0; ws is a valid out-pointer.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        let rc = libc::ioctl(0, libc::TIOCGWINSZ, &mut ws);
        format!(
            "{{\"tty\":[{},{},{}],\"winsize\":[{},{}],\"winsize_errno\":{}}}",
            libc::isatty(0) == 1,
            libc::isatty(1) == 1,
            libc::isatty(2) == 1,
            ws.ws_row,
            ws.ws_col,
            if rc == 0 { 0 } else { errno() }
        )
    }
}

fn arg<'a>(rest: &'a [String], i: usize, default: &'a str) -> &'a str {
    rest.get(i).map(String::as_str).unwrap_or(default)
}

fn num(rest: &[String], i: usize, default: i64) -> i64 {
    rest.get(i)
        .and_then(|s| {
            if let Some(oct) = s.strip_prefix("0o") {
                i64::from_str_radix(oct, 8).ok()
            } else {
                s.parse().ok()
            }
        })
        .unwrap_or(default)
}

/// Tries the named syscall with simple arguments; prints the return value and errno.
fn syscall(rest: &[String]) -> i32 {
    let name = arg(rest, 0, "");
    let a1 = arg(rest, 1, "/tmp/polis-probe-syscall");
    let path = cstr(a1);
    let mut buf = [0u8; 4096];
    // SAFETY: each call gets valid pointers to buffers we own; failures are reported through errno.
    let ret: i64 = unsafe {
        match name {
            "getcwd" => {
                if libc::getcwd(buf.as_mut_ptr().cast(), buf.len()).is_null() {
                    -1
                } else {
                    0
                }
            }
            "getpid" => libc::getpid() as i64,
            "mkdir" => libc::mkdir(path.as_ptr(), num(rest, 2, 0o755) as libc::mode_t) as i64,
            "rmdir" => libc::rmdir(path.as_ptr()) as i64,
            "chmod" => libc::chmod(path.as_ptr(), num(rest, 2, 0o644) as libc::mode_t) as i64,
            "chown" => libc::chown(
                path.as_ptr(),
                num(rest, 2, 0) as u32,
                num(rest, 3, 0) as u32,
            ) as i64,
            "uname" => {
                let mut u: libc::utsname = std::mem::zeroed();
                libc::uname(&mut u) as i64
            }
            "sethostname" => {
                let h = a1.as_bytes();
                libc::sethostname(h.as_ptr().cast(), h.len()) as i64
            }
            "unshare" => libc::unshare(num(rest, 1, libc::CLONE_NEWUTS as i64) as i32) as i64,
            "mknod" => {
                libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) as i64
            }
            "mount" => {
                let t = cstr("tmpfs");
                libc::mount(t.as_ptr(), path.as_ptr(), t.as_ptr(), 0, std::ptr::null()) as i64
            }
            "kill" => libc::kill(num(rest, 1, 1) as i32, num(rest, 2, 0) as i32) as i64,
            "setuid" => libc::setuid(num(rest, 1, 0) as u32) as i64,
            "personality" => libc::personality(num(rest, 1, 0xffff_ffff) as libc::c_ulong) as i64,
            // ioprio_get(IOPRIO_WHO_PROCESS, self): class << 13 | level
            "ioprio_get" => libc::syscall(libc::SYS_ioprio_get, 1, 0),
            "sched_getscheduler" => libc::sched_getscheduler(0) as i64,
            "socket" => libc::socket(
                num(rest, 1, libc::AF_INET as i64) as i32,
                libc::SOCK_STREAM,
                0,
            ) as i64,
            _ => {
                emit(&format!(
                    "{{\"syscall\":{},\"error\":\"unknown syscall\"}}",
                    json_str(name)
                ));
                return 2;
            }
        }
    };
    let e = if ret < 0 { errno() } else { 0 };
    emit(&format!(
        "{{\"syscall\":{},\"ret\":{ret},\"errno\":{e}}}",
        json_str(name)
    ));
    0
}

/// Reads at most 64 KiB (a device such as /dev/zero never ends).
fn read(rest: &[String]) -> i32 {
    use std::io::Read as _;
    let res = std::fs::File::open(arg(rest, 0, "")).and_then(|f| {
        let mut data = Vec::new();
        f.take(65536).read_to_end(&mut data).map(|_| data)
    });
    match res {
        Ok(data) => emit(&format!(
            "{{\"errno\":0,\"len\":{},\"content\":{}}}",
            data.len(),
            json_str(&String::from_utf8_lossy(&data))
        )),
        Err(e) => emit(&format!("{{\"errno\":{}}}", e.raw_os_error().unwrap_or(-1))),
    }
    0
}

fn write(rest: &[String]) -> i32 {
    let res = std::fs::write(arg(rest, 0, ""), arg(rest, 1, "polis-probe\n"));
    emit(&format!(
        "{{\"errno\":{}}}",
        res.err()
            .map(|e| e.raw_os_error().unwrap_or(-1))
            .unwrap_or(0)
    ));
    0
}

fn stat(rest: &[String]) -> i32 {
    let path = cstr(arg(rest, 0, ""));
    // SAFETY: st is a valid out-pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated, st valid.
    if unsafe { libc::lstat(path.as_ptr(), &mut st) } != 0 {
        emit(&format!("{{\"errno\":{}}}", errno()));
        return 0;
    }
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR => "char",
        libc::S_IFBLK => "block",
        libc::S_IFIFO => "fifo",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFREG => "file",
        libc::S_IFSOCK => "socket",
        _ => "other",
    };
    let target = std::fs::read_link(arg(rest, 0, ""))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    emit(&format!(
        "{{\"errno\":0,\"type\":\"{kind}\",\"mode\":{},\"uid\":{},\"gid\":{},\"major\":{},\"minor\":{},\"size\":{},\"target\":{}}}",
        st.st_mode & 0o7777,
        st.st_uid,
        st.st_gid,
        libc::major(st.st_rdev),
        libc::minor(st.st_rdev),
        st.st_size,
        json_str(&target)
    ));
    0
}

fn signal_wait() -> i32 {
    // SAFETY: plain signal-mask manipulation on our own thread; the set lives on our stack.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        emit("{\"ready\":true}");
        // runc 1.1 forwards SIGURG too, which is only the Go runtime preempting its own threads:
        // not a signal anybody sent. Blocked, but not waited for.
        let mut wanted = set;
        libc::sigdelset(&mut wanted, libc::SIGURG);
        let mut sig: libc::c_int = 0;
        if libc::sigwait(&wanted, &mut sig) != 0 {
            emit(&format!("{{\"errno\":{}}}", errno()));
            return 1;
        }
        emit(&format!("{{\"signal\":{sig}}}"));
    }
    0
}
