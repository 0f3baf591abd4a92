//! The layer directory, with every change resolved beneath it: entry names split and refused when hostile, parents
//! opened with openat2(2) and RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV, the
//! `*at` calls that never follow a symlink in the last component, xattrs of nodes that must not be opened, and the
//! overlayfs marks (whiteout devices, the opaque xattr).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::error::{Result, io};

/// The longest entry or link name accepted: PATH_MAX.
const MAX_NAME_LEN: usize = 4096;

fn resolve_beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

/// openat2(2) of `path` beneath `dirfd`: no `..` out of it, no symlink, no magic link, no mount crossing.
pub(super) fn open_beneath(dirfd: RawFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve_beneath());
    let path = if path.is_empty() { &b"."[..] } else { path };
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dirfd, path, how) {
            // SAFETY: openat2 has just returned this descriptor; nothing else owns it.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            // EAGAIN: a concurrent rename somewhere on the host made the kernel unsure; try again.
            Err(Errno::EAGAIN | Errno::EINTR) if tries < 16 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn openat(dirfd: RawFd, name: &[u8], flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dirfd),
        name,
        flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        mode,
    )?;
    // SAFETY: openat has just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn lstatat(dirfd: RawFd, name: &[u8]) -> nix::Result<FileStat> {
    nix::sys::stat::fstatat(Some(dirfd), name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

pub(super) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

pub(super) fn mode_bits(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

pub(super) fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// Splits an entry or link name into its components, dropping empty and `.` ones. Refuses (as hostile) an empty
/// or absolute name, a `..` component, a NUL byte, or a name longer than PATH_MAX.
pub(super) fn split_name(name: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("name longer than PATH_MAX");
    }
    if name[0] == b'/' {
        return Err("absolute name");
    }
    if name.contains(&0) {
        return Err("NUL byte in name");
    }
    let mut comps = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            comp => comps.push(comp),
        }
    }
    Ok(comps)
}

/// The xattrs that drive overlayfs itself; a layer may not carry them (it would redirect or hide other layers).
pub(super) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

pub(crate) const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// An overlayfs whiteout: a 0/0 character device.
pub(super) fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Whether the open directory `fd` (not O_PATH) is marked opaque.
pub(super) fn marked_opaque(fd: RawFd) -> bool {
    matches!(Node::Fd(fd).get_xattr(OPAQUE_XATTR), Ok(Some(v)) if v.as_slice() == b"y")
}

/// Opens an unpacked layer directory (a lower one) for lookups beneath it.
pub(super) fn open_layer_dir(dir: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| io("opening lower layer directory", dir)(err.into()))?;
    // SAFETY: open has just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where to set or read xattrs: an open file or directory, or (for symlinks, devices and fifos, which must not be
/// opened) `/proc/self/fd/<parent>/<name>` with the l*xattr calls, which do not follow the last component.
pub(super) enum Node {
    Fd(RawFd),
    Path(CString),
}

impl Node {
    pub(super) fn at(holder: RawFd, name: &[u8]) -> nix::Result<Node> {
        let mut path = format!("/proc/self/fd/{holder}/").into_bytes();
        path.extend_from_slice(name);
        CString::new(path)
            .map(Node::Path)
            .map_err(|_| Errno::EINVAL)
    }

    pub(super) fn set_xattr(&self, name: &CStr, value: &[u8]) -> nix::Result<()> {
        let (value_ptr, len) = (value.as_ptr().cast(), value.len());
        // SAFETY: name is NUL-terminated, value is a live buffer of len bytes, fd/path are valid for the call.
        let r = unsafe {
            match self {
                Node::Fd(fd) => libc::fsetxattr(*fd, name.as_ptr(), value_ptr, len, 0),
                Node::Path(p) => libc::lsetxattr(p.as_ptr(), name.as_ptr(), value_ptr, len, 0),
            }
        };
        Errno::result(r).map(drop)
    }

