//! The container's root filesystem, set up by its init process in its new mount namespace:
//! config.md#mounts, config-linux.md#devices and #default-devices, runtime-linux.md#dev-symbolic-links,
//! config-linux.md#rootfs-mount-propagation, config.md#root (pivot_root, readonly),
//! config-linux.md#masked-paths and #readonly-paths.
//!
//! Every mount target is resolved once, inside the rootfs, with openat2 `RESOLVE_IN_ROOT` (a
//! symbolic link the image planted is followed only within the rootfs) and mounted by descriptor
//! through the new mount API (open_tree, fsopen/fsmount, move_mount, mount_setattr): no path is
//! looked up twice, so nothing can swap a component out from under the mount.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::sys::{self, FsContext, fd_path, open_in_root};

type Result<T> = std::result::Result<T, String>;

/// One v1 cgroup hierarchy the container gets at a `cgroup` mount (cgroup_mount.rs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CgroupHierarchy {
    pub name: String,
    pub source: PathBuf,
}

/// A propagation word of runc's (config.md#mounts options, `linux.rootfsPropagation`) as mount
/// flags.
pub fn propagation_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What the rootfs set-up needs besides the config.
pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    /// Whether the process has its own user namespace (devices are bound, not made).
    pub user_ns: bool,
    /// Whether the process has its own cgroup namespace.
    pub cgroup_ns: bool,
    /// Waits until the parent has put the process in its cgroup, and says where that is: the
    /// first `cgroup` mount needs it, the others are made meanwhile.
    pub placed: &'a dyn Fn() -> Result<super::Go>,
}

