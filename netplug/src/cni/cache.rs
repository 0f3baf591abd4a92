//! The result cache of the runtime side (CNI spec "Section 3: Execution of Network Configurations", "Adding an
//! attachment": "The runtime must store the result returned by the final plugin persistently, as it is required for
//! check and delete operations"); GC reads it for the attachments it knows of ("Garbage-collecting a network").
//!
//! The cache is libcni's, file for file, so libcni-based tools can read ours and we theirs:
//! `<cache_dir>/results/<network>-<containerID>-<ifname>`, a JSON object with `kind: "cniCacheV1"`,
//! `containerId`, `config` (the list's bytes, base64 as Go encodes `[]byte`), `ifName`, `networkName`, `netns`,
//! `cniArgs`, `capabilityArgs` and `result`.

use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::args::CniArgs;
use super::conflist::NetworkList;
use super::names::validate_network_name;
use super::runtime_conf::RuntimeConf;
use super::types::CniResult;
use crate::error::io;
use crate::{Error, Result};

/// The `kind` of libcni's cache files.
pub const CACHE_KIND: &str = "cniCacheV1";

/// An attachment found in the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedAttachment {
    pub network: String,
    pub runtime: RuntimeConf,
    /// The list's JSON at ADD time.
    pub config: Vec<u8>,
}

/// libcni's cache file (`cachedInfo`).
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    kind: String,
    #[serde(rename = "containerId")]
    container_id: String,
    #[serde(with = "base64_bytes", default)]
    config: Vec<u8>,
    #[serde(rename = "ifName")]
    ifname: String,
    #[serde(rename = "networkName")]
    network_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    netns: String,
    #[serde(
        rename = "cniArgs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_vec"
    )]
    cni_args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "null_map"
    )]
    capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
}

fn null_vec<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<(String, String)>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

fn null_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Map<String, Value>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

/// Go encodes `[]byte` as standard base64 (and nil as null).
mod base64_bytes {
    use super::{BASE64, Engine};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(s) => BASE64.decode(s).map_err(serde::de::Error::custom),
        }
    }
}

/// The cache directory (libcni's default is `/var/lib/cni`); the entries are in its `results/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultCache {
    pub dir: PathBuf,
}

impl ResultCache {
    pub fn new(dir: PathBuf) -> ResultCache {
        ResultCache { dir }
    }

    /// The cached ADD result of the attachment, if any. An entry that is not libcni's `cniCacheV1` is read as a
    /// bare result (libcni's legacy format).
    pub fn result(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<Option<CniResult>> {
        let path = self.path(&list.name, rt)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read the cached result", &path)(e)),
        };
        let bad = |reason: String| Error::Decode {
            what: "cached result",
            reason: format!("{}: {reason}", path.display()),
        };
        match serde_json::from_slice::<CacheEntry>(&bytes) {
            Ok(entry) if entry.kind == CACHE_KIND => {
                let value = entry.result.ok_or_else(|| bad("no result".into()))?;
                CniResult::from_value(value).map(Some)
            }
            _ => CniResult::from_slice(&bytes)
                .map(Some)
                .map_err(|e| bad(e.to_string())),
        }
    }

    /// Every attachment in the cache (all networks), sorted by file name; entries that cannot be read, or are
    /// not `cniCacheV1`, are skipped as libcni skips them.
    pub fn attachments(&self) -> Result<Vec<CachedAttachment>> {
        let dir = self.dir.join("results");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list the cached results in", &dir)(e)),
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        let mut found = Vec::new();
        for file in files {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let Ok(entry) = serde_json::from_slice::<CacheEntry>(&bytes) else {
                continue;
            };
            if entry.kind != CACHE_KIND || entry.ifname.is_empty() || entry.network_name.is_empty()
            {
                continue;
            }
            found.push(CachedAttachment {
                network: entry.network_name,
                config: entry.config,
                runtime: RuntimeConf {
                    container_id: entry.container_id,
                    netns: (!entry.netns.is_empty()).then(|| PathBuf::from(entry.netns)),
                    ifname: entry.ifname,
                    args: CniArgs {
                        pairs: entry.cni_args,
                    },
                    capability_args: entry.capability_args,
                },
            });
        }
        Ok(found)
    }

