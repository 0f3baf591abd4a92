//! CNI spec versions (CNI spec "Version", "Section 5: Result Types / Version") and their negotiation
//! (`cniVersion` and, from 1.1.0, `cniVersions` in "Section 1: Network configuration format").
//!
//! We speak 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0. 0.1.0 and 0.2.0 are left out: their result format (`ip4`/`ip6`)
//! is not implemented, and VERSION must list only what we can produce.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One CNI spec version that this crate speaks. Ordered oldest to newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    /// Every supported version, oldest first: exactly what VERSION answers.
    pub const ALL: [Version; 5] = [
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];

    /// The newest version, used where no other is known (VERSION output, errors before the config is read).
    pub const CURRENT: Version = Version::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// The supported version named `s`, or code 1 (incompatible CNI version).
    pub fn parse(s: &str) -> Result<Version> {
        Version::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::IncompatibleVersion {
                version: s.to_string(),
                supported: supported_list(),
            })
    }

    /// CHECK exists from 0.4.0 (spec 0.4.0 "Introduce the CHECK command").
    pub fn has_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// STATUS and GC exist from 1.1.0.
    pub fn has_status_and_gc(self) -> bool {
        self >= Version::V1_1_0
    }

    /// Results before 1.0.0 carry `"version": "4"|"6"` on each IP (removed in 1.0.0).
    pub fn ips_carry_version(self) -> bool {
        self < Version::V1_0_0
    }

    /// 1.1.0 added interface `mtu`, `socketPath`, `pciID` and route `mtu`, `advmss`, `priority`, `table`, `scope`.
    pub fn has_1_1_fields(self) -> bool {
        self >= Version::V1_1_0
    }

    /// A runtime passes `prevResult` on DEL from 0.4.0 on ("passing prevResult on DEL").
    pub fn has_prev_result_on_del(self) -> bool {
        self >= Version::V0_4_0
    }
}

/// "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0", for messages.
pub fn supported_list() -> String {
    Version::ALL
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Version> {
        Version::parse(s)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Version, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The version a network configuration list runs with (CNI spec 1.1.0, `cniVersions`): the highest of
/// `cniVersions` and `cniVersion` that we support. Entries we do not know (newer ones included) are skipped, as
/// libcni skips versions newer than its own. Code 1 when none is supported.
pub fn negotiate(cni_version: Option<&str>, cni_versions: &[String]) -> Result<Version> {
    cni_versions
        .iter()
        .map(String::as_str)
        .chain(cni_version)
        .filter_map(|s| Version::parse(s).ok())
        .max()
        .ok_or_else(|| {
            let mut declared: Vec<&str> = cni_versions.iter().map(String::as_str).collect();
            declared.extend(cni_version);
            Error::IncompatibleVersion {
                version: if declared.is_empty() {
                    "(none declared)".to_string()
                } else {
                    declared.join(", ")
                },
                supported: supported_list(),
            }
        })
}

/// The VERSION result (CNI spec "Section 5: Result Types / Version").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// What this crate answers to VERSION.
    pub fn ours() -> VersionInfo {
        VersionInfo {
            cni_version: Version::CURRENT.as_str().to_string(),
            supported_versions: Version::ALL
                .iter()
                .map(|v| v.as_str().to_string())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CNI spec "VERSION: probe plugin version support": the supported list, and nothing we cannot produce.
    #[test]
    fn version_answer_lists_exactly_the_supported_versions() {
        let v = serde_json::to_value(VersionInfo::ours()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            })
        );
    }

    /// CNI spec "Error codes": 1, incompatible CNI version, for anything unknown (0.1.0/0.2.0 included).
    #[test]
    fn unknown_versions_are_code_1() {
        for s in ["0.1.0", "0.2.0", "1.2.0", "1.0", "", "latest"] {
            let e = Version::parse(s).unwrap_err();
            assert_eq!(e.cni_code(), 1, "{s}");
        }
        assert_eq!(Version::parse("0.4.0").unwrap(), Version::V0_4_0);
        assert!(Version::V0_3_1 < Version::V0_4_0 && Version::V1_0_0 < Version::V1_1_0);
    }

    /// CNI spec 1.1.0 "Section 1: Network configuration format" (`cniVersions`): the highest common version.
    #[test]
    fn negotiation_picks_highest_supported() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(Some("1.0.0"), &list(&["1.0.0", "1.1.0"])).unwrap(),
            Version::V1_1_0
        );
        assert_eq!(
            negotiate(Some("1.0.0"), &list(&["1.0.0", "1.1.0", "2.0.0"])).unwrap(),
            Version::V1_1_0
        );
        assert_eq!(negotiate(Some("0.4.0"), &[]).unwrap(), Version::V0_4_0);
        assert_eq!(
            negotiate(None, &list(&["0.3.1", "0.4.0"])).unwrap(),
            Version::V0_4_0
        );
        assert_eq!(negotiate(Some("0.2.0"), &[]).unwrap_err().cni_code(), 1);
        assert_eq!(negotiate(None, &[]).unwrap_err().cni_code(), 1);
    }

    /// Which commands and fields exist in which version.
    #[test]
    fn command_and_field_gates() {
        assert!(!Version::V0_3_1.has_check() && Version::V0_4_0.has_check());
        assert!(!Version::V1_0_0.has_status_and_gc() && Version::V1_1_0.has_status_and_gc());
        assert!(Version::V0_4_0.ips_carry_version() && !Version::V1_0_0.ips_carry_version());
    }
}
