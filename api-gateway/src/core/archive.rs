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
//! version 2) and, beyond dockerd, the `user.*` attributes. Archives are read here as Go's archive/tar reads them
//! (PAX records walked by their lengths, so a binary value holding a newline is kept whole), not with
//! `tar::Archive` (docs/ARCHITECTURE.md, "imagesvc: our own tar framing").

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

/// Directories deeper than this are refused (each level holds a descriptor while the tree is walked).
const MAX_DEPTH: usize = 256;
/// The size of the chunks an archive is sent in.
const CHUNK: usize = 64 * 1024;

// Go's os.FileMode bits, which the stat header carries (dockerd marshals an os.FileMode).
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;

// ---------------------------------------------------------------------------------------------------------------
// Paths, as Go's path/filepath and dockerd's pkg/archive treat them.

/// Go's `filepath.Clean`: one slash between names, no `.`, each `..` eats the name before it (and is dropped at
/// the root of a rooted path); `.` for nothing.
pub fn clean(path: &[u8]) -> Vec<u8> {
    let rooted = path.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in path.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|c| *c != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(b"..");
                }
            }
            c => parts.push(c),
        }
    }
    let mut out = if rooted { vec![b'/'] } else { Vec::new() };
    out.extend(parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Go's `filepath.Base`: the last name, trailing slashes ignored; `/` for the root, `.` for nothing.
pub fn base(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let trimmed = {
        let mut end = path.len();
        while end > 0 && path[end - 1] == b'/' {
            end -= 1;
        }
        &path[..end]
    };
    if trimmed.is_empty() {
        return b"/".to_vec();
    }
    match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => trimmed[i + 1..].to_vec(),
        None => trimmed.to_vec(),
    }
}

/// Go's `filepath.Dir`: the path without its last name, cleaned.
pub fn dir(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => clean(&path[..=i]),
        None => b".".to_vec(),
    }
}

/// The path of `path` in the container as dockerd computes it: `filepath.Join("/", path)` with a trailing `/` or
/// `/.` kept (pkg/archive `PreserveTrailingDotOrSeparator`), since they mean "the directory the name leads to".
pub fn container_path(path: &str) -> Vec<u8> {
    let original = path.as_bytes();
    let mut joined = b"/".to_vec();
    joined.extend_from_slice(original);
    let mut cleaned = clean(&joined);
    if base(&cleaned) != b"." && base(original) == b"." {
        if cleaned.last() != Some(&b'/') {
            cleaned.push(b'/');
        }
        cleaned.push(b'.');
    }
    if cleaned.last() != Some(&b'/') && original.last() == Some(&b'/') {
        cleaned.push(b'/');
    }
    cleaned
}

/// Whether a relative, cleaned name leads out of the directory it is relative to.
fn escapes(cleaned: &[u8]) -> bool {
    cleaned == b".." || cleaned.starts_with(b"../")
}

/// An archive member's name made relative to the extraction directory, as pkg/archive joins it (`filepath.Join`
/// of the directory and the cleaned name); None when it leads out of the directory.
pub fn member_name(name: &[u8]) -> Option<Vec<u8>> {
    let cleaned = clean(name);
    let relative = clean(cleaned.strip_prefix(b"/").unwrap_or(&cleaned));
    (!escapes(&relative)).then_some(relative)
}

/// pkg/archive's symlink check: the link's target taken from the member's directory (an absolute target is joined
/// to it too, as `filepath.Join` does) must stay in the extraction directory.
pub fn symlink_escapes(member: &[u8], target: &[u8]) -> bool {
    let mut joined = dir(member);
    joined.push(b'/');
    joined.extend_from_slice(target);
    escapes(&clean(&joined))
}

// ---------------------------------------------------------------------------------------------------------------
// The stat header.

/// dockerd's `ContainerPathStat`, the `X-Docker-Container-Path-Stat` header (base64 of its JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's os.FileMode.
    pub mode: u32,
    /// RFC 3339 with nanoseconds, as Go marshals a time.Time.
    pub mtime: String,
    /// The path a symlink finally leads to in the container, resolved as far as it goes.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & GO_MODE_DIR != 0
    }

    /// The header's value.
    pub fn header_value(&self) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }
}

/// Go's os.FileMode of a Unix mode (`fs.FileMode` as os.Lstat fills it).
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFBLK => mode |= GO_MODE_DEVICE,
        libc::S_IFCHR => mode |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        libc::S_IFDIR => mode |= GO_MODE_DIR,
        libc::S_IFIFO => mode |= GO_MODE_NAMED_PIPE,
        libc::S_IFLNK => mode |= GO_MODE_SYMLINK,
        libc::S_IFSOCK => mode |= GO_MODE_SOCKET,
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        mode |= GO_MODE_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= GO_MODE_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= GO_MODE_STICKY;
    }
    mode
}

/// Go's RFC3339Nano of a UTC time: the fraction without trailing zeros, none when zero.
pub fn go_time(secs: i64, nanos: u32) -> String {
    let t = chrono::DateTime::from_timestamp(secs, nanos.min(999_999_999)).unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        s.push('.');
        s.push_str(fraction.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

// ---------------------------------------------------------------------------------------------------------------
// The container's root.

/// Containers whose overlay polisd has mounted for an operation: one at a time per container.
static BUSY: LazyLock<(Mutex<HashSet<String>>, Condvar)> =
    LazyLock::new(|| (Mutex::new(HashSet::new()), Condvar::new()));

struct Busy(String);

impl Busy {
    fn take(id: &str) -> Busy {
        let (set, cv) = &*BUSY;
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        while set.contains(id) {
            set = cv.wait(set).unwrap_or_else(|e| e.into_inner());
        }
        set.insert(id.to_string());
        Busy(id.to_string())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let (set, cv) = &*BUSY;
        set.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
        cv.notify_all();
    }
}

/// The directory under polisd's exec root that a stopped container's view mounts its overlay on (in the view's
/// own mount namespace only): removed when the operation ends, after the namespace.
struct MountDir(PathBuf);

impl Drop for MountDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "remove a copy's mount point");
        }
    }
}

/// A bind or volume of the container as mounted in a view: its mount ID and whether it is writable.
#[derive(Debug, Clone, Copy)]
struct ViewMount {
    id: u64,
    rw: bool,
}

/// The errno of a path whose object is on a mount that is not the container's files (a running container's
/// /proc, /sys, /dev...): reported as "not found", and left out of archives and extractions.
const NOT_CONTAINERS: Errno = Errno::EXDEV;

/// The files Docker provides, bind-mounted from the container's directory (spec.rs).
const DOCKER_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// A container's files for the length of one operation: the root of its view, and what is mounted in it.
pub struct Rootfs {
    fd: OwnedFd,
    /// The kernel's path of the root (the link of /proc/self/fd/N), which starts the path of everything in it.
    path: PathBuf,
    /// The mount ID of the rootfs.
    root_mount: u64,
    /// The record's binds and volumes, as mounted in the view.
    mounts: Vec<ViewMount>,
    /// The mounts that hold the container's files when the view holds others too (a running container's); None
    /// when every mount in the view does.
    allowed: Option<HashSet<u64>>,
    /// The private mount namespace of a stopped container's view: its mounts go when it is closed.
    _ns: Option<OwnedFd>,
    _dir: Option<MountDir>,
    _busy: Option<Busy>,
}

fn errno(what: impl std::fmt::Display, e: Errno) -> Error {
    if e == Errno::EROFS {
        return Error::Forbidden(format!("{what}: {}", e.desc()));
    }
    Error::Failed(format!("{what}: {}", e.desc()))
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor a system call just returned, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The mount a descriptor's object is on (statx `STATX_MNT_ID`), and whether it is that mount's root.
fn mount_of(fd: &OwnedFd) -> nix::Result<(u64, bool)> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: statx fills the struct it is given, which lives across the call; the path is a C string.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            stx.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(Errno::last());
    }
    // SAFETY: statx succeeded, so the struct is filled (and it was zeroed before).
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    let root = stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
        && stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Ok((stx.stx_mnt_id, root))
}

