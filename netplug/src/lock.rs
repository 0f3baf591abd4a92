//! flock(2) locks on files (polis_host::lock), held by the plugin processes that change shared state. Each is
//! released when the returned lock is dropped.

use crate::error::Result;
use polis_host::lock::{FileLock, LockKind};
use std::path::Path;

/// Takes an exclusive lock on `path` (creating it and its directory), waiting for other holders.
pub fn lock_exclusive(path: &Path) -> Result<FileLock> {
    Ok(FileLock::acquire(path, LockKind::Exclusive)?)
}

/// Takes a shared lock on `path` (creating it and its directory), waiting for an exclusive holder; any number of
/// processes hold it at once.
pub fn lock_shared(path: &Path) -> Result<FileLock> {
    Ok(FileLock::acquire(path, LockKind::Shared)?)
}

/// Takes an exclusive lock on `path` (creating it and its directory) if nobody holds a lock on it now; `None`
/// when someone does.
pub fn try_lock_exclusive(path: &Path) -> Result<Option<FileLock>> {
    Ok(FileLock::try_exclusive(path)?)
}
