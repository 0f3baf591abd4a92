//! A network configuration list (CNI spec "Section 1: Network configuration format"): loaded from a `.conflist`,
//! or from a single plugin configuration as libcni turns it into a list, and validated; and each plugin's execution
//! configuration derived from it (CNI spec "Section 3: Execution of Network Configurations", "Deriving execution
//! configuration from plugin configuration").
//!
//! ```no_run
//! use polis_netplug::cni::NetworkList;
//! # fn main() -> polis_netplug::Result<()> {
//! let list = NetworkList::load("/etc/cni/net.d/10-polis.conflist".as_ref())?;
//! let first = list.plugin_config(0, None, None);
//! assert_eq!(first["name"], list.name.as_str());
//! # Ok(()) }
//! ```

use std::path::Path;

use serde_json::{Map, Value};

use super::names::{validate_network_name, validate_plugin_type};
use super::types::CniResult;
use super::version::{Version, negotiate};
use crate::error::io;
use crate::{Error, Result};

/// A network configuration list (CNI spec "Section 1: Network configuration format").
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkList {
    pub name: String,
    /// The version the list runs with: the highest of `cniVersions` and `cniVersion` that we speak.
    pub cni_version: Version,
    /// `cniVersions` as written (1.1.0).
    pub cni_versions: Vec<String>,
    pub disable_check: bool,
    /// 1.1.0: the runtime must not GC this network.
    pub disable_gc: bool,
    /// The plugin configuration objects, unchanged (unknown keys are passed through to the plugins).
    pub plugins: Vec<Map<String, Value>>,
    /// The list's JSON as loaded (a single configuration is first turned into a list), cached with ADD's result.
    pub bytes: Vec<u8>,
}

impl NetworkList {
    /// Loads a `.conflist`, or a single plugin configuration (`.conf`, `.json`), which becomes a list of one as
    /// libcni does. Which one it is is decided by the content: a list has `plugins`.
    pub fn load(path: &Path) -> Result<NetworkList> {
        let bytes = std::fs::read(path).map_err(io("read the network configuration", path))?;
        NetworkList::from_slice(&bytes)
    }

    /// [`NetworkList::load`] from bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<NetworkList> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| decode(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| decode("not a JSON object".into()))?;
        if obj.contains_key("plugins") {
            return NetworkList::from_list(obj, bytes.to_vec());
        }
        // A single configuration: {"name", "cniVersion", "plugins": [the configuration]}, as libcni's
        // ConfListFromConf.
        let mut list = Map::new();
        for key in ["name", "cniVersion"] {
            if let Some(v) = obj.get(key) {
                list.insert(key.into(), v.clone());
            }
        }
        list.insert("plugins".into(), Value::Array(vec![value.clone()]));
        let bytes = serde_json::to_vec(&list).map_err(|e| decode(e.to_string()))?;
        NetworkList::from_list(&list, bytes)
    }

    fn from_list(obj: &Map<String, Value>, bytes: Vec<u8>) -> Result<NetworkList> {
        let name = match obj.get("name") {
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err(decode("name is not a string".into())),
            None => {
                return Err(Error::InvalidConfig {
                    reason: "missing network name".into(),
                });
            }
        };
        validate_network_name(&name)?;
        let cni_version = match obj.get("cniVersion") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(decode("cniVersion is not a string".into())),
        };
        let cni_versions: Vec<String> = match obj.get("cniVersions") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| decode(format!("cniVersions: {e}")))?,
        };
        let version = negotiate(cni_version, &cni_versions)?;
        let plugins = match obj.get("plugins") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => {
                return Err(Error::InvalidConfig {
                    reason: format!("network {name}: no plugins in the list"),
                });
            }
            _ => return Err(decode("plugins is not a list".into())),
        };
        let plugins = plugins
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = p
                    .as_object()
                    .ok_or_else(|| decode(format!("plugin {i} is not a JSON object")))?;
                match p.get("type") {
                    Some(Value::String(t)) => validate_plugin_type(t)?,
                    _ => {
                        return Err(Error::InvalidConfig {
                            reason: format!("network {name}: plugin {i} has no type"),
                        });
                    }
                }
                Ok(p.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(NetworkList {
            disable_check: read_bool(obj, "disableCheck")?,
            disable_gc: read_bool(obj, "disableGC")?,
            name,
            cni_version: version,
            cni_versions,
            plugins,
            bytes,
        })
    }

    /// The `type` of plugin `index` (checked by [`NetworkList::from_slice`]).
    pub(super) fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The execution configuration of plugin `index` (CNI spec "Deriving execution configuration from plugin
    /// configuration"): `name` and `cniVersion` from the list; `runtimeConfig` holding the capability arguments
    /// of the capabilities the plugin declares (left out when none); `prevResult` when given; `capabilities`
    /// removed. `runtimeConfig` and `prevResult` written in the plugin configuration itself are reserved for the
    /// runtime and replaced. Every other key passes unchanged.
    pub fn plugin_config(
        &self,
        index: usize,
        capability_args: Option<&Map<String, Value>>,
        prev_result: Option<&CniResult>,
    ) -> Map<String, Value> {
        let mut conf = self.plugins[index].clone();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert(
            "cniVersion".into(),
            Value::String(self.cni_version.as_str().into()),
        );
        let capabilities = conf.remove("capabilities");
        conf.remove("runtimeConfig");
        conf.remove("prevResult");
        if let (Some(Value::Object(caps)), Some(args)) = (capabilities, capability_args) {
            let runtime_config: Map<String, Value> = caps
                .iter()
                .filter(|(_, declared)| declared.as_bool() == Some(true))
                .filter_map(|(cap, _)| args.get(cap).map(|v| (cap.clone(), v.clone())))
                .collect();
            if !runtime_config.is_empty() {
                conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
            }
        }
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.to_value(self.cni_version));
        }
        conf
    }
}

