//! The one error type of polis-imagesvc: each variant names the operation and the object (reference, digest, path).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shared Linux plumbing (polis-host: locks, atomic writes, mountinfo), whose errors name the operation
    /// and the path.
    #[error(transparent)]
    Host(#[from] polis_host::Error),

    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{op} {url}: {reason}")]
    Http {
        op: &'static str,
        url: String,
        reason: String,
    },

    #[error("{op} {url}: the registry answered {status}: {message}")]
    Registry {
        op: &'static str,
        url: String,
        status: u16,
        message: String,
    },

    #[error("authenticating to {registry}: {reason}")]
    Auth { registry: String, reason: String },

    #[error("{reference}: {reason}")]
    Manifest { reference: String, reason: String },

    #[error("no image for platform {wanted} in {reference}; it has: {available}")]
    Platform {
        reference: String,
        wanted: String,
        available: String,
    },

    #[error("{what} {digest}: expected {expected}, got {actual}")]
    Verify {
        what: &'static str,
        digest: String,
        expected: String,
        actual: String,
    },

    #[error("malformed {what} {}: {reason}", path.display())]
    Malformed {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error("image {reference} is not in the store")]
    NotFound { reference: String },

    /// A layer entry that would escape the directory it is unpacked into, or break it.
    #[error("refused layer {layer}: entry {entry:?}: {reason}")]
    HostileLayer {
        layer: String,
        entry: String,
        reason: String,
    },

    /// A layer archive that cannot be read (truncated, bad header, bad compression).
    #[error("unreadable layer {layer}: {reason}")]
    LayerFormat { layer: String, reason: String },

    /// A limit of limits.rs crossed: the pull or unpacking stopped. `hint` and `flag` say how to go past it.
    #[error("stopped at layer {layer}: {what}; {hint} {flag}")]
    Limit {
        layer: String,
        what: String,
        flag: &'static str,
        hint: &'static str,
    },

    /// The registry sends a blob of another length than its descriptor (the manifest) declares.
    #[error("layer {layer}: the manifest declares {declared} bytes, but the registry {sent}")]
    SizeMismatch {
        layer: String,
        declared: u64,
        sent: String,
    },

    #[error("bundle {}: {reason}", dir.display())]
    Bundle { dir: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// `map_err` helper: an I/O error with the operation and the path it was about.
pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
