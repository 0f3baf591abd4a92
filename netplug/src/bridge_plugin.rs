//! The bridge plugin: a veth pair from the container's namespace to a bridge on the host, addresses from
//! [`crate::ipam`], routes through the bridge as gateway, masquerading, port mappings (the `portMappings`
//! capability) and isolation from other networks through [`crate::firewall`].
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "polis", "type": "polis-netplug", "bridge": "polis0", "ipMasq": true,
//!  "hairpinMode": true, "mtu": 1500, "capabilities": {"portMappings": true, "ips": true},
//!  "ipam": {"type": "polis", "ranges": [[{"subnet": "198.18.0.0/24"}]]}}
//! ```
//! What an attachment changed outside its namespace (its port mappings) is recorded under the IPAM data
//! directory (`<dataDir>/<network>/firewall/`), so DEL, GC and `polis-cnitool reapply` know it after a restart.

use crate::cni::types::{Interface, IpConfig, Route as ResultRoute};
use crate::cni::{Attachment, CniResult, NetworkRequest, Plugin, Request};
use crate::error::{Error, Result, io};
use crate::firewall::{self, PortMapping, Protocol};
use crate::ipam::{Allocation, Allocator, IpamConfig, static_requests};
use crate::link::{
    BridgeSpec, Netlink, RouteSpec, VethSpec, delete_container_interface, in_netns,
    interface_name_taken,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_BRIDGE: &str = "polis0";

/// The plugin-specific keys of the network configuration. Anything else is refused: a misspelt key would
/// otherwise silently change the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BridgeConfig {
    #[serde(default)]
    pub bridge: Option<String>,
    /// The bridge holds the gateway addresses and is the containers' default route (default true).
    #[serde(default)]
    pub is_gateway: Option<bool>,
    /// With `isGateway`: whether the container's default routes go through the gateway (default true; the
    /// reference bridge plugin's key). False for a container's second network, whose first has the default route.
    #[serde(default)]
    pub is_default_gateway: Option<bool>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Hairpin mode on the container's bridge port (default true), so a container reaches itself through a
    /// mapped port.
    #[serde(default)]
    pub hairpin_mode: Option<bool>,
}

/// `runtimeConfig.portMappings` (CNI conventions.md, "Port mappings").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortMappingArg {
    host_port: u16,
    container_port: u16,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    host_ip: Option<String>,
}

/// What an attachment put into the firewall, kept for DEL, GC and re-applying the rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentRecord {
    pub container_id: String,
    pub ifname: String,
    pub mappings: Vec<PortMapping>,
}

/// A network's firewall facts, for isolation and `reapply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub bridge: String,
    pub subnets: Vec<IpNet>,
    pub masquerade: bool,
}

pub struct BridgePlugin;

struct Network {
    name: String,
    bridge: String,
    is_gateway: bool,
    default_route: bool,
    mtu: Option<u32>,
    hairpin: bool,
    masquerade: bool,
    ipam: IpamConfig,
}

impl Network {
    /// The network of a config, every check made: ADD, CHECK, STATUS and GC refuse what cannot work (a subnet
    /// that cannot serve containers included, code 7).
    fn from_conf(conf: &crate::cni::NetConf) -> Result<Network> {
        Network::parse(conf, IpamConfig::parse)
    }

    /// The network of a config for DEL, which must release what it can even for a config ADD refused for its
    /// subnet ([`IpamConfig::parse_for_release`]).
    fn from_conf_for_release(conf: &crate::cni::NetConf) -> Result<Network> {
        Network::parse(conf, IpamConfig::parse_for_release)
    }

