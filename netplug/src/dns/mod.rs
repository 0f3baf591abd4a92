//! Names within a network: each attachment registers its names (the container's name, its aliases and its ID)
//! with A/AAAA records for its addresses, and a small resolver on the network's gateway addresses answers them and
//! forwards every other name to the host's resolvers.
//!
//! - The records are files, one per attachment: `<dataDir>/<network>/dns/<containerID>-<ifname>.json`, written
//!   atomically by ADD, removed by DEL and GC. They are the only state; the resolver re-reads them.
//! - Names: `K8S_POD_NAME` from `CNI_ARGS` if given, else the `aliases` capability for this network
//!   (`runtimeConfig.aliases = {"<network>": ["web", "www"]}`, podman's convention), and always the container ID
//!   (and its first 12 characters, the short ID, when longer; a DNS label holds at most 63). A name resolves bare
//!   (`web`) and under the network's name as domain (`web.<network>`); other names under that domain are
//!   NXDOMAIN; everything else is forwarded.
//! - The resolver is `polis-netplug dns-serve` (see [`server`]), a detached daemon in the plugin's (the host's)
//!   network namespace, listening on port 53 of the gateway addresses. The first ADD of a network starts it, the
//!   DEL (or GC) that leaves no record stops it; both under `<dataDir>/<network>/dns.lock`, with its pid in
//!   `<dataDir>/<network>/dns.pid` and its log in `<dataDir>/<network>/dns.log`.
//! - Upstreams: the `nameserver` lines of `/etc/resolv.conf` where the daemon starts, or the addresses in
//!   [`UPSTREAM_ENV`] of the plugin's environment (for tests and hosts whose resolv.conf names a local stub
//!   unreachable from the bridge). An upstream that is the resolver itself is skipped.

pub mod message;
pub mod server;

use crate::error::{Error, Result, io};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The hidden subcommand of the `polis-netplug` binary that runs the resolver.
/// Waits up to `limit` for a resolver just started with a piped stdout to print `ready` (as `dns-serve` does once it
/// listens); otherwise kills it and says why: what it printed instead, or that it did not get ready in time.
pub fn wait_ready(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::result::Result<(), String> {
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(limit).unwrap_or_default();
    if line.trim() == "ready" {
        return Ok(());
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(match line.trim() {
        "" => format!("it did not get ready in {limit:?}"),
        said => said.to_string(),
    })
}

pub const SERVE_COMMAND: &str = "dns-serve";
/// Upstream resolvers (`IP` or `IP:PORT`, separated by commas or spaces) that replace `/etc/resolv.conf`'s.
pub const UPSTREAM_ENV: &str = "POLIS_NETPLUG_DNS_UPSTREAM";
/// How long ADD waits for a new resolver to bind its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// One attachment's names and addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameRecord {
    pub container_id: String,
    pub ifname: String,
    pub names: Vec<String>,
    pub addresses: Vec<IpAddr>,
}

pub fn records_dir(data_dir: &Path, network: &str) -> PathBuf {
    data_dir.join(network).join("dns")
}

pub fn pid_path(data_dir: &Path, network: &str) -> PathBuf {
    data_dir.join(network).join("dns.pid")
}

fn record_path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}-{ifname}.json"))
}

/// Writes `record` into `dir` atomically (polis_host::atomic).
pub fn write_record(dir: &Path, record: &NameRecord) -> Result<()> {
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let path = record_path(dir, &record.container_id, &record.ifname);
    let data = serde_json::to_vec(record).map_err(|e| Error::Decode {
        what: "dns record",
        reason: e.to_string(),
    })?;
    Ok(polis_host::atomic::write_atomic_mode(&path, &data, 0o644)?)
}

/// Every record in `dir`; unreadable ones are skipped (a record is only ever replaced whole).
pub fn read_records(dir: &Path) -> Vec<NameRecord> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|d| serde_json::from_slice(&d).ok())
        .collect()
}

