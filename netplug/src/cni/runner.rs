//! The runtime side of CNI, as libcni does it, for `polis-cnitool` (CNI spec "Section 3: Execution of Network
//! Configurations"): run the plugins of a network configuration list ([`super::conflist`]) for ADD, CHECK, DEL,
//! STATUS and GC, each plugin binary found in `CNI_PATH` and executed as "Section 2: Execution Protocol" says,
//! with ADD's result kept in the result cache ([`super::cache`]) for CHECK, DEL and GC.
//!
//! ```no_run
//! use polis_netplug::cni::{CniRunner, NetworkList, RuntimeConf};
//! # fn main() -> polis_netplug::Result<()> {
//! let list = NetworkList::load("/etc/cni/net.d/10-polis.conflist".as_ref())?;
//! let runner = CniRunner::new(vec!["/usr/lib/cni".into()], "/var/lib/cni".into());
//! let mut rt = RuntimeConf::new("c0ffee", "eth0");
//! rt.netns = Some("/run/netns/c0ffee".into());
//! rt.capability_args.insert("portMappings".into(), serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]));
//! let result = runner.add(&list, &rt)?;
//! runner.check(&list, &rt)?;
//! runner.del(&list, &rt)?;
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};

use super::cache::{CachedAttachment, ResultCache};
use super::conflist::NetworkList;
use super::names::validate_plugin_type;
use super::plugin::Command;
use super::runtime_conf::RuntimeConf;
use super::types::{
    Attachment, CniResult, ErrorResult, LEGACY_ATTACHMENTS_KEY, VALID_ATTACHMENTS_KEY,
};
use super::version::{Version, VersionInfo};
use crate::error::io;
use crate::{Error, Result};

/// Runs plugins for network lists: the plugin directories (`CNI_PATH`) and the cache directory (libcni's default
/// is `/var/lib/cni`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniRunner {
    pub paths: Vec<PathBuf>,
    pub cache_dir: PathBuf,
}

/// How often a plugin is started again when exec fails with ETXTBSY (a plugin binary written moments ago whose
/// write descriptor a concurrently forked child still holds), as libcni does.
const EXEC_ATTEMPTS: u32 = 5;
const EXEC_RETRY_DELAY: Duration = Duration::from_millis(200);

impl CniRunner {
    pub fn new(paths: Vec<PathBuf>, cache_dir: PathBuf) -> CniRunner {
        CniRunner { paths, cache_dir }
    }