    fn parse(
        conf: &crate::cni::NetConf,
        parse_ipam: fn(&serde_json::Value) -> Result<IpamConfig>,
    ) -> Result<Network> {
        let extra: BridgeConfig = serde_json::from_value(serde_json::Value::Object(
            conf.plugin.clone(),
        ))
        .map_err(|e| {
            let text = e.to_string();
            match text
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
            {
                Some(field) => Error::UnsupportedField {
                    field: field.to_string(),
                    context: Some("polis-netplug bridge configuration".into()),
                },
                None => Error::InvalidConfig { reason: text },
            }
        })?;
        let ipam_value = conf
            .ipam
            .as_ref()
            .map(|i| serde_json::to_value(i).unwrap_or_default())
            .ok_or_else(|| Error::InvalidConfig {
                reason: "the network has no \"ipam\" section".into(),
            })?;
        let ipam = parse_ipam(&ipam_value)?;
        let bridge = extra.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        crate::link::validate_interface_name(&bridge).map_err(|reason| Error::InvalidConfig {
            reason: format!("bridge name {bridge:?}: {reason}"),
        })?;
        Ok(Network {
            name: conf.name.clone(),
            bridge,
            is_gateway: extra.is_gateway.unwrap_or(true),
            default_route: extra.is_gateway.unwrap_or(true)
                && extra.is_default_gateway.unwrap_or(true),
            mtu: extra.mtu,
            hairpin: extra.hairpin_mode.unwrap_or(true),
            masquerade: conf.ip_masq.unwrap_or(false),
            ipam,
        })
    }

    fn allocator(&self) -> Result<Allocator> {
        Allocator::open(&self.ipam, &self.name)
    }

    fn state_dir(&self) -> PathBuf {
        self.ipam.data_dir().join(&self.name).join("firewall")
    }

    fn record_path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.state_dir()
            .join(format!("{container_id}-{ifname}.json"))
    }

    /// The lock that keeps a failed ADD from deleting the bridge while another ADD is making or using it: every
    /// ADD holds it shared while it attaches; the ADD that created the bridge and failed deletes the bridge only
    /// if it gets the lock exclusively at once. The name cannot be a network's (those start with a letter or a
    /// digit), so it never meets a network's directory.
    fn bridge_lock_path(&self) -> PathBuf {
        self.ipam
            .data_dir()
            .join(format!(".bridge-{}.lock", self.bridge))
    }
}

/// What an ADD made so far, for undoing it when a later step fails ([`BridgePlugin::undo`]).
#[derive(Debug, Default)]
struct Made {
    /// This ADD created the bridge (rather than finding it).
    bridge: bool,
    /// The host end of the veth pair (deleting it deletes the pair, the container's end included).
    veth: Option<String>,
    /// This ADD recorded the network for the firewall and added its elements (masquerade subnets, isolation
    /// pairs): it was the network's first.
    network_record: bool,
}

fn port_mappings(req: &Request, allocations: &[Allocation]) -> Result<Vec<PortMapping>> {
    let Some(value) = req
        .conf
        .runtime_config
        .as_ref()
        .and_then(|rc| rc.get("portMappings"))
    else {
        return Ok(Vec::new());
    };
    let args: Vec<PortMappingArg> =
        serde_json::from_value(value.clone()).map_err(|e| Error::InvalidConfig {
            reason: format!("runtimeConfig.portMappings: {e}"),
        })?;
    let mut out = Vec::new();
    for a in args {
        let protocol = match a
            .protocol
            .as_deref()
            .unwrap_or("tcp")
            .to_ascii_lowercase()
            .as_str()
        {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(Error::InvalidConfig {
                    reason: format!(
                        "runtimeConfig.portMappings: protocol {other:?} is not tcp or udp"
                    ),
                });
            }
        };
        if a.host_port == 0 || a.container_port == 0 {
            return Err(Error::InvalidConfig {
                reason: "runtimeConfig.portMappings: ports must be 1 to 65535".into(),
            });
        }
        let host_ip: Option<IpAddr> = match a.host_ip.as_deref().filter(|h| !h.is_empty()) {
            None => None,
            Some(h) => Some(h.parse().map_err(|_| Error::InvalidConfig {
                reason: format!("runtimeConfig.portMappings: hostIP {h:?} is not an IP address"),
            })?),
        };
        for alloc in allocations {
            let container_ip = alloc.address.addr();
            if host_ip.is_some_and(|h| h.is_ipv4() != container_ip.is_ipv4()) {
                continue;
            }
            out.push(PortMapping {
                protocol,
                host_port: a.host_port,
                container_port: a.container_port,
                host_ip,
                container_ip,
            });
        }
    }
    Ok(out)
}

