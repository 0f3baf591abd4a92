//! Networks as Docker has them, over polis-netplug: the predefined `bridge` (the bridge device `polis0`, its subnet
//! from the config), `host` and `none`, and user networks of the bridge driver (each its own bridge device, subnet and
//! name resolver). Networks and endpoints (a container's membership of a network) are rows of polisd's database.
//!
//! A container that is not on the host's network gets a network namespace of its own at each start: a file under
//! `<exec_root>/netns/<id>` bind-mounted on a new namespace (as CRI sandboxes and `ip netns` have them), named in
//! its config.json, so that its interfaces exist before its process does. Then CNI ADD (polis-netplug, through
//! polis-netplug's [`CniRunner`]) for each of its bridge networks: eth0, eth1, ... in the order the container joined
//! them; the first one gets the published ports (the `portMappings` capability), user networks the container's name
//! and aliases (the `aliases` capability) for polis-netplug's resolver, which the container's resolv.conf then names.
//! At exit (and when polisd finds at start that a container exited), CNI DEL for each and the namespace goes.
//!
//! Internal networks (`--internal`, Docker's "Network internal mode"): no masquerading, no default route through
//! them (a container's default route goes through its first network that is not internal), and their bridges in
//! the `internal` set of polis-netplug's firewall (`inet polis`), whose rules drop routed traffic out of and into
//! such a bridge. polisd adds the bridge before a container joins the network (after its ADDs when the firewall
//! had lost its rules, which the first ADD puts back without these elements, and then every internal network's)
//! and removes it with the network.
//!
//! Names: a container's names on a user network are the `aliases` capability of its ADD; `docker rename` rewrites
//! them in the network's resolver records at once ([`Core::rename_in_networks`]). A container on two user networks
//! or more gets a resolver of its own, as Docker's embedded DNS server is one per container: polis-netplug's
//! `dns-serve` in the container's network namespace on 127.0.0.11, whose records polisd keeps as the union of its
//! networks' records (`<network_dir>/resolvers/<id>/dns/`, rebuilt after every change of an attachment) and
//! which forwards other names to the resolvers of its networks. So it answers the names of every network it is
//! on, and only those.

use super::error::{Error, Result};
use super::record::ContainerRecord;
use super::{Core, containers::random_id};
use bollard_stubs::models::{
    EndpointSettings, EventMessageTypeEnum, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use ipnet::IpNet;
use polis_netplug::cni::{CniResult, CniRunner, NetworkList, RuntimeConf};
use polis_netplug::dns::NameRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The predefined networks.
pub const BRIDGE: &str = "bridge";
pub const HOST: &str = "host";
pub const NONE: &str = "none";
/// The default bridge's device.
pub const DEFAULT_BRIDGE_DEVICE: &str = "polis0";
/// The CNI plugin every bridge network runs.
const PLUGIN: &str = "polis-netplug";
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// Where a container's own resolver listens, in its network namespace (as Docker's embedded DNS server).
const OWN_RESOLVER: &str = "127.0.0.11";
/// How long a container's own resolver may take to bind its sockets.
const OWN_RESOLVER_START: Duration = Duration::from_secs(5);

/// Checks and writes of networks and endpoints that must not interleave (a name taken, a network removed while a
/// container joins it). Held only around database work.
static NETWORKS: Mutex<()> = Mutex::new(());

/// One network change of a container at a time (start, exit, connect, disconnect).
static CONTAINER_LOCKS: Mutex<Option<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    Mutex::new(None);

/// Rebuilds of the containers' own resolvers' records, and their removal, one at a time.
static OWN_RESOLVERS: Mutex<()> = Mutex::new(());

fn networks_lock() -> std::sync::MutexGuard<'static, ()> {
    NETWORKS.lock().unwrap_or_else(|e| e.into_inner())
}

fn own_resolvers_lock() -> std::sync::MutexGuard<'static, ()> {
    OWN_RESOLVERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn container_lock(id: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = CONTAINER_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks
        .get_or_insert_with(HashMap::new)
        .entry(id.to_string())
        .or_default()
        .clone()
}

/// Takes a container's network lock from synchronous code: at once when it is free, else by waiting for it
/// outside the runtime's scheduling (`block_in_place`). None only on a current-thread runtime while another task
/// holds it (that task could not run while this thread waits).
fn container_lock_blocking(id: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    let lock = container_lock(id);
    if let Ok(guard) = lock.clone().try_lock_owned() {
        return Some(guard);
    }
    match tokio::runtime::Handle::try_current() {
        Err(_) => Some(lock.blocking_lock_owned()),
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Some(tokio::task::block_in_place(|| lock.blocking_lock_owned()))
        }
        Ok(_) => None,
    }
}

fn forget_container_lock(id: &str) {
    let mut locks = CONTAINER_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = locks.as_mut() {
        map.remove(id);
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    #[default]
    Bridge,
    Host,
    Null,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Host => "host",
            Driver::Null => "null",
        }
    }
}

/// A subnet of a network and its gateway (on the bridge device); `range`: where addresses are handed out from
/// (Docker's IPRange), all of the subnet when None.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: IpNet,
    pub gateway: IpAddr,
    #[serde(default)]
    pub range: Option<IpNet>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub driver: Driver,
    /// RFC 3339, nanoseconds.
    pub created: String,
    /// bridge, host and none.
    pub predefined: bool,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
    pub subnets: Vec<Subnet>,
    /// The bridge device (bridge driver only).
    pub bridge: String,
    /// The CNI configuration list (bridge driver only), kept as made so that DEL runs with ADD's configuration.
    pub cni: Value,
}

impl NetworkRecord {
    fn list(&self) -> Result<NetworkList> {
        let bytes =
            serde_json::to_vec(&self.cni).map_err(|e| Error::failed("encode the CNI config", e))?;
        NetworkList::from_slice(&bytes)
            .map_err(|e| Error::Failed(format!("network {}: {e}", self.name)))
    }

    /// A user network: names resolve on it (Docker resolves names on user networks only).
    pub fn is_user_bridge(&self) -> bool {
        self.driver == Driver::Bridge && !self.predefined
    }
}

/// A container's membership of a network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointRecord {
    pub network_id: String,
    /// The network's name when the container joined it (for messages once it is gone).
    pub network_name: String,
    pub container_id: String,
    pub endpoint_id: String,
    /// The container's interface on a bridge network (eth0, eth1, ...); empty on host and none.
    pub ifname: String,
    /// Names asked for (EndpointSettings.Aliases).
    pub aliases: Vec<String>,
    /// A static address asked for (EndpointSettings.IPAMConfig.IPv4Address / IPv6Address).
    pub static_ips: Vec<IpAddr>,
    /// While the container runs: what its attachment got.
    pub attached: Option<Attached>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attached {
    pub addresses: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    pub mac: String,
    /// The resolvers polis-netplug gave (its own on the gateway first).
    pub nameservers: Vec<String>,
    pub ports: Vec<Published>,
    /// The names registered with the network's resolver.
    pub dns_names: Vec<String>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: String,
    /// None: every address of the host.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

/// A port to publish, as the request asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: Option<IpAddr>,
    /// The host ports allowed (one, a range); None: any free one.
    pub host_ports: Option<(u16, u16)>,
}

/// Network names as Docker takes them (those of CNI too).
pub fn check_network_name(name: &str) -> Result<()> {
    if super::docker_name_ok(name, 1, 128) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// A subnet in CIDR notation, without host bits.
pub fn parse_subnet(text: &str) -> Result<IpNet> {
    let net: IpNet = text
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid subnet {text:?}: not an address/prefix")))?;
    if net.trunc() != net {
        return Err(Error::Invalid(format!(
            "invalid subnet {text}: host bits are set (the subnet is {})",
            net.trunc()
        )));
    }
    let min_hosts_prefix = if net.addr().is_ipv4() { 30 } else { 126 };
    if net.prefix_len() > min_hosts_prefix {
        return Err(Error::Invalid(format!(
            "invalid subnet {text}: too small for a gateway and a container"
        )));
    }
    Ok(net)
}

/// Whether two subnets share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A subnet's gateway: the one asked for (inside the subnet, neither its network nor its broadcast address), else
/// the first address after the network's, as Docker picks it.
pub fn gateway_of(subnet: &IpNet, asked: Option<&str>) -> Result<IpAddr> {
    let asked = asked.map(str::trim).filter(|g| !g.is_empty());
    let Some(text) = asked else {
        return subnet
            .hosts()
            .next()
            .ok_or_else(|| Error::Invalid(format!("subnet {subnet} has no room for a gateway")));
    };
    let gw: IpAddr = text
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid gateway {text:?}: not an IP address")))?;
    if !subnet.contains(&gw) || gw == subnet.network() || (gw.is_ipv4() && gw == subnet.broadcast())
    {
        return Err(Error::Invalid(format!(
            "invalid gateway {gw}: not a host address of subnet {subnet}"
        )));
    }
    Ok(gw)
}

/// The first subnet of the pools (`base`, prefix length) that overlaps none of `taken`.
pub fn pick_subnet(pools: &[(IpNet, u8)], taken: &[IpNet]) -> Option<IpNet> {
    for (base, size) in pools {
        let Ok(subnets) = base.subnets(*size) else {
            continue;
        };
        for candidate in subnets {
            if !taken.iter().any(|t| overlaps(t, &candidate)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The IPv4 destinations of the host's routes but the default one (/proc/net/route), which new subnets avoid.
fn host_routes() -> Vec<IpNet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            if mask == 0 {
                return None;
            }
            let addr = std::net::Ipv4Addr::from(u32::from_be(dst));
            let prefix = u32::from_be(mask).leading_ones() as u8;
            ipnet::Ipv4Net::new(addr, prefix).ok().map(IpNet::V4)
        })
        .collect()
}

/// The CNI configuration list of a bridge network.
pub fn conflist(
    name: &str,
    bridge: &str,
    subnets: &[Subnet],
    internal: bool,
    mtu: Option<u32>,
    data_dir: &Path,
) -> Value {
    let ranges: Vec<Value> = subnets
        .iter()
        .map(|s| {
            let mut range =
                json!({"subnet": s.subnet.to_string(), "gateway": s.gateway.to_string()});
            if let Some(r) = s.range {
                let mut hosts = r
                    .hosts()
                    .filter(|h| *h != s.gateway && *h != s.subnet.network());
                if let Some(first) = hosts.next() {
                    range["rangeStart"] = json!(first.to_string());
                    let last = hosts.next_back().unwrap_or(first);
                    range["rangeEnd"] = json!(last.to_string());
                }
            }
            json!([range])
        })
        .collect();
    let mut plugin = json!({
        "type": PLUGIN,
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": !internal,
        "hairpinMode": true,
        "capabilities": {"portMappings": true, "aliases": true, "ips": true},
        "ipam": {"type": "polis", "ranges": ranges, "dataDir": data_dir.display().to_string()},
    });
    if let Some(mtu) = mtu {
        plugin["mtu"] = json!(mtu);
    }
    json!({"cniVersion": "1.1.0", "name": name, "plugins": [plugin]})
}

/// `80/tcp` (or `80`): the port and protocol.
pub fn parse_port_key(key: &str) -> Result<(u16, String)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(Error::Invalid(format!(
            "invalid port {key:?}: protocol {proto} is not supported (tcp or udp)"
        )));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => Err(Error::Invalid(format!("invalid port {key:?}"))),
    }
}