/// Parsed mount options (config.md#mounts "options", as mount(8) and runc read them).
#[derive(Debug, Default)]
struct Options {
    set: u64,
    clear: u64,
    /// rro, rnosuid, ...: attributes for the whole tree.
    rec_set: u64,
    rec_clear: u64,
    bind: bool,
    recursive: bool,
    propagation: Vec<MsFlags>,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Options {
    let mut o = Options::default();
    for opt in options {
        let attr = |name: &str| -> Option<(u64, bool)> {
            Some(match name {
                "ro" => (libc::MOUNT_ATTR_RDONLY, true),
                "rw" => (libc::MOUNT_ATTR_RDONLY, false),
                "nosuid" => (libc::MOUNT_ATTR_NOSUID, true),
                "suid" => (libc::MOUNT_ATTR_NOSUID, false),
                "nodev" => (libc::MOUNT_ATTR_NODEV, true),
                "dev" => (libc::MOUNT_ATTR_NODEV, false),
                "noexec" => (libc::MOUNT_ATTR_NOEXEC, true),
                "exec" => (libc::MOUNT_ATTR_NOEXEC, false),
                "nodiratime" => (libc::MOUNT_ATTR_NODIRATIME, true),
                "diratime" => (libc::MOUNT_ATTR_NODIRATIME, false),
                "nosymfollow" => (libc::MOUNT_ATTR_NOSYMFOLLOW, true),
                "symfollow" => (libc::MOUNT_ATTR_NOSYMFOLLOW, false),
                _ => return None,
            })
        };
        match opt.as_str() {
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "relatime" | "norelatime" | "noatime" | "strictatime" | "atime" => {
                o.clear |= libc::MOUNT_ATTR__ATIME;
                o.set |= match opt.as_str() {
                    "noatime" => libc::MOUNT_ATTR_NOATIME,
                    "strictatime" => libc::MOUNT_ATTR_STRICTATIME,
                    _ => libc::MOUNT_ATTR_RELATIME,
                };
            }
            // Kept by the kernel on its own; nothing to ask for.
            "defaults" | "async" | "auto" | "noauto" | "nouser" | "tmpcopyup" => {}
            other => {
                if let Some(flag) = propagation_flag(other) {
                    o.propagation.push(flag);
                } else if let Some((bit, on)) = attr(other) {
                    if on {
                        o.set |= bit;
                        o.clear &= !bit;
                    } else {
                        o.clear |= bit;
                        o.set &= !bit;
                    }
                } else if let Some((bit, on)) = other.strip_prefix('r').and_then(attr) {
                    if on {
                        o.rec_set |= bit;
                    } else {
                        o.rec_clear |= bit;
                    }
                } else {
                    o.data.push(other.to_string());
                }
            }
        }
    }
    o
}

fn io_err(what: impl std::fmt::Display, e: io::Error) -> String {
    format!("{what}: {e}")
}

/// A directory descriptor to make entries in, from an O_PATH one.
fn open_dir(path_fd: &OwnedFd) -> io::Result<OwnedFd> {
    sys::openat2(
        path_fd.as_raw_fd(),
        Path::new("."),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
}

/// Opens `path` in the rootfs, making what is missing: directories on the way, and the last
/// component as a directory (or an empty file with `file`). Each component is made through the
/// descriptor of its parent, resolved in the root, never by a host path.
pub fn make_in_root(root: RawFd, path: &Path, file: bool) -> io::Result<OwnedFd> {
    match open_in_root(root, path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path without a name"))?;
    let parent_fd = make_in_root(root, parent, false)?;
    let dir = open_dir(&parent_fd)?;
    let cname = sys::cstring(Path::new(name))?;
    // SAFETY: a directory descriptor we hold and a NUL-terminated name.
    let rc = unsafe {
        if file {
            libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), libc::S_IFREG | 0o755, 0)
        } else {
            libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o755)
        }
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    open_in_root(root, path)
}

/// The steps before pivot_root: the mount namespace's propagation, the rootfs bound onto itself,
/// the mounts in order, the devices and /dev's links. Returns the rootfs's descriptor.
pub fn prepare(ctx: &RootfsContext<'_>) -> Result<OwnedFd> {
    let linux = ctx.spec.linux().as_ref();
    // The container's copy of the host's mounts, recursively shared, slave or private as
    // rootfsPropagation asks (slave by default); what is asked of the root itself beyond that
    // (unbindable, or shared without the r) is applied once it is "/" (`finish`).
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        Some("shared" | "rshared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("private" | "rprivate") => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(|e| format!("set the propagation of the container's mounts: {e}"))?;
    if propagation.contains(MsFlags::MS_SHARED) {
        make_parent_mount_private(ctx.rootfs)?;
    }
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("bind the rootfs {} onto itself: {e}", ctx.rootfs.display()))?;
    let root: OwnedFd = std::fs::File::open(ctx.rootfs)
        .map_err(|e| io_err(format_args!("open the rootfs {}", ctx.rootfs.display()), e))?
        .into();
    let mut dev_is_mounted = false;
    for m in ctx.spec.mounts().iter().flatten() {
        mount_one(ctx, root.as_raw_fd(), m)
            .map_err(|e| format!("mount {}: {e}", m.destination().display()))?;
        dev_is_mounted |= m.destination() == Path::new("/dev");
    }
    make_devices(ctx, root.as_raw_fd())?;
    if dev_is_mounted || open_in_root(root.as_raw_fd(), Path::new("/dev")).is_ok() {
        dev_links(root.as_raw_fd(), ctx.spec)?;
    }
    Ok(root)
}

/// pivot_root needs the rootfs's parent mount not to be shared: with a shared root propagation,
/// that mount is made private (runc's rootfsParentMountPrivate).
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    let parent = polis_host::mountinfo::parse(&info)
        .into_iter()
        .filter(|m| rootfs.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .map(|m| m.mount_point)
        .unwrap_or_else(|| PathBuf::from("/"));
    mount(
        None::<&str>,
        &parent,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make {} private: {e}", parent.display()))
}

fn bind_source(ctx: &RootfsContext<'_>, m: &Mount) -> Result<PathBuf> {
    let source = m
        .source()
        .as_ref()
        .ok_or_else(|| "a bind mount needs a source".to_string())?;
    Ok(if source.is_absolute() {
        source.clone()
    } else {
        ctx.bundle.join(source)
    })
}

fn mount_one(ctx: &RootfsContext<'_>, root: RawFd, m: &Mount) -> Result<()> {
    let options = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, root, dest, &options);
    }
    if options.bind || typ == "bind" {
        let source = bind_source(ctx, m)?;
        let meta = std::fs::metadata(&source)
            .map_err(|e| io_err(format_args!("source {}", source.display()), e))?;
        let target = make_in_root(root, dest, !meta.is_dir())
            .map_err(|e| io_err("make the mount point", e))?;
        let csource = sys::cstring(&source).map_err(|e| io_err("source", e))?;
        let tree = sys::clone_tree(libc::AT_FDCWD, &csource, options.recursive, false)
            .map_err(|e| io_err(format_args!("clone {}", source.display()), e))?;
        set_attrs(&tree, &options)?;
        sys::attach(tree.as_fd(), target.as_fd()).map_err(|e| io_err("attach", e))?;
        return set_propagation(root, dest, &options);
    }
    let target = make_in_root(root, dest, false).map_err(|e| io_err("make the mount point", e))?;
    let fs = FsContext::open(typ).map_err(|e| io_err(format_args!("type {typ:?}"), e))?;
    if let Some(source) = m.source() {
        let _ = fs.source(&source.to_string_lossy());
    }
    for opt in &options.data {
        fs.set(opt)
            .map_err(|e| io_err(format_args!("option {opt:?}"), e))?;
    }
    let tree = fs
        .mount(options.set & !libc::MOUNT_ATTR__ATIME | atime(&options))
        .map_err(|e| match m.source() {
            Some(source) => io_err(
                format_args!("make the {typ} filesystem of {}", source.display()),
                e,
            ),
            None => io_err(format_args!("make the {typ} filesystem"), e),
        })?;
    if options.rec_set | options.rec_clear != 0 {
        sys::set_mount_attr(tree.as_fd(), true, options.rec_set, options.rec_clear, 0)
            .map_err(|e| io_err("set recursive attributes", e))?;
    }
    sys::attach(tree.as_fd(), target.as_fd()).map_err(|e| io_err("attach", e))?;
    set_propagation(root, dest, &options)
}