    /// The value of xattr `name`, or None when absent.
    pub(super) fn get_xattr(&self, name: &CStr) -> nix::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 256];
        loop {
            let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
            // SAFETY: buf is a live, writable buffer of len bytes.
            let r = unsafe {
                match self {
                    Node::Fd(fd) => libc::fgetxattr(*fd, name.as_ptr(), ptr, len),
                    Node::Path(p) => libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr, len),
                }
            };
            match Errno::result(r) {
                Ok(n) => {
                    buf.truncate(n as usize);
                    return Ok(Some(buf));
                }
                Err(Errno::ENODATA) => return Ok(None),
                Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn list_xattrs(&self) -> nix::Result<Vec<CString>> {
        let mut buf = vec![0u8; 1024];
        loop {
            let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
            // SAFETY: buf is a live, writable buffer of len bytes.
            let r = unsafe {
                match self {
                    Node::Fd(fd) => libc::flistxattr(*fd, ptr, len),
                    Node::Path(p) => libc::llistxattr(p.as_ptr(), ptr, len),
                }
            };
            match Errno::result(r) {
                Ok(n) => {
                    return Ok(buf[..n as usize]
                        .split(|&b| b == 0)
                        .filter(|n| !n.is_empty())
                        .filter_map(|n| CString::new(n).ok())
                        .collect());
                }
                Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(e),
            }
        }
    }
}