fn parse_host_ip(text: Option<&str>) -> Result<Option<IpAddr>> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None | Some("0.0.0.0") | Some("::") => Ok(None),
        Some(t) => t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map(Some)
            .map_err(|_| Error::Invalid(format!("invalid host IP {t:?}"))),
    }
}

fn parse_host_ports(text: Option<&str>) -> Result<Option<(u16, u16)>> {
    let t = text.map(str::trim).unwrap_or("");
    if t.is_empty() || t == "0" {
        return Ok(None);
    }
    let bad = || Error::Invalid(format!("invalid host port {t:?}"));
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    match t.split_once('-') {
        None => {
            let p = port(t)?;
            Ok(Some((p, p)))
        }
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(bad());
            }
            Ok(Some((a, b)))
        }
    }
}

/// The ports a container publishes: `PortBindings`, and with `PublishAllPorts` every exposed port not bound there
/// (on a free host port).
pub fn port_requests(host: &HostConfig, exposed: &[String]) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    let mut bound: Vec<(u16, String)> = Vec::new();
    let mut keys: Vec<(&String, &Option<Vec<bollard_stubs::models::PortBinding>>)> =
        host.port_bindings.iter().flatten().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, bindings) in keys {
        let (container_port, protocol) = parse_port_key(key)?;
        bound.push((container_port, protocol.clone()));
        let bindings = bindings.clone().unwrap_or_default();
        for b in if bindings.is_empty() {
            vec![Default::default()]
        } else {
            bindings
        } {
            out.push(PortRequest {
                container_port,
                protocol: protocol.clone(),
                host_ip: parse_host_ip(b.host_ip.as_deref())?,
                host_ports: parse_host_ports(b.host_port.as_deref())?,
            });
        }
    }
    if host.publish_all_ports.unwrap_or(false) {
        let mut exposed = exposed.to_vec();
        exposed.sort();
        for key in exposed {
            let (container_port, protocol) = parse_port_key(&key)?;
            if !bound.contains(&(container_port, protocol.clone())) {
                bound.push((container_port, protocol.clone()));
                out.push(PortRequest {
                    container_port,
                    protocol,
                    host_ip: None,
                    host_ports: None,
                });
            }
        }
    }
    Ok(out)
}

/// Whether two publications want the same host port.
fn clash(a: &Published, protocol: &str, host_ip: Option<IpAddr>, port: u16) -> bool {
    a.protocol == protocol
        && a.host_port == port
        && (a.host_ip.is_none() || host_ip.is_none() || a.host_ip == host_ip)
}

/// Host ports for the requests: those asked for, or the first free one of `ephemeral`. A port another container
/// publishes is a conflict; `free` says whether the host itself leaves a port free (no process listens on it).
pub fn allocate_ports(
    requests: &[PortRequest],
    taken: &[Published],
    ephemeral: (u16, u16),
    free: &dyn Fn(&str, Option<IpAddr>, u16) -> bool,
) -> Result<Vec<Published>> {
    let mut out: Vec<Published> = Vec::new();
    for r in requests {
        let (lo, hi) = r.host_ports.unwrap_or(ephemeral);
        let shown = r
            .host_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        let mut clashed = false;
        let mut busy = false;
        let mut chosen = None;
        for port in lo..=hi {
            if taken
                .iter()
                .chain(out.iter())
                .any(|t| clash(t, &r.protocol, r.host_ip, port))
            {
                clashed = true;
                continue;
            }
            if !free(&r.protocol, r.host_ip, port) {
                busy = true;
                continue;
            }
            chosen = Some(port);
            break;
        }
        let Some(host_port) = chosen else {
            let ports = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            if r.host_ports.is_none() {
                return Err(Error::Failed(format!(
                    "no free host port for {}/{}",
                    r.container_port, r.protocol
                )));
            }
            return Err(if clashed && !busy {
                Error::Conflict(format!(
                    "Bind for {shown}:{ports} failed: port is already allocated"
                ))
            } else {
                Error::Failed(format!(
                    "driver failed programming external connectivity: listen {} {shown}:{ports}: bind: address already in use",
                    r.protocol
                ))
            });
        };
        out.push(Published {
            container_port: r.container_port,
            protocol: r.protocol.clone(),
            host_ip: r.host_ip,
            host_port,
        });
    }
    Ok(out)
}

/// Whether a host process leaves `port` free (a listener can bind it).
fn host_port_free(protocol: &str, ip: Option<IpAddr>, port: u16) -> bool {
    let ip = ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let addr = std::net::SocketAddr::new(ip, port);
    match protocol {
        "udp" => std::net::UdpSocket::bind(addr).is_ok(),
        _ => std::net::TcpListener::bind(addr).is_ok(),
    }
}

/// The kernel's ephemeral port range, where ports published without a host port come from (as Docker's).
fn ephemeral_range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if a > 0 && a <= b => (a, b),
        _ => (32768, 60999),
    }
}

/// /etc/hosts with the container's own addresses for its hostname (127.0.1.1 when it has none).
pub fn hosts_with_addresses(text: &str, hostname: &str, addresses: &[IpAddr]) -> String {
    let mine = |line: &str| {
        let mut words = line.split_whitespace();
        let addr = words.next().and_then(|a| a.parse::<IpAddr>().ok());
        let names: Vec<&str> = words.collect();
        addr.is_some_and(|a| !(a.is_loopback() && a != IpAddr::from([127, 0, 1, 1])))
            && names == [hostname]
    };
    let mut out: String = text
        .lines()
        .filter(|l| !mine(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if addresses.is_empty() {
        out.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for a in addresses {
        out.push_str(&format!("{a}\t{hostname}\n"));
    }
    out
}

/// resolv.conf naming `resolver` as the only name server (search and options kept).
pub fn resolv_with_resolver(text: &str, resolver: &str) -> String {
    let mut out = format!("nameserver {resolver}\n");
    for l in text
        .lines()
        .filter(|l| !l.trim_start().starts_with("nameserver"))
    {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// config.json's network namespace: joined at `path` (made when None: a fresh one, as the runtime makes it).
pub fn set_network_namespace(spec: &mut Value, path: &Path) -> bool {
    let entry = json!({"type": "network", "path": path.display().to_string()});
    let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() else {
        spec["linux"]["namespaces"] = json!([entry]);
        return true;
    };
    match namespaces.iter_mut().find(|n| n["type"] == "network") {
        Some(n) if *n == entry => false,
        Some(n) => {
            *n = entry;
            true
        }
        None => {
            namespaces.push(entry);
            true
        }
    }
}

/// Makes a network namespace bind-mounted at `path`, with its loopback up.
fn make_netns(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::failed(dir.display(), e))?;
    }
    std::fs::File::create(path).map_err(|e| Error::failed(path.display(), e))?;
    let target = path.to_path_buf();
    // A thread of its own enters the new namespace, and ends: the mount keeps the namespace.
    let made = std::thread::spawn(move || -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::failed("unshare the network namespace", e))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::failed(format!("bind-mount {}", target.display()), e))?;
        polis_netplug::link::Netlink::open()
            .and_then(|mut nl| nl.set_loopback_up())
            .map_err(|e| Error::failed("set lo up", e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Failed(
            "the network namespace thread panicked".into(),
        ))
    });
    if made.is_err() {
        remove_netns(path);
    }
    made
}

/// Unmounts and removes a network namespace file (nothing when there is none).
fn remove_netns(path: &Path) {
    while nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "remove network namespace");
    }
}

/// polis-netplug's error as polisd's: a host port taken is a conflict.
fn cni_error(network: &str, e: polis_netplug::Error) -> Error {
    let text = e.to_string();
    if text.contains("already mapped") {
        Error::Conflict(format!("network {network}: {text}"))
    } else {
        Error::Failed(format!("network {network}: {text}"))
    }
}

/// What CNI ADD gave an endpoint.
fn attached_from(result: &CniResult, ports: Vec<Published>, dns_names: Vec<String>) -> Attached {
    let mac = result
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_some())
        .and_then(|i| i.mac.clone())
        .unwrap_or_default();
    Attached {
        addresses: result.ips.iter().map(|i| i.address).collect(),
        gateways: result.ips.iter().filter_map(|i| i.gateway).collect(),
        mac,
        nameservers: result.dns.nameservers.clone(),
        ports,
        dns_names,
    }
}

/// Whether the firewall's table lacks polis-netplug's rules (someone flushed the ruleset, or nothing was ever
/// attached): the next ADD puts them back, without the internal networks' elements.
fn firewall_rules_missing() -> bool {
    use polis_netplug::firewall::{Nfnetlink, base_rule_count};
    Nfnetlink::open()
        .and_then(|mut nf| nf.rule_count())
        .map_or(true, |count| count != base_rule_count())
}

/// Puts the bridges of internal networks into the firewall's `internal` set, with the whole of polis-netplug's
/// firewall first when its rules are missing; under polis-netplug's firewall lock.
fn mark_internal(data_dir: &Path, bridges: &[String]) -> Result<()> {
    use polis_netplug::bridge_plugin::{full_batch, lock_firewall};
    use polis_netplug::firewall;
    if bridges.is_empty() {
        return Ok(());
    }
    let failed = |e: polis_netplug::Error| {
        Error::Failed(format!("isolate the internal networks {bridges:?}: {e}"))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| Error::failed(data_dir.display(), e))?;
    let _lock = lock_firewall(data_dir).map_err(failed)?;
    let mut batch = String::new();
    if firewall_rules_missing() {
        batch.push_str(&full_batch(data_dir));
    }
    for b in bridges {
        batch.push_str(&firewall::internal_batch(b));
    }
    firewall::apply("marking the internal networks' bridges", &batch).map_err(failed)
}

