//! The tar framing of a layer's uncompressed stream, read as Go's archive/tar reads it (see the header of
//! unpack/mod.rs for why not `tar::Archive`): header blocks (V7, USTAR, STAR, GNU), PAX extended headers walked by
//! their record lengths, GNU long names and link names, and the data and padding of each entry.

use std::fmt;
use std::io::{self, BufReader, Read};

use nix::sys::time::TimeSpec;

use super::decompress::{BlobError, Compression, Decoded, DigestReader};
use crate::error::{Error, Result, io};

const BLOCK: usize = 512;
/// archive/tar's limit on the data of a PAX or GNU long-name header (maxSpecialFileSize).
const MAX_META_SIZE: u64 = 1 << 20;
/// The buffer that headers are read from; file data bypasses it once it is drained.
const STREAM_BUFFER: usize = 256 << 10;

// Entry types: the typeflag byte of a header.
pub(super) const REGULAR: u8 = b'0';
const REGULAR_OLD: u8 = 0;
pub(super) const HARD_LINK: u8 = b'1';
pub(super) const SYMLINK: u8 = b'2';
pub(super) const CHAR_DEVICE: u8 = b'3';
pub(super) const BLOCK_DEVICE: u8 = b'4';
pub(super) const DIRECTORY: u8 = b'5';
pub(super) const FIFO: u8 = b'6';
pub(super) const CONTIGUOUS: u8 = b'7';
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

pub(super) fn kind_name(kind: u8) -> String {
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
pub(super) struct Time {
    pub(super) sec: i64,
    pub(super) nsec: i64,
}

impl Time {
    pub(super) fn spec(self) -> TimeSpec {
        TimeSpec::new(self.sec, self.nsec)
    }
}

/// One archive entry, with its PAX and GNU long-name headers applied.
#[derive(Debug)]
pub(super) struct TarEntry {
    pub(super) kind: u8,
    pub(super) name: Vec<u8>,
    pub(super) link: Vec<u8>,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Time,
    pub(super) dev_major: u64,
    pub(super) dev_minor: u64,
    pub(super) size: u64,
    /// From PAX `SCHILY.xattr.<name>` records.
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// An entry name for messages: lossy UTF-8, cut at 256 bytes.
pub(super) fn shown(name: &[u8]) -> String {
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
pub(super) struct TarReader<'a, R: Read> {
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

impl<'a, R: Read> TarReader<'a, R> {
    /// Reads `stream`, the uncompressed stream of `layer` (compressed as `compression`: both name it in messages).
    pub(super) fn new(
        layer: &'a str,
        compression: Compression,
        stream: DigestReader<'a, Decoded<R>>,
    ) -> Self {
        TarReader {
            layer,
            compression,
            src: BufReader::with_capacity(STREAM_BUFFER, stream),
            offset: 0,
            data_left: 0,
            pad_left: 0,
            last: Vec::new(),
        }
    }

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

    pub(super) fn next_entry(&mut self) -> Result<Option<TarEntry>> {
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
    pub(super) fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
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
    pub(super) fn finish(mut self) -> Result<(String, u64)> {
        let mut scratch = vec![0u8; 64 << 10];
        while self.read_some(&mut scratch)? > 0 {}
        Ok(self.src.into_inner().finish())
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::fixture::*;
    use crate::unpack::unpack_layer;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use tar::EntryType;

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
}