/// `sysctl -w KEY=1` of the plugin's own (the host's) network namespace.
fn enable_sysctl(key: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(&path, "1").map_err(io("enabling", path))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let data = serde_json::to_vec(value).map_err(|e| Error::Decode {
        what: "firewall record",
        reason: e.to_string(),
    })?;
    Ok(polis_host::atomic::write_atomic_mode(path, &data, 0o644)?)
}

/// Every network recorded beside `data_dir` (one `<network>/firewall/network.json` each).
fn known_networks(data_dir: &Path) -> Vec<NetworkRecord> {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read(e.path().join("firewall/network.json")).ok())
        .filter_map(|d| serde_json::from_slice(&d).ok())
        .collect()
}

/// The whole firewall state of the networks under `data_dir`, as one batch: the base table, every network and
/// every recorded port mapping. For ADD of a network's first container and for `polis-cnitool reapply`.
pub fn full_batch(data_dir: &Path) -> String {
    let networks = known_networks(data_dir);
    let bridges: Vec<String> = networks.iter().map(|n| n.bridge.clone()).collect();
    let mut batch = firewall::base_batch();
    for n in &networks {
        batch.push_str(&firewall::network_batch(
            &n.bridge,
            &n.subnets,
            &bridges,
            n.masquerade,
        ));
    }
    if let Ok(entries) = fs::read_dir(data_dir) {
        for net in entries.filter_map(|e| e.ok()) {
            let Ok(records) = fs::read_dir(net.path().join("firewall")) else {
                continue;
            };
            for r in records.filter_map(|e| e.ok()) {
                if r.file_name() == "network.json" {
                    continue;
                }
                if let Some(rec) = fs::read(r.path())
                    .ok()
                    .and_then(|d| serde_json::from_slice::<AttachmentRecord>(&d).ok())
                {
                    batch.push_str(&firewall::add_mappings_batch(&rec.mappings));
                }
            }
        }
    }
    batch
}

/// An exclusive flock on `<dataDir>/firewall.lock`, released on drop: every change of the firewall state
/// (polis-netplug's ADD and DEL, polis-cnitool's reapply) holds it.
pub fn lock_firewall(data_dir: &Path) -> Result<polis_host::lock::FileLock> {
    crate::lock::lock_exclusive(&data_dir.join("firewall.lock"))
}

/// Makes sure the table's rules and the network's elements are in the kernel before a container's mappings are
/// added: everything again (`full_batch`) when the table's rules are not all there (someone flushed the ruleset, or
/// this is the first network), the network's own elements when it is new or changed. Usually neither: an ADD on a
/// known network runs no `nft` process. Returns whether the network was new (had no record), for
/// [`forget_network`].
fn ensure_rules(
    nf: &mut firewall::Nfnetlink,
    network: &Network,
    record: &NetworkRecord,
) -> Result<bool> {
    let path = network.state_dir().join("network.json");
    let known = fs::read(&path)
        .ok()
        .and_then(|d| serde_json::from_slice::<NetworkRecord>(&d).ok());
    let changed = known.as_ref() != Some(record);
    if changed {
        write_json(&path, record)?;
    }
    let data_dir = network.ipam.data_dir();
    let applied = if nf.rule_count()? != firewall::base_rule_count() {
        firewall::apply("adding the firewall rules", &full_batch(data_dir))
    } else if changed {
        let bridges: Vec<String> = known_networks(data_dir)
            .into_iter()
            .map(|n| n.bridge)
            .collect();
        let batch =
            firewall::network_batch(&record.bridge, &record.subnets, &bridges, record.masquerade);
        firewall::apply("adding the network's firewall rules", &batch)
    } else {
        Ok(())
    };
    if applied.is_err() && changed {
        // So that the next ADD tries again.
        let _ = fs::remove_file(&path);
    }
    applied.map(|()| known.is_none())
}

/// Takes back what [`ensure_rules`] added for a new network whose first ADD failed: its record, and its elements
/// (the networks' sets are emptied and filled again from the remaining records, in one transaction). Nothing is
/// done when an attachment of the network has a record by now: another ADD of it succeeded meanwhile and needs
/// them.
fn forget_network(network: &Network) -> Result<()> {
    let data_dir = network.ipam.data_dir();
    let _firewall = lock_firewall(data_dir)?;
    let attached = fs::read_dir(network.state_dir()).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            fs::read(e.path())
                .ok()
                .and_then(|d| serde_json::from_slice::<AttachmentRecord>(&d).ok())
                .is_some()
        })
    });
    if attached {
        return Ok(());
    }
    let path = network.state_dir().join("network.json");
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("removing", &path)(e));
        }
        _ => {}
    }
    refill_network_elements(data_dir)
}

