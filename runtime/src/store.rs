//! The state root (`--root`): one directory per container and a lock per container. A container's
//! directory holds one file, `state.json`: its state (runtime.md#state, in libcontainer's `State`
//! shape, which earlier polis-runc versions wrote), with polis-runc's own facts under `"polis"` and
//! the config.json it was created from under `"config"` (runtime.md#lifecycle: "Any updates to
//! config.json after this step MUST NOT affect the container"), and the sockets `start` and a
//! proxied terminal use. One file, because on a disk file system (a `--root` under /tmp, say) every
//! file made and removed per container costs an inode allocation and eviction.
//!
//! Every polis-runc command that changes a container holds that container's lock, so writers never
//! race; state.json is replaced atomically. Readers still retry a `state.json` they catch
//! half-written, as one written in place by an older polis-runc could be; the files older
//! versions kept beside it (`polis.json`, `polis-config.json`) are still read.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libcontainer::container::{Container, ContainerStatus, State};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::validate_container_id;
use polis_host::lock::{LockKind, RecordLock};

const OLD_META_FILE: &str = "polis.json";
const OLD_CONFIG_FILE: &str = "polis-config.json";
const LOCK_DIR: &str = ".locks";

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
    /// The config.json the container was created from, as JSON.
    pub config: Option<serde_json::Value>,
}

impl LoadedContainer {
    /// The config.json the container was created from.
    pub fn spec(&self) -> Result<oci_spec::runtime::Spec> {
        let config = self.config.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "container {}: the config it was created from is missing",
                self.container.id()
            ))
        })?;
        serde_json::from_value(config).map_err(|e| Error::Config {
            path: self.container.root.clone(),
            reason: e.to_string(),
        })
    }

    /// The hooks of one kind (`poststart`, `poststop`) of the config the container was created
    /// from, read without decoding the whole config.
    pub fn hooks(&self, kind: &str) -> Option<Vec<oci_spec::runtime::Hook>> {
        let list = self.config.as_ref()?.get("hooks")?.get(kind)?;
        serde_json::from_value(list.clone()).ok()
    }

    /// Saves the state, after a change of status.
    pub fn save(&self) -> Result<()> {
        save_state_file(
            &self.container.root,
            &self.container.state,
            &self.meta,
            self.config.as_ref(),
        )
    }

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

    /// The socket `start` connects to, which the init process listens on.
    pub fn start_socket(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(crate::setup::START_SOCKET)
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
        let (state, meta, config) = read_state(&dir, id)?;
        let meta = meta.or_else(|| read_old_file(&dir, OLD_META_FILE));
        let config = config.or_else(|| read_old_file(&dir, OLD_CONFIG_FILE));
        let meta = meta.unwrap_or_default();
        let mut container = Container { state, root: dir };
        let mut status = live_status(&container.state, meta.init_start_time);
        // As runc tells by its exec FIFO: a created container whose start socket is gone has been
        // started (`start` removes it, and does not rewrite state.json).
        if status == ContainerStatus::Created && !self.start_socket(id).exists() {
            status = ContainerStatus::Running;
        }
        container.set_status(status);
        Ok(LoadedContainer {
            container,
            meta,
            config,
        })
    }
}

/// Writes a container's state.json: its state, polis-runc's facts and the config it was created
/// from (see the module doc), atomically.
pub fn save_state_file(
    container_dir: &Path,
    state: &State,
    meta: &ContainerMeta,
    config: Option<&serde_json::Value>,
) -> Result<()> {
    let encode = |e: serde_json::Error| Error::Invalid(format!("encode state: {e}"));
    let mut value = serde_json::to_value(state).map_err(encode)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("polis".into(), serde_json::to_value(meta).map_err(encode)?);
        if let Some(config) = config {
            obj.insert("config".into(), config.clone());
        }
    }
    let data = serde_json::to_vec(&value).map_err(encode)?;
    write_atomic(&State::file_path(container_dir), &data)
}

/// Replaces a file of the state root atomically: a reader sees the old or the new content. Not
/// synced: the state root lives on tmpfs (`/run/polis-runc`) and its containers do not outlive a
/// reboot.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    Ok(polis_host::atomic::replace_volatile(path, data)?)
}

type StateFile = (State, Option<ContainerMeta>, Option<serde_json::Value>);

fn parse_state_file(data: &[u8]) -> std::result::Result<StateFile, String> {
    let mut value: serde_json::Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let obj = value.as_object_mut().ok_or("not a JSON object")?;
    let meta = obj
        .remove("polis")
        .and_then(|m| serde_json::from_value(m).ok());
    let config = obj.remove("config");
    let state = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok((state, meta, config))
}

fn read_state(dir: &Path, id: &str) -> Result<StateFile> {
    let path = State::file_path(dir);
    // A writer truncates and rewrites state.json in place; a reader can catch it empty or partial.
    let mut last_err = None;
    for _ in 0..50 {
        match fs::read(&path) {
            Ok(data) => match parse_state_file(&data) {
                Ok(file) => return Ok(file),
                Err(e) => last_err = Some(e),
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

/// A file an older polis-runc kept beside state.json.
fn read_old_file<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    let data = fs::read(dir.join(name)).ok()?;
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
    fn one_state_file_keeps_state_facts_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cdir = store.container_dir("c1");
        fs::create_dir(&cdir).unwrap();
        let pid = std::process::id() as i32;
        let state = State::new("c1", ContainerStatus::Created, Some(pid), "/b".into());
        let meta = ContainerMeta {
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            init_start_time: process_start_time(pid),
            cgroup_path: "/c1".into(),
        };
        let config = serde_json::json!({"ociVersion": "1.2.0", "hostname": "h"});
        save_state_file(&cdir, &state, &meta, Some(&config)).unwrap();
        assert_eq!(
            fs::read_dir(&cdir).unwrap().count(),
            1,
            "one file per container"
        );
        // runtime.md#state: the file still reads as a state with id, status, pid and bundle.
        let plain: State =
            serde_json::from_slice(&fs::read(cdir.join("state.json")).unwrap()).unwrap();
        assert_eq!((plain.id.as_str(), plain.pid), ("c1", Some(pid)));
        // No start socket: a created container whose process lives has been started.
        let loaded = store.load("c1").unwrap();
        assert_eq!(loaded.container.status(), ContainerStatus::Running);
        assert_eq!(loaded.meta.cgroup_path, Path::new("/c1"));
        assert_eq!(loaded.spec().unwrap().hostname().as_deref(), Some("h"));
        fs::write(store.start_socket("c1"), "").unwrap();
        assert_eq!(
            store.load("c1").unwrap().container.status(),
            ContainerStatus::Created
        );
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
