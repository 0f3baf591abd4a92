//! CVE-2019-5736: a container must never be able to write to the polis-runc binary on the host.
//!
//! A container process can reach the runtime's own binary through `/proc/<pid>/exe` while the
//! runtime is inside its namespaces (create, exec). Instead of copying the whole binary into a
//! sealed memfd on every call (docs/BENCHMARKS.md, "Notes on this machine"), polis-runc
//! re-executes itself from a read-only, detached bind mount of its binary: `/proc/self/exe` then
//! points into a read-only mount nobody can reach or remount, and every open for writing fails
//! with EROFS. The cost is two system calls (open_tree, mount_setattr) and one execve; no file is
//! made and nothing is mounted or unmounted in any namespace.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

const SEALED_ENV: &str = "_POLIS_RUNC_SEALED";

/// Whether the command line names a command that enters a container (`create`, `run`, `exec`):
/// the first word that is neither a global flag nor a global flag's value.
pub fn enters_a_container(args: &[std::ffi::OsString]) -> bool {
    let mut words = args.iter().skip(1).map(|a| a.to_str().unwrap_or(""));
    while let Some(word) = words.next() {
        match word {
            "--root" | "--log" | "--log-format" => {
                words.next();
            }
            "--rootless" => {}
            w if w.starts_with('-') => {
                if w == "--help" || w == "-h" || w == "--version" || w == "-V" {
                    return false;
                }
            }
            // `--rootless VALUE`: clap takes the next word as its value when it is one.
            "true" | "false" | "auto" => {}
            command => return matches!(command, "create" | "run" | "exec"),
        }
    }
    false
}

/// True when this process already runs from a read-only, detached copy of its binary.
pub fn is_sealed() -> bool {
    std::env::var_os(SEALED_ENV).is_some_and(|v| v == "1") && exe_is_read_only()
}

fn exe_is_read_only() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Re-executes the current binary from a read-only detached bind mount. Returns only on error.
pub fn reexec_sealed() -> Result<()> {
    let fd = open_read_only_self()?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != SEALED_ENV)
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.as_bytes()).unwrap_or_default()
        })
        .collect();
    env.push(CString::new(format!("{SEALED_ENV}=1")).unwrap_or_default());
    let err = nix::unistd::execveat(
        Some(fd.as_raw_fd()),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(Error::sys(
        "re-execute polis-runc from its sealed copy",
        err,
    ))
}

/// A detached, read-only bind mount of this process's binary (open_tree(2) with
/// OPEN_TREE_CLONE, then mount_setattr(2)), as a descriptor to execute. Nothing is mounted
/// anywhere and no file is made for it. Once the sealed process has started, the descriptor is
/// closed by the exec and the mount is dissolved (no longer in any mount namespace, not even the
/// anonymous one open_tree made), so nothing can change its flags; only /proc/PID/exe still leads
/// to it, read-only.
fn open_read_only_self() -> Result<OwnedFd> {
    let tree = crate::init::sys::clone_tree(libc::AT_FDCWD, c"/proc/self/exe", false, false)
        .map_err(|e| Error::io("clone the mount of", "/proc/self/exe", e))?;
    crate::init::sys::set_mount_attr(
        tree.as_fd(),
        false,
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV,
        0,
        0,
    )
    .map_err(|e| Error::io("make read-only the mount of", "/proc/self/exe", e))?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn the_commands_that_enter_a_container_are_found_past_global_flags() {
        assert!(enters_a_container(&words("polis-runc run -b b id")));
        assert!(enters_a_container(&words(
            "polis-runc --root /r --log /l --log-format json --debug --systemd-cgroup create id"
        )));
        assert!(enters_a_container(&words(
            "polis-runc --root=/r --rootless false exec id true"
        )));
        assert!(!enters_a_container(&words("polis-runc --root /r state id")));
        assert!(!enters_a_container(&words(
            "polis-runc --log run delete run"
        )));
        assert!(!enters_a_container(&words("polis-runc --version run")));
        assert!(!enters_a_container(&words("polis-runc")));
    }
}