/// The mount whose root `path` (a container path) is in the view of `root`, if something is mounted there.
fn mount_at(root: RawFd, path: &[u8]) -> Option<u64> {
    let fd = open_in_root(root, path, OFlag::O_PATH).ok()?;
    match mount_of(&fd) {
        Ok((id, true)) => Some(id),
        _ => None,
    }
}

/// The tmpfs mounts the container asked for (`HostConfig.Tmpfs`, and `Mounts` of type tmpfs).
fn tmpfs_destinations(record: &ContainerRecord) -> Vec<String> {
    let mut out: Vec<String> = record
        .host_config
        .tmpfs
        .clone()
        .unwrap_or_default()
        .into_keys()
        .collect();
    for m in record.host_config.mounts.clone().unwrap_or_default() {
        if m.typ == Some(bollard_stubs::models::MountType::TMPFS)
            && let Some(target) = m.target
        {
            out.push(target);
        }
    }
    out
}

impl Rootfs {
    /// The view of `record`'s files: its own root while it runs, else a private view made under `mnt`.
    pub fn open(record: &ContainerRecord, mnt: &Path) -> Result<Rootfs> {
        if record.state.status.is_live() {
            Self::running(record)
        } else {
            Self::stopped(record, mnt)
        }
    }

    /// A root from its descriptor: where the kernel says it is, and the record's binds and volumes in it.
    fn from_fd(fd: OwnedFd, mounts: &[MountSpec]) -> Result<Rootfs> {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| Error::failed("read the path of a container's root", e))?;
        let (root_mount, _) = mount_of(&fd).map_err(|e| errno("statx a container's root", e))?;
        let mounts = mounts
            .iter()
            .filter_map(|m| {
                let id = mount_at(fd.as_raw_fd(), m.destination.as_bytes())?;
                (id != root_mount).then_some(ViewMount { id, rw: m.rw })
            })
            .collect();
        Ok(Rootfs {
            fd,
            path,
            root_mount,
            mounts,
            allowed: None,
            _ns: None,
            _dir: None,
            _busy: None,
        })
    }

    /// A running container's root, as its own processes see it.
    fn running(record: &ContainerRecord) -> Result<Rootfs> {
        let rootfs = record.bundle.join("rootfs");
        let unreachable = || {
            Error::Failed(format!(
                "the root of running container {} is not reachable: is it still running?",
                record.id
            ))
        };
        let want = nix::sys::stat::stat(&rootfs)
            .map_err(|e| errno(format!("stat {}", rootfs.display()), e))?;
        if record.state.pid <= 0 {
            return Err(unreachable());
        }
        let fd = open_dir(Path::new(&format!("/proc/{}/root", record.state.pid)))
            .map_err(|_| unreachable())?;
        // The process may be gone and its PID reused: its root must be the overlay the shim mounted.
        let st = fstat(&fd).map_err(|e| errno("stat a container's root", e))?;
        if (st.st_dev, st.st_ino) != (want.st_dev, want.st_ino) {
            return Err(unreachable());
        }
        let mut root = Rootfs::from_fd(fd, &record.mounts)?;
        let mut allowed: HashSet<u64> = root.mounts.iter().map(|m| m.id).collect();
        allowed.insert(root.root_mount);
        let extra = tmpfs_destinations(record)
            .into_iter()
            .chain(DOCKER_FILES.iter().map(|f| format!("/etc/{f}")));
        for dest in extra {
            if let Some(id) = mount_at(root.fd.as_raw_fd(), dest.as_bytes()) {
                allowed.insert(id);
            }
        }
        root.allowed = Some(allowed);
        Ok(root)
    }

    /// A stopped container's view: its overlay and mounts in a private mount namespace, under `mnt`.
    fn stopped(record: &ContainerRecord, mnt: &Path) -> Result<Rootfs> {
        if record.rootfs_options.is_empty() {
            return Err(Error::Failed(format!(
                "container {} has no rootfs",
                record.id
            )));
        }
        let busy = Busy::take(&record.id);
        std::fs::create_dir_all(mnt).map_err(|e| Error::failed(mnt.display(), e))?;
        let target = mnt.join(format!(
            "{}-{}",
            record.short_id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir(&target).map_err(|e| Error::failed(target.display(), e))?;
        let dir = MountDir(target.clone());
        // Declared after `dir`: on an error below, the namespace (and its mounts) goes before the directory.
        let (fd, ns) = build_view(record, &target)?;
        let ns = Some(ns);
        let mut root = Rootfs::from_fd(fd, &record.mounts)?;
        root._ns = ns;
        root._dir = Some(dir);
        root._busy = Some(busy);
        Ok(root)
    }

    /// The container's path of a descriptor of this root.
    fn path_of(&self, fd: &OwnedFd) -> Option<Vec<u8>> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let rest = link.strip_prefix(&self.path).ok()?;
        let mut out = b"/".to_vec();
        out.extend_from_slice(rest.as_os_str().as_bytes());
        Some(clean(&out))
    }

    /// Refuses (NOT_CONTAINERS) an object on a mount that is not the container's files.
    fn check(&self, fd: &OwnedFd) -> nix::Result<()> {
        match &self.allowed {
            None => Ok(()),
            Some(ids) if ids.contains(&mount_of(fd)?.0) => Ok(()),
            Some(_) => Err(NOT_CONTAINERS),
        }
    }

    /// Opens `path` (a container path) inside the root, every symlink resolved in it.
    fn open_in(&self, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        let fd = open_in_root(self.fd.as_raw_fd(), path, flags)?;
        self.check(&fd)?;
        Ok(fd)
    }

    /// The bind or volume a descriptor's object is on, if any.
    fn mount_holding(&self, fd: &OwnedFd) -> nix::Result<Option<ViewMount>> {
        let (id, _) = mount_of(fd)?;
        Ok(self.mounts.iter().find(|m| m.id == id).copied())
    }

    /// A file of the container (`/etc/passwd`), empty when it does not exist.
    fn read_file(&self, path: &[u8]) -> Result<String> {
        let fd = match self.open_in(path, OFlag::O_RDONLY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) | Err(NOT_CONTAINERS) => return Ok(String::new()),
            Err(e) => return Err(errno(format!("open {}", name_str(path)), e)),
        };
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(4 << 20)
            .read_to_string(&mut text)
            .map_err(|e| Error::failed(format!("read {}", name_str(path)), e))?;
        Ok(text)
    }
}

/// Makes a stopped container's view on `target`, in a mount namespace of a thread of its own (the way dockerd's
/// `openContainerFS` does it): the overlay, then each bind and volume and the files Docker provides on their
/// destinations, parents first (dockerd's `sortMounts`). Returns the root and the namespace that holds them.
fn build_view(record: &ContainerRecord, target: &Path) -> Result<(OwnedFd, OwnedFd)> {
    let mut binds: Vec<(PathBuf, String, bool)> = record
        .mounts
        .iter()
        .map(|m| (m.source.clone(), m.destination.clone(), m.rw))
        .collect();
    if let Some(dir) = record.bundle.parent() {
        for name in DOCKER_FILES {
            let (source, dest) = (dir.join("etc").join(name), format!("/etc/{name}"));
            // A bind of the request's own at that path is the one the container has (dockerd's netMounts).
            if source.is_file()
                && !binds
                    .iter()
                    .any(|(_, d, _)| clean(d.as_bytes()) == dest.as_bytes())
            {
                binds.push((source, dest, true));
            }
        }
    }
    binds.sort_by_key(|(_, dest, _)| {
        dest.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .count()
    });
    let options = record.rootfs_options.join(",");
    let readonly = record.host_config.readonly_rootfs.unwrap_or(false);
    let target = target.to_path_buf();
    let id = record.id.clone();
    let work = move || -> Result<(OwnedFd, OwnedFd)> {
        use nix::mount::{MsFlags, mount};
        // This thread's own file system context and mount namespace: nothing else sees what it mounts.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS | nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| errno("unshare a mount namespace", e))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .map_err(|e| errno("make a private mount namespace a slave", e))?;
        mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| errno(format!("mount the rootfs of container {id}"), e))?;
        let root = open_dir(&target)?;
        for (source, dest, rw) in &binds {
            bind_into(&root, source, dest, *rw)?;
        }
        if readonly {
            mount(
                None::<&str>,
                format!("/proc/self/fd/{}", root.as_raw_fd()).as_str(),
                None::<&str>,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .map_err(|e| errno(format!("make the rootfs of container {id} read-only"), e))?;
        }
        let ns = nix::fcntl::open(
            "/proc/thread-self/ns/mnt",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno("open a mount namespace", e))?;
        Ok((root, owned(ns)))
    };
    std::thread::Builder::new()
        .name("polisd-cp-view".into())
        .spawn(work)
        .map_err(|e| Error::failed("start a thread", e))?
        .join()
        .map_err(|_| Error::Failed("the thread making a container's view panicked".into()))?
}

