//! Applies one layer of an OCI image (image-spec layer.md, "Image Layer Filesystem Changeset") to a directory that
//! becomes one overlayfs lower directory. Whiteouts take overlayfs form: `.wh.name` becomes a 0/0 character device
//! `name`, and `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory, so the kernel merges the layers
//! and a whiteout hides only what the layers below hold. A directory of this layer at a whited-out path (made before
//! or after the whiteout, or in place of it) is opaque too: the lower one is deleted, this layer's entries stay.
//! overlayfs ignores the xattr on a lower directory's root, so there it is a record for `bundle` (layers.rs,
//! `visible_layers`): an opaque whiteout at a layer's root ends the overlay's lower stack at that layer. Directories
//! this layer only implies (the parents of its entries) keep the owner, mode, mtime and xattrs the layers below give
//! them, as overlayfs copies a directory up.
//!
//! The archive is hostile until proven otherwise (docs/ARCHITECTURE.md, "imagesvc: our own tar framing"). Every parent directory is resolved beneath
//! the layer directory with openat2(2) and RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV, and the last component is then made or changed with the `*at` system calls, never following a
//! symlink: nothing is ever written, or read, outside the layer directory (and the lower layers, read only to copy up
//! the target of a hard link).
//!
//! The tar stream is framed here, following Go's archive/tar (which docker and containerd use), rather than by
//! `tar::Archive`. tar 0.4 splits a PAX extended header on newlines before honouring each record's length
//! (composefs/tar-rs#428, #452): it refuses binary xattrs such as a `security.capability` holding a 0x0A byte, and it
//! lets the tail of one value be read as a `path`, `linkpath` or `size` record that archive/tar does not see. It also
//! skips data after a symlink, directory, device or fifo header by the header's size field, which archive/tar
//! ignores. Each difference would unpack a different tree from the one every other runtime makes of the same blob.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use flate2::read::MultiGzDecoder;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result, io};
use crate::limits::{Budget, Limits, Meter};

/// How a layer blob is compressed, from its descriptor's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// OCI: application/vnd.oci.image.layer.v1.tar, .tar+gzip, .tar+zstd, and the .nondistributable. variants;
    /// Docker: application/vnd.docker.image.rootfs.diff.tar.gzip and ...foreign.diff.tar.gzip (and, as containerd
    /// accepts them, their uncompressed forms ...diff.tar and ...foreign.diff.tar). Anything else:
    /// Error::LayerFormat naming the media type.
    pub fn from_media_type(layer: &str, media_type: &str) -> Result<Compression> {
        Ok(match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
            other => {
                return Err(Error::LayerFormat {
                    layer: layer.to_string(),
                    reason: format!("unsupported layer media type {other:?}"),
                });
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What unpacking one layer did.
#[derive(Debug, Clone)]
pub struct UnpackedLayer {
    /// "sha256:<64 hex>" of the whole uncompressed stream (image-spec config.md "DiffID").
    pub diff_id: String,
    /// Uncompressed bytes.
    pub size: u64,
    /// Archive entries applied (extended headers not counted).
    pub entries: u64,
}

/// Unpacks the layer blob `blob` (compressed as `compression`; `layer` is its digest, for messages) into `dir`, an
/// existing empty directory that becomes one overlayfs lower directory. `lowers` are the unpacked directories of
/// the layers below, nearest first (used only to copy up the target of a hard link that lives in a lower layer).
/// On error `dir` may hold part of the layer: the caller removes it. Nothing is ever written outside `dir`.
pub fn unpack_layer(
    layer: &str,
    blob: impl Read,
    compression: Compression,
    dir: &Path,
    lowers: &[PathBuf],
) -> Result<UnpackedLayer> {
    let unlimited = Budget::new(Limits::none());
    unpack_layer_within(layer, blob, compression, dir, lowers, &unlimited)
}

/// [`unpack_layer`] within the limits of `budget` (limits.rs): the uncompressed bytes of the layer and of the image,
/// and the free space left on the file system of `dir`. Crossing one stops it with Error::Limit; the layer counts
/// for the image only once it is whole.
pub fn unpack_layer_within(
    layer: &str,
    blob: impl Read,
    compression: Compression,
    dir: &Path,
    lowers: &[PathBuf],
    budget: &Budget,
) -> Result<UnpackedLayer> {
    let started = Instant::now();
    let source = BlobReader(blob);
    let decoded = match compression {
        Compression::None => Decoded::Plain(source),
        Compression::Gzip => Decoded::Gzip(Box::new(MultiGzDecoder::new(source))),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(source).map_err(|e| Error::LayerFormat {
                    layer: layer.to_string(),
                    reason: format!("starting the zstd decoder: {e}"),
                })?;
            Decoded::Zstd(Box::new(decoder))
        }
    };
    let digest = DigestReader {
        inner: decoded,
        hasher: Sha256::new(),
        len: 0,
        meter: budget.meter(layer, dir),
    };
    let mut tar = TarReader {
        layer,
        compression,
        src: BufReader::with_capacity(STREAM_BUFFER, digest),
        offset: 0,
        data_left: 0,
        pad_left: 0,
        last: Vec::new(),
    };
    let mut out = LayerWriter::open(layer, dir, lowers)?;
    let mut entries = 0u64;
    while let Some(entry) = tar.next_entry()? {
        entries += 1;
        out.apply(&entry, &mut tar)?;
    }
    out.finish()?;
    let (diff_id, size) = tar.finish()?;
    tracing::debug!(
        layer,
        entries,
        size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "unpacked layer"
    );
    Ok(UnpackedLayer {
        diff_id,
        size,
        entries,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// The stream: blob -> decompressor -> SHA-256 -> tar framing.
// ---------------------------------------------------------------------------------------------------------------

const BLOCK: usize = 512;
/// archive/tar's limit on the data of a PAX or GNU long-name header (maxSpecialFileSize).
const MAX_META_SIZE: u64 = 1 << 20;
/// The longest entry or link name accepted: PATH_MAX.
const MAX_NAME_LEN: usize = 4096;
/// File data is copied through this buffer: large reads and writes, few system calls.
const DATA_BUFFER: usize = 1 << 20;
/// The buffer that headers are read from; file data bypasses it once it is drained.
const STREAM_BUFFER: usize = 256 << 10;

/// An error of the blob reader itself (storage, network), told apart from the decompressor's "corrupt stream".
#[derive(Debug)]
struct BlobError(io::Error);

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BlobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

struct BlobReader<R>(R);

impl<R: Read> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::other(BlobError(e))),
                Ok(n) => return Ok(n),
            }
        }
    }
}

