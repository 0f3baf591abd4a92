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
    /// Not a `#[source]`: the message already says all of libcontainer's chain worth saying.
    #[error("{op} container {id}: {}", describe_libcontainer(error, causes))]
    Libcontainer {
        op: &'static str,
        id: String,
        error: Box<libcontainer::error::LibcontainerError>,
        /// The error lines libcontainer logged on the way (logging::CauseCapture).
        causes: Vec<String>,
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
    /// `failed-precondition`, or `internal` for a failure of the host or of libcontainer.
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
            | Error::Libcontainer { .. }
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

    pub fn lib(op: &'static str, id: &str, error: libcontainer::error::LibcontainerError) -> Self {
        Self::lib_with_causes(op, id, error, Vec::new())
    }

    /// A libcontainer error with the error lines it logged while it failed.
    pub fn lib_with_causes(
        op: &'static str,
        id: &str,
        error: libcontainer::error::LibcontainerError,
        causes: Vec<String>,
    ) -> Self {
        Error::Libcontainer {
            op,
            id: id.to_string(),
            error: Box::new(error),
            causes,
        }
    }
}

/// Phrases with which libcontainer wraps an error without adding to it.
const LIBCONTAINER_WRAPPERS: [&str; 6] = [
    "failed to create container: ",
    "exec process failed with error ",
    "error in executing process : ",
    "intermediate process error ",
    "failed hooks ",
    "failed to create container",
];

/// libcontainer's error as one line that names the cause: its chain without the wrappers that
/// only repeat (its outermost messages alone read "exec process failed with error error in
/// executing process : failed to prepare rootfs"), then the logged lines that say more than the
/// chain does.
fn describe_libcontainer(
    error: &libcontainer::error::LibcontainerError,
    causes: &[String],
) -> String {
    let mut stage = String::new();
    let mut next: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = next {
        let mut text = e.to_string();
        for wrapper in LIBCONTAINER_WRAPPERS {
            text = text.replace(wrapper, "");
        }
        let text = text.trim();
        if !text.is_empty() && !stage.contains(text) {
            if !stage.is_empty() {
                stage.push_str(": ");
            }
            stage.push_str(text);
        }
        next = e.source();
    }
    // A logged line that ends with what the chain says last is one more wrapper of it.
    let last = stage.rsplit(": ").next().unwrap_or_default().to_string();
    let mut extra: Vec<&str> = Vec::new();
    for cause in causes.iter().map(|c| c.trim()) {
        let repeats = stage.contains(cause) || (!last.is_empty() && cause.ends_with(&last));
        if !cause.is_empty() && !repeats && !extra.contains(&cause) {
            extra.push(cause);
        }
    }
    let text = if extra.is_empty() {
        stage
    } else {
        format!("{stage}: {}", extra.join("; "))
    };
    readable_debug(&text)
}

/// libcontainer's logged lines quote Rust values (`source: Some("/dev/sda")`, `Nix(ENOENT)`):
/// the options that are unset go, and an errno gets its description.
fn readable_debug(text: &str) -> String {
    let mut out = text.to_string();
    for unset in [
        ", options: None",
        ", uid_mappings: None",
        ", gid_mappings: None",
    ] {
        out = out.replace(unset, "");
    }
    while let Some(start) = out.find("Some(") {
        let Some(len) = out[start..].find(')') else {
            break;
        };
        let inner = out[start + 5..start + len].to_string();
        out.replace_range(start..=start + len, &inner);
    }
    while let Some(start) = out.find("Nix(E") {
        let Some(len) = out[start..].find(')') else {
            break;
        };
        let name = out[start + 4..start + len].to_string();
        let desc = (1..134)
            .map(nix::errno::Errno::from_raw)
            .find(|e| format!("{e:?}") == name)
            .map_or(String::new(), |e| format!(": {}", e.desc()));
        out.replace_range(start..=start + len, &format!("{name}{desc}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_rust_values_read_as_words() {
        let line = r#"failed to mount Mount { destination: "/x", typ: Some("ext4"), source: Some("/dev/sdz"), options: None, uid_mappings: None, gid_mappings: None }: syscall; err=Mount(Syscall(Nix(ENOENT)))"#;
        assert_eq!(
            readable_debug(line),
            r#"failed to mount Mount { destination: "/x", typ: "ext4", source: "/dev/sdz" }: syscall; err=Mount(Syscall(ENOENT: No such file or directory))"#
        );
    }

    #[test]
    fn wrappers_go_and_the_logged_cause_stays() {
        let err = libcontainer::error::LibcontainerError::Other(
            "exec process failed with error error in executing process : failed to prepare rootfs"
                .into(),
        );
        let causes = vec![
            "failed to prepare rootfs err=Mount(Syscall(Nix(EINVAL)))".to_string(),
            "failed to initialize container process: failed to prepare rootfs".to_string(),
        ];
        let text = describe_libcontainer(&err, &causes);
        assert_eq!(
            text,
            "failed to prepare rootfs: failed to prepare rootfs err=Mount(Syscall(EINVAL: Invalid argument))"
        );
        assert!(!text.contains("error error"));
    }
}
