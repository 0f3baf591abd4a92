//! polisd's configuration: embedded defaults that work with no file, changed by a TOML file (`--config`, default
//! /etc/polis/polisd.toml). Unknown or misspelt keys are refused, naming the file and the key.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/polis/polisd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Everything polisd needs to know; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// State: the database, images, containers and volumes.
    pub root: PathBuf,
    /// Runtime state: fifos, the shims' event socket, polis-runc's root.
    pub exec_root: PathBuf,
    /// The REST API's unix socket (the Docker Engine API).
    pub socket: PathBuf,
    /// The group that may use the socket besides root (mode 0660), as dockerd's `--group`.
    pub socket_group: Option<String>,
    /// The gRPC API's unix socket (polis.v1), mode 0660 and `socket_group` as the REST socket.
    pub grpc_socket: PathBuf,
    /// containerd-shim-polis-v2; by default the one installed beside polisd, else the one on PATH.
    pub shim: Option<PathBuf>,
    /// polis-runc; by default the one installed beside polisd, else the one on PATH.
    pub runtime: Option<PathBuf>,
    /// Registries reached over plain HTTP besides those on 127.0.0.0/8.
    pub insecure_registries: Vec<String>,
    /// The largest request body accepted, in bytes.
    pub max_body_size: usize,
    pub logs: LogConfig,
    /// The API over TCP as well, only with mutual TLS (off unless configured).
    pub tcp: Option<crate::tls::TcpConfig>,
    /// The gRPC API over TCP as well, only with mutual TLS (off unless configured).
    pub grpc_tcp: Option<crate::tls::TcpConfig>,
    /// The subnet of the default `bridge` network (Docker's `bip`), on the bridge device `polis0`.
    pub default_bridge_subnet: String,
    /// Where networks created without a subnet take theirs (Docker's `default-address-pools`).
    pub default_address_pools: Vec<AddressPool>,
    /// Where the CNI plugins (`polis-netplug`) are; by default the directory of polisd's own executable, then
    /// /usr/lib/cni and /opt/cni/bin.
    pub cni_plugin_dir: Option<PathBuf>,
    /// A container with a restart policy other than `no` whose health check turns it unhealthy is killed, and its
    /// policy restarts it (dockerd leaves unhealthy containers running; off by default).
    pub restart_unhealthy: bool,
    /// polisd's own log on stderr: `text` (one line per event) or `json` (one JSON object per line, for log
    /// collectors); each API request's events carry its `request_id`.
    pub log_format: LogFormat,
    pub metrics: MetricsConfig,
    /// Alert rules over the containers' metrics, and where firing and resolved alerts are sent.
    pub alerts: crate::alerts::AlertsConfig,
}

/// Prometheus metrics: always at `/metrics` on the API's listeners; `address` adds a plain-HTTP listener for
/// scrapers (off by default, like dockerd's `metrics-addr`) that serves `/metrics` and the read-only (GET and
/// HEAD) routes of the REST API, so that the dashboard at `/ui` can be opened in a browser.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `HOST:PORT` of the plain-HTTP listener.
    pub address: Option<std::net::SocketAddr>,
    /// Container labels exported as `container_label_KEY` labels of the per-container metrics (as cAdvisor's
    /// `--store_container_labels=false --whitelisted_container_labels=...`).
    pub container_labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A pool of subnets: `base` cut into subnets of prefix length `size`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPool {
    pub base: String,
    pub size: u8,
}

