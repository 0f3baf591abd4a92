//! The CNI data types: the plugin configuration a plugin reads on stdin (CNI spec "Section 1: Network
//! configuration format", "Plugin configuration objects", and the execution configuration of "Section 3"), the
//! result of ADD and its conversion between versions ("Section 5: Result Types"), the error result, and GC's
//! attachments.
//!
//! One result type, [`CniResult`], holds the 1.1.0 model (a superset of the older ones). It is read from any
//! supported version ([`CniResult::from_value`]) and written in the version asked for ([`CniResult::to_value`]):
//! before 1.0.0 each IP carries `"version": "4"|"6"`; before 1.1.0 the interface fields `mtu`, `socketPath`,
//! `pciID` and the route fields `mtu`, `advmss`, `priority`, `table`, `scope` do not exist and are left out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::names::validate_network_name;
use super::version::Version;
use crate::{Error, Result};

/// GC's key for the still-valid attachments (CNI spec 1.1.0 "GC: Clean up any stale resources").
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The key an early draft of the 1.1.0 spec used; libcni sends both with the same value (its issue #1101), so we
/// read it when the first is absent and the runner sends both.
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// `null` in JSON read as the type's default (Go writes `null` for some nil slices).
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// DNS settings, in the configuration and in the result (CNI spec "dns").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Priority-ordered nameserver addresses (IPv4 or IPv6), kept as written.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub search: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The `ipam` dictionary: its `type` and the IPAM settings, which the IPAM code interprets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IpamConf {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ipam_type: Option<String>,
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

/// The configuration a plugin receives on stdin (one plugin configuration object after the runtime derived it,
/// CNI spec "Deriving execution configuration from plugin configuration").
///
/// The well-known keys are typed; every other key is in [`NetConf::plugin`], unchanged, for the plugin to accept
/// or refuse (code 2). `prevResult` is parsed from whichever supported version it is in, and written back in the
/// configuration's version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NetConfWire", into = "NetConfWire")]
pub struct NetConf {
    pub cni_version: Version,
    pub name: String,
    pub plugin_type: String,
    /// `args`: reserved for the runtime; plugins may ignore it.
    pub args: Option<Value>,
    pub ip_masq: Option<bool>,
    pub ipam: Option<IpamConf>,
    pub dns: Option<Dns>,
    pub runtime_config: Option<Map<String, Value>>,
    pub prev_result: Option<CniResult>,
    /// Only meaningful in a configuration list (the runtime removes it); kept here so that it is not taken for a
    /// plugin-specific key when a runtime passes it through.
    pub capabilities: Option<BTreeMap<String, bool>>,
    /// Every other key, as written.
    pub plugin: Map<String, Value>,
}

#[derive(Clone, Serialize, Deserialize)]
struct NetConfWire {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    name: String,
    #[serde(rename = "type")]
    plugin_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    args: Option<Value>,
    #[serde(rename = "ipMasq", default, skip_serializing_if = "Option::is_none")]
    ip_masq: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipam: Option<IpamConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns: Option<Dns>,
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    runtime_config: Option<Map<String, Value>>,
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    prev_result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capabilities: Option<BTreeMap<String, bool>>,
    #[serde(flatten)]
    plugin: Map<String, Value>,
}

impl TryFrom<NetConfWire> for NetConf {
    type Error = Error;
    fn try_from(w: NetConfWire) -> Result<NetConf> {
        let cni_version = Version::parse(&w.cni_version)?;
        let prev_result = match w.prev_result {
            None | Some(Value::Null) => None,
            Some(v) => Some(CniResult::from_value(v)?),
        };
        Ok(NetConf {
            cni_version,
            name: w.name,
            plugin_type: w.plugin_type,
            args: w.args,
            ip_masq: w.ip_masq,
            ipam: w.ipam,
            dns: w.dns,
            runtime_config: w.runtime_config,
            prev_result,
            capabilities: w.capabilities,
            plugin: w.plugin,
        })
    }
}

impl From<NetConf> for NetConfWire {
    fn from(c: NetConf) -> NetConfWire {
        NetConfWire {
            cni_version: c.cni_version.as_str().to_string(),
            prev_result: c.prev_result.map(|r| r.to_value(c.cni_version)),
            name: c.name,
            plugin_type: c.plugin_type,
            args: c.args,
            ip_masq: c.ip_masq,
            ipam: c.ipam,
            dns: c.dns,
            runtime_config: c.runtime_config,
            capabilities: c.capabilities,
            plugin: c.plugin,
        }
    }
}

impl NetConf {
    /// Parses a plugin configuration, with the spec's error codes: 6 if it is not a JSON object, 7 if `name` is
    /// missing or invalid, 1 if `cniVersion` is missing or unsupported, 6 for any other decoding failure
    /// (`type` missing, a field of the wrong type, an undecodable `prevResult`), 1 for a `prevResult` in an
    /// unsupported version.
    pub fn parse(bytes: &[u8]) -> Result<NetConf> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            what: "network configuration",
            reason: e.to_string(),
        })?;
        NetConf::from_value(value)
    }

    /// [`NetConf::parse`] from a JSON value.
    pub fn from_value(value: Value) -> Result<NetConf> {
        let obj = value.as_object().ok_or_else(|| Error::Decode {
            what: "network configuration",
            reason: "not a JSON object".into(),
        })?;
        match obj.get("name") {
            Some(Value::String(name)) => validate_network_name(name)?,
            Some(_) => {
                return Err(Error::InvalidConfig {
                    reason: "network name is not a string".into(),
                });
            }
            None => {
                return Err(Error::InvalidConfig {
                    reason: "missing network name".into(),
                });
            }
        }
        config_version(obj)?;
        let wire: NetConfWire = serde_json::from_value(value).map_err(|e| Error::Decode {
            what: "network configuration",
            reason: e.to_string(),
        })?;
        NetConf::try_from(wire)
    }

    /// The wire form, `prevResult` in the configuration's version.
    pub fn to_value(&self) -> Value {
        // Serializing maps of JSON values and strings cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The plugin-specific keys decoded into the plugin's own type (code 6 when they do not fit).
    pub fn plugin_config<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(Value::Object(self.plugin.clone())).map_err(|e| Error::Decode {
            what: "plugin configuration",
            reason: e.to_string(),
        })
    }
}

