//! PUT: extracting a tar archive into a directory of the container, as pkg/archive's `Untar` does.

use super::paths::{join, name_str};
use super::resolve::{fstat, kind, open_at};
use super::view::{NOT_CONTAINERS, errno, owned};
use super::xattr::fd_path;
use super::*;
use polis_imagesvc::tar::{
    BLOCK_DEVICE, CHAR_DEVICE, CONTIGUOUS, DIRECTORY, Entry, FIFO, HARD_LINK, REGULAR, Reader,
    SYMLINK,
};

/// A malformed archive, or one that cannot be read: polis-imagesvc's tar reader's error (what is wrong, at which
/// byte of the archive, after which member) or its data's.
fn bad_archive(reason: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("read the archive: {reason}"))
}

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
pub(super) fn decompressed(mut reader: impl Read + Send + 'static) -> Result<Box<dyn Read + Send>> {
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
pub(super) struct Extractor<'a> {
    pub(super) root: &'a Rootfs,
    /// The extraction directory's path in the container.
    pub(super) dest: Vec<u8>,
    pub(super) options: ExtractOptions,
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
    fn apply(&self, m: &Entry, data: &mut dyn Read) -> Result<Option<DirTimes>> {
        let breakout =
            |what: String| Error::Invalid(format!("{what} is outside of {}", name_str(&self.dest)));
        let name =
            member_name(&m.name).ok_or_else(|| breakout(format!("{:?}", name_str(&m.name))))?;
        if name == b"." {
            // The extraction directory itself: it exists and is a directory.
            return Ok(None);
        }
        let is_dir = m.kind == DIRECTORY;
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
        let mtime = (m.mtime.sec, m.mtime.nsec);
        let last_os = OsStr::from_bytes(&last);
        let made = |e: Errno| errno(format!("create {}", name_str(&path)), e);
        let mut chmod = true;
        match m.kind {
            DIRECTORY => {
                match nix::sys::stat::mkdirat(
                    Some(pfd),
                    last_os,
                    Mode::from_bits_truncate(mode & 0o777),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(made(e)),
                }
            }
            REGULAR | CONTIGUOUS => {
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
            CHAR_DEVICE | BLOCK_DEVICE | FIFO => {
                let (kind_flag, dev) = match m.kind {
                    FIFO => (SFlag::S_IFIFO, 0),
                    CHAR_DEVICE => (
                        SFlag::S_IFCHR,
                        nix::sys::stat::makedev(m.dev_major, m.dev_minor),
                    ),
                    _ => (
                        SFlag::S_IFBLK,
                        nix::sys::stat::makedev(m.dev_major, m.dev_minor),
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
            HARD_LINK => {
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
            SYMLINK => {
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
            if is_dir { None } else { Some(mtime) },
            &m.xattrs,
        )?;
        Ok(is_dir.then_some((path, mtime)))
    }

    pub(super) fn run(&self, reader: impl Read) -> Result<()> {
        let mut archive = Reader::new(reader);
        let mut dirs = Vec::new();
        while let Some(member) = archive.next_entry().map_err(bad_archive)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::archive::resolve::open_dir;
    use crate::core::archive::xattr::xattr_buffer;

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

    /// What write.rs writes (PAX records with a binary `security.capability` holding a newline, a USTAR name split
    /// into prefix and name, a GNU long link) reads back whole through polis-imagesvc's tar reader, which frames
    /// PAX records by their length as Go's archive/tar does; a corrupted header is a "read the archive" error.
    #[test]
    fn written_members_read_back_whole() {
        use crate::core::archive::write::{append_member, pax_records};
        let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
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

        let mut r = Reader::new(bytes.as_slice());
        let m = r.next_entry().unwrap().unwrap();
        assert_eq!(m.kind, REGULAR);
        assert_eq!(s(m.name.clone()), long);
        assert_eq!((m.mode, m.uid), (0o4755, 7));
        assert_eq!((m.mtime.sec, m.mtime.nsec), (1_700_000_000, 250_000_000));
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
        let m = r.next_entry().unwrap().unwrap();
        assert_eq!((m.kind, s(m.name)), (DIRECTORY, deep));
        let m = r.next_entry().unwrap().unwrap();
        assert_eq!((m.kind, s(m.link)), (SYMLINK, target));
        assert!(r.next_entry().unwrap().is_none());

        let mut broken = bytes.clone();
        broken[0] ^= 1;
        let e = Reader::new(broken.as_slice()).next_entry().unwrap_err();
        assert_eq!(
            bad_archive(e).to_string(),
            Error::Invalid(
                "read the archive: invalid header checksum (at byte 0 of the tar stream)".into()
            )
            .to_string()
        );
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
