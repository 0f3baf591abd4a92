//! config.md#process: `cwd` "is the working directory that will be set for the executable". When
//! it does not exist in the rootfs, runc makes it (Docker's `-w /newdir` relies on that), as
//! root and before the process takes its user, so that a non-root process can start there too.
//!
//! polis-runc makes it before libcontainer sets the container up, inside the rootfs only: each
//! component is resolved with openat2(2) `RESOLVE_IN_ROOT`, so a symbolic link in the rootfs is
//! followed as the container would follow it, never out of the rootfs. A `cwd` at or below a
//! mount's destination is left to libcontainer, which makes it after the mounts (as root) or
//! fails naming it: here it would land under the mount and stay hidden.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::bundle::CheckedBundle;
use crate::error::{Error, Result};

/// Makes the process's `cwd` inside the rootfs when it is missing (see the module doc).
pub fn make_cwd_in_rootfs(checked: &CheckedBundle) -> Result<()> {
    let Some(process) = checked.spec.process() else {
        return Ok(());
    };
    let cwd = process.cwd();
    let under_a_mount = checked
        .spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() != Path::new("/") && cwd.starts_with(m.destination()));
    if under_a_mount {
        return Ok(());
    }
    make_dir_in_root(&checked.rootfs, cwd).map_err(|reason| Error::Config {
        path: checked.bundle.clone(),
        reason: format!("process.cwd {}: {reason}", cwd.display()),
    })
}

fn open_in_root(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    openat2(root.as_raw_fd(), path, how).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `path` (absolute, as the container sees it) below the directory `root`, mode 0755.
fn make_dir_in_root(root: &Path, path: &Path) -> std::result::Result<(), String> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open the rootfs {}: {e}", root.display()))?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let root_fd = unsafe { OwnedFd::from_raw_fd(root_fd) };
    let mut prefix = PathBuf::new();
    for component in path.components() {
        let Component::Normal(name) = component else {
            // "/" and "." add nothing; ".." is resolved by openat2, which stays in the root.
            if component == Component::ParentDir {
                prefix.push("..");
            }
            continue;
        };
        let parent = open_in_root(&root_fd, &prefix)
            .map_err(|e| format!("{}: {e}", Path::new("/").join(&prefix).display()))?;
        prefix.push(name);
        match open_in_root(&root_fd, &prefix) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(format!("{}: {e}", Path::new("/").join(&prefix).display())),
        }
        match nix::sys::stat::mkdirat(
            Some(parent.as_raw_fd()),
            name,
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) => {}
            // A symbolic link whose target does not exist in the rootfs (runc fails there too:
            // "mkdir /esc: file exists").
            Err(Errno::EEXIST) => {
                return Err(format!(
                    "{} is a symbolic link to a directory that does not exist in the rootfs",
                    Path::new("/").join(&prefix).display()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "make {}: {e}",
                    Path::new("/").join(&prefix).display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_missing_directories_inside_the_root_only() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        make_dir_in_root(root.path(), Path::new("/a/b/c")).unwrap();
        assert!(root.path().join("a/b/c").is_dir());
        // An absolute symlink is resolved inside the root, as the container sees it.
        std::os::unix::fs::symlink(outside.path(), root.path().join("esc")).unwrap();
        std::fs::create_dir_all(root.path().join(outside.path().strip_prefix("/").unwrap()))
            .unwrap();
        make_dir_in_root(root.path(), Path::new("/esc/work")).unwrap();
        assert!(!outside.path().join("work").exists());
        assert!(
            root.path()
                .join(outside.path().strip_prefix("/").unwrap())
                .join("work")
                .is_dir()
        );
        // ".." never leaves the root.
        make_dir_in_root(root.path(), Path::new("/../../up")).unwrap();
        assert!(root.path().join("up").is_dir());
    }

    #[test]
    fn a_dangling_symlink_is_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let gone = target.path().join("gone");
        std::os::unix::fs::symlink(&gone, root.path().join("dangling")).unwrap();
        let err = make_dir_in_root(root.path(), Path::new("/dangling/x")).unwrap_err();
        assert!(err.contains("/dangling"), "{err}");
        assert!(!gone.exists());
    }
}