enum Decoded<R: Read> {
    Plain(BlobReader<R>),
    Gzip(Box<MultiGzDecoder<BlobReader<R>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<BlobReader<R>>>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
        }
    }
}

/// Hashes every byte of the uncompressed stream on its way to the tar reader (the DiffID), and counts them against
/// the limits (an Error::Limit inside the io::Error when one is crossed).
struct DigestReader<'a, R> {
    inner: R,
    hasher: Sha256,
    len: u64,
    meter: Meter<'a>,
}

impl<R: Read> Read for DigestReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        self.meter.add(n as u64).map_err(io::Error::other)?;
        Ok(n)
    }
}

const REGULAR: u8 = b'0';
const REGULAR_OLD: u8 = 0;
const HARD_LINK: u8 = b'1';
const SYMLINK: u8 = b'2';
const CHAR_DEVICE: u8 = b'3';
const BLOCK_DEVICE: u8 = b'4';
const DIRECTORY: u8 = b'5';
const FIFO: u8 = b'6';
const CONTIGUOUS: u8 = b'7';
const PAX_LOCAL: u8 = b'x';
const PAX_GLOBAL: u8 = b'g';
const GNU_LONG_NAME: u8 = b'L';
const GNU_LONG_LINK: u8 = b'K';

/// archive/tar's isHeaderOnlyType: these entries have no data, whatever their size field says.
fn header_only(kind: u8) -> bool {
    matches!(
        kind,
        HARD_LINK | SYMLINK | CHAR_DEVICE | BLOCK_DEVICE | DIRECTORY | FIFO
    )
}

fn kind_name(kind: u8) -> String {
    let what = match kind {
        b'S' => "GNU sparse file",
        b'V' => "GNU volume header",
        b'M' => "GNU multi-volume continuation",
        b'D' => "GNU dump directory",
        b'N' => "GNU old long name",
        _ => "unknown",
    };
    format!("{what} ({:?})", kind as char)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Time {
    sec: i64,
    nsec: i64,
}

impl Time {
    fn spec(self) -> TimeSpec {
        TimeSpec::new(self.sec, self.nsec)
    }
}

/// One archive entry, with its PAX and GNU long-name headers applied.
#[derive(Debug)]
struct TarEntry {
    kind: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Time,
    dev_major: u64,
    dev_minor: u64,
    size: u64,
    /// From PAX `SCHILY.xattr.<name>` records.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// An entry name for messages: lossy UTF-8, cut at 256 bytes.
fn shown(name: &[u8]) -> String {
    if name.len() > 256 {
        format!("{}...", String::from_utf8_lossy(&name[..256]))
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}

/// archive/tar's parseOctal: octal text, padded with spaces or NULs on either side; empty is 0.
fn parse_octal(field: &[u8]) -> std::result::Result<i64, String> {
    let start = field.iter().position(|&b| b != b' ' && b != 0);
    let Some(start) = start else { return Ok(0) };
    let end = field
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .unwrap_or(start);
    let text = &field[start..=end];
    let mut value: i64 = 0;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return Err(format!("invalid octal number {:?}", shown(text)));
        }
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(|| format!("octal number {:?} out of range", shown(text)))?;
    }
    Ok(value)
}

/// archive/tar's parseNumeric: base-256 (two's complement) when the high bit of the first byte is set, else octal.
fn parse_numeric(field: &[u8]) -> std::result::Result<i64, String> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => {
            let inv = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &b) in field.iter().enumerate() {
                let mut b = b ^ inv;
                if i == 0 {
                    b &= 0x7f;
                }
                if x >> 56 != 0 {
                    return Err("base-256 number out of range".into());
                }
                x = (x << 8) | u64::from(b);
            }
            if x >> 63 != 0 {
                return Err("base-256 number out of range".into());
            }
            let v = x as i64;
            Ok(if inv == 0xff { !v } else { v })
        }
        _ => parse_octal(field),
    }
}

fn id_from(value: i64, what: &str) -> std::result::Result<u32, String> {
    // u32::MAX is chown's "leave unchanged", never an owner.
    u32::try_from(value)
        .ok()
        .filter(|&v| v != u32::MAX)
        .ok_or_else(|| format!("{what} {value} out of range"))
}

/// A header block's checksum: the unsigned or (as some old tars wrote it) signed byte sum, with the checksum
/// field counted as spaces.
fn checksum_ok(block: &[u8; BLOCK]) -> bool {
    let Ok(want) = parse_octal(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    want == unsigned || want == signed
}

/// One 512-byte header: V7, USTAR/PAX, STAR or GNU layout.
fn parse_header(block: &[u8; BLOCK]) -> std::result::Result<TarEntry, String> {
    if !checksum_ok(block) {
        return Err("invalid header checksum".into());
    }
    let magic = &block[257..263];
    let version = &block[263..265];
    let ustar = magic == b"ustar\0" && version == b"00";
    let star = ustar && &block[508..512] == b"tar\0";
    let gnu = magic == b"ustar " && version == b" \0";
    let mut name = trim_nul(&block[..100]).to_vec();
    let prefix = if star {
        trim_nul(&block[345..476])
    } else if ustar {
        trim_nul(&block[345..500])
    } else {
        &[][..]
    };
    if !prefix.is_empty() {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(&name);
        name = full;
    }
    let field = |range: std::ops::Range<usize>, what: &str| {
        parse_numeric(&block[range]).map_err(|e| format!("{what} field: {e}"))
    };
    let size = field(124..136, "size")?;
    let size = u64::try_from(size).map_err(|_| format!("negative size {size}"))?;
    let (dev_major, dev_minor) = if ustar || gnu {
        (field(329..337, "devmajor")?, field(337..345, "devminor")?)
    } else {
        (0, 0)
    };
    Ok(TarEntry {
        kind: block[156],
        name,
        link: trim_nul(&block[157..257]).to_vec(),
        mode: (field(100..108, "mode")? & 0o7777) as u32,
        uid: id_from(field(108..116, "uid")?, "uid")?,
        gid: id_from(field(116..124, "gid")?, "gid")?,
        mtime: Time {
            sec: field(136..148, "mtime")?,
            nsec: 0,
        },
        dev_major: u64::try_from(dev_major).map_err(|_| "negative device major".to_string())?,
        dev_minor: u64::try_from(dev_minor).map_err(|_| "negative device minor".to_string())?,
        size,
        xattrs: Vec::new(),
    })
}

/// One PAX record: key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// PAX extended header records, `<length> <key>=<value>\n`, walked by their length so that a value may hold any
/// byte, newlines included (POSIX pax "pax Extended Header").
fn pax_records(mut data: &[u8]) -> std::result::Result<Vec<PaxRecord<'_>>, String> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let digits = &data[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "PAX record length {:?} is not a number",
                shown(digits)
            ));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record length out of range")?;
        if len <= space + 1 || len > data.len() {
            return Err(format!("PAX record length {len} out of range"));
        }
        let (record, rest) = data.split_at(len);
        let body = record[space + 1..]
            .strip_suffix(b"\n")
            .ok_or("PAX record not ended by a newline")?;
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without '='")?;
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        if key.is_empty() || key.contains(&0) {
            return Err("PAX record with an empty key or a NUL in its key".into());
        }
        records.push((key, value));
        data = rest;
    }
    Ok(records)
}

