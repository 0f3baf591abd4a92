//! A container's files (`docker cp`): the stat of a path, a tar archive of it, and a tar archive extracted into a
//! directory, as dockerd does them (daemon/archive.go, pkg/archive's `Untar`), for running and stopped containers.
//!
//! Paths are resolved against the container's mounts, as dockerd resolves them (Engine API v1.41, "Get an archive
//! of a filesystem resource in a container" and "Extract an archive of files or folders to a directory in a
//! container"; https://docs.docker.com/reference/cli/docker/container/cp/): a path under a bind mount, a named or an
//! anonymous volume reads and writes the mount's source, not the rootfs directory beneath it. The view of the
//! container's files is:
//!
//! - while it runs, its own root (`/proc/PID/root`, checked to be the overlay the shim mounted at `bundle/rootfs`):
//!   the container's mount namespace, so binds, volumes, tmpfs mounts and the files Docker provides are exactly
//!   what the container sees. The rest of that namespace is not the container's files (/proc, /sys, /dev and
//!   what is mounted in them: docker cp's reference says these cannot be copied): an object on any mount other
//!   than the rootfs, the record's binds and volumes, the tmpfs mounts and the files Docker provides (found by
//!   their statx mount IDs) is "not found", left out of an archive and not extracted. So are mounts under a
//!   bind's source that its recursive bind brought along, which dockerd's own view would show;
//! - while it is stopped, a view polisd builds as dockerd's `openContainerFS` does: in a private mount namespace
//!   of one thread (a slave of polisd's, so nothing mounted in it is seen outside), the record's overlay, with
//!   its binds and volumes and the files Docker provides bind-mounted on their destinations (read-only ones
//!   read-only, a missing destination made first, as dockerd makes it). The namespace is held by a descriptor
//!   for the length of the operation and its mounts go with it, also when polisd dies.
//!
//! Every path is resolved from the root's descriptor with openat2(2) `RESOLVE_IN_ROOT`, so `..` and absolute
//! symlinks stay inside the container as they do in dockerd's chroot, also from inside a volume or bind (a
//! symlink there to /etc/shadow is the container's /etc/shadow, and `..` from a mount's root leads to the
//! directory it is mounted in, never to the source's parent on the host); the tree is then walked and changed
//! with the `*at` calls from descriptors, never following a symlink, so nothing outside the container's view is
//! ever read or written, even while the container changes its files.
//!
//! Extended attributes travel as PAX `SCHILY.xattr.NAME` records: extraction applies every one as pkg/archive's
//! `createTarFile` does (after the owner, before the mode; ENOTSUP and EPERM are logged and skipped), and
//! archives carry `security.capability` (pkg/archive's `ReadSecurityXattrToTarHeader`, a version 3 value made
//! version 2) and, beyond dockerd, the `user.*` attributes. Archives are read with polis-imagesvc's
//! `tar` reader, the one that unpacks image layers, as Go's archive/tar reads them (PAX records walked by their
//! lengths, so a binary value holding a newline is kept whole), not with `tar::Archive` (docs/ARCHITECTURE.md,
//! "imagesvc: our own tar framing").

use super::Core;
use super::error::{Error, Result};
use super::record::ContainerRecord;
use super::volumes::MountSpec;
use bollard_stubs::models::EventMessageTypeEnum;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, LazyLock, Mutex};
use tokio::sync::{mpsc, oneshot};

mod extract;
mod paths;
mod resolve;
mod stat;
mod view;
mod write;
mod xattr;

use extract::{Extractor, decompressed};
use resolve::{fstat, kind, lookup, not_found_error, path_stat};
use view::{NOT_CONTAINERS, errno, mount_of};
use write::{ChunkWriter, write_archive};

pub use extract::{ChunkReader, ExtractOptions};
pub use paths::*;
pub use stat::*;
pub use view::Rootfs;

/// Directories deeper than this are refused (each level holds a descriptor while the tree is walked).
const MAX_DEPTH: usize = 256;
/// The size of the chunks an archive is sent in.
const CHUNK: usize = 64 * 1024;

/// An archive being made: its stat, and its bytes as they are made.
pub struct Archive {
    pub stat: PathStat,
    pub body: mpsc::Receiver<std::io::Result<Vec<u8>>>,
}

fn lookup_error(e: Errno, path: &str, reference: &str) -> Error {
    match e {
        Errno::ENOENT | NOT_CONTAINERS => not_found_error(path, reference),
        e => Error::Failed(format!("stat {path}: {}", e.desc())),
    }
}

impl Core {
    fn mount_dir(&self) -> PathBuf {
        self.config.exec_root.join("mnt")
    }

    fn archive_event(&self, record: &ContainerRecord, action: &str) {
        let mut a: HashMap<String, String> = record.config.labels.clone().unwrap_or_default();
        a.insert("name".into(), record.name.clone());
        a.insert("image".into(), record.image.clone());
        self.events
            .publish(EventMessageTypeEnum::CONTAINER, action, &record.id, a);
    }

