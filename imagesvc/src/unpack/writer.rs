//! The layer writer: applies each entry of the archive to the layer directory (files, directories, links, devices
//! and fifos with their metadata; whiteouts and opaque markers in overlayfs form; hard links to a lower layer's
//! file copied up first), then sets the directory times.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::archive::TarReader;
use super::beneath::{
    Node, OPAQUE_XATTR, chmod_nofollow, file_type, is_overlay_xattr, is_whiteout, join, lstatat,
    marked_opaque, mode_bits, open_beneath, open_layer_dir, openat, remove_tree, split_name,
};
use crate::error::{Error, Result, io};
use crate::tar::{
    BLOCK_DEVICE, CHAR_DEVICE, CONTIGUOUS, DIRECTORY, Entry, FIFO, HARD_LINK, REGULAR, SYMLINK,
    Time, kind_name, shown,
};

/// File data is copied through this buffer: large reads and writes, few system calls.
const DATA_BUFFER: usize = 1 << 20;

/// Where a hard link target was found when looking it up through the layers.
enum Lookup {
    /// In this directory (opened), with this lstat.
    Found(OwnedFd, FileStat),
    /// Not in this layer: look in the next one down.
    Missing,
    /// Hidden from the layers below by a whiteout, an opaque directory or a non-directory on its path.
    Hidden,
}

/// Metadata for a directory made because an entry needs it as a parent.
struct DirTemplate {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Option<Time>,
    xattrs_from: Option<OwnedFd>,
}

/// The metadata of a directory made where `lower` (the directory the layers below show there, if any) stands.
fn dir_template(lower: Option<OwnedFd>) -> DirTemplate {
    let stat = lower
        .as_ref()
        .and_then(|fd| nix::sys::stat::fstat(fd.as_raw_fd()).ok());
    match (lower, stat) {
        (Some(fd), Some(st)) => DirTemplate {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            mtime: Some(Time {
                sec: st.st_mtime,
                nsec: st.st_mtime_nsec,
            }),
            xattrs_from: Some(fd),
        },
        _ => DirTemplate {
            uid: 0,
            gid: 0,
            mode: 0o755,
            mtime: None,
            xattrs_from: None,
        },
    }
}

/// Applies the entries of one layer to its directory.
pub(super) struct LayerWriter<'a> {
    layer: &'a str,
    dir: &'a Path,
    root: Rc<OwnedFd>,
    lowers: &'a [PathBuf],
    /// The parent directory of the last entry, which the next entry very likely shares.
    parent_cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Directory mtimes, set at the end: creating children changes them.
    dir_times: HashMap<Vec<u8>, Time>,
    buf: Vec<u8>,
}

impl<'a> LayerWriter<'a> {
    pub(super) fn open(layer: &'a str, dir: &'a Path, lowers: &'a [PathBuf]) -> Result<Self> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("opening the layer directory", dir)(e.into()))?;
        // SAFETY: open has just returned this descriptor; nothing else owns it.
        let root = Rc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(LayerWriter {
            layer,
            dir,
            root,
            lowers,
            parent_cache: None,
            dir_times: HashMap::new(),
            buf: vec![0u8; DATA_BUFFER],
        })
    }

    fn hostile(&self, e: &Entry, reason: impl Into<String>) -> Error {
        Error::HostileLayer {
            layer: self.layer.to_string(),
            entry: shown(&e.name),
            reason: reason.into(),
        }
    }

    fn malformed(&self, e: &Entry, reason: impl fmt::Display) -> Error {
        Error::LayerFormat {
            layer: self.layer.to_string(),
            reason: format!("entry {:?}: {reason}", shown(&e.name)),
        }
    }

    /// An I/O error about `path` (relative to the layer directory).
    fn sys(&self, op: &'static str, path: &[u8], err: impl Into<io::Error>) -> Error {
        let full = if path.is_empty() {
            self.dir.to_path_buf()
        } else {
            self.dir.join(OsStr::from_bytes(path))
        };
        io(op, full)(err.into())
    }

    /// Why resolving the directory `path` for entry `e` failed.
    fn resolve_error(&self, e: &Entry, path: &[u8], err: Errno) -> Error {
        match err {
            Errno::ELOOP => self.hostile(
                e,
                format!("path goes through a symlink ({:?})", shown(path)),
            ),
            Errno::EXDEV => {
                self.hostile(e, format!("path crosses a mount point ({:?})", shown(path)))
            }
            Errno::ENOTDIR => {
                self.malformed(e, format_args!("{:?} is not a directory", shown(path)))
            }
            err => self.sys("resolving", path, err),
        }
    }

    pub(super) fn apply<R: Read>(&mut self, e: &Entry, tar: &mut TarReader<'_, R>) -> Result<()> {
        let comps = split_name(&e.name).map_err(|reason| self.hostile(e, reason))?;
        if let Some((name, _)) = e.xattrs.iter().find(|(n, _)| is_overlay_xattr(n)) {
            return Err(self.hostile(e, format!("xattr {} is overlayfs metadata", shown(name))));
        }
        let path = join(&comps);
        let Some((&base, parent)) = comps.split_last() else {
            // `.` or `./`: the layer directory itself.
            if e.kind != DIRECTORY {
                return Err(self.hostile(e, "names the layer directory but is not a directory"));
            }
            let root = self.root.clone();
            self.set_metadata(e, &Node::Fd(root.as_raw_fd()), &path, true)?;
            self.dir_times.insert(path, e.mtime);
            return Ok(());
        };
        if let Some(hidden) = base.strip_prefix(b".wh.") {
            return self.whiteout(e, parent, hidden);
        }
        match e.kind {
            REGULAR | CONTIGUOUS => self.regular_file(e, parent, base, &path, tar),
            DIRECTORY => self.directory(e, parent, base, &path),
            SYMLINK => self.symlink(e, parent, base, &path),
            HARD_LINK => self.hard_link(e, &comps, &path),
            CHAR_DEVICE | BLOCK_DEVICE | FIFO => self.special_file(e, parent, base, &path),
            kind => Err(self.malformed(
                e,
                format_args!("unsupported entry type {}", kind_name(kind)),
            )),
        }
    }

    /// The open directory that holds the entry's last component, made (0755, root-owned) where missing, as
    /// docker and containerd do.
    fn parent_dir(&mut self, e: &Entry, parent: &[&[u8]]) -> Result<Rc<OwnedFd>> {
        if parent.is_empty() {
            return Ok(self.root.clone());
        }
        let key = join(parent);
        if let Some((cached, fd)) = &self.parent_cache {
            if *cached == key {
                return Ok(fd.clone());
            }
        }
        let fd = match open_beneath(
            self.root.as_raw_fd(),
            &key,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => self.make_dirs(e, parent)?,
            Err(err) => return Err(self.resolve_error(e, &key, err)),
        };
        let fd = Rc::new(fd);
        self.parent_cache = Some((key, fd.clone()));
        Ok(fd)
    }

