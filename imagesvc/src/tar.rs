//! A reader of tar archives that frames them as Go's archive/tar does (which docker, containerd and dockerd's
//! `docker cp` use), shared by the layer unpacker (unpack/archive.rs) and polisd's archive extraction (`docker cp`
//! uploads).
//!
//! It reads header blocks (V7, USTAR, STAR and GNU layouts, checked against their checksum), PAX extended headers
//! walked by their record lengths (so a value may hold any byte, newlines included: a binary `security.capability`
//! is kept whole, and the tail of one value is never read as a `path` or `linkpath` record), GNU long names and
//! long link names, and the data and padding of each entry. It follows archive/tar where tar 0.4 does not
//! (composefs/tar-rs#428, #452; docs/ARCHITECTURE.md, "imagesvc: our own tar framing"):
//!
//! - header-only types (hard links, symlinks, devices, directories, fifos) have no data, whatever their size says;
//! - an old regular file (type NUL) whose name ends in `/` is a directory;
//! - a PAX record with an empty value keeps what the header says (except `SCHILY.xattr.*`, kept empty);
//! - a PAX global header is an entry of its own in archive/tar, which docker and containerd ignore: it is skipped
//!   here, and the extended headers before it describe nothing;
//! - the archive ends at two zero blocks or at the end of the stream on a block boundary; one zero block followed
//!   by a header is an error.
//!
//! It is stricter than archive/tar where archive/tar's leniency would let a reader and a writer disagree: sparse
//! files (GNU type `S` and the PAX `GNU.sparse.*` records) are refused, an extended header with no entry after it
//! is an error, uids and gids must fit in 32 bits (and not be -1, chown's "unchanged"), and an extended header's
//! data is limited to [`MAX_META_SIZE`].
//!
//! Errors are [`Error`]s: the byte of the stream where the problem is, the name of the entry read last, and
//! [`Reason`] (the archive is malformed, or reading the stream failed).

use std::fmt;
use std::io::{self, BufReader, Read};

use nix::sys::time::TimeSpec;

/// The size of a tar block: headers, and the unit data is padded to.
pub const BLOCK: usize = 512;
/// archive/tar's limit on the data of a PAX or GNU long-name header (maxSpecialFileSize).
pub const MAX_META_SIZE: u64 = 1 << 20;
/// The read buffer of [`Reader::new`]; file data bypasses it once it is drained.
const DEFAULT_BUFFER: usize = 64 << 10;

// Entry types: the typeflag byte of a header.
pub const REGULAR: u8 = b'0';
const REGULAR_OLD: u8 = 0;
pub const HARD_LINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR_DEVICE: u8 = b'3';
pub const BLOCK_DEVICE: u8 = b'4';
pub const DIRECTORY: u8 = b'5';
pub const FIFO: u8 = b'6';
pub const CONTIGUOUS: u8 = b'7';
const PAX_LOCAL: u8 = b'x';
const PAX_GLOBAL: u8 = b'g';
const GNU_LONG_NAME: u8 = b'L';
const GNU_LONG_LINK: u8 = b'K';
const GNU_SPARSE: u8 = b'S';

/// archive/tar's isHeaderOnlyType: these entries have no data, whatever their size field says.
pub fn header_only(kind: u8) -> bool {
    matches!(
        kind,
        HARD_LINK | SYMLINK | CHAR_DEVICE | BLOCK_DEVICE | DIRECTORY | FIFO
    )
}

/// An entry type that is not a file, directory, link, device or fifo, for messages: `GNU sparse file ('S')`.
pub fn kind_name(kind: u8) -> String {
    let what = match kind {
        GNU_SPARSE => "GNU sparse file",
        b'V' => "GNU volume header",
        b'M' => "GNU multi-volume continuation",
        b'D' => "GNU dump directory",
        b'N' => "GNU old long name",
        _ => "unknown",
    };
    format!("{what} ({:?})", kind as char)
}