/// A name must be a dotted sequence of labels of letters, digits, '-' and '_', each 1 to 63 long.
fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// The names an attachment registers: `pod_name` (CNI_ARGS `K8S_POD_NAME`) if given, else the `aliases`
/// capability's list for `network`; then the container ID (and its short form when it is long).
pub fn attachment_names(
    network: &str,
    container_id: &str,
    pod_name: Option<&str>,
    runtime_config: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    if let Some(pod) = pod_name.filter(|p| !p.is_empty()) {
        names.push(pod.to_string());
    } else if let Some(aliases) = runtime_config.and_then(|rc| rc.get("aliases")) {
        let bad = |why: &str| Error::InvalidConfig {
            reason: format!("runtimeConfig.aliases: {why}"),
        };
        let map = aliases
            .as_object()
            .ok_or_else(|| bad("not a map of network name to names"))?;
        if let Some(list) = map.get(network) {
            for v in list
                .as_array()
                .ok_or_else(|| bad(&format!("{network:?} is not a list of names")))?
            {
                let n = v
                    .as_str()
                    .ok_or_else(|| bad(&format!("{v} is not a string")))?;
                names.push(n.to_string());
            }
        }
    }
    for n in &names {
        if !valid_name(n) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "DNS name {n:?}: labels of letters, digits, '-' and '_', 1 to 63 long"
                ),
            });
        }
    }
    if valid_name(container_id) {
        names.push(container_id.to_string());
    }
    if let Some(short) = container_id.get(..12).filter(|_| container_id.len() > 12) {
        if valid_name(short) {
            names.push(short.to_string());
        }
    }
    let mut seen = Vec::new();
    names.retain(|n| {
        let key = n.to_ascii_lowercase();
        let fresh = !seen.contains(&key);
        seen.push(key);
        fresh
    });
    Ok(names)
}

/// `IP` or `IP:PORT` or `[IPv6]:PORT`; port 53 when none is given.
pub fn parse_upstream(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// The `nameserver` addresses of a resolv.conf (a zone index such as `fe80::1%eth0` is dropped with its server).
pub fn resolv_conf_upstreams(path: &Path) -> Vec<SocketAddr> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// An exclusive flock on `<dataDir>/<network>/dns.lock`, released on drop.
fn lock_network_dns(data_dir: &Path, network: &str) -> Result<polis_host::lock::FileLock> {
    crate::lock::lock_exclusive(&data_dir.join(network).join("dns.lock"))
}

/// The pid in the pid file, if that process is this network's resolver (its command line says so: a reused pid
/// is not taken for it).
fn running_resolver(data_dir: &Path, network: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_path(data_dir, network))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let pair = |flag: &str, value: &[u8]| {
        args.windows(2)
            .any(|w| w[0] == flag.as_bytes() && w[1] == value)
    };
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    let ours = args.get(1) == Some(&SERVE_COMMAND.as_bytes())
        && pair("--network", network.as_bytes())
        && pair("--data-dir", data_dir.as_os_str().as_encoded_bytes());
    (ours && !zombie).then_some(pid)
}

/// The `polis-netplug` binary to run the resolver: this one when it is polis-netplug, else the one on
/// `CNI_PATH`.
fn resolver_binary(cni_path: &[PathBuf]) -> Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_name().is_some_and(|n| n == "polis-netplug") {
            return Ok(exe);
        }
    }
    cni_path
        .iter()
        .map(|d| d.join("polis-netplug"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Io {
            op: "finding the DNS resolver's binary on CNI_PATH",
            path: PathBuf::from("polis-netplug"),
            source: std::io::ErrorKind::NotFound.into(),
        })
}

