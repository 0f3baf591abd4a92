//! The firewall's hot path over nfnetlink (netfilter's netlink family, `NETLINK_NETFILTER`) rather than an `nft`
//! process, whose start and cache load docs/BENCHMARKS.md measures ("polis-netplug after one nft call per ADD
//! and DEL"): a container's port mappings are added and
//! deleted as map elements in one batch (one nf_tables transaction), and the table's rules are counted to see
//! whether someone removed them.
//!
//! Message formats: `linux/netfilter/nfnetlink.h` (`struct nfgenmsg`, batches) and
//! `linux/netfilter/nf_tables.h` (`NFT_MSG_*`, `NFTA_*`). A batch is handled by the kernel while `sendmsg` runs,
//! so every answer is queued when it returns; the kernel applies all of it or, if any message fails, none.
//!
//! Element encoding: a concatenation (`inet_proto . inet_service`) is each field in its own 32-bit register,
//! zero-padded (nft's `NFT_REG32_SIZE`), with addresses and ports in network order.

use super::{PortMapping, Protocol, TABLE};
use crate::error::{Error, Result};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::net::IpAddr;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNETLINK_V0: u8 = 0;
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;

const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NFTA_RULE_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NLA_F_NESTED: u16 = 1 << 15;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HEADER_LEN: usize = 16;

/// Dump datagrams are at most 32 KiB (see crate::link::netlink); the acknowledgements of a batch are small.
const RECEIVE_BUFFER_LEN: usize = 64 * 1024;

