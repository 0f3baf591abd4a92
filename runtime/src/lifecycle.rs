//! The runtime-spec operations on an existing container: state, start, kill, delete, and runc's
//! pause and resume.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use libcgroups::common::{CgroupManager, FreezerState};
use libcontainer::container::ContainerStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::cgroups::{manager_for, pids};
use crate::error::{Error, Result};
use crate::hooks::run_hooks_warning_on_failure;
use crate::store::{LoadedContainer, Store, live_status, status_name};

/// The state as runc prints it (`runc state`, `runc list --format json`).
#[derive(Debug, Serialize)]
pub struct StateReport {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

impl StateReport {
    pub fn from_loaded(loaded: &LoadedContainer) -> Self {
        let state = &loaded.container.state;
        let status = loaded.container.status();
        let pid = match status {
            ContainerStatus::Stopped => 0,
            _ => state.pid.unwrap_or(0),
        };
        let owner = state
            .creator
            .and_then(|uid| nix::unistd::User::from_uid(uid.into()).ok().flatten())
            .map(|u| u.name)
            .unwrap_or_default();
        StateReport {
            oci_version: crate::OCI_VERSION.to_string(),
            id: state.id.clone(),
            pid,
            status: status_name(status).to_string(),
            bundle: loaded.meta.bundle.clone(),
            rootfs: loaded.meta.rootfs.clone(),
            created: state
                .created
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_default(),
            owner,
            annotations: state.annotations.clone().filter(|a| !a.is_empty()),
        }
    }
}

fn status_error(loaded: &LoadedContainer, op: &'static str, wanted: &'static str) -> Error {
    Error::WrongStatus {
        id: loaded.container.id().to_string(),
        op,
        status: status_name(loaded.container.status()).to_string(),
        wanted,
    }
}

pub fn state(store: &Store, id: &str) -> Result<StateReport> {
    Ok(StateReport::from_loaded(&store.load(id)?))
}

/// runtime-spec: `start` runs the user's program of a created container.
pub fn start(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock(id, true)?;
    let mut loaded = store.load(id)?;
    if loaded.container.status() != ContainerStatus::Created {
        return Err(status_error(&loaded, "start", "a created container"));
    }
    let config = store.load_created_config(id)?;
    // Open the FIFO before the init process may write to it: a FIFO nobody holds open drops
    // what was written.
    let path = store.exec_fifo(id);
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::io("open exec FIFO", &path, e))?;
    let _ = std::fs::remove_file(&path);
    loaded
        .container
        .start()
        .map_err(|e| Error::lib("start", id, e))?;
    wait_for_exec(&fifo, &loaded)?;
    let hooks = config.hooks().as_ref();
    run_hooks_warning_on_failure(
        "poststart",
        hooks.and_then(|h| h.poststart().as_ref()),
        &loaded.hook_state(),
    );
    Ok(())
}

/// Waits until the init process is about to execute the user's program (it writes a byte to the
/// exec FIFO) or has died trying: runtime-spec config.md#createcontainer-hooks, a failing
/// startContainer hook "MUST generate an error" from `start`.
fn wait_for_exec(fifo: &std::fs::File, loaded: &LoadedContainer) -> Result<()> {
    let id = loaded.container.id();
    // "0": the program is about to run; "E" and a message: a startContainer hook failed.
    let mut buf = [0u8; 4096];
    let outcome = |n: usize, buf: &[u8]| match buf[..n].strip_prefix(b"E") {
        Some(msg) => Err(Error::Invalid(String::from_utf8_lossy(msg).into_owned())),
        None => Ok(()),
    };
    loop {
        let mut fds = [nix::poll::PollFd::new(
            fifo.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
        match nix::unistd::read(fifo.as_raw_fd(), &mut buf) {
            Ok(n @ 1..) => return outcome(n, &buf),
            // Every writer is gone without a word: the init process died.
            Ok(0) => break,
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("read exec FIFO", e)),
        }
        if live_status(&loaded.container.state, loaded.meta.init_start_time)
            == ContainerStatus::Stopped
        {
            // It may have written just before exiting.
            if let Ok(n @ 1..) = nix::unistd::read(fifo.as_raw_fd(), &mut buf) {
                return outcome(n, &buf);
            }
            break;
        }
    }
    Err(Error::Invalid(format!(
        "container {id}: its init process exited before running the program \
         (a startContainer hook or the process setup failed)"
    )))
}

/// Parses a signal as runc does: `9`, `KILL` or `SIGKILL`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::InvalidSignal(s.to_string()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| Error::InvalidSignal(s.to_string()))
}

