//! The state root (`--root`): one directory per container, a lock per container, its `state.json`
//! (runtime.md#state, in libcontainer's `State` shape, which earlier polis-runc versions wrote), and
//! the facts polis-runc keeps beside it.
//!
//! Every polis-runc command that changes a container holds that container's lock, so writers never
//! race; state.json is replaced atomically. Readers still retry a `state.json` they catch
//! half-written, as one written in place by an older polis-runc could be.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libcontainer::container::{Container, ContainerStatus, State};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::validate_container_id;
use polis_host::lock::{LockKind, RecordLock};

const META_FILE: &str = "polis.json";
const CREATED_CONFIG_FILE: &str = "polis-config.json";
const LOCK_DIR: &str = ".locks";
const PRIVATE_DIR: &str = ".polis";

/// What polis-runc records about a container in addition to its state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerMeta {
    /// The bundle the user gave, as an absolute path.
    pub bundle: PathBuf,
    /// The container's root filesystem, as an absolute path.
    pub rootfs: PathBuf,
    /// Start time of the init process (clock ticks since boot), to tell it from a reused PID.
    pub init_start_time: Option<u64>,
    /// The cgroup path as resolved at create time (after systemd-style translation).
    pub cgroup_path: PathBuf,
}

/// The state root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A record lock held on a container's lock file; released on drop.
#[derive(Debug)]
pub struct ContainerLock {
    _lock: RecordLock,
}

/// A container as loaded from the store, with its status checked against the live process.
#[derive(Debug)]
pub struct LoadedContainer {
    pub container: Container,
    pub meta: ContainerMeta,
}

impl LoadedContainer {
    /// The state hooks get, with the user's bundle (runtime.md#state).
    pub fn hook_state(&self) -> libcontainer::container::State {
        let mut state = self.container.state.clone();
        if !self.meta.bundle.as_os_str().is_empty() {
            state.bundle = self.meta.bundle.clone();
        }
        state
    }
}

impl Store {
    /// Opens the state root, creating it (mode 0700) when missing.
    pub fn open(root: &Path) -> Result<Self> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(root.join(LOCK_DIR))
            .map_err(|e| Error::io("create state root", root, e))?;
        let root = fs::canonicalize(root).map_err(|e| Error::io("resolve state root", root, e))?;
        Ok(Store { root })
    }

    /// The state root for commands that only act on existing containers: nothing is created, so
    /// a root that does not exist, or is read-only, simply holds no container (as with runc).
    pub fn existing(root: &Path) -> Self {
        Store {
            root: fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Takes a new container's lock for `create`, making its lock file.
    pub fn lock_new(&self, id: &str) -> Result<ContainerLock> {
        self.lock_file(id, true, true)
    }

    /// Takes an existing container's lock, exclusive for commands that change it.
    /// A container without a lock file does not exist (create makes it, delete removes it).
    pub fn lock(&self, id: &str, exclusive: bool) -> Result<ContainerLock> {
        self.lock_file(id, exclusive, false)
    }

    fn lock_file(&self, id: &str, exclusive: bool, create: bool) -> Result<ContainerLock> {
        validate_container_id(id)?;
        let path = self.root.join(LOCK_DIR).join(id);
        let kind = if exclusive {
            LockKind::Exclusive
        } else {
            LockKind::Shared
        };
        // A record lock, not flock: it belongs to this process only, so the container's init process
        // (forked while the lock is held, and alive until `start`) never holds it.
        match RecordLock::acquire(&path, kind, create) {
            Ok(lock) => Ok(ContainerLock { _lock: lock }),
            Err(polis_host::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(Error::NotExist { id: id.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// polis-runc's private directory for a container, outside the one `list` shows: the sockets
    /// of `start` and of a terminal polis-runc proxies.
    pub fn private_dir(&self, id: &str) -> PathBuf {
        self.root.join(PRIVATE_DIR).join(id)
    }

    /// The socket `start` connects to, which the init process listens on.
    pub fn start_socket(&self, id: &str) -> PathBuf {
        self.private_dir(id).join(crate::setup::START_SOCKET)
    }

    /// Removes the private directory and the lock file of a deleted container. Call while
    /// holding its lock.
    pub fn remove_private(&self, id: &str) {
        let _ = fs::remove_dir_all(self.private_dir(id));
        self.remove_lock(id);
    }

    /// Removes the lock file of a deleted container. Call while holding its lock.
    pub fn remove_lock(&self, id: &str) {
        let _ = fs::remove_file(self.root.join(LOCK_DIR).join(id));
    }

    /// The IDs of all containers in the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(Error::io("list state root", &self.root, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            ids.push(name.to_string());
        }
        ids.sort();
        Ok(ids)
    }

    /// Loads a container and refreshes its status from the live process.
    pub fn load(&self, id: &str) -> Result<LoadedContainer> {
        validate_container_id(id)?;
        let dir = self.container_dir(id);
        let state = read_state(&dir, id)?;
        let meta = read_meta(&dir).unwrap_or_default();
        let mut container = Container { state, root: dir };
        let status = live_status(&container.state, meta.init_start_time);
        container.set_status(status);
        Ok(LoadedContainer { container, meta })
    }

    /// Saves the config.json the container was created from.
    pub fn save_created_config(&self, id: &str, config: &serde_json::Value) -> Result<()> {
        let data = serde_json::to_vec(config).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&self.container_dir(id).join(CREATED_CONFIG_FILE), &data)
    }

    /// The config.json the container was created from.
    pub fn load_created_config(&self, id: &str) -> Result<oci_spec::runtime::Spec> {
        let path = self.container_dir(id).join(CREATED_CONFIG_FILE);
        let data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&data).map_err(|e| Error::Config {
            path,
            reason: e.to_string(),
        })
    }

    pub fn save_meta(&self, id: &str, meta: &ContainerMeta) -> Result<()> {
        let dir = self.container_dir(id);
        let data = serde_json::to_vec(meta).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&dir.join(META_FILE), &data)
    }
}

/// Saves a container's state.json (runtime.md#state), atomically.
pub fn save_state(container_dir: &Path, state: &State) -> Result<()> {
    let data = serde_json::to_vec(state).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&State::file_path(container_dir), &data)
}

