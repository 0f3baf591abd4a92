//! The channel between polis-runc and a process it clones: a SOCK_SEQPACKET socket pair, one
//! message per send, each a tag byte and a body. Both ends are close-on-exec, so the parent reads
//! end-of-file once the child has executed the user's program (or died).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};

/// Parent to child: go on (the id mappings are written); body: JSON (`Go`, the PID only).
pub const GO: u8 = b'G';
/// Parent to child: the process is in its cgroup; body: JSON (`Go`, with where the cgroup is).
/// The child makes its mounts meanwhile and waits for this before its first `cgroup` mount, its
/// new cgroup namespace and the hooks.
pub const PLACED: u8 = b'P';
/// Child to parent: the mounts are made; run prestart and createRuntime hooks.
pub const HOOKS: u8 = b'H';
/// Parent to child: the hooks ran.
pub const HOOKS_DONE: u8 = b'h';
/// Child to parent: set up and waiting for `start` (init) .
pub const READY: u8 = b'R';
/// Child to parent: the set-up failed; body: why.
pub const ERROR: u8 = b'E';

pub struct Channel(OwnedFd);

/// A connected pair: (parent's end, child's end).
pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, tag: u8, body: &[u8]) -> io::Result<()> {
        let mut msg = Vec::with_capacity(body.len() + 1);
        msg.push(tag);
        msg.extend_from_slice(body);
        loop {
            match send(self.0.as_raw_fd(), &msg, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message, or None once the other end is closed.
    pub fn recv(&self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut buf = vec![0u8; 65536];
        loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    buf.truncate(n);
                    let tag = buf.remove(0);
                    return Ok(Some((tag, buf)));
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends a message to the other process; when it is gone, the error is the reason it sent
    /// before it went (its ERROR message), else what the send met.
    pub fn tell(&self, tag: u8, body: &[u8]) -> Result<(), String> {
        let Err(sent) = self.send(tag, body) else {
            return Ok(());
        };
        match self.recv() {
            Ok(Some((ERROR, reason))) => Err(String::from_utf8_lossy(&reason).into_owned()),
            _ => Err(format!("signal the container's process: {sent}")),
        }
    }

    /// Waits for one message with `tag`; an error message or end-of-file is an error.
    pub fn expect(&self, tag: u8) -> Result<Vec<u8>, String> {
        match self.recv() {
            Ok(Some((t, body))) if t == tag => Ok(body),
            Ok(Some((ERROR, body))) => Err(String::from_utf8_lossy(&body).into_owned()),
            Ok(Some((t, _))) => Err(format!("unexpected message {:?}", t as char)),
            Ok(None) => Err("the process exited during set-up".into()),
            Err(e) => Err(format!("read from the process: {e}")),
        }
    }
}
