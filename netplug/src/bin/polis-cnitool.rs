//! polis-cnitool: run a CNI network configuration list against a network namespace, as libcni's `cnitool` does
//! (CNI spec "Section 3: Execution of Network Configurations"), for people and for tests.
//!
//! ```text
//! polis-cnitool [--conf-dir DIR] [--cni-path P1:P2] [--cache-dir DIR] [--ifname eth0]
//!               [--port HOST:CONTAINER[/tcp|udp]]... [--alias NAME]... [--ip ADDR]... add|check|del NET NETNS
//! polis-cnitool status NET
//! polis-cnitool gc NET [CONTAINERID[:IFNAME]]...
//! polis-cnitool [--data-dir DIR] reapply [NET]
//! ```
//!
//! The environment is cnitool's: `NETCONFPATH` (the conf dir, default `/etc/cni/net.d`), `CNI_PATH` (default
//! `/usr/lib/cni` and the directory of this binary, so that `polis-netplug` beside it is found), `CNI_CONTAINERID`
//! (default `cnitool-` and the first 20 hex digits of the SHA-512 of the netns path), `CNI_IFNAME`, `CNI_ARGS`
//! and `CAP_ARGS` (a JSON object of capability arguments, which `--port`, `--alias` and `--ip` extend). Flags win
//! over the environment.
//!
//! On failure the error (with the plugin's CNI code) goes to stderr and the exit status is the CNI error code
//! when it is between 1 and 125 (50 for STATUS's "not available", say), else 1.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use polis_netplug::cni::{Attachment, CniArgs, CniRunner, NetworkList, RuntimeConf};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// libcni's default cache directory.
const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";
/// Debian installs the reference plugins here.
const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
const NETNS_DIR: &str = "/run/netns";

#[derive(Parser, Debug)]
#[command(
    name = "polis-cnitool",
    version,
    about = "Runs a CNI network configuration list (ADD, CHECK, DEL, STATUS, GC) as libcni's cnitool does"
)]
struct Cli {
    /// Where the network configurations are (*.conflist, *.conf, *.json) [env: NETCONFPATH; default
    /// /etc/cni/net.d].
    #[arg(long, global = true, value_name = "DIR")]
    conf_dir: Option<PathBuf>,
    /// Plugin directories, colon-separated [env: CNI_PATH; default /usr/lib/cni and this binary's directory].
    #[arg(long, global = true, value_name = "P1:P2")]
    cni_path: Option<String>,
    /// libcni's result cache [default /var/lib/cni].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// The container interface [env: CNI_IFNAME; default eth0]; for gc, the interface of attachments given
    /// without one.
    #[arg(long, global = true, value_name = "NAME")]
    ifname: Option<String>,
    /// A port mapping (the portMappings capability); add, check, del.
    #[arg(long = "port", global = true, value_name = "HOST:CONTAINER[/tcp|udp]", value_parser = parse_port)]
    ports: Vec<Value>,
    /// A DNS alias of the container in this network (the aliases capability); add, check, del.
    #[arg(long = "alias", global = true, value_name = "NAME")]
    aliases: Vec<String>,
    /// A static address for the container, with prefix (the ips capability); add, check, del.
    #[arg(long = "ip", global = true, value_name = "ADDR")]
    ips: Vec<String>,
    /// reapply: the IPAM data directory holding the firewall records [default: the network's dataDir, or
    /// /var/lib/polis/netplug/networks].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// ADD the container to the network; prints the result.
    Add { net: String, netns: String },
    /// CHECK the container's attachment against the cached result.
    Check { net: String, netns: String },
    /// DEL the container from the network.
    Del { net: String, netns: String },
    /// STATUS of the network's plugins: whether they can take ADDs.
    Status { net: String },
    /// GC: release everything but the valid attachments (default: those in the result cache).
    Gc {
        net: String,
        #[arg(value_name = "CONTAINERID[:IFNAME]")]
        valid: Vec<String>,
    },
    /// Re-apply polis-netplug's firewall state from its records (after `nft flush ruleset`, say).
    Reapply { net: Option<String> },
}

fn main() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("polis-cnitool: {err:#}");
        std::process::exit(exit_status(&err));
    }
}

