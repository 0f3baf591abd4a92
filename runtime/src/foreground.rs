//! Staying attached to a container's process: `run` and `exec` without `--detach`.
//!
//! All signals are blocked before the process is created, so its exit can never slip past:
//! SIGCHLD stays pending until `sigwait` takes it, and every child is reaped with WNOHANG in a
//! loop. Other signals sent to polis-runc are forwarded to the container's process, as runc does.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
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
/// executor clears the mask in the container before the user's program starts.
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