fn pax_decimal(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A PAX time, `<seconds>[.<fraction>]`, possibly negative.
fn pax_time(value: &[u8]) -> Option<Time> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let sec: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nsec = 0i64;
    for i in 0..9 {
        nsec = nsec * 10 + frac.as_bytes().get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    if secs.starts_with('-') && nsec > 0 {
        Some(Time {
            sec: sec.checked_sub(1)?,
            nsec: 1_000_000_000 - nsec,
        })
    } else {
        Some(Time { sec, nsec })
    }
}

/// archive/tar's mergePAX: the records that matter to an unpacker; the others (atime, uname, comment...) are
/// ignored.
fn apply_pax(entry: &mut TarEntry, records: &[u8]) -> std::result::Result<(), String> {
    for (key, value) in pax_records(records)? {
        match key {
            b"path" | b"linkpath" => {
                if value.contains(&0) {
                    return Err("PAX path with a NUL byte".into());
                }
                if key == b"path" {
                    entry.name = value.to_vec();
                } else {
                    entry.link = value.to_vec();
                }
            }
            b"size" => {
                entry.size = pax_decimal(value)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| format!("invalid PAX size {:?}", shown(value)))?;
            }
            b"uid" | b"gid" => {
                let what = if key == b"uid" { "uid" } else { "gid" };
                let id = pax_decimal(value)
                    .ok_or_else(|| format!("invalid PAX {what} {:?}", shown(value)))
                    .and_then(|v| id_from(v, what))?;
                if key == b"uid" {
                    entry.uid = id;
                } else {
                    entry.gid = id;
                }
            }
            b"mtime" => {
                entry.mtime = pax_time(value)
                    .ok_or_else(|| format!("invalid PAX mtime {:?}", shown(value)))?;
            }
            _ if key.starts_with(b"SCHILY.xattr.") => {
                let name = &key[b"SCHILY.xattr.".len()..];
                if name.is_empty() {
                    return Err("PAX xattr record without a name".into());
                }
                match entry.xattrs.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.to_vec(),
                    None => entry.xattrs.push((name.to_vec(), value.to_vec())),
                }
            }
            _ if key.starts_with(b"GNU.sparse.") => {
                return Err("GNU sparse files are not supported".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reads the tar framing of the uncompressed stream, as Go's archive/tar Reader does.
struct TarReader<'a, R: Read> {
    layer: &'a str,
    compression: Compression,
    src: BufReader<DigestReader<'a, Decoded<R>>>,
    /// Bytes of the uncompressed stream consumed so far.
    offset: u64,
    /// Unread data of the current entry, and the padding after it.
    data_left: u64,
    pad_left: u64,
    /// The name of the last entry returned, for messages about what follows it.
    last: Vec<u8>,
}

impl<R: Read> TarReader<'_, R> {
    fn fail(&self, at: u64, reason: impl fmt::Display) -> Error {
        let after = if self.last.is_empty() {
            String::new()
        } else {
            format!(", after entry {:?}", shown(&self.last))
        };
        Error::LayerFormat {
            layer: self.layer.to_string(),
            reason: format!("{reason} (at byte {at} of the tar stream{after})"),
        }
    }

    fn read_error(&self, e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            // A limit crossed (limits.rs): that is the error, not the stream.
            if let Some(Ok(limit)) = e.into_inner().map(|inner| inner.downcast::<Error>()) {
                return *limit;
            }
            return self.fail(self.offset, "reading the stream failed");
        }
        if e.get_ref().is_some_and(|inner| inner.is::<BlobError>()) {
            let source = match e.into_inner().map(|inner| inner.downcast::<BlobError>()) {
                Some(Ok(blob)) => blob.0,
                Some(Err(other)) => io::Error::other(other),
                None => io::Error::other("unknown error"),
            };
            return io("reading layer blob", self.layer)(source);
        }
        self.fail(
            self.offset,
            format_args!("decoding the {} stream: {e}", self.compression.name()),
        )
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.src.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e)),
            }
        }
    }

    /// Fills `buf`; Ok(false) when the stream ends before its first byte.
    fn read_full(&mut self, buf: &mut [u8], what: &str) -> Result<bool> {
        let start = self.offset;
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_some(&mut buf[done..])?;
            if n == 0 {
                if done == 0 {
                    return Ok(false);
                }
                return Err(self.fail(start, format_args!("archive truncated in {what}")));
            }
            done += n;
        }
        Ok(true)
    }

    fn skip(&mut self, mut amount: u64) -> Result<()> {
        let mut scratch = [0u8; 8192];
        while amount > 0 {
            let want = amount.min(scratch.len() as u64) as usize;
            let n = self.read_some(&mut scratch[..want])?;
            if n == 0 {
                return Err(self.fail(self.offset, "archive truncated in the data of an entry"));
            }
            amount -= n as u64;
        }
        Ok(())
    }

    /// The data of a PAX or GNU long-name header.
    fn read_meta(&mut self, header: &TarEntry, at: u64) -> Result<Vec<u8>> {
        if header.size > MAX_META_SIZE {
            return Err(self.fail(
                at,
                format_args!(
                    "extended header of {} bytes (limit {MAX_META_SIZE})",
                    header.size
                ),
            ));
        }
        let mut data = vec![0u8; header.size as usize];
        if !self.read_full(&mut data, "an extended header")? && !data.is_empty() {
            return Err(self.fail(at, "archive truncated in an extended header"));
        }
        self.skip(padding(header.size))?;
        Ok(data)
    }

    fn next_entry(&mut self) -> Result<Option<TarEntry>> {
        self.skip(self.data_left + self.pad_left)?;
        self.data_left = 0;
        self.pad_left = 0;
        let mut pax: Option<Vec<u8>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut block = [0u8; BLOCK];
        loop {
            let at = self.offset;
            let pending = pax.is_some() || long_name.is_some() || long_link.is_some();
            let dangling =
                "the archive ends after an extended header, without the entry it describes";
            if !self.read_full(&mut block, "a header")? {
                // EOF on a block boundary ends the archive, as in archive/tar.
                return if pending {
                    Err(self.fail(at, dangling))
                } else {
                    Ok(None)
                };
            }
            if block.iter().all(|&b| b == 0) {
                // The end-of-archive marker: two zero blocks (or one, then EOF).
                let second = self.offset;
                if self.read_full(&mut block, "the end-of-archive marker")?
                    && block.iter().any(|&b| b != 0)
                {
                    return Err(self.fail(second, "a header follows a single zero block"));
                }
                return if pending {
                    Err(self.fail(at, dangling))
                } else {
                    Ok(None)
                };
            }
            let header = parse_header(&block).map_err(|reason| self.fail(at, reason))?;
            match header.kind {
                PAX_LOCAL => pax = Some(self.read_meta(&header, at)?),
                GNU_LONG_NAME => long_name = Some(trim_nul(&self.read_meta(&header, at)?).to_vec()),
                GNU_LONG_LINK => long_link = Some(trim_nul(&self.read_meta(&header, at)?).to_vec()),
                PAX_GLOBAL => {
                    // archive/tar hands a global header to its caller as an entry of its own, which docker and
                    // containerd then ignore; what came before it describes nothing.
                    self.read_meta(&header, at)?;
                    tracing::debug!(
                        layer = self.layer,
                        offset = at,
                        "ignoring a PAX global header"
                    );
                    pax = None;
                    long_name = None;
                    long_link = None;
                }
                _ => {
                    let mut entry = header;
                    if let Some(records) = &pax {
                        apply_pax(&mut entry, records).map_err(|reason| {
                            self.fail(at, format_args!("entry {:?}: {reason}", shown(&entry.name)))
                        })?;
                    }
                    if let Some(name) = long_name {
                        entry.name = name;
                    }
                    if let Some(link) = long_link {
                        entry.link = link;
                    }
                    if entry.kind == REGULAR_OLD {
                        entry.kind = if entry.name.ends_with(b"/") {
                            DIRECTORY
                        } else {
                            REGULAR
                        };
                    }
                    let data = if header_only(entry.kind) {
                        0
                    } else {
                        entry.size
                    };
                    self.data_left = data;
                    self.pad_left = padding(data);
                    self.last.clone_from(&entry.name);
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// Reads the current entry's data; Ok(0) at its end.
    fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.data_left == 0 {
            return Ok(0);
        }
        let want = self.data_left.min(buf.len() as u64) as usize;
        let n = self.read_some(&mut buf[..want])?;
        if n == 0 {
            return Err(self.fail(
                self.offset,
                format_args!(
                    "archive truncated in the data of entry {:?}",
                    shown(&self.last)
                ),
            ));
        }
        self.data_left -= n as u64;
        Ok(n)
    }

    /// Reads the stream to its end (whatever follows the end-of-archive marker is part of the DiffID too) and
    /// returns the DiffID and the uncompressed size.
    fn finish(mut self) -> Result<(String, u64)> {
        let mut scratch = vec![0u8; 64 << 10];
        while self.read_some(&mut scratch)? > 0 {}
        let digest = self.src.into_inner();
        digest.meter.commit();
        Ok((format!("sha256:{:x}", digest.hasher.finalize()), digest.len))
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

// ---------------------------------------------------------------------------------------------------------------
// The layer directory: every change resolved beneath it.
// ---------------------------------------------------------------------------------------------------------------

fn resolve_beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

/// openat2(2) of `path` beneath `dirfd`: no `..` out of it, no symlink, no magic link, no mount crossing.
fn open_beneath(dirfd: RawFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve_beneath());
    let path = if path.is_empty() { &b"."[..] } else { path };
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dirfd, path, how) {
            // SAFETY: openat2 has just returned this descriptor; nothing else owns it.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            // EAGAIN: a concurrent rename somewhere on the host made the kernel unsure; try again.
            Err(Errno::EAGAIN | Errno::EINTR) if tries < 16 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

fn openat(dirfd: RawFd, name: &[u8], flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dirfd),
        name,
        flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        mode,
    )?;
    // SAFETY: openat has just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstatat(dirfd: RawFd, name: &[u8]) -> nix::Result<FileStat> {
    nix::sys::stat::fstatat(Some(dirfd), name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn mode_bits(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// Splits an entry or link name into its components, dropping empty and `.` ones. Refuses (as hostile) an empty
/// or absolute name, a `..` component, a NUL byte, or a name longer than PATH_MAX.
fn split_name(name: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("name longer than PATH_MAX");
    }
    if name[0] == b'/' {
        return Err("absolute name");
    }
    if name.contains(&0) {
        return Err("NUL byte in name");
    }
    let mut comps = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            comp => comps.push(comp),
        }
    }
    Ok(comps)
}

/// The xattrs that drive overlayfs itself; a layer may not carry them (it would redirect or hide other layers).
fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

pub(crate) const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// An overlayfs whiteout: a 0/0 character device.
fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Whether the open directory `fd` (not O_PATH) is marked opaque.
fn marked_opaque(fd: RawFd) -> bool {
    matches!(Node::Fd(fd).get_xattr(OPAQUE_XATTR), Ok(Some(v)) if v.as_slice() == b"y")
}

/// Opens an unpacked layer directory (a lower one) for lookups beneath it.
fn open_layer_dir(dir: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| io("opening lower layer directory", dir)(err.into()))?;
    // SAFETY: open has just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where to set or read xattrs: an open file or directory, or (for symlinks, devices and fifos, which must not be
/// opened) `/proc/self/fd/<parent>/<name>` with the l*xattr calls, which do not follow the last component.
enum Node {
    Fd(RawFd),
    Path(CString),
}

impl Node {
    fn at(holder: RawFd, name: &[u8]) -> nix::Result<Node> {
        let mut path = format!("/proc/self/fd/{holder}/").into_bytes();
        path.extend_from_slice(name);
        CString::new(path)
            .map(Node::Path)
            .map_err(|_| Errno::EINVAL)
    }

    fn set_xattr(&self, name: &CStr, value: &[u8]) -> nix::Result<()> {
        let (value_ptr, len) = (value.as_ptr().cast(), value.len());
        // SAFETY: name is NUL-terminated, value is a live buffer of len bytes, fd/path are valid for the call.
        let r = unsafe {
            match self {
                Node::Fd(fd) => libc::fsetxattr(*fd, name.as_ptr(), value_ptr, len, 0),
                Node::Path(p) => libc::lsetxattr(p.as_ptr(), name.as_ptr(), value_ptr, len, 0),
            }
        };
        Errno::result(r).map(drop)
    }

    /// The value of xattr `name`, or None when absent.
    fn get_xattr(&self, name: &CStr) -> nix::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 256];
        loop {
            let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
            // SAFETY: buf is a live, writable buffer of len bytes.
            let r = unsafe {
                match self {
                    Node::Fd(fd) => libc::fgetxattr(*fd, name.as_ptr(), ptr, len),
                    Node::Path(p) => libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr, len),
                }
            };
            match Errno::result(r) {
                Ok(n) => {
                    buf.truncate(n as usize);
                    return Ok(Some(buf));
                }
                Err(Errno::ENODATA) => return Ok(None),
                Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(e),
            }
        }
    }

    fn list_xattrs(&self) -> nix::Result<Vec<CString>> {
        let mut buf = vec![0u8; 1024];
        loop {
            let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
            // SAFETY: buf is a live, writable buffer of len bytes.
            let r = unsafe {
                match self {
                    Node::Fd(fd) => libc::flistxattr(*fd, ptr, len),
                    Node::Path(p) => libc::llistxattr(p.as_ptr(), ptr, len),
                }
            };
            match Errno::result(r) {
                Ok(n) => {
                    return Ok(buf[..n as usize]
                        .split(|&b| b == 0)
                        .filter(|n| !n.is_empty())
                        .filter_map(|n| CString::new(n).ok())
                        .collect());
                }
                Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(e),
            }
        }
    }
}