fn atime(o: &Options) -> u64 {
    o.set & libc::MOUNT_ATTR__ATIME
}

/// The attributes a bind mount asks for, on the detached copy before it is attached.
fn set_attrs(tree: &OwnedFd, o: &Options) -> Result<()> {
    if o.set | o.clear != 0 {
        sys::set_mount_attr(tree.as_fd(), false, o.set, o.clear, 0)
            .map_err(|e| io_err("set mount attributes", e))?;
    }
    if o.rec_set | o.rec_clear != 0 {
        sys::set_mount_attr(tree.as_fd(), true, o.rec_set, o.rec_clear, 0)
            .map_err(|e| io_err("set recursive mount attributes", e))?;
    }
    Ok(())
}

/// Propagation options (`shared`, `rslave`, ...) of a mount, once it is attached.
fn set_propagation(root: RawFd, dest: &Path, o: &Options) -> Result<()> {
    if o.propagation.is_empty() {
        return Ok(());
    }
    let fd = open_in_root(root, dest).map_err(|e| io_err("reopen the mount", e))?;
    for flag in &o.propagation {
        mount(
            None::<&str>,
            fd_path(fd.as_raw_fd()).as_str(),
            None::<&str>,
            *flag,
            None::<&str>,
        )
        .map_err(|e| format!("set propagation {flag:?}: {e}"))?;
    }
    Ok(())
}