/// Removes what polis-netplug keeps of a network that is gone: its data directory (addresses, firewall and DNS
/// records), its elements in the firewall (the other networks' are put back in the same transaction; an internal
/// network's bridge leaves the `internal` set) and its bridge device. Best effort: each failure is logged.
fn forget_netplug_network(data_dir: &Path, name: &str, bridge: &str, internal: bool) {
    use polis_netplug::bridge_plugin::{NetworkRecord as Recorded, lock_firewall};
    use polis_netplug::firewall;
    let dir = data_dir.join(name);
    if dir.is_dir() {
        // A resolver left running (its last DEL failed).
        if let Ok(pid) = std::fs::read_to_string(dir.join("dns.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("dns-serve"))
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let result = (|| -> std::result::Result<(), String> {
            let _lock = lock_firewall(data_dir).map_err(|e| e.to_string())?;
            let recorded = dir.join("firewall/network.json").exists();
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if !recorded {
                return Ok(());
            }
            let others: Vec<Recorded> = std::fs::read_dir(data_dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .filter_map(|e| std::fs::read(e.path().join("firewall/network.json")).ok())
                        .filter_map(|d| serde_json::from_slice(&d).ok())
                        .collect()
                })
                .unwrap_or_default();
            let bridges: Vec<String> = others.iter().map(|n| n.bridge.clone()).collect();
            let mut batch = firewall::flush_networks_batch();
            for n in &others {
                batch.push_str(&firewall::network_batch(
                    &n.bridge,
                    &n.subnets,
                    &bridges,
                    n.masquerade,
                ));
            }
            firewall::apply("removing the network's firewall elements", &batch)
                .map_err(|e| e.to_string())
        })();
        if let Err(e) = result {
            tracing::warn!(network = name, error = %e, "remove the network's netplug state");
        }
    }
    if bridge.is_empty() {
        return;
    }
    // Only marked (mark_internal) with polis-netplug's data directory made.
    if internal && data_dir.is_dir() {
        let removed = polis_netplug::bridge_plugin::lock_firewall(data_dir).and_then(|_lock| {
            polis_netplug::firewall::apply(
                "removing an internal network's bridge",
                &polis_netplug::firewall::forget_internal_batch(bridge),
            )
        });
        if let Err(e) = removed {
            tracing::warn!(network = name, bridge, error = %e, "remove the internal network's firewall element");
        }
    }
    let deleted = polis_netplug::link::Netlink::open().and_then(|mut nl| {
        if nl.link_by_name(bridge)?.is_some() {
            nl.delete_link(bridge)?;
        }
        Ok(())
    });
    if let Err(e) = deleted {
        tracing::warn!(network = name, bridge, error = %e, "delete the bridge");
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::failed("background task", e))?
}

/// A bridge endpoint to attach: the network, the endpoint, the capability arguments of its ADD.
struct Attachment {
    network: NetworkRecord,
    endpoint: EndpointRecord,
    /// The container's default route goes through this network (its first one).
    default_route: bool,
    capability_args: Map<String, Value>,
    ports: Vec<Published>,
    dns_names: Vec<String>,
}

impl Core {
    fn cni(&self) -> CniRunner {
        CniRunner::new(
            self.config.cni_paths(),
            self.config.network_dir().join("cni-cache"),
        )
    }

    fn netplug_dir(&self) -> PathBuf {
        self.config.network_dir().join("netplug")
    }

    fn netns_path(&self, container_id: &str) -> PathBuf {
        self.config.netns_dir().join(container_id)
    }

    /// The containers' own resolvers: `<id>/dns/` (records), `<id>/dns.pid`, `<id>/dns.log`, as polis-netplug's
    /// `dns-serve` keeps a network's under its data directory.
    fn own_resolvers_dir(&self) -> PathBuf {
        self.config.network_dir().join("resolvers")
    }

    /// The bridges of the internal networks.
    fn internal_bridges(&self) -> Result<Vec<String>> {
        Ok(self
            .db
            .networks()?
            .into_iter()
            .filter(|n| n.internal && n.driver == Driver::Bridge && !n.bridge.is_empty())
            .map(|n| n.bridge)
            .collect())
    }

    /// A container's attached endpoints on user networks with their networks, in the order it joined them.
    fn attached_user_networks(
        &self,
        container_id: &str,
    ) -> Result<Vec<(EndpointRecord, NetworkRecord)>> {
        let mut out: Vec<(EndpointRecord, NetworkRecord)> = self
            .container_networks(container_id)?
            .into_iter()
            .filter_map(|(e, n)| {
                let n = n?;
                (n.is_user_bridge() && e.attached.is_some()).then_some((e, n))
            })
            .collect();
        out.sort_by_key(|(e, _)| ifname_order(&e.ifname));
        Ok(out)
    }

    /// Rebuilds the records of container `id`'s own resolver from its networks' resolvers (nothing when it has no
    /// resolver of its own). Under [`own_resolvers_lock`].
    fn sync_own_resolver(&self, id: &str) -> Result<()> {
        let dir = polis_netplug::dns::records_dir(&self.own_resolvers_dir(), id);
        if !dir.is_dir() {
            return Ok(());
        }
        let netplug = self.netplug_dir();
        let networks: Vec<(String, Vec<NameRecord>)> = self
            .attached_user_networks(id)?
            .into_iter()
            .map(|(_, n)| {
                let records = polis_netplug::dns::read_records(&polis_netplug::dns::records_dir(
                    &netplug, &n.name,
                ));
                (n.name, records)
            })
            .collect();
        write_own_resolver_records(&dir, &own_resolver_records(&networks))
    }

    /// After an attachment came, went or was renamed: every container's own resolver answers its networks' names
    /// as they are now. Failures are logged.
    fn sync_own_resolvers(&self) {
        let _lock = own_resolvers_lock();
        let Ok(entries) = std::fs::read_dir(self.own_resolvers_dir()) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Err(error) = self.sync_own_resolver(&id) {
                tracing::warn!(container = id, %error, "update the container's resolver");
            }
        }
    }

    /// A running container on two user networks or more gets a resolver of its own (then kept while it is on one
    /// at least), restarted when its networks' resolvers changed; other containers have none. Not for a
    /// container that names its own DNS servers (`--dns`). A failure is logged, and the container then asks its
    /// first user network's resolver, as Docker carries on without its embedded resolver.
    async fn refresh_own_resolver(&self, record: &ContainerRecord) {
        let views = self.own_resolvers_dir();
        let has = views.join(&record.id).is_dir();
        let networks = self.attached_user_networks(&record.id).unwrap_or_default();
        let own_dns = record
            .host_config
            .dns
            .as_ref()
            .is_some_and(|d| !d.is_empty());
        let wanted = !own_dns && (networks.len() >= 2 || (has && !networks.is_empty()));
        let started = if wanted {
            match self.plan_own_resolver(record, &networks) {
                Ok(plan) => blocking(move || start_own_resolver(&plan)).await,
                Err(e) => Err(e),
            }
        } else {
            Ok(())
        };
        if let Err(error) = &started {
            tracing::warn!(container = record.id, %error, "the container's own resolver");
        }
        if (has && !wanted) || started.is_err() {
            let id = record.id.clone();
            let _ = blocking(move || {
                remove_own_resolver(&views, &id);
                Ok(())
            })
            .await;
        }
    }

    /// The container's own resolver, its records written: forwarding to the resolvers of its user networks.
    fn plan_own_resolver(
        &self,
        record: &ContainerRecord,
        networks: &[(EndpointRecord, NetworkRecord)],
    ) -> Result<OwnResolver> {
        let views = self.own_resolvers_dir();
        let dir = polis_netplug::dns::records_dir(&views, &record.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::failed(dir.display(), e))?;
        {
            let _lock = own_resolvers_lock();
            self.sync_own_resolver(&record.id)?;
        }
        let mut upstreams: Vec<String> = Vec::new();
        for (e, _) in networks {
            if let Some(ns) = e.attached.as_ref().and_then(|a| a.nameservers.first())
                && !upstreams.contains(ns)
            {
                upstreams.push(ns.clone());
            }
        }
        if upstreams.is_empty() {
            return Err(Error::Failed(
                "none of the container's networks has a resolver to forward to".into(),
            ));
        }
        let paths = self.config.cni_paths();
        let binary = paths
            .iter()
            .map(|d| d.join(PLUGIN))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Failed(format!("no {PLUGIN} binary in {paths:?}")))?;
        Ok(OwnResolver {
            id: record.id.clone(),
            args: own_resolver_args(&views, &record.id, &upstreams),
            views,
            binary,
            netns: self.netns_path(&record.id),
        })
    }

    /// After `docker rename`: a running container's names on its user networks change at once, as Docker renames
    /// its endpoints' DNS records: in its networks' resolvers and in the containers' own resolvers. A container that
    /// does not run has nothing attached, and its next start registers the new name. Failures are logged.
    pub fn rename_in_networks(&self, container_id: &str) {
        let _guard = container_lock_blocking(container_id);
        if let Err(error) = self.rename_names(container_id) {
            tracing::warn!(container = container_id, %error, "rename the container's DNS names");
        }
        self.sync_own_resolvers();
    }

    /// Rewrites the container's records in its user networks' resolvers with the names its record has now (under
    /// its network lock, so that no ADD or DEL of it runs meanwhile).
    fn rename_names(&self, container_id: &str) -> Result<()> {
        use polis_netplug::dns::{attachment_names, read_records, records_dir, write_record};
        let Some(record) = self.db.get(container_id)? else {
            return Ok(());
        };
        let netplug = self.netplug_dir();
        for (mut e, n) in self.attached_user_networks(container_id)? {
            let (aliases, listed) = user_network_names(&record, &e);
            let runtime_config = json!({"aliases": { n.name.clone(): aliases }});
            let names = attachment_names(&n.name, container_id, None, runtime_config.as_object())
                .map_err(|e| Error::Failed(format!("network {}: {e}", n.name)))?;
            let dir = records_dir(&netplug, &n.name);
            // Only a record that is there: a DEL removes it, and it must not come back.
            if let Some(mut r) = read_records(&dir)
                .into_iter()
                .find(|r| r.container_id == container_id && r.ifname == e.ifname)
                && r.names != names
            {
                r.names = names;
                write_record(&dir, &r)
                    .map_err(|e| Error::Failed(format!("network {}: {e}", n.name)))?;
            }
            if let Some(a) = e.attached.as_mut()
                && a.dns_names != listed
            {
                a.dns_names = listed;
                self.db.put_endpoint(&e)?;
            }
        }
        Ok(())
    }

    fn network_event(&self, network: &NetworkRecord, action: &str, extra: &[(&str, &str)]) {
        let mut a = HashMap::new();
        a.insert("name".to_string(), network.name.clone());
        a.insert("type".to_string(), network.driver.as_str().to_string());
        for (k, v) in extra {
            a.insert(k.to_string(), v.to_string());
        }
        self.events
            .publish(EventMessageTypeEnum::NETWORK, action, &network.id, a);
    }

    fn bridge_record(
        &self,
        id: String,
        name: &str,
        bridge: &str,
        subnets: Vec<Subnet>,
        internal: bool,
        mtu: Option<u32>,
    ) -> Result<NetworkRecord> {
        let cni = conflist(name, bridge, &subnets, internal, mtu, &self.netplug_dir());
        // polis-netplug's own checks of the addresses (a subnet that cannot serve containers, say).
        polis_netplug::ipam::IpamConfig::parse(&cni["plugins"][0]["ipam"])
            .map_err(|e| Error::Invalid(format!("network {name}: {e}")))?;
        Ok(NetworkRecord {
            id,
            name: name.to_string(),
            driver: Driver::Bridge,
            created: super::logs::now(),
            internal,
            subnets,
            bridge: bridge.to_string(),
            cni,
            ..Default::default()
        })
    }

    /// The default `bridge` record as the config wants it.
    fn default_bridge(&self, id: String) -> Result<NetworkRecord> {
        let bad = |e: Error| {
            Error::Failed(format!(
                "default_bridge_subnet {:?}: {e}",
                self.config.default_bridge_subnet
            ))
        };
        let subnet = parse_subnet(&self.config.default_bridge_subnet).map_err(bad)?;
        let gateway = gateway_of(&subnet, None).map_err(bad)?;
        let mut record = self
            .bridge_record(
                id,
                BRIDGE,
                DEFAULT_BRIDGE_DEVICE,
                vec![Subnet {
                    subnet,
                    gateway,
                    range: None,
                }],
                false,
                None,
            )
            .map_err(bad)?;
        record.predefined = true;
        record.options = [
            ("com.docker.network.bridge.default_bridge", "true"),
            ("com.docker.network.bridge.enable_ip_masquerade", "true"),
            (BRIDGE_NAME_OPTION, DEFAULT_BRIDGE_DEVICE),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Ok(record)
    }

    /// Makes the predefined networks (bridge, host, none) when missing; moves the default bridge to the
    /// configured subnet when it changed and no container uses it.
    pub fn init_networks(&self) -> Result<()> {
        let _lock = networks_lock();
        let known = self.db.networks()?;
        match known.iter().find(|n| n.name == BRIDGE) {
            None => self
                .db
                .insert_network(&self.default_bridge(random_id()?)?)?,
            Some(old) => {
                let wanted = self.default_bridge(old.id.clone())?;
                if wanted.subnets != old.subnets {
                    if self.live_endpoints(&old.id)?.is_empty() {
                        tracing::info!(from = ?old.subnets, to = ?wanted.subnets, "the default bridge changes subnet");
                        forget_netplug_network(
                            &self.netplug_dir(),
                            &old.name,
                            &old.bridge,
                            old.internal,
                        );
                        let mut new = wanted;
                        new.created = old.created.clone();
                        self.db.update_network(&new)?;
                    } else {
                        tracing::warn!(
                            "default_bridge_subnet changed, but running containers use the bridge network: it keeps its subnet until they stop and polisd restarts"
                        );
                    }
                }
            }
        }
        for (name, driver) in [(HOST, Driver::Host), (NONE, Driver::Null)] {
            if !known.iter().any(|n| n.name == name) {
                self.db.insert_network(&NetworkRecord {
                    id: random_id()?,
                    name: name.into(),
                    driver,
                    created: super::logs::now(),
                    predefined: true,
                    ..Default::default()
                })?;
            }
        }
        Ok(())
    }

    /// Endpoints of the network whose containers run.
    fn live_endpoints(&self, network_id: &str) -> Result<Vec<EndpointRecord>> {
        let mut out = Vec::new();
        for e in self.db.endpoints_in(network_id)? {
            let live = self
                .db
                .get(&e.container_id)?
                .is_some_and(|c| c.state.status.is_live());
            if live {
                out.push(e);
            }
        }
        Ok(out)
    }

    pub fn network(&self, reference: &str) -> Result<NetworkRecord> {
        self.db.lookup_network(reference)
    }

    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        self.db.networks()
    }

    /// A network's endpoints whose containers run, with their containers.
    pub fn network_members(
        &self,
        network: &NetworkRecord,
    ) -> Result<Vec<(EndpointRecord, ContainerRecord)>> {
        let mut out = Vec::new();
        for e in self.db.endpoints_in(&network.id)? {
            if let Some(c) = self.db.get(&e.container_id)?
                && c.state.status.is_live()
            {
                out.push((e, c));
            }
        }
        Ok(out)
    }

    /// A container's endpoints with their networks (an endpoint whose network is gone has None).
    pub fn container_networks(
        &self,
        container_id: &str,
    ) -> Result<Vec<(EndpointRecord, Option<NetworkRecord>)>> {
        self.db
            .endpoints_of(container_id)?
            .into_iter()
            .map(|e| {
                let n = self.db.network(&e.network_id)?;
                Ok((e, n))
            })
            .collect()
    }

    /// Creates a bridge network (`POST /networks/create`); its ID and a warning.
    pub fn create_network(&self, req: NetworkCreateRequest) -> Result<(String, String)> {
        check_network_name(&req.name)?;
        match req.driver.as_deref().unwrap_or("") {
            "" | "bridge" => {}
            other => {
                return Err(Error::Invalid(format!(
                    "network driver {other:?} is not supported: polisd makes bridge networks only"
                )));
            }
        }
        let ipam = req.ipam.clone().unwrap_or_default();
        if let Some(d) = ipam
            .driver
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "default")
        {
            return Err(Error::Invalid(format!(
                "IPAM driver {d:?} is not supported: polisd has the default one only"
            )));
        }
        let options = req.options.clone().unwrap_or_default();
        let mtu = match options.get(MTU_OPTION) {
            None => None,
            Some(m) => Some(
                m.parse::<u32>()
                    .ok()
                    .filter(|m| *m >= 68)
                    .ok_or_else(|| Error::Invalid(format!("invalid {MTU_OPTION} {m:?}")))?,
            ),
        };
        let id = random_id()?;
        let bridge = match options.get(BRIDGE_NAME_OPTION) {
            Some(b) => {
                polis_netplug::link::validate_interface_name(b)
                    .map_err(|why| Error::Invalid(format!("bridge name {b:?}: {why}")))?;
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let _lock = networks_lock();
        let existing = self.db.networks()?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        if existing.iter().any(|n| n.bridge == bridge) {
            return Err(Error::Conflict(format!(
                "bridge device {bridge} is already used by another network"
            )));
        }
        let taken: Vec<IpNet> = existing
            .iter()
            .flat_map(|n| n.subnets.iter().map(|s| s.subnet))
            .collect();
        let mut subnets: Vec<Subnet> = Vec::new();
        for c in ipam.config.clone().unwrap_or_default() {
            let Some(text) = c.subnet.as_deref().filter(|s| !s.is_empty()) else {
                if c.gateway.is_some() || c.ip_range.is_some() {
                    return Err(Error::Invalid(
                        "a gateway or an IP range needs a subnet in the same IPAM config".into(),
                    ));
                }
                continue;
            };
            let subnet = parse_subnet(text)?;
            if let Some(other) = taken
                .iter()
                .chain(subnets.iter().map(|s| &s.subnet))
                .find(|t| overlaps(t, &subnet))
            {
                return Err(Error::Invalid(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({subnet} and {other})"
                )));
            }
            let range = match c.ip_range.as_deref().filter(|r| !r.is_empty()) {
                None => None,
                Some(r) => {
                    let r: IpNet = r
                        .parse()
                        .map_err(|_| Error::Invalid(format!("invalid IP range {r:?}")))?;
                    if !subnet.contains(&r) {
                        return Err(Error::Invalid(format!(
                            "IP range {r} is not inside subnet {subnet}"
                        )));
                    }
                    Some(r.trunc())
                }
            };
            subnets.push(Subnet {
                subnet,
                gateway: gateway_of(&subnet, c.gateway.as_deref())?,
                range,
            });
        }
        if subnets.iter().any(|s| !s.subnet.addr().is_ipv4()) && !req.enable_ipv6.unwrap_or(false) {
            return Err(Error::Invalid(
                "an IPv6 subnet needs EnableIPv6 (--ipv6)".into(),
            ));
        }
        if !subnets.iter().any(|s| s.subnet.addr().is_ipv4()) {
            let pools: Vec<(IpNet, u8)> = self
                .config
                .default_address_pools
                .iter()
                .filter_map(|p| p.base.parse::<IpNet>().ok().map(|b| (b.trunc(), p.size)))
                .collect();
            let mut avoid = taken.clone();
            avoid.extend(host_routes());
            let subnet = pick_subnet(&pools, &avoid).ok_or_else(|| {
                Error::Failed(
                    "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
                        .into(),
                )
            })?;
            subnets.insert(
                0,
                Subnet {
                    subnet,
                    gateway: gateway_of(&subnet, None)?,
                    range: None,
                },
            );
        }
        let internal = req.internal.unwrap_or(false);
        let mut record = self.bridge_record(id, &req.name, &bridge, subnets, internal, mtu)?;
        record.attachable = req.attachable.unwrap_or(false);
        record.enable_ipv6 = req.enable_ipv6.unwrap_or(false);
        record.labels = req.labels.clone().unwrap_or_default();
        record.options = options;
        self.db.insert_network(&record)?;
        self.network_event(&record, "create", &[]);
        Ok((record.id, String::new()))
    }

    /// Removes a user network (`DELETE /networks/{id}`): refused for the predefined ones and while containers
    /// on it run.
    pub async fn remove_network(&self, reference: &str) -> Result<()> {
        let network = self.db.lookup_network(reference)?;
        // A container that just exited may still be leaving the network (its CNI DEL): wait for it.
        let mut members: Vec<String> = self
            .db
            .endpoints_in(&network.id)?
            .into_iter()
            .map(|e| e.container_id)
            .collect();
        members.sort();
        let locks: Vec<_> = members.iter().map(|id| container_lock(id)).collect();
        let mut guards = Vec::new();
        for l in &locks {
            guards.push(l.lock().await);
        }
        {
            let _lock = networks_lock();
            if network.predefined {
                return Err(Error::Forbidden(format!(
                    "{} is a pre-defined network and cannot be removed",
                    network.name
                )));
            }
            if !self.live_endpoints(&network.id)?.is_empty() {
                return Err(Error::Conflict(format!(
                    "error while removing network: network {} id {} has active endpoints",
                    network.name, network.id
                )));
            }
            self.db.remove_network(&network.id)?;
        }
        let (dir, name, bridge, internal) = (
            self.netplug_dir(),
            network.name.clone(),
            network.bridge.clone(),
            network.internal,
        );
        blocking(move || {
            forget_netplug_network(&dir, &name, &bridge, internal);
            Ok(())
        })
        .await?;
        self.network_event(&network, "destroy", &[]);
        Ok(())
    }

    /// Removes the user networks no running container uses (`POST /networks/prune`) that pass `keep`; their names.
    pub async fn prune_networks(
        &self,
        keep: &(dyn Fn(&NetworkRecord) -> bool + Sync),
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.db.networks()? {
            if n.predefined || !keep(&n) || !self.live_endpoints(&n.id)?.is_empty() {
                continue;
            }
            match self.remove_network(&n.id).await {
                Ok(()) => removed.push(n.name),
                Err(Error::Conflict(_)) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The networks a container asks for at create (`HostConfig.NetworkMode` and `NetworkingConfig`), checked.
    pub fn plan_endpoints(
        &self,
        host: &HostConfig,
        networking: Option<&NetworkingConfig>,
        exposed: &[String],
    ) -> Result<Vec<(NetworkRecord, EndpointSettings)>> {
        let mode = host
            .network_mode
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "default".into());
        if mode.starts_with("container:") {
            return Err(Error::Invalid(format!(
                "network mode {mode} is not supported by polisd"
            )));
        }
        let primary = match mode.as_str() {
            "default" | BRIDGE => self.db.lookup_network(BRIDGE)?,
            other => self.db.lookup_network(other)?,
        };
        port_requests(host, exposed)?;
        let mut configs = networking
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let take = |configs: &mut HashMap<String, EndpointSettings>, n: &NetworkRecord| {
            [mode.as_str(), n.name.as_str(), n.id.as_str()]
                .iter()
                .find_map(|k| configs.remove(*k))
        };
        let settings = take(&mut configs, &primary).unwrap_or_default();
        let mut planned = vec![(primary, settings)];
        let mut extra: Vec<(String, EndpointSettings)> = configs.into_iter().collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, settings) in extra {
            let n = self.db.lookup_network(&name)?;
            if planned[0].0.driver != Driver::Bridge || n.driver != Driver::Bridge {
                return Err(Error::Invalid(format!(
                    "Container cannot be connected to network endpoints: {}, {name}",
                    planned[0].0.name
                )));
            }
            if !planned.iter().any(|(p, _)| p.id == n.id) {
                planned.push((n, settings));
            }
        }
        for (n, s) in &planned {
            check_endpoint_settings(n, s)?;
        }
        Ok(planned)
    }

    /// Records a new container's endpoints (after `plan_endpoints`); on failure the container's row goes too.
    pub fn add_endpoints(
        &self,
        container_id: &str,
        planned: &[(NetworkRecord, EndpointSettings)],
    ) -> Result<()> {
        let result = (|| {
            let _lock = networks_lock();
            for (n, s) in planned {
                if self.db.network(&n.id)?.is_none() {
                    return Err(Error::NotFound(format!("network {} not found", n.name)));
                }
                let e = self.new_endpoint(container_id, n, s)?;
                self.db.put_endpoint(&e)?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = self.db.remove_endpoints_of(container_id);
            let _ = self.db.remove(container_id);
        }
        result
    }

    fn new_endpoint(
        &self,
        container_id: &str,
        network: &NetworkRecord,
        settings: &EndpointSettings,
    ) -> Result<EndpointRecord> {
        let ifname = if network.driver == Driver::Bridge {
            let used: Vec<String> = self
                .db
                .endpoints_of(container_id)?
                .into_iter()
                .map(|e| e.ifname)
                .collect();
            (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(n))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut static_ips = Vec::new();
        if let Some(c) = &settings.ipam_config {
            for a in [&c.ipv4_address, &c.ipv6_address]
                .into_iter()
                .flatten()
                .filter(|a| !a.is_empty())
            {
                static_ips.push(
                    a.parse::<IpAddr>()
                        .map_err(|_| Error::Invalid(format!("invalid IP address {a:?}")))?,
                );
            }
        }
        Ok(EndpointRecord {
            network_id: network.id.clone(),
            network_name: network.name.clone(),
            container_id: container_id.to_string(),
            endpoint_id: random_id()?,
            ifname,
            aliases: settings.aliases.clone().unwrap_or_default(),
            static_ips,
            attached: None,
        })
    }

    /// `POST /networks/{id}/connect`: the container joins the network, at once when it runs.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        settings: Option<EndpointSettings>,
    ) -> Result<()> {
        let network = self.db.lookup_network(network)?;
        let record = self.db.lookup(container)?;
        let settings = settings.unwrap_or_default();
        let mode = record.host_config.network_mode.as_deref().unwrap_or("");
        if mode == HOST || network.driver == Driver::Host {
            return Err(Error::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if mode == NONE || network.driver == Driver::Null {
            return Err(Error::Forbidden(format!(
                "container {} is in the none network mode or would join it: it cannot be connected to other networks",
                record.name
            )));
        }
        check_endpoint_settings(&network, &settings)?;
        let lock = container_lock(&record.id);
        let _guard = lock.lock().await;
        let endpoint = {
            let _lock = networks_lock();
            if self
                .db
                .endpoints_of(&record.id)?
                .iter()
                .any(|e| e.network_id == network.id)
            {
                return Err(Error::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    record.name, network.name
                )));
            }
            let e = self.new_endpoint(&record.id, &network, &settings)?;
            self.db.put_endpoint(&e)?;
            e
        };
        let record = self.db.get(&record.id)?.unwrap_or(record);
        let netns = self.netns_path(&record.id);
        if record.state.status.is_live() && netns.exists() {
            let mut attachment = self.attachment(&record, network.clone(), endpoint.clone(), &[]);
            // The default route stays with the networks the container has, unless all are internal; an internal
            // network never has it.
            attachment.default_route = !network.internal
                && !self
                    .container_networks(&record.id)?
                    .iter()
                    .any(|(e, n)| e.attached.is_some() && n.as_ref().is_some_and(|n| !n.internal));
            let runner = self.cni();
            let (data_dir, internal_bridges) = (self.netplug_dir(), self.internal_bridges()?);
            let added = blocking(move || {
                let mut done = attach_isolated(
                    &runner,
                    &netns,
                    vec![attachment],
                    &data_dir,
                    &internal_bridges,
                )?;
                Ok(done.remove(0))
            })
            .await;
            match added {
                Ok(e) => {
                    self.db.put_endpoint(&e)?;
                    self.refresh_own_resolver(&record).await;
                    self.refresh_files(&record)?;
                    self.sync_own_resolvers();
                }
                Err(e) => {
                    let _ = self.db.remove_endpoint(&network.id, &record.id);
                    return Err(e);
                }
            }
        }
        self.network_event(&network, "connect", &[("container", &record.id)]);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`: the container leaves the network, at once when it runs.
    pub async fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let network = self.db.lookup_network(network)?;
        let record = self.db.lookup(container)?;
        if network.driver == Driver::Host {
            return Err(Error::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        let lock = container_lock(&record.id);
        let _guard = lock.lock().await;
        let Some(endpoint) = self
            .db
            .endpoints_of(&record.id)?
            .into_iter()
            .find(|e| e.network_id == network.id)
        else {
            return Err(Error::Forbidden(format!(
                "container {} is not connected to network {}",
                record.id, network.name
            )));
        };
        if network.driver == Driver::Bridge
            && (endpoint.attached.is_some() || self.netns_path(&record.id).exists())
        {
            let (runner, netns) = (self.cni(), self.netns_path(&record.id));
            let (n, e) = (network.clone(), endpoint.clone());
            blocking(move || detach(&runner, &netns, &n, &e)).await?;
        }
        self.db.remove_endpoint(&network.id, &record.id)?;
        if record.state.status.is_live() {
            self.refresh_own_resolver(&record).await;
            let _ = self.refresh_files(&record);
        }
        self.sync_own_resolvers();
        self.network_event(&network, "disconnect", &[("container", &record.id)]);
        Ok(())
    }

    /// The ADD of one endpoint: its capability arguments (ports on the first one, names on user networks,
    /// static addresses).
    fn attachment(
        &self,
        record: &ContainerRecord,
        network: NetworkRecord,
        endpoint: EndpointRecord,
        ports: &[Published],
    ) -> Attachment {
        let mut args = Map::new();
        if !ports.is_empty() {
            let mappings: Vec<Value> = ports
                .iter()
                .map(|p| {
                    let mut m = json!({"hostPort": p.host_port, "containerPort": p.container_port,
                                       "protocol": p.protocol});
                    if let Some(ip) = p.host_ip {
                        m["hostIP"] = json!(ip.to_string());
                    }
                    m
                })
                .collect();
            args.insert("portMappings".into(), Value::Array(mappings));
        }
        let mut dns_names = Vec::new();
        if network.is_user_bridge() {
            let (aliases, listed) = user_network_names(record, &endpoint);
            args.insert("aliases".into(), json!({ network.name.clone(): aliases }));
            dns_names = listed;
        }
        if !endpoint.static_ips.is_empty() {
            let ips: Vec<String> = endpoint
                .static_ips
                .iter()
                .map(|ip| {
                    network
                        .subnets
                        .iter()
                        .find(|s| s.subnet.contains(ip))
                        .map(|s| format!("{ip}/{}", s.subnet.prefix_len()))
                        .unwrap_or_else(|| ip.to_string())
                })
                .collect();
            args.insert("ips".into(), json!(ips));
        }
        Attachment {
            network,
            endpoint,
            default_route: true,
            capability_args: args,
            ports: ports.to_vec(),
            dns_names,
        }
    }

    /// Before a container starts: its network namespace and its attachments (nothing for the host's network; for
    /// `none` the namespace with its loopback only). Everything made is undone on failure.
    pub async fn network_up(&self, record: &ContainerRecord) -> Result<()> {
        if record.host_config.network_mode.as_deref() == Some(HOST) {
            return Ok(());
        }
        let lock = container_lock(&record.id);
        let _guard = lock.lock().await;
        let netns = self.netns_path(&record.id);
        if netns.exists() {
            // Left by a run polisd did not see end.
            self.network_down_locked(&record.id).await;
        }
        let mut wanted = Vec::new();
        for (mut e, n) in self.container_networks(&record.id)? {
            let n = match n {
                Some(n) => n,
                // Removed since: a network of the same name takes its place (as dockerd finds it by name).
                None => {
                    let n = self.db.lookup_network(&e.network_name)?;
                    let _lock = networks_lock();
                    self.db.remove_endpoint(&e.network_id, &e.container_id)?;
                    e.network_id = n.id.clone();
                    self.db.put_endpoint(&e)?;
                    n
                }
            };
            if n.driver == Driver::Bridge {
                wanted.push((n, e));
            }
        }
        let ports = if wanted.is_empty() {
            Vec::new()
        } else {
            let requests = port_requests(
                &record.host_config,
                record.config.exposed_ports.as_deref().unwrap_or(&[]),
            )?;
            let taken: Vec<Published> = self
                .db
                .all_endpoints()?
                .into_iter()
                .filter(|e| e.container_id != record.id)
                .filter_map(|e| e.attached)
                .flat_map(|a| a.ports)
                .collect();
            allocate_ports(&requests, &taken, ephemeral_range(), &host_port_free)?
        };
        // The default route goes through the first network that is not internal (an internal one has none).
        let mut default_taken = false;
        let attachments: Vec<Attachment> = wanted
            .into_iter()
            .enumerate()
            .map(|(i, (n, e))| {
                let mut a = self.attachment(record, n, e, if i == 0 { &ports } else { &[] });
                a.default_route = !a.network.internal && !default_taken;
                default_taken |= a.default_route;
                a
            })
            .collect();
        let runner = self.cni();
        let path = netns.clone();
        let bundle = record.bundle.clone();
        let (data_dir, internal_bridges) = (self.netplug_dir(), self.internal_bridges()?);
        let done = blocking(move || {
            make_netns(&path)?;
            let attached =
                attach_isolated(&runner, &path, attachments, &data_dir, &internal_bridges);
            let result = attached.and_then(|done| {
                let config = bundle.join("config.json");
                let text =
                    std::fs::read(&config).map_err(|e| Error::failed(config.display(), e))?;
                let mut spec: Value = serde_json::from_slice(&text)
                    .map_err(|e| Error::failed(config.display(), e))?;
                if set_network_namespace(&mut spec, &path) {
                    let text = serde_json::to_vec_pretty(&spec)
                        .map_err(|e| Error::failed("encode config.json", e))?;
                    polis_host::atomic::write_atomic(&config, &text)
                        .map_err(|e| Error::failed(config.display(), e))?;
                }
                Ok(done)
            });
            if result.is_err() {
                remove_netns(&path);
            }
            result
        })
        .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => return Err(e),
        };
        let saved = done.iter().try_for_each(|e| self.db.put_endpoint(e));
        if saved.is_ok() {
            self.refresh_own_resolver(record).await;
        }
        if let Err(e) = saved.and_then(|_| self.refresh_files(record)) {
            self.network_down_locked(&record.id).await;
            return Err(e);
        }
        self.sync_own_resolvers();
        Ok(())
    }

    /// After a container exited (or failed to start): CNI DEL of its attachments, its network namespace removed.
    pub async fn network_down(&self, container_id: &str) {
        let lock = container_lock(container_id);
        let _guard = lock.lock().await;
        self.network_down_locked(container_id).await;
    }

    async fn network_down_locked(&self, container_id: &str) {
        if self.own_resolvers_dir().join(container_id).exists() {
            let (views, id) = (self.own_resolvers_dir(), container_id.to_string());
            let _ = blocking(move || {
                remove_own_resolver(&views, &id);
                Ok(())
            })
            .await;
        }
        let netns = self.netns_path(container_id);
        let endpoints = match self.container_networks(container_id) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(container = container_id, error = %e, "read the container's networks");
                Vec::new()
            }
        };
        let exists = netns.exists();
        let detach_these: Vec<(NetworkRecord, EndpointRecord)> = endpoints
            .iter()
            .filter_map(|(e, n)| Some((n.clone()?, e.clone())))
            .filter(|(n, e)| n.driver == Driver::Bridge && (exists || e.attached.is_some()))
            .collect();
        if !exists && detach_these.is_empty() {
            return;
        }
        let runner = self.cni();
        let path = netns.clone();
        let id = container_id.to_string();
        let _ = blocking(move || {
            for (n, e) in detach_these.iter().rev() {
                if let Err(error) = detach(&runner, &path, n, e) {
                    tracing::warn!(container = id, network = n.name, %error, "CNI DEL");
                }
            }
            remove_netns(&path);
            Ok(())
        })
        .await;
        for (mut e, _) in endpoints {
            if e.attached.take().is_some() {
                let _ = self.db.put_endpoint(&e);
            }
        }
        self.sync_own_resolvers();
    }

    /// When a container is removed: its network state and endpoints.
    pub async fn forget_container_networks(&self, container_id: &str) {
        self.network_down(container_id).await;
        if let Err(e) = self.db.remove_endpoints_of(container_id) {
            tracing::warn!(container = container_id, error = %e, "remove endpoints");
        }
        forget_container_lock(container_id);
    }

    /// Rewrites the container's /etc/hosts (its addresses) and, on a user network, /etc/resolv.conf (the
    /// network's resolver) in place, so that a running container sees them.
    fn refresh_files(&self, record: &ContainerRecord) -> Result<()> {
        let etc = self.config.containers_dir().join(&record.id).join("etc");
        let hostname = record.hostname();
        let mut addresses = Vec::new();
        let mut user_resolver = None;
        let mut bridge_resolver = None;
        for (e, n) in self.container_networks(&record.id)? {
            let (Some(a), Some(n)) = (e.attached, n) else {
                continue;
            };
            addresses.extend(a.addresses.iter().map(|a| a.addr()));
            let first = a.nameservers.first().cloned();
            if n.is_user_bridge() {
                user_resolver = user_resolver.or(first);
            } else {
                bridge_resolver = bridge_resolver.or(first);
            }
        }
        let write = |name: &str, text: String| -> Result<()> {
            let path = etc.join(name);
            std::fs::write(&path, text).map_err(|e| Error::failed(path.display(), e))
        };
        let hosts = std::fs::read_to_string(etc.join("hosts")).unwrap_or_default();
        write("hosts", hosts_with_addresses(&hosts, &hostname, &addresses))?;
        if record.host_config.dns.as_ref().is_none_or(|d| d.is_empty()) {
            // The file as made at create (the host's servers), kept beside it the first time.
            let base = match std::fs::read_to_string(etc.join("resolv.conf.host")) {
                Ok(t) => t,
                Err(_) => {
                    let t = std::fs::read_to_string(etc.join("resolv.conf")).unwrap_or_default();
                    write("resolv.conf.host", t.clone())?;
                    t
                }
            };
            let has_server = base
                .lines()
                .any(|l| l.trim_start().starts_with("nameserver"));
            // Names of user networks come from the container's own resolver when it is on several, else from
            // its network's resolver (which forward the rest to the host's); on the default bridge the host's
            // servers stay, polis-netplug's resolver only when the host has none usable.
            let own = own_resolver_process(&self.own_resolvers_dir(), &record.id)
                .is_some()
                .then(|| OWN_RESOLVER.to_string());
            let resolver =
                own.or(user_resolver)
                    .or(if has_server { None } else { bridge_resolver });
            let text = match resolver {
                Some(r) => resolv_with_resolver(&base, &r),
                None => base,
            };
            write("resolv.conf", text)?;
        }
        Ok(())
    }

    /// After the containers are recovered at start: namespaces and attachments of containers that do not run any
    /// more are removed, and polis-netplug forgets every attachment no running container has (CNI GC).
    pub async fn recover_networks(&self) {
        let live = |id: &str| {
            self.db
                .get(id)
                .ok()
                .flatten()
                .is_some_and(|c| c.state.status.is_live())
        };
        let mut stale: Vec<String> = self
            .db
            .all_endpoints()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.attached.is_some() && !live(&e.container_id))
            .map(|e| e.container_id)
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.config.netns_dir()) {
            for e in entries.filter_map(|e| e.ok()) {
                let id = e.file_name().to_string_lossy().into_owned();
                if !live(&id) {
                    stale.push(id);
                }
            }
        }
        stale.sort();
        stale.dedup();
        for id in stale {
            tracing::info!(
                container = id,
                "remove the network state of a container that exited"
            );
            self.network_down(&id).await;
        }
        let networks = self.db.networks().unwrap_or_default();
        let endpoints = self.db.all_endpoints().unwrap_or_default();
        let data_dir = self.netplug_dir();
        let runner = self.cni();
        let mut work = Vec::new();
        for n in networks.into_iter().filter(|n| n.driver == Driver::Bridge) {
            if !data_dir.join(&n.name).is_dir() {
                continue;
            }
            let valid: Vec<polis_netplug::cni::Attachment> = endpoints
                .iter()
                .filter(|e| e.network_id == n.id && e.attached.is_some() && live(&e.container_id))
                .map(|e| polis_netplug::cni::Attachment {
                    container_id: e.container_id.clone(),
                    ifname: e.ifname.clone(),
                })
                .collect();
            work.push((n, valid));
        }
        // Internal networks with running containers keep their firewall marks, also when the ruleset was
        // flushed while polisd was away.
        let internal: Vec<String> = work
            .iter()
            .filter(|(n, valid)| n.internal && !valid.is_empty())
            .map(|(n, _)| n.bridge.clone())
            .collect();
        let _ = blocking(move || {
            for (n, valid) in work {
                let gc = n.list().and_then(|list| {
                    runner
                        .gc(&list, &valid)
                        .map_err(|e| Error::Failed(e.to_string()))
                });
                if let Err(error) = gc {
                    tracing::warn!(network = n.name, %error, "CNI GC");
                }
            }
            if let Err(error) = mark_internal(&data_dir, &internal) {
                tracing::warn!(%error, "isolate the internal networks");
            }
            Ok(())
        })
        .await;
        // Own resolvers of containers that do not run any more; the others answer the names as they are now.
        let views = self.own_resolvers_dir();
        let gone: Vec<String> = std::fs::read_dir(&views)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|id| !live(id))
                    .collect()
            })
            .unwrap_or_default();
        if !gone.is_empty() {
            let _ = blocking(move || {
                for id in gone {
                    remove_own_resolver(&views, &id);
                }
                Ok(())
            })
            .await;
        }
        self.sync_own_resolvers();
    }
}

/// A container's names on a user network: those its ADD registers (the `aliases` capability: its name, the
/// endpoint's aliases, its hostname when one was asked for), and those Docker lists as its DNS names (the same
/// and its short ID, which polis-netplug registers by itself).
fn user_network_names(
    record: &ContainerRecord,
    endpoint: &EndpointRecord,
) -> (Vec<String>, Vec<String>) {
    let mut names = vec![record.name.clone()];
    for a in &endpoint.aliases {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    if let Some(h) = record.config.hostname.as_ref().filter(|h| !h.is_empty())
        && !names.contains(h)
    {
        names.push(h.clone());
    }
    let mut listed = names.clone();
    listed.push(record.short_id().to_string());
    (names, listed)
}

/// Endpoint settings a network can take: aliases only on user networks (Docker's rule).
fn check_endpoint_settings(network: &NetworkRecord, settings: &EndpointSettings) -> Result<()> {
    let aliases = settings.aliases.clone().unwrap_or_default();
    if !aliases.is_empty() && !network.is_user_bridge() {
        return Err(Error::Invalid(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    let has_static = settings.ipam_config.as_ref().is_some_and(|c| {
        c.ipv4_address.as_deref().is_some_and(|a| !a.is_empty())
            || c.ipv6_address.as_deref().is_some_and(|a| !a.is_empty())
    });
    if has_static && !network.is_user_bridge() {
        return Err(Error::Invalid(
            "user specified IP address is supported on user defined networks only".into(),
        ));
    }
    Ok(())
}

/// CNI ADD of each attachment in order; on a failure every one of them (the failed one included, as the CNI spec
/// wants) is deleted again and the error returned. The endpoints with what they got.
fn attach_all(
    runner: &CniRunner,
    netns: &Path,
    attachments: Vec<Attachment>,
) -> Result<Vec<EndpointRecord>> {
    let mut done: Vec<EndpointRecord> = Vec::new();
    for (i, a) in attachments.iter().enumerate() {
        let mut network = a.network.clone();
        if !a.default_route {
            network.cni["plugins"][0]["isDefaultGateway"] = json!(false);
        }
        let added = network.list().and_then(|list| {
            let mut rt =
                RuntimeConf::new(a.endpoint.container_id.clone(), a.endpoint.ifname.clone());
            rt.netns = Some(netns.to_path_buf());
            rt.capability_args = a.capability_args.clone();
            runner
                .add(&list, &rt)
                .map_err(|e| cni_error(&a.network.name, e))
        });
        match added {
            Ok(result) => {
                let mut e = a.endpoint.clone();
                e.attached = Some(attached_from(&result, a.ports.clone(), a.dns_names.clone()));
                done.push(e);
            }
            Err(error) => {
                for b in attachments[..=i].iter().rev() {
                    if let Err(e) = detach(runner, netns, &b.network, &b.endpoint) {
                        tracing::warn!(network = b.network.name, error = %e, "CNI DEL after a failed ADD");
                    }
                }
                return Err(error);
            }
        }
    }
    Ok(done)
}

/// [`attach_all`] with the bridges of the internal networks among the attachments marked in the firewall: before
/// the ADDs when the firewall has its rules, so that no interface of the container is ever on an unmarked internal
/// bridge; else after them (the first ADD puts the rules back), and then every internal network's (all of
/// `internal_bridges`), whose marks went with the rules. When the marking fails, nothing stays attached.
fn attach_isolated(
    runner: &CniRunner,
    netns: &Path,
    attachments: Vec<Attachment>,
    data_dir: &Path,
    internal_bridges: &[String],
) -> Result<Vec<EndpointRecord>> {
    let attached: Vec<(NetworkRecord, EndpointRecord)> = attachments
        .iter()
        .map(|a| (a.network.clone(), a.endpoint.clone()))
        .collect();
    let mut mark: Vec<String> = attached
        .iter()
        .filter(|(n, _)| n.internal)
        .map(|(n, _)| n.bridge.clone())
        .collect();
    let rules_missing = !internal_bridges.is_empty() && firewall_rules_missing();
    if !rules_missing {
        mark_internal(data_dir, &mark)?;
    }
    let done = attach_all(runner, netns, attachments)?;
    if !rules_missing {
        return Ok(done);
    }
    mark.extend(internal_bridges.iter().cloned());
    mark.sort();
    mark.dedup();
    if let Err(error) = mark_internal(data_dir, &mark) {
        for (n, e) in attached.iter().rev() {
            if let Err(e) = detach(runner, netns, n, e) {
                tracing::warn!(network = n.name, error = %e, "CNI DEL after a failed isolation");
            }
        }
        return Err(error);
    }
    Ok(done)
}

/// eth0, eth1, ...: the order in which a container joined its networks.
fn ifname_order(ifname: &str) -> u32 {
    ifname
        .strip_prefix("eth")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// The records of a container's own resolver, with their file names: those of each of its user networks
/// (`networks`: the network's name and its resolver's records, in the order the container joined them), every
/// name also as `NAME.NETWORK`. A bare name that an earlier network has is left to that one, as Docker's resolver
/// answers from the first of the container's networks that knows the name.
fn own_resolver_records(networks: &[(String, Vec<NameRecord>)]) -> Vec<(String, NameRecord)> {
    let mut claimed: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (i, (network, records)) in networks.iter().enumerate() {
        let mut here: HashSet<String> = HashSet::new();
        let mut records = records.clone();
        records.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        for r in records {
            let mut names: Vec<String> = r
                .names
                .iter()
                .filter(|n| !claimed.contains(&n.to_ascii_lowercase()))
                .cloned()
                .collect();
            names.extend(r.names.iter().map(|n| format!("{n}.{network}")));
            here.extend(r.names.iter().map(|n| n.to_ascii_lowercase()));
            let file = format!("{i}-{}-{}.json", r.container_id, r.ifname);
            out.push((file, NameRecord { names, ..r }));
        }
        claimed.extend(here);
    }
    out
}

/// Makes `dir` hold exactly `records` (a record file is rewritten only when it changed, atomically, so the
/// resolver never reads half of one).
fn write_own_resolver_records(dir: &Path, records: &[(String, NameRecord)]) -> Result<()> {
    let mut wanted = HashSet::new();
    for (file, record) in records {
        let path = dir.join(file);
        let data =
            serde_json::to_vec(record).map_err(|e| Error::failed("encode a DNS record", e))?;
        if std::fs::read(&path).ok().as_deref() != Some(&data[..]) {
            polis_host::atomic::write_atomic_mode(&path, &data, 0o644)
                .map_err(|e| Error::failed(path.display(), e))?;
        }
        wanted.insert(std::ffi::OsString::from(file));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::failed(dir.display(), e))?;
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        if e.path().extension().is_some_and(|x| x == "json") && !wanted.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// The command line of a container's own resolver: polis-netplug's `dns-serve` on [`OWN_RESOLVER`], its records
/// under `<views>/<id>/dns`, forwarding to `upstreams`.
fn own_resolver_args(views: &Path, id: &str, upstreams: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        polis_netplug::dns::SERVE_COMMAND.into(),
        "--network".into(),
        id.into(),
        "--data-dir".into(),
        views.display().to_string(),
        "--listen".into(),
        OWN_RESOLVER.into(),
    ];
    for u in upstreams {
        args.push("--upstream".into());
        args.push(u.clone());
    }
    args
}

/// The pid and arguments (after the program) of container `id`'s own resolver, if its pid file names a live
/// (not zombie) `dns-serve` of `views` for it: a reused pid is not taken for it.
fn own_resolver_process(views: &Path, id: &str) -> Option<(i32, Vec<String>)> {
    let pid: i32 = std::fs::read_to_string(polis_netplug::dns::pid_path(views, id))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = stat
        .rsplit_once(')')
        .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'));
    let views_text = views.display().to_string();
    let pair = |flag: &str, value: &str| args.windows(2).any(|w| w[0] == flag && w[1] == value);
    let ours = args.first().map(String::as_str) == Some(polis_netplug::dns::SERVE_COMMAND)
        && pair("--network", id)
        && pair("--data-dir", &views_text);
    (ours && !zombie).then_some((pid, args))
}

/// Ends container `id`'s own resolver (SIGKILL: it keeps no state) and waits until it is gone.
fn kill_own_resolver(views: &Path, id: &str) {
    if let Some((pid, _)) = own_resolver_process(views, id) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while own_resolver_process(views, id).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = std::fs::remove_file(polis_netplug::dns::pid_path(views, id));
}

/// Removes container `id`'s own resolver: the process and its directory.
fn remove_own_resolver(views: &Path, id: &str) {
    kill_own_resolver(views, id);
    let _lock = own_resolvers_lock();
    let dir = views.join(id);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(container = id, error = %e, "remove the container's resolver");
    }
}

/// What a container's own resolver runs with.
struct OwnResolver {
    id: String,
    views: PathBuf,
    binary: PathBuf,
    netns: PathBuf,
    args: Vec<String>,
}

/// Starts the container's own resolver in its network namespace unless it runs with these arguments already (it
/// is restarted when they changed); waits until it has bound its sockets, then writes its pid file.
fn start_own_resolver(plan: &OwnResolver) -> Result<()> {
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if own_resolver_process(&plan.views, &plan.id).is_some_and(|(_, args)| args == plan.args) {
        return Ok(());
    }
    kill_own_resolver(&plan.views, &plan.id);
    let dir = plan.views.join(&plan.id);
    let log_path = dir.join("dns.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::failed(log_path.display(), e))?;
    let netns =
        std::fs::File::open(&plan.netns).map_err(|e| Error::failed(plan.netns.display(), e))?;
    let fd = netns.as_raw_fd();
    let mut cmd = Command::new(&plan.binary);
    cmd.args(&plan.args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: setns and setsid are async-signal-safe; nothing else runs between fork and exec. `netns` outlives
    // the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::failed(
            format!("start the container's resolver {}", plan.binary.display()),
            e,
        )
    })?;
    drop(netns);
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(OWN_RESOLVER_START).unwrap_or_default();
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        let why = match line.trim() {
            "" => format!("not ready in {OWN_RESOLVER_START:?}"),
            said => said.to_string(),
        };
        return Err(Error::Failed(format!(
            "the container's resolver on {OWN_RESOLVER}: {why} (see {})",
            log_path.display()
        )));
    }
    let pid_file = polis_netplug::dns::pid_path(&plan.views, &plan.id);
    if let Err(e) = polis_host::atomic::write_atomic_mode(
        &pid_file,
        format!("{}\n", child.id()).as_bytes(),
        0o644,
    ) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::failed(pid_file.display(), e));
    }
    // Reaped by polisd while it runs; it outlives polisd as the container does.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// CNI DEL of one attachment.
fn detach(
    runner: &CniRunner,
    netns: &Path,
    network: &NetworkRecord,
    endpoint: &EndpointRecord,
) -> Result<()> {
    let list = network.list()?;
    let mut rt = RuntimeConf::new(endpoint.container_id.clone(), endpoint.ifname.clone());
    rt.netns = netns.exists().then(|| netns.to_path_buf());
    runner
        .del(&list, &rt)
        .map_err(|e| cni_error(&network.name, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::PortBinding;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_are_checked() {
        assert_eq!(
            parse_subnet("198.18.201.0/24").unwrap(),
            net("198.18.201.0/24")
        );
        for bad in [
            "198.18.201.5/24",
            "nonsense",
            "10.0.0.0/31",
            "10.0.0.0",
            "fd00::/127",
        ] {
            assert!(matches!(parse_subnet(bad), Err(Error::Invalid(_))), "{bad}");
        }
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.0.0/16")));
        assert!(overlaps(&net("10.1.0.0/16"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.1.0.0/16"), &net("10.2.0.0/16")));
    }

    #[test]
    fn gateways_default_to_the_first_address_and_must_be_inside() {
        let s = net("198.18.201.0/24");
        assert_eq!(gateway_of(&s, None).unwrap().to_string(), "198.18.201.1");
        assert_eq!(
            gateway_of(&s, Some("198.18.201.254")).unwrap().to_string(),
            "198.18.201.254"
        );
        for bad in ["198.18.202.1", "198.18.201.0", "198.18.201.255", "x"] {
            assert!(gateway_of(&s, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_subnets_avoid_taken_ones() {
        let pools = [(net("198.18.208.0/20"), 24)];
        assert_eq!(pick_subnet(&pools, &[]), Some(net("198.18.208.0/24")));
        let taken = [net("198.18.208.0/23"), net("198.18.210.0/24")];
        assert_eq!(pick_subnet(&pools, &taken), Some(net("198.18.211.0/24")));
        assert_eq!(pick_subnet(&pools, &[net("198.18.0.0/15")]), None);
    }

    #[test]
    fn the_conflist_is_what_polis_netplug_takes() {
        let subnets = [Subnet {
            subnet: net("198.18.201.0/24"),
            gateway: "198.18.201.1".parse().unwrap(),
            range: Some(net("198.18.201.128/25")),
        }];
        let c = conflist(
            "n1",
            "br-1",
            &subnets,
            true,
            Some(1400),
            Path::new("/x/netplug"),
        );
        let list = NetworkList::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(list.name, "n1");
        let p = &list.plugins[0];
        assert_eq!(p["type"], "polis-netplug");
        assert_eq!(p["ipMasq"], false);
        assert_eq!(p["mtu"], 1400);
        let range = &p["ipam"]["ranges"][0][0];
        assert_eq!(range["rangeStart"], "198.18.201.129");
        assert_eq!(range["rangeEnd"], "198.18.201.254");
        polis_netplug::ipam::IpamConfig::parse(&p["ipam"]).unwrap();
        let caps = list.plugin_config(
            0,
            Some(
                json!({"portMappings": [], "aliases": {}, "ips": [], "other": 1})
                    .as_object()
                    .unwrap(),
            ),
            None,
        );
        assert!(caps["runtimeConfig"].get("aliases").is_some());
        assert!(caps["runtimeConfig"].get("other").is_none());
    }

    fn binding(ip: &str, port: &str) -> PortBinding {
        PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        }
    }

    #[test]
    fn port_bindings_and_publish_all() {
        let host = HostConfig {
            port_bindings: Some(
                [
                    ("80/tcp".to_string(), Some(vec![binding("", "18080")])),
                    (
                        "53/udp".to_string(),
                        Some(vec![binding("127.0.0.1", "5300-5310")]),
                    ),
                ]
                .into(),
            ),
            publish_all_ports: Some(true),
            ..Default::default()
        };
        let exposed = ["80/tcp".to_string(), "443/tcp".to_string()];
        let r = port_requests(&host, &exposed).unwrap();
        assert_eq!(
            r,
            [
                PortRequest {
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_ports: Some((5300, 5310)),
                },
                PortRequest {
                    container_port: 80,
                    protocol: "tcp".into(),
                    host_ip: None,
                    host_ports: Some((18080, 18080)),
                },
                PortRequest {
                    container_port: 443,
                    protocol: "tcp".into(),
                    host_ip: None,
                    host_ports: None,
                },
            ]
        );
        let bad = HostConfig {
            port_bindings: Some([("80/sctp".to_string(), None)].into()),
            ..Default::default()
        };
        assert!(matches!(port_requests(&bad, &[]), Err(Error::Invalid(_))));
        let bad = HostConfig {
            port_bindings: Some([("80".to_string(), Some(vec![binding("", "x")]))].into()),
            ..Default::default()
        };
        assert!(matches!(port_requests(&bad, &[]), Err(Error::Invalid(_))));
    }

    #[test]
    fn ports_taken_by_another_container_conflict() {
        let req = |ports: Option<(u16, u16)>| PortRequest {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: None,
            host_ports: ports,
        };
        let taken = [Published {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 18080,
        }];
        let free = |_: &str, _: Option<IpAddr>, p: u16| p != 40001;
        let e = allocate_ports(&[req(Some((18080, 18080)))], &taken, (40000, 40010), &free)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Conflict(m) if m.contains("0.0.0.0:18080") && m.contains("already allocated")),
            "{e}"
        );
        let got = allocate_ports(
            &[req(Some((18080, 18081))), req(None), req(None)],
            &taken,
            (40000, 40010),
            &free,
        )
        .unwrap();
        let ports: Vec<u16> = got.iter().map(|p| p.host_port).collect();
        assert_eq!(ports, [18081, 40000, 40002]);
        let e = allocate_ports(&[req(Some((40001, 40001)))], &[], (1, 2), &free).unwrap_err();
        assert!(
            matches!(&e, Error::Failed(m) if m.contains("address already in use")),
            "{e}"
        );
    }

    #[test]
    fn hosts_and_resolv_conf_name_the_container() {
        let text = "127.0.0.1\tlocalhost\n127.0.1.1\tabc\n10.9.9.9\textra\n";
        let ip: IpAddr = "198.18.201.2".parse().unwrap();
        let with = hosts_with_addresses(text, "abc", &[ip]);
        assert_eq!(
            with,
            "127.0.0.1\tlocalhost\n10.9.9.9\textra\n198.18.201.2\tabc\n"
        );
        assert_eq!(hosts_with_addresses(&with, "abc", &[ip]), with);
        assert_eq!(
            hosts_with_addresses(&with, "abc", &[]),
            "127.0.0.1\tlocalhost\n10.9.9.9\textra\n127.0.1.1\tabc\n"
        );
        let resolv = "nameserver 10.0.0.53\nsearch example.org\noptions ndots:2\n";
        assert_eq!(
            resolv_with_resolver(resolv, "198.18.201.1"),
            "nameserver 198.18.201.1\nsearch example.org\noptions ndots:2\n"
        );
    }

    #[test]
    fn the_network_namespace_is_named_in_config_json() {
        let mut spec = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]}});
        assert!(set_network_namespace(
            &mut spec,
            Path::new("/run/polis/netns/c1")
        ));
        assert_eq!(
            spec["linux"]["namespaces"][1],
            json!({"type": "network", "path": "/run/polis/netns/c1"})
        );
        assert!(!set_network_namespace(
            &mut spec,
            Path::new("/run/polis/netns/c1")
        ));
    }

    fn name_record(id: &str, ifname: &str, names: &[&str], address: &str) -> NameRecord {
        NameRecord {
            container_id: id.into(),
            ifname: ifname.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            addresses: vec![address.parse().unwrap()],
        }
    }

    #[test]
    fn a_containers_own_resolver_knows_every_network_first_one_first() {
        let m1 = vec![
            name_record("c1", "eth0", &["one", "shared"], "198.18.96.2"),
            name_record("c3", "eth0", &["multi"], "198.18.96.3"),
        ];
        let m2 = vec![
            name_record("c2", "eth0", &["two", "zed", "Shared"], "198.18.97.2"),
            name_record("c3", "eth1", &["multi", "ex"], "198.18.97.3"),
        ];
        let got = own_resolver_records(&[("m1".into(), m1), ("m2".into(), m2)]);
        let files: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "0-c1-eth0.json",
                "0-c3-eth0.json",
                "1-c2-eth0.json",
                "1-c3-eth1.json"
            ]
        );
        let names = |i: usize| got[i].1.names.clone();
        assert_eq!(names(0), ["one", "shared", "one.m1", "shared.m1"]);
        // A bare name of the first network is its alone (case does not matter); NAME.NETWORK stays.
        assert_eq!(names(2), ["two", "zed", "two.m2", "zed.m2", "Shared.m2"]);
        assert_eq!(names(3), ["ex", "multi.m2", "ex.m2"]);
        assert_eq!(
            got[2].1.addresses,
            ["198.18.97.2".parse::<IpAddr>().unwrap()]
        );
        assert!(own_resolver_records(&[]).is_empty());
    }

    #[test]
    fn own_resolver_records_are_written_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let a = (
            "0-a-eth0.json".to_string(),
            name_record("a", "eth0", &["a1"], "198.18.96.2"),
        );
        let b = (
            "1-b-eth0.json".to_string(),
            name_record("b", "eth0", &["b1"], "198.18.97.2"),
        );
        write_own_resolver_records(dir.path(), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(polis_netplug::dns::read_records(dir.path()).len(), 2);
        write_own_resolver_records(dir.path(), std::slice::from_ref(&b)).unwrap();
        assert_eq!(polis_netplug::dns::read_records(dir.path()), vec![b.1]);
    }

    #[test]
    fn the_own_resolver_runs_dns_serve_on_127_0_0_11() {
        let args = own_resolver_args(
            Path::new("/v"),
            "c1",
            &["198.18.96.1".into(), "198.18.97.1".into()],
        );
        assert_eq!(
            args,
            [
                "dns-serve",
                "--network",
                "c1",
                "--data-dir",
                "/v",
                "--listen",
                "127.0.0.11",
                "--upstream",
                "198.18.96.1",
                "--upstream",
                "198.18.97.1"
            ]
        );
        // And the daemon takes them.
        polis_netplug::dns::server::ServeOptions::parse(&args[1..]).unwrap();
        assert_eq!(ifname_order("eth10"), 10);
        assert!(ifname_order("eth2") < ifname_order("eth10"));
    }

    #[test]
    fn network_names_follow_dockers_rule() {
        check_network_name("n1").unwrap();
        check_network_name("my_net.v2-x").unwrap();
        for bad in ["", "-x", "a b", "a/b"] {
            assert!(check_network_name(bad).is_err(), "{bad:?}");
        }
    }
}
