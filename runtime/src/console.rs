//! The terminal of a process that `run` or `exec` stays attached to.
//!
//! With `process.terminal: true` and no `--console-socket`, runc allocates the terminal itself:
//! it receives the pty master over a socket of its own and proxies it to its own stdin and stdout
//! (foreground.rs). polis-runc does the same. Its set-up (init/) speaks only the console-socket protocol,
//! so polis-runc listens on a socket in the container's private directory, hands its path to
//! the set-up as if it were `--console-socket`, and takes the master from it once the init (or
//! exec'd) process has sent it.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use crate::error::{Error, Result};

/// How long to wait for the pty master once the process is set up. The process
/// sends it before it reports ready, so this only guards against a process that died.
const MASTER_TIMEOUT_MS: u16 = 10_000;

/// Where the pty master of a process goes: the caller's `--console-socket`, or, when polis-runc
/// proxies the terminal itself, a listener of its own whose path the set-up gets in its place.
pub struct ConsoleTarget {
    own: Option<ConsoleListener>,
    path: Option<PathBuf>,
}

impl ConsoleTarget {
    /// With `own_terminal`, listens on `<dir>/<name>`; otherwise passes `given` on.
    pub fn new(
        own_terminal: bool,
        given: Option<&PathBuf>,
        dir: &Path,
        name: &str,
    ) -> Result<Self> {
        if !own_terminal {
            return Ok(ConsoleTarget {
                own: None,
                path: given.cloned(),
            });
        }
        let listener = ConsoleListener::bind(dir, name)?;
        let path = Some(listener.path.clone());
        Ok(ConsoleTarget {
            own: Some(listener),
            path,
        })
    }

    /// The console socket the process sends its terminal to.
    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// The pty master, when polis-runc listened for it itself.
    pub fn receive_own_master(self) -> Result<Option<OwnedFd>> {
        self.own.map(|l| l.receive_master()).transpose()
    }
}

/// A socket that receives a pty master, as a `--console-socket` would.
struct ConsoleListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleListener {
    /// Listens on `<dir>/<name>`. The socket is bound through `/proc/self/fd`, so a long state
    /// root or container ID never overflows the 108 bytes of a socket address.
    fn bind(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let dir_fd = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
        let short = format!("/proc/self/fd/{}/{name}", dir_fd.as_raw_fd());
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&short).map_err(|e| Error::io("listen on", &path, e))?;
        Ok(ConsoleListener { listener, path })
    }

    /// Takes the pty master the process sent over its connection.
    fn receive_master(&self) -> Result<OwnedFd> {
        let fail = |what: &str| Error::Invalid(format!("receive the terminal: {what}"));
        let ready = |fd: std::os::fd::BorrowedFd<'_>| -> Result<()> {
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(MASTER_TIMEOUT_MS)) {
                Ok(0) => Err(fail("the container's process sent nothing")),
                Ok(_) => Ok(()),
                Err(e) => Err(Error::sys("wait for the terminal", e)),
            }
        };
        ready(self.listener.as_fd())?;
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| Error::io("accept on", &self.path, e))?;
        ready(stream.as_fd())?;
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| Error::sys("receive the terminal", e))?;
        let cmsgs = msg
            .cmsgs()
            .map_err(|e| Error::sys("receive the terminal", e))?;
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg
                && let Some(&fd) = fds.first()
            {
                // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Err(fail("no descriptor came with the message"))
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
