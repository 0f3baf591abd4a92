//! A small synchronous rtnetlink client (netlink(7), rtnetlink(7)): one `NETLINK_ROUTE` socket, which belongs to
//! the network namespace of the thread that opened it. Requests carry a sequence number and ask for an ACK; dumps
//! read until `NLMSG_DONE`. Messages from an earlier, abandoned exchange (another sequence number) are skipped.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, parse_string,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};

/// The receive buffer: the kernel sends dump datagrams of at most 32 KiB (`netlink_dump` caps its skb there), so
/// 64 KiB is never truncated; a truncated datagram is reported, not parsed.
const RECEIVE_BUFFER_LEN: usize = 64 * 1024;

/// How often a dump is restarted when the kernel marks it inconsistent (`NLM_F_DUMP_INTR`: the table changed
/// while it was being dumped).
const DUMP_ATTEMPTS: usize = 3;

/// `NLMSGERR_ATTR_MSG` in an extended ACK: the kernel's own text for the error.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Length of `struct nlmsghdr`.
const NETLINK_HEADER_LEN: usize = 16;

/// A synchronous rtnetlink connection in the network namespace of the thread that called [`Netlink::open`].
/// Keep it on that thread's side of a namespace switch: a socket stays in the namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

/// A failed kernel exchange, before it is given the operation and the object it was about.
#[derive(Debug)]
pub(crate) struct KernelError {
    /// The positive errno, when the kernel (or the socket) gave one.
    pub errno: Option<i32>,
    pub reason: String,
}

impl KernelError {
    fn io(source: std::io::Error) -> Self {
        KernelError {
            errno: source.raw_os_error(),
            reason: source.to_string(),
        }
    }

    fn protocol(reason: impl Into<String>) -> Self {
        KernelError {
            errno: None,
            reason: reason.into(),
        }
    }

    /// From the negative errno of an `NLMSG_ERROR` or `NLMSG_DONE`, with the kernel's extended-ACK text if any.
    fn from_code(code: i32, kernel_message: Option<String>) -> Self {
        let errno = code.checked_abs().unwrap_or(i32::MAX);
        let mut reason = std::io::Error::from_raw_os_error(errno).to_string();
        if let Some(message) = kernel_message.filter(|m| !m.is_empty()) {
            reason = format!("{reason}: {message}");
        }
        KernelError {
            errno: Some(errno),
            reason,
        }
    }

    pub(crate) fn is(&self, errno: i32) -> bool {
        self.errno == Some(errno)
    }

    pub(crate) fn into_error(self, op: &'static str, object: impl Into<String>) -> Error {
        Error::Netlink {
            op,
            object: object.into(),
            reason: self.reason,
        }
    }
}

