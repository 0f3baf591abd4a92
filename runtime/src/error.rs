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
    #[error("{op} container {id}: {source}")]
    Libcontainer {
        op: &'static str,
        id: String,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
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

    pub fn lib(op: &'static str, id: &str, source: libcontainer::error::LibcontainerError) -> Self {
        Error::Libcontainer {
            op,
            id: id.to_string(),
            source: Box::new(source),
        }
    }
}
