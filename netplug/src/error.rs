//! The one error type of polis-netplug. Every variant maps to a CNI error code (CNI spec "Error codes"), which
//! the plugin prints in its error JSON: [`Error::cni_code`].

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Code 1: the config's cniVersion is not one we speak.
    #[error("incompatible CNI version {version:?}: supported are {supported}")]
    IncompatibleVersion { version: String, supported: String },

    /// Code 2: a field the plugin does not support, where the spec forbids ignoring it.
    #[error("unsupported field {field:?} in the network configuration{}", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    UnsupportedField {
        field: String,
        context: Option<String>,
    },

    /// Code 3: the container, or its network namespace, does not exist.
    #[error("container {container}: {reason}")]
    UnknownContainer { container: String, reason: String },

    /// Code 4: a CNI_* environment variable is missing or malformed.
    #[error("environment variable {var}: {reason}")]
    Environment { var: &'static str, reason: String },

    /// Code 5: an I/O failure, with the operation and the path.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Code 6: the config (or a prevResult, a cached result) cannot be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode { what: &'static str, reason: String },

    /// Code 7: the network configuration is invalid (a bad CIDR, overlapping pools, ...).
    #[error("invalid network configuration: {reason}")]
    InvalidConfig { reason: String },

    /// Code 11: try again later (a lock held too long, a transient kernel answer).
    #[error("try again later: {reason}")]
    TryAgain { reason: String },

    /// Code 5 (I/O failure of the kernel): a netlink request, naming the operation and the object.
    #[error("{op} {object}: {reason}")]
    Netlink {
        op: &'static str,
        object: String,
        reason: String,
    },

    /// Code 5: address management failed for the network (a store problem).
    #[error("address management for network {network}: {reason}")]
    Ipam { network: String, reason: String },

    /// Code 50 from STATUS, code 5 from ADD: no address left.
    #[error("network {network}: no free address left in {pool}")]
    PoolExhausted { network: String, pool: String },

    /// Code 7: a requested static address is outside the pools or already taken.
    #[error("network {network}: requested address {address}: {reason}")]
    AddressUnavailable {
        network: String,
        address: String,
        reason: String,
    },

    /// Code 5: firewall (nftables) rules could not be applied.
    #[error("{op}: {reason}")]
    Firewall { op: &'static str, reason: String },

    /// Code 1: the command is not defined in the configuration's CNI version (CHECK before 0.4.0, STATUS and GC
    /// before 1.1.0).
    #[error(
        "CNI version {version} does not define the {command} command (it needs {needs} or later)"
    )]
    CommandNotInVersion {
        command: &'static str,
        version: String,
        needs: &'static str,
    },

    /// The plugin's own code: a plugin that the runtime side (`cni::runner`) ran answered with an error result
    /// (or, with code 999, exited non-zero without one).
    #[error("plugin {plugin} ({command}) failed with code {code}: {msg}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    PluginFailed {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: Option<String>,
    },

    /// Code 50 (51 with `limited_connectivity`): STATUS, the plugin cannot service ADD requests (CNI spec "STATUS").
    #[error("plugin not available{}: {reason}", if *limited_connectivity { " (existing containers may have limited connectivity)" } else { "" })]
    Unavailable {
        reason: String,
        limited_connectivity: bool,
    },

    /// GC of a network list: every error met while going on with the other plugins (CNI spec "Garbage-collecting
    /// a network"); the code is the first error's.
    #[error("garbage collection of network {network}: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    GarbageCollection { network: String, errors: Vec<Error> },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The CNI error code (CNI spec: 1-99 are the spec's; 100+ are the plugin's own).
    pub fn cni_code(&self) -> u32 {
        match self {
            Error::IncompatibleVersion { .. } => 1,
            Error::UnsupportedField { .. } => 2,
            Error::UnknownContainer { .. } => 3,
            Error::Environment { .. } => 4,
            Error::Io { .. }
            | Error::Netlink { .. }
            | Error::Ipam { .. }
            | Error::Firewall { .. } => 5,
            Error::PoolExhausted { .. } => 5,
            Error::Decode { .. } => 6,
            Error::InvalidConfig { .. } | Error::AddressUnavailable { .. } => 7,
            Error::TryAgain { .. } => 11,
            Error::CommandNotInVersion { .. } => 1,
            Error::PluginFailed { code, .. } => *code,
            Error::Unavailable {
                limited_connectivity,
                ..
            } => {
                if *limited_connectivity {
                    51
                } else {
                    50
                }
            }
            Error::GarbageCollection { errors, .. } => errors.first().map_or(5, Error::cni_code),
        }
    }
}

/// `map_err` helper: an I/O error with the operation and the path it was about.
/// The shared plumbing's errors (polis-host) are I/O failures with their operation and path: code 5.
impl From<polis_host::Error> for Error {
    fn from(e: polis_host::Error) -> Self {
        match e {
            polis_host::Error::Io { op, path, source } => Error::Io { op, path, source },
            polis_host::Error::Invalid { path, reason } => Error::Io {
                op: "use",
                path,
                source: std::io::Error::other(reason),
            },
            polis_host::Error::User { user, reason } => Error::InvalidConfig {
                reason: format!("user {user:?}: {reason}"),
            },
        }
    }
}

pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