/// The `cniVersion` of a configuration object: code 1 when absent (the spec's old default, 0.1.0, which we do
/// not speak) or unsupported, code 6 when not a string.
pub(crate) fn config_version(obj: &Map<String, Value>) -> Result<Version> {
    match obj.get("cniVersion") {
        Some(Value::String(s)) => Version::parse(s),
        Some(_) => Err(Error::Decode {
            what: "network configuration",
            reason: "cniVersion is not a string".into(),
        }),
        None => Err(Error::IncompatibleVersion {
            version: "(absent, meaning 0.1.0)".into(),
            supported: super::version::supported_list(),
        }),
    }
}

/// An interface in a result (CNI spec "Success": `interfaces`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for a container interface; absent for a host interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// 1.1.0.
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    /// 1.1.0.
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// An address in a result (CNI spec "Success": `ips`). Before 1.0.0 it also carried `version`, which is derived
/// from the address when written and ignored when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address and prefix length, in CIDR notation (host bits kept: "10.1.0.5/16").
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into the result's `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in a result (CNI spec "Success": `routes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// 1.1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// 1.1.0 (the kernel's route scope: 0 universe, 253 link, 254 host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

const FIELDS_1_1_INTERFACE: [&str; 3] = ["mtu", "socketPath", "pciID"];
const FIELDS_1_1_ROUTE: [&str; 5] = ["mtu", "advmss", "priority", "table", "scope"];

/// The result of ADD (CNI spec "Section 5: Result Types / Success"), without its version: that is chosen when it
/// is written ([`CniResult::to_value`]). An IPAM (delegated) plugin's result simply has no `interfaces` and no
/// `interface` indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CniResult {
    #[serde(default, deserialize_with = "nullable")]
    pub interfaces: Vec<Interface>,
    /// `ip` is the name the 0.3.0 text used by mistake (spec-upgrades, "v0.3.1").
    #[serde(default, alias = "ip", deserialize_with = "nullable")]
    pub ips: Vec<IpConfig>,
    #[serde(default, deserialize_with = "nullable")]
    pub routes: Vec<Route>,
    #[serde(default, deserialize_with = "nullable")]
    pub dns: Dns,
}

#[derive(Serialize)]
struct ResultWire<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'static str,
    #[serde(skip_serializing_if = "<[Interface]>::is_empty")]
    interfaces: &'a [Interface],
    #[serde(skip_serializing_if = "<[IpConfig]>::is_empty")]
    ips: &'a [IpConfig],
    #[serde(skip_serializing_if = "<[Route]>::is_empty")]
    routes: &'a [Route],
    #[serde(skip_serializing_if = "Dns::is_empty")]
    dns: &'a Dns,
}