/// `map_err` helper: a kernel failure of `op` on `object`.
pub(crate) fn failed(
    op: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(KernelError) -> Error {
    let object = object.into();
    move |e| e.into_error(op, object)
}

impl Netlink {
    /// Opens a rtnetlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let open = |op: &'static str| {
            move |e: std::io::Error| KernelError::io(e).into_error(op, "NETLINK_ROUTE socket")
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(open("open"))?;
        socket.bind_auto().map_err(open("bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(open("connect"))?;
        // Both are optional comforts: extended ACKs add the kernel's own error text ("Unknown device type"), capped
        // ACKs keep error replies short. A kernel without them (before 4.12) still answers with an errno.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink {
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(RECEIVE_BUFFER_LEN),
        })
    }

    /// Turns strict checking of dump requests on or off (`NETLINK_GET_STRICT_CHK`, Linux 4.20): with it on, the
    /// kernel filters a dump by the request's header (a route dump by table, for one).
    pub(crate) fn set_strict_check(&mut self, on: bool) -> std::io::Result<()> {
        self.socket.set_netlink_get_strict_chk(on)
    }

    /// Sends a request that changes something (`NLM_F_REQUEST | NLM_F_ACK | flags`) and waits for its ACK. Replies
    /// before the ACK (a `GET` by name answers with the object, then the ACK) are returned.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> std::result::Result<Vec<RouteNetlinkMessage>, KernelError> {
        let sequence = self.send(message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.receive(sequence).map(|(messages, _)| messages)
    }

    /// Sends a dump request (`NLM_F_REQUEST | NLM_F_DUMP`) and collects every answer up to `NLMSG_DONE`; restarts
    /// the dump when the kernel marks it interrupted.
    pub(crate) fn dump(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> std::result::Result<Vec<RouteNetlinkMessage>, KernelError> {
        for _ in 0..DUMP_ATTEMPTS {
            let sequence = self.send(message.clone(), NLM_F_REQUEST | NLM_F_DUMP)?;
            let (messages, interrupted) = self.receive(sequence)?;
            if !interrupted {
                return Ok(messages);
            }
        }
        Err(KernelError {
            errno: Some(libc::EINTR),
            reason: format!("the dump was interrupted by concurrent changes {DUMP_ATTEMPTS} times"),
        })
    }

    fn send(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> std::result::Result<u32, KernelError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        loop {
            match self.socket.send(&bytes, 0) {
                Ok(sent) if sent == bytes.len() => return Ok(self.sequence),
                Ok(sent) => {
                    return Err(KernelError::protocol(format!(
                        "sent {sent} of {} bytes",
                        bytes.len()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(KernelError::io(e)),
            }
        }
    }

    /// Reads answers to `sequence` until its ACK, error or `NLMSG_DONE`. Returns the messages and whether the
    /// kernel flagged the dump as interrupted.
    fn receive(
        &mut self,
        sequence: u32,
    ) -> std::result::Result<(Vec<RouteNetlinkMessage>, bool), KernelError> {
        let mut messages = Vec::new();
        let mut interrupted = false;
        loop {
            self.buffer.clear();
            let received = loop {
                match self.socket.recv(&mut self.buffer, libc::MSG_TRUNC) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(KernelError::io(e)),
                }
            };
            if received > self.buffer.len() {
                return Err(KernelError::protocol(format!(
                    "a {received}-byte netlink datagram does not fit the {}-byte receive buffer",
                    self.buffer.len()
                )));
            }
            let mut offset = 0;
            while offset < received {
                let bytes = &self.buffer[offset..received];
                let frame = NetlinkBuffer::new_checked(bytes).map_err(|e| {
                    KernelError::protocol(format!("malformed netlink message: {e}"))
                })?;
                let length = frame.length() as usize;
                let (frame_sequence, frame_flags) = (frame.sequence_number(), frame.flags());
                offset += (length + 3) & !3;
                if frame_sequence != sequence {
                    continue;
                }
                if frame_flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..length])
                    .map_err(|e| {
                        KernelError::protocol(format!("cannot decode the kernel's answer: {e}"))
                    })?;
                match message.payload {
                    NetlinkPayload::InnerMessage(inner) => messages.push(inner),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok((messages, interrupted)),
                            Some(code) => Err(KernelError::from_code(
                                code.get(),
                                extended_ack_message(&error.header, frame_flags),
                            )),
                        };
                    }
                    NetlinkPayload::Done(done) => {
                        return match done.code {
                            0 => Ok((messages, interrupted)),
                            code => Err(KernelError::from_code(
                                code,
                                message_attribute(&done.extended_ack),
                            )),
                        };
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(KernelError::protocol(
                            "the kernel reported a netlink overrun",
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The kernel's text in an `NLMSG_ERROR` extended ACK: after the echoed request header (and the request itself
/// unless the ACK is capped) come attributes, if `NLM_F_ACK_TLVS` is set.
fn extended_ack_message(echo: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || echo.len() < NETLINK_HEADER_LEN {
        return None;
    }
    let skip = if flags & NLM_F_CAPPED != 0 {
        NETLINK_HEADER_LEN
    } else {
        let request_len = u32::from_ne_bytes([echo[0], echo[1], echo[2], echo[3]]) as usize;
        (request_len + 3) & !3
    };
    message_attribute(echo.get(skip..)?)
}

fn message_attribute(attributes: &[u8]) -> Option<String> {
    NlasIterator::new(attributes)
        .filter_map(|nla| nla.ok())
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .and_then(|nla| parse_string(nla.value()).ok())
}