    /// Walks `comps` from the layer root, making the missing directories. A directory the layers below show at that
    /// path lends its owner, mode, mtime and xattrs (as overlayfs copies a directory up, so the merged view keeps
    /// them); any other is 0755 and root-owned, as docker and containerd make it. A whiteout of this layer in the
    /// way is replaced by a directory that is opaque: the path is made again after its whiteout, and what the
    /// layers below held there stays deleted (layer.md "Whiteouts").
    fn make_dirs(&mut self, e: &Entry, comps: &[&[u8]]) -> Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        for (i, comp) in comps.iter().enumerate() {
            let at = cur
                .as_ref()
                .map_or(self.root.as_raw_fd(), |fd| fd.as_raw_fd());
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            let next = match open_beneath(at, comp, flags) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => self.make_dir(e, at, &comps[..=i], false)?,
                Err(Errno::ENOTDIR) if lstatat(at, comp).is_ok_and(|st| is_whiteout(&st)) => {
                    let path = join(&comps[..=i]);
                    nix::unistd::unlinkat(Some(at), *comp, UnlinkatFlags::NoRemoveDir)
                        .map_err(|err| self.sys("removing whiteout", &path, err))?;
                    self.make_dir(e, at, &comps[..=i], true)?
                }
                Err(err) => return Err(self.resolve_error(e, &join(&comps[..=i]), err)),
            };
            cur = Some(next);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => open_beneath(
                self.root.as_raw_fd(),
                b".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            )
            .map_err(|err| self.sys("opening", b"", err)),
        }
    }

    /// Makes the last of `comps` in `at` (its parent, open) for [`Self::make_dirs`]; `opaque` in place of a whiteout.
    fn make_dir(&mut self, e: &Entry, at: RawFd, comps: &[&[u8]], opaque: bool) -> Result<OwnedFd> {
        let (&comp, _) = comps
            .split_last()
            .ok_or_else(|| self.hostile(e, "names the layer directory"))?;
        let path = join(comps);
        // Looked up before the directory exists here, which would hide the lower one.
        let tpl = dir_template(if opaque {
            None
        } else {
            self.lower_dir(e, comps)?
        });
        match nix::sys::stat::mkdirat(Some(at), comp, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(err) => return Err(self.sys("creating directory", &path, err)),
        }
        let fd = open_beneath(at, comp, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|err| self.resolve_error(e, &path, err))?;
        nix::unistd::fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(tpl.uid)),
            Some(Gid::from_raw(tpl.gid)),
        )
        .map_err(|err| self.sys("changing the owner of", &path, err))?;
        nix::sys::stat::fchmod(fd.as_raw_fd(), mode_bits(tpl.mode))
            .map_err(|err| self.sys("changing the mode of", &path, err))?;
        if let Some(src) = &tpl.xattrs_from {
            self.copy_xattrs(&Node::Fd(src.as_raw_fd()), &Node::Fd(fd.as_raw_fd()), &path)?;
        }
        if let Some(mtime) = tpl.mtime {
            self.dir_times.insert(path.clone(), mtime);
        }
        if opaque {
            Node::Fd(fd.as_raw_fd())
                .set_xattr(OPAQUE_XATTR, b"y")
                .map_err(|err| self.sys("marking opaque", &path, err))?;
        }
        Ok(fd)
    }

    /// The directory `comps` as the layers below show it through this one, looked up as overlayfs does (nearest
    /// layer first; a whiteout, an opaque directory or root, or a non-directory on the way hides the rest), or None
    /// when they show none there. A symlink on the way in a lower layer shows none too: the directory this layer
    /// makes replaces it.
    fn lower_dir(&self, e: &Entry, comps: &[&[u8]]) -> Result<Option<OwnedFd>> {
        let Some((&base, _)) = comps.split_last() else {
            return Ok(None);
        };
        let through_symlink = |r: Result<Lookup>| match r {
            Err(Error::HostileLayer { .. }) => Ok(Lookup::Hidden),
            r => r,
        };
        if !matches!(
            through_symlink(self.lookup(e, self.root.as_raw_fd(), comps, false))?,
            Lookup::Missing
        ) {
            return Ok(None);
        }
        for lower in self.lowers {
            let root = open_layer_dir(lower)?;
            match through_symlink(self.lookup(e, root.as_raw_fd(), comps, true))? {
                Lookup::Found(holder, st) if file_type(&st) == SFlag::S_IFDIR => {
                    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
                    return open_beneath(holder.as_raw_fd(), base, flags)
                        .map(Some)
                        .map_err(|err| {
                            io(
                                "opening lower layer directory",
                                lower.join(OsStr::from_bytes(&join(comps))),
                            )(err.into())
                        });
                }
                Lookup::Missing => {}
                Lookup::Found(..) | Lookup::Hidden => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Makes room for a new entry at `name` in `holder` (the thing there is replaced; a directory with all it
    /// holds), forgetting what was known about the directories removed.
    fn remove(&mut self, holder: RawFd, name: &[u8], path: &[u8]) -> Result<()> {
        match nix::unistd::unlinkat(Some(holder), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(()),
            Err(Errno::EISDIR) => {
                remove_tree(holder, name).map_err(|err| self.sys("removing", path, err))?;
                let under = |p: &[u8]| {
                    p == path || (p.starts_with(path) && p.get(path.len()) == Some(&b'/'))
                };
                if self.parent_cache.as_ref().is_some_and(|(p, _)| under(p)) {
                    self.parent_cache = None;
                }
                self.dir_times.retain(|p, _| !under(p));
                Ok(())
            }
            Err(err) => Err(self.sys("removing", path, err)),
        }
    }

    /// Runs `make` (a create with O_EXCL semantics); if the name is taken, replaces what is there and retries.
    fn create<T>(
        &mut self,
        op: &'static str,
        holder: &OwnedFd,
        base: &[u8],
        path: &[u8],
        make: impl Fn(RawFd) -> nix::Result<T>,
    ) -> Result<T> {
        let h = holder.as_raw_fd();
        match make(h) {
            Err(Errno::EEXIST) => {
                self.remove(h, base, path)?;
                make(h)
            }
            r => r,
        }
        .map_err(|err| self.sys(op, path, err))
    }

    /// Owner, then mode (chown clears setuid and setgid), then xattrs (chown also drops security.capability),
    /// then times (except for directories, done at the end).
    fn set_metadata(&self, e: &Entry, node: &Node, path: &[u8], is_dir: bool) -> Result<()> {
        let Node::Fd(fd) = *node else {
            return Err(self.sys("setting metadata of", path, Errno::EINVAL));
        };
        nix::unistd::fchown(fd, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
            .map_err(|err| self.sys("changing the owner of", path, err))?;
        nix::sys::stat::fchmod(fd, mode_bits(e.mode))
            .map_err(|err| self.sys("changing the mode of", path, err))?;
        self.set_xattrs(e, node, path, false)?;
        if !is_dir {
            let t = e.mtime.spec();
            nix::sys::stat::futimens(fd, &t, &t)
                .map_err(|err| self.sys("setting the times of", path, err))?;
        }
        Ok(())
    }

    /// The same for a symlink, device or fifo, by name in its directory, never following it.
    fn set_metadata_at(&self, e: &Entry, holder: RawFd, base: &[u8], path: &[u8]) -> Result<()> {
        nix::unistd::fchownat(
            Some(holder),
            base,
            Some(Uid::from_raw(e.uid)),
            Some(Gid::from_raw(e.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|err| self.sys("changing the owner of", path, err))?;
        if e.kind != SYMLINK {
            chmod_nofollow(holder, base, e.mode)
                .map_err(|err| self.sys("changing the mode of", path, err))?;
        }
        if !e.xattrs.is_empty() {
            let node = Node::at(holder, base).map_err(|err| self.sys("naming", path, err))?;
            self.set_xattrs(e, &node, path, true)?;
        }
        let t = e.mtime.spec();
        nix::sys::stat::utimensat(Some(holder), base, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|err| self.sys("setting the times of", path, err))
    }

    /// `special`: a symlink, device or fifo, where Linux refuses user.* xattrs with EPERM (ignored, as docker does).
    fn set_xattrs(&self, e: &Entry, node: &Node, path: &[u8], special: bool) -> Result<()> {
        for (name, value) in &e.xattrs {
            let cname = CString::new(name.as_slice())
                .map_err(|_| self.malformed(e, "xattr name with a NUL byte"))?;
            match node.set_xattr(&cname, value) {
                Ok(()) => {}
                Err(Errno::EPERM) if special && name.starts_with(b"user.") => {}
                Err(err) => {
                    let source = io::Error::new(
                        io::Error::from(err).kind(),
                        format!("xattr {}: {err}", shown(name)),
                    );
                    return Err(self.sys("setting an xattr on", path, source));
                }
            }
        }
        Ok(())
    }

    fn copy_xattrs(&self, from: &Node, to: &Node, path: &[u8]) -> Result<()> {
        let names = from
            .list_xattrs()
            .map_err(|err| self.sys("listing the xattrs of the lower copy of", path, err))?;
        for name in names {
            if is_overlay_xattr(name.as_bytes()) {
                continue;
            }
            let value = from
                .get_xattr(&name)
                .map_err(|err| self.sys("reading an xattr of the lower copy of", path, err))?;
            if let Some(value) = value {
                match to.set_xattr(&name, &value) {
                    Ok(()) => {}
                    Err(Errno::EPERM) if name.as_bytes().starts_with(b"user.") => {}
                    Err(err) => return Err(self.sys("copying an xattr to", path, err)),
                }
            }
        }
        Ok(())
    }

    fn regular_file<R: Read>(
        &mut self,
        e: &Entry,
        parent: &[&[u8]],
        base: &[u8],
        path: &[u8],
        tar: &mut TarReader<'_, R>,
    ) -> Result<()> {
        let holder = self.parent_dir(e, parent)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let fd = self.create("creating file", &holder, base, path, |h| {
            openat(h, base, flags, Mode::from_bits_truncate(0o600))
        })?;
        let mut file = File::from(fd);
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let n = tar.read_data(&mut buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .map_err(|err| self.sys("writing", path, err))?;
        }
        self.buf = buf;
        self.set_metadata(e, &Node::Fd(file.as_raw_fd()), path, false)
    }

    /// image-spec layer.md: a later directory entry over a directory only updates its metadata; over anything
    /// else it replaces it.
    fn directory(&mut self, e: &Entry, parent: &[&[u8]], base: &[u8], path: &[u8]) -> Result<()> {
        let holder = self.parent_dir(e, parent)?;
        let h = holder.as_raw_fd();
        let mkdir = |h| nix::sys::stat::mkdirat(Some(h), base, Mode::from_bits_truncate(0o700));
        // Made in place of this layer's whiteout or other non-directory, which already hides what the layers below
        // hold at this path: opaque, so that it stays hidden.
        let mut opaque = false;
        match mkdir(h) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = lstatat(h, base).map_err(|err| self.sys("inspecting", path, err))?;
                if file_type(&st) != SFlag::S_IFDIR {
                    self.remove(h, base, path)?;
                    mkdir(h).map_err(|err| self.sys("creating directory", path, err))?;
                    opaque = true;
                }
            }
            Err(err) => return Err(self.sys("creating directory", path, err)),
        }
        let fd = openat(
            h,
            base,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|err| self.sys("opening directory", path, err))?;
        self.set_metadata(e, &Node::Fd(fd.as_raw_fd()), path, true)?;
        if opaque {
            Node::Fd(fd.as_raw_fd())
                .set_xattr(OPAQUE_XATTR, b"y")
                .map_err(|err| self.sys("marking opaque", path, err))?;
        }
        self.dir_times.insert(path.to_vec(), e.mtime);
        Ok(())
    }

    fn symlink(&mut self, e: &Entry, parent: &[&[u8]], base: &[u8], path: &[u8]) -> Result<()> {
        if e.link.is_empty() {
            return Err(self.malformed(e, "symlink with an empty target"));
        }
        let holder = self.parent_dir(e, parent)?;
        // The target is stored verbatim; nothing here ever follows it.
        self.create("creating symlink", &holder, base, path, |h| {
            nix::unistd::symlinkat(e.link.as_slice(), Some(h), base)
        })?;
        self.set_metadata_at(e, holder.as_raw_fd(), base, path)
    }

    fn special_file(
        &mut self,
        e: &Entry,
        parent: &[&[u8]],
        base: &[u8],
        path: &[u8],
    ) -> Result<()> {
        let (kind, dev) = match e.kind {
            CHAR_DEVICE => (
                SFlag::S_IFCHR,
                nix::sys::stat::makedev(e.dev_major, e.dev_minor),
            ),
            BLOCK_DEVICE => (
                SFlag::S_IFBLK,
                nix::sys::stat::makedev(e.dev_major, e.dev_minor),
            ),
            _ => (SFlag::S_IFIFO, 0),
        };
        let holder = self.parent_dir(e, parent)?;
        self.create("creating device or fifo", &holder, base, path, |h| {
            nix::sys::stat::mknodat(Some(h), base, kind, Mode::from_bits_truncate(0o600), dev)
        })?;
        self.set_metadata_at(e, holder.as_raw_fd(), base, path)
    }

    /// image-spec layer.md "Whiteouts", in overlayfs form. A whiteout applies only to lower layers: when this layer
    /// has an entry of the same name, before or after the whiteout, the entry stays.
    fn whiteout(&mut self, e: &Entry, parent: &[&[u8]], hidden: &[u8]) -> Result<()> {
        if hidden == b".wh..opq" {
            return self.opaque(e, parent);
        }
        if hidden.starts_with(b".wh.") {
            // Other `.wh..wh.` names are aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): ignored, as docker does.
            tracing::debug!(layer = self.layer, entry = %shown(&e.name), "ignoring a whiteout metadata entry");
            return Ok(());
        }
        if hidden.is_empty() {
            return Err(self.hostile(e, "whiteout without a name"));
        }
        if hidden == b"." || hidden == b".." {
            return Err(self.hostile(e, "whiteout of `.` or `..`"));
        }
        let holder = self.parent_dir(e, parent)?;
        let h = holder.as_raw_fd();
        let mut path = join(parent);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(hidden);
        match lstatat(h, hidden) {
            // This layer's own directory stays, and only its own entries in it: what the layers below hold there
            // is deleted, so it becomes opaque.
            Ok(st) if file_type(&st) == SFlag::S_IFDIR => {
                let fd = open_beneath(h, hidden, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(|err| self.resolve_error(e, &path, err))?;
                return Node::Fd(fd.as_raw_fd())
                    .set_xattr(OPAQUE_XATTR, b"y")
                    .map_err(|err| self.sys("marking opaque", &path, err));
            }
            // Any other entry of this layer already hides the lower path, and stays.
            Ok(_) => return Ok(()),
            Err(Errno::ENOENT) => {}
            Err(err) => return Err(self.sys("inspecting", &path, err)),
        }
        nix::sys::stat::mknodat(Some(h), hidden, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|err| self.sys("creating whiteout", &path, err))?;
        // Explicitly 0:0: a setgid parent would hand the node its group.
        nix::unistd::fchownat(
            Some(h),
            hidden,
            Some(Uid::from_raw(0)),
            Some(Gid::from_raw(0)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|err| self.sys("changing the owner of whiteout", &path, err))?;
        chmod_nofollow(h, hidden, 0)
            .map_err(|err| self.sys("changing the mode of whiteout", &path, err))
    }

    /// `dir/.wh..wh..opq`: `dir` (made if absent, with the metadata the layers below give it) hides what the lower
    /// layers hold in it; entries of this layer in it stay, whatever their order in the archive. At the layer's root
    /// the xattr is a record for `bundle`, which ends the overlay's lower stack here (overlayfs ignores it there).
    fn opaque(&mut self, e: &Entry, dir: &[&[u8]]) -> Result<()> {
        let path = join(dir);
        let fd = self.make_dirs(e, dir)?;
        Node::Fd(fd.as_raw_fd())
            .set_xattr(OPAQUE_XATTR, b"y")
            .map_err(|err| self.sys("marking opaque", &path, err))
    }

    /// A hard link to a file of this layer, or of a lower one: then the file is first copied up into this layer
    /// (content, owner, mode, xattrs, times), as overlayfs itself would, and linked there.
    fn hard_link(&mut self, e: &Entry, comps: &[&[u8]], path: &[u8]) -> Result<()> {
        let target = split_name(&e.link).map_err(|reason| {
            self.hostile(
                e,
                format!("hard link target {:?}: {reason}", shown(&e.link)),
            )
        })?;
        let Some((&target_base, _)) = target.split_last() else {
            return Err(self.malformed(e, "hard link to the layer directory"));
        };
        if target == comps {
            return Err(self.malformed(e, "hard link to itself"));
        }
        let source = match self.lookup(e, self.root.as_raw_fd(), &target, false)? {
            Lookup::Found(holder, st) => {
                if file_type(&st) == SFlag::S_IFDIR {
                    return Err(self.malformed(e, "hard link to a directory"));
                }
                holder
            }
            Lookup::Hidden => return Err(self.link_not_found(e)),
            Lookup::Missing => {
                let mut found = None;
                for lower in self.lowers {
                    let root = open_layer_dir(lower)?;
                    match self.lookup(e, root.as_raw_fd(), &target, true)? {
                        Lookup::Found(holder, st) => {
                            found = Some((holder, st));
                            break;
                        }
                        Lookup::Missing => {}
                        Lookup::Hidden => break,
                    }
                }
                let Some((lower_holder, st)) = found else {
                    return Err(self.link_not_found(e));
                };
                if file_type(&st) == SFlag::S_IFDIR {
                    return Err(self.malformed(e, "hard link to a directory"));
                }
                self.copy_up(e, &target, lower_holder.as_raw_fd(), &st)?
            }
        };
        let (&base, parent) = comps
            .split_last()
            .ok_or_else(|| self.hostile(e, "hard link named like the layer directory"))?;
        let holder = self.parent_dir(e, parent)?;
        let from = source.as_raw_fd();
        self.create("creating hard link", &holder, base, path, |h| {
            // Flags 0: if the target is a symlink, the link is to the symlink itself, never to what it names.
            nix::unistd::linkat(Some(from), target_base, Some(h), base, AtFlags::empty())
        })
    }

    fn link_not_found(&self, e: &Entry) -> Error {
        self.malformed(
            e,
            format_args!(
                "hard link target {:?} not found in this layer or below",
                shown(&e.link)
            ),
        )
    }

    /// Looks `comps` up in one layer directory the way overlayfs does, component by component, never following a
    /// symlink: a symlink on the way is hostile, a whiteout, an opaque directory (the layer's root included) or a
    /// non-directory hides the layers below. `root` is open for reading, not O_PATH.
    fn lookup(&self, e: &Entry, root: RawFd, comps: &[&[u8]], lower: bool) -> Result<Lookup> {
        let Some((&base, parent)) = comps.split_last() else {
            return Ok(Lookup::Missing);
        };
        let mut cur: Option<OwnedFd> = None;
        let mut opaque = marked_opaque(root);
        for (i, comp) in parent.iter().enumerate() {
            let at = cur.as_ref().map_or(root, |fd| fd.as_raw_fd());
            match open_beneath(at, comp, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                Ok(fd) => {
                    opaque |= marked_opaque(fd.as_raw_fd());
                    cur = Some(fd);
                }
                Err(Errno::ENOENT) => {
                    return Ok(if opaque {
                        Lookup::Hidden
                    } else {
                        Lookup::Missing
                    });
                }
                Err(Errno::ENOTDIR) => return Ok(Lookup::Hidden),
                Err(Errno::ELOOP) => {
                    return Err(self.hostile(
                        e,
                        format!(
                            "hard link target {:?} goes through a symlink{}",
                            shown(&e.link),
                            if lower { " in a lower layer" } else { "" }
                        ),
                    ));
                }
                Err(err) => {
                    return Err(self.sys("resolving hard link target", &join(&parent[..=i]), err));
                }
            }
        }
        let holder = match cur {
            Some(fd) => fd,
            None => open_beneath(root, b".", OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|err| self.sys("opening", b"", err))?,
        };
        match lstatat(holder.as_raw_fd(), base) {
            Ok(st) if is_whiteout(&st) => Ok(Lookup::Hidden),
            Ok(st) => Ok(Lookup::Found(holder, st)),
            Err(Errno::ENOENT) => Ok(if opaque {
                Lookup::Hidden
            } else {
                Lookup::Missing
            }),
            Err(err) => Err(self.sys("resolving hard link target", &join(comps), err)),
        }
    }

    /// Copies `target` from a lower layer into this one, returning the directory of this layer that now holds it.
    fn copy_up(
        &mut self,
        e: &Entry,
        target: &[&[u8]],
        lower_holder: RawFd,
        st: &FileStat,
    ) -> Result<OwnedFd> {
        let Some((&base, parent)) = target.split_last() else {
            return Err(self.malformed(e, "hard link to the layer directory"));
        };
        let path = join(target);
        let holder = self.make_dirs(e, parent)?;
        let h = holder.as_raw_fd();
        let times = [
            TimeSpec::new(st.st_atime, st.st_atime_nsec),
            TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        ];
        let (uid, gid) = (
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        );
        let kind = file_type(st);
        if kind == SFlag::S_IFREG {
            let src = open_beneath(lower_holder, base, OFlag::O_RDONLY | OFlag::O_NOFOLLOW)
                .map_err(|err| self.sys("opening the lower copy of", &path, err))?;
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
            let dst = openat(h, base, flags, Mode::from_bits_truncate(0o600))
                .map_err(|err| self.sys("copying up", &path, err))?;
            let (mut src, mut dst) = (File::from(src), File::from(dst));
            std::io::copy(&mut src, &mut dst).map_err(|err| self.sys("copying up", &path, err))?;
            let fd = dst.as_raw_fd();
            nix::unistd::fchown(fd, uid, gid)
                .map_err(|err| self.sys("changing the owner of", &path, err))?;
            nix::sys::stat::fchmod(fd, mode_bits(st.st_mode))
                .map_err(|err| self.sys("changing the mode of", &path, err))?;
            self.copy_xattrs(&Node::Fd(src.as_raw_fd()), &Node::Fd(fd), &path)?;
            nix::sys::stat::futimens(fd, &times[0], &times[1])
                .map_err(|err| self.sys("setting the times of", &path, err))?;
            return Ok(holder);
        }
        if kind == SFlag::S_IFLNK {
            let link = nix::fcntl::readlinkat(Some(lower_holder), base)
                .map_err(|err| self.sys("reading the lower copy of", &path, err))?;
            nix::unistd::symlinkat(link.as_os_str(), Some(h), base)
                .map_err(|err| self.sys("copying up", &path, err))?;
        } else if kind == SFlag::S_IFCHR || kind == SFlag::S_IFBLK || kind == SFlag::S_IFIFO {
            nix::sys::stat::mknodat(
                Some(h),
                base,
                kind,
                Mode::from_bits_truncate(0o600),
                st.st_rdev,
            )
            .map_err(|err| self.sys("copying up", &path, err))?;
        } else {
            return Err(self.malformed(e, "hard link target of a type that cannot be copied up"));
        }
        nix::unistd::fchownat(Some(h), base, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|err| self.sys("changing the owner of", &path, err))?;
        if kind != SFlag::S_IFLNK {
            chmod_nofollow(h, base, st.st_mode)
                .map_err(|err| self.sys("changing the mode of", &path, err))?;
        }
        let from = Node::at(lower_holder, base).map_err(|err| self.sys("naming", &path, err))?;
        let to = Node::at(h, base).map_err(|err| self.sys("naming", &path, err))?;
        self.copy_xattrs(&from, &to, &path)?;
        nix::sys::stat::utimensat(
            Some(h),
            base,
            &times[0],
            &times[1],
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|err| self.sys("setting the times of", &path, err))?;
        Ok(holder)
    }

    /// Sets the directory mtimes (atime = mtime), deepest first, now that nothing more is created in them.
    pub(super) fn finish(self) -> Result<()> {
        let mut dirs: Vec<(Vec<u8>, Time)> = self.dir_times.into_iter().collect();
        dirs.sort_by_key(|(path, _)| {
            Reverse(path.iter().filter(|&&b| b == b'/').count() + usize::from(!path.is_empty()))
        });
        for (path, time) in dirs {
            let fd = match open_beneath(
                self.root.as_raw_fd(),
                &path,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            ) {
                Ok(fd) => fd,
                // Replaced by a later entry.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(err) => {
                    return Err(io(
                        "opening directory",
                        self.dir.join(OsStr::from_bytes(&path)),
                    )(err.into()));
                }
            };
            let t = time.spec();
            nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t).map_err(|err| {
                io(
                    "setting the times of",
                    self.dir.join(OsStr::from_bytes(&path)),
                )(err.into())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::fixture::*;
    use crate::unpack::{Compression, unpack_layer};
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::EntryType;

    /// layer.md "Changeset over existing files" / "File Types" / "File Attributes": regular files, directories,
    /// symlinks, hard links, devices and fifos, with owner, mode (setuid included), mtime and xattrs (PAX
    /// SCHILY.xattr); a DiffID over the whole uncompressed stream (config.md "Layer DiffID").
    #[test]
    fn entries_and_their_metadata_are_applied() {
        let fx = Fixture::new();
        let long_name = format!("deep/{}/file", "n".repeat(150));
        let tar = Layer::new()
            .dir_owned("etc", 0o755, 0, 0, 1_600_000_000)
            .pax(&[
                ("SCHILY.xattr.user.polis", b"hello"),
                ("SCHILY.xattr.trusted.polis", b"secret"),
            ])
            .file_owned(
                "etc/hosts",
                b"127.0.0.1 localhost\n",
                0o640,
                1000,
                1001,
                1_500_000_123,
            )
            .file("bin/su", b"#!/bin/true\n", 0o4755)
            .dir_owned("srv", 0o2775, 0, 50, 1_400_000_000)
            .dir("tmp", 0o1777)
            .symlink("etc/abs", "/etc/passwd")
            .symlink("etc/rel", "../bin/su")
            .hard_link("bin/su-link", "bin/su")
            .device(EntryType::Char, "dev/null", 0o666, 1, 3)
            .device(EntryType::Block, "dev/loop9", 0o660, 7, 9)
            .device(EntryType::Fifo, "run/fifo", 0o600, 0, 0)
            .file("a/b/c", b"implicit parents", 0o644)
            .file(&long_name, b"long", 0o644)
            .finish();
        let unpacked = fx.unpack(&tar).unwrap();
        assert_eq!(unpacked.diff_id, sha256(&tar));
        assert_eq!(unpacked.size, tar.len() as u64);
        assert_eq!(unpacked.entries, 13);

        let hosts = fs::metadata(fx.path("etc/hosts")).unwrap();
        assert_eq!(
            fs::read(fx.path("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(
            (hosts.uid(), hosts.gid(), hosts.mode() & 0o7777),
            (1000, 1001, 0o640)
        );
        assert_eq!(
            (hosts.mtime(), hosts.atime()),
            (1_500_000_123, 1_500_000_123)
        );
        assert_eq!(
            xattr(&fx.path("etc/hosts"), "user.polis").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            xattr(&fx.path("etc/hosts"), "trusted.polis").as_deref(),
            Some(&b"secret"[..])
        );

        let su = fs::metadata(fx.path("bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755, "setuid survives the chown");
        let srv = fs::metadata(fx.path("srv")).unwrap();
        assert_eq!((srv.gid(), srv.mode() & 0o7777), (50, 0o2775));
        assert_eq!(
            fs::metadata(fx.path("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );

        // Directory mtimes are set last, so creating children did not change them.
        assert_eq!(fs::metadata(fx.path("etc")).unwrap().mtime(), 1_600_000_000);
        assert_eq!(fs::metadata(fx.path("srv")).unwrap().mtime(), 1_400_000_000);

        // Symlinks keep their target verbatim, absolute ones too, and are never followed.
        assert!(
            fs::symlink_metadata(fx.path("etc/abs"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_link(fx.path("etc/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            fs::read_link(fx.path("etc/rel")).unwrap(),
            Path::new("../bin/su")
        );
        assert_eq!(
            fs::symlink_metadata(fx.path("etc/abs")).unwrap().mtime(),
            1_500_000_000
        );

        let link = fs::metadata(fx.path("bin/su-link")).unwrap();
        assert_eq!(link.ino(), su.ino());
        assert_eq!(link.nlink(), 2);

        let null = fs::symlink_metadata(fx.path("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(
            (
                nix::sys::stat::major(null.rdev()),
                nix::sys::stat::minor(null.rdev())
            ),
            (1, 3)
        );
        assert_eq!(null.mode() & 0o7777, 0o666);
        let blk = fs::symlink_metadata(fx.path("dev/loop9")).unwrap();
        assert!(blk.file_type().is_block_device());
        assert_eq!(
            (
                nix::sys::stat::major(blk.rdev()),
                nix::sys::stat::minor(blk.rdev())
            ),
            (7, 9)
        );
        assert!(
            fs::symlink_metadata(fx.path("run/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );

        // Missing parents are made 0755 and root-owned, as docker and containerd do.
        for dir in ["a", "a/b", "dev", "run"] {
            let m = fs::metadata(fx.path(dir)).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o7777),
                (0, 0, 0o755),
                "{dir}"
            );
        }
        assert_eq!(fs::read(fx.path(&long_name)).unwrap(), b"long");
        fx.assert_contained();
    }

    /// layer.md "Whiteouts": `.wh.name` hides `name` of the lower layers (an overlayfs 0/0 character device);
    /// "Opaque Whiteout": `.wh..wh..opq` hides the lower layers' children of its directory, never this layer's,
    /// whether they come before or after it; "Whiteout files MUST only apply to resources in lower/parent layers",
    /// so `name` and `.wh.name` in one layer leave `name`, in either order.
    #[test]
    fn whiteouts_take_overlayfs_form_and_apply_only_below() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .file(".wh.gone", b"", 0o644)
            .dir("d1", 0o755)
            .file("d1/kept-before", b"1", 0o644)
            .file("d1/.wh..wh..opq", b"", 0o644)
            .file("d1/kept-after", b"2", 0o644)
            .file("d2/.wh..wh..opq", b"", 0o644)
            .file("both", b"entry first", 0o644)
            .file(".wh.both", b"", 0o644)
            .file(".wh.both2", b"", 0o644)
            .file("both2", b"whiteout first", 0o644)
            .dir("sub", 0o755)
            .file("sub/.wh.x", b"", 0o644)
            .file(".wh..wh.plnk", b"", 0o644)
            .finish();
        fx.unpack(&tar).unwrap();

        for gone in ["gone", "sub/x"] {
            let m = fs::symlink_metadata(fx.path(gone)).unwrap();
            assert!(m.file_type().is_char_device(), "{gone}");
            assert_eq!(m.rdev(), 0);
            assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0, 0, 0));
        }
        assert_eq!(
            xattr(&fx.path("d1"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(fs::read(fx.path("d1/kept-before")).unwrap(), b"1");
        assert_eq!(fs::read(fx.path("d1/kept-after")).unwrap(), b"2");
        assert_eq!(
            xattr(&fx.path("d2"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(fs::metadata(fx.path("d2")).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(fs::read(fx.path("both")).unwrap(), b"entry first");
        assert_eq!(fs::read(fx.path("both2")).unwrap(), b"whiteout first");
        // No `.wh.` file is left in the layer.
        let mut names = Vec::new();
        for dir in ["", "d1", "d2", "sub"] {
            for e in fs::read_dir(fx.path(dir)).unwrap() {
                names.push(e.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
        assert!(names.iter().all(|n| !n.starts_with(".wh.")), "{names:?}");
        fx.assert_contained();
    }

    /// layer.md "Hardlinks": a hard link may name a file of a lower layer; it is copied up into this layer
    /// (content, owner, mode, xattrs, mtime, and its parents' metadata), then linked. A target absent from every
    /// layer, or hidden by a whiteout, is an error.
    #[test]
    fn hard_link_to_a_lower_layer_copies_the_target_up() {
        let lower = Fixture::new();
        let tar = Layer::new()
            .dir_owned("usr", 0o755, 0, 0, 1_000_000_000)
            .dir_owned("usr/lib", 0o750, 3, 4, 1_100_000_000)
            .pax(&[("SCHILY.xattr.user.origin", b"lower")])
            .file_owned(
                "usr/lib/libx.so",
                b"ELF lower content",
                0o751,
                7,
                8,
                1_200_000_000,
            )
            .file("usr/lib/hidden", b"hidden", 0o644)
            .finish();
        lower.unpack(&tar).unwrap();

        let upper = Fixture::new();
        let tar = Layer::new()
            .dir("usr/bin", 0o755)
            .hard_link("usr/bin/x-link", "usr/lib/libx.so")
            .finish();
        unpack_layer(
            LAYER,
            &tar[..],
            Compression::None,
            &upper.dir,
            std::slice::from_ref(&lower.dir),
        )
        .unwrap();

        let copy = fs::metadata(upper.path("usr/lib/libx.so")).unwrap();
        let link = fs::metadata(upper.path("usr/bin/x-link")).unwrap();
        let original = fs::metadata(lower.path("usr/lib/libx.so")).unwrap();
        assert_eq!(
            fs::read(upper.path("usr/bin/x-link")).unwrap(),
            b"ELF lower content"
        );
        assert_eq!(copy.ino(), link.ino());
        assert_ne!(copy.ino(), original.ino());
        assert_eq!(original.nlink(), 1, "the lower layer is untouched");
        assert_eq!(
            (copy.mode() & 0o7777, copy.uid(), copy.gid(), copy.mtime()),
            (0o751, 7, 8, 1_200_000_000)
        );
        assert_eq!(
            xattr(&upper.path("usr/lib/libx.so"), "user.origin").as_deref(),
            Some(&b"lower"[..])
        );
        let lib = fs::metadata(upper.path("usr/lib")).unwrap();
        assert_eq!(
            (lib.mode() & 0o7777, lib.uid(), lib.gid(), lib.mtime()),
            (0o750, 3, 4, 1_100_000_000)
        );
        upper.assert_contained();
        lower.assert_contained();

        // A middle layer whites the file out: it is gone for the layers above.
        let middle = Fixture::new();
        middle
            .unpack(&Layer::new().file("usr/lib/.wh.hidden", b"", 0o644).finish())
            .unwrap();
        let top = Fixture::new();
        let tar = Layer::new().hard_link("h", "usr/lib/hidden").finish();
        let lowers = [middle.dir.clone(), lower.dir.clone()];
        assert_format(
            unpack_layer(LAYER, &tar[..], Compression::None, &top.dir, &lowers),
            "\"h\"",
        );

        let nowhere = Fixture::new();
        let tar = Layer::new().hard_link("h", "usr/lib/nothing").finish();
        let result = unpack_layer(
            LAYER,
            &tar[..],
            Compression::None,
            &nowhere.dir,
            std::slice::from_ref(&lower.dir),
        );
        assert_format(result, "usr/lib/nothing");
    }

    /// layer.md "Changeset over existing files": a later directory entry over a directory merges its metadata;
    /// any other later entry replaces what was there, and never writes through a symlink it replaces. The entry
    /// `.` sets the metadata of the layer directory itself.
    #[test]
    fn repeated_entries_merge_directories_and_replace_the_rest() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir_owned(".", 0o750, 0, 0, 1_300_000_000)
            .dir("d", 0o700)
            .file("d/keep", b"kept", 0o644)
            .dir_owned("d", 0o755, 5, 5, 1_234_567_890)
            .file("f", b"file", 0o644)
            .dir("f", 0o711)
            .dir("g", 0o755)
            .file("g/child", b"child", 0o644)
            .file("g", b"now a file", 0o600)
            .symlink("s", "/etc/polis-unpack-test-replaced")
            .file("s", b"not through the link", 0o644)
            .file("twice", b"first", 0o644)
            .file("twice", b"second", 0o644)
            .finish();
        fx.unpack(&tar).unwrap();
        let d = fs::metadata(fx.path("d")).unwrap();
        assert_eq!(
            (d.mode() & 0o7777, d.uid(), d.mtime()),
            (0o755, 5, 1_234_567_890)
        );
        assert_eq!(fs::read(fx.path("d/keep")).unwrap(), b"kept");
        assert!(fs::metadata(fx.path("f")).unwrap().is_dir());
        assert_eq!(fs::read(fx.path("g")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(fx.path("s")).unwrap().is_file());
        assert!(!Path::new("/etc/polis-unpack-test-replaced").exists());
        assert_eq!(fs::read(fx.path("twice")).unwrap(), b"second");
        let root = fs::metadata(&fx.dir).unwrap();
        assert_eq!((root.mode() & 0o7777, root.mtime()), (0o750, 1_300_000_000));
        fx.assert_contained();
    }

    /// layer.md "Whiteouts" end to end: two unpacked layers mounted as overlayfs lower directories show the
    /// merged view the image-spec describes.
    #[test]
    fn overlayfs_merges_the_unpacked_layers() {
        let lower = Fixture::new();
        let tar = Layer::new()
            .file("a", b"a", 0o644)
            .dir("d", 0o755)
            .file("d/x", b"x", 0o644)
            .file("d/y", b"y", 0o644)
            .file("keep", b"keep", 0o644)
            .finish();
        lower.unpack(&tar).unwrap();
        let upper = Fixture::new();
        let tar = Layer::new()
            .file(".wh.a", b"", 0o644)
            .dir("d", 0o755)
            .file("d/.wh..wh..opq", b"", 0o644)
            .file("d/z", b"z", 0o644)
            .finish();
        upper.unpack(&tar).unwrap();

        let merged = tempfile::tempdir().unwrap();
        let options = format!("lowerdir={}:{}", upper.dir.display(), lower.dir.display());
        nix::mount::mount(
            Some("overlay"),
            merged.path(),
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .unwrap();
        let _mounted = Mounted(merged.path().to_path_buf());
        let names = |dir: &Path| -> BTreeSet<String> {
            fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(merged.path()),
            BTreeSet::from(["d".to_string(), "keep".to_string()])
        );
        assert!(!merged.path().join("a").exists());
        assert_eq!(
            names(&merged.path().join("d")),
            BTreeSet::from(["z".to_string()])
        );
        assert_eq!(fs::read(merged.path().join("d/z")).unwrap(), b"z");
    }

    /// layer.md "Whiteouts": a whiteout deletes the lower path, and "Files that are present in the same layer as a
    /// whiteout file can only be hidden by whiteout files in subsequent layers". A directory this layer makes at a
    /// whited-out path (after the whiteout, before it, or only as the parent of an entry) holds this layer's
    /// entries alone, so it is opaque; a plain directory over a lower one would merge the lower's children back in.
    #[test]
    fn a_directory_made_again_after_its_whiteout_hides_the_lower_one() {
        let lower = Fixture::new();
        let tar = Layer::new()
            .dir("d", 0o755)
            .file("d/old", b"old", 0o644)
            .dir("e", 0o755)
            .file("e/old", b"old", 0o644)
            .dir("h", 0o755)
            .file("h/old", b"old", 0o644)
            .dir("f", 0o755)
            .file("f/x", b"x", 0o644)
            .file("g", b"a file below", 0o644)
            .dir("k", 0o755)
            .file("k/old", b"old", 0o644)
            .finish();
        lower.unpack(&tar).unwrap();
        let upper = Fixture::new();
        let tar = Layer::new()
            .file(".wh.d", b"", 0o644)
            .dir_owned("d", 0o700, 5, 5, 1_200_000_000)
            .file("d/new", b"new", 0o644)
            .file(".wh.e", b"", 0o644)
            .file("e/z", b"z", 0o644)
            .dir("h", 0o755)
            .file("h/kept", b"kept", 0o644)
            .file(".wh.h", b"", 0o644)
            .file(".wh.f", b"", 0o644)
            .file("f", b"now a file", 0o644)
            .file(".wh.g", b"", 0o644)
            .dir("g", 0o755)
            .file("g/y", b"y", 0o644)
            .dir("k", 0o755)
            .file("k/new", b"new", 0o644)
            .finish();
        let lowers = [lower.dir.clone()];
        unpack_layer(LAYER, &tar[..], Compression::None, &upper.dir, &lowers).unwrap();
        for dir in ["d", "e", "h", "g"] {
            assert!(is_opaque(&upper.path(dir)), "{dir} is opaque");
        }
        assert!(!is_opaque(&upper.path("k")), "k merges with the lower k");
        let e = fs::metadata(upper.path("e")).unwrap();
        assert_eq!((e.mode() & 0o7777, e.uid(), e.gid()), (0o755, 0, 0));
        upper.assert_contained();

        let (merged, _mounted) = mount_merged(&[&upper.dir, &lower.dir]);
        let m = merged.path();
        assert_eq!(names(&m.join("d")), set(&["new"]));
        assert_eq!(names(&m.join("e")), set(&["z"]));
        assert_eq!(names(&m.join("h")), set(&["kept"]));
        assert_eq!(names(&m.join("g")), set(&["y"]));
        assert_eq!(names(&m.join("k")), set(&["new", "old"]));
        assert_eq!(fs::read(m.join("f")).unwrap(), b"now a file");
        let d = fs::metadata(m.join("d")).unwrap();
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o700, 5, 5));
    }

    /// layer.md "Opaque Whiteout" at a layer's root: the layer directory itself is marked (overlayfs ignores that
    /// on a lower root; `bundle` reads it), and a hard link can no longer reach a file of the layers below, from
    /// a layer above or from the opaque layer itself.
    #[test]
    fn an_opaque_root_is_recorded_and_hides_the_layers_below_from_hard_links() {
        let lower = Fixture::new();
        lower
            .unpack(
                &Layer::new()
                    .file("a", b"a", 0o644)
                    .dir("dir", 0o755)
                    .file("dir/b", b"b", 0o644)
                    .finish(),
            )
            .unwrap();
        let middle = Fixture::new();
        let tar = Layer::new()
            .file("m", b"m", 0o644)
            .file(".wh..wh..opq", b"", 0o644)
            .finish();
        unpack_layer(
            LAYER,
            &tar[..],
            Compression::None,
            &middle.dir,
            std::slice::from_ref(&lower.dir),
        )
        .unwrap();
        assert!(is_opaque(&middle.dir));
        assert_eq!(names(&middle.dir), set(&["m"]));

        let lowers = [middle.dir.clone(), lower.dir.clone()];
        for target in ["a", "dir/b"] {
            let top = Fixture::new();
            let tar = Layer::new().hard_link("l", target).finish();
            assert_format(
                unpack_layer(LAYER, &tar[..], Compression::None, &top.dir, &lowers),
                target,
            );
        }
        let top = Fixture::new();
        let tar = Layer::new().hard_link("l", "m").finish();
        unpack_layer(LAYER, &tar[..], Compression::None, &top.dir, &lowers).unwrap();
        assert_eq!(fs::read(top.path("l")).unwrap(), b"m");

        let own = Fixture::new();
        let tar = Layer::new()
            .file(".wh..wh..opq", b"", 0o644)
            .hard_link("l", "a")
            .finish();
        let result = unpack_layer(
            LAYER,
            &tar[..],
            Compression::None,
            &own.dir,
            std::slice::from_ref(&lower.dir),
        );
        assert_format(result, "\"l\"");
    }

    /// A whiteout or opaque marker in a directory the layer has no entry for, or a file whose parents it leaves
    /// out, implies those directories. They keep the owner, mode, mtime and xattrs the layers below show for
    /// them (the nearest layer that has them, as overlayfs merges and copies up), so the merged view is what
    /// applying the changeset to the lower tree gives (layer.md "Applying Changesets"). A directory the layers
    /// below hide is made afresh.
    #[test]
    fn directories_a_layer_only_implies_keep_the_lower_metadata() {
        let far = Fixture::new();
        let tar = Layer::new()
            .dir_owned("a", 0o755, 0, 0, 1_000_000_000)
            .dir_owned("a/b", 0o701, 3, 3, 1_050_000_000)
            .file("a/b/c", b"c", 0o644)
            .dir_owned("n", 0o755, 0, 0, 1_000_000_000)
            .file("n/old", b"old", 0o644)
            .dir_owned("q", 0o700, 9, 9, 1_000_000_000)
            .finish();
        far.unpack(&tar).unwrap();
        let near = Fixture::new();
        let tar = Layer::new()
            .pax(&[("SCHILY.xattr.user.origin", b"near")])
            .dir_owned("a", 0o750, 1000, 1000, 1_100_000_000)
            .dir_owned("n", 0o711, 7, 7, 1_150_000_000)
            .file(".wh.q", b"", 0o644)
            .finish();
        near.unpack(&tar).unwrap();
        let upper = Fixture::new();
        let tar = Layer::new()
            .file("a/b/.wh.c", b"", 0o644)
            .file("n/.wh..wh..opq", b"", 0o644)
            .file("n/fresh", b"fresh", 0o644)
            .file("q/x", b"x", 0o644)
            .finish();
        let lowers = [near.dir.clone(), far.dir.clone()];
        unpack_layer(LAYER, &tar[..], Compression::None, &upper.dir, &lowers).unwrap();
        let meta = |p: &str| {
            let m = fs::metadata(upper.path(p)).unwrap();
            (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime())
        };
        assert_eq!(meta("a"), (0o750, 1000, 1000, 1_100_000_000));
        assert_eq!(
            xattr(&upper.path("a"), "user.origin").as_deref(),
            Some(&b"near"[..])
        );
        assert_eq!(meta("a/b"), (0o701, 3, 3, 1_050_000_000));
        assert_eq!(meta("n"), (0o711, 7, 7, 1_150_000_000));
        assert!(is_opaque(&upper.path("n")));
        assert_eq!((meta("q").0, meta("q").1), (0o755, 0));

        let (merged, _mounted) = mount_merged(&[&upper.dir, &near.dir, &far.dir]);
        let m = merged.path();
        assert_eq!(names(&m.join("a/b")), BTreeSet::new());
        assert_eq!(names(&m.join("n")), set(&["fresh"]));
        let a = fs::metadata(m.join("a")).unwrap();
        assert_eq!((a.mode() & 0o7777, a.uid()), (0o750, 1000));
    }
}
