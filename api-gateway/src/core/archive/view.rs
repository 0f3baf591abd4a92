//! The container's view of its files: /proc/PID/root of a running container, or the private mount namespace built
//! for a stopped one.

use super::paths::{join, name_str};
use super::resolve::{fstat, open_dir, open_in_root};
use super::*;

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
pub(super) struct ViewMount {
    pub(super) id: u64,
    pub(super) rw: bool,
}

/// The errno of a path whose object is on a mount that is not the container's files (a running container's
/// /proc, /sys, /dev...): reported as "not found", and left out of archives and extractions.
pub(super) const NOT_CONTAINERS: Errno = Errno::EXDEV;

/// The files Docker provides, bind-mounted from the container's directory (spec.rs).
const DOCKER_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// A container's files for the length of one operation: the root of its view, and what is mounted in it.
pub struct Rootfs {
    fd: OwnedFd,
    /// The kernel's path of the root (the link of /proc/self/fd/N), which starts the path of everything in it.
    path: PathBuf,
    /// The mount ID of the rootfs.
    pub(super) root_mount: u64,
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

pub(super) fn errno(what: impl std::fmt::Display, e: Errno) -> Error {
    if e == Errno::EROFS {
        return Error::Forbidden(format!("{what}: {}", e.desc()));
    }
    Error::Failed(format!("{what}: {}", e.desc()))
}

pub(super) fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor a system call just returned, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The mount a descriptor's object is on (statx `STATX_MNT_ID`), and whether it is that mount's root.
pub(super) fn mount_of(fd: &OwnedFd) -> nix::Result<(u64, bool)> {
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
    pub(super) fn from_fd(fd: OwnedFd, mounts: &[MountSpec]) -> Result<Rootfs> {
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
    pub(super) fn path_of(&self, fd: &OwnedFd) -> Option<Vec<u8>> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let rest = link.strip_prefix(&self.path).ok()?;
        let mut out = b"/".to_vec();
        out.extend_from_slice(rest.as_os_str().as_bytes());
        Some(clean(&out))
    }

    /// Refuses (NOT_CONTAINERS) an object on a mount that is not the container's files.
    pub(super) fn check(&self, fd: &OwnedFd) -> nix::Result<()> {
        match &self.allowed {
            None => Ok(()),
            Some(ids) if ids.contains(&mount_of(fd)?.0) => Ok(()),
            Some(_) => Err(NOT_CONTAINERS),
        }
    }

    /// Opens `path` (a container path) inside the root, every symlink resolved in it.
    pub(super) fn open_in(&self, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        let fd = open_in_root(self.fd.as_raw_fd(), path, flags)?;
        self.check(&fd)?;
        Ok(fd)
    }

    /// The bind or volume a descriptor's object is on, if any.
    pub(super) fn mount_holding(&self, fd: &OwnedFd) -> nix::Result<Option<ViewMount>> {
        let (id, _) = mount_of(fd)?;
        Ok(self.mounts.iter().find(|m| m.id == id).copied())
    }

    /// A file of the container (`/etc/passwd`), empty when it does not exist.
    pub(super) fn read_file(&self, path: &[u8]) -> Result<String> {
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