    /// The first executable file named `plugin_type` in the plugin directories.
    pub fn find_plugin(&self, plugin_type: &str) -> Result<PathBuf> {
        validate_plugin_type(plugin_type)?;
        self.paths
            .iter()
            .map(|dir| dir.join(plugin_type))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| Error::Io {
                op: "find the CNI plugin",
                path: PathBuf::from(plugin_type),
                source: std::io::Error::new(
                    ErrorKind::NotFound,
                    format!("not in CNI_PATH {}", self.path_var()),
                ),
            })
    }

    fn path_var(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// ADD (CNI spec "Adding an attachment"): every plugin in order, each given the previous one's result as
    /// `prevResult`; stops at the first error. The last result is cached and returned.
    pub fn add(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<CniResult> {
        rt.validate()?;
        rt.require_netns(Command::Add)?;
        let mut prev: Option<CniResult> = None;
        for i in 0..list.plugins.len() {
            let conf = list.plugin_config(i, Some(&rt.capability_args), prev.as_ref());
            let out = self.exec(list.plugin_type(i), Command::Add, Some(rt), &conf)?;
            let result = CniResult::from_slice(&out).map_err(|e| match e {
                Error::Decode { reason, .. } => Error::Decode {
                    what: "plugin result",
                    reason: format!("plugin {} (ADD): {reason}", list.plugin_type(i)),
                },
                other => other,
            })?;
            prev = Some(result);
        }
        let result = prev.ok_or_else(|| Error::InvalidConfig {
            reason: format!("network {}: no plugins in the list", list.name),
        })?;
        self.cache().write(list, rt, &result)?;
        Ok(result)
    }

    /// CHECK (CNI spec "Checking an attachment"): code 1 before 0.4.0; nothing when `disableCheck`; otherwise
    /// every plugin in order with the cached ADD result as `prevResult`, stopping at the first error. Without a
    /// cached result the attachment is unknown (code 3): the spec forbids CHECK before ADD or after DEL.
    pub fn check(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<()> {
        if !list.cni_version.has_check() {
            return Err(Error::CommandNotInVersion {
                command: "CHECK",
                version: list.cni_version.to_string(),
                needs: "0.4.0",
            });
        }
        if list.disable_check {
            return Ok(());
        }
        rt.validate()?;
        rt.require_netns(Command::Check)?;
        let cached = self
            .cached_result(list, rt)?
            .ok_or_else(|| Error::UnknownContainer {
                container: rt.container_id.clone(),
                reason: format!(
                    "no cached result for network {} interface {}: never added, or deleted",
                    list.name, rt.ifname
                ),
            })?;
        for i in 0..list.plugins.len() {
            let conf = list.plugin_config(i, Some(&rt.capability_args), Some(&cached));
            self.exec(list.plugin_type(i), Command::Check, Some(rt), &conf)?;
        }
        Ok(())
    }

    /// DEL (CNI spec "Deleting an attachment"): every plugin in reverse order with the cached ADD result as
    /// `prevResult` (from 0.4.0; an unreadable cache entry is dropped and DEL goes on without it); stops at the
    /// first error, keeping the cache for a retry. On success the cache entry is removed.
    pub fn del(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<()> {
        rt.validate()?;
        let cached = if list.cni_version.has_prev_result_on_del() {
            match self.cached_result(list, rt) {
                Ok(cached) => cached,
                Err(_) => {
                    self.cache().remove(list, rt)?;
                    None
                }
            }
        } else {
            None
        };
        for i in (0..list.plugins.len()).rev() {
            let conf = list.plugin_config(i, Some(&rt.capability_args), cached.as_ref());
            self.exec(list.plugin_type(i), Command::Del, Some(rt), &conf)?;
        }
        self.cache().remove(list, rt)
    }

    /// STATUS (CNI spec 1.1.0 "STATUS"): every plugin in order, the first error returned (50/51 are the plugins'
    /// "not available"). Before 1.1.0 the plugins cannot be asked and the network counts as ready, as in libcni.
    pub fn status(&self, list: &NetworkList) -> Result<()> {
        if !list.cni_version.has_status_and_gc() {
            return Ok(());
        }
        for i in 0..list.plugins.len() {
            let conf = list.plugin_config(i, None, None);
            self.exec(list.plugin_type(i), Command::Status, None, &conf)?;
        }
        Ok(())
    }

    /// GC (CNI spec 1.1.0 "Garbage-collecting a network"), as libcni: nothing when `disableGC`; first a DEL for
    /// every cached attachment of this network that is not in `valid_attachments`; then, from 1.1.0, GC to every
    /// plugin with `cni.dev/valid-attachments` (and its early name `cni.dev/attachments`). Errors do not stop
    /// it; all of them are returned together ([`Error::GarbageCollection`]).
    pub fn gc(&self, list: &NetworkList, valid_attachments: &[Attachment]) -> Result<()> {
        if list.disable_gc {
            return Ok(());
        }
        let valid: BTreeSet<&Attachment> = valid_attachments.iter().collect();
        let mut errors = Vec::new();
        match self.cached_attachments() {
            Ok(cached) => {
                for stale in cached.iter().filter(|a| a.network == list.name) {
                    let key = Attachment {
                        container_id: stale.runtime.container_id.clone(),
                        ifname: stale.runtime.ifname.clone(),
                    };
                    if !valid.contains(&key) {
                        if let Err(e) = self.del(list, &stale.runtime) {
                            errors.push(e);
                        }
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        if list.cni_version.has_status_and_gc() {
            // The set: sorted, without duplicates.
            let sorted: Vec<&Attachment> = valid.into_iter().collect();
            let attachments = serde_json::to_value(&sorted).unwrap_or(Value::Array(Vec::new()));
            for i in 0..list.plugins.len() {
                let mut conf = list.plugin_config(i, None, None);
                conf.insert(VALID_ATTACHMENTS_KEY.into(), attachments.clone());
                conf.insert(LEGACY_ATTACHMENTS_KEY.into(), attachments.clone());
                if let Err(e) = self.exec(list.plugin_type(i), Command::Gc, None, &conf) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::GarbageCollection {
                network: list.name.clone(),
                errors,
            })
        }
    }

    /// VERSION of one plugin (stdin `{"cniVersion": <ours>}`, as libcni sends).
    pub fn version_info(&self, plugin_type: &str) -> Result<VersionInfo> {
        let mut stdin = Map::new();
        stdin.insert(
            "cniVersion".into(),
            Value::String(Version::CURRENT.as_str().into()),
        );
        let out = self.exec(plugin_type, Command::Version, None, &stdin)?;
        serde_json::from_slice(&out).map_err(|e| Error::Decode {
            what: "plugin version information",
            reason: format!("plugin {plugin_type}: {e}"),
        })
    }

    /// The result cache in `cache_dir`.
    pub fn cache(&self) -> ResultCache {
        ResultCache::new(self.cache_dir.clone())
    }

    /// [`ResultCache::result`]: the cached ADD result of the attachment, if any.
    pub fn cached_result(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<Option<CniResult>> {
        self.cache().result(list, rt)
    }

    /// [`ResultCache::attachments`]: every attachment in the cache (all networks).
    pub fn cached_attachments(&self) -> Result<Vec<CachedAttachment>> {
        self.cache().attachments()
    }

    /// Runs one plugin (CNI spec "Section 2": parameters in the environment, configuration on stdin; the
    /// process environment is inherited, its own `CNI_*` replaced) and returns its stdout. A non-zero exit is
    /// the plugin's error result ([`Error::PluginFailed`], with its code), or code 999 when it printed none.
    fn exec(
        &self,
        plugin_type: &str,
        command: Command,
        rt: Option<&RuntimeConf>,
        conf: &Map<String, Value>,
    ) -> Result<Vec<u8>> {
        let path = self.find_plugin(plugin_type)?;
        let stdin = serde_json::to_vec(conf).map_err(|e| Error::Decode {
            what: "plugin configuration",
            reason: e.to_string(),
        })?;
        let mut cmd = std::process::Command::new(&path);
        for var in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_ARGS",
            "CNI_PATH",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CNI_COMMAND", command.as_str());
        if let Some(rt) = rt {
            cmd.env("CNI_CONTAINERID", &rt.container_id);
            cmd.env("CNI_IFNAME", &rt.ifname);
            if let Some(netns) = &rt.netns {
                cmd.env("CNI_NETNS", netns);
            }
            if !rt.args.pairs.is_empty() {
                cmd.env("CNI_ARGS", rt.args.to_env_string());
            }
        }
        if !self.paths.is_empty() {
            cmd.env("CNI_PATH", self.path_var());
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());

        let mut attempt = 1;
        let mut child = loop {
            match cmd.spawn() {
                Ok(child) => break child,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < EXEC_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(EXEC_RETRY_DELAY);
                }
                Err(e) => return Err(io("run the CNI plugin", &path)(e)),
            }
        };
        // Feed stdin from another thread while stdout is read, so that neither pipe can fill up and block both
        // sides. A plugin that exits without reading stdin closes the pipe: that is not an error.
        let mut child_stdin = child.stdin.take();
        let mut child_stdout = child.stdout.take();
        let (write, read) = std::thread::scope(|s| {
            let writer = s.spawn(|| match child_stdin.take() {
                Some(mut pipe) => match pipe.write_all(&stdin) {
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
                    other => other,
                },
                None => Ok(()),
            });
            let mut out = Vec::new();
            let read = match child_stdout.take() {
                Some(mut pipe) => pipe.read_to_end(&mut out).map(|_| out),
                None => Ok(out),
            };
            let write = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
            (write, read)
        });
        let status = child.wait().map_err(io("wait for the CNI plugin", &path))?;
        let stdout = read.map_err(io("read the output of the CNI plugin", &path))?;
        write.map_err(io("write the configuration to the CNI plugin", &path))?;
        if status.success() {
            return Ok(stdout);
        }
        Err(match serde_json::from_slice::<ErrorResult>(&stdout) {
            Ok(e) => Error::PluginFailed {
                plugin: plugin_type.to_string(),
                command: command.as_str(),
                code: e.code,
                msg: e.msg,
                details: e.details,
            },
            Err(_) => Error::PluginFailed {
                plugin: plugin_type.to_string(),
                command: command.as_str(),
                code: 999,
                msg: format!("exited with {status} without an error result"),
                details: Some(String::from_utf8_lossy(&stdout).into_owned())
                    .filter(|s| !s.trim().is_empty()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::args::CniArgs;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use serde_json::json;

    /// A temporary CNI_PATH of shell-script plugins that record their stdin and `CNI_*` environment, numbered in
    /// the order they ran, and a cache directory.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    /// One recorded plugin run.
    #[derive(Debug)]
    struct Run {
        plugin: String,
        command: String,
        stdin: Value,
        env: Vec<(String, String)>,
    }

    impl Run {
        fn env(&self, var: &str) -> Option<&str> {
            self.env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.as_str())
        }
    }

    /// The canned ADD result of the fake plugin `name`: one interface named after it.
    fn canned(name: &str, last_octet: u8) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": name, "sandbox": "/run/netns/c1"}],
            "ips": [{"address": format!("10.88.0.{last_octet}/16"), "gateway": "10.88.0.1", "interface": 0}]
        })
    }

    impl Fixture {
        fn new() -> Fixture {
            let f = Fixture {
                dir: tempfile::tempdir().unwrap(),
            };
            for d in ["bin", "record", "cache", "etc"] {
                std::fs::create_dir(f.dir.path().join(d)).unwrap();
            }
            f
        }

        fn bin(&self) -> PathBuf {
            self.dir.path().join("bin")
        }

        fn runner(&self) -> CniRunner {
            CniRunner::new(
                vec![self.dir.path().join("nowhere"), self.bin()],
                self.dir.path().join("cache"),
            )
        }

        /// A plugin that prints `add_output` for ADD, a VERSION answer for VERSION, and runs `extra` (shell) for
        /// every command after recording.
        fn plugin(&self, name: &str, add_output: &Value, extra: &str) {
            let record = self.dir.path().join("record");
            let script = format!(
                r#"#!/bin/sh
rec='{record}'
n=$(cat "$rec/counter" 2>/dev/null || echo 0)
n=$((n+1))
echo "$n" > "$rec/counter"
base=$(printf '%s/%03d-%s-%s' "$rec" "$n" "$(basename "$0")" "$CNI_COMMAND")
cat > "$base.stdin"
env | grep '^CNI_' | sort > "$base.env"
{extra}
case "$CNI_COMMAND" in
ADD) cat <<'RESULT'
{add_output}
RESULT
;;
VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}' ;;
esac
"#,
                record = record.display(),
            );
            let path = self.bin().join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn runs(&self) -> Vec<Run> {
            let record = self.dir.path().join("record");
            let mut names: Vec<String> = std::fs::read_dir(&record)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".stdin"))
                .collect();
            names.sort();
            names
                .into_iter()
                .map(|n| {
                    let stem = n.trim_end_matches(".stdin");
                    let mut parts = stem.splitn(2, '-');
                    let _seq = parts.next();
                    let rest = parts.next().unwrap();
                    let (plugin, command) = rest.rsplit_once('-').unwrap();
                    let stdin = std::fs::read(record.join(&n)).unwrap();
                    let env = std::fs::read_to_string(record.join(format!("{stem}.env"))).unwrap();
                    Run {
                        plugin: plugin.into(),
                        command: command.into(),
                        stdin: serde_json::from_slice(&stdin).unwrap_or(Value::Null),
                        env: env
                            .lines()
                            .filter_map(|l| l.split_once('='))
                            .map(|(k, v)| (k.into(), v.into()))
                            .collect(),
                    }
                })
                .collect()
        }

        fn clear_runs(&self) {
            let record = self.dir.path().join("record");
            std::fs::remove_dir_all(&record).unwrap();
            std::fs::create_dir(&record).unwrap();
        }

        fn write_list(&self, file: &str, list: &Value) -> NetworkList {
            let path = self.dir.path().join("etc").join(file);
            std::fs::write(&path, list.to_string()).unwrap();
            NetworkList::load(&path).unwrap()
        }

        fn cache_file(&self, name: &str) -> PathBuf {
            self.dir.path().join("cache/results").join(name)
        }
    }

    fn three_plugins(version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "polis",
            "plugins": [
                {"type": "first", "bridge": "polis0", "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}},
                {"type": "second", "capabilities": {"portMappings": true, "mac": false}},
                {"type": "third", "capabilities": {"bandwidth": true}, "runtimeConfig": {"stale": 1}}
            ]
        })
    }

    fn setup(version: &str) -> (Fixture, NetworkList) {
        let f = Fixture::new();
        f.plugin("first", &canned("first", 2), "");
        f.plugin("second", &canned("second", 3), "");
        f.plugin("third", &canned("third", 4), "");
        let list = f.write_list("10-polis.conflist", &three_plugins(version));
        (f, list)
    }

    fn runtime(container: &str) -> RuntimeConf {
        let mut rt = RuntimeConf::new(container, "eth0");
        rt.netns = Some(PathBuf::from(format!("/run/netns/{container}")));
        rt.args = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web").unwrap();
        rt.capability_args = json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "mac": "00:11:22:33:44:55",
            "bandwidth": {"ingressRate": 1000},
            "ips": ["10.88.0.9/16"]
        })
        .as_object()
        .unwrap()
        .clone();
        rt
    }

    /// CNI spec "Adding an attachment" and "Deriving execution configuration from plugin configuration": name and
    /// cniVersion injected, runtimeConfig only for declared capabilities, prevResult chained from the previous
    /// plugin, capabilities removed, other keys unchanged; the environment of section 2; the result cached.
    #[test]
    fn add_chains_plugins_and_caches_the_result() {
        let (f, list) = setup("1.1.0");
        let rt = runtime("c1");
        let result = f.runner().add(&list, &rt).unwrap();
        assert_eq!(result.interfaces[0].name, "third");

        let runs = f.runs();
        let order: Vec<(&str, &str)> = runs
            .iter()
            .map(|r| (r.plugin.as_str(), r.command.as_str()))
            .collect();
        assert_eq!(
            order,
            [("first", "ADD"), ("second", "ADD"), ("third", "ADD")]
        );

        let first = &runs[0].stdin;
        assert_eq!(first["name"], "polis");
        assert_eq!(first["cniVersion"], "1.1.0");
        assert_eq!(first["bridge"], "polis0");
        assert_eq!(first["ipam"]["subnet"], "10.88.0.0/16");
        assert!(first.get("runtimeConfig").is_none() && first.get("prevResult").is_none());

        let second = &runs[1].stdin;
        assert_eq!(
            second["runtimeConfig"],
            json!({"portMappings": rt.capability_args["portMappings"]})
        );
        assert_eq!(second["prevResult"], canned("first", 2));
        assert!(second.get("capabilities").is_none());

        let third = &runs[2].stdin;
        assert_eq!(
            third["runtimeConfig"],
            json!({"bandwidth": {"ingressRate": 1000}})
        );
        assert_eq!(third["prevResult"], canned("second", 3));

        let bin = f.bin();
        for run in &runs {
            assert_eq!(run.env("CNI_COMMAND"), Some("ADD"));
            assert_eq!(run.env("CNI_CONTAINERID"), Some("c1"));
            assert_eq!(run.env("CNI_NETNS"), Some("/run/netns/c1"));
            assert_eq!(run.env("CNI_IFNAME"), Some("eth0"));
            assert_eq!(
                run.env("CNI_ARGS"),
                Some("IgnoreUnknown=1;K8S_POD_NAME=web")
            );
            let path = run.env("CNI_PATH").unwrap();
            assert!(path.ends_with(&format!(":{}", bin.display())), "{path}");
        }

        // libcni's cache entry.
        let cached: Value =
            serde_json::from_slice(&std::fs::read(f.cache_file("polis-c1-eth0")).unwrap()).unwrap();
        assert_eq!(cached["kind"], "cniCacheV1");
        assert_eq!(cached["containerId"], "c1");
        assert_eq!(cached["ifName"], "eth0");
        assert_eq!(cached["networkName"], "polis");
        assert_eq!(cached["netns"], "/run/netns/c1");
        assert_eq!(
            cached["cniArgs"],
            json!([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]])
        );
        assert_eq!(
            cached["capabilityArgs"],
            Value::Object(rt.capability_args.clone())
        );
        assert_eq!(cached["result"], canned("third", 4));
        let config = BASE64.decode(cached["config"].as_str().unwrap()).unwrap();
        assert_eq!(config, list.bytes);
        let mode = std::fs::metadata(f.cache_file("polis-c1-eth0"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(f.runner().cached_result(&list, &rt).unwrap(), Some(result));
    }

    /// CNI spec 0.4.0 "Result": an older list gets prevResult in its own version (IP `version` added).
    #[test]
    fn add_passes_prev_result_in_the_list_version() {
        let (f, list) = setup("0.4.0");
        f.runner().add(&list, &runtime("c1")).unwrap();
        let runs = f.runs();
        assert_eq!(runs[1].stdin["cniVersion"], "0.4.0");
        assert_eq!(runs[1].stdin["prevResult"]["cniVersion"], "0.4.0");
        assert_eq!(runs[1].stdin["prevResult"]["ips"][0]["version"], "4");
        let cached: Value =
            serde_json::from_slice(&std::fs::read(f.cache_file("polis-c1-eth0")).unwrap()).unwrap();
        assert_eq!(cached["result"]["cniVersion"], "0.4.0");
    }

    /// CNI spec "Adding an attachment", step 4: a plugin's error stops the chain; its code reaches the caller;
    /// nothing is cached.
    #[test]
    fn add_stops_at_a_plugin_error() {
        let (f, list) = setup("1.1.0");
        f.plugin(
            "second",
            &Value::Null,
            r#"echo '{"cniVersion":"1.1.0","code":11,"msg":"busy","details":"lock held"}'; exit 1"#,
        );
        let err = f.runner().add(&list, &runtime("c1")).unwrap_err();
        match &err {
            Error::PluginFailed {
                plugin,
                command,
                code,
                msg,
                details,
            } => {
                assert_eq!((plugin.as_str(), *command, *code), ("second", "ADD", 11));
                assert_eq!(
                    (msg.as_str(), details.as_deref()),
                    ("busy", Some("lock held"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.cni_code(), 11);
        assert_eq!(f.runs().len(), 2);
        assert!(!f.cache_file("polis-c1-eth0").exists());

        f.plugin("second", &Value::Null, "echo garbage; exit 3");
        let err = f.runner().add(&list, &runtime("c1")).unwrap_err();
        assert_eq!(err.cni_code(), 999, "{err}");
        f.plugin("second", &json!({"cniVersion": "0.2.0", "ip4": {}}), "");
        assert_eq!(
            f.runner()
                .add(&list, &runtime("c1"))
                .unwrap_err()
                .cni_code(),
            1
        );
    }

    /// CNI spec "Checking an attachment": in order, prevResult the cached result; not at all with
    /// `disableCheck`; code 1 before 0.4.0; an attachment never added is unknown (code 3).
    #[test]
    fn check_runs_in_order_with_the_cached_result() {
        let (f, list) = setup("1.0.0");
        let rt = runtime("c1");
        assert_eq!(f.runner().check(&list, &rt).unwrap_err().cni_code(), 3);
        f.runner().add(&list, &rt).unwrap();
        f.clear_runs();
        f.runner().check(&list, &rt).unwrap();
        let runs = f.runs();
        let order: Vec<&str> = runs.iter().map(|r| r.plugin.as_str()).collect();
        assert_eq!(order, ["first", "second", "third"]);
        let mut expected = canned("third", 4);
        expected["cniVersion"] = json!("1.0.0");
        for run in &runs {
            assert_eq!(run.command, "CHECK");
            assert_eq!(run.stdin["prevResult"], expected);
        }

        f.clear_runs();
        let mut disabled = list.clone();
        disabled.disable_check = true;
        f.runner().check(&disabled, &rt).unwrap();
        assert!(f.runs().is_empty());

        let (f, old) = setup("0.3.1");
        assert_eq!(f.runner().check(&old, &rt).unwrap_err().cni_code(), 1);
    }

    /// CNI spec "Deleting an attachment": reverse order, prevResult the cached result, cache removed after; DEL
    /// again without a cache still runs (no prevResult); a failing DEL keeps the cache.
    #[test]
    fn del_runs_in_reverse_and_removes_the_cache() {
        let (f, list) = setup("1.1.0");
        let rt = runtime("c1");
        f.runner().add(&list, &rt).unwrap();
        f.clear_runs();
        f.runner().del(&list, &rt).unwrap();
        let runs = f.runs();
        let order: Vec<(&str, &str)> = runs
            .iter()
            .map(|r| (r.plugin.as_str(), r.command.as_str()))
            .collect();
        assert_eq!(
            order,
            [("third", "DEL"), ("second", "DEL"), ("first", "DEL")]
        );
        for run in &runs {
            assert_eq!(run.stdin["prevResult"], canned("third", 4));
            assert_eq!(run.env("CNI_NETNS"), Some("/run/netns/c1"));
        }
        assert_eq!(
            runs[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        assert!(!f.cache_file("polis-c1-eth0").exists());

        f.clear_runs();
        let mut no_netns = rt.clone();
        no_netns.netns = None;
        f.runner().del(&list, &no_netns).unwrap();
        let runs = f.runs();
        assert_eq!(runs.len(), 3);
        assert!(
            runs.iter()
                .all(|r| r.stdin.get("prevResult").is_none() && r.env("CNI_NETNS").is_none())
        );

        f.runner().add(&list, &rt).unwrap();
        f.plugin(
            "first",
            &Value::Null,
            r#"[ "$CNI_COMMAND" = DEL ] && { echo '{"code":5,"msg":"io"}'; exit 1; }"#,
        );
        assert_eq!(f.runner().del(&list, &rt).unwrap_err().cni_code(), 5);
        assert!(f.cache_file("polis-c1-eth0").exists());
    }

    /// CNI spec 0.3.x: no prevResult on DEL before 0.4.0, even with a cache.
    #[test]
    fn del_before_0_4_0_has_no_prev_result() {
        let (f, list) = setup("0.3.1");
        let rt = runtime("c1");
        f.runner().add(&list, &rt).unwrap();
        f.clear_runs();
        f.runner().del(&list, &rt).unwrap();
        assert!(f.runs().iter().all(|r| r.stdin.get("prevResult").is_none()));
        assert!(!f.cache_file("polis-c1-eth0").exists());
    }

    /// CNI spec 1.1.0 "STATUS": every plugin, no attachment parameters; not asked before 1.1.0.
    #[test]
    fn status_asks_every_plugin() {
        let (f, list) = setup("1.1.0");
        f.runner().status(&list).unwrap();
        let runs = f.runs();
        assert_eq!(runs.len(), 3);
        for run in &runs {
            assert_eq!(run.command, "STATUS");
            assert_eq!(run.env("CNI_CONTAINERID"), None);
            assert_eq!(run.env("CNI_IFNAME"), None);
            assert!(
                run.stdin.get("runtimeConfig").is_none() && run.stdin.get("capabilities").is_none()
            );
            assert_eq!(run.stdin["name"], "polis");
        }
        f.plugin(
            "second",
            &Value::Null,
            r#"echo '{"code":50,"msg":"not ready"}'; exit 1"#,
        );
        assert_eq!(f.runner().status(&list).unwrap_err().cni_code(), 50);

        let (f, old) = setup("1.0.0");
        f.runner().status(&old).unwrap();
        assert!(f.runs().is_empty());
    }

    /// CNI spec 1.1.0 "Garbage-collecting a network" (and libcni): stale cached attachments are deleted, then
    /// every plugin gets GC with the valid attachments; errors are collected, not stopping; `disableGC` skips it.
    #[test]
    fn gc_deletes_stale_attachments_and_asks_every_plugin() {
        let (f, list) = setup("1.1.0");
        let runner = f.runner();
        runner.add(&list, &runtime("c1")).unwrap();
        runner.add(&list, &runtime("c2")).unwrap();
        // Another network's attachment is not this GC's business.
        let other = f.write_list(
            "other.conflist",
            &json!({"cniVersion": "1.1.0", "name": "other", "plugins": [{"type": "first"}]}),
        );
        runner.add(&other, &runtime("c3")).unwrap();
        f.clear_runs();

        let valid = [Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }];
        runner.gc(&list, &valid).unwrap();
        let runs = f.runs();
        let order: Vec<(&str, &str)> = runs
            .iter()
            .map(|r| (r.plugin.as_str(), r.command.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("third", "DEL"),
                ("second", "DEL"),
                ("first", "DEL"),
                ("first", "GC"),
                ("second", "GC"),
                ("third", "GC")
            ]
        );
        assert_eq!(runs[0].env("CNI_CONTAINERID"), Some("c2"));
        assert_eq!(runs[0].env("CNI_NETNS"), Some("/run/netns/c2"));
        assert_eq!(
            runs[0].env("CNI_ARGS"),
            Some("IgnoreUnknown=1;K8S_POD_NAME=web")
        );
        assert_eq!(
            runs[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        for run in &runs[3..] {
            assert_eq!(
                run.stdin["cni.dev/valid-attachments"],
                json!([{"containerID": "c1", "ifname": "eth0"}])
            );
            assert_eq!(
                run.stdin["cni.dev/attachments"],
                run.stdin["cni.dev/valid-attachments"]
            );
            assert!(run.env("CNI_PATH").is_some() && run.env("CNI_CONTAINERID").is_none());
        }
        assert!(f.cache_file("polis-c1-eth0").exists());
        assert!(!f.cache_file("polis-c2-eth0").exists());
        assert!(f.cache_file("other-c3-eth0").exists());

        // Errors are collected; the other plugins still run.
        f.clear_runs();
        f.plugin(
            "first",
            &Value::Null,
            r#"[ "$CNI_COMMAND" = GC ] && { echo '{"code":7,"msg":"bad"}'; exit 1; }"#,
        );
        let err = runner.gc(&list, &valid).unwrap_err();
        match &err {
            Error::GarbageCollection { network, errors } => {
                assert_eq!((network.as_str(), errors.len()), ("polis", 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.cni_code(), 7);
        assert_eq!(f.runs().len(), 3);

        f.clear_runs();
        let mut disabled = list.clone();
        disabled.disable_gc = true;
        runner.gc(&disabled, &[]).unwrap();
        assert!(f.runs().is_empty());
        assert!(f.cache_file("polis-c1-eth0").exists());
    }

    /// GC of a pre-1.1.0 list: the stale attachments are still deleted (libcni), but the plugins get no GC.
    #[test]
    fn gc_before_1_1_0_only_deletes() {
        let (f, list) = setup("1.0.0");
        f.runner().add(&list, &runtime("c1")).unwrap();
        f.clear_runs();
        f.runner().gc(&list, &[]).unwrap();
        assert!(f.runs().iter().all(|r| r.command == "DEL"));
        assert_eq!(f.runs().len(), 3);
    }

    /// Plugin lookup in CNI_PATH, VERSION, and attachment parameters checked before anything runs (the cache
    /// file name is built from them).
    #[test]
    fn lookup_version_and_parameter_checks() {
        let (f, list) = setup("1.1.0");
        let runner = f.runner();
        assert_eq!(runner.find_plugin("first").unwrap(), f.bin().join("first"));
        assert_eq!(runner.find_plugin("absent").unwrap_err().cni_code(), 5);
        assert_eq!(
            runner.find_plugin("../bin/first").unwrap_err().cni_code(),
            7
        );
        std::fs::write(f.bin().join("noexec"), "#!/bin/sh\n").unwrap();
        assert!(runner.find_plugin("noexec").is_err());

        let info = runner.version_info("first").unwrap();
        assert_eq!(info.supported_versions, ["1.0.0", "1.1.0"]);
        assert_eq!(f.runs()[0].stdin, json!({"cniVersion": "1.1.0"}));

        f.clear_runs();
        for rt in [
            RuntimeConf::new("../../etc", "eth0"),
            RuntimeConf::new("c1", "a/b"),
            RuntimeConf::new("", "eth0"),
        ] {
            assert_eq!(runner.add(&list, &rt).unwrap_err().cni_code(), 4);
            assert_eq!(runner.del(&list, &rt).unwrap_err().cni_code(), 4);
        }
        let mut no_netns = runtime("c1");
        no_netns.netns = None;
        assert_eq!(runner.add(&list, &no_netns).unwrap_err().cni_code(), 4);
        assert_eq!(runner.check(&list, &no_netns).unwrap_err().cni_code(), 4);
        assert!(f.runs().is_empty());
    }
}