/// Empties the networks' sets and fills them again from the records under `data_dir`, in one transaction: what
/// removing a network's record leaves to do (the caller holds [`lock_firewall`]).
pub fn refill_network_elements(data_dir: &Path) -> Result<()> {
    let networks = known_networks(data_dir);
    let bridges: Vec<String> = networks.iter().map(|n| n.bridge.clone()).collect();
    let mut batch = firewall::flush_networks_batch();
    for n in &networks {
        batch.push_str(&firewall::network_batch(
            &n.bridge,
            &n.subnets,
            &bridges,
            n.masquerade,
        ));
    }
    firewall::apply("removing the network's firewall elements", &batch)
}

/// Removes an attachment's port mappings (those still in the maps) and its record.
/// `nf` is opened here when there is something to remove, and kept by the caller (see [`firewall::delete_mappings`]).
fn remove_attachment_rules(
    nf: &mut Option<firewall::Nfnetlink>,
    network: &Network,
    container_id: &str,
    ifname: &str,
) -> Result<()> {
    let path = network.record_path(container_id, ifname);
    let Ok(data) = fs::read(&path) else {
        return Ok(());
    };
    let record: AttachmentRecord = serde_json::from_slice(&data).map_err(|e| Error::Decode {
        what: "firewall record",
        reason: format!("{}: {e}", path.display()),
    })?;
    if !record.mappings.is_empty() {
        let nf = match nf {
            Some(nf) => nf,
            none @ None => none.insert(firewall::Nfnetlink::open()?),
        };
        firewall::delete_mappings(nf, &record.mappings)?;
    }
    fs::remove_file(&path).map_err(io("removing", &path))
}

impl Plugin for BridgePlugin {
    fn known_args(&self) -> &[&str] {
        // K8S_POD_NAME: the container's DNS name (crate::dns).
        &["IP", "K8S_POD_NAME"]
    }

    fn add(&self, req: &Request) -> Result<CniResult> {
        let network = Network::from_conf(&req.conf)?;
        let netns = req.netns.clone().ok_or_else(|| Error::Environment {
            var: "CNI_NETNS",
            reason: "required for ADD".into(),
        })?;
        // The namespace first, before any address is taken: a missing one is "container unknown" (code 3), and an
        // interface it already has under CNI_IFNAME (`lo`, another plugin's) is refused (code 4, see
        // `interface_name_taken`): ADD would otherwise fail late, and its undoing must not delete what is not ours.
        let ifname = req.ifname.clone();
        let taken = in_netns(&netns, move || {
            Ok(Netlink::open()?.link_by_name(&ifname)?.is_some())
        })?;
        if taken {
            return Err(interface_name_taken(&req.ifname, &netns));
        }
        let conf_value = req.conf.to_value();
        let ip_arg = req.args.get("IP").map(|ip| format!("IP={ip}"));
        let requests = static_requests(&conf_value, ip_arg.as_deref())?;
        let allocator = network.allocator()?;
        let allocations = allocator.allocate(&req.container_id, &req.ifname, &requests)?;
        let mut made = Made::default();
        let result = crate::lock::lock_shared(&network.bridge_lock_path())
            .and_then(|_bridge| self.attach(req, &network, &netns, &allocations, &mut made));
        if let Err(error) = &result {
            tracing::debug!(%error, ?made, "ADD failed: undoing what it made");
            self.undo(req, &network, &allocator, &made);
        }
        result
    }