    /// `HEAD /containers/{id}/archive?path=`: the stat of a path in the container.
    pub async fn archive_stat(&self, reference: &str, path: &str) -> Result<PathStat> {
        let record = self.db.lookup(reference)?;
        let (mnt, path, reference) = (self.mount_dir(), path.to_string(), reference.to_string());
        tokio::task::spawn_blocking(move || {
            let root = Rootfs::open(&record, &mnt)?;
            let abs = container_path(&path);
            let found = lookup(&root, &abs).map_err(|e| lookup_error(e, &path, &reference))?;
            Ok(path_stat(&root, &abs, &found))
        })
        .await
        .map_err(|e| Error::failed("background task", e))?
    }

    /// `GET /containers/{id}/archive?path=`: the stat, then the archive as it is made.
    pub async fn archive_get(&self, reference: &str, path: &str) -> Result<Archive> {
        let record = self.db.lookup(reference)?;
        let (stat_tx, stat_rx) = oneshot::channel::<Result<PathStat>>();
        let (tx, rx) = mpsc::channel(8);
        let (mnt, path_owned, reference_owned) =
            (self.mount_dir(), path.to_string(), reference.to_string());
        let event_record = record.clone();
        tokio::task::spawn_blocking(move || {
            let prepared = (|| {
                let root = Rootfs::open(&record, &mnt)?;
                let abs = container_path(&path_owned);
                let found = lookup(&root, &abs)
                    .map_err(|e| lookup_error(e, &path_owned, &reference_owned))?;
                let stat = path_stat(&root, &abs, &found);
                Ok((root, abs, found, stat))
            })();
            let (root, abs, found, stat) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    let _ = stat_tx.send(Err(e));
                    return;
                }
            };
            if stat_tx.send(Ok(stat)).is_err() {
                return;
            }
            let writer = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            match write_archive(&root, &found, &abs, writer) {
                Ok(mut w) => {
                    let _ = w.flush();
                }
                Err(e) => {
                    tracing::warn!(path = path_owned, error = %e, "archive a container's path");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            }
            // What is open in the view first, then the view (its namespace and mounts).
            drop(found);
            drop(root);
        });
        let stat = stat_rx
            .await
            .map_err(|e| Error::failed("background task", e))??;
        self.archive_event(&event_record, "archive-path");
        Ok(Archive { stat, body: rx })
    }

    /// `PUT /containers/{id}/archive?path=`: extracts a tar archive (plain or gzip) into the directory `path` of
    /// the container, a symlink to a directory followed.
    pub async fn archive_put(
        &self,
        reference: &str,
        path: &str,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
        body: ChunkReader,
    ) -> Result<()> {
        let record = self.db.lookup(reference)?;
        let (mnt, path_owned, reference_owned) =
            (self.mount_dir(), path.to_string(), reference.to_string());
        let event_record = record.clone();
        tokio::task::spawn_blocking(move || {
            let root = Rootfs::open(&record, &mnt)?;
            // The last name is followed too: a symlink to a directory is extracted into.
            let abs = container_path(&path_owned);
            let fd = root
                .open_in(&abs, OFlag::O_PATH)
                .map_err(|e| lookup_error(e, &path_owned, &reference_owned))?;
            let st = fstat(&fd).map_err(|e| errno("stat", e))?;
            if kind(&st) != libc::S_IFDIR {
                return Err(Error::Invalid("extraction point is not a directory".into()));
            }
            // dockerd's checkIfPathIsInAVolume, on the mount the directory really is on: a read-only bind or
            // volume refuses, a writable one is written even when the rootfs is read-only; a tmpfs mount of a
            // running container is written too.
            match root.mount_holding(&fd).map_err(|e| errno("statx", e))? {
                Some(m) if !m.rw => {
                    return Err(Error::Forbidden(
                        "mounted volume is marked read-only".into(),
                    ));
                }
                Some(_) => {}
                None => {
                    let (id, _) = mount_of(&fd).map_err(|e| errno("statx", e))?;
                    if id == root.root_mount && record.host_config.readonly_rootfs.unwrap_or(false)
                    {
                        return Err(Error::Forbidden(
                            "container rootfs is marked read-only".into(),
                        ));
                    }
                }
            }
            let dest = root.path_of(&fd).ok_or_else(|| {
                Error::Failed(format!("{path_owned} is not in the container's rootfs"))
            })?;
            let owner = if copy_uid_gid {
                let user = record.config.user.clone().unwrap_or_default();
                let passwd = root.read_file(b"/etc/passwd")?;
                let group = root.read_file(b"/etc/group")?;
                let u = polis_host::users::resolve_user_from(&user, &passwd, &group)
                    .map_err(|e| Error::Invalid(format!("unable to find user {user}: {e}")))?;
                Some((u.uid, u.gid))
            } else {
                None
            };
            let extractor = Extractor {
                root: &root,
                dest,
                options: ExtractOptions {
                    no_overwrite_dir_non_dir,
                    owner,
                },
            };
            extractor.run(decompressed(body)?)
        })
        .await
        .map_err(|e| Error::failed("background task", e))??;
        self.archive_event(&event_record, "extract-to-dir");
        Ok(())
    }
}
