//! OOM events: a thread per container that wakes when the kernel's OOM killer acts in the container's memory
//! cgroup (found by polis-host's `cgroup::locate`), so the shim can publish TaskOOM. cgroup v1: an eventfd registered on `memory.oom_control` through
//! `cgroup.event_control`; cgroup v2: inotify on `memory.events`, whose `oom_kill` count grows.
//! The thread ends when the cgroup is removed.

use polis_host::cgroup::{self, Cgroup};
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OomError {
    #[error("find the cgroup of pid {pid}: {source}")]
    Locate { pid: u32, source: cgroup::Error },
    #[error("the container's cgroup has no memory controller")]
    NoMemoryController,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Starts watching the memory cgroup of `pid`; `on_oom` runs on every OOM kill.
pub fn watch(pid: u32, on_oom: impl Fn() + Send + 'static) -> Result<(), OomError> {
    let cgroup = cgroup::locate(pid).map_err(|source| OomError::Locate { pid, source })?;
    match cgroup {
        Cgroup::V1(dirs) => {
            let dir = dirs.get("memory").ok_or(OomError::NoMemoryController)?;
            let efd = register_v1(dir)?;
            let control = dir.join("memory.oom_control");
            spawn(move || watch_v1(efd, &control, on_oom))
        }
        Cgroup::V2(dir) => {
            let (ifd, events) = register_v2(&dir)?;
            spawn(move || watch_v2(ifd, &events, on_oom))
        }
    }
}

fn spawn(body: impl FnOnce() + Send + 'static) -> Result<(), OomError> {
    std::thread::Builder::new()
        .name("oom".into())
        .stack_size(64 * 1024)
        .spawn(body)
        .map(|_| ())
        .map_err(|source| OomError::Io {
            what: "start the OOM watcher for",
            path: PathBuf::new(),
            source,
        })
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OomError {
    let path = path.to_path_buf();
    move |source| OomError::Io { what, path, source }
}

/// cgroup v1: `<eventfd> <fd of memory.oom_control>` written to cgroup.event_control.
fn register_v1(dir: &Path) -> Result<OwnedFd, OomError> {
    let control_path = dir.join("memory.oom_control");
    let control = File::open(&control_path).map_err(io_error("open", &control_path))?;
    // SAFETY: eventfd returns a new fd or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io_error("eventfd for", &control_path)(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: raw is a new eventfd that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let event_control = dir.join("cgroup.event_control");
    std::fs::write(
        &event_control,
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )
    .map_err(io_error("write", &event_control))?;
    Ok(efd)
}

fn watch_v1(efd: OwnedFd, control: &Path, on_oom: impl Fn()) {
    let mut file = File::from(efd);
    let mut count = [0u8; 8];
    // The eventfd also fires when the cgroup is removed: then the control file is gone and the watch ends.
    while file.read_exact(&mut count).is_ok() {
        if !control.exists() {
            return;
        }
        on_oom();
    }
}

/// cgroup v2: inotify on memory.events.
fn register_v2(dir: &Path) -> Result<(OwnedFd, PathBuf), OomError> {
    let events = dir.join("memory.events");
    // SAFETY: inotify_init1 returns a new fd or -1.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(io_error("inotify for", &events)(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: raw is a new inotify fd that nothing else owns.
    let ifd = unsafe { OwnedFd::from_raw_fd(raw) };
    let c_path = CString::new(events.as_os_str().as_bytes())
        .map_err(|e| io_error("watch", &events)(e.into()))?;
    // SAFETY: adding a watch for a NUL-terminated path on our inotify fd.
    if unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), c_path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(io_error("watch", &events)(std::io::Error::last_os_error()));
    }
    Ok((ifd, events))
}

fn oom_kills(events: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(events).ok()?;
    Some(cgroup::v2::memory_events(&text).oom_kill)
}

fn watch_v2(ifd: OwnedFd, events: &Path, on_oom: impl Fn()) {
    let mut seen = oom_kills(events).unwrap_or(0);
    let mut file = File::from(ifd);
    let mut buf = [0u8; 4096];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            return;
        }
        // IN_IGNORED (the watch was removed with the cgroup) or the file is gone: the container is gone.
        let Some(kills) = oom_kills(events) else {
            return;
        };
        if kills > seen {
            seen = kills;
            on_oom();
        }
    }
}