    fn del(&self, req: &Request) -> Result<()> {
        // Not `from_conf`: DEL releases what it can also for a config that ADD refuses for its subnet.
        let network = Network::from_conf_for_release(&req.conf)?;
        // The container's interface goes while the rest is removed: the kernel waits for an RCU grace period
        // before it returns from deleting a veth (docs/BENCHMARKS.md, "polis-netplug without the nft process"),
        // and again when the nfnetlink socket that deleted
        // map elements is closed. The socket is closed last, after the veth is gone, so the two waits overlap.
        let mut nf = None;
        let allocator = network.allocator()?;
        let interface = req.netns.clone().map(|netns| {
            let (allocator, container_id) = (allocator.clone(), req.container_id.clone());
            let ifname = req.ifname.clone();
            // Only the interface of an attachment that holds addresses here is this network's: ADD takes them
            // before it makes the veth pair and they are released after it is gone. Another plugin's interface
            // of that name (for which ADD was refused, CNI_IFNAME taken) stays.
            std::thread::spawn(move || {
                if allocator.holds(&container_id, &ifname)? {
                    delete_container_interface(&netns, &ifname)
                } else {
                    Ok(false)
                }
            })
        });
        let removed = (|| {
            {
                let _firewall = lock_firewall(network.ipam.data_dir())?;
                remove_attachment_rules(&mut nf, &network, &req.container_id, &req.ifname)?;
            }
            // DNS: the attachment's names; the network's resolver stops with its last attachment.
            crate::dns::detach_host_resolver(
                network.ipam.data_dir(),
                &network.name,
                &req.container_id,
                &req.ifname,
            )
        })();
        if let Some(interface) = interface {
            interface.join().map_err(|_| Error::Netlink {
                op: "delete",
                object: req.ifname.clone(),
                reason: "the thread deleting the interface panicked".into(),
            })??;
        }
        removed?;
        allocator.release(&req.container_id, &req.ifname)?;
        drop(nf);
        Ok(())
    }

    fn check(&self, req: &Request) -> Result<()> {
        let network = Network::from_conf(&req.conf)?;
        let held = network.allocator()?.check(&req.container_id, &req.ifname)?;
        let netns = req.netns.clone().ok_or_else(|| Error::Environment {
            var: "CNI_NETNS",
            reason: "required for CHECK".into(),
        })?;
        let ifname = req.ifname.clone();
        let have = in_netns(&netns, move || {
            let mut nl = Netlink::open()?;
            let link = nl.require_link(&ifname)?;
            nl.addresses(&link)
        })?;
        for a in held {
            if !have.contains(&a.address) {
                return Err(Error::Ipam {
                    network: network.name.clone(),
                    reason: format!(
                        "{} holds {} but {} does not have it",
                        req.container_id, a.address, req.ifname
                    ),
                });
            }
        }
        Ok(())
    }

    fn status(&self, req: &NetworkRequest) -> Result<()> {
        Network::from_conf(&req.conf)?.allocator()?.status()
    }

    fn gc(&self, req: &NetworkRequest, valid_attachments: &[Attachment]) -> Result<()> {
        let network = Network::from_conf(&req.conf)?;
        let valid: Vec<(String, String)> = valid_attachments
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let released = network.allocator()?.gc(&valid)?;
        tracing::info!(network = %network.name, released = released.len(), "gc");
        let _firewall = lock_firewall(network.ipam.data_dir())?;
        let mut nf = None;
        if let Ok(entries) = fs::read_dir(network.state_dir()) {
            for e in entries.filter_map(|e| e.ok()) {
                let Some(rec) = fs::read(e.path())
                    .ok()
                    .and_then(|d| serde_json::from_slice::<AttachmentRecord>(&d).ok())
                else {
                    continue;
                };
                if !valid.contains(&(rec.container_id.clone(), rec.ifname.clone())) {
                    remove_attachment_rules(&mut nf, &network, &rec.container_id, &rec.ifname)?;
                }
            }
        }
        // DNS: names of attachments that are gone; the resolver when none is left.
        crate::dns::gc_host_resolver(network.ipam.data_dir(), &network.name, &valid)?;
        Ok(())
    }
}