/// An entry name for messages: lossy UTF-8, cut at 256 bytes.
pub fn shown(name: &[u8]) -> String {
    if name.len() > 256 {
        format!("{}...", String::from_utf8_lossy(&name[..256]))
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}

/// A time: seconds since the epoch (possibly negative) and nanoseconds (0 to 999,999,999).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Time {
    pub sec: i64,
    pub nsec: i64,
}

impl Time {
    pub fn spec(self) -> TimeSpec {
        TimeSpec::new(self.sec, self.nsec)
    }
}

/// One archive entry, its PAX and GNU long-name headers applied (archive/tar's Header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The typeflag: [`REGULAR`], [`DIRECTORY`]... (an old regular file's NUL already made [`REGULAR`] or
    /// [`DIRECTORY`]). Types this module does not name ('V', 'D', vendor types...) are passed on as they are.
    pub kind: u8,
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    /// The permission bits, setuid, setgid and sticky (the file type bits some tars add are dropped).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Time,
    pub dev_major: u64,
    pub dev_minor: u64,
    /// The size the headers give; a [`header_only`] type has no data whatever it says.
    pub size: u64,
    /// From PAX `SCHILY.xattr.<name>` records, in the order they came (a name given twice: its last value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why reading an archive failed.
#[derive(Debug)]
pub enum Reason {
    /// The archive is malformed or cut short.
    Format(String),
    /// The stream the archive is read from failed (the error it returned).
    Read(io::Error),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Format(reason) => f.write_str(reason),
            Reason::Read(e) => e.fmt(f),
        }
    }
}

/// A failure to read an archive: where, after which entry, and why.
#[derive(Debug)]
pub struct Error {
    /// The byte of the stream the problem is at (a header's first byte for a bad header).
    pub offset: u64,
    /// The name of the last entry returned before it; empty if none was.
    pub after: Vec<u8>,
    pub reason: Reason,
}

impl Error {
    /// Where the problem is: `at byte N of the tar stream, after entry "name"`.
    pub fn place(&self) -> String {
        if self.after.is_empty() {
            format!("at byte {} of the tar stream", self.offset)
        } else {
            format!(
                "at byte {} of the tar stream, after entry {:?}",
                self.offset,
                shown(&self.after)
            )
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.place())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            Reason::Read(e) => Some(e),
            Reason::Format(_) => None,
        }
    }
}

