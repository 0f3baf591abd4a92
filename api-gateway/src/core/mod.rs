//! The operations of polisd, knowing nothing of HTTP: the REST API (rest/) is one thin layer over them, the gRPC
//! API another. Containers, images and events; state in SQLite (db.rs), containers under their own shims.

pub mod archive;
pub mod containers;
pub mod crash;
pub mod db;
pub mod disk;
pub mod error;
pub mod events;
pub mod exec;
pub mod health;
pub mod host;
pub mod images;
pub mod leftovers;
pub mod logs;
pub mod networks;
pub mod record;
pub mod restart;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod task_events;
pub mod volumes;

pub use error::{Error, Result};

use crate::config::Config;
use containers::Handle;
use db::Db;
use events::Events;
use polis_imagesvc::store::ImageStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Core {
    pub config: Config,
    pub db: Db,
    pub store: Arc<ImageStore>,
    pub events: Events,
    /// The alert rules' state.
    pub alerts: crate::alerts::Alerts,
    /// The in-memory side of each container: its output channel, exit notifications, its shim and stdin.
    handles: Mutex<HashMap<String, Arc<Handle>>>,
    /// The health-check task of each running container that has a check (health.rs).
    health_tasks: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Core {
    /// Opens (creating what is missing) polisd's state directories, database and image store.
    pub fn open(config: Config) -> Result<Arc<Core>> {
        for dir in [
            config.root.clone(),
            config.containers_dir(),
            config.exec_root.clone(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::failed(dir.display(), e))?;
            private(&dir)?;
        }
        let db = Db::open(&config.database())?;
        let store = ImageStore::open(&config.images_dir())?;
        let alerts = crate::alerts::Alerts::new(&config.alerts);
        Ok(Arc::new(Core {
            config,
            db,
            store: Arc::new(store),
            events: Events::new(),
            alerts,
            handles: Mutex::new(HashMap::new()),
            health_tasks: Mutex::new(HashMap::new()),
        }))
    }

    fn health_tasks(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::JoinHandle<()>>> {
        self.health_tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Handle>>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Docker's rule for the names of containers, volumes and networks: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, between `min` and
/// `max` bytes long (so never empty, `..` or a path).
pub fn docker_name_ok(name: &str, min: usize, max: usize) -> bool {
    let b = name.as_bytes();
    (min.max(1)..=max).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A label filter value (Docker's `label` filter, polis.v1's `labels`) against an object's labels: `KEY` (present)
/// or `KEY=VALUE`.
pub fn label_matches(labels: &HashMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
        None => labels.contains_key(filter),
    }
}

/// polisd's state is root's only: the rootfs of containers and the images' setuid binaries are in it.
fn private(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::failed(dir.display(), e))
}