fn nft_type(message: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | message
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds netlink messages (`struct nlmsghdr` + `struct nfgenmsg` + attributes) one after another in one buffer.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a message; returns where it starts, for [`Writer::end`].
    fn begin(&mut self, kind: u16, flags: u16, sequence: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by end()
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&sequence.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        self.buf
            .extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// A NUL-terminated string attribute (NLA_STRING as nf_tables wants its names).
    fn attr_str(&mut self, kind: u16, value: &str) {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attr(kind, &bytes);
    }

    fn nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Appends `value` as one 32-bit register: zero-padded to a multiple of four bytes.
fn push_register(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

fn push_address(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}

/// The element's key: `[host address .] protocol . host port`, as the map's type declares it.
fn element_key(m: &PortMapping) -> Vec<u8> {
    let mut key = Vec::with_capacity(24);
    if let Some(ip) = m.host_ip {
        push_address(&mut key, ip);
    }
    let proto = match m.protocol {
        Protocol::Tcp => libc::IPPROTO_TCP as u8,
        Protocol::Udp => libc::IPPROTO_UDP as u8,
    };
    push_register(&mut key, &[proto]);
    push_register(&mut key, &m.host_port.to_be_bytes());
    key
}

/// The element's data: `container address . container port`.
fn element_data(m: &PortMapping) -> Vec<u8> {
    let mut data = Vec::with_capacity(20);
    push_address(&mut data, m.container_ip);
    push_register(&mut data, &m.container_port.to_be_bytes());
    data
}

/// One message the kernel sent: its type, its sequence number and what follows the netlink header.
struct Reply {
    kind: u16,
    sequence: u32,
    payload: Vec<u8>,
}

/// What the kernel answered to one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Done,
    /// The positive errno.
    Failed(i32),
}

/// An nfnetlink socket in the calling thread's network namespace.
pub struct Nfnetlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Nfnetlink {
    pub fn open() -> Result<Self> {
        let failed = |what: &str, e: std::io::Error| Error::Firewall {
            op: "opening an nfnetlink socket",
            reason: format!("{what}: {e}"),
        };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| failed("socket", e))?;
        socket.bind_auto().map_err(|e| failed("bind", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| failed("connect", e))?;
        Ok(Nfnetlink {
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(RECEIVE_BUFFER_LEN),
        })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn send(&mut self, op: &'static str, bytes: &[u8]) -> Result<()> {
        loop {
            match self.socket.send(bytes, 0) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(Error::Firewall {
                        op,
                        reason: format!("sent {n} of {} bytes to nf_tables", bytes.len()),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Firewall {
                        op,
                        reason: format!("sending to nf_tables: {e}"),
                    });
                }
            }
        }
    }

    /// Reads one datagram and returns its messages (`None`: nothing is queued, with `MSG_DONTWAIT`).
    fn receive(&mut self, op: &'static str, flags: i32) -> Result<Option<Vec<Reply>>> {
        self.buffer.clear();
        let received = loop {
            match self.socket.recv(&mut self.buffer, libc::MSG_TRUNC | flags) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => {
                    return Err(Error::Firewall {
                        op,
                        reason: format!("reading nf_tables' answer: {e}"),
                    });
                }
            }
        };
        if received > self.buffer.len() {
            return Err(Error::Firewall {
                op,
                reason: format!("a {received}-byte answer does not fit the receive buffer"),
            });
        }
        let mut messages = Vec::new();
        let mut offset = 0;
        while offset + NLMSG_HEADER_LEN <= received {
            let b = &self.buffer[offset..received];
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if len < NLMSG_HEADER_LEN || len > b.len() {
                return Err(Error::Firewall {
                    op,
                    reason: format!("malformed netlink message of {len} bytes"),
                });
            }
            let kind = u16::from_ne_bytes([b[4], b[5]]);
            let sequence = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            messages.push(Reply {
                kind,
                sequence,
                payload: b[NLMSG_HEADER_LEN..len].to_vec(),
            });
            offset += align4(len);
        }
        Ok(Some(messages))
    }

    /// Sends `elements` as one batch of `NEWSETELEM` (`add`, refused when the key is in the map: `NLM_F_EXCL`)
    /// or `DELSETELEM` messages, one message per element, each acknowledged. Returns each element's answer; if
    /// any failed, the kernel applied none.
    pub fn elements(
        &mut self,
        op: &'static str,
        add: bool,
        elements: &[PortMapping],
    ) -> Result<Vec<Answer>> {
        if elements.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = Writer::default();
        let begin = w.begin(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            self.next_sequence(),
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end(begin);
        let (kind, flags) = if add {
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL)
        } else {
            (NFT_MSG_DELSETELEM, 0)
        };
        let mut sequences = Vec::with_capacity(elements.len());
        for m in elements {
            let sequence = self.next_sequence();
            sequences.push(sequence);
            let start = w.begin(
                nft_type(kind),
                NLM_F_REQUEST | NLM_F_ACK | flags,
                sequence,
                NFPROTO_INET,
                0,
            );
            w.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
            w.attr_str(NFTA_SET_ELEM_LIST_SET, &m.map());
            let list = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            let elem = w.nest(NFTA_LIST_ELEM);
            let key = w.nest(NFTA_SET_ELEM_KEY);
            w.attr(NFTA_DATA_VALUE, &element_key(m));
            w.end_nest(key);
            if add {
                let data = w.nest(NFTA_SET_ELEM_DATA);
                w.attr(NFTA_DATA_VALUE, &element_data(m));
                w.end_nest(data);
            }
            w.end_nest(elem);
            w.end_nest(list);
            w.end(start);
        }
        let end = w.begin(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            self.next_sequence(),
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end(end);
        self.send(op, &w.buf)?;

        // The kernel has answered by now; read what is queued, without waiting.
        let mut answers: Vec<Option<Answer>> = vec![None; elements.len()];
        let mut batch_error = None;
        while let Some(messages) = self.receive(op, libc::MSG_DONTWAIT)? {
            for Reply {
                kind,
                sequence,
                payload,
            } in messages
            {
                if kind != NLMSG_ERROR || payload.len() < 4 {
                    continue;
                }
                let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let answer = if code == 0 {
                    Answer::Done
                } else {
                    Answer::Failed(code.checked_abs().unwrap_or(i32::MAX))
                };
                match sequences.iter().position(|s| *s == sequence) {
                    Some(i) => answers[i] = Some(answer),
                    // An error about the batch itself (its begin or end message).
                    None if code != 0 => batch_error = Some(code.checked_abs().unwrap_or(i32::MAX)),
                    None => {}
                }
            }
        }
        if let Some(errno) = batch_error {
            return Err(Error::Firewall {
                op,
                reason: format!(
                    "nf_tables refused the batch: {}",
                    std::io::Error::from_raw_os_error(errno)
                ),
            });
        }
        answers
            .into_iter()
            .map(|a| {
                a.ok_or_else(|| Error::Firewall {
                    op,
                    reason: "nf_tables did not answer every message of the batch".into(),
                })
            })
            .collect()
    }

    /// How many rules table `inet polis` holds (0 when there is no such table).
    pub fn rule_count(&mut self) -> Result<usize> {
        const OP: &str = "counting the firewall rules";
        let sequence = self.next_sequence();
        let mut w = Writer::default();
        let start = w.begin(
            nft_type(NFT_MSG_GETRULE),
            NLM_F_REQUEST | NLM_F_DUMP,
            sequence,
            NFPROTO_INET,
            0,
        );
        w.attr_str(NFTA_RULE_TABLE, TABLE);
        w.end(start);
        self.send(OP, &w.buf)?;
        let mut count = 0;
        loop {
            let Some(messages) = self.receive(OP, 0)? else {
                continue;
            };
            for Reply {
                kind,
                sequence: seq,
                payload,
            } in messages
            {
                if seq != sequence {
                    continue;
                }
                match kind {
                    k if k == nft_type(NFT_MSG_NEWRULE) => count += 1,
                    NLMSG_DONE => return Ok(count),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                            .unwrap_or(0);
                        return match code.checked_abs().unwrap_or(i32::MAX) {
                            0 => Ok(count),
                            libc::ENOENT => Ok(0),
                            errno => Err(Error::Firewall {
                                op: OP,
                                reason: std::io::Error::from_raw_os_error(errno).to_string(),
                            }),
                        };
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::tests::mapping;

    /// Each field of a concatenation fills a whole 32-bit register (the key lengths nft gives the maps).
    #[test]
    fn concatenations_use_one_register_per_field() {
        let m = mapping(None, "198.18.0.5");
        assert_eq!(element_key(&m), [6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(element_data(&m), [198, 18, 0, 5, 0, 80, 0, 0]);
        let m = mapping(Some("127.0.0.1"), "198.18.0.5");
        assert_eq!(
            element_key(&m),
            [127, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]
        );
        let m = mapping(Some("fd00::1"), "fd00::5");
        assert_eq!(element_key(&m).len(), 24);
        assert_eq!(element_data(&m).len(), 20);
    }
}
