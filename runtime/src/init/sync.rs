//! The channel between polis-runc and a process it clones: a SOCK_SEQPACKET socket pair, one
//! message per send, each a tag byte and a body. Both ends are close-on-exec, so the parent reads
//! end-of-file once the child has executed the user's program (or died).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    send, sendmsg, socketpair,
};

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
/// First child to parent, when a user namespace is joined and a PID namespace made: the PID of
/// the init process it started as polis-runc's child (decimal); it then exits.
pub const FORKED: u8 = b'F';
/// Child to parent: its seccomp listener (SCMP_ACT_NOTIFY), the descriptor with the message.
pub const SECCOMP: u8 = b'S';
/// Parent to child: the listener went to the agent at linux.seccomp.listenerPath.
pub const SECCOMP_DONE: u8 = b's';

pub struct Channel(OwnedFd);

/// A message: its tag, its body and the descriptor that came with it.
pub type Message = (u8, Vec<u8>, Option<OwnedFd>);

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

    /// Sends a message with a descriptor.
    pub fn send_fd(&self, tag: u8, fd: &OwnedFd) -> io::Result<()> {
        let fds = [fd.as_raw_fd()];
        loop {
            match sendmsg::<()>(
                self.0.as_raw_fd(),
                &[IoSlice::new(&[tag])],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message, or None once the other end is closed.
    pub fn recv(&self) -> io::Result<Option<(u8, Vec<u8>)>> {
        Ok(self.recv_fd()?.map(|(tag, body, _)| (tag, body)))
    }

    /// The next message and the descriptor that came with it, or None once the other end is
    /// closed.
    pub fn recv_fd(&self) -> io::Result<Option<Message>> {
        let mut buf = vec![0u8; 65536];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let (n, fd) = match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fd = None;
                    for cmsg in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = cmsg {
                            for raw in fds {
                                // SAFETY: the kernel just installed this descriptor for us.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    (msg.bytes, fd)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            let tag = buf.remove(0);
            return Ok(Some((tag, buf, fd)));
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