impl From<Error> for io::Error {
    /// The error as the `Read` of an entry's data returns it: of the stream's error's kind, or InvalidData for a
    /// malformed archive; the [`Error`] is its inner error.
    fn from(e: Error) -> io::Error {
        let kind = match &e.reason {
            Reason::Read(inner) => inner.kind(),
            Reason::Format(_) => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// archive/tar's parseOctal: octal text, padded with spaces or NULs on either side; empty is 0.
fn parse_octal(field: &[u8]) -> Result<i64, String> {
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
fn parse_numeric(field: &[u8]) -> Result<i64, String> {
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

fn id_from(value: i64, what: &str) -> Result<u32, String> {
    // u32::MAX is chown's "leave unchanged", never an owner.
    u32::try_from(value)
        .ok()
        .filter(|&v| v != u32::MAX)
        .ok_or_else(|| format!("{what} {value} out of range"))
}

/// A header block's checksum (archive/tar's getFormat): octal, the unsigned or (as some old tars wrote it) signed
/// byte sum, with the checksum field counted as spaces.
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

/// One 512-byte header (archive/tar's readHeader): V7, USTAR/PAX, STAR or GNU layout.
fn parse_header(block: &[u8; BLOCK]) -> Result<Entry, String> {
    if !checksum_ok(block) {
        return Err("invalid header checksum".into());
    }
    let magic = &block[257..263];
    let version = &block[263..265];
    let ustar = magic == b"ustar\0" && version == b"00";
    // STAR keeps times after a shorter prefix, and says so at the end of the block.
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
    Ok(Entry {
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

/// PAX records: key and value, a later record of a key replacing an earlier one in place.
type PaxRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// archive/tar's parsePAX: the records of a PAX extended header, `<length> <key>=<value>\n`, walked by their
/// length so that a value may hold any byte, newlines included (POSIX pax "pax Extended Header").
fn pax_records(mut data: &[u8]) -> Result<PaxRecords, String> {
    let mut records: PaxRecords = Vec::new();
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
        if len < 5 || len <= space + 1 || len > data.len() {
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
        // archive/tar's validPAXRecord: these values are strings, other values may hold any byte.
        if matches!(key, b"path" | b"linkpath" | b"uname" | b"gname") && value.contains(&0) {
            return Err(format!("PAX {} with a NUL byte", shown(key)));
        }
        match records.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_vec(),
            None => records.push((key.to_vec(), value.to_vec())),
        }
        data = rest;
    }
    Ok(records)
}

fn pax_decimal(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// archive/tar's parsePAXTime: `<seconds>[.<fraction>]`, possibly negative, the fraction cut at nanoseconds.
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
    // A negative time's fraction counts back from its seconds (Go's time.Unix(sec, -nsec)).
    if secs.starts_with('-') && nsec > 0 {
        Some(Time {
            sec: sec.checked_sub(1)?,
            nsec: 1_000_000_000 - nsec,
        })
    } else {
        Some(Time { sec, nsec })
    }
}

/// archive/tar's mergePAX: the records that matter to an unpacker (an empty value keeps the header's); the others
/// (atime, uname, comment...) are ignored. `GNU.sparse.*` records are refused.
fn apply_pax(entry: &mut Entry, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
    for (key, value) in records {
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            if name.is_empty() {
                return Err("PAX xattr record without a name".into());
            }
            entry.xattrs.push((name.to_vec(), value.clone()));
            continue;
        }
        if key.starts_with(b"GNU.sparse.") {
            return Err("GNU sparse files are not supported".into());
        }
        if value.is_empty() {
            continue;
        }
        match key.as_slice() {
            b"path" => entry.name.clone_from(value),
            b"linkpath" => entry.link.clone_from(value),
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
                if what == "uid" {
                    entry.uid = id;
                } else {
                    entry.gid = id;
                }
            }
            b"mtime" => {
                entry.mtime = pax_time(value)
                    .ok_or_else(|| format!("invalid PAX mtime {:?}", shown(value)))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The number of padding bytes after `size` bytes of data.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Reads the entries of a tar stream, as archive/tar's Reader does: [`Reader::next_entry`] returns each entry,
/// then [`Reader::read_data`] (or `Read`) its data, which ends with the entry's data.
pub struct Reader<R: Read> {
    src: BufReader<R>,
    /// Bytes of the stream consumed so far.
    offset: u64,
    /// Unread data of the current entry, and the padding after it.
    data_left: u64,
    pad_left: u64,
    /// The name of the last entry returned, for messages about what follows it.
    last: Vec<u8>,
}

impl<R: Read> Reader<R> {
    /// Reads the archive `src` through a buffer of 64 KiB.
    pub fn new(src: R) -> Self {
        Self::with_capacity(DEFAULT_BUFFER, src)
    }

    /// Reads the archive `src` through a buffer of `capacity` bytes (reads of data larger than it bypass it).
    pub fn with_capacity(capacity: usize, src: R) -> Self {
        Reader {
            src: BufReader::with_capacity(capacity, src),
            offset: 0,
            data_left: 0,
            pad_left: 0,
            last: Vec::new(),
        }
    }

    /// Bytes of the stream read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn error(&self, offset: u64, reason: Reason) -> Error {
        Error {
            offset,
            after: self.last.clone(),
            reason,
        }
    }

    fn fail(&self, offset: u64, reason: impl fmt::Display) -> Error {
        self.error(offset, Reason::Format(reason.to_string()))
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        loop {
            match self.src.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.error(self.offset, Reason::Read(e))),
            }
        }
    }

    /// Fills `buf`; Ok(false) when the stream ends before its first byte.
    fn read_full(&mut self, buf: &mut [u8], what: &str) -> Result<bool, Error> {
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

    fn skip(&mut self, mut amount: u64) -> Result<(), Error> {
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

    /// The data of a PAX or GNU long-name header (archive/tar's readSpecialFile), whose header is at `at`.
    fn read_meta(&mut self, header: &Entry, at: u64) -> Result<Vec<u8>, Error> {
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

    /// The next entry, the rest of the current one skipped; None at the end of the archive (two zero blocks, or
    /// the end of the stream on a block boundary).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        self.skip(self.data_left + self.pad_left)?;
        self.data_left = 0;
        self.pad_left = 0;
        let mut pax: Option<PaxRecords> = None;
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
                PAX_LOCAL | PAX_GLOBAL => {
                    let data = self.read_meta(&header, at)?;
                    let records = pax_records(&data).map_err(|reason| self.fail(at, reason))?;
                    if header.kind == PAX_LOCAL {
                        pax = Some(records);
                    } else {
                        // archive/tar hands a global header to its caller as an entry of its own, which docker and
                        // containerd then ignore; what came before it describes nothing.
                        tracing::debug!(offset = at, "ignoring a PAX global header");
                        pax = None;
                        long_name = None;
                        long_link = None;
                    }
                }
                GNU_LONG_NAME => long_name = Some(trim_nul(&self.read_meta(&header, at)?).to_vec()),
                GNU_LONG_LINK => long_link = Some(trim_nul(&self.read_meta(&header, at)?).to_vec()),
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
                        // Legacy archives mark a directory by its trailing slash.
                        entry.kind = if entry.name.ends_with(b"/") {
                            DIRECTORY
                        } else {
                            REGULAR
                        };
                    }
                    if entry.kind == GNU_SPARSE {
                        return Err(self.fail(
                            at,
                            format_args!(
                                "entry {:?}: GNU sparse files are not supported",
                                shown(&entry.name)
                            ),
                        ));
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
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.data_left == 0 || buf.is_empty() {
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

    /// Reads the stream to its end (what follows the end-of-archive marker too) and returns it.
    pub fn finish(mut self) -> Result<R, Error> {
        let mut scratch = vec![0u8; 64 << 10];
        while self.read_some(&mut scratch)? > 0 {}
        Ok(self.src.into_inner())
    }
}

impl<R: Read> Read for Reader<R> {
    /// The current entry's data, and nothing after it; errors are [`Error`]s (see `From<Error> for io::Error`).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_data(buf).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header block with a correct checksum: `name`, `kind`, `size`, in USTAR layout unless `v7`.
    fn header(name: &[u8], kind: u8, size: u64, v7: bool) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0001750");
        b[116..123].copy_from_slice(b"0000012");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"14000000000");
        b[156] = kind;
        if !v7 {
            b[257..263].copy_from_slice(b"ustar\0");
            b[263..265].copy_from_slice(b"00");
        }
        seal(&mut b);
        b
    }

    /// Sets the checksum of a header block.
    fn seal(b: &mut [u8; BLOCK]) {
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    }

    /// An archive built block by block.
    #[derive(Default)]
    struct Archive(Vec<u8>);

    impl Archive {
        fn block(&mut self, b: &[u8; BLOCK]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        /// `data`, padded to a block.
        fn data(&mut self, data: &[u8]) -> &mut Self {
            self.0.extend_from_slice(data);
            self.0
                .resize(self.0.len() + padding(data.len() as u64) as usize, 0);
            self
        }
        fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.block(&header(name.as_bytes(), REGULAR, data.len() as u64, false))
                .data(data)
        }
        fn meta(&mut self, kind: u8, data: &[u8]) -> &mut Self {
            self.block(&header(b"././@meta", kind, data.len() as u64, false))
                .data(data)
        }
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (key, value) in records {
                // The length counts its own digits: the first that adds up.
                let body = key.len() + value.len() + 3;
                let len = (1..)
                    .map(|digits| body + digits)
                    .find(|len| len.to_string().len() + body == *len)
                    .unwrap();
                data.extend_from_slice(format!("{len} {key}=").as_bytes());
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            self.meta(PAX_LOCAL, &data)
        }
        /// The archive without an end-of-archive marker.
        fn bytes(&mut self) -> Vec<u8> {
            std::mem::take(&mut self.0)
        }
        /// The archive with its end-of-archive marker.
        fn end(&mut self) -> Vec<u8> {
            self.0.resize(self.0.len() + 2 * BLOCK, 0);
            self.bytes()
        }
    }

    /// Every entry of `tar`, with its data.
    fn entries(tar: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, Error> {
        let mut r = Reader::new(tar);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            let mut buf = [0u8; 100];
            loop {
                let n = r.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            out.push((e, data));
        }
        Ok(out)
    }

    fn format_error(tar: &[u8]) -> String {
        let e = entries(tar).unwrap_err();
        assert!(matches!(e.reason, Reason::Format(_)), "{e}");
        e.to_string()
    }

    #[test]
    fn numeric_fields_are_read_as_archive_tar_reads_them() {
        assert_eq!(parse_numeric(b" 0000644\0"), Ok(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Ok(0));
        assert_eq!(parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]), Ok(256));
        assert_eq!(parse_numeric(&[0xff; 8]), Ok(-1));
        assert!(
            parse_numeric(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err()
        );
        assert!(parse_numeric(b"0008").is_err());
        assert!(parse_numeric(b"07 7").is_err());
        assert_eq!(id_from(1000, "uid"), Ok(1000));
        assert!(id_from(-1, "uid").is_err());
        assert!(id_from(i64::from(u32::MAX), "gid").is_err());
        assert_eq!(
            pax_time(b"1700000000.25"),
            Some(Time {
                sec: 1_700_000_000,
                nsec: 250_000_000
            })
        );
        assert_eq!(
            pax_time(b"-1.5"),
            Some(Time {
                sec: -2,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            pax_time(b"1.1234567891"),
            Some(Time {
                sec: 1,
                nsec: 123_456_789
            })
        );
        assert_eq!(pax_time(b"1.x"), None);
    }

    /// PAX records are walked by their length: a value may hold newlines and `=`; a record whose length runs past
    /// the header, a short one, one not ended by a newline or with a NUL in a path is refused; a key given twice
    /// keeps its last value.
    #[test]
    fn pax_records_are_walked_by_their_length() {
        let records = pax_records(b"16 user=a\n9 x=y\n9 path=x\n8 user=\n").unwrap();
        assert_eq!(
            records,
            vec![
                (b"user".to_vec(), b"".to_vec()),
                (b"path".to_vec(), b"x".to_vec())
            ]
        );
        assert!(pax_records(b"30 path=x\n").is_err());
        assert!(pax_records(b"9 path=x\n").is_ok());
        assert!(pax_records(b"9 path=xx").is_err());
        assert!(pax_records(b"4 a\n").is_err());
        assert!(pax_records(b"+9 path=x\n").is_err());
        assert!(pax_records(b"9 pathxx\n").is_err());
        assert!(pax_records(b"9 =path\n\n").is_err());
        assert!(pax_records(b"11 path=\0x\n").is_err());
        assert_eq!(
            pax_records(b"20 SCHILY.xattr.a=\0\n").unwrap(),
            vec![(b"SCHILY.xattr.a".to_vec(), b"\0".to_vec())]
        );
    }

    /// V7, USTAR (name split into prefix and name), GNU long names and links, PAX records over the header (an empty
    /// value keeps the header's), old regular files, and header-only types whose size field is not data.
    #[test]
    fn headers_long_names_and_pax_records_make_entries() {
        let capability = [1u8, 0, 0, 2, 0x0a, 0, 0, 0, 0, 0, 0, 0];
        let mut sized_symlink = header(b"sized-symlink", SYMLINK, 512, false);
        sized_symlink[157] = b't';
        seal(&mut sized_symlink);
        let mut split = header(b"q", DIRECTORY, 0, false);
        split[345..350].copy_from_slice(b"p/p/p");
        seal(&mut split);
        let mut dev = header(b"dev", CHAR_DEVICE, 0, false);
        dev[329..336].copy_from_slice(b"0000001");
        dev[337..344].copy_from_slice(b"0000003");
        seal(&mut dev);
        let tar = Archive::default()
            .pax(&[
                ("SCHILY.xattr.security.capability", &capability),
                ("SCHILY.xattr.user.note", b"a=b\n2 x=y\n"),
                ("path", b"pax/long/name"),
                ("linkpath", b""),
                ("mtime", b"1700000000.25"),
                ("uid", b"0"),
                ("comment", b"ignored"),
            ])
            .file("short", b"abc")
            .block(&sized_symlink) // no data block follows
            .block(&split)
            .meta(GNU_LONG_NAME, format!("{}\0", "n".repeat(200)).as_bytes())
            .meta(GNU_LONG_LINK, "t".repeat(150).as_bytes())
            .block(&header(b"ln", HARD_LINK, 0, false))
            .block(&header(b"old-dir/", REGULAR_OLD, 0, true))
            .block(&header(b"old-file", REGULAR_OLD, 1, true))
            .data(b"z")
            .block(&dev)
            .end();
        let got = entries(&tar).unwrap();
        let (e, data) = &got[0];
        assert_eq!(
            (e.kind, e.name.as_slice(), data.as_slice()),
            (REGULAR, &b"pax/long/name"[..], &b"abc"[..])
        );
        assert_eq!((e.mode, e.uid, e.gid, e.size), (0o644, 0, 10, 3));
        assert_eq!(
            e.mtime,
            Time {
                sec: 1_700_000_000,
                nsec: 250_000_000
            }
        );
        assert_eq!(
            e.xattrs,
            vec![
                (b"security.capability".to_vec(), capability.to_vec()),
                (b"user.note".to_vec(), b"a=b\n2 x=y\n".to_vec()),
            ]
        );
        let (e, data) = &got[1];
        assert_eq!(
            (e.kind, e.link.as_slice(), e.size),
            (SYMLINK, &b"t"[..], 512)
        );
        assert!(data.is_empty());
        assert_eq!(
            (got[2].0.kind, got[2].0.name.as_slice()),
            (DIRECTORY, &b"p/p/p/q"[..])
        );
        let e = &got[3].0;
        assert_eq!(
            (e.name.clone(), e.link.clone()),
            ("n".repeat(200).into_bytes(), "t".repeat(150).into_bytes())
        );
        assert_eq!(
            (got[4].0.kind, got[4].0.name.as_slice()),
            (DIRECTORY, &b"old-dir/"[..])
        );
        assert_eq!((got[5].0.kind, got[5].1.as_slice()), (REGULAR, &b"z"[..]));
        assert_eq!((got[6].0.dev_major, got[6].0.dev_minor), (1, 3));
        assert_eq!(got.len(), 7);
        // The end of the stream on a block boundary ends the archive too; whatever follows can be read to its end.
        assert_eq!(entries(&tar[..tar.len() - 2 * BLOCK]).unwrap().len(), 7);
        let mut r = Reader::new(&tar[..]);
        r.next_entry().unwrap();
        assert!(r.finish().unwrap().is_empty());
    }

    /// A PAX global header is skipped, and the extended headers before it describe nothing; its records must
    /// still be well formed.
    #[test]
    fn pax_global_headers_are_skipped() {
        let tar = Archive::default()
            .pax(&[("path", b"lost")])
            .meta(GNU_LONG_NAME, b"lost too")
            .meta(PAX_GLOBAL, b"15 comment=hi!\n")
            .file("kept", b"")
            .end();
        let got = entries(&tar).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.name, b"kept");
        let tar = Archive::default()
            .meta(PAX_GLOBAL, b"99 comment=hi!\n")
            .file("kept", b"")
            .end();
        assert!(format_error(&tar).contains("PAX record length 99 out of range"));
    }

    /// Malformed archives, each with where and why.
    #[test]
    fn malformed_archives_are_refused_with_their_offset() {
        let good = Archive::default().file("a", b"data").file("b", b"").end();
        // A bad checksum in the second header.
        let mut bad = good.clone();
        bad[2 * BLOCK] ^= 1;
        assert_eq!(
            format_error(&bad),
            "invalid header checksum (at byte 1024 of the tar stream, after entry \"a\")"
        );
        // Cut in a header, in data, in the padding.
        assert!(
            format_error(&good[..1100]).starts_with("archive truncated in a header (at byte 1024")
        );
        assert!(
            format_error(&good[..514]).starts_with("archive truncated in the data of entry \"a\"")
        );
        assert!(
            format_error(&good[..600]).starts_with("archive truncated in the data of an entry")
        );
        // A header after a single zero block.
        let mut after_zero = Archive::default().file("a", b"").bytes();
        after_zero.extend_from_slice(&[0u8; BLOCK]);
        let tar = Archive(after_zero).file("b", b"").end();
        assert!(
            format_error(&tar).starts_with("a header follows a single zero block (at byte 1024")
        );
        // An extended header with no entry after it, and one too large.
        let tar = Archive::default().pax(&[("path", b"x")]).end();
        assert!(format_error(&tar).starts_with("the archive ends after an extended header"));
        let tar = Archive::default().pax(&[("path", b"x")]).bytes();
        assert!(format_error(&tar).starts_with("the archive ends after an extended header"));
        let tar = Archive::default()
            .block(&header(b"big", GNU_LONG_NAME, MAX_META_SIZE + 1, false))
            .end();
        assert!(format_error(&tar).starts_with("extended header of 1048577 bytes (limit 1048576)"));
        // Sparse files, in either form; bad PAX values.
        let tar = Archive::default()
            .block(&header(b"s", GNU_SPARSE, 0, false))
            .end();
        assert!(format_error(&tar).starts_with("entry \"s\": GNU sparse files are not supported"));
        let tar = Archive::default()
            .pax(&[("GNU.sparse.major", b"1")])
            .file("s", b"")
            .end();
        assert!(format_error(&tar).starts_with("entry \"s\": GNU sparse files are not supported"));
        for (key, value) in [
            ("size", &b"-1"[..]),
            ("uid", b"4294967295"),
            ("mtime", b"x"),
        ] {
            let tar = Archive::default().pax(&[(key, value)]).file("p", b"").end();
            let text = format_error(&tar);
            assert!(
                text.starts_with("entry \"p\": ") && text.contains(key),
                "{text}"
            );
        }
        // A failing stream is a Read error, at the byte it failed at.
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = self.0.read(buf)?;
                Ok(n)
            }
        }
        let mut r = Reader::new(Failing(&good[..BLOCK + 2]));
        r.next_entry().unwrap();
        let e = std::io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Other);
        let inner = e.into_inner().unwrap().downcast::<Error>().unwrap();
        assert!(matches!(inner.reason, Reason::Read(_)));
        assert_eq!(inner.offset, BLOCK as u64 + 2);
        assert_eq!(
            inner.to_string(),
            "disk on fire (at byte 514 of the tar stream, after entry \"a\")"
        );
    }
}
