//! flock(2) locks on files, held by the plugin processes that change shared state.

use crate::error::{Result, io};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Takes an exclusive flock on `path` (creating it and its directory), waiting for other holders; released
/// when the returned file is dropped.
pub fn lock_exclusive(path: &Path) -> Result<fs::File> {
    lock(path, libc::LOCK_EX)
}

/// Takes a shared flock on `path` (creating it and its directory), waiting for an exclusive holder; any number
/// of processes hold it at once. Released when the returned file is dropped.
pub fn lock_shared(path: &Path) -> Result<fs::File> {
    lock(path, libc::LOCK_SH)
}

/// Takes an exclusive flock on `path` (creating it and its directory) if nobody holds a lock on it now; `None`
/// when someone does.
pub fn try_lock_exclusive(path: &Path) -> Result<Option<fs::File>> {
    match lock(path, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(file) => Ok(Some(file)),
        Err(crate::Error::Io { source, .. })
            if source.raw_os_error() == Some(libc::EWOULDBLOCK) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn lock(path: &Path, operation: libc::c_int) -> Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io("opening", path))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        return Err(io("locking", path)(std::io::Error::last_os_error()));
    }
    Ok(file)
}
