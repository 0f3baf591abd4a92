//! polis-runc: a runc-compatible OCI runtime (runtime-spec 1.2).
//!
//! The library holds the operations; `main.rs` parses runc's command line and calls them.

pub mod bundle;
pub mod cgroup_mount;
pub mod cgroups;
pub mod console;
pub mod device_filter;
pub mod error;
pub mod events;
pub mod exec_process;
pub mod features;
pub mod foreground;
pub mod hooks;
pub mod id;
pub mod init;
pub mod lifecycle;
pub mod logging;
pub mod seal;
pub mod seccomp;
pub mod setup;
pub mod store;

pub use error::{Error, Result};

/// The runtime-spec version polis-runc implements, reported in `state`, `spec` and `features`.
pub use polis_host::OCI_VERSION;
