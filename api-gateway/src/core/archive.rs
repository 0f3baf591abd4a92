//! A container's files (`docker cp`): the stat of a path, a tar archive of it, and a tar archive extracted into a
//! directory, as dockerd does them (daemon/archive.go, pkg/archive's `Untar`), for running and stopped containers.
//!
//! The root is the container's overlay: the shim's mount at `bundle/rootfs` while the container runs, else a
//! private mount of the same overlay (the record's lowerdir, upperdir, workdir) made for the one operation under
//! polisd's exec root and unmounted after it. Paths are the container's: every one is resolved from the root's
//! descriptor with openat2(2) `RESOLVE_IN_ROOT`, so `..` and absolute symlinks stay inside the container as they
//! do in dockerd's chroot, and the tree is then walked and changed with the `*at` calls from descriptors, never
//! following a symlink, so nothing outside the root is ever read or written, even while the container changes
//! its files. Bind mounts and tmpfs of a running container are not seen: their mount points are in the container's
//! own mount namespace.

use super::Core;
use super::error::{Error, Result};
use super::record::ContainerRecord;
use bollard_stubs::models::EventMessageTypeEnum;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
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

/// polisd's own mount of a stopped container's overlay, unmounted (and its directory removed) when dropped.
struct TempMount(PathBuf);

impl Drop for TempMount {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.0.display(), error = %e, "unmount a container's rootfs");
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A container's root file system for the length of one operation.
pub struct Rootfs {
    fd: OwnedFd,
    /// Where it is mounted in polisd's mount namespace.
    path: PathBuf,
    _mount: Option<TempMount>,
    _busy: Option<Busy>,
}

fn errno(what: impl std::fmt::Display, e: Errno) -> Error {
    Error::Failed(format!("{what}: {}", e.desc()))
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor a system call just returned, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Rootfs {
    /// The root of `record`: the shim's mount while it runs, else a private mount of its overlay under `mnt`.
    pub fn open(record: &ContainerRecord, mnt: &Path) -> Result<Rootfs> {
        let rootfs = record.bundle.join("rootfs");
        let mounts =
            polis_host::mountinfo::read(None).map_err(|e| Error::failed("read mountinfo", e))?;
        let mounted = mounts
            .iter()
            .any(|m| m.mount_point == rootfs && m.fstype == "overlay");
        if record.state.status.is_live() {
            if !mounted {
                return Err(Error::Failed(format!(
                    "the rootfs of running container {} is not mounted at {}",
                    record.id,
                    rootfs.display()
                )));
            }
            return Ok(Rootfs {
                fd: open_dir(&rootfs)?,
                path: rootfs,
                _mount: None,
                _busy: None,
            });
        }
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
        let data = record.rootfs_options.join(",");
        if let Err(e) = nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(data.as_str()),
        ) {
            let _ = std::fs::remove_dir(&target);
            return Err(errno(
                format!("mount the rootfs of container {}", record.id),
                e,
            ));
        }
        let mount = TempMount(target.clone());
        Ok(Rootfs {
            fd: open_dir(&target)?,
            path: target,
            _mount: Some(mount),
            _busy: Some(busy),
        })
    }

    /// The container's path of a descriptor of this root.
    fn path_of(&self, fd: &OwnedFd) -> Option<Vec<u8>> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let rest = link.strip_prefix(&self.path).ok()?;
        let mut out = b"/".to_vec();
        out.extend_from_slice(rest.as_os_str().as_bytes());
        Some(clean(&out))
    }

    /// Opens `path` (a container path) inside the root, every symlink resolved in it.
    fn open_in(&self, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        open_in_root(self.fd.as_raw_fd(), path, flags)
    }
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

