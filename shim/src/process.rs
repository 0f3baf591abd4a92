//! A container's processes as the shim tracks them (its init and its execs), and the table that matches reaped
//! pids to them.

use crate::stdio::{ProcessIo, StdioPaths};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct ProcessState {
    pub status: Status,
    pub pid: u32,
    pub exit_status: u32,
    pub exited_at: Option<Timestamp>,
}

/// The init process (exec_id "") or an exec of a container.
pub struct Process {
    pub container_id: String,
    pub exec_id: String,
    pub stdio: StdioPaths,
    /// The OCI process (JSON) of an exec, as containerd sent it.
    pub spec: Vec<u8>,
    state: Mutex<ProcessState>,
    exited: Condvar,
    io: Mutex<Option<ProcessIo>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these plain values half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Process {
    pub fn new(container_id: &str, exec_id: &str, stdio: StdioPaths, spec: Vec<u8>) -> Process {
        Process {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            state: Mutex::new(ProcessState {
                status: Status::Created,
                pid: 0,
                exit_status: 0,
                exited_at: None,
            }),
            exited: Condvar::new(),
            io: Mutex::new(None),
        }
    }

    pub fn state(&self) -> ProcessState {
        lock(&self.state).clone()
    }

    pub fn set_pid(&self, pid: u32) {
        lock(&self.state).pid = pid;
    }

    pub fn set_io(&self, io: ProcessIo) {
        *lock(&self.io) = Some(io);
    }

    pub fn with_io<R>(&self, f: impl FnOnce(&mut ProcessIo) -> R) -> Option<R> {
        lock(&self.io).as_mut().map(f)
    }

    /// Moves a live process to `status`; false when it has already exited.
    pub fn set_status(&self, status: Status) -> bool {
        let mut s = lock(&self.state);
        if s.status == Status::Stopped {
            return false;
        }
        s.status = status;
        true
    }

    /// Records the exit (after the output is drained) and wakes every Wait. False if it was already recorded.
    pub fn set_exited(&self, exit_status: i32) -> bool {
        self.with_io(|io| io.wait_drained());
        let mut s = lock(&self.state);
        if s.status == Status::Stopped {
            return false;
        }
        s.status = Status::Stopped;
        s.exit_status = exit_status as u32;
        s.exited_at = containerd_shim::util::timestamp().ok();
        self.exited.notify_all();
        true
    }

    /// Blocks until the process has exited.
    pub fn wait(&self) -> ProcessState {
        let mut s = lock(&self.state);
        while s.status != Status::Stopped {
            s = self.exited.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.clone()
    }

    /// Drops the shim's side of the streams (stdin closed; output copiers end with the process).
    pub fn close_io(&self) {
        lock(&self.io).take();
    }
}

/// Matches reaped pids to processes. An exit can arrive before the shim has read the pid file (a process that
/// exits at once): such exits wait here, with the time they came, until their process is registered.
#[derive(Default)]
pub struct PidTable {
    live: HashMap<u32, Arc<Process>>,
    early: HashMap<u32, (i32, Instant)>,
}

/// Unclaimed exits older than this belong to the shim's own runtime commands and are forgotten.
const EARLY_EXIT_LIMIT: Duration = Duration::from_secs(60);

impl PidTable {
    /// Registers `process` under `pid`, which it got from a command started at `since`. Returns an exit that
    /// arrived already (after `since`), for the caller to record.
    pub fn register(&mut self, pid: u32, process: &Arc<Process>, since: Instant) -> Option<i32> {
        if let Some((code, at)) = self.early.remove(&pid) {
            if at >= since {
                return Some(code);
            }
        }
        self.live.insert(pid, Arc::clone(process));
        None
    }

    /// The process that `pid` was, removed from the table; or None, and the exit kept for a later register.
    pub fn exited(&mut self, pid: u32, code: i32) -> Option<Arc<Process>> {
        if let Some(p) = self.live.remove(&pid) {
            return Some(p);
        }
        let now = Instant::now();
        self.early
            .retain(|_, (_, at)| now.duration_since(*at) < EARLY_EXIT_LIMIT);
        self.early.insert(pid, (code, now));
        None
    }

    pub fn forget(&mut self, pid: u32) {
        self.live.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_before_registration_is_claimed_by_the_process() {
        let mut table = PidTable::default();
        let p = Arc::new(Process::new("c", "", StdioPaths::default(), Vec::new()));
        let since = Instant::now();
        assert!(table.exited(42, 3).is_none());
        assert_eq!(table.register(42, &p, since), Some(3));
        assert!(
            table.exited(42, 0).is_none(),
            "a claimed exit is not the live process's"
        );
    }

    #[test]
    fn an_exit_from_before_the_command_started_is_not_claimed() {
        let mut table = PidTable::default();
        let p = Arc::new(Process::new("c", "", StdioPaths::default(), Vec::new()));
        assert!(table.exited(7, 1).is_none());
        std::thread::sleep(Duration::from_millis(2));
        let since = Instant::now();
        assert_eq!(table.register(7, &p, since), None);
        assert!(table.exited(7, 0).is_some());
    }

    #[test]
    fn wait_returns_after_the_exit_is_recorded() {
        let p = Arc::new(Process::new("c", "e", StdioPaths::default(), Vec::new()));
        let waiter = {
            let p = Arc::clone(&p);
            std::thread::spawn(move || p.wait().exit_status)
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.set_exited(137));
        assert!(!p.set_exited(1), "only the first exit counts");
        assert_eq!(waiter.join().unwrap(), 137);
        assert!(!p.set_status(Status::Running));
    }
}