/// The CNI code of the first polis-netplug error in the chain, when it fits an exit status a shell does not
/// reserve (126 and up); 1 otherwise.
fn exit_status(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<polis_netplug::Error>())
        .map(polis_netplug::Error::cni_code)
        .filter(|code| (1..=125).contains(code))
        .map_or(1, |code| code as i32)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let attachment_flags = !(cli.ports.is_empty() && cli.aliases.is_empty() && cli.ips.is_empty());
    if attachment_flags
        && !matches!(
            cli.command,
            Cmd::Add { .. } | Cmd::Check { .. } | Cmd::Del { .. }
        )
    {
        bail!("--port, --alias and --ip apply to add, check and del only");
    }
    if cli.data_dir.is_some() && !matches!(cli.command, Cmd::Reapply { .. }) {
        bail!("--data-dir applies to reapply only");
    }
    let runner = CniRunner::new(plugin_dirs(cli.cni_path.as_deref())?, cache_dir(&cli));
    match &cli.command {
        Cmd::Add { net, netns } => {
            let list = find_network(&conf_dir(&cli), net)?;
            let rt = runtime_conf(&cli, &list, netns)?;
            let result = runner
                .add(&list, &rt)
                .with_context(|| format!("ADD {} to network {net}", rt.container_id))?;
            let text = serde_json::to_string_pretty(&result.to_value(list.cni_version))
                .context("render the result")?;
            println!("{text}");
        }
        Cmd::Check { net, netns } => {
            let list = find_network(&conf_dir(&cli), net)?;
            let rt = runtime_conf(&cli, &list, netns)?;
            runner
                .check(&list, &rt)
                .with_context(|| format!("CHECK {} in network {net}", rt.container_id))?;
        }
        Cmd::Del { net, netns } => {
            let list = find_network(&conf_dir(&cli), net)?;
            let rt = runtime_conf(&cli, &list, netns)?;
            runner
                .del(&list, &rt)
                .with_context(|| format!("DEL {} from network {net}", rt.container_id))?;
        }
        Cmd::Status { net } => {
            let list = find_network(&conf_dir(&cli), net)?;
            runner
                .status(&list)
                .with_context(|| format!("STATUS of network {net}"))?;
        }
        Cmd::Gc { net, valid } => {
            let list = find_network(&conf_dir(&cli), net)?;
            let valid = valid_attachments(&cli, &runner, &list, valid)?;
            runner
                .gc(&list, &valid)
                .with_context(|| format!("GC of network {net}"))?;
        }
        Cmd::Reapply { net } => {
            let dirs = match (net, &cli.data_dir) {
                (Some(_), Some(_)) => bail!("reapply takes a network or --data-dir, not both"),
                (None, Some(dir)) => vec![dir.clone()],
                (None, None) => vec![PathBuf::from(polis_netplug::ipam::DEFAULT_DATA_DIR)],
                (Some(net), None) => data_dirs(&find_network(&conf_dir(&cli), net)?)?,
            };
            for dir in dirs {
                reapply_firewall(&dir)?;
            }
        }
    }
    Ok(())
}

/// `--cni-path`, else `CNI_PATH`, else Debian's plugin directory and the directory of this binary.
fn plugin_dirs(flag: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
    let split = |s: &str| -> Vec<PathBuf> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    };
    if let Some(paths) = flag {
        return Ok(split(paths));
    }
    if let Ok(paths) = std::env::var("CNI_PATH") {
        if !paths.is_empty() {
            return Ok(split(&paths));
        }
    }
    let mut dirs = vec![PathBuf::from(DEFAULT_PLUGIN_DIR)];
    let exe = std::env::current_exe().context("find the polis-cnitool binary")?;
    if let Some(dir) = exe.parent() {
        dirs.push(dir.to_path_buf());
    }
    Ok(dirs)
}

fn conf_dir(cli: &Cli) -> PathBuf {
    cli.conf_dir
        .clone()
        .or_else(|| {
            std::env::var_os("NETCONFPATH")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONF_DIR))
}

fn cache_dir(cli: &Cli) -> PathBuf {
    cli.cache_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR))
}

fn ifname(cli: &Cli) -> String {
    cli.ifname
        .clone()
        .or_else(|| std::env::var("CNI_IFNAME").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "eth0".into())
}

/// The network named `name` in `dir`, as libcni's LoadConfList looks for it: the `.conflist` files first, then
/// the single configurations (`.conf`, `.json`), each group in file-name order; the first whose `name` matches.
/// A file that cannot be read or parsed is skipped with a warning (it may be another tool's).
fn find_network(dir: &Path, name: &str) -> anyhow::Result<NetworkList> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("list the network configurations in {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let with_ext = |exts: &'static [&'static str]| {
        files
            .iter()
            .filter(move |p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| exts.contains(&e))
            })
            .cloned()
    };
    for file in with_ext(&["conflist"]).chain(with_ext(&["conf", "json"])) {
        match NetworkList::load(&file) {
            Ok(list) if list.name == name => return Ok(list),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "skipping a network configuration");
            }
        }
    }
    Err(anyhow!(
        "no network named {name:?} in {} (*.conflist, *.conf, *.json)",
        dir.display()
    ))
}

/// The attachment parameters of add, check and del.
fn runtime_conf(cli: &Cli, list: &NetworkList, netns: &str) -> anyhow::Result<RuntimeConf> {
    let netns = netns_path(netns);
    let container_id = match std::env::var("CNI_CONTAINERID") {
        Ok(id) if !id.is_empty() => id,
        _ => container_id_for(&netns),
    };
    let mut rt = RuntimeConf::new(container_id, ifname(cli));
    rt.netns = Some(netns);
    if let Ok(args) = std::env::var("CNI_ARGS") {
        rt.args = CniArgs::parse(&args).context("read CNI_ARGS")?;
    }
    rt.capability_args = capability_args(cli, &list.name)?;
    Ok(rt)
}