/// Bind-mounts `source` (recursively, as dockerd does) on `dest` in the view of `root`, the destination resolved
/// in the root and made when missing; read-only unless `rw`.
fn bind_into(root: &OwnedFd, source: &Path, dest: &str, rw: bool) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    let failed = |e: Errno| errno(format!("mount {} on {dest}", source.display()), e);
    let is_dir = std::fs::metadata(source)
        .map_err(|e| Error::failed(format!("mount {} on {dest}", source.display()), e))?
        .is_dir();
    let point = mount_point(root.as_raw_fd(), dest.as_bytes(), is_dir).map_err(failed)?;
    mount(
        Some(source),
        format!("/proc/self/fd/{}", point.as_raw_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(failed)?;
    if !rw {
        let mounted =
            open_in_root(root.as_raw_fd(), dest.as_bytes(), OFlag::O_PATH).map_err(failed)?;
        mount(
            None::<&str>,
            format!("/proc/self/fd/{}", mounted.as_raw_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(failed)?;
    }
    Ok(())
}

/// The object at `dest` (a container path) in the view of `root`, made when missing as dockerd's
/// `CreateIfNotExists` makes a mount point: missing directories 0755, and the last name a directory or, for a
/// file's mount, an empty file; every name resolved in the root.
fn mount_point(root: RawFd, dest: &[u8], dir: bool) -> nix::Result<OwnedFd> {
    match open_in_root(root, dest, OFlag::O_PATH) {
        Err(Errno::ENOENT) => {}
        found => return found,
    }
    let names: Vec<&[u8]> = dest
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let mut at = b"/".to_vec();
    let mut fd = open_in_root(root, &at, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for (i, name) in names.iter().enumerate() {
        at = join(&at, name);
        match open_in_root(root, &at, OFlag::O_PATH) {
            Ok(next) => {
                fd = next;
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let name_os = OsStr::from_bytes(name);
        if i + 1 == names.len() && !dir {
            match nix::fcntl::openat(
                Some(fd.as_raw_fd()),
                name_os,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(file) => drop(owned(file)),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        } else {
            match nix::sys::stat::mkdirat(
                Some(fd.as_raw_fd()),
                name_os,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        fd = open_in_root(root, &at, OFlag::O_PATH)?;
    }
    Ok(fd)
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
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
fn open_in_root(root: RawFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
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

fn open_at(dir: RawFd, name: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        Some(dir),
        OsStr::from_bytes(name),
        flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map(owned)
}

fn fstat(fd: &OwnedFd) -> nix::Result<FileStat> {
    nix::sys::stat::fstat(fd.as_raw_fd())
}

fn kind(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// What a container path names.
struct Found {
    /// An O_PATH descriptor of the object itself (of a symlink, not of its target).
    fd: OwnedFd,
    st: FileStat,
}

fn not_found_error(path: &str, container: &str) -> Error {
    Error::NotFound(format!(
        "Could not find the file {path} in container {container}"
    ))
}

/// Looks a container path up as dockerd's `Lstat` does: its last name is not followed, unless the path ends in
/// `/` or `/.` (then it names the directory a symlink leads to).
fn lookup(root: &Rootfs, abs: &[u8]) -> nix::Result<Found> {
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
fn path_stat(root: &Rootfs, abs: &[u8], found: &Found) -> PathStat {
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
fn link_target(root: &Rootfs, abs: &[u8], found: &Found) -> String {
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

// ---------------------------------------------------------------------------------------------------------------
// Making an archive.

/// Writes the archive into a channel in chunks, for a response body read as it is made.
struct ChunkWriter {
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Exactly `left` bytes of a file that may change while it is read: cut when it grew, padded with zeros when it
/// shrank (its header already holds the size).
struct Exact<R> {
    inner: R,
    left: u64,
    eof: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = if self.eof {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            self.eof = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// A PAX extended header's records (`%d %s=%s\n`, the length counting itself).
fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let body = key.len() + value.len() + 3;
        let mut len = body + body.to_string().len();
        if len.to_string().len() + body != len {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// Appends one member: GNU long-name and long-link members first when the name or link target do not fit.
fn append_member<W: Write>(
    out: &mut tar::Builder<W>,
    header: &mut tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    pax: &[u8],
    data: impl Read,
) -> std::io::Result<()> {
    let long = |out: &mut tar::Builder<W>, kind: tar::EntryType, value: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_entry_type(kind);
        let mut data = value.to_vec();
        data.push(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append(&h, data.as_slice())
    };
    if !pax.is_empty() {
        let mut h = tar::Header::new_ustar();
        let pax_name = b"PaxHeaders.0/member";
        h.as_old_mut().name[..pax_name.len()].copy_from_slice(pax_name);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(pax.len() as u64);
        h.set_cksum();
        out.append(&h, pax)?;
    }
    if name.len() > 100 {
        long(out, tar::EntryType::GNULongName, name)?;
    }
    if let Some(link) = link.filter(|l| l.len() > 100) {
        long(out, tar::EntryType::GNULongLink, link)?;
    }
    let old = header.as_old_mut();
    old.name = [0; 100];
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    if let Some(link) = link {
        old.linkname = [0; 100];
        let n = link.len().min(100);
        old.linkname[..n].copy_from_slice(&link[..n]);
    }
    header.set_cksum();
    out.append(header, data)
}

/// The path through which a descriptor's own inode is reached by path-based calls (an O_PATH descriptor cannot
/// be given to the f*xattr calls).
fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// Calls a size-then-fill xattr call (`listxattr`, `getxattr`) until the buffer holds the whole value.
fn xattr_buffer(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> Option<Vec<u8>> {
    for _ in 0..4 {
        let size = call(std::ptr::null_mut(), 0);
        if size <= 0 {
            return (size == 0).then(Vec::new);
        }
        let mut buf = vec![0u8; size as usize];
        let n = call(buf.as_mut_ptr().cast(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Some(buf);
        }
        // ERANGE: it grew since it was measured.
        if Errno::last() != Errno::ERANGE {
            return None;
        }
    }
    None
}

/// The extended attributes an archive carries for a file or directory, as PAX records: `security.capability`,
/// as dockerd's pkg/archive `ReadSecurityXattrToTarHeader` reads it (a version 3 value, whose root UID means
/// nothing outside the container, made version 2), and the `user.*` attributes, which dockerd leaves out and
/// `docker cp` applies when it extracts.
fn xattr_pax(fd: &OwnedFd) -> Vec<u8> {
    const CAPABILITY: &[u8] = b"security.capability";
    let path = fd_path(fd);
    // SAFETY: listxattr writes at most `size` bytes into the buffer it is given (none for a null one).
    let Some(list) =
        xattr_buffer(|buf, size| unsafe { libc::listxattr(path.as_ptr(), buf.cast(), size) })
    else {
        return Vec::new();
    };
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name == CAPABILITY) {
            continue;
        }
        let (Ok(text), Ok(c_name)) = (std::str::from_utf8(name), CString::new(name)) else {
            continue;
        };
        // SAFETY: getxattr writes at most `size` bytes into the buffer it is given (none for a null one).
        let Some(mut value) = xattr_buffer(|buf, size| unsafe {
            libc::getxattr(path.as_ptr(), c_name.as_ptr(), buf, size)
        }) else {
            continue;
        };
        if name == CAPABILITY && value.len() > 20 && value[3] == 3 {
            // VFS_CAP_REVISION_3 -> VFS_CAP_REVISION_2 (linux/capability.h): the 20 bytes without the root UID.
            value[3] = 2;
            value.truncate(20);
        }
        records.push((format!("SCHILY.xattr.{text}"), value));
    }
    records.sort();
    let borrowed: Vec<(&str, &[u8])> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    pax_records(&borrowed)
}

/// The archive's state: files already written, by inode, for hard links.
struct Archiver<W: Write> {
    out: tar::Builder<W>,
    seen: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Archiver<W> {
    /// Appends the object `fd` (O_PATH, not followed) as `name`, as pkg/archive's `addTarFile` does.
    fn add(&mut self, fd: &OwnedFd, st: &FileStat, name: &[u8]) -> Result<()> {
        let io = |e: std::io::Error| Error::failed("write the archive", e);
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        let mut name = name.to_vec();
        match kind(st) {
            libc::S_IFDIR => {
                if !name.ends_with(b"/") {
                    name.push(b'/');
                }
                h.set_entry_type(tar::EntryType::Directory);
                let pax = xattr_pax(fd);
                append_member(&mut self.out, &mut h, &name, None, &pax, std::io::empty())
                    .map_err(io)
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
                    .map_err(|e| errno("readlink", e))?
                    .into_vec();
                h.set_entry_type(tar::EntryType::Symlink);
                append_member(
                    &mut self.out,
                    &mut h,
                    &name,
                    Some(&target),
                    &[],
                    std::io::empty(),
                )
                .map_err(io)
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.seen.get(&key) {
                        let first = first.clone();
                        h.set_entry_type(tar::EntryType::Link);
                        return append_member(
                            &mut self.out,
                            &mut h,
                            &name,
                            Some(&first),
                            &[],
                            std::io::empty(),
                        )
                        .map_err(io);
                    }
                    self.seen.insert(key, name.clone());
                }
                // The O_PATH descriptor is this very inode: reopening it through /proc reads no other file.
                let file = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .map_err(|e| {
                        Error::failed(format!("open {}", String::from_utf8_lossy(&name)), e)
                    })?;
                let pax = xattr_pax(fd);
                let size = st.st_size.max(0) as u64;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                let data = Exact {
                    inner: file,
                    left: size,
                    eof: false,
                };
                append_member(&mut self.out, &mut h, &name, None, &pax, data).map_err(io)
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                h.set_entry_type(match kind(st) {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if kind(st) != libc::S_IFIFO {
                    let rdev = st.st_rdev;
                    h.set_device_major(libc::major(rdev)).map_err(io)?;
                    h.set_device_minor(libc::minor(rdev)).map_err(io)?;
                }
                append_member(&mut self.out, &mut h, &name, None, &[], std::io::empty()).map_err(io)
            }
            // Sockets are left out, as dockerd leaves them.
            _ => Ok(()),
        }
    }
}

/// A directory being walked: its descriptor, its names (sorted, as Go's filepath.Walk reads them) and the name
/// of its members in the archive.
struct Frame {
    dir: OwnedFd,
    names: Vec<Vec<u8>>,
    next: usize,
    prefix: Vec<u8>,
}

impl Frame {
    fn open(fd: &OwnedFd, prefix: Vec<u8>) -> Result<Frame> {
        let dir = nix::fcntl::openat(
            Some(fd.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(format!("open {}", String::from_utf8_lossy(&prefix)), e))?;
        let dir = owned(dir);
        let listing = nix::fcntl::openat(
            Some(dir.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno("open directory", e))?;
        let mut d = nix::dir::Dir::from_fd(listing).map_err(|e| errno("read directory", e))?;
        let mut names: Vec<Vec<u8>> = d
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        names.sort();
        Ok(Frame {
            dir,
            names,
            next: 0,
            prefix,
        })
    }
}

/// Archives `found` (named `abs`) as dockerd does: a directory as its name and everything in it, anything else
/// as itself; members are named from `base(abs)` (`TarResourceRebaseOpts`). What is in the directory is walked
/// across the mounts of the container's view (a volume in it is archived too), and what is on a mount that is
/// not the container's files (a running container's /proc) is left out.
fn write_archive<W: Write>(root: &Rootfs, found: &Found, abs: &[u8], out: W) -> Result<W> {
    let mut a = Archiver {
        out: tar::Builder::new(out),
        seen: HashMap::new(),
    };
    let top = base(abs);
    a.add(&found.fd, &found.st, &top)?;
    if kind(&found.st) == libc::S_IFDIR {
        let mut stack = vec![Frame::open(&found.fd, top)?];
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.names.get(frame.next).cloned() else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            let child = match open_at(frame.dir.as_raw_fd(), &name, OFlag::O_PATH) {
                Ok(fd) => fd,
                // Gone since the directory was read.
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(errno("open", e)),
            };
            match root.check(&child) {
                Ok(()) => {}
                Err(NOT_CONTAINERS) => continue,
                Err(e) => return Err(errno("statx", e)),
            }
            let st = fstat(&child).map_err(|e| errno("stat", e))?;
            let mut member = frame.prefix.clone();
            if !member.ends_with(b"/") {
                member.push(b'/');
            }
            member.extend_from_slice(&name);
            a.add(&child, &st, &member)?;
            if kind(&st) == libc::S_IFDIR {
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::Failed(format!(
                        "{} is more than {MAX_DEPTH} directories deep",
                        String::from_utf8_lossy(&member)
                    )));
                }
                let frame = Frame::open(&child, member)?;
                stack.push(frame);
            }
        }
    }
    a.out
        .into_inner()
        .map_err(|e| Error::failed("write the archive", e))
}

// ---------------------------------------------------------------------------------------------------------------
// Reading an archive, as Go's archive/tar Reader reads it (pkg/archive unpacks what it reads).

const BLOCK: usize = 512;
/// archive/tar's limit on the data of a PAX or GNU long-name header (maxSpecialFileSize).
const MAX_META: u64 = 1 << 20;

// Type flags.
const TYPE_REG: u8 = b'0';
const TYPE_REG_OLD: u8 = 0;
const TYPE_LINK: u8 = b'1';
const TYPE_SYMLINK: u8 = b'2';
const TYPE_CHAR: u8 = b'3';
const TYPE_BLOCK: u8 = b'4';
const TYPE_DIR: u8 = b'5';
const TYPE_FIFO: u8 = b'6';
const TYPE_CONTIGUOUS: u8 = b'7';
const TYPE_PAX: u8 = b'x';
const TYPE_PAX_GLOBAL: u8 = b'g';
const TYPE_GNU_LONG_NAME: u8 = b'L';
const TYPE_GNU_LONG_LINK: u8 = b'K';
const TYPE_GNU_SPARSE: u8 = b'S';

/// One member of an archive, its PAX and GNU long-name headers applied (Go's tar.Header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Member {
    kind: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Seconds and nanoseconds.
    mtime: (i64, i64),
    dev_major: u32,
    dev_minor: u32,
    /// Bytes of data that follow the header.
    size: u64,
    /// From `SCHILY.xattr.NAME` records, in the order they came.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn bad_archive(reason: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("read the archive: {reason}"))
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// archive/tar's parseNumeric: base-256 (two's complement) when the first byte's high bit is set, else octal
/// text padded with spaces or NULs on either side (empty is 0).
fn parse_numeric(field: &[u8]) -> Option<i64> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        let inv = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &b) in field.iter().enumerate() {
            let mut c = b ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return None;
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 > 0 {
            return None;
        }
        return Some(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    let pad = |b: &u8| *b == b' ' || *b == 0;
    let Some(start) = field.iter().position(|b| !pad(b)) else {
        return Some(0);
    };
    let end = field.iter().rposition(|b| !pad(b)).unwrap_or(start);
    let mut value: i64 = 0;
    for &b in &field[start..=end] {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(value)
}

/// archive/tar's parsePAXTime: `SECONDS[.FRACTION]`, the fraction cut at nanoseconds.
fn parse_pax_time(text: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(text).ok()?;
    let (secs, fraction) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if fraction.is_empty() {
        return Some((secs, 0));
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = fraction.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    // A negative time's fraction counts back from its seconds (Go's time.Unix(secs, -nanos)).
    Some(if text.starts_with('-') && nanos > 0 {
        (secs - 1, 1_000_000_000 - nanos)
    } else {
        (secs, nanos)
    })
}

/// archive/tar's parsePAX: `LEN KEY=VALUE\n` records, each walked by its length (a value may hold a newline or
/// any byte), a later record of a key replacing an earlier one.
fn parse_pax(mut data: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let malformed = || bad_archive("malformed PAX record");
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|b| *b == b' ').ok_or_else(malformed)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(malformed)?;
        if len < 5 || len > data.len() || len <= space + 1 || data[len - 1] != b'\n' {
            return Err(malformed());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(malformed)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let nul_in = match key {
            b"path" | b"linkpath" | b"uname" | b"gname" => value,
            _ => key,
        };
        if key.is_empty() || nul_in.contains(&0) {
            return Err(malformed());
        }
        records.retain(|(k, _)| k != key);
        records.push((key.to_vec(), value.to_vec()));
        data = &data[len..];
    }
    Ok(records)
}

/// The members of a tar stream: each header with what its PAX and GNU headers say, then its data (read through
/// `Read`, which ends with the member's data).
struct TarReader<R: Read> {
    src: std::io::BufReader<R>,
    /// Unread data of the current member, and the padding after it.
    data_left: u64,
    pad_left: u64,
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

impl<R: Read> TarReader<R> {
    fn new(src: R) -> Self {
        TarReader {
            src: std::io::BufReader::with_capacity(64 * 1024, src),
            data_left: 0,
            pad_left: 0,
        }
    }

    /// Fills `buf`; Ok(false) when the stream ends before its first byte.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            match self.src.read(&mut buf[done..]) {
                Ok(0) if done == 0 => return Ok(false),
                Ok(0) => return Err(bad_archive("unexpected end of the archive")),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(bad_archive(e)),
            }
        }
        Ok(true)
    }

    fn skip(&mut self, mut amount: u64) -> Result<()> {
        let mut scratch = [0u8; 8192];
        while amount > 0 {
            let want = amount.min(scratch.len() as u64) as usize;
            if !self.read_full(&mut scratch[..want])? {
                return Err(bad_archive("unexpected end of the archive"));
            }
            amount -= want as u64;
        }
        Ok(())
    }

    /// The data of a PAX or GNU long-name header.
    fn read_meta(&mut self, size: u64) -> Result<Vec<u8>> {
        if size > MAX_META {
            return Err(bad_archive(format!(
                "an extended header of {size} bytes (at most {MAX_META})"
            )));
        }
        let mut data = vec![0u8; size as usize];
        if !self.read_full(&mut data)? && size > 0 {
            return Err(bad_archive("unexpected end of the archive"));
        }
        self.skip(padding(size))?;
        Ok(data)
    }

    /// The next member; None at the end of the archive (two zero blocks, or the end of the stream).
    fn next_member(&mut self) -> Result<Option<Member>> {
        self.skip(self.data_left + self.pad_left)?;
        self.data_left = 0;
        self.pad_left = 0;
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_full(&mut block)? {
                return Ok(None);
            }
            if block.iter().all(|b| *b == 0) {
                if !self.read_full(&mut block)? || block.iter().all(|b| *b == 0) {
                    return Ok(None);
                }
                return Err(bad_archive("invalid tar header"));
            }
            let mut member = parse_header(&block)?;
            match member.kind {
                TYPE_PAX => {
                    let data = self.read_meta(member.size)?;
                    pax = parse_pax(&data)?;
                    continue;
                }
                // pkg/archive ignores them ("PAX Global Extended Headers found and ignored").
                TYPE_PAX_GLOBAL => {
                    self.read_meta(member.size)?;
                    continue;
                }
                TYPE_GNU_LONG_NAME | TYPE_GNU_LONG_LINK => {
                    let data = self.read_meta(member.size)?;
                    let value = trim_nul(&data).to_vec();
                    if member.kind == TYPE_GNU_LONG_NAME {
                        long_name = Some(value);
                    } else {
                        long_link = Some(value);
                    }
                    continue;
                }
                _ => {}
            }
            // archive/tar's mergePAX (an empty value keeps the header's), then the GNU names over both.
            for (key, value) in &pax {
                let number = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<i64>().ok())
                        .ok_or_else(|| bad_archive("malformed PAX record"))
                };
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    member.xattrs.push((name.to_vec(), value.clone()));
                    continue;
                }
                if key.starts_with(b"GNU.sparse.") {
                    return Err(bad_archive("sparse files are not supported"));
                }
                if value.is_empty() {
                    continue;
                }
                match key.as_slice() {
                    b"path" => member.name = value.clone(),
                    b"linkpath" => member.link = value.clone(),
                    b"uid" => member.uid = number()? as u32,
                    b"gid" => member.gid = number()? as u32,
                    b"size" => {
                        member.size =
                            u64::try_from(number()?).map_err(|_| bad_archive("negative size"))?
                    }
                    b"mtime" => {
                        member.mtime = parse_pax_time(value)
                            .ok_or_else(|| bad_archive("malformed PAX mtime"))?
                    }
                    _ => {}
                }
            }
            if let Some(name) = long_name {
                member.name = name;
            }
            if let Some(link) = long_link {
                member.link = link;
            }
            if member.kind == TYPE_REG_OLD {
                // Legacy archives mark a directory by its trailing slash.
                member.kind = if member.name.ends_with(b"/") {
                    TYPE_DIR
                } else {
                    TYPE_REG
                };
            }
            if member.kind == TYPE_GNU_SPARSE {
                return Err(bad_archive("sparse files are not supported"));
            }
            // archive/tar's isHeaderOnlyType: no data, whatever the size says.
            if matches!(
                member.kind,
                TYPE_LINK | TYPE_SYMLINK | TYPE_CHAR | TYPE_BLOCK | TYPE_DIR | TYPE_FIFO
            ) {
                member.size = 0;
            }
            self.data_left = member.size;
            self.pad_left = padding(member.size);
            return Ok(Some(member));
        }
    }
}

/// One header block (V7, USTAR, STAR or GNU), checked against its checksum, as archive/tar's readHeader.
fn parse_header(block: &[u8; BLOCK]) -> Result<Member> {
    let invalid = || bad_archive("invalid tar header");
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    let sum = parse_numeric(&block[148..156]).ok_or_else(invalid)?;
    if sum != unsigned && sum != signed {
        return Err(invalid());
    }
    let number = |range: std::ops::Range<usize>| parse_numeric(&block[range]).ok_or_else(invalid);
    let magic = &block[257..263];
    let version = &block[263..265];
    let ustar = magic == b"ustar\0" && version == b"00";
    let gnu = magic == b"ustar " && version == b" \0";
    let kind = block[156];
    let mut name = trim_nul(&block[0..100]).to_vec();
    if ustar {
        // STAR keeps times after a shorter prefix, and says so at the end of the block.
        let prefix = if &block[508..512] == b"tar\0" {
            trim_nul(&block[345..476])
        } else {
            trim_nul(&block[345..500])
        };
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    let (mut dev_major, mut dev_minor) = (0, 0);
    if (ustar || gnu) && matches!(kind, TYPE_CHAR | TYPE_BLOCK) {
        dev_major = number(329..337)? as u32;
        dev_minor = number(337..345)? as u32;
    }
    let size = number(124..136)?;
    Ok(Member {
        kind,
        name,
        link: trim_nul(&block[157..257]).to_vec(),
        mode: number(100..108)? as u32,
        uid: number(108..116)? as u32,
        gid: number(116..124)? as u32,
        mtime: (number(136..148)?, 0),
        dev_major,
        dev_minor,
        size: u64::try_from(size).map_err(|_| bad_archive("negative size"))?,
        xattrs: Vec::new(),
    })
}

impl<R: Read> Read for TarReader<R> {
    /// The current member's data, and nothing after it.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.data_left.min(usize::MAX as u64) as usize);
        let n = self.src.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the archive ends in the data of a member",
            ));
        }
        self.data_left -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Extracting an archive.

/// How an archive is extracted (the `PUT` parameters).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory and the reverse (`noOverwriteDirNonDir`).
    pub no_overwrite_dir_non_dir: bool,
    /// Every file owned by this uid and gid rather than the archive's (`copyUIDGID`: the container's user).
    pub owner: Option<(u32, u32)>,
}

/// An archive read from chunks sent by the request's body.
pub struct ChunkReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> ChunkReader {
        ChunkReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(c)) => {
                    self.chunk = c;
                    self.at = 0;
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The archive, decompressed when it is gzip (dockerd's `DecompressStream`; bzip2 and xz are refused).
fn decompressed(mut reader: impl Read + Send + 'static) -> Result<Box<dyn Read + Send>> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::failed("read the archive", e)),
        }
    }
    let whole = std::io::Cursor::new(head[..n].to_vec()).chain(reader);
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::read::GzDecoder::new(whole)));
    }
    if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(Error::Invalid(
            "bzip2 and xz archives are not supported: send a plain or gzip tar".into(),
        ));
    }
    Ok(Box::new(whole))
}

fn name_str(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Joins a container directory and a relative name.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    clean(&p)
}

/// Removes `name` in `parent`, a directory with everything in it (os.RemoveAll, never following a symlink).
fn remove_all(parent: RawFd, name: &[u8], depth: usize) -> Result<()> {
    let name_os = OsStr::from_bytes(name);
    match nix::unistd::unlinkat(
        Some(parent),
        name_os,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
        Err(e) => return Err(errno(format!("remove {}", name_str(name)), e)),
    }
    if depth >= MAX_DEPTH {
        return Err(Error::Failed(format!(
            "{} is more than {MAX_DEPTH} directories deep",
            name_str(name)
        )));
    }
    let dir = open_at(parent, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| errno(format!("open {}", name_str(name)), e))?;
    let names: Vec<Vec<u8>> = {
        let listing = nix::fcntl::openat(
            Some(dir.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno("open directory", e))?;
        let mut d = nix::dir::Dir::from_fd(listing).map_err(|e| errno("read directory", e))?;
        d.iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect()
    };
    for n in names {
        remove_all(dir.as_raw_fd(), &n, depth + 1)?;
    }
    match nix::unistd::unlinkat(Some(parent), name_os, nix::unistd::UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(errno(format!("remove {}", name_str(name)), e)),
    }
}

/// Sets owner, extended attributes, mode and times of `name` in `parent`, in pkg/archive's order (`chown` clears
/// `security.capability`, so the attributes come after it), without following it if it is a symlink: owner and
/// times with AT_SYMLINK_NOFOLLOW, attributes and mode through the object's own descriptor (the mode not for a
/// symlink). An attribute the file system or the object refuses (ENOTSUP, EPERM: `user.*` on a symlink) is
/// logged and skipped, as dockerd skips it; any other failure fails the extraction.
fn set_attributes(
    parent: RawFd,
    name: &[u8],
    owner: (u32, u32),
    mode: Option<u32>,
    mtime: Option<(i64, i64)>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    let name_os = OsStr::from_bytes(name);
    nix::unistd::fchownat(
        Some(parent),
        name_os,
        Some(nix::unistd::Uid::from_raw(owner.0)),
        Some(nix::unistd::Gid::from_raw(owner.1)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| errno(format!("chown {}", name_str(name)), e))?;
    if mode.is_some() || !xattrs.is_empty() {
        let fd = open_at(parent, name, OFlag::O_PATH)
            .map_err(|e| errno(format!("open {}", name_str(name)), e))?;
        // Through /proc: the descriptor's inode (a symlink itself, not its target), whatever now has its name.
        let path = fd_path(&fd);
        let mut skipped = Vec::new();
        for (key, value) in xattrs {
            let Ok(c_key) = CString::new(key.as_slice()) else {
                skipped.push(format!("{}: invalid name", name_str(key)));
                continue;
            };
            // SAFETY: both strings are NUL-terminated and the value's length is its buffer's.
            let r = unsafe {
                libc::setxattr(
                    path.as_ptr(),
                    c_key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            if r != 0 {
                match Errno::last() {
                    e @ (Errno::ENOTSUP | Errno::EPERM) => {
                        skipped.push(format!("{}: {}", name_str(key), e.desc()))
                    }
                    e => {
                        return Err(errno(
                            format!("set the attribute {} of {}", name_str(key), name_str(name)),
                            e,
                        ));
                    }
                }
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(
                file = name_str(name),
                errors = ?skipped,
                "ignored xattrs in archive: underlying filesystem doesn't support them"
            );
        }
        let st = fstat(&fd).map_err(|e| errno("stat", e))?;
        if let Some(mode) = mode
            && kind(&st) != libc::S_IFLNK
        {
            nix::sys::stat::fchmodat(
                None,
                format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
                Mode::from_bits_truncate(mode & 0o7777),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| errno(format!("chmod {}", name_str(name)), e))?;
        }
    }
    if let Some((secs, nanos)) = mtime {
        let ts = nix::sys::time::TimeSpec::new(secs, nanos);
        nix::sys::stat::utimensat(
            Some(parent),
            name_os,
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| errno(format!("set the times of {}", name_str(name)), e))?;
    }
    Ok(())
}

/// A directory made by an extraction (its container path) and the mtime it gets once everything is in it.
type DirTimes = (Vec<u8>, (i64, i64));

/// Extraction into one directory of a root.
struct Extractor<'a> {
    root: &'a Rootfs,
    /// The extraction directory's path in the container.
    dest: Vec<u8>,
    options: ExtractOptions,
}

impl Extractor<'_> {
    /// The directory `rel` (relative to the extraction directory) opened in the root, made (0755, root's) with
    /// its missing parents when it does not exist (pkg/archive's implied directories). None when it is on a mount
    /// that is not the container's files (a running container's /proc).
    fn parent(&self, rel: &[u8]) -> Result<Option<OwnedFd>> {
        let path = join(&self.dest, rel);
        match self.root.open_in(&path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => return Ok(Some(fd)),
            Err(NOT_CONTAINERS) => return Ok(None),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(errno(format!("open {}", name_str(&path)), e)),
        }
        let mut at = self.dest.clone();
        let mut fd = self
            .root
            .open_in(&at, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| errno(format!("open {}", name_str(&at)), e))?;
        for comp in rel
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
            at = join(&at, comp);
            let next = match self.root.open_in(&at, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(next) => next,
                Err(NOT_CONTAINERS) => return Ok(None),
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        Some(fd.as_raw_fd()),
                        OsStr::from_bytes(comp),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(errno(format!("mkdir {}", name_str(&at)), e)),
                    }
                    set_attributes(fd.as_raw_fd(), comp, (0, 0), None, None, &[])?;
                    self.root
                        .open_in(&at, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| errno(format!("open {}", name_str(&at)), e))?
                }
                Err(e) => return Err(errno(format!("open {}", name_str(&at)), e)),
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    /// Applies one member, as pkg/archive's `Unpack` and `createTarFile` do, its data read from `data`. Returns
    /// the directory's path and mtime for a directory member, whose times are set once everything is in it. A
    /// member on a mount that is not the container's files is skipped: dockerd would write it to the rootfs
    /// directory that mount hides.
    fn apply(&self, m: &Member, data: &mut dyn Read) -> Result<Option<DirTimes>> {
        let breakout =
            |what: String| Error::Invalid(format!("{what} is outside of {}", name_str(&self.dest)));
        let name =
            member_name(&m.name).ok_or_else(|| breakout(format!("{:?}", name_str(&m.name))))?;
        if name == b"." {
            // The extraction directory itself: it exists and is a directory.
            return Ok(None);
        }
        let is_dir = m.kind == TYPE_DIR;
        let parent_rel = dir(&name);
        let last = base(&name);
        let path = join(&self.dest, &name);
        let skip = || {
            tracing::debug!(
                path = name_str(&path),
                "not extracted: not on the container's files"
            );
            Ok(None)
        };
        let Some(parent) = self.parent(&parent_rel)? else {
            return skip();
        };
        let pfd = parent.as_raw_fd();
        match nix::sys::stat::fstatat(
            Some(pfd),
            OsStr::from_bytes(&last),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => {
                // A mount point (of /proc, say) is what is mounted on it.
                if let Ok(existing) = open_at(pfd, &last, OFlag::O_PATH)
                    && self.root.check(&existing) == Err(NOT_CONTAINERS)
                {
                    return skip();
                }
                let exists_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                if self.options.no_overwrite_dir_non_dir && exists_dir && !is_dir {
                    return Err(Error::Invalid(format!(
                        "cannot overwrite directory {:?} with non-directory {:?}",
                        name_str(&path),
                        name_str(&self.dest)
                    )));
                }
                if self.options.no_overwrite_dir_non_dir && !exists_dir && is_dir {
                    return Err(Error::Invalid(format!(
                        "cannot overwrite non-directory {:?} with directory {:?}",
                        name_str(&path),
                        name_str(&self.dest)
                    )));
                }
                if !(exists_dir && is_dir) {
                    remove_all(pfd, &last, 0)?;
                }
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(errno(format!("stat {}", name_str(&path)), e)),
        }
        let mode = m.mode;
        let last_os = OsStr::from_bytes(&last);
        let made = |e: Errno| errno(format!("create {}", name_str(&path)), e);
        let mut chmod = true;
        match m.kind {
            TYPE_DIR => {
                match nix::sys::stat::mkdirat(
                    Some(pfd),
                    last_os,
                    Mode::from_bits_truncate(mode & 0o777),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(made(e)),
                }
            }
            TYPE_REG | TYPE_CONTIGUOUS => {
                let fd = nix::fcntl::openat(
                    Some(pfd),
                    last_os,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map(owned)
                .map_err(made)?;
                let mut file = std::fs::File::from(fd);
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = match data.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(bad_archive(e)),
                    };
                    file.write_all(&buf[..n])
                        .map_err(|e| Error::failed(format!("write {}", name_str(&path)), e))?;
                }
            }
            TYPE_CHAR | TYPE_BLOCK | TYPE_FIFO => {
                let (kind_flag, dev) = match m.kind {
                    TYPE_FIFO => (SFlag::S_IFIFO, 0),
                    TYPE_CHAR => (SFlag::S_IFCHR, libc::makedev(m.dev_major, m.dev_minor)),
                    _ => (SFlag::S_IFBLK, libc::makedev(m.dev_major, m.dev_minor)),
                };
                nix::sys::stat::mknodat(
                    Some(pfd),
                    last_os,
                    kind_flag,
                    Mode::from_bits_truncate(mode & 0o777),
                    dev,
                )
                .map_err(made)?;
            }
            TYPE_LINK => {
                let target = member_name(&m.link).ok_or_else(|| {
                    breakout(format!(
                        "invalid hardlink {:?} -> {:?}",
                        name_str(&path),
                        name_str(&m.link)
                    ))
                })?;
                let target_parent = self
                    .root
                    .open_in(
                        &join(&self.dest, &dir(&target)),
                        OFlag::O_PATH | OFlag::O_DIRECTORY,
                    )
                    .map_err(|e| errno(format!("link {}", name_str(&path)), e))?;
                let target_base = base(&target);
                nix::unistd::linkat(
                    Some(target_parent.as_raw_fd()),
                    OsStr::from_bytes(&target_base),
                    Some(pfd),
                    last_os,
                    AtFlags::empty(),
                )
                .map_err(made)?;
            }
            TYPE_SYMLINK => {
                if symlink_escapes(&name, &m.link) {
                    return Err(breakout(format!(
                        "invalid symlink {:?} -> {:?}",
                        name_str(&path),
                        name_str(&m.link)
                    )));
                }
                nix::unistd::symlinkat(OsStr::from_bytes(&m.link), Some(pfd), last_os)
                    .map_err(made)?;
                chmod = false;
            }
            other => {
                return Err(Error::Invalid(format!("unhandled tar header type {other}")));
            }
        }
        let owner = self.options.owner.unwrap_or((m.uid, m.gid));
        set_attributes(
            pfd,
            &last,
            owner,
            chmod.then_some(mode),
            if is_dir { None } else { Some(m.mtime) },
            &m.xattrs,
        )?;
        Ok(is_dir.then_some((path, m.mtime)))
    }

    fn run(&self, reader: impl Read) -> Result<()> {
        let mut archive = TarReader::new(reader);
        let mut dirs = Vec::new();
        while let Some(member) = archive.next_member()? {
            if let Some(d) = self.apply(&member, &mut archive)? {
                dirs.push(d);
            }
        }
        // Directory times last: what was made in them changed them.
        for (path, (secs, nanos)) in dirs {
            let parent = self
                .root
                .open_in(&dir(&path), OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|e| errno(format!("open {}", name_str(&dir(&path))), e))?;
            let ts = nix::sys::time::TimeSpec::new(secs, nanos);
            nix::sys::stat::utimensat(
                Some(parent.as_raw_fd()),
                OsStr::from_bytes(&base(&path)),
                &ts,
                &ts,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| errno(format!("set the times of {}", name_str(&path)), e))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The operations.

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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    /// Go's filepath tests (path/filepath `cleantests`, `basetests`, `dirtests`), a selection.
    #[test]
    fn paths_clean_as_go_cleans_them() {
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def/", "abc/def"),
            ("/", "/"),
            ("//abc", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/..", "."),
            ("abc/../../..", "../.."),
            ("/abc/../..", "/"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("../../abc", "../../abc"),
            ("/../abc", "/abc"),
        ] {
            assert_eq!(s(clean(input.as_bytes())), want, "clean {input:?}");
        }
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b/", "b"),
            ("/a/.", "."),
            ("x", "x"),
        ] {
            assert_eq!(s(base(input.as_bytes())), want, "base {input:?}");
        }
        for (input, want) in [("a", "."), ("/a", "/"), ("a/b/c", "a/b"), ("/a/b/", "/a/b")] {
            assert_eq!(s(dir(input.as_bytes())), want, "dir {input:?}");
        }
    }

    #[test]
    fn container_paths_keep_a_trailing_slash_or_dot() {
        for (input, want) in [
            ("etc", "/etc"),
            ("/etc/", "/etc/"),
            ("/etc/.", "/etc/."),
            ("etc/./", "/etc/./"),
            ("/", "/"),
            (".", "/."),
            ("../../etc/passwd", "/etc/passwd"),
            ("/a/../b/", "/b/"),
        ] {
            assert_eq!(s(container_path(input)), want, "{input:?}");
        }
    }

    #[test]
    fn members_never_leave_the_extraction_directory() {
        assert_eq!(member_name(b"a/b").unwrap(), b"a/b");
        assert_eq!(member_name(b"./a/../b/").unwrap(), b"b");
        assert_eq!(member_name(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(member_name(b"./").unwrap(), b".");
        assert!(member_name(b"..").is_none());
        assert!(member_name(b"../x").is_none());
        assert!(member_name(b"a/../../x").is_none());
        assert!(!symlink_escapes(b"a/link", b"../b"));
        assert!(!symlink_escapes(b"a/link", b"/etc/passwd"));
        assert!(symlink_escapes(b"a/link", b"../../b"));
        assert!(symlink_escapes(b"link", b".."));
    }

    #[test]
    fn the_stat_header_is_dockers_json_in_base64() {
        let stat = PathStat {
            name: "hostname".into(),
            size: 13,
            mode: go_file_mode(libc::S_IFREG | 0o644),
            mtime: go_time(1_700_000_000, 120_000_000),
            link_target: String::new(),
        };
        use base64::Engine;
        let json = base64::engine::general_purpose::STANDARD
            .decode(stat.header_value())
            .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"name":"hostname","size":13,"mode":420,"mtime":"2023-11-14T22:13:20.12Z","linkTarget":""}"#
        );
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn modes_are_gos_file_modes() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
        assert_eq!(
            go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
        assert_eq!(
            go_file_mode(libc::S_IFDIR | libc::S_ISVTX | 0o777),
            (1 << 31) | (1 << 20) | 0o777
        );
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_records(&[("a", b"b")]), b"6 a=b\n");
        let long = vec![b'x'; 93];
        let rec = pax_records(&[("k", &long)]);
        let len: usize = std::str::from_utf8(&rec[..rec.iter().position(|b| *b == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, rec.len());
    }

    fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
        let (p, n) = (
            CString::new(path.as_os_str().as_bytes()).unwrap(),
            CString::new(name).unwrap(),
        );
        // SAFETY: NUL-terminated strings and a value with its own length.
        unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            ) == 0
        }
    }

    fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let (p, n) = (
            CString::new(path.as_os_str().as_bytes()).unwrap(),
            CString::new(name).unwrap(),
        );
        // SAFETY: getxattr writes at most `size` bytes into the buffer it is given.
        xattr_buffer(|buf, size| unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf, size) })
    }

    /// Go's archive/tar reads a PAX record by its length: a binary `security.capability` holding a newline (the
    /// bits of CAP_DAC_OVERRIDE and CAP_FOWNER make 0x0a) is one value, and a `path` after it is still read.
    #[test]
    fn pax_records_are_walked_by_their_length() {
        let capability: Vec<u8> = vec![
            1, 0, 0, 2, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let long = format!("dir/{}", "n".repeat(150));
        let pax = pax_records(&[
            ("SCHILY.xattr.security.capability", &capability),
            ("SCHILY.xattr.user.note", b"a=b\n2 x=y\n"),
            ("path", long.as_bytes()),
            ("mtime", b"1700000000.25"),
        ]);
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(7);
        h.set_size(3);
        append_member(&mut b, &mut h, b"short", None, &pax, &b"abc"[..]).unwrap();
        // A USTAR name split into prefix and name, and a GNU long link.
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        let deep = format!("{}/{}", "p".repeat(120), "q".repeat(60));
        h.set_path(&deep).unwrap();
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        let target = "t".repeat(130);
        append_member(
            &mut b,
            &mut h,
            b"link",
            Some(target.as_bytes()),
            &[],
            std::io::empty(),
        )
        .unwrap();
        let bytes = b.into_inner().unwrap();

        let mut r = TarReader::new(bytes.as_slice());
        let m = r.next_member().unwrap().unwrap();
        assert_eq!(m.kind, TYPE_REG);
        assert_eq!(s(m.name.clone()), long);
        assert_eq!(m.mode, 0o4755);
        assert_eq!(m.uid, 7);
        assert_eq!(m.mtime, (1_700_000_000, 250_000_000));
        assert_eq!(
            m.xattrs,
            vec![
                (b"security.capability".to_vec(), capability.clone()),
                (b"user.note".to_vec(), b"a=b\n2 x=y\n".to_vec()),
            ]
        );
        let mut data = Vec::new();
        r.read_to_end(&mut data).unwrap();
        assert_eq!(data, b"abc");
        let m = r.next_member().unwrap().unwrap();
        assert_eq!((m.kind, s(m.name)), (TYPE_DIR, deep));
        let m = r.next_member().unwrap().unwrap();
        assert_eq!((m.kind, s(m.link)), (TYPE_SYMLINK, target));
        assert!(r.next_member().unwrap().is_none());

        // A record whose length runs past the header, and a corrupted checksum, are refused.
        assert!(parse_pax(b"30 path=x\n").is_err());
        assert!(parse_pax(b"9 path=x\n").is_ok());
        let mut broken = bytes.clone();
        broken[0] ^= 1;
        assert!(TarReader::new(broken.as_slice()).next_member().is_err());
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_numeric(b" 0000644\0"), Some(0o644));
    }

    /// Archives a tree and extracts it elsewhere, through descriptors only, including a hostile archive.
    #[test]
    fn archives_round_trip_and_hostile_members_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("d/sub")).unwrap();
        std::fs::write(src.join("d/file"), b"hello").unwrap();
        std::fs::hard_link(src.join("d/file"), src.join("d/hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("d/abs")).unwrap();
        std::fs::write(src.join("d/sub/").join("x".repeat(120)), b"long").unwrap();
        // user.* attributes travel (where the test's file system keeps them).
        let xattrs = set_xattr(&src.join("d/file"), "user.polis", b"x\ny")
            && set_xattr(&src.join("d/sub"), "user.dir", b"");
        let root = Rootfs::from_fd(open_dir(&src).unwrap(), &[]).unwrap();
        let abs = container_path("/d");
        let found = lookup(&root, &abs).unwrap();
        let stat = path_stat(&root, &abs, &found);
        assert!(stat.is_dir());
        assert_eq!(stat.name, "d");
        let tar_bytes = write_archive(&root, &found, &abs, Vec::new()).unwrap();
        let mut names = Vec::new();
        let mut a = tar::Archive::new(tar_bytes.as_slice());
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
        }
        assert_eq!(names[0], "d/");
        assert!(names.contains(&format!("d/sub/{}", "x".repeat(120))));
        let link_stat = path_stat(&root, b"/d/abs", &lookup(&root, b"/d/abs").unwrap());
        assert_eq!(link_stat.link_target, "/etc/passwd");

        let dst = tmp.path().join("dst");
        std::fs::create_dir_all(dst.join("into")).unwrap();
        let droot = Rootfs::from_fd(open_dir(&dst).unwrap(), &[]).unwrap();
        let ex = Extractor {
            root: &droot,
            dest: b"/into".to_vec(),
            options: ExtractOptions {
                no_overwrite_dir_non_dir: true,
                owner: Some((
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw(),
                )),
            },
        };
        ex.run(tar_bytes.as_slice()).unwrap();
        assert_eq!(std::fs::read(dst.join("into/d/file")).unwrap(), b"hello");
        if xattrs {
            assert_eq!(
                get_xattr(&dst.join("into/d/file"), "user.polis").as_deref(),
                Some(&b"x\ny"[..])
            );
            assert_eq!(
                get_xattr(&dst.join("into/d/sub"), "user.dir").as_deref(),
                Some(&b""[..])
            );
        }
        assert_eq!(std::fs::read(dst.join("into/d/hard")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read_link(dst.join("into/d/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            std::fs::read(dst.join("into/d/sub").join("x".repeat(120))).unwrap(),
            b"long"
        );

        // A member climbing out, and a symlink whose target does.
        for (name, kind, link) in [
            ("../escape", tar::EntryType::Regular, None),
            ("ok/link", tar::EntryType::Symlink, Some("../../../etc")),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_size(0);
            let n = name.as_bytes();
            h.as_old_mut().name[..n.len()].copy_from_slice(n);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
            let bytes = b.into_inner().unwrap();
            let e = ex.run(bytes.as_slice()).unwrap_err();
            assert!(e.to_string().contains("outside of"), "{e}");
        }
        assert!(!dst.join("escape").exists());

        // A directory is not replaced by a file when asked not to.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.as_old_mut().name[..1].copy_from_slice(b"d");
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
        let e = ex.run(b.into_inner().unwrap().as_slice()).unwrap_err();
        assert!(e.to_string().contains("cannot overwrite directory"), "{e}");
    }
}