    /// `<dir>/results/<network>-<containerID>-<ifname>`; the three are validated first, so the name stays
    /// inside the directory.
    fn path(&self, network: &str, rt: &RuntimeConf) -> Result<PathBuf> {
        validate_network_name(network)?;
        rt.validate()?;
        Ok(self
            .dir
            .join("results")
            .join(format!("{network}-{}-{}", rt.container_id, rt.ifname)))
    }

    /// Writes the cache entry atomically (a temporary file renamed over it), directory 0700, file 0600.
    pub(super) fn write(
        &self,
        list: &NetworkList,
        rt: &RuntimeConf,
        result: &CniResult,
    ) -> Result<()> {
        let path = self.path(&list.name, rt)?;
        let entry = CacheEntry {
            kind: CACHE_KIND.into(),
            container_id: rt.container_id.clone(),
            config: list.bytes.clone(),
            ifname: rt.ifname.clone(),
            network_name: list.name.clone(),
            netns: rt
                .netns
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cni_args: rt.args.pairs.clone(),
            capability_args: rt.capability_args.clone(),
            result: Some(result.to_value(list.cni_version)),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| Error::Decode {
            what: "cache entry",
            reason: e.to_string(),
        })?;
        let dir = self.dir.join("results");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io("create the cache directory", &dir))?;
        Ok(polis_host::atomic::write_atomic(&path, &bytes)?)
    }

    /// Removes the cache entry; one that is not there is no error.
    pub(super) fn remove(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<()> {
        let path = self.path(&list.name, rt)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(io("remove the cached result", &path)(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// libcni's cache format read back: a file written by libcni (Go `[]byte` config in base64, null fields),
    /// and its legacy format, a bare result.
    #[test]
    fn reads_libcni_cache_files() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(tmp.path().join("cache"));
        let list = NetworkList::from_slice(
            json!({"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "first"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let dir = tmp.path().join("cache/results");
        std::fs::create_dir_all(&dir).unwrap();
        let go = json!({
            "kind": "cniCacheV1",
            "containerId": "abc",
            "config": BASE64.encode(br#"{"name":"net"}"#),
            "ifName": "net1",
            "networkName": "net",
            "netns": "/proc/7/ns/net",
            "cniArgs": [["K", "V"]],
            "capabilityArgs": null,
            "result": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}}
        });
        std::fs::write(dir.join("net-abc-net1"), go.to_string()).unwrap();
        std::fs::write(
            dir.join("net-legacy-eth0"),
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.3/24"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.join("garbage"), "{").unwrap();

        let found = cache.attachments().unwrap();
        assert_eq!(found.len(), 1);
        let a = &found[0];
        assert_eq!(
            (
                a.network.as_str(),
                a.runtime.container_id.as_str(),
                a.runtime.ifname.as_str()
            ),
            ("net", "abc", "net1")
        );
        assert_eq!(a.runtime.netns, Some(PathBuf::from("/proc/7/ns/net")));
        assert_eq!(a.runtime.args.get("K"), Some("V"));
        assert_eq!(a.config, br#"{"name":"net"}"#);

        let r = cache.result(&list, &a.runtime).unwrap().unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
        let legacy = cache
            .result(&list, &RuntimeConf::new("legacy", "eth0"))
            .unwrap()
            .unwrap();
        assert_eq!(legacy.ips[0].address.to_string(), "10.0.0.3/24");
        assert_eq!(
            cache
                .result(&list, &RuntimeConf::new("none", "eth0"))
                .unwrap(),
            None
        );
    }
}