/// config.md#mounts `cgroup`: on a cgroup v2 host a cgroup2 filesystem (the container's cgroup as
/// its root in a cgroup namespace; otherwise the container's cgroup directory, bound); on v1 and
/// hybrid hosts a tmpfs with one bind of the container's cgroup per hierarchy and a link per
/// co-mounted controller, as runc makes it.
fn mount_cgroup(ctx: &RootfsContext<'_>, root: RawFd, dest: &Path, o: &Options) -> Result<()> {
    let target = make_in_root(root, dest, false).map_err(|e| io_err("make the mount point", e))?;
    let base = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;
    let ro = o.set & libc::MOUNT_ATTR_RDONLY;
    let placed = (ctx.placed)()?;
    let Some(hierarchies) = &placed.cgroup_v1 else {
        let tree = if ctx.cgroup_ns {
            FsContext::open("cgroup2")
                .and_then(|fs| fs.mount(base | ro))
                .map_err(|e| io_err("make the cgroup2 filesystem", e))?
        } else {
            let dir = placed.cgroup_v2_dir.clone().unwrap_or_default();
            let tree = sys::clone_tree(
                libc::AT_FDCWD,
                &sys::cstring(&dir).map_err(|e| io_err("cgroup", e))?,
                false,
                false,
            )
            .map_err(|e| io_err(format_args!("clone {}", dir.display()), e))?;
            sys::set_mount_attr(tree.as_fd(), false, base | ro, 0, 0)
                .map_err(|e| io_err("set cgroup mount attributes", e))?;
            tree
        };
        return sys::attach(tree.as_fd(), target.as_fd()).map_err(|e| io_err("attach", e));
    };
    let fs = FsContext::open("tmpfs").map_err(|e| io_err("tmpfs", e))?;
    fs.set("mode=755").map_err(|e| io_err("tmpfs mode", e))?;
    let tmpfs = fs.mount(base).map_err(|e| io_err("make the tmpfs", e))?;
    for h in hierarchies {
        let name = sys::cstring(Path::new(&h.name)).map_err(|e| io_err("name", e))?;
        // SAFETY: the tmpfs's root descriptor and a NUL-terminated name.
        if unsafe { libc::mkdirat(tmpfs.as_raw_fd(), name.as_ptr(), 0o755) } < 0 {
            return Err(io_err(
                format_args!("make {}", h.name),
                io::Error::last_os_error(),
            ));
        }
        let dir = sys::openat2(
            tmpfs.as_raw_fd(),
            Path::new(&h.name),
            libc::O_PATH,
            libc::RESOLVE_BENEATH,
        )
        .map_err(|e| io_err(format_args!("open {}", h.name), e))?;
        let tree = sys::clone_tree(
            libc::AT_FDCWD,
            &sys::cstring(&h.source).map_err(|e| io_err("cgroup", e))?,
            false,
            false,
        )
        .map_err(|e| io_err(format_args!("clone {}", h.source.display()), e))?;
        sys::set_mount_attr(tree.as_fd(), false, base | ro, 0, 0)
            .map_err(|e| io_err("set cgroup mount attributes", e))?;
        sys::attach(tree.as_fd(), dir.as_fd())
            .map_err(|e| io_err(format_args!("attach the {} hierarchy", h.name), e))?;
        for controller in h.name.split(',').filter(|c| *c != h.name) {
            let (target, link) = (
                CString::new(h.name.as_str()).unwrap_or_default(),
                CString::new(controller).unwrap_or_default(),
            );
            // SAFETY: NUL-terminated names and the tmpfs's root descriptor.
            unsafe { libc::symlinkat(target.as_ptr(), tmpfs.as_raw_fd(), link.as_ptr()) };
        }
    }
    if ro != 0 {
        sys::set_mount_attr(tmpfs.as_fd(), false, ro, 0, 0)
            .map_err(|e| io_err("make the cgroup tmpfs read-only", e))?;
    }
    sys::attach(tmpfs.as_fd(), target.as_fd()).map_err(|e| io_err("attach", e))
}

/// config-linux.md#default-devices: what every container gets in /dev, unless linux.devices
/// names the same path.
fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

