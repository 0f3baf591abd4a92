//! Path lookup confined to the container's view: openat2(2) `RESOLVE_IN_ROOT` from the root's descriptor, and the
//! `*at` calls.

use super::view::{errno, owned};
use super::*;

pub(super) fn open_dir(path: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno(format!("open {}", path.display()), e))?;
    Ok(owned(fd))
}

/// Opens `path` from `root` with every name resolved inside it (`RESOLVE_IN_ROOT`), crossing the mounts of the
/// view (a volume is reached through its mount point) but never a magic link.
pub(super) fn open_in_root(root: RawFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let relative = {
        let p = path.strip_prefix(b"/").unwrap_or(path);
        if p.is_empty() { &b"."[..] } else { p }
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // openat2 asks for a retry when a rename raced with the lookup.
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(root, OsStr::from_bytes(relative), how) {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            r => return r.map(owned),
        }
    }
}

pub(super) fn open_at(dir: RawFd, name: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        Some(dir),
        OsStr::from_bytes(name),
        flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map(owned)
}

pub(super) fn fstat(fd: &OwnedFd) -> nix::Result<FileStat> {
    nix::sys::stat::fstat(fd.as_raw_fd())
}

pub(super) fn kind(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// What a container path names.
pub(super) struct Found {
    /// An O_PATH descriptor of the object itself (of a symlink, not of its target).
    pub(super) fd: OwnedFd,
    pub(super) st: FileStat,
}

pub(super) fn not_found_error(path: &str, container: &str) -> Error {
    Error::NotFound(format!(
        "Could not find the file {path} in container {container}"
    ))
}

/// Looks a container path up as dockerd's `Lstat` does: its last name is not followed, unless the path ends in
/// `/` or `/.` (then it names the directory a symlink leads to).
pub(super) fn lookup(root: &Rootfs, abs: &[u8]) -> nix::Result<Found> {
    let follow = abs.ends_with(b"/") || base(abs) == b"." || abs == b"/";
    let fd = if follow {
        root.open_in(abs, OFlag::O_PATH | OFlag::O_DIRECTORY)?
    } else {
        let parent = root.open_in(&dir(abs), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let fd = open_at(parent.as_raw_fd(), &base(abs), OFlag::O_PATH)?;
        // The name may be a mount point (of a volume, or of /proc).
        root.check(&fd)?;
        fd
    };
    let st = fstat(&fd)?;
    Ok(Found { fd, st })
}

/// The stat dockerd reports for `abs`, found as `found`.
pub(super) fn path_stat(root: &Rootfs, abs: &[u8], found: &Found) -> PathStat {
    let link_target = if kind(&found.st) == libc::S_IFLNK {
        link_target(root, abs, found)
    } else {
        String::new()
    };
    PathStat {
        name: String::from_utf8_lossy(&base(abs)).into_owned(),
        size: found.st.st_size,
        mode: go_file_mode(found.st.st_mode),
        mtime: go_time(found.st.st_mtime, found.st.st_mtime_nsec as u32),
        link_target,
    }
}

/// Where a symlink finally leads in the container (`symlink.FollowSymlinkInScope`): fully resolved when it can
/// be; for a dangling link, its target taken from the link's directory.
pub(super) fn link_target(root: &Rootfs, abs: &[u8], found: &Found) -> String {
    if let Ok(fd) = root.open_in(abs, OFlag::O_PATH)
        && let Some(p) = root.path_of(&fd)
    {
        return String::from_utf8_lossy(&p).into_owned();
    }
    let target = nix::fcntl::readlinkat(Some(found.fd.as_raw_fd()), "")
        .map(|t| t.into_vec())
        .unwrap_or_default();
    let parent_dir = root
        .open_in(&dir(abs), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ok()
        .and_then(|fd| root.path_of(&fd))
        .unwrap_or_else(|| dir(abs));
    let mut joined = if target.starts_with(b"/") {
        Vec::new()
    } else {
        parent_dir
    };
    joined.push(b'/');
    joined.extend_from_slice(&target);
    String::from_utf8_lossy(&clean(&joined)).into_owned()
}
