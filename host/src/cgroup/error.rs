//! Errors of the cgroup module: each names what was being done and the file or directory it was done to.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup file {path} holds {content:?}, which is not an unsigned integer")]
    NotANumber { path: PathBuf, content: String },
    #[error("no cgroup file system is mounted in this mount namespace (per {path})")]
    NotMounted { path: PathBuf },
    #[error("{path} has no cgroup v2 entry (\"0::/path\")")]
    NoUnifiedEntry { path: PathBuf },
    #[error("cgroup v2 path {cgroup} (from {path}) lies under no mounted cgroup2 file system")]
    UnifiedNotMounted { path: PathBuf, cgroup: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
