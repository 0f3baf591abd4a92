//! The core's errors: what went wrong, in the classes every API maps to its own codes (REST: Docker's status
//! codes; gRPC: NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT, FAILED_PRECONDITION).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such container, image, network or volume.
    #[error("{0}")]
    NotFound(String),
    /// A name already in use: a container's, a network's (Docker answers 409; gRPC ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// An operation the object's state forbids (a running container removed without force, a port already
    /// published).
    #[error("{0}")]
    Conflict(String),
    /// An operation never allowed on the object (removing a predefined network; Docker answers 403).
    #[error("{0}")]
    Forbidden(String),
    /// A request that is malformed or names something impossible.
    #[error("{0}")]
    Invalid(String),
    /// Nothing to do: the object is already in the wanted state (Docker answers 304).
    #[error("{0}")]
    NotModified(String),
    /// A real failure of polisd or of what it drives.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn failed(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::Failed(format!("{what}: {e}"))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::failed("database", e)
    }
}

impl From<polis_imagesvc::Error> for Error {
    fn from(e: polis_imagesvc::Error) -> Self {
        Error::Failed(e.to_string())
    }
}
