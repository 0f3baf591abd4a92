//! The shim's settings: which polis-runc to run, its state root, the cgroup driver and the log level.
//!
//! containerd hands them over in the `options` of CreateTaskRequest, in one of two shapes:
//! - `containerd.runc.v1.Options` (what `ctr run --runc-binary/--runc-root` and runc-style runtime configs send);
//! - `runtimeoptions.v1.Options` (what containerd 1.6's CRI sends for a runtime whose type is not
//!   `io.containerd.runc.*`): only a `ConfigPath`, naming a TOML file with the fields of [`SettingsFile`].
//!
//! The resolved settings are saved in the bundle, so that `containerd-shim-polis-v2 delete` (run by containerd
//! after a shim died) cleans up with the same runtime and root.

use containerd_shim::api::Options as RuncOptions;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, Message};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the resolved settings of a container are kept, relative to its bundle.
const SAVED_SETTINGS: &str = "polis-shim.json";
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
const CRI_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "options of type {0:?} are not supported (expected {RUNC_OPTIONS_TYPE} or {CRI_OPTIONS_TYPE})"
    )]
    UnknownOptionsType(String),
    #[error("decode runtime options of type {type_url}: {source}")]
    Decode {
        type_url: String,
        source: containerd_shim::protos::protobuf::Error,
    },
    #[error("read shim config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse shim config {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error(
        "shim config {path}: log_level {level:?} is not one of error, warn, info, debug, trace"
    )]
    LogLevel { path: PathBuf, level: String },
    #[error("save settings in bundle {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("load settings from bundle {path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

/// The file that runtimeoptions' `ConfigPath` names (TOML). Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    /// Path of the polis-runc binary.
    pub runtime: Option<PathBuf>,
    /// polis-runc's `--root`.
    pub root: Option<PathBuf>,
    /// Pass `--systemd-cgroup` to polis-runc.
    pub systemd_cgroup: Option<bool>,
    /// The shim's log level: error, warn, info, debug or trace.
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub runtime: PathBuf,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    pub log_level: String,
}

impl Settings {
    /// The defaults: the polis-runc installed beside the shim (else the one on PATH), and a root per containerd
    /// namespace, as containerd's runc shim uses `/run/containerd/runc/<namespace>`.
    pub fn defaults(namespace: &str) -> Settings {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("polis-runc")))
            .filter(|p| p.is_file());
        Settings {
            runtime: beside.unwrap_or_else(|| PathBuf::from("polis-runc")),
            root: Path::new("/run/containerd/polis-runc").join(namespace),
            systemd_cgroup: false,
            no_pivot_root: false,
            no_new_keyring: false,
            log_level: "info".to_string(),
        }
    }

    /// The defaults with the create request's options applied.
    pub fn from_options(namespace: &str, options: Option<&Any>) -> Result<Settings, SettingsError> {
        let mut settings = Settings::defaults(namespace);
        let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
            return Ok(settings);
        };
        let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
        let decode_error = |source| SettingsError::Decode {
            type_url: any.type_url.clone(),
            source,
        };
        match type_name {
            RUNC_OPTIONS_TYPE => {
                let opts = RuncOptions::parse_from_bytes(&any.value).map_err(decode_error)?;
                if !opts.binary_name.is_empty() {
                    settings.runtime = PathBuf::from(&opts.binary_name);
                }
                if !opts.root.is_empty() {
                    settings.root = Path::new(&opts.root).join(namespace);
                }
                settings.systemd_cgroup = opts.systemd_cgroup;
                settings.no_pivot_root = opts.no_pivot_root;
                settings.no_new_keyring = opts.no_new_keyring;
            }
            CRI_OPTIONS_TYPE => {
                let config_path = cri_config_path(&any.value).map_err(decode_error)?;
                if !config_path.is_empty() {
                    settings.apply_file(Path::new(&config_path))?;
                }
            }
            _ => return Err(SettingsError::UnknownOptionsType(any.type_url.clone())),
        }
        Ok(settings)
    }

    /// Applies the fields of a shim config file (see [`SettingsFile`]).
    pub fn apply_file(&mut self, path: &Path) -> Result<(), SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        let file: SettingsFile =
            toml::from_str(&text).map_err(|source| SettingsError::ParseConfig {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(runtime) = file.runtime {
            self.runtime = runtime;
        }
        if let Some(root) = file.root {
            self.root = root;
        }
        if let Some(systemd) = file.systemd_cgroup {
            self.systemd_cgroup = systemd;
        }
        if let Some(level) = file.log_level {
            if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                return Err(SettingsError::LogLevel {
                    path: path.to_path_buf(),
                    level,
                });
            }
            self.log_level = level;
        }
        Ok(())
    }

    /// Sets the shim's log level (its log goes to containerd, which prints it with the shim's ID). A pod's shim
    /// serves several containers: the last container's settings win.
    pub fn apply_log_level(&self) {
        let level = self.log_level.parse().unwrap_or(log::LevelFilter::Info);
        log::set_max_level(level);
    }

    /// `--debug` for polis-runc when the shim logs at debug or trace level.
    pub fn runtime_debug(&self) -> bool {
        matches!(self.log_level.as_str(), "debug" | "trace")
    }

    pub fn save(&self, bundle: &Path) -> Result<(), SettingsError> {
        let path = bundle.join(SAVED_SETTINGS);
        let json = serde_json::to_vec(self).map_err(|e| SettingsError::Save {
            path: path.clone(),
            source: e.into(),
        })?;
        std::fs::write(&path, json).map_err(|source| SettingsError::Save { path, source })
    }

    /// The settings saved by [`Settings::save`]; the defaults when the bundle has none (the shim died before).
    pub fn load(bundle: &Path, namespace: &str) -> Result<Settings, SettingsError> {
        let path = bundle.join(SAVED_SETTINGS);
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| SettingsError::Load {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::defaults(namespace)),
            Err(e) => Err(SettingsError::Load {
                path,
                reason: e.to_string(),
            }),
        }
    }
}