struct DeviceNode {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn make_devices(ctx: &RootfsContext<'_>, root: RawFd) -> Result<()> {
    let given: Vec<LinuxDevice> = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let mut nodes: Vec<DeviceNode> = default_devices()
        .into_iter()
        .filter(|(path, _, _)| !given.iter().any(|d| d.path() == Path::new(path)))
        .map(|(path, major, minor)| DeviceNode {
            path: path.into(),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    for d in &given {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(format!("device {}: type a", d.path().display())),
        };
        nodes.push(DeviceNode {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    for node in nodes {
        make_device(ctx, root, &node)
            .map_err(|e| format!("device {}: {e}", node.path.display()))?;
    }
    Ok(())
}

fn make_device(ctx: &RootfsContext<'_>, root: RawFd, node: &DeviceNode) -> Result<()> {
    let parent = node.path.parent().unwrap_or(Path::new("/"));
    let name = node
        .path
        .file_name()
        .ok_or_else(|| "no file name".to_string())?;
    let parent_fd = make_in_root(root, parent, false).map_err(|e| io_err("parent", e))?;
    let dir = open_dir(&parent_fd).map_err(|e| io_err("open parent", e))?;
    let cname = sys::cstring(Path::new(name)).map_err(|e| io_err("name", e))?;
    // SAFETY: a directory descriptor we hold and a NUL-terminated name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
    if ctx.user_ns {
        // mknod is not allowed in a user namespace: the host's node is bound instead.
        // SAFETY: as above.
        if unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), libc::S_IFREG | 0o644, 0) } < 0 {
            return Err(io_err("make the mount point", io::Error::last_os_error()));
        }
        let target = sys::openat2(dir.as_raw_fd(), Path::new(name), libc::O_PATH, 0)
            .map_err(|e| io_err("open the mount point", e))?;
        let source = sys::cstring(&node.path).map_err(|e| io_err("path", e))?;
        let tree = sys::clone_tree(libc::AT_FDCWD, &source, false, false)
            .map_err(|e| io_err("clone the host's device", e))?;
        return sys::attach(tree.as_fd(), target.as_fd()).map_err(|e| io_err("attach", e));
    }
    let dev = nix::sys::stat::makedev(node.major, node.minor);
    nix::sys::stat::mknodat(
        Some(dir.as_raw_fd()),
        Path::new(name),
        node.kind,
        Mode::from_bits_truncate(node.mode),
        dev,
    )
    .map_err(|e| format!("mknod: {e}"))?;
    // SAFETY: as above.
    unsafe {
        libc::fchmodat(dir.as_raw_fd(), cname.as_ptr(), node.mode, 0);
        libc::fchownat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            node.uid,
            node.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

/// runtime-linux.md#dev-symbolic-links, and /dev/ptmx as the link to the container's devpts.
fn dev_links(root: RawFd, spec: &Spec) -> Result<()> {
    let dev = make_in_root(root, Path::new("/dev"), false).map_err(|e| io_err("/dev", e))?;
    let dir = open_dir(&dev).map_err(|e| io_err("open /dev", e))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let ptmx_given = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .is_some_and(|d| d.iter().any(|d| d.path() == Path::new("/dev/ptmx")));
    if !ptmx_given {
        let ptmx = c"ptmx";
        // SAFETY: a directory descriptor we hold and a static name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), ptmx.as_ptr(), 0) };
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        let (t, n) = (
            CString::new(target).unwrap_or_default(),
            CString::new(name).unwrap_or_default(),
        );
        // SAFETY: NUL-terminated strings and a directory descriptor we hold.
        if unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(io_err(format_args!("link /dev/{name}"), e));
            }
        }
    }
    Ok(())
}

/// Makes the rootfs the process's root: pivot_root, the old root detached (config.md#root), or
/// with `--no-pivot` a move of the rootfs onto / and a chroot.
pub fn enter_root(root: &OwnedFd, no_pivot: bool) -> Result<()> {
    let old_root = sys::openat2(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(|e| io_err("open the old root", e))?;
    nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| format!("enter the rootfs: {e}"))?;
    if no_pivot {
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(|e| format!("move the rootfs onto /: {e}"))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    } else {
        sys::pivot_root_here().map_err(|e| io_err("pivot_root", e))?;
        // The old root is stacked on the new one; from inside it, make it a slave so that its
        // unmount does not propagate to the host, and detach it.
        nix::unistd::fchdir(old_root.as_raw_fd())
            .map_err(|e| format!("enter the old root: {e}"))?;
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("make the old root a slave: {e}"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the old root: {e}"))?;
    }
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// The steps after pivot_root: masked and read-only paths, the root's propagation and
/// read-only flag.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let root: OwnedFd = std::fs::File::open("/")
        .map_err(|e| io_err("open /", e))?
        .into();
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        read_only_path(root.as_raw_fd(), Path::new(path))
            .map_err(|e| format!("read-only path {path}: {e}"))?;
    }
    for path in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(root.as_raw_fd(), Path::new(path))
            .map_err(|e| format!("masked path {path}: {e}"))?;
    }
    // runc: MS_PRIVATE is already in place (the mount namespace's first step); the others are
    // applied to the container's root now that it is "/".
    if let Some(flag) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
        .filter(|f| !f.contains(MsFlags::MS_PRIVATE))
    {
        mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
            .map_err(|e| format!("set the root's propagation: {e}"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        sys::set_mount_attr(root.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0, 0)
            .map_err(|e| io_err("make the root read-only", e))?;
    }
    Ok(())
}

fn open_existing(root: RawFd, path: &Path) -> Result<Option<OwnedFd>> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    match sys::openat2(
        root,
        rel,
        libc::O_PATH | libc::O_NOFOLLOW,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(io_err("open", e)),
    }
}

/// config-linux.md#readonly-paths: the path bound onto itself, read-only all the way down.
fn read_only_path(root: RawFd, path: &Path) -> Result<()> {
    let Some(fd) = open_existing(root, path)? else {
        return Ok(());
    };
    let tree = sys::clone_tree(fd.as_raw_fd(), c"", true, true).map_err(|e| io_err("clone", e))?;
    sys::set_mount_attr(
        tree.as_fd(),
        true,
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
        0,
        0,
    )
    .map_err(|e| io_err("make read-only", e))?;
    sys::attach(tree.as_fd(), fd.as_fd()).map_err(|e| io_err("attach", e))
}

/// config-linux.md#masked-paths: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask_path(root: RawFd, path: &Path) -> Result<()> {
    let Some(fd) = open_existing(root, path)? else {
        return Ok(());
    };
    let is_dir = nix::sys::stat::fstat(fd.as_raw_fd())
        .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(|e| format!("stat: {e}"))?;
    let tree = if is_dir {
        FsContext::open("tmpfs")
            .and_then(|fs| {
                fs.set("size=0")?;
                fs.set("mode=755")?;
                fs.mount(libc::MOUNT_ATTR_RDONLY)
            })
            .map_err(|e| io_err("make an empty tmpfs", e))?
    } else {
        let null = open_existing(root, Path::new("/dev/null"))?
            .ok_or_else(|| "no /dev/null to mask with".to_string())?;
        sys::clone_tree(null.as_raw_fd(), c"", false, true)
            .map_err(|e| io_err("clone /dev/null", e))?
    };
    sys::attach(tree.as_fd(), fd.as_fd()).map_err(|e| io_err("attach", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_attributes_propagation_and_data() {
        let o = parse_options(
            &[
                "rbind", "ro", "nosuid", "rshared", "rro", "mode=755", "size=1k", "noatime",
            ]
            .map(String::from),
        );
        assert!(o.bind && o.recursive);
        assert_eq!(
            o.set & (libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID),
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID
        );
        assert_eq!(o.rec_set, libc::MOUNT_ATTR_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_SHARED | MsFlags::MS_REC]);
        assert_eq!(o.data, vec!["mode=755", "size=1k"]);
        assert_eq!(o.set & libc::MOUNT_ATTR__ATIME, libc::MOUNT_ATTR_NOATIME);
    }
}