impl CniResult {
    /// Reads a result in any supported version (the 1.1.0 model holds all of them; `version` on IPs is ignored).
    /// Its `cniVersion`, when present, must be one we speak: code 1 otherwise (a 0.2.0 `ip4`/`ip6` result would
    /// silently read as empty). Code 6 when it cannot be decoded.
    pub fn from_value(value: Value) -> Result<CniResult> {
        let decode = |reason: String| Error::Decode {
            what: "result",
            reason,
        };
        let obj = value
            .as_object()
            .ok_or_else(|| decode("not a JSON object".into()))?;
        match obj.get("cniVersion") {
            Some(Value::String(s)) => {
                Version::parse(s)?;
            }
            None | Some(Value::Null) => {}
            Some(_) => return Err(decode("cniVersion is not a string".into())),
        }
        serde_json::from_value(value).map_err(|e| decode(e.to_string()))
    }

    /// [`CniResult::from_value`] from bytes (a plugin's stdout, a cache file's `result`).
    pub fn from_slice(bytes: &[u8]) -> Result<CniResult> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            what: "result",
            reason: e.to_string(),
        })?;
        CniResult::from_value(value)
    }

    /// The result as written in `version`.
    pub fn to_value(&self, version: Version) -> Value {
        let wire = ResultWire {
            cni_version: version.as_str(),
            interfaces: &self.interfaces,
            ips: &self.ips,
            routes: &self.routes,
            dns: &self.dns,
        };
        // Strings, numbers and addresses only: serializing cannot fail.
        let mut value = serde_json::to_value(wire).unwrap_or(Value::Null);
        let strip = |value: &mut Value, key: &str, fields: &[&str]| {
            if let Some(Value::Array(items)) = value.get_mut(key) {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    for f in fields {
                        item.remove(*f);
                    }
                }
            }
        };
        if !version.has_1_1_fields() {
            strip(&mut value, "interfaces", &FIELDS_1_1_INTERFACE);
            strip(&mut value, "routes", &FIELDS_1_1_ROUTE);
        }
        if version.ips_carry_version() {
            if let Some(Value::Array(ips)) = value.get_mut("ips") {
                for (ip, cfg) in ips.iter_mut().zip(&self.ips) {
                    if let Some(obj) = ip.as_object_mut() {
                        let family = if cfg.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        };
                        obj.insert("version".into(), Value::String(family.into()));
                    }
                }
            }
        }
        value
    }

    /// The JSON text of [`CniResult::to_value`].
    pub fn to_json(&self, version: Version) -> String {
        self.to_value(version).to_string()
    }
}

/// The error result (CNI spec "Section 5: Result Types / Error"), printed on stdout with a non-zero exit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResult {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl ErrorResult {
    /// The error result for `err`, in `version`: `code` is [`Error::cni_code`], `msg` the error's text. An error
    /// relayed from another plugin keeps that plugin's message and details.
    pub fn from_error(err: &Error, version: Version) -> ErrorResult {
        let (msg, details) = match err {
            Error::PluginFailed { msg, details, .. } => (msg.clone(), details.clone()),
            other => (other.to_string(), None),
        };
        ErrorResult {
            cni_version: version.as_str().to_string(),
            code: err.cni_code(),
            msg,
            details,
        }
    }
}

/// One still-valid attachment in GC's `cni.dev/valid-attachments`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "ifname")]
    pub ifname: String,
}

