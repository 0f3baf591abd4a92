//! GET: building a tar archive of a path in the container, walking the tree from descriptors.

use super::resolve::{Found, fstat, kind, open_at};
use super::view::{errno, owned};
use super::xattr::xattr_pax;
use super::*;

/// Writes the archive into a channel in chunks, for a response body read as it is made.
pub(super) struct ChunkWriter {
    pub(super) tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    pub(super) buf: Vec<u8>,
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
pub(super) fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
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
pub(super) fn append_member<W: Write>(
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
pub(super) fn write_archive<W: Write>(
    root: &Rootfs,
    found: &Found,
    abs: &[u8],
    out: W,
) -> Result<W> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
