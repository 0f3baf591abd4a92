//! Errors of the polis-runc library. Each variant names the operation and the object it failed on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("container does not exist: {id}")]
    NotExist { id: String },
    #[error("container with id {id} already exists")]
    AlreadyExists { id: String },
    #[error("container {id} is {status}: {op} requires {wanted}")]
    WrongStatus {
        id: String,
        op: &'static str,
        status: String,
        wanted: &'static str,
    },
    #[error("container not running: {id}")]
    NotRunning { id: String },
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("config.json in {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
    #[error("cgroup of container {id}: {reason}")]
    Cgroup { id: String, reason: String },
    /// The container's set-up (init/) failed; the reason names the step.
    #[error("{op} container {id}: {reason}")]
    Setup {
        op: &'static str,
        id: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// The shared Linux plumbing (polis-host), whose errors name the operation and the path.
    #[error(transparent)]
    Host(#[from] polis_host::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The class of this error for programs, as the last JSON log line's `kind` carries it
    /// (README "The log contract"): `not-found`, `already-exists`, `invalid`,
    /// `failed-precondition`, or `internal` for a failure of the host or of the set-up.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotExist { .. } => "not-found",
            Error::AlreadyExists { .. } => "already-exists",
            Error::InvalidId { .. }
            | Error::Bundle { .. }
            | Error::Config { .. }
            | Error::InvalidSignal(_)
            | Error::Invalid(_) => "invalid",
            Error::WrongStatus { .. } | Error::NotRunning { .. } => "failed-precondition",
            Error::Io { .. }
            | Error::Sys { .. }
            | Error::Cgroup { .. }
            | Error::Setup { .. }
            | Error::Host(_) => "internal",
        }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(op: &'static str, source: nix::Error) -> Self {
        Error::Sys { op, source }
    }
}
