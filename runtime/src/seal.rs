//! CVE-2019-5736: a container must never be able to write to the polis-runc binary on the host.
//!
//! A container process can reach the runtime's own binary through `/proc/<pid>/exe` while the
//! runtime is inside its namespaces (create, exec). Instead of copying the whole binary into a
//! sealed memfd on every call (docs/BENCHMARKS.md, "Notes on this machine"), polis-runc
//! re-executes itself from a read-only bind mount of its binary that is detached right away:
//! `/proc/self/exe` then points into a read-only mount nobody can reach or remount, and every
//! open for writing fails with EROFS. The cost is a few mount syscalls and one execve.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Error, Result};

const SEALED_ENV: &str = "_POLIS_RUNC_SEALED";

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
/// `scratch_dir` must be on a filesystem where root can create a file (the state root).
pub fn reexec_sealed_host(scratch_dir: &Path) -> Result<()> {
    let fd = open_read_only_self(scratch_dir)?;
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

fn open_read_only_self(scratch_dir: &Path) -> Result<OwnedFd> {
    let target = scratch_dir.join(format!(".exe-{}", std::process::id()));
    File::create(&target).map_err(|e| Error::io("create mount point", &target, e))?;
    let result = (|| -> Result<OwnedFd> {
        mount(
            Some("/proc/self/exe"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys("bind-mount polis-runc read-only", e))?;
        let remount = mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
        let opened = nix::fcntl::open(
            &target,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        let _ = umount2(&target, MntFlags::MNT_DETACH);
        remount.map_err(|e| Error::sys("remount polis-runc read-only", e))?;
        let fd = opened.map_err(|e| Error::sys("open read-only polis-runc", e))?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })();
    let _ = fs::remove_file(&target);
    let fd = result?;
    debug_assert!(fd.as_raw_fd() >= 0);
    Ok(fd)
}
