//! Exclusive flock(2) locks on files, held by the plugin processes that change shared state.

use crate::error::{Result, io};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Takes an exclusive flock on `path` (creating it and its directory), waiting for other holders; released
/// when the returned file is dropped.
pub fn lock_exclusive(path: &Path) -> Result<fs::File> {
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
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("locking", path)(std::io::Error::last_os_error()));
    }
    Ok(file)
}