/// chmod of `name` in `holder` without following it: fchmodat2(2) with AT_SYMLINK_NOFOLLOW (Linux 6.6), else
/// through an O_PATH descriptor of the node itself.
fn chmod_nofollow(holder: RawFd, name: &[u8], mode: u32) -> nix::Result<()> {
    let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: plain system call with a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            holder,
            cname.as_ptr(),
            mode & 0o7777,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match Errno::result(r) {
        Err(Errno::ENOSYS) => {
            let node = openat(
                holder,
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )?;
            let path = format!("/proc/self/fd/{}", node.as_raw_fd());
            nix::sys::stat::fchmodat(
                None,
                path.as_str(),
                mode_bits(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        }
        r => r.map(drop),
    }
}

/// Removes `name` from `holder`, a directory with everything in it, never following a symlink.
fn remove_tree(holder: RawFd, name: &[u8]) -> io::Result<()> {
    match nix::unistd::unlinkat(Some(holder), name, UnlinkatFlags::NoRemoveDir) {
        Err(Errno::EISDIR) => {}
        r => return Ok(r?),
    }
    let dir = open_beneath(holder, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    for child in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        remove_tree(dir.as_raw_fd(), child?.file_name().as_bytes())?;
    }
    Ok(nix::unistd::unlinkat(
        Some(holder),
        name,
        UnlinkatFlags::RemoveDir,
    )?)
}

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

struct LayerWriter<'a> {
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
    fn open(layer: &'a str, dir: &'a Path, lowers: &'a [PathBuf]) -> Result<Self> {
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

    fn hostile(&self, e: &TarEntry, reason: impl Into<String>) -> Error {
        Error::HostileLayer {
            layer: self.layer.to_string(),
            entry: shown(&e.name),
            reason: reason.into(),
        }
    }

    fn malformed(&self, e: &TarEntry, reason: impl fmt::Display) -> Error {
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
    fn resolve_error(&self, e: &TarEntry, path: &[u8], err: Errno) -> Error {
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

    fn apply<R: Read>(&mut self, e: &TarEntry, tar: &mut TarReader<'_, R>) -> Result<()> {
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
    fn parent_dir(&mut self, e: &TarEntry, parent: &[&[u8]]) -> Result<Rc<OwnedFd>> {
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
    fn make_dirs(&mut self, e: &TarEntry, comps: &[&[u8]]) -> Result<OwnedFd> {
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
    fn make_dir(
        &mut self,
        e: &TarEntry,
        at: RawFd,
        comps: &[&[u8]],
        opaque: bool,
    ) -> Result<OwnedFd> {
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
    fn lower_dir(&self, e: &TarEntry, comps: &[&[u8]]) -> Result<Option<OwnedFd>> {
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
    fn set_metadata(&self, e: &TarEntry, node: &Node, path: &[u8], is_dir: bool) -> Result<()> {
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
    fn set_metadata_at(&self, e: &TarEntry, holder: RawFd, base: &[u8], path: &[u8]) -> Result<()> {
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
    fn set_xattrs(&self, e: &TarEntry, node: &Node, path: &[u8], special: bool) -> Result<()> {
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
        e: &TarEntry,
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
    fn directory(
        &mut self,
        e: &TarEntry,
        parent: &[&[u8]],
        base: &[u8],
        path: &[u8],
    ) -> Result<()> {
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

    fn symlink(&mut self, e: &TarEntry, parent: &[&[u8]], base: &[u8], path: &[u8]) -> Result<()> {
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
        e: &TarEntry,
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
    fn whiteout(&mut self, e: &TarEntry, parent: &[&[u8]], hidden: &[u8]) -> Result<()> {
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
    fn opaque(&mut self, e: &TarEntry, dir: &[&[u8]]) -> Result<()> {
        let path = join(dir);
        let fd = self.make_dirs(e, dir)?;
        Node::Fd(fd.as_raw_fd())
            .set_xattr(OPAQUE_XATTR, b"y")
            .map_err(|err| self.sys("marking opaque", &path, err))
    }

    /// A hard link to a file of this layer, or of a lower one: then the file is first copied up into this layer
    /// (content, owner, mode, xattrs, times), as overlayfs itself would, and linked there.
    fn hard_link(&mut self, e: &TarEntry, comps: &[&[u8]], path: &[u8]) -> Result<()> {
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

    fn link_not_found(&self, e: &TarEntry) -> Error {
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
    fn lookup(&self, e: &TarEntry, root: RawFd, comps: &[&[u8]], lower: bool) -> Result<Lookup> {
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
        e: &TarEntry,
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
    fn finish(self) -> Result<()> {
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
    //! Each test builds layers with the tar crate (raw header bytes where tar's own checks would refuse a hostile
    //! name), unpacks them under a temporary directory beside a sentinel file, and looks at the result as a user
    //! would. The clauses cited are from the OCI image-spec, layer.md.

    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::{EntryType, Header};

    const LAYER: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const SENTINEL: &[u8] = b"sentinel: must never change";

    /// tmp/layer (the directory unpacked into) and tmp/sentinel.
    struct Fixture {
        tmp: tempfile::TempDir,
        dir: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("layer");
            fs::create_dir(&dir).unwrap();
            fs::write(tmp.path().join("sentinel"), SENTINEL).unwrap();
            Fixture { tmp, dir }
        }

        fn unpack(&self, tar: &[u8]) -> Result<UnpackedLayer> {
            unpack_layer(LAYER, tar, Compression::None, &self.dir, &[])
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.join(name)
        }

        /// Nothing was written beside `layer`: the sentinel is unchanged and nothing new appeared.
        fn assert_contained(&self) {
            let names: BTreeSet<String> = fs::read_dir(self.tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                names,
                BTreeSet::from(["layer".to_string(), "sentinel".to_string()])
            );
            assert_eq!(
                fs::read(self.tmp.path().join("sentinel")).unwrap(),
                SENTINEL
            );
        }
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_500_000_000);
        h.set_size(size);
        h
    }

    /// Appends entries to an in-memory archive.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Layer {
            Layer(tar::Builder::new(Vec::new()))
        }

        fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
            let mut h = header(EntryType::Regular, mode, data.len() as u64);
            self.0.append_data(&mut h, name, data).unwrap();
            self
        }

        fn file_owned(
            &mut self,
            name: &str,
            data: &[u8],
            mode: u32,
            uid: u64,
            gid: u64,
            mtime: u64,
        ) -> &mut Self {
            let mut h = header(EntryType::Regular, mode, data.len() as u64);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(mtime);
            self.0.append_data(&mut h, name, data).unwrap();
            self
        }

        fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
            let mut h = header(EntryType::Directory, mode, 0);
            self.0.append_data(&mut h, name, io::empty()).unwrap();
            self
        }

        fn dir_owned(
            &mut self,
            name: &str,
            mode: u32,
            uid: u64,
            gid: u64,
            mtime: u64,
        ) -> &mut Self {
            let mut h = header(EntryType::Directory, mode, 0);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(mtime);
            self.0.append_data(&mut h, name, io::empty()).unwrap();
            self
        }

        fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            let mut h = header(EntryType::Symlink, 0o777, 0);
            self.0.append_link(&mut h, name, target).unwrap();
            self
        }

        fn hard_link(&mut self, name: &str, target: &str) -> &mut Self {
            let mut h = header(EntryType::Link, 0o644, 0);
            self.0.append_link(&mut h, name, target).unwrap();
            self
        }

        fn device(
            &mut self,
            kind: EntryType,
            name: &str,
            mode: u32,
            major: u32,
            minor: u32,
        ) -> &mut Self {
            let mut h = header(kind, mode, 0);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            self.0.append_data(&mut h, name, io::empty()).unwrap();
            self
        }

        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            self.0
                .append_pax_extensions(records.iter().copied())
                .unwrap();
            self
        }

        /// An entry whose name (and link name) bytes go straight into the header, as a hostile archive would
        /// write them: tar's own set_path refuses `..` and absolute names.
        fn raw(&mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> &mut Self {
            let mut h = header(kind, 0o644, data.len() as u64);
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name);
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn bytes(&mut self, raw: &[u8]) -> &mut Self {
            self.0.get_mut().extend_from_slice(raw);
            self
        }

        fn finish(&mut self) -> Vec<u8> {
            let builder = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
            builder.into_inner().unwrap()
        }
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        match Node::Path(p).get_xattr(&CString::new(name).unwrap()) {
            Err(Errno::ENOENT) => None,
            r => r.unwrap(),
        }
    }

    fn sha256(data: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(data))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn assert_hostile(result: Result<UnpackedLayer>, entry: &str) {
        match result {
            Err(Error::HostileLayer {
                layer,
                entry: e,
                reason,
            }) => {
                assert_eq!(layer, LAYER);
                assert!(
                    e.contains(entry),
                    "entry {e:?} should name {entry:?} ({reason})"
                );
            }
            other => panic!("expected HostileLayer for {entry:?}, got {other:?}"),
        }
    }

    fn assert_format(result: Result<UnpackedLayer>, mention: &str) -> String {
        match result {
            Err(err @ Error::LayerFormat { .. }) => {
                let text = err.to_string();
                assert!(text.contains(LAYER), "{text}");
                assert!(
                    text.contains(mention),
                    "{text:?} should mention {mention:?}"
                );
                text
            }
            other => panic!("expected LayerFormat mentioning {mention:?}, got {other:?}"),
        }
    }

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

    /// config.md "Layer DiffID": the digest of the uncompressed stream, whatever follows the end-of-archive
    /// marker included, for each compression the media types name.
    #[test]
    fn diff_id_covers_the_whole_uncompressed_stream_for_every_compression() {
        let mut tar = Layer::new().file("f", b"data", 0o644).finish();
        tar.extend_from_slice(&[0u8; 4096]); // record padding, as some tar writers add
        let want = sha256(&tar);
        for (compression, blob) in [
            (Compression::None, tar.clone()),
            (Compression::Gzip, gzip(&tar)),
            (Compression::Zstd, zstd::encode_all(&tar[..], 3).unwrap()),
        ] {
            let fx = Fixture::new();
            let unpacked = unpack_layer(LAYER, &blob[..], compression, &fx.dir, &[]).unwrap();
            assert_eq!(unpacked.diff_id, want, "{compression:?}");
            assert_eq!(unpacked.size, tar.len() as u64, "{compression:?}");
            assert_eq!(fs::read(fx.path("f")).unwrap(), b"data");
        }
    }

    #[test]
    fn media_types_name_their_compression() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Compression::None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
        ];
        for (media_type, want) in cases {
            assert_eq!(
                Compression::from_media_type(LAYER, media_type).unwrap(),
                want
            );
        }
        let err = Compression::from_media_type(LAYER, "application/vnd.oci.image.config.v1+json")
            .unwrap_err();
        assert!(matches!(err, Error::LayerFormat { .. }));
        assert!(
            err.to_string()
                .contains("application/vnd.oci.image.config.v1+json")
        );
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

    /// layer.md "Hardlinks" and "Changeset over existing files", read against docs/ARCHITECTURE.md: extraction never follows a
    /// symlink and never writes outside the layer directory. Each hostile entry is refused, naming the entry, and
    /// nothing appears outside `layer`.
    #[test]
    fn hostile_entries_are_refused_and_nothing_escapes() {
        type Build = fn(&mut Layer);
        let cases: &[(&str, &str, bool, Build)] = &[
            ("dot-dot name", "../polis-escape-dotdot", true, |l| {
                l.raw(EntryType::Regular, b"../polis-escape-dotdot", b"", b"x");
            }),
            ("dot-dot inside", "a/../../polis-escape-mid", true, |l| {
                l.raw(EntryType::Regular, b"a/../../polis-escape-mid", b"", b"x");
            }),
            ("absolute name", "/etc/polis-unpack-test-abs", true, |l| {
                l.raw(EntryType::Regular, b"/etc/polis-unpack-test-abs", b"", b"x");
            }),
            ("empty name", "", true, |l| {
                l.raw(EntryType::Regular, b"", b"", b"x");
            }),
            (
                "through an absolute symlink",
                "evil/polis-unpack-test-passwd",
                true,
                |l| {
                    l.symlink("evil", "/etc")
                        .file("evil/polis-unpack-test-passwd", b"x", 0o644);
                },
            ),
            (
                "directory through a symlink",
                "evil/polis-unpack-test-dir",
                true,
                |l| {
                    l.symlink("evil", "/etc")
                        .dir("evil/polis-unpack-test-dir", 0o755);
                },
            ),
            (
                "through a symlink to ..",
                "evil/polis-escape-up",
                true,
                |l| {
                    l.symlink("evil", "..")
                        .file("evil/polis-escape-up", b"x", 0o644);
                },
            ),
            ("through a symlink inside", "evil/x", true, |l| {
                l.dir("sub", 0o755)
                    .symlink("evil", "sub")
                    .file("evil/x", b"x", 0o644);
            }),
            (
                "device through a symlink",
                "evil/polis-unpack-test-null",
                true,
                |l| {
                    l.symlink("evil", "/etc").device(
                        EntryType::Char,
                        "evil/polis-unpack-test-null",
                        0o666,
                        1,
                        3,
                    );
                },
            ),
            (
                "whiteout through a symlink",
                "evil/.wh.polis-unpack-test-wh",
                true,
                |l| {
                    l.symlink("evil", "/etc")
                        .file("evil/.wh.polis-unpack-test-wh", b"", 0o644);
                },
            ),
            (
                "opaque marker in a symlink",
                "evil/.wh..wh..opq",
                true,
                |l| {
                    l.symlink("evil", "/tmp")
                        .file("evil/.wh..wh..opq", b"", 0o644);
                },
            ),
            (
                "opaque marker through a symlink",
                "evil/sub/.wh..wh..opq",
                true,
                |l| {
                    l.symlink("evil", "/tmp")
                        .file("evil/sub/.wh..wh..opq", b"", 0o644);
                },
            ),
            ("hard link to ..", "hl", true, |l| {
                l.raw(EntryType::Link, b"hl", b"../sentinel", b"");
            }),
            ("hard link to an absolute path", "hl", true, |l| {
                l.raw(EntryType::Link, b"hl", b"/etc/passwd", b"");
            }),
            ("hard link through a symlink", "hl", true, |l| {
                l.symlink("evil", "/etc")
                    .raw(EntryType::Link, b"hl", b"evil/passwd", b"");
            }),
            ("bare whiteout", ".wh.", true, |l| {
                l.file(".wh.", b"", 0o644);
            }),
            ("whiteout of ..", "d/.wh...", true, |l| {
                l.dir("d", 0o755)
                    .raw(EntryType::Regular, b"d/.wh...", b"", b"");
            }),
            ("overlayfs xattr", "redirected", true, |l| {
                l.pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
                    .dir("redirected", 0o755);
            }),
            ("root replaced by a file", "./", true, |l| {
                l.raw(EntryType::Regular, b"./", b"", b"x");
            }),
            ("unsupported type", "volume", false, |l| {
                l.raw(EntryType::new(b'V'), b"volume", b"", b"");
            }),
        ];
        let passwd_links = fs::metadata("/etc/passwd").unwrap().nlink();
        for (what, entry, hostile, build) in cases {
            let fx = Fixture::new();
            let mut layer = Layer::new();
            build(&mut layer);
            let result = fx.unpack(&layer.finish());
            if *hostile {
                assert_hostile(result, entry);
            } else {
                assert_format(result, entry);
            }
            fx.assert_contained();
            assert!(!fx.path("hl").exists(), "{what}");
            assert!(!fx.path("sub/x").exists(), "{what}");
            for name in ["abs", "passwd", "dir", "null", "wh"] {
                let p = PathBuf::from(format!("/etc/polis-unpack-test-{name}"));
                assert!(
                    fs::symlink_metadata(&p).is_err(),
                    "{what}: {} exists",
                    p.display()
                );
            }
            assert!(
                xattr(Path::new("/tmp"), "trusted.overlay.opaque").is_none(),
                "{what}"
            );
            assert!(
                xattr(Path::new("/tmp/sub"), "trusted.overlay.opaque").is_none(),
                "{what}"
            );
        }
        assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);
    }

    /// Malformed archives are LayerFormat errors that name the entry: data cut short, a header whose size is
    /// smaller than the data after it (the next "header" is data: bad checksum), corrupt compression.
    #[test]
    fn malformed_archives_are_refused() {
        let big = vec![7u8; 100_000];
        let tar = Layer::new()
            .file("first", b"ok", 0o644)
            .file("cut", &big, 0o644)
            .finish();
        let fx = Fixture::new();
        assert_format(fx.unpack(&tar[..60_000]), "\"cut\"");

        let fx = Fixture::new();
        let text = assert_format(fx.unpack(&tar[..1100]), "\"first\""); // cut inside the second header
        assert!(text.contains("truncated"), "{text}");
        fx.assert_contained();

        let mut h = header(EntryType::Regular, 0o644, 100);
        h.set_path("short").unwrap();
        h.set_cksum();
        let mut layer = Layer::new();
        layer.0.append(&h, &[b'a'; 100][..]).unwrap();
        layer.bytes(&[b'z'; 1024]); // the rest of the data the header did not count
        let tar = layer.file("after", b"x", 0o644).finish();
        let fx = Fixture::new();
        let text = assert_format(fx.unpack(&tar), "\"short\"");
        assert!(text.contains("checksum"), "{text}");

        let good = Layer::new().file("f", &big, 0o644).finish();
        let mut gz = gzip(&good);
        let mid = gz.len() / 2;
        for b in &mut gz[mid..mid + 16] {
            *b ^= 0x55;
        }
        let fx = Fixture::new();
        assert_format(
            unpack_layer(LAYER, &gz[..], Compression::Gzip, &fx.dir, &[]),
            "gzip",
        );
        let gz = gzip(&good);
        let fx = Fixture::new();
        assert_format(
            unpack_layer(LAYER, &gz[..gz.len() - 40], Compression::Gzip, &fx.dir, &[]),
            "gzip",
        );
        let fx = Fixture::new();
        let not_zstd = b"this is not a zstd frame at all".repeat(10);
        assert_format(
            unpack_layer(LAYER, &not_zstd[..], Compression::Zstd, &fx.dir, &[]),
            "zstd",
        );
    }

    /// A blob reader's own failure (disk, network) is an I/O error, not a malformed layer.
    #[test]
    fn blob_read_errors_are_io_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "peer went away",
                ))
            }
        }
        let fx = Fixture::new();
        let err = unpack_layer(LAYER, Failing, Compression::Gzip, &fx.dir, &[]).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("peer went away"));
    }

    /// PAX records are framed by their length (POSIX pax "Extended Header"), as Go's archive/tar reads them: a
    /// binary xattr holding newlines (a file capability may) is kept byte for byte, and a newline in a value
    /// cannot smuggle in a `linkpath` record. Header-only entries (symlinks, directories...) have no data, whatever
    /// their size field says, as archive/tar reads them too.
    #[test]
    fn pax_records_and_header_only_entries_are_framed_like_archive_tar() {
        let fx = Fixture::new();
        let binary = b"\x01\x00\x00\x02\x02\x00\x0a\x00\n22 linkpath=/etc/evil\n";
        let smuggler = b"a\n30 linkpath=/etc/polis-evil\n";
        let mut layer = Layer::new();
        layer
            .pax(&[("SCHILY.xattr.user.caps", &binary[..])])
            .file("caps", b"x", 0o644)
            .pax(&[("SCHILY.xattr.user.note", &smuggler[..])])
            .symlink("lnk", "safe-target")
            .pax(&[("path", b"pax/long/name"), ("mtime", b"1234567890.5")])
            .file("short", b"pax", 0o644);
        let mut h = header(EntryType::Symlink, 0o777, 512);
        h.set_path("sized-symlink").unwrap();
        h.set_link_name("t").unwrap();
        h.set_cksum();
        layer.bytes(h.as_bytes()); // no data block follows: the next header comes straight after
        let tar = layer.file("after-sized", b"seen", 0o644).finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(
            xattr(&fx.path("caps"), "user.caps").as_deref(),
            Some(&binary[..])
        );
        assert_eq!(
            fs::read_link(fx.path("lnk")).unwrap(),
            Path::new("safe-target")
        );
        assert_eq!(fs::read(fx.path("pax/long/name")).unwrap(), b"pax");
        let t = fs::metadata(fx.path("pax/long/name")).unwrap();
        assert_eq!((t.mtime(), t.mtime_nsec()), (1_234_567_890, 500_000_000));
        assert_eq!(
            fs::read_link(fx.path("sized-symlink")).unwrap(),
            Path::new("t")
        );
        assert_eq!(fs::read(fx.path("after-sized")).unwrap(), b"seen");
        fx.assert_contained();
    }

    /// Unmounts (lazily) when dropped, whatever the test's outcome.
    struct Mounted(PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
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

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn is_opaque(path: &Path) -> bool {
        xattr(path, "trusted.overlay.opaque").as_deref() == Some(&b"y"[..])
    }

    /// Mounts `layers` (top first) read-only as overlayfs lower directories.
    fn mount_merged(layers: &[&Path]) -> (tempfile::TempDir, Mounted) {
        let merged = tempfile::tempdir().unwrap();
        let lowers: Vec<String> = layers.iter().map(|p| p.display().to_string()).collect();
        let options = format!("lowerdir={}", lowers.join(":"));
        nix::mount::mount(
            Some("overlay"),
            merged.path(),
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .unwrap();
        let mounted = Mounted(merged.path().to_path_buf());
        (merged, mounted)
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

    /// Throughput of one ~100 MB incompressible file, uncompressed, and of 20,000 small files (run with
    /// `--ignored --nocapture`). SHA-256 alone is timed too: it bounds the large case.
    #[test]
    #[ignore]
    fn throughput_of_a_large_uncompressed_layer() {
        let mut data = vec![0u8; 100 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in data.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let tar = Layer::new().file("big", &data, 0o644).finish();
        {
            let t = Instant::now();
            let d = Sha256::digest(&tar);
            println!(
                "SHA-256 alone: {:.0} ms ({:x}...)",
                t.elapsed().as_secs_f64() * 1000.0,
                d[0]
            );
        }
        for round in 0..3 {
            let fx = Fixture::new();
            let started = Instant::now();
            let unpacked = fx.unpack(&tar).unwrap();
            let elapsed = started.elapsed();
            assert_eq!(unpacked.size, tar.len() as u64);
            println!(
                "round {round}: {} MB in {:.0} ms = {:.0} MB/s",
                tar.len() >> 20,
                elapsed.as_secs_f64() * 1000.0,
                tar.len() as f64 / 1e6 / elapsed.as_secs_f64()
            );
        }
        let mut layer = Layer::new();
        for i in 0..20_000 {
            layer.file(&format!("d{}/f{i}", i % 100), &data[..1024], 0o644);
        }
        let tar = layer.finish();
        let fx = Fixture::new();
        let started = Instant::now();
        assert_eq!(fx.unpack(&tar).unwrap().entries, 20_000);
        println!(
            "20000 files of 1 KiB: {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
}