/// runtime-spec: `kill` sends a signal to the container's process (all of them with `all`).
/// Unlike libcontainer's kill, the saved status is left alone: a signal does not stop a container,
/// its process exiting does.
pub fn kill_container(store: &Store, id: &str, signal: Signal, all: bool) -> Result<()> {
    let _lock = store.lock(id, false)?;
    let loaded = store.load(id)?;
    let status = loaded.container.status();
    if all {
        let cg = &loaded.meta.cgroup_path;
        let manager = manager_for(id, cg)?;
        let _ = manager.freeze(FreezerState::Frozen);
        let result = pids(id, cg).map(|pids| {
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        });
        let _ = manager.freeze(FreezerState::Thawed);
        return result;
    }
    if !matches!(
        status,
        ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused
    ) {
        return Err(Error::NotRunning { id: id.into() });
    }
    let pid = loaded
        .container
        .pid()
        .ok_or(Error::NotRunning { id: id.into() })?;
    match kill(pid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(Error::sys("send signal", e)),
    }
    if status == ContainerStatus::Paused && signal == Signal::SIGKILL {
        // A frozen process cannot die on cgroup v1 until it is thawed.
        let _ = manager_for(id, &loaded.meta.cgroup_path)?.freeze(FreezerState::Thawed);
    }
    Ok(())
}

/// runtime-spec: `delete` removes a stopped container (any container with `force`).
pub fn delete_container(store: &Store, id: &str, force: bool) -> Result<()> {
    let _lock = match store.lock(id, true) {
        Ok(lock) => Some(lock),
        Err(Error::NotExist { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut loaded = match store.load(id) {
        Ok(l) => l,
        Err(Error::NotExist { .. }) => {
            // An aborted create can leave a directory without state.json, as in runc.
            let dir = store.container_dir(id);
            let existed = dir.exists();
            let _ = std::fs::remove_dir_all(&dir);
            store.remove_private(id);
            return if existed || force {
                Ok(())
            } else {
                Err(Error::NotExist { id: id.into() })
            };
        }
        Err(e) => return Err(e),
    };
    let status = loaded.container.status();
    if !force && !matches!(status, ContainerStatus::Stopped | ContainerStatus::Created) {
        return Err(Error::WrongStatus {
            id: id.into(),
            op: "delete",
            status: status_name(status).into(),
            wanted: "a stopped container (or --force)",
        });
    }
    let config = store.load_created_config(id).ok();
    let state = &loaded.container.state;
    let plain_stopped = status == ContainerStatus::Stopped
        && !loaded.meta.cgroup_path.as_os_str().is_empty()
        && state.intel_rdt_dir.is_none()
        && state.intel_rdt_monitoring_dir.is_none()
        && state.clean_up_intel_rdt_subdirectory != Some(true);
    if plain_stopped {
        // What libcontainer's delete does for a stopped container, without its cgroup manager.
        crate::cgroups::remove_cgroup_on_host(id, &loaded.meta.cgroup_path)?;
        let dir = store.container_dir(id);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
    } else {
        loaded
            .container
            .delete(force)
            .map_err(|e| Error::lib("delete", id, e))?;
    }
    let hooks = config.as_ref().and_then(|c| c.hooks().as_ref());
    loaded.container.set_status(ContainerStatus::Stopped);
    run_hooks_warning_on_failure(
        "poststop",
        hooks.and_then(|h| h.poststop().as_ref()),
        &loaded.hook_state(),
    );
    store.remove_private(id);
    Ok(())
}

pub fn pause(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock(id, true)?;
    let mut loaded = store.load(id)?;
    if loaded.container.status() != ContainerStatus::Running {
        return Err(status_error(&loaded, "pause", "a running container"));
    }
    loaded
        .container
        .pause()
        .map_err(|e| Error::lib("pause", id, e))
}

pub fn resume(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock(id, true)?;
    let mut loaded = store.load(id)?;
    if loaded.container.status() != ContainerStatus::Paused {
        return Err(status_error(&loaded, "resume", "a paused container"));
    }
    loaded
        .container
        .resume()
        .map_err(|e| Error::lib("resume", id, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_as_runc_does() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
