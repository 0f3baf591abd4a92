//! What polisd keeps about a container: the create request merged with its image, where its files are, and its
//! state. One JSON record per row of the database (db.rs).

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A task exists under a shim.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: String,
    pub oom_killed: bool,
    /// The health check's state while the container has one (health.rs); the last state stays after a stop.
    #[serde(default)]
    pub health: Option<super::health::Health>,
}

/// The shim serving a running container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShimInfo {
    /// Its ttrpc address (`unix://...`).
    pub address: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerRecord {
    pub id: String,
    /// Without Docker's leading '/'.
    pub name: String,
    /// The image as the request named it.
    pub image: String,
    /// The image's config digest (Docker's image ID).
    pub image_id: String,
    /// RFC 3339, nanoseconds.
    pub created: String,
    /// The request's Config merged with the image's (Docker's rules).
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// The process: `path` is args[0].
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    /// Holds config.json, the rootfs mount point and the overlay's upper and work directories.
    pub bundle: PathBuf,
    /// The rootfs: overlayfs options (lowerdir, upperdir, workdir), mounted by the shim at each start.
    pub rootfs_options: Vec<String>,
    /// Binds and volumes (the files Docker provides and tmpfs are in config.json only).
    pub mounts: Vec<super::volumes::MountSpec>,
    pub log_path: PathBuf,
    pub shim: Option<ShimInfo>,
    pub restart_count: i64,
    /// Set when a user stopped the container (`unless-stopped` and `always` then leave it stopped until started).
    pub stopped_by_user: bool,
}

impl ContainerRecord {
    pub fn tty(&self) -> bool {
        self.config.tty.unwrap_or(false)
    }

    pub fn open_stdin(&self) -> bool {
        self.config.open_stdin.unwrap_or(false)
    }

    /// The container's hostname: the request's, else its short ID (as Docker names it).
    pub fn hostname(&self) -> String {
        self.config
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| self.short_id().to_string())
    }

    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}