/// Container logs: one file per container, rotated by size and count.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Bytes a log file grows to before it is rotated.
    pub max_size: u64,
    /// Log files kept per container, the current one included.
    pub max_files: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/var/lib/polis".into(),
            exec_root: "/run/polis".into(),
            socket: "/run/polis/polis.sock".into(),
            socket_group: None,
            grpc_socket: "/run/polis/polis-grpc.sock".into(),
            shim: None,
            runtime: None,
            insecure_registries: Vec::new(),
            max_body_size: 10 << 20,
            logs: LogConfig::default(),
            tcp: None,
            grpc_tcp: None,
            default_bridge_subnet: "172.17.0.0/16".into(),
            // Docker's defaults: 172.17.0.0/16 to 172.31.0.0/16, then /20s of 192.168.0.0/16.
            default_address_pools: [
                ("172.17.0.0/16", 16),
                ("172.18.0.0/15", 16),
                ("172.20.0.0/14", 16),
                ("172.24.0.0/13", 16),
                ("192.168.0.0/16", 20),
            ]
            .iter()
            .map(|(base, size)| AddressPool {
                base: base.to_string(),
                size: *size,
            })
            .collect(),
            cni_plugin_dir: None,
            restart_unhealthy: false,
            log_format: LogFormat::Text,
            metrics: MetricsConfig::default(),
            alerts: Default::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: 20 << 20,
            max_files: 5,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file gives the defaults only when `path` is the default location (an explicitly
    /// named file must exist).
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        config
            .alerts
            .check()
            .map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(config)
    }

    /// A binary polisd runs: the configured path, else the one beside polisd's own executable, else PATH.
    pub fn binary(&self, configured: &Option<PathBuf>, name: &str) -> PathBuf {
        if let Some(p) = configured {
            return p.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(name)))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    }

    pub fn shim_path(&self) -> PathBuf {
        self.binary(&self.shim, "containerd-shim-polis-v2")
    }

    pub fn runtime_path(&self) -> PathBuf {
        self.binary(&self.runtime, "polis-runc")
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("polisd.db")
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Where the shims publish their task events (their `TTRPC_ADDRESS`).
    pub fn events_socket(&self) -> PathBuf {
        self.exec_root.join("events.sock")
    }

    /// polis-runc's `--root`.
    pub fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runc")
    }

    /// The CNI plugin directories (`CNI_PATH`).
    pub fn cni_paths(&self) -> Vec<PathBuf> {
        if let Some(dir) = &self.cni_plugin_dir {
            return vec![dir.clone()];
        }
        let mut dirs: Vec<PathBuf> = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .into_iter()
            .collect();
        dirs.push("/usr/lib/cni".into());
        dirs.push("/opt/cni/bin".into());
        dirs
    }

    /// Networking state: polis-netplug's data (addresses, firewall and DNS records) and the CNI result cache.
    pub fn network_dir(&self) -> PathBuf {
        self.root.join("network")
    }

    /// The containers' network namespaces (bind mounts, one file per container).
    pub fn netns_dir(&self) -> PathBuf {
        self.exec_root.join("netns")
    }

    /// A container's fifos.
    pub fn fifo_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("containers").join(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_at_the_default_location_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("polisd.toml"), false).unwrap();
        assert_eq!(c.socket, Path::new("/run/polis/polis.sock"));
        assert_eq!(c.grpc_socket, Path::new("/run/polis/polis-grpc.sock"));
        assert_eq!(c.database(), Path::new("/var/lib/polis/polisd.db"));
    }

    #[test]
    fn an_explicit_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load(&dir.path().join("missing.toml"), true).unwrap_err();
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }

    #[test]
    fn a_misspelt_key_is_refused_naming_file_and_key() {
        let e =
            Config::parse(Path::new("/etc/polis/polisd.toml"), "sockett = \"/x\"\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/etc/polis/polisd.toml"), "{text}");
        assert!(text.contains("sockett"), "{text}");
        let e = Config::parse(Path::new("p.toml"), "[logs]\nmax_sise = 1\n").unwrap_err();
        assert!(e.to_string().contains("max_sise"), "{e}");
    }

    #[test]
    fn keys_change_the_defaults() {
        let c = Config::parse(
            Path::new("p.toml"),
            "root = \"/srv/polis\"\nsocket = \"/tmp/p.sock\"\n[logs]\nmax_files = 2\n",
        )
        .unwrap();
        assert_eq!(c.images_dir(), Path::new("/srv/polis/images"));
        assert_eq!(c.socket, Path::new("/tmp/p.sock"));
        assert_eq!(c.logs.max_files, 2);
        assert_eq!(c.logs.max_size, LogConfig::default().max_size);
        assert_eq!(c.default_bridge_subnet, "172.17.0.0/16");
        assert!(!c.restart_unhealthy, "dockerd never restarts for health");
        let c = Config::parse(Path::new("p.toml"), "restart_unhealthy = true\n").unwrap();
        assert!(c.restart_unhealthy);
    }

    #[test]
    fn network_keys() {
        let c = Config::parse(
            Path::new("p.toml"),
            "default_bridge_subnet = \"198.18.200.0/24\"\ncni_plugin_dir = \"/opt/x\"\n\
             [[default_address_pools]]\nbase = \"198.18.208.0/20\"\nsize = 24\n",
        )
        .unwrap();
        assert_eq!(c.default_bridge_subnet, "198.18.200.0/24");
        assert_eq!(c.cni_paths(), [PathBuf::from("/opt/x")]);
        assert_eq!(
            c.default_address_pools,
            [AddressPool {
                base: "198.18.208.0/20".into(),
                size: 24
            }]
        );
    }
}
