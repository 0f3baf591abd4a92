//! Networks as Docker has them, over polis-netplug: the predefined `bridge` (the bridge device `polis0`, its subnet
//! from the config), `host` and `none`, and user networks of the bridge driver (each its own bridge device, subnet
//! and
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

mod attach;
mod config;
mod dns;
mod netns;
mod netplug;
mod ports;
mod records;
mod recover;

pub use config::*;
pub use netns::*;
pub use ports::*;
pub use records::{NetworkFilter, NetworkMember, NetworkPruneFilter};

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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::failed("background task", e))?
}
