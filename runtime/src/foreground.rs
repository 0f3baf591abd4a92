//! Staying attached to a container's process: `run` and `exec` without `--detach`.
//!
//! All signals are blocked before the process is created, so its exit can never slip past:
//! SIGCHLD stays pending until `sigwait` takes it, and every child is reaped with WNOHANG in a
//! loop. Other signals sent to polis-runc are forwarded to the container's process, as runc does.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Signals that are never blocked: they report faults in polis-runc itself.
const FAULTS: [Signal; 5] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGABRT,
];

/// Blocks every signal but faults. Call before the container's process is created; the
/// init process clears the mask in the container before the user's program starts.
pub fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::all();
    for s in FAULTS {
        set.remove(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::sys("block signals", e))?;
    Ok(set)
}

/// The exit code a shell would report: the process's status, or 128 + the killing signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for `pid` to exit, forwarding signals to it; returns its exit code.
pub fn wait_forwarding_signals(pid: Pid, blocked: &SigSet) -> Result<i32> {
    // The process may already have exited: reap before waiting for a signal.
    if let Some(code) = reap(pid)? {
        return Ok(code);
    }
    loop {
        let signal = blocked
            .wait()
            .map_err(|e| Error::sys("wait for signals", e))?;
        match signal {
            Signal::SIGCHLD => {
                if let Some(code) = reap(pid)? {
                    return Ok(code);
                }
            }
            Signal::SIGPIPE => {}
            other => {
                let _ = kill(pid, other);
            }
        }
    }
}

/// Reaps every exited child; returns `pid`'s exit code once it has exited.
fn reap(pid: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(status) => {
                if status.pid() == Some(pid)
                    && let Some(code) = exit_code(status)
                {
                    return Ok(Some(code));
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                return Err(Error::Invalid(format!(
                    "process {pid} is not a child of polis-runc"
                )));
            }
            Err(e) => return Err(Error::sys("wait for the container's process", e)),
        }
    }
}

/// Waits for `pid` as [`wait_forwarding_signals`] does, while proxying its terminal: what
/// polis-runc reads on stdin goes to the pty master, and what the master gives goes to
/// polis-runc's stdout, as runc's `run` and `exec` do without `--detach`. When stdin is a
/// terminal it is put in raw mode (the container's pty does the line editing and echo) and
/// restored on return, and its size is copied to the container's terminal on every SIGWINCH.
/// The first size is the caller's to set before the process runs ([`size_terminal_like_stdin`],
/// or `consoleSize` for `exec`).
pub fn wait_with_terminal(pid: Pid, blocked: &SigSet, master: OwnedFd) -> Result<i32> {
    let signals = SignalFd::with_flags(blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::sys("watch signals", e))?;
    let stdin = std::io::stdin();
    let _raw = RawMode::enter(&stdin);
    let mut to_master = std::fs::File::from(
        master
            .try_clone()
            .map_err(|e| Error::Invalid(format!("duplicate the terminal: {e}")))?,
    );
    let mut master_open = true;
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        if let Some(code) = reap(pid)? {
            drain(&master, master_open, &mut buf);
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("wait for the terminal", e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (signal_ready, master_ready) = (ready(0), master_open && ready(1));
        let stdin_ready = stdin_open && ready(if master_open { 2 } else { 1 });
        if master_ready {
            master_open = copy_once(&master, &mut std::io::stdout(), &mut buf);
        }
        if stdin_ready {
            stdin_open = copy_once(&stdin, &mut to_master, &mut buf);
        }
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) | Ok(Signal::SIGPIPE) => {}
                    Ok(Signal::SIGWINCH) => size_terminal_like_stdin(&master),
                    Ok(other) => {
                        let _ = kill(pid, other);
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// Copies what one read gives from `from` to `to`; false once `from` is finished (end of file, or
/// EIO from a master whose every slave is closed).
fn copy_once(from: &impl AsFd, to: &mut impl Write, buf: &mut [u8]) -> bool {
    match nix::unistd::read(from.as_fd().as_raw_fd(), buf) {
        Ok(0) => false,
        Ok(n) => {
            // Output nobody reads (a closed stdout) is dropped; the process keeps running.
            let _ = to.write_all(&buf[..n]).and_then(|()| to.flush());
            true
        }
        Err(Errno::EINTR) | Err(Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Copies what is left on the terminal once the process has exited, without waiting for
/// processes it left behind that still hold the terminal open.
fn drain(master: &OwnedFd, open: bool, buf: &mut [u8]) {
    if !open {
        return;
    }
    let mut stdout = std::io::stdout();
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1..))
            || !copy_once(master, &mut stdout, buf)
        {
            return;
        }
    }
}

/// The size of the terminal on polis-runc's stdin, as (rows, columns); None when stdin is no
/// terminal.
pub fn stdin_window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize struct that outlives the call.
    let rc = unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Gives the container's terminal the size of the one on polis-runc's stdin. `run` calls this
/// before `start`, so the program never sees the terminal without its size.
pub fn size_terminal_like_stdin(master: &OwnedFd) {
    let Some((rows, cols)) = stdin_window_size() else {
        return;
    };
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// polis-runc's own terminal in raw mode, restored when dropped. Nothing happens when stdin is
/// not a terminal.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter(stdin: &std::io::Stdin) -> RawMode {
        let Ok(saved) = termios::tcgetattr(stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawMode { saved: None };
        }
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}
