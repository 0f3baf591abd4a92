//! The few parts of a DNS message (RFC 1035 section 4) the resolver reads and writes: the header, one question
//! (its name may use compression pointers, section 4.1.4) and A/AAAA answers (RFC 1035 3.4.1, RFC 3596 2.2).
//! Anything else in a query (EDNS OPT records, RFC 6891) is ignored; an answer without OPT is a valid reply.

use std::net::IpAddr;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;

const HEADER_LEN: usize = 12;
/// Pointers a name may follow: more is a loop.
const MAX_POINTERS: usize = 32;
/// RFC 1035 2.3.4: 255 octets per name, 63 per label.
const MAX_NAME_LEN: usize = 255;

/// Why a query cannot be answered as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than a header: nothing can be answered.
    TooShort,
    /// A header, but a malformed question: FORMERR with the header's ID.
    Malformed { id: u16, flags: u16 },
    /// Well formed but not a standard query of one question: NOTIMP.
    NotImplemented { id: u16, flags: u16 },
}

/// One question of a query. `labels` keep the case they were sent in, so the answer echoes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub labels: Vec<Vec<u8>>,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// The name in lower case, dotted, without the root's trailing dot ("" for the root).
    pub fn name(&self) -> String {
        self.labels
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A standard query (QR=0, OPCODE=0) with exactly one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    pub question: Question,
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

/// Reads the name at `at`, following compression pointers; returns its labels and the offset after the name
/// as it appears at `at` (after the first pointer, if any).
fn read_name(buf: &[u8], mut at: usize) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    let mut pointers = 0;
    let mut total = 0;
    loop {
        let len = *buf.get(at)? as usize;
        match len & 0xC0 {
            0x00 if len == 0 => {
                return Some((labels, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let label = buf.get(at + 1..at + 1 + len)?;
                total += len + 1;
                if total > MAX_NAME_LEN {
                    return None;
                }
                labels.push(label.to_vec());
                at += 1 + len;
            }
            0xC0 => {
                let target = (read_u16(buf, at)? & 0x3FFF) as usize;
                pointers += 1;
                // Pointers point backwards (to a prior occurrence); a forward one or too many is a loop.
                if pointers > MAX_POINTERS || target >= at {
                    return None;
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            // 0x40 and 0x80 are extended label types (RFC 6891 dropped them): not supported.
            _ => return None,
        }
    }
}

/// Parses a query: its header and first (only) question.
pub fn parse_query(buf: &[u8]) -> Result<Query, ParseError> {
    if buf.len() < HEADER_LEN {
        return Err(ParseError::TooShort);
    }
    let id = u16::from_be_bytes([buf[0], buf[1]]);
    let flags = u16::from_be_bytes([buf[2], buf[3]]);
    let qdcount = u16::from_be_bytes([buf[4], buf[5]]);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xF;
    if is_response {
        return Err(ParseError::Malformed { id, flags });
    }
    if opcode != 0 || qdcount != 1 {
        return Err(ParseError::NotImplemented { id, flags });
    }
    let (labels, at) = read_name(buf, HEADER_LEN).ok_or(ParseError::Malformed { id, flags })?;
    let qtype = read_u16(buf, at).ok_or(ParseError::Malformed { id, flags })?;
    let qclass = read_u16(buf, at + 2).ok_or(ParseError::Malformed { id, flags })?;
    Ok(Query {
        id,
        flags,
        question: Question {
            labels,
            qtype,
            qclass,
        },
    })
}

/// Response flags: QR, the query's OPCODE and RD, RA, AA as asked, and `rcode`.
fn response_flags(query_flags: u16, authoritative: bool, rcode: u8) -> u16 {
    let opcode_rd = query_flags & 0x7900;
    let aa = if authoritative { 0x0400 } else { 0 };
    0x8000 | opcode_rd | aa | 0x0080 | (rcode as u16 & 0xF)
}

fn write_name(out: &mut Vec<u8>, labels: &[Vec<u8>]) {
    for l in labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
}

/// The answer to `query`: its question echoed, then one A or AAAA record per address (owner name: a pointer to
/// the question's name), with `ttl` seconds.
pub fn response(
    query: &Query,
    rcode: u8,
    authoritative: bool,
    addresses: &[IpAddr],
    ttl: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + addresses.len() * 28);
    out.extend_from_slice(&query.id.to_be_bytes());
    out.extend_from_slice(&response_flags(query.flags, authoritative, rcode).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    write_name(&mut out, &query.question.labels);
    out.extend_from_slice(&query.question.qtype.to_be_bytes());
    out.extend_from_slice(&query.question.qclass.to_be_bytes());
    for a in addresses {
        // The question's name is at offset 12: a pointer to it.
        out.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
        let (rtype, data) = match a {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// A header-only answer (no question) for a query that could not be parsed: FORMERR or NOTIMP.
pub fn error_response(id: u16, flags: u16, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&response_flags(flags, false, rcode).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// The ID of a message (query or response), if it has a header.
pub fn message_id(buf: &[u8]) -> Option<u16> {
    read_u16(buf, 0)
}

/// Builds a query (for tests and for the resolver's own checks): ID, RD set, one question.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    let labels: Vec<Vec<u8>> = name
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect();
    write_name(&mut out, &labels);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// A parsed response's RCODE and the addresses of its A/AAAA answers (for tests and diagnostics).
pub fn parse_response(buf: &[u8]) -> Option<(u8, Vec<IpAddr>)> {
    if buf.len() < HEADER_LEN || buf[2] & 0x80 == 0 {
        return None;
    }
    let rcode = buf[3] & 0xF;
    let qdcount = read_u16(buf, 4)?;
    let ancount = read_u16(buf, 6)?;
    let mut at = HEADER_LEN;
    for _ in 0..qdcount {
        at = read_name(buf, at)?.1 + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..ancount {
        at = read_name(buf, at)?.1;
        let rtype = read_u16(buf, at)?;
        let rdlen = read_u16(buf, at + 8)? as usize;
        let data = buf.get(at + 10..at + 10 + rdlen)?;
        match (rtype, data.len()) {
            (TYPE_A, 4) => {
                let o: [u8; 4] = data.try_into().ok()?;
                addresses.push(IpAddr::from(o));
            }
            (TYPE_AAAA, 16) => {
                let o: [u8; 16] = data.try_into().ok()?;
                addresses.push(IpAddr::from(o));
            }
            _ => {}
        }
        at += 10 + rdlen;
    }
    Some((rcode, addresses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_query_built_by_hand() {
        let q = parse_query(&build_query(0x1234, "Web.Net1", TYPE_AAAA)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.question.name(), "web.net1");
        assert_eq!(q.question.qtype, TYPE_AAAA);
        assert_eq!(q.question.qclass, CLASS_IN);
        assert_eq!(q.question.labels[0], b"Web");
    }

    /// dig's query for "example.com" A with an EDNS OPT record (RFC 6891): the additional section is ignored.
    #[test]
    fn parses_a_real_query_with_edns() {
        let bytes: &[u8] = &[
            0xab, 0xcd, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1, 7, b'e', b'x', b'a', b'm', b'p', b'l',
            b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1, 0, 0, 0x29, 0x10, 0, 0, 0, 0, 0, 0, 0,
        ];
        let q = parse_query(bytes).unwrap();
        assert_eq!(q.question.name(), "example.com");
        assert_eq!(q.question.qtype, TYPE_A);
    }

    /// RFC 1035 4.1.4: a name may end in a pointer to a prior occurrence.
    #[test]
    fn follows_compression_pointers() {
        // Header, then at 12: "net" 0 (a name the question's suffix points to), the question "web" -> ptr 12.
        let mut bytes = vec![0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (labels, end) = {
            bytes.extend_from_slice(&[3, b'n', b'e', b't', 0]);
            bytes.extend_from_slice(&[3, b'w', b'e', b'b', 0xC0, 12]);
            bytes.extend_from_slice(&[0, 1, 0, 1]);
            read_name(&bytes, 17).unwrap()
        };
        assert_eq!(labels, vec![b"web".to_vec(), b"net".to_vec()]);
        assert_eq!(end, 23);
        assert_eq!(read_u16(&bytes, end), Some(TYPE_A));
    }

    #[test]
    fn refuses_pointer_loops_and_truncation() {
        let mut bytes = vec![0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse_query(&bytes),
            Err(ParseError::Malformed { id: 7, flags: 0 })
        );
        let mut truncated = build_query(9, "web", TYPE_A);
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            parse_query(&truncated),
            Err(ParseError::Malformed { id: 9, .. })
        ));
        assert_eq!(parse_query(&[0; 5]), Err(ParseError::TooShort));
    }

    #[test]
    fn refuses_other_opcodes_and_counts() {
        let mut q = build_query(3, "web", TYPE_A);
        q[2] |= 0x10; // OPCODE 2 (STATUS)
        assert!(matches!(
            parse_query(&q),
            Err(ParseError::NotImplemented { id: 3, .. })
        ));
        let mut two = build_query(4, "web", TYPE_A);
        two[5] = 2;
        assert!(matches!(
            parse_query(&two),
            Err(ParseError::NotImplemented { id: 4, .. })
        ));
        let e = error_response(4, 0x0100, RCODE_NOTIMP);
        assert_eq!(e.len(), 12);
        assert_eq!(e[3] & 0xF, RCODE_NOTIMP);
        assert_eq!(e[2] & 0x80, 0x80);
    }

    #[test]
    fn answers_round_trip() {
        let q = parse_query(&build_query(0x55aa, "Web", TYPE_ANY)).unwrap();
        let addrs: Vec<IpAddr> = vec!["198.18.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let r = response(&q, RCODE_NOERROR, true, &addrs, 10);
        assert_eq!(message_id(&r), Some(0x55aa));
        // QR, RD echoed, AA, RA.
        assert_eq!(r[2], 0x85);
        assert_eq!(r[3], 0x80);
        // The question keeps its case.
        assert_eq!(&r[12..17], &[3, b'W', b'e', b'b', 0]);
        assert_eq!(parse_response(&r), Some((RCODE_NOERROR, addrs)));
        let nx = response(&q, RCODE_NXDOMAIN, true, &[], 10);
        assert_eq!(parse_response(&nx), Some((RCODE_NXDOMAIN, vec![])));
    }
}
