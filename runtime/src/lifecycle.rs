//! The runtime-spec operations on an existing container: state, start, kill, delete, and runc's
//! pause and resume.

use std::path::PathBuf;

use libcgroups::common::{CgroupManager, FreezerState};
use libcontainer::container::ContainerStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::cgroups::{manager_for, pids};
use crate::error::{Error, Result};
use crate::hooks::run_hooks_warning_on_failure;
use crate::store::{LoadedContainer, Store, status_name};

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

/// runtime-spec: `start` runs the user's program of a created container. It returns once the
/// init process is about to execute it, or with the reason it cannot: runtime.md#lifecycle, a
/// failing startContainer hook "MUST generate an error" from `start`.
pub fn start(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock(id, true)?;
    let mut loaded = store.load(id)?;
    if loaded.container.status() != ContainerStatus::Created {
        return Err(status_error(&loaded, "start", "a created container"));
    }
    let socket = store.start_socket(id);
    let started = crate::init::signal_start(&socket);
    let _ = std::fs::remove_file(&socket);
    match started {
        Ok(()) => {}
        Err(Some(reason)) => return Err(Error::Invalid(reason)),
        Err(None) => {
            return Err(Error::Invalid(format!(
                "container {id}: its init process exited before running the program \
                 (a startContainer hook or the process setup failed)"
            )));
        }
    }
    loaded.container.state.status = ContainerStatus::Running;
    run_hooks_warning_on_failure(
        "poststart",
        loaded.hooks("poststart").as_ref(),
        &loaded.hook_state(),
    );
    Ok(())
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
/// The saved status is left alone: a signal does not stop a container,
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
            store.remove_lock(id);
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
    let poststop = loaded.hooks("poststop");
    let cgroup_path = loaded.meta.cgroup_path.clone();
    if status != ContainerStatus::Stopped {
        kill_everything(id, &cgroup_path, loaded.container.pid());
    }
    if !cgroup_path.as_os_str().is_empty() {
        crate::cgroups::remove_cgroup_on_host(id, &cgroup_path)?;
    }
    let dir = store.container_dir(id);
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
    loaded.container.state.status = ContainerStatus::Stopped;
    run_hooks_warning_on_failure("poststop", poststop.as_ref(), &loaded.hook_state());
    store.remove_lock(id);
    Ok(())
}

pub fn pause(store: &Store, id: &str) -> Result<()> {
    freeze(store, id, FreezerState::Frozen)
}

pub fn resume(store: &Store, id: &str) -> Result<()> {
    freeze(store, id, FreezerState::Thawed)
}

/// runc's `pause` and `resume`: the container's cgroup frozen or thawed, and the state saying so.
fn freeze(store: &Store, id: &str, to: FreezerState) -> Result<()> {
    let _lock = store.lock(id, true)?;
    let mut loaded = store.load(id)?;
    let (op, from, wanted, status) = match to {
        FreezerState::Frozen => (
            "pause",
            ContainerStatus::Running,
            "a running container",
            ContainerStatus::Paused,
        ),
        _ => (
            "resume",
            ContainerStatus::Paused,
            "a paused container",
            ContainerStatus::Running,
        ),
    };
    if loaded.container.status() != from {
        return Err(status_error(&loaded, op, wanted));
    }
    manager_for(id, &loaded.meta.cgroup_path)?
        .freeze(to)
        .map_err(|e| Error::Cgroup {
            id: id.to_string(),
            reason: format!("{op}: {e}"),
        })?;
    loaded.container.state.status = status;
    loaded.save()
}

/// Kills every process of a container that is being deleted and waits for its init process to go,
/// so that its cgroup can be removed (runtime.md#delete).
fn kill_everything(id: &str, cgroup_path: &std::path::Path, init: Option<Pid>) {
    if let Ok(manager) = manager_for(id, cgroup_path) {
        let _ = manager.freeze(FreezerState::Frozen);
        if let Ok(pids) = pids(id, cgroup_path) {
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = manager.freeze(FreezerState::Thawed);
    }
    if let Some(pid) = init {
        let _ = kill(pid, Signal::SIGKILL);
        // A child of this process (run) is reaped by its waiter; others are reaped by their parent.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while crate::store::process_start_time(pid.as_raw()).is_some()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
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