fn decode(reason: String) -> Error {
    Error::Decode {
        what: "network configuration list",
        reason,
    }
}

/// `disableCheck`, `disableGC`: a boolean, or (as libcni accepts) the string "true"/"false".
fn read_bool(obj: &Map<String, Value>, key: &str) -> Result<bool> {
    match obj.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(decode(format!("{key}: {other} is not a boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_list(dir: &Path, file: &str, list: &Value) -> NetworkList {
        let path = dir.join(file);
        std::fs::write(&path, list.to_string()).unwrap();
        NetworkList::load(&path).unwrap()
    }

    /// CNI spec "Section 1" (configuration lists, `cniVersions` of 1.1.0) and libcni's ConfListFromConf for a
    /// single configuration.
    #[test]
    fn load_lists_and_single_configurations() {
        let dir = tempfile::tempdir().unwrap();
        let list = write_list(
            dir.path(),
            "a.conflist",
            &json!({"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0", "9.9.9"], "name": "n1",
                    "disableCheck": "true", "disableGC": true, "plugins": [{"type": "bridge", "x": 1}]}),
        );
        assert_eq!(list.cni_version, Version::V1_1_0);
        assert!(list.disable_check && list.disable_gc);
        assert_eq!(list.plugins[0]["x"], 1);

        let single = write_list(
            dir.path(),
            "b.conf",
            &json!({"cniVersion": "0.4.0", "name": "n2", "type": "bridge", "bridge": "br0"}),
        );
        assert_eq!(single.name, "n2");
        assert_eq!(single.cni_version, Version::V0_4_0);
        assert_eq!(single.plugins.len(), 1);
        assert_eq!(single.plugins[0]["bridge"], "br0");
        let bytes: Value = serde_json::from_slice(&single.bytes).unwrap();
        assert_eq!(bytes["plugins"][0]["type"], "bridge");
        assert!(!single.disable_check && !single.disable_gc);

        let code = |v: Value| {
            NetworkList::from_slice(v.to_string().as_bytes())
                .unwrap_err()
                .cni_code()
        };
        assert_eq!(
            code(json!({"cniVersion": "1.0.0", "name": "n", "plugins": []})),
            7
        );
        assert_eq!(
            code(json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"x": 1}]})),
            7
        );
        assert_eq!(
            code(json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]})),
            7
        );
        assert_eq!(
            code(json!({"cniVersion": "1.0.0", "name": "bad name", "plugins": [{"type": "x"}]})),
            7
        );
        assert_eq!(
            code(json!({"cniVersion": "0.2.0", "name": "n", "plugins": [{"type": "x"}]})),
            1
        );
        assert_eq!(
            code(json!({"cniVersion": "1.0.0", "name": "n", "plugins": {}})),
            6
        );
        assert_eq!(
            NetworkList::load(&dir.path().join("missing"))
                .unwrap_err()
                .cni_code(),
            5
        );
    }
}