/// Upstreams from [`UPSTREAM_ENV`] in the plugin's environment, if set.
fn upstreams_from_env() -> Vec<String> {
    std::env::var(UPSTREAM_ENV)
        .map(|v| {
            v.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Starts the network's resolver on `listen` (port 53) unless it runs; waits until it has bound its sockets.
fn start_host_resolver(
    data_dir: &Path,
    network: &str,
    listen: &[IpAddr],
    cni_path: &[PathBuf],
) -> Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if running_resolver(data_dir, network).is_some() {
        return Ok(());
    }
    let binary = resolver_binary(cni_path)?;
    let log_path = data_dir.join(network).join("dns.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("opening", &log_path))?;
    let mut cmd = Command::new(&binary);
    cmd.arg(SERVE_COMMAND)
        .arg("--network")
        .arg(network)
        .arg("--data-dir")
        .arg(data_dir);
    for ip in listen {
        cmd.arg("--listen").arg(ip.to_string());
    }
    for up in upstreams_from_env() {
        cmd.arg("--upstream").arg(up);
    }
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let spawn_err = |e: std::io::Error| Error::Io {
        op: "starting the DNS resolver",
        path: binary.clone(),
        source: e,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Err(why) = wait_ready(&mut child, START_TIMEOUT) {
        let why = format!("{why}; see its log");
        return Err(Error::Io {
            op: "starting the DNS resolver (log)",
            path: log_path,
            source: std::io::Error::other(format!("network {network} on {listen:?}: {why}")),
        });
    }
    let pid_file = pid_path(data_dir, network);
    let written = polis_host::atomic::write_atomic_mode(
        &pid_file,
        format!("{}\n", child.id()).as_bytes(),
        0o644,
    );
    if let Err(e) = written {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.into());
    }
    // Reap it should it exit while this process still runs (a plugin used as a library by a long-lived one).
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Stops the network's resolver when no record is left (under the network's DNS lock).
fn stop_host_resolver_if_unused(data_dir: &Path, network: &str) -> Result<()> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = data_dir.join(network);
    if !dir.exists() {
        return Ok(());
    }
    let _lock = lock_network_dns(data_dir, network)?;
    if !read_records(&records_dir(data_dir, network)).is_empty() {
        return Ok(());
    }
    if let Some(pid) = running_resolver(data_dir, network) {
        // The resolver keeps no state worth a graceful stop, and SIGKILL ends it at once (a DEL waits for the
        // port to be free, so that the next ADD's resolver can bind it).
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(3);
        while running_resolver(data_dir, network).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let pid_file = pid_path(data_dir, network);
    match fs::remove_file(&pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", pid_file)(e)),
        _ => Ok(()),
    }
}

/// ADD: registers the attachment's names and addresses, and makes sure the network's resolver runs on the
/// gateway addresses. Returns the nameservers for the result (the gateway addresses).
pub fn attach_host_resolver(
    data_dir: &Path,
    record: &NameRecord,
    network: &str,
    gateways: &[IpAddr],
    cni_path: &[PathBuf],
) -> Result<Vec<String>> {
    write_record(&records_dir(data_dir, network), record)?;
    let _lock = lock_network_dns(data_dir, network)?;
    start_host_resolver(data_dir, network, gateways, cni_path)?;
    Ok(gateways.iter().map(|g| g.to_string()).collect())
}

/// DEL: removes the attachment's record, and stops the resolver if it was the last.
pub fn detach_host_resolver(
    data_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<()> {
    let path = record_path(&records_dir(data_dir, network), container_id, ifname);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", path)(e)),
        _ => {}
    }
    stop_host_resolver_if_unused(data_dir, network)
}

/// GC: removes the records of attachments not in `valid`, and stops the resolver when none is left.
pub fn gc_host_resolver(data_dir: &Path, network: &str, valid: &[(String, String)]) -> Result<()> {
    let dir = records_dir(data_dir, network);
    for r in read_records(&dir) {
        if !valid.contains(&(r.container_id.clone(), r.ifname.clone())) {
            let path = record_path(&dir, &r.container_id, &r.ifname);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("removing", path)(e));
                }
                _ => {}
            }
        }
    }
    stop_host_resolver_if_unused(data_dir, network)
}

/// `polis-netplug dns-serve ARGS`: the resolver daemon's entry point; returns the exit code.
pub fn serve_main(args: &[String]) -> i32 {
    match server::ServeOptions::parse(args) {
        Ok(opts) => server::serve_host_resolver(opts),
        Err(e) => {
            println!("error: {SERVE_COMMAND}: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_from_pod_name_or_aliases_and_the_id() {
        let rc = json!({"aliases": {"net1": ["web", "WWW"], "other": ["x"]}});
        let rc = rc.as_object();
        assert_eq!(
            attachment_names("net1", "c1", None, rc).unwrap(),
            ["web", "WWW", "c1"]
        );
        assert_eq!(
            attachment_names("net1", "c1", Some("pod-a"), rc).unwrap(),
            ["pod-a", "c1"]
        );
        assert_eq!(attachment_names("net2", "c1", None, rc).unwrap(), ["c1"]);
        let long = "0123456789abcdef".repeat(4);
        assert_eq!(
            attachment_names("net1", &long, None, None).unwrap(),
            ["0123456789ab"]
        );
        let bad = json!({"aliases": {"net1": ["no spaces"]}});
        assert!(attachment_names("net1", "c1", None, bad.as_object()).is_err());
        let bad = json!({"aliases": ["web"]});
        assert!(attachment_names("net1", "c1", None, bad.as_object()).is_err());
    }

    #[test]
    fn upstreams_from_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        fs::write(
            &p,
            "# comment\nsearch example.com\nnameserver 10.0.0.53\nnameserver fd00::53\nnameserver fe80::1%eth0\n",
        )
        .unwrap();
        assert_eq!(
            resolv_conf_upstreams(&p),
            vec![
                "10.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_upstream("127.0.0.1:5353"),
            "127.0.0.1:5353".parse().ok()
        );
        assert_eq!(parse_upstream("::1"), "[::1]:53".parse().ok());
        assert_eq!(parse_upstream("nope"), None);
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let r = NameRecord {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            names: vec!["web".into()],
            addresses: vec!["198.18.0.2".parse().unwrap()],
        };
        write_record(dir.path(), &r).unwrap();
        assert_eq!(read_records(dir.path()), vec![r]);
    }
}
