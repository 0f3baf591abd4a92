//! Replacing a file atomically: readers see the old content or the new one, never a part, and after a crash the
//! file is one or the other. The data goes to a temporary file with a name no other writer uses, which is synced,
//! renamed over the target, and then the directory is synced so that the rename itself is durable.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes `data` to `path` atomically, mode 0600 (see the module doc).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o600)
}

/// [`write_atomic`] with the file's permission bits.
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    replace(path, data, mode, true)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replaces `path` so that readers see the old content or the new one, without making it durable:
/// for files that do not outlive a reboot anyway (state on tmpfs), where two fsyncs would be most
/// of the cost.
pub fn replace_volatile(path: &Path, data: &[u8]) -> Result<()> {
    replace(path, data, 0o600, false)
}

fn replace(path: &Path, data: &[u8], mode: u32, sync: bool) -> Result<()> {
    let tmp = temporary_name(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
        if sync {
            f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Syncs a directory, making the entries made, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// `.NAME.tmp-PID-N` beside `path`: unique among the writers of this host.
fn temporary_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_failed_write_names_the_path_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("missing/state.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let names = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 0);
    }

    #[test]
    fn temporary_names_differ() {
        let p = Path::new("/x/state.json");
        assert_ne!(temporary_name(p), temporary_name(p));
    }
}