impl BridgePlugin {
    /// Undoes what a failed ADD made (`made`), in this order: the veth pair, the network's
    /// firewall record and elements if this was its first ADD, the attachment's DNS names (and the resolver if
    /// they were the network's only ones), the addresses (kept if the veth pair could not be deleted, so that
    /// DEL, which deletes the interface of an attachment that holds addresses, still does), and the bridge if
    /// this ADD created it and no other attachment uses it. Port mappings need nothing here: they are added all
    /// or nothing, last. Best effort: the error being returned is what matters, so a step that fails is logged
    /// and the others go on; the DEL that the runtime sends after a failed ADD tries again.
    fn undo(&self, req: &Request, network: &Network, allocator: &Allocator, made: &Made) {
        let warn = |step: &str, result: Result<()>| {
            if let Err(error) = result {
                tracing::warn!(step, %error, "undoing a failed ADD");
            }
        };
        let veth_gone = made.veth.as_ref().is_none_or(|veth| {
            let deleted = Netlink::open().and_then(|mut host| host.delete_link(veth).map(drop));
            let ok = deleted.is_ok();
            warn("delete the veth pair", deleted);
            ok
        });
        if made.network_record {
            warn(
                "remove the network's firewall elements",
                forget_network(network),
            );
        }
        warn(
            "remove the DNS names",
            crate::dns::detach_host_resolver(
                network.ipam.data_dir(),
                &network.name,
                &req.container_id,
                &req.ifname,
            ),
        );
        // Kept while the veth pair is there: DEL deletes the interface of an attachment that holds addresses.
        if veth_gone {
            warn(
                "release the addresses",
                allocator.release(&req.container_id, &req.ifname).map(drop),
            );
        }
        if made.bridge {
            // Not when another ADD holds the lock: it is about to attach to the bridge, or has.
            warn(
                "delete the bridge",
                crate::lock::try_lock_exclusive(&network.bridge_lock_path()).and_then(|lock| {
                    let Some(_lock) = lock else {
                        return Ok(());
                    };
                    let mut host = Netlink::open()?;
                    if let Some(bridge) = host.link_by_name(&network.bridge)? {
                        host.delete_bridge_if_unused(&bridge)?;
                    }
                    Ok(())
                }),
            );
        }
    }