/// The valid attachments of a GC request, taken out of the plugin-specific keys (both spellings are removed;
/// [`VALID_ATTACHMENTS_KEY`] wins over [`LEGACY_ATTACHMENTS_KEY`]). `None` when neither is present.
pub(crate) fn take_valid_attachments(
    plugin: &mut Map<String, Value>,
) -> Result<Option<Vec<Attachment>>> {
    let current = plugin.remove(VALID_ATTACHMENTS_KEY);
    let legacy = plugin.remove(LEGACY_ATTACHMENTS_KEY);
    match current.or(legacy) {
        None => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| Error::Decode {
                what: "cni.dev/valid-attachments",
                reason: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: Some("00:11:22:33:44:55".into()),
                    mtu: Some(1500),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("00:11:22:33:44:66".into()),
                    sandbox: Some("/var/run/netns/blue".into()),
                    socket_path: Some("/run/sock".into()),
                    pci_id: Some("0000:00:1f.6".into()),
                    mtu: Some(1450),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/16".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.1.0.1".parse().unwrap()),
                mtu: Some(1400),
                advmss: Some(1360),
                priority: Some(10),
                table: Some(100),
                scope: Some(0),
            }],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                domain: Some("example.test".into()),
                search: vec!["example.test".into()],
                options: vec!["ndots:2".into()],
            },
        }
    }

    /// CNI spec 1.1.0 "Section 5: Result Types / Success": every 1.1.0 field, no `version` on IPs.
    #[test]
    fn result_1_1_0_shape() {
        let v = sample().to_value(Version::V1_1_0);
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "cni0", "mac": "00:11:22:33:44:55", "mtu": 1500},
                    {"name": "eth0", "mac": "00:11:22:33:44:66", "mtu": 1450, "sandbox": "/var/run/netns/blue",
                     "socketPath": "/run/sock", "pciID": "0000:00:1f.6"}
                ],
                "ips": [
                    {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                    {"address": "fd00::5/64", "interface": 1}
                ],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1400, "advmss": 1360, "priority": 10,
                            "table": 100, "scope": 0}],
                "dns": {"nameservers": ["10.1.0.1"], "domain": "example.test", "search": ["example.test"],
                        "options": ["ndots:2"]}
            })
        );
    }

    /// CNI spec 1.0.0 "Section 5" (and spec-upgrades "v1.1"): 1.0.0 has neither `version` on IPs nor the 1.1.0
    /// interface and route fields.
    #[test]
    fn result_1_0_0_drops_1_1_fields() {
        let v = sample().to_value(Version::V1_0_0);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(
            v["interfaces"][1],
            json!({"name": "eth0", "mac": "00:11:22:33:44:66", "sandbox": "/var/run/netns/blue"})
        );
        assert_eq!(
            v["routes"][0],
            json!({"dst": "0.0.0.0/0", "gw": "10.1.0.1"})
        );
        assert!(v["ips"][0].get("version").is_none());
    }

    /// CNI spec 0.4.0/0.3.1 "Result" and "IPs": each IP has `"version": "4"|"6"`.
    #[test]
    fn result_0_4_0_and_0_3_x_carry_ip_version() {
        for ver in [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0] {
            let v = sample().to_value(ver);
            assert_eq!(v["cniVersion"], ver.as_str());
            assert_eq!(
                v["ips"],
                json!([
                    {"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 1},
                    {"version": "6", "address": "fd00::5/64", "interface": 1}
                ])
            );
            assert!(v["interfaces"][0].get("mtu").is_none());
        }
    }

    /// CNI spec spec-upgrades "v1.0": converting up drops `version`; down and up again is lossless for the fields
    /// the older version has.
    #[test]
    fn result_round_trips_between_versions() {
        let full = sample();
        let from_1_1 = CniResult::from_value(full.to_value(Version::V1_1_0)).unwrap();
        assert_eq!(from_1_1, full);

        let old = CniResult::from_value(full.to_value(Version::V0_4_0)).unwrap();
        assert_eq!(old.ips, full.ips);
        assert_eq!(old.interfaces[1].mtu, None);
        assert_eq!(old.routes[0].table, None);
        assert_eq!(old.dns, full.dns);
        // Back up to 1.0.0 JSON: no "version" key left.
        let up = old.to_value(Version::V1_0_0);
        assert!(
            up["ips"]
                .as_array()
                .unwrap()
                .iter()
                .all(|ip| ip.get("version").is_none())
        );
    }

    /// CNI spec 0.3.x/0.4.0 result as a Go plugin prints it (`dns: {}`, `ip` spelled by the 0.3.0 text too).
    #[test]
    fn result_reads_go_style_and_0_3_0_spelling() {
        let go = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
            "dns": {}
        });
        let r = CniResult::from_value(go).unwrap();
        assert_eq!(r.ips[0].interface, Some(0));
        assert!(r.dns.is_empty());

        let mistaken =
            json!({"cniVersion": "0.3.0", "ip": [{"version": "6", "address": "fd00::2/64"}]});
        assert_eq!(CniResult::from_value(mistaken).unwrap().ips.len(), 1);
    }

    /// CNI spec "Error codes": a result in an unsupported version is code 1, an undecodable one code 6.
    #[test]
    fn result_errors_have_codes() {
        let e = CniResult::from_value(json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}));
        assert_eq!(e.unwrap_err().cni_code(), 1);
        let e = CniResult::from_value(json!({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}));
        assert_eq!(e.unwrap_err().cni_code(), 6);
        assert_eq!(CniResult::from_slice(b"[").unwrap_err().cni_code(), 6);
    }

    /// CNI spec "Section 1" / "Plugin configuration objects": well-known keys typed, others kept unchanged;
    /// `prevResult` in an older version is read and written back in the configuration's version.
    #[test]
    fn netconf_parses_well_known_and_plugin_keys() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "name": "dbnet",
            "type": "polis-netplug",
            "bridge": "cni0",
            "keyA": ["some", "plugin specific"],
            "ipMasq": true,
            "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"},
            "dns": {"nameservers": ["10.1.0.1"]},
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
            "args": {"cni": {"labels": []}},
            "prevResult": {"cniVersion": "0.4.0",
                           "ips": [{"version": "4", "address": "10.1.0.5/16"}]}
        });
        let conf = NetConf::parse(raw.to_string().as_bytes()).unwrap();
        assert_eq!(conf.cni_version, Version::V1_0_0);
        assert_eq!(conf.plugin_type, "polis-netplug");
        assert_eq!(conf.ip_masq, Some(true));
        assert_eq!(
            conf.ipam.as_ref().unwrap().ipam_type.as_deref(),
            Some("host-local")
        );
        assert_eq!(
            conf.ipam.as_ref().unwrap().settings["subnet"],
            "10.1.0.0/16"
        );
        assert_eq!(conf.plugin.keys().collect::<Vec<_>>(), ["bridge", "keyA"]);
        assert!(
            conf.runtime_config
                .as_ref()
                .unwrap()
                .contains_key("portMappings")
        );
        let prev = conf.prev_result.as_ref().unwrap();
        assert_eq!(prev.ips[0].address.to_string(), "10.1.0.5/16");

        let back = conf.to_value();
        assert_eq!(
            back["prevResult"],
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/16"}]})
        );
        assert_eq!(back["bridge"], "cni0");

        #[derive(Deserialize)]
        struct Mine {
            bridge: String,
        }
        assert_eq!(conf.plugin_config::<Mine>().unwrap().bridge, "cni0");
    }

    /// CNI spec "Error codes" applied to the configuration: 6 undecodable, 7 bad name, 1 bad version.
    #[test]
    fn netconf_errors_have_codes() {
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().cni_code();
        assert_eq!(code("{"), 6);
        assert_eq!(code("[]"), 6);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","type":"x"}"#), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"-bad","type":"x"}"#),
            7
        );
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"a b","type":"x"}"#), 7);
        assert_eq!(code(r#"{"name":"n","type":"x"}"#), 1);
        assert_eq!(code(r#"{"cniVersion":"0.2.0","name":"n","type":"x"}"#), 1);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n"}"#), 6);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"x","ipMasq":"yes"}"#),
            6
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"n","type":"x","prevResult":{"cniVersion":"0.1.0"}}"#
            ),
            1
        );
    }

    /// CNI spec "Section 5: Result Types / Error": {cniVersion, code, msg, details}.
    #[test]
    fn error_result_shape() {
        let e = Error::InvalidConfig {
            reason: "network 10.0.0.0/31 too small".into(),
        };
        let v = serde_json::to_value(ErrorResult::from_error(&e, Version::V1_0_0)).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "1.0.0", "code": 7,
                   "msg": "invalid network configuration: network 10.0.0.0/31 too small"})
        );
        let relayed = Error::PluginFailed {
            plugin: "portmap".into(),
            command: "ADD",
            code: 11,
            msg: "busy".into(),
            details: Some("lock held".into()),
        };
        let v = serde_json::to_value(ErrorResult::from_error(&relayed, Version::V1_1_0)).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "1.1.0", "code": 11, "msg": "busy", "details": "lock held"})
        );
    }

    /// CNI spec 1.1.0 "GC": `cni.dev/valid-attachments`, [{containerID, ifname}]; the legacy key is read too.
    #[test]
    fn valid_attachments_are_taken_out() {
        let mut m = json!({
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
            "cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}],
            "bridge": "cni0"
        })
        .as_object()
        .unwrap()
        .clone();
        let got = take_valid_attachments(&mut m).unwrap().unwrap();
        assert_eq!(
            got,
            [Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
        assert_eq!(m.keys().collect::<Vec<_>>(), ["bridge"]);

        let mut legacy = json!({"cni.dev/attachments": []})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(take_valid_attachments(&mut legacy).unwrap(), Some(vec![]));
        assert_eq!(take_valid_attachments(&mut Map::new()).unwrap(), None);
    }
}
