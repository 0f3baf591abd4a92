//! Thin wrappers over the system calls the container set-up uses that nix does not wrap: openat2 and
//! the new mount API (open_tree, move_mount, fsopen, fsconfig, fsmount, mount_setattr), all on
//! descriptors, so that no path is ever resolved twice.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use std::os::unix::ffi::OsStrExt;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(rc)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// openat2(2) with `resolve` flags.
pub fn openat2(dir: RawFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let path = cstring(path)?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: a NUL-terminated path and an open_how that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match owned(rc) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            other => return other,
        }
    }
}

/// Resolves `path` inside the tree at `root` (symbolic links scoped to it, no magic links), as an
/// O_PATH descriptor.
pub fn open_in_root(root: RawFd, path: &Path) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        root,
        rel,
        libc::O_PATH,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// `/proc/self/fd/N`: the path of a descriptor, for the few calls that take only paths.
pub fn fd_path(fd: RawFd) -> String {
    format!("/proc/self/fd/{fd}")
}

/// open_tree(2): a detached copy of the mount at `path` (recursive with `recursive`).
pub fn clone_tree(
    dir: RawFd,
    path: &CStr,
    recursive: bool,
    empty_path: bool,
) -> io::Result<OwnedFd> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if empty_path {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    // SAFETY: a NUL-terminated path that outlives the call.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dir, path.as_ptr(), flags) })
}

/// move_mount(2): attaches the detached mount `tree` on top of what `target` refers to.
pub fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: descriptors we hold and empty NUL-terminated paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// mount_setattr(2) on the mount `fd` refers to (its whole tree with `recursive`).
pub fn set_mount_attr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clear: u64,
    propagation: u64,
) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a mount_attr that outlives the call, of the size given.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// A filesystem being configured with fsopen(2) and fsconfig(2).
pub struct FsContext(OwnedFd);

impl FsContext {
    pub fn open(fstype: &str) -> io::Result<Self> {
        let name = CString::new(fstype)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "type has a NUL byte"))?;
        // SAFETY: a NUL-terminated name that outlives the call.
        owned(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) })
            .map(FsContext)
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: Option<&CStr>,
        value: Option<&CStr>,
    ) -> io::Result<()> {
        let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: NUL-terminated strings (or null) that outlive the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                cmd,
                ptr(key),
                ptr(value),
                0,
            )
        })
        .map(drop)
    }

    /// One mount data option: `key=value` as a string, `key` as a flag.
    pub fn set(&self, option: &str) -> io::Result<()> {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, "option has a NUL byte");
        match option.split_once('=') {
            Some((k, v)) => {
                let (k, v) = (
                    CString::new(k).map_err(|_| bad())?,
                    CString::new(v).map_err(|_| bad())?,
                );
                self.config(libc::FSCONFIG_SET_STRING, Some(&k), Some(&v))
            }
            None => {
                let k = CString::new(option).map_err(|_| bad())?;
                self.config(libc::FSCONFIG_SET_FLAG, Some(&k), None)
            }
        }
    }

    pub fn source(&self, source: &str) -> io::Result<()> {
        let v = CString::new(source)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "source has a NUL byte"))?;
        self.config(libc::FSCONFIG_SET_STRING, Some(c"source"), Some(&v))
    }

    /// Creates the superblock and returns a detached mount of it with `attrs` (MOUNT_ATTR_*).
    pub fn mount(self, attrs: u64) -> io::Result<OwnedFd> {
        self.config(libc::FSCONFIG_CMD_CREATE, None, None)?;
        // SAFETY: a descriptor we own; plain integer arguments.
        owned(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                attrs,
            )
        })
    }
}

/// pivot_root(".", "."): the current directory becomes the root, the old root is stacked on it.
pub fn pivot_root_here() -> io::Result<()> {
    // SAFETY: static NUL-terminated paths.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) }).map(drop)
}