/// chmod of `name` in `holder` without following it: fchmodat2(2) with AT_SYMLINK_NOFOLLOW (Linux 6.6), else
/// through an O_PATH descriptor of the node itself.
pub(super) fn chmod_nofollow(holder: RawFd, name: &[u8], mode: u32) -> nix::Result<()> {
    let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: plain system call with a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            holder,
            cname.as_ptr(),
            mode & 0o7777,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match Errno::result(r) {
        Err(Errno::ENOSYS) => {
            let node = openat(
                holder,
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )?;
            let path = format!("/proc/self/fd/{}", node.as_raw_fd());
            nix::sys::stat::fchmodat(
                None,
                path.as_str(),
                mode_bits(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        }
        r => r.map(drop),
    }
}

/// Removes `name` from `holder`, a directory with everything in it, never following a symlink.
pub(super) fn remove_tree(holder: RawFd, name: &[u8]) -> io::Result<()> {
    match nix::unistd::unlinkat(Some(holder), name, UnlinkatFlags::NoRemoveDir) {
        Err(Errno::EISDIR) => {}
        r => return Ok(r?),
    }
    let dir = open_beneath(holder, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    for child in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        remove_tree(dir.as_raw_fd(), child?.file_name().as_bytes())?;
    }
    Ok(nix::unistd::unlinkat(
        Some(holder),
        name,
        UnlinkatFlags::RemoveDir,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::fixture::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;
    use tar::EntryType;

    /// layer.md "Hardlinks" and "Changeset over existing files", read against docs/ARCHITECTURE.md: extraction never follows a
    /// symlink and never writes outside the layer directory. Each hostile entry is refused, naming the entry, and
    /// nothing appears outside `layer`.
    #[test]
    fn hostile_entries_are_refused_and_nothing_escapes() {
        type Build = fn(&mut Layer);
        let cases: &[(&str, &str, bool, Build)] = &[
            ("dot-dot name", "../polis-escape-dotdot", true, |l| {
                l.raw(EntryType::Regular, b"../polis-escape-dotdot", b"", b"x");
            }),
            ("dot-dot inside", "a/../../polis-escape-mid", true, |l| {
                l.raw(EntryType::Regular, b"a/../../polis-escape-mid", b"", b"x");
            }),
            ("absolute name", "/etc/polis-unpack-test-abs", true, |l| {
                l.raw(EntryType::Regular, b"/etc/polis-unpack-test-abs", b"", b"x");
            }),
            ("empty name", "", true, |l| {
                l.raw(EntryType::Regular, b"", b"", b"x");
            }),
            (
                "through an absolute symlink",
                "evil/polis-unpack-test-passwd",
                true,
                |l| {
                    l.symlink("evil", "/etc")
                        .file("evil/polis-unpack-test-passwd", b"x", 0o644);
                },
            ),
            (
                "directory through a symlink",
                "evil/polis-unpack-test-dir",
                true,
                |l| {
                    l.symlink("evil", "/etc")
                        .dir("evil/polis-unpack-test-dir", 0o755);
                },
            ),
            (
                "through a symlink to ..",
                "evil/polis-escape-up",
                true,
                |l| {
                    l.symlink("evil", "..")
                        .file("evil/polis-escape-up", b"x", 0o644);
                },
            ),
            ("through a symlink inside", "evil/x", true, |l| {
                l.dir("sub", 0o755)
                    .symlink("evil", "sub")
                    .file("evil/x", b"x", 0o644);
            }),
            (
                "device through a symlink",
                "evil/polis-unpack-test-null",
                true,
                |l| {
                    l.symlink("evil", "/etc").device(
                        EntryType::Char,
                        "evil/polis-unpack-test-null",
                        0o666,
                        1,
                        3,
                    );
                },
            ),
            (
                "whiteout through a symlink",
                "evil/.wh.polis-unpack-test-wh",
                true,
                |l| {
                    l.symlink("evil", "/etc")
                        .file("evil/.wh.polis-unpack-test-wh", b"", 0o644);
                },
            ),
            (
                "opaque marker in a symlink",
                "evil/.wh..wh..opq",
                true,
                |l| {
                    l.symlink("evil", "/tmp")
                        .file("evil/.wh..wh..opq", b"", 0o644);
                },
            ),
            (
                "opaque marker through a symlink",
                "evil/sub/.wh..wh..opq",
                true,
                |l| {
                    l.symlink("evil", "/tmp")
                        .file("evil/sub/.wh..wh..opq", b"", 0o644);
                },
            ),
            ("hard link to ..", "hl", true, |l| {
                l.raw(EntryType::Link, b"hl", b"../sentinel", b"");
            }),
            ("hard link to an absolute path", "hl", true, |l| {
                l.raw(EntryType::Link, b"hl", b"/etc/passwd", b"");
            }),
            ("hard link through a symlink", "hl", true, |l| {
                l.symlink("evil", "/etc")
                    .raw(EntryType::Link, b"hl", b"evil/passwd", b"");
            }),
            ("bare whiteout", ".wh.", true, |l| {
                l.file(".wh.", b"", 0o644);
            }),
            ("whiteout of ..", "d/.wh...", true, |l| {
                l.dir("d", 0o755)
                    .raw(EntryType::Regular, b"d/.wh...", b"", b"");
            }),
            ("overlayfs xattr", "redirected", true, |l| {
                l.pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
                    .dir("redirected", 0o755);
            }),
            ("root replaced by a file", "./", true, |l| {
                l.raw(EntryType::Regular, b"./", b"", b"x");
            }),
            ("unsupported type", "volume", false, |l| {
                l.raw(EntryType::new(b'V'), b"volume", b"", b"");
            }),
        ];
        let passwd_links = fs::metadata("/etc/passwd").unwrap().nlink();
        for (what, entry, hostile, build) in cases {
            let fx = Fixture::new();
            let mut layer = Layer::new();
            build(&mut layer);
            let result = fx.unpack(&layer.finish());
            if *hostile {
                assert_hostile(result, entry);
            } else {
                assert_format(result, entry);
            }
            fx.assert_contained();
            assert!(!fx.path("hl").exists(), "{what}");
            assert!(!fx.path("sub/x").exists(), "{what}");
            for name in ["abs", "passwd", "dir", "null", "wh"] {
                let p = PathBuf::from(format!("/etc/polis-unpack-test-{name}"));
                assert!(
                    fs::symlink_metadata(&p).is_err(),
                    "{what}: {} exists",
                    p.display()
                );
            }
            assert!(
                xattr(Path::new("/tmp"), "trusted.overlay.opaque").is_none(),
                "{what}"
            );
            assert!(
                xattr(Path::new("/tmp/sub"), "trusted.overlay.opaque").is_none(),
                "{what}"
            );
        }
        assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);
    }
}
