//! File-system helpers of the store, its unpacked layers and bundles: flock(2) locks, atomic writes, and removing a
//! tree without following symlinks.

use crate::error::{Result, io};
use std::fs;
use std::path::Path;

/// A flock(2) on a file (polis_host::lock), released on drop (also when the process dies).
pub struct FileLock {
    _lock: polis_host::lock::FileLock,
}

impl FileLock {
    /// An exclusive lock: one holder at a time.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        FileLock::acquire_as(path, polis_host::lock::LockKind::Exclusive)
    }

    /// A shared lock: many holders at once, none while someone holds it exclusively.
    pub fn acquire_shared(path: &Path) -> Result<FileLock> {
        FileLock::acquire_as(path, polis_host::lock::LockKind::Shared)
    }

    fn acquire_as(path: &Path, kind: polis_host::lock::LockKind) -> Result<FileLock> {
        let lock = polis_host::lock::FileLock::acquire(path, kind)?;
        Ok(FileLock { _lock: lock })
    }
}

/// A non-blocking exclusive flock: None when another process holds a lock on the file.
pub fn try_lock(path: &Path) -> Result<Option<polis_host::lock::FileLock>> {
    Ok(polis_host::lock::FileLock::try_exclusive(path)?)
}

/// Writes `data` atomically (polis_host::atomic): readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    Ok(polis_host::atomic::write_atomic_mode(path, data, 0o644)?)
}

/// Removes a directory tree if it exists (never following symlinks in it).
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("inspecting", path)(e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(io("removing", path)),
    }
}