/// A path as given; a bare name is a namespace under /run/netns (`ip netns`).
fn netns_path(netns: &str) -> PathBuf {
    if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        Path::new(NETNS_DIR).join(netns)
    }
}

/// cnitool's container ID for a namespace: "cnitool-" and the first 20 hex digits of the SHA-512 of its path.
fn container_id_for(netns: &Path) -> String {
    let digest = Sha512::digest(netns.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{}", &hex[..20])
}

/// `CAP_ARGS` (a JSON object), then the flags: `portMappings`, `aliases` (`{NET: [...]}`), `ips`.
fn capability_args(cli: &Cli, network: &str) -> anyhow::Result<Map<String, Value>> {
    let mut args = match std::env::var("CAP_ARGS") {
        Ok(text) if !text.trim().is_empty() => {
            match serde_json::from_str(&text).context("read CAP_ARGS as JSON")? {
                Value::Object(map) => map,
                _ => bail!("CAP_ARGS is not a JSON object"),
            }
        }
        _ => Map::new(),
    };
    if !cli.ports.is_empty() {
        args.insert("portMappings".into(), Value::Array(cli.ports.clone()));
    }
    if !cli.aliases.is_empty() {
        args.insert("aliases".into(), json!({ network: cli.aliases }));
    }
    if !cli.ips.is_empty() {
        args.insert("ips".into(), json!(cli.ips));
    }
    Ok(args)
}

/// `HOST:CONTAINER[/tcp|udp]` as a portMappings entry (CNI conventions.md, "Port mappings").
fn parse_port(text: &str) -> Result<Value, String> {
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (text, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!("protocol {protocol:?} is not tcp or udp"));
    }
    let (host, container) = ports
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:CONTAINER[/tcp|udp]"))?;
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{p:?} is not a port from 1 to 65535")),
    };
    Ok(json!({"hostPort": port(host)?, "containerPort": port(container)?, "protocol": protocol}))
}

/// GC's valid attachments: those given (`CONTAINERID[:IFNAME]`, the interface defaulting to `--ifname`), else
/// every attachment of this network in the result cache.
fn valid_attachments(
    cli: &Cli,
    runner: &CniRunner,
    list: &NetworkList,
    given: &[String],
) -> anyhow::Result<Vec<Attachment>> {
    if given.is_empty() {
        let cached = runner
            .cached_attachments()
            .context("read the result cache")?;
        return Ok(cached
            .into_iter()
            .filter(|a| a.network == list.name)
            .map(|a| Attachment {
                container_id: a.runtime.container_id,
                ifname: a.runtime.ifname,
            })
            .collect());
    }
    let default_ifname = ifname(cli);
    Ok(given
        .iter()
        .map(|g| {
            let (id, ifname) = g.split_once(':').unwrap_or((g, &default_ifname));
            Attachment {
                container_id: id.to_string(),
                ifname: ifname.to_string(),
            }
        })
        .collect())
}

/// The IPAM data directories of the list's polis-netplug plugins (where their firewall records are).
fn data_dirs(list: &NetworkList) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for plugin in &list.plugins {
        if plugin.get("type").and_then(Value::as_str) != Some("polis-netplug") {
            continue;
        }
        let ipam = plugin
            .get("ipam")
            .ok_or_else(|| anyhow!("network {}: polis-netplug has no ipam section", list.name))?;
        let config = polis_netplug::ipam::IpamConfig::parse(ipam)
            .with_context(|| format!("network {}: read the ipam section", list.name))?;
        let dir = config.data_dir().to_path_buf();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    if dirs.is_empty() {
        bail!(
            "network {} has no polis-netplug plugin: nothing to reapply",
            list.name
        );
    }
    Ok(dirs)
}

/// Renders the whole firewall state from the records under `data_dir` and applies it as one nft transaction,
/// holding the plugin's firewall lock (`<dataDir>/firewall.lock`) so that no ADD or DEL interleaves. Touches the
/// host: nftables of the current network namespace.
fn reapply_firewall(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.is_dir() {
        bail!("no polis-netplug records in {}", data_dir.display());
    }
    let _lock = polis_netplug::bridge_plugin::lock_firewall(data_dir)?;
    let batch = polis_netplug::bridge_plugin::full_batch(data_dir);
    polis_netplug::firewall::apply("re-applying the firewall state", &batch)
        .with_context(|| format!("reapply the records of {}", data_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cnitool's derivation: "cnitool-" + the first 20 hex digits of sha512(netns path).
    #[test]
    fn container_id_is_cnitools() {
        let id = container_id_for(Path::new("/run/netns/test"));
        assert!(id.starts_with("cnitool-") && id.len() == 28, "{id}");
        assert_eq!(id, container_id_for(&netns_path("test")));
        assert_ne!(id, container_id_for(Path::new("/run/netns/other")));
    }

    #[test]
    fn ports_parse_as_port_mappings() {
        assert_eq!(
            parse_port("8080:80").unwrap(),
            json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})
        );
        assert_eq!(parse_port("53:5353/UDP").unwrap()["protocol"], "udp");
        for bad in ["8080", "0:80", "8080:80/sctp", "x:80", "70000:80"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }
}