/// Decodes `runtimeoptions.v1.Options { string type_url = 1; string config_path = 2; }` (containerd's CRI
/// runtimeoptions proto, which containerd-shim-protos does not carry) and returns config_path.
fn cri_config_path(bytes: &[u8]) -> Result<String, containerd_shim::protos::protobuf::Error> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut config_path = String::new();
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match tag {
            // field 2, wire type 2 (length-delimited)
            18 => config_path = input.read_string()?,
            _ => input.skip_field(
                containerd_shim::protos::protobuf::rt::WireType::new(tag & 7).ok_or(
                    containerd_shim::protos::protobuf::Error::from(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad wire type in tag {tag}"),
                    )),
                )?,
            )?,
        }
    }
    Ok(config_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    fn cri_options(config_path: &str) -> Any {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_string(1, "io.containerd.polis.v2").unwrap();
            out.write_string(2, config_path).unwrap();
            out.flush().unwrap();
        }
        Any {
            type_url: CRI_OPTIONS_TYPE.to_string(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn no_options_gives_the_defaults_per_namespace() {
        let s = Settings::from_options("k8s.io", None).unwrap();
        assert_eq!(s.root, Path::new("/run/containerd/polis-runc/k8s.io"));
        assert!(!s.systemd_cgroup);
    }

    #[test]
    fn runc_options_set_binary_root_and_cgroup_driver() {
        let opts = RuncOptions {
            binary_name: "/opt/polis-runc".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let any = Any {
            type_url: format!("type.googleapis.com/{RUNC_OPTIONS_TYPE}"),
            value: opts.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let s = Settings::from_options("default", Some(&any)).unwrap();
        assert_eq!(s.runtime, Path::new("/opt/polis-runc"));
        assert_eq!(s.root, Path::new("/run/x/default"));
        assert!(s.systemd_cgroup);
    }

    #[test]
    fn cri_config_path_names_a_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shim.toml");
        std::fs::write(
            &file,
            "runtime = \"/usr/local/bin/polis-runc\"\nroot = \"/run/p\"\nsystemd_cgroup = true\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let s =
            Settings::from_options("k8s.io", Some(&cri_options(file.to_str().unwrap()))).unwrap();
        assert_eq!(s.runtime, Path::new("/usr/local/bin/polis-runc"));
        assert_eq!(s.root, Path::new("/run/p"));
        assert!(s.systemd_cgroup);
        assert_eq!(s.log_level, "debug");
    }

    #[test]
    fn bad_config_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shim.toml");
        std::fs::write(&file, "runtim = \"/x\"\n").unwrap();
        let err = Settings::from_options("k8s.io", Some(&cri_options(file.to_str().unwrap())))
            .unwrap_err();
        assert!(err.to_string().contains("shim.toml"), "{err}");
        assert!(err.to_string().contains("runtim"), "{err}");
        let missing = dir.path().join("missing.toml");
        let err = Settings::from_options("k8s.io", Some(&cri_options(missing.to_str().unwrap())))
            .unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn unknown_options_types_are_refused() {
        let any = Any {
            type_url: "example.com/Other".into(),
            value: vec![1, 2, 3],
            ..Default::default()
        };
        let err = Settings::from_options("default", Some(&any)).unwrap_err();
        assert!(err.to_string().contains("example.com/Other"), "{err}");
    }

    #[test]
    fn settings_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::defaults("ns");
        s.systemd_cgroup = true;
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path(), "other").unwrap(), s);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            Settings::load(empty.path(), "ns").unwrap(),
            Settings::defaults("ns")
        );
    }
}