/// Replaces a file of the state root atomically: a reader sees the old or the new content. Not
/// synced: the state root lives on tmpfs (`/run/polis-runc`) and its containers do not outlive a
/// reboot.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    Ok(polis_host::atomic::replace_volatile(path, data)?)
}

fn read_state(dir: &Path, id: &str) -> Result<State> {
    let path = State::file_path(dir);
    // A writer truncates and rewrites state.json in place; a reader can catch it empty or partial.
    let mut last_err = None;
    for _ in 0..50 {
        match fs::read(&path) {
            Ok(data) => match serde_json::from_slice::<State>(&data) {
                Ok(state) => return Ok(state),
                Err(e) => last_err = Some(e.to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotExist { id: id.to_string() });
            }
            Err(e) => return Err(Error::io("read state", &path, e)),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(Error::Invalid(format!(
        "state of container {id} in {} is unreadable: {}",
        path.display(),
        last_err.unwrap_or_default()
    )))
}

fn read_meta(dir: &Path) -> Option<ContainerMeta> {
    let data = fs::read(dir.join(META_FILE)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Start time of a process in clock ticks since boot, `None` if it is gone or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    match stat.state().ok()? {
        procfs::process::ProcState::Zombie | procfs::process::ProcState::Dead => None,
        _ => Some(stat.starttime),
    }
}

/// The status a container has now: its saved status, unless its init process is gone.
pub fn live_status(state: &State, start_time: Option<u64>) -> ContainerStatus {
    let alive = match state.pid {
        Some(pid) if pid > 0 => match (process_start_time(pid), start_time) {
            (Some(now), Some(recorded)) => now == recorded,
            (Some(_), None) => true,
            (None, _) => false,
        },
        _ => false,
    };
    match (alive, state.status) {
        (false, ContainerStatus::Creating) => ContainerStatus::Creating,
        (false, _) => ContainerStatus::Stopped,
        (true, ContainerStatus::Stopped) => ContainerStatus::Running,
        (true, status) => status,
    }
}

/// The status in the words of the runtime spec and runc.
pub fn status_name(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_pid_is_stopped() {
        let mut state = State {
            pid: Some(i32::MAX - 1),
            status: ContainerStatus::Running,
            ..Default::default()
        };
        assert_eq!(live_status(&state, None), ContainerStatus::Stopped);
        state.pid = Some(std::process::id() as i32);
        assert_eq!(live_status(&state, None), ContainerStatus::Running);
        // Same PID, other start time: the PID was reused by another process.
        let real = process_start_time(std::process::id() as i32).unwrap();
        assert_eq!(
            live_status(&state, Some(real + 1)),
            ContainerStatus::Stopped
        );
        assert_eq!(live_status(&state, Some(real)), ContainerStatus::Running);
    }

    #[test]
    fn ids_skip_lock_dir_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::create_dir(dir.path().join("b")).unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("stray"), "").unwrap();
        assert_eq!(store.ids().unwrap(), vec!["a", "b"]);
    }
}
