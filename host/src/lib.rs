//! polis-host: the Linux plumbing every Polis binary shares (README.md). Each module touches the host in one way,
//! and its errors name the operation and the path.

pub mod atomic;
pub mod cgroup;
pub mod error;
pub mod lock;
pub mod mountinfo;
pub mod spec;
pub mod users;

pub use error::{Error, Result};

/// The runtime-spec version Polis implements, reported by `polis-runc state`, `spec` and `features`.
pub const OCI_VERSION: &str = "1.2.1";
