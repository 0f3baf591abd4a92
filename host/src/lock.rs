//! Advisory locks on files.
//!
//! - [`FileLock`]: flock(2) through nix's `Flock`, held by an open file description. Processes that change shared
//!   state (the image store, the address store, the firewall) take it around the change.
//! - [`RecordLock`]: a POSIX record lock (fcntl `F_SETLKW`), which belongs to the process that took it and is not
//!   inherited by a forked child. polis-runc holds one per container while the container's init process, forked
//!   during `create` and alive until `start`, must never hold it.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// A flock held on a file; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
}

/// Shared (any number of holders) or exclusive (one holder, no shared ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

impl FileLock {
    /// Takes the lock on `path` (made, with its directory, when missing), waiting for holders that conflict.
    pub fn acquire(path: &Path, kind: LockKind) -> Result<FileLock> {
        let arg = match kind {
            LockKind::Shared => FlockArg::LockShared,
            LockKind::Exclusive => FlockArg::LockExclusive,
        };
        Self::take(path, arg)?.ok_or_else(|| Error::io("lock", path, Errno::EWOULDBLOCK))
    }

    /// Takes an exclusive lock on `path` if nobody holds one now; None when someone does.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>> {
        Self::take(path, FlockArg::LockExclusiveNonblock)
    }

    fn take(path: &Path, arg: FlockArg) -> Result<Option<FileLock>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))?;
        loop {
            match Flock::lock(
                file.try_clone()
                    .map_err(|e| Error::io("open lock file", path, e))?,
                arg,
            ) {
                Ok(lock) => return Ok(Some(FileLock { _lock: lock })),
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, Errno::EINTR)) => continue,
                Err((_, e)) => return Err(Error::io("lock", path, e)),
            }
        }
    }
}

/// A POSIX record lock on a whole file, held by this process only; released when dropped.
#[derive(Debug)]
pub struct RecordLock {
    _file: File,
}

impl RecordLock {
    /// Takes the lock on `path`, waiting for other holders. With `create` the file is made when missing; without
    /// it, a missing file is an `Io` error of kind NotFound.
    pub fn acquire(path: &Path, kind: LockKind, create: bool) -> Result<RecordLock> {
        let file = OpenOptions::new()
            .create(create)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))?;
        let lock = libc::flock {
            l_type: match kind {
                LockKind::Exclusive => libc::F_WRLCK,
                LockKind::Shared => libc::F_RDLCK,
            } as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        loop {
            match nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLKW(&lock)) {
                Ok(_) => return Ok(RecordLock { _file: file }),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("lock", path, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_flock_excludes_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/lock");
        let held = FileLock::acquire(&path, LockKind::Exclusive).unwrap();
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&path).unwrap().is_some());
        let a = FileLock::acquire(&path, LockKind::Shared).unwrap();
        let b = FileLock::acquire(&path, LockKind::Shared).unwrap();
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop((a, b));
    }

    #[test]
    fn a_record_lock_needs_its_file_unless_it_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1");
        let err = RecordLock::acquire(&path, LockKind::Exclusive, false).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        let _held = RecordLock::acquire(&path, LockKind::Exclusive, true).unwrap();
        // Record locks belong to the process: taking it again from this process succeeds.
        let _again = RecordLock::acquire(&path, LockKind::Shared, false).unwrap();
    }
}