fn open_in_root(root: RawFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let relative = {
        let p = path.strip_prefix(b"/").unwrap_or(path);
        if p.is_empty() { &b"."[..] } else { p }
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
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
        open_at(parent.as_raw_fd(), &base(abs), OFlag::O_PATH)?
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

/// The `security.capability` xattr of an open file, which dockerd carries in its archives.
fn capability_xattr(fd: RawFd) -> Option<Vec<u8>> {
    let name = c"security.capability";
    let mut buf = vec![0u8; 256];
    // SAFETY: fgetxattr writes at most buf.len() bytes into buf, which lives across the call.
    let n = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n > 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
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
                append_member(&mut self.out, &mut h, &name, None, &[], std::io::empty()).map_err(io)
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
                let pax = capability_xattr(file.as_raw_fd())
                    .map(|v| pax_records(&[("SCHILY.xattr.security.capability", &v)]))
                    .unwrap_or_default();
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
/// as itself; members are named from `base(abs)` (`TarResourceRebaseOpts`).
fn write_archive<W: Write>(found: &Found, abs: &[u8], out: W) -> Result<W> {
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

/// Sets owner, mode and times of `name` in `parent` without following it if it is a symlink: the mode through
/// the object's own descriptor (checked not to be a symlink), owner and times with AT_SYMLINK_NOFOLLOW.
fn set_attributes(
    parent: RawFd,
    name: &[u8],
    owner: (u32, u32),
    mode: Option<u32>,
    mtime: Option<i64>,
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
    if let Some(mode) = mode {
        let fd = open_at(parent, name, OFlag::O_PATH)
            .map_err(|e| errno(format!("open {}", name_str(name)), e))?;
        let st = fstat(&fd).map_err(|e| errno("stat", e))?;
        if kind(&st) != libc::S_IFLNK {
            // Through /proc: the descriptor's inode, whatever now has its name.
            nix::sys::stat::fchmodat(
                None,
                format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
                Mode::from_bits_truncate(mode & 0o7777),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| errno(format!("chmod {}", name_str(name)), e))?;
        }
    }
    if let Some(t) = mtime {
        let ts = nix::sys::time::TimeSpec::new(t, 0);
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

/// Extraction into one directory of a root.
struct Extractor<'a> {
    root: &'a Rootfs,
    /// The extraction directory's path in the container.
    dest: Vec<u8>,
    options: ExtractOptions,
}

impl Extractor<'_> {
    /// The directory `rel` (relative to the extraction directory) opened in the root, made (0755, root's) with
    /// its missing parents when it does not exist (pkg/archive's implied directories).
    fn parent(&self, rel: &[u8]) -> Result<OwnedFd> {
        let path = join(&self.dest, rel);
        match self.root.open_in(&path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => return Ok(fd),
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
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        Some(fd.as_raw_fd()),
                        OsStr::from_bytes(comp),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(errno(format!("mkdir {}", name_str(&at)), e)),
                    }
                    set_attributes(fd.as_raw_fd(), comp, (0, 0), None, None)?;
                    self.root
                        .open_in(&at, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| errno(format!("open {}", name_str(&at)), e))?
                }
                Err(e) => return Err(errno(format!("open {}", name_str(&at)), e)),
            };
            fd = next;
        }
        Ok(fd)
    }

    /// Applies one member, as pkg/archive's `Unpack` and `createTarFile` do. Returns the directory's path and
    /// mtime for a directory member, whose times are set once everything is in it.
    fn apply<R: Read>(&self, entry: &mut tar::Entry<R>) -> Result<Option<(Vec<u8>, i64)>> {
        let header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(None);
        }
        let raw = entry.path_bytes().into_owned();
        let breakout =
            |what: String| Error::Invalid(format!("{what} is outside of {}", name_str(&self.dest)));
        let name = member_name(&raw).ok_or_else(|| breakout(format!("{:?}", name_str(&raw))))?;
        if name == b"." {
            // The extraction directory itself: it exists and is a directory.
            return Ok(None);
        }
        let is_dir = kind == tar::EntryType::Directory;
        let parent_rel = dir(&name);
        let last = base(&name);
        let parent = self.parent(&parent_rel)?;
        let pfd = parent.as_raw_fd();
        let path = join(&self.dest, &name);
        match nix::sys::stat::fstatat(
            Some(pfd),
            OsStr::from_bytes(&last),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => {
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
        let mode = header.mode().unwrap_or(0o644);
        let last_os = OsStr::from_bytes(&last);
        let made = |e: Errno| errno(format!("create {}", name_str(&path)), e);
        let mut chmod = true;
        match kind {
            tar::EntryType::Directory => {
                match nix::sys::stat::mkdirat(
                    Some(pfd),
                    last_os,
                    Mode::from_bits_truncate(mode & 0o777),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(made(e)),
                }
            }
            tar::EntryType::Regular => {
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
                std::io::copy(entry, &mut file)
                    .map_err(|e| Error::failed(format!("write {}", name_str(&path)), e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (kind_flag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    k => (
                        if k == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        },
                        libc::makedev(
                            header.device_major().ok().flatten().unwrap_or(0),
                            header.device_minor().ok().flatten().unwrap_or(0),
                        ),
                    ),
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
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let target = member_name(&link).ok_or_else(|| {
                    breakout(format!(
                        "invalid hardlink {:?} -> {:?}",
                        name_str(&path),
                        name_str(&link)
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
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                if symlink_escapes(&name, &link) {
                    return Err(breakout(format!(
                        "invalid symlink {:?} -> {:?}",
                        name_str(&path),
                        name_str(&link)
                    )));
                }
                nix::unistd::symlinkat(OsStr::from_bytes(&link), Some(pfd), last_os)
                    .map_err(made)?;
                chmod = false;
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unhandled tar header type {}",
                    other.as_byte()
                )));
            }
        }
        let owner = self.options.owner.unwrap_or((
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        ));
        let mtime = header.mtime().ok().map(|t| t as i64);
        set_attributes(
            pfd,
            &last,
            owner,
            chmod.then_some(mode),
            if is_dir { None } else { mtime },
        )?;
        Ok(is_dir.then(|| (path, mtime.unwrap_or(0))))
    }

    fn run(&self, reader: impl Read) -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        let mut dirs = Vec::new();
        let entries = archive
            .entries()
            .map_err(|e| Error::Invalid(format!("read the archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Invalid(format!("read the archive: {e}")))?;
            if let Some(d) = self.apply(&mut entry)? {
                dirs.push(d);
            }
        }
        // Directory times last: what was made in them changed them.
        for (path, mtime) in dirs {
            let parent = self
                .root
                .open_in(&dir(&path), OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|e| errno(format!("open {}", name_str(&dir(&path))), e))?;
            let ts = nix::sys::time::TimeSpec::new(mtime, 0);
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
        Errno::ENOENT => not_found_error(path, reference),
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
            match write_archive(&found, &abs, writer) {
                Ok(mut w) => {
                    let _ = w.flush();
                }
                Err(e) => {
                    tracing::warn!(path = path_owned, error = %e, "archive a container's path");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            }
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
            if record.host_config.readonly_rootfs.unwrap_or(false) {
                return Err(Error::Forbidden(
                    "container rootfs is marked read-only".into(),
                ));
            }
            let dest = root.path_of(&fd).ok_or_else(|| {
                Error::Failed(format!("{path_owned} is not in the container's rootfs"))
            })?;
            let owner = if copy_uid_gid {
                let user = record.config.user.clone().unwrap_or_default();
                let u = polis_host::users::resolve_user(&root.path, &user)
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
        let root = Rootfs {
            fd: open_dir(&src).unwrap(),
            path: src.clone(),
            _mount: None,
            _busy: None,
        };
        let abs = container_path("/d");
        let found = lookup(&root, &abs).unwrap();
        let stat = path_stat(&root, &abs, &found);
        assert!(stat.is_dir());
        assert_eq!(stat.name, "d");
        let tar_bytes = write_archive(&found, &abs, Vec::new()).unwrap();
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
        let droot = Rootfs {
            fd: open_dir(&dst).unwrap(),
            path: dst.clone(),
            _mount: None,
            _busy: None,
        };
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
