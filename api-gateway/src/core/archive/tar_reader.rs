//! The PAX/USTAR reader: archives read as Go's archive/tar reads them (PAX records walked by their lengths).

use super::*;

const BLOCK: usize = 512;
/// archive/tar's limit on the data of a PAX or GNU long-name header (maxSpecialFileSize).
const MAX_META: u64 = 1 << 20;

// Type flags.
pub(super) const TYPE_REG: u8 = b'0';
const TYPE_REG_OLD: u8 = 0;
pub(super) const TYPE_LINK: u8 = b'1';
pub(super) const TYPE_SYMLINK: u8 = b'2';
pub(super) const TYPE_CHAR: u8 = b'3';
pub(super) const TYPE_BLOCK: u8 = b'4';
pub(super) const TYPE_DIR: u8 = b'5';
pub(super) const TYPE_FIFO: u8 = b'6';
pub(super) const TYPE_CONTIGUOUS: u8 = b'7';
const TYPE_PAX: u8 = b'x';
const TYPE_PAX_GLOBAL: u8 = b'g';
const TYPE_GNU_LONG_NAME: u8 = b'L';
const TYPE_GNU_LONG_LINK: u8 = b'K';
const TYPE_GNU_SPARSE: u8 = b'S';

/// One member of an archive, its PAX and GNU long-name headers applied (Go's tar.Header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Member {
    pub(super) kind: u8,
    pub(super) name: Vec<u8>,
    pub(super) link: Vec<u8>,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// Seconds and nanoseconds.
    pub(super) mtime: (i64, i64),
    pub(super) dev_major: u32,
    pub(super) dev_minor: u32,
    /// Bytes of data that follow the header.
    size: u64,
    /// From `SCHILY.xattr.NAME` records, in the order they came.
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn bad_archive(reason: impl std::fmt::Display) -> Error {
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
pub(super) struct TarReader<R: Read> {
    src: std::io::BufReader<R>,
    /// Unread data of the current member, and the padding after it.
    data_left: u64,
    pad_left: u64,
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

impl<R: Read> TarReader<R> {
    pub(super) fn new(src: R) -> Self {
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
    pub(super) fn next_member(&mut self) -> Result<Option<Member>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::archive::write::{append_member, pax_records};

    fn s(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
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
}