    fn attach(
        &self,
        req: &Request,
        network: &Network,
        netns: &Path,
        allocations: &[Allocation],
        made: &mut Made,
    ) -> Result<CniResult> {
        let mut host = Netlink::open()?;
        let gateways: Vec<IpNet> = if network.is_gateway {
            allocations
                .iter()
                .filter_map(|a| IpNet::new(a.gateway, a.address.prefix_len()).ok())
                .collect()
        } else {
            Vec::new()
        };
        let bridge = host.ensure_bridge_noting(
            &BridgeSpec {
                name: &network.bridge,
                mtu: network.mtu,
                vlan_filtering: false,
                addresses: &gateways,
            },
            &mut made.bridge,
        )?;
        let mtu = match network.mtu {
            Some(m) => m,
            None => host.default_route_mtu()?,
        };
        let pair = host.create_veth_pair(&VethSpec {
            netns,
            ifname: &req.ifname,
            mtu,
            mac: None,
            bridge: &bridge,
            hairpin: network.hairpin,
            container_ipv6: allocations.iter().any(|a| a.address.addr().is_ipv6()),
        })?;
        made.veth = Some(pair.host.name.clone());
        let mut routes: Vec<RouteSpec> = Vec::new();
        let mut result_routes: Vec<ResultRoute> = Vec::new();
        for r in network.ipam.routes() {
            let gw = r.gw.or_else(|| {
                allocations
                    .iter()
                    .find(|a| a.gateway.is_ipv4() == r.dst.addr().is_ipv4())
                    .map(|a| a.gateway)
            });
            routes.push(RouteSpec::new(r.dst, gw));
            result_routes.push(ResultRoute {
                dst: r.dst,
                gw,
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            });
        }
        if network.default_route {
            for a in allocations {
                // 0.0.0.0/0 or ::/0
                let default: IpNet = if a.gateway.is_ipv4() {
                    IpNet::V4(ipnet::Ipv4Net::default())
                } else {
                    IpNet::V6(ipnet::Ipv6Net::default())
                };
                if !routes.iter().any(|r| r.destination == default) {
                    routes.push(RouteSpec::new(default, Some(a.gateway)));
                    result_routes.push(ResultRoute {
                        dst: default,
                        gw: Some(a.gateway),
                        mtu: None,
                        advmss: None,
                        priority: None,
                        table: None,
                        scope: None,
                    });
                }
            }
        }
        let ifname = req.ifname.clone();
        let addresses: Vec<IpNet> = allocations.iter().map(|a| a.address).collect();
        in_netns(netns, move || {
            let mut nl = Netlink::open()?;
            let link = nl.require_link(&ifname)?;
            for a in &addresses {
                nl.add_address(&link, *a)?;
            }
            for r in &routes {
                nl.add_route(&link, r)?;
            }
            Ok(())
        })?;

        // DNS (crate::dns): register the attachment's names and run the network's resolver on the gateways.
        let nameservers = if network.is_gateway {
            let record = crate::dns::NameRecord {
                container_id: req.container_id.clone(),
                ifname: req.ifname.clone(),
                names: crate::dns::attachment_names(
                    &network.name,
                    &req.container_id,
                    req.args.get("K8S_POD_NAME"),
                    req.conf.runtime_config.as_ref(),
                )?,
                addresses: allocations.iter().map(|a| a.address.addr()).collect(),
            };
            let gateways: Vec<IpAddr> = gateways.iter().map(|g| g.addr()).collect();
            crate::dns::attach_host_resolver(
                network.ipam.data_dir(),
                &record,
                &network.name,
                &gateways,
                &req.path,
            )?
        } else {
            Vec::new()
        };

        if allocations.iter().any(|a| a.address.addr().is_ipv4()) {
            enable_sysctl("net.ipv4.ip_forward")?;
            // 127.0.0.1:PORT to a container: the bridge must route packets with a loopback source.
            enable_sysctl(&format!("net.ipv4.conf.{}.route_localnet", network.bridge))?;
        }
        if allocations.iter().any(|a| !a.address.addr().is_ipv4()) {
            enable_sysctl("net.ipv6.conf.all.forwarding")?;
        }
        // One plugin process at a time changes the firewall and its records: the port-conflict check and the
        // update must not interleave with another ADD's.
        let _firewall = lock_firewall(network.ipam.data_dir())?;
        let record = NetworkRecord {
            bridge: network.bridge.clone(),
            subnets: network
                .ipam
                .range_sets()
                .iter()
                .flat_map(|s| s.ranges().iter().map(|r| r.subnet()))
                .collect(),
            masquerade: network.masquerade,
        };
        let mut nf = firewall::Nfnetlink::open()?;
        made.network_record = ensure_rules(&mut nf, network, &record)?;
        let mappings = port_mappings(req, allocations)?;
        firewall::add_mappings(&mut nf, &mappings)?;
        let recorded = write_json(
            &network.record_path(&req.container_id, &req.ifname),
            &AttachmentRecord {
                container_id: req.container_id.clone(),
                ifname: req.ifname.clone(),
                mappings: mappings.clone(),
            },
        );
        if let Err(e) = recorded {
            let _ = firewall::delete_mappings(&mut nf, &mappings);
            return Err(e);
        }
        let netns_text = netns.display().to_string();
        let interfaces = vec![
            Interface {
                name: bridge.name.clone(),
                mac: bridge.mac.map(|m| m.to_string()),
                ..Interface::default()
            },
            Interface {
                name: pair.host.name.clone(),
                mac: pair.host.mac.map(|m| m.to_string()),
                mtu: Some(pair.host.mtu),
                ..Interface::default()
            },
            Interface {
                name: req.ifname.clone(),
                mac: pair.container.mac.map(|m| m.to_string()),
                mtu: Some(pair.container.mtu),
                sandbox: Some(netns_text),
                ..Interface::default()
            },
        ];
        let ips = allocations
            .iter()
            .map(|a| IpConfig {
                address: a.address,
                gateway: network.is_gateway.then_some(a.gateway),
                interface: Some(2),
            })
            .collect();
        Ok(CniResult {
            interfaces,
            ips,
            routes: result_routes,
            // DNS: our resolver first, then the configured nameservers.
            dns: {
                let mut dns = req.conf.dns.clone().unwrap_or_default();
                dns.nameservers.retain(|n| !nameservers.contains(n));
                dns.nameservers.splice(0..0, nameservers);
                dns
            },
        })
    }
}
