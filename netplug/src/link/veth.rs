//! The veth pair between the bridge and the container: created from the host with its peer born inside the
//! container's network namespace, then named and set up there; deleted from inside the container.

use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};

use super::links::{Link, MacAddress, check_interface_name, random_u64};
use super::netlink::Netlink;
use super::netns::{in_netns, open_netns};
use crate::error::{Error, Result};

/// How many random host-side names are tried before giving up (a clash needs two equal 32-bit draws).
const NAME_ATTEMPTS: usize = 4;

/// The veth pair to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VethSpec<'a> {
    /// The container's network namespace (`CNI_NETNS`).
    pub netns: &'a Path,
    /// The container-side interface name (`CNI_IFNAME`).
    pub ifname: &'a str,
    /// The MTU of both ends.
    pub mtu: u32,
    /// The container side's MAC address; `None` lets the kernel pick a random one.
    pub mac: Option<MacAddress>,
    /// The bridge the host end joins.
    pub bridge: &'a Link,
    /// Hairpin mode on the host end's bridge port, so a container can reach itself through a port mapping.
    pub hairpin: bool,
    /// Whether the container end gets its IPv6 link-local address. Without IPv6 on the network it does not: each
    /// link-local address sends duplicate-address detection, router solicitations and MLD reports, which the
    /// bridge floods to every other container, so that an ADD would cost more with each container there.
    pub container_ipv6: bool,
}

/// Both ends of a veth pair: `host` (in the caller's namespace, attached to the bridge) and `container` (in the
/// container's namespace, renamed to the requested name and up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    pub host: Link,
    pub container: Link,
}

impl Netlink {
    /// Creates a veth pair for a container. The host end, in this socket's namespace, is named `veth` + 8 random
    /// hex digits; the peer is created directly inside `spec.netns` (`IFLA_NET_NS_FD`) under a temporary name, so it
    /// never appears in the host's namespace. Then the host end joins `spec.bridge`, goes up and gets hairpin mode
    /// if asked; inside the container the peer is renamed to `spec.ifname` and set up. On any failure after the
    /// creation the pair is deleted again.
    pub fn create_veth_pair(&mut self, spec: &VethSpec) -> Result<VethPair> {
        check_interface_name(spec.ifname)?;
        let (host, peer_name) = self.create_veth(spec)?;
        match self.finish_veth_pair(spec, &host, &peer_name) {
            Ok(pair) => Ok(pair),
            Err(error) => {
                if let Err(cleanup) = self.delete_link_by_index(&host) {
                    tracing::warn!(veth = host.name, error = %cleanup, "could not delete a half-made veth pair");
                }
                Err(error)
            }
        }
    }

    /// Creates the pair; returns the host end and the peer's temporary name.
    fn create_veth(&mut self, spec: &VethSpec) -> Result<(Link, String)> {
        let netns = open_netns(spec.netns)?;
        let mut last_error = None;
        for _ in 0..NAME_ATTEMPTS {
            let suffix = random_u64() as u32;
            let host_name = format!("veth{suffix:08x}");
            let peer_name = format!("tmp{suffix:08x}");
            let mut peer = LinkMessage::default();
            peer.attributes
                .push(LinkAttribute::IfName(peer_name.clone()));
            peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
            peer.attributes
                .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
            if let Some(mac) = spec.mac {
                peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
            }
            let mut message = LinkMessage::default();
            message
                .attributes
                .push(LinkAttribute::IfName(host_name.clone()));
            message.attributes.push(LinkAttribute::Mtu(spec.mtu));
            message.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]));
            let object = || format!("{host_name} (peer {peer_name} in {})", spec.netns.display());
            match self.request(
                RouteNetlinkMessage::NewLink(message),
                NLM_F_CREATE | NLM_F_EXCL,
            ) {
                Ok(_) => {
                    tracing::debug!(veth = host_name, netns = %spec.netns.display(), "created veth pair");
                    let host = self.require_link(&host_name)?;
                    return Ok((host, peer_name));
                }
                // A name taken on either side: draw another.
                Err(e) if e.is(libc::EEXIST) => {
                    last_error = Some(e.into_error("create veth pair", object()))
                }
                Err(e) => return Err(e.into_error("create veth pair", object())),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Netlink {
            op: "create veth pair",
            object: spec.netns.display().to_string(),
            reason: "no free name".into(),
        }))
    }

    fn finish_veth_pair(
        &mut self,
        spec: &VethSpec,
        host: &Link,
        peer_name: &str,
    ) -> Result<VethPair> {
        self.set_link_master(host, spec.bridge)?;
        disable_ipv6(&host.name)?;
        self.set_link_up(host)?;
        if spec.hairpin {
            self.set_hairpin(host, true)?;
        }
        let container = in_netns(spec.netns, || {
            let mut netlink = Netlink::open()?;
            let peer = netlink.require_link(peer_name)?;
            let peer = match netlink.rename_link(&peer, spec.ifname) {
                Ok(peer) => peer,
                // The caller looks first (bridge ADD does); this is the name taken since, said as clearly.
                Err(_) if netlink.link_by_name(spec.ifname)?.is_some() => {
                    return Err(interface_name_taken(spec.ifname, spec.netns));
                }
                Err(e) => return Err(e),
            };
            if !spec.container_ipv6 {
                netlink.skip_ipv6_addresses(&peer)?;
            }
            netlink.set_link_up(&peer)?;
            netlink.require_link(spec.ifname)
        })?;
        let host = self.require_link(&host.name)?;
        Ok(VethPair { host, container })
    }
}

/// Turns IPv6 off on `ifname`, an interface of the calling thread's network namespace
/// (`net.ipv6.conf.IFNAME.disable_ipv6`). A bridge port forwards IPv6 all the same; without it, each port would
/// have an address, a multicast route in the local table and its own neighbour discovery, and every ADD would cost
/// more with each container on the host (the kernel walks the IPv6 routes on link changes). A kernel without IPv6
/// has no such setting: nothing to do.
fn disable_ipv6(ifname: &str) -> Result<()> {
    let path = std::path::PathBuf::from(format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"));
    match std::fs::write(&path, "1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(crate::error::io("turning off IPv6 on", path)),
    }
}

/// The error for a `CNI_IFNAME` that the container's network namespace at `netns` already has: `lo`, which every
/// namespace has, or an interface someone else made. ADD must not take it over, and must not delete it when it
/// fails.
///
/// Code 4. The CNI spec says of ADD "If an interface of the requested name already exists in the container, the
/// CNI plugin MUST return with an error", and of `CNI_IFNAME` "if the plugin is unable to use this interface name
/// it must return an error", but gives that error no code of its own. Of the well-known codes, 4 is "Invalid
/// necessary environment variables ... The error message must contain the names of invalid variables": the value
/// of `CNI_IFNAME` is what the runtime has to change, and names the kernel would refuse get 4 already
/// (`cni::names::validate_ifname`). 7 (invalid network config) would send the operator to a config that is fine,
/// and 5 (I/O failure) or a code of the plugin's own (100 and up) would hide that the caller's input is at fault.
pub fn interface_name_taken(ifname: &str, netns: &Path) -> Error {
    let what = if ifname == "lo" {
        " (lo is the loopback interface every network namespace has)"
    } else {
        ""
    };
    Error::Environment {
        var: "CNI_IFNAME",
        reason: format!(
            "{ifname:?}: the container's network namespace {} already has an interface of that name{what}; ADD \
             makes a new interface and does not take over one it did not make: give the attachment another name",
            netns.display()
        ),
    }
}

/// Deletes the interface `ifname` inside the network namespace at `netns` (for a veth end, the whole pair, the
/// host end included). Idempotent, as CNI DEL must be: a missing interface, a missing path or a path that is no
/// longer a network namespace all return `Ok(false)`.
///
/// Only a veth is deleted: ADD makes nothing else there, and an interface of another type under that name (`lo`,
/// or another plugin's device after an ADD refused the name as taken) is not ours; it stays, with `Ok(false)`, so
/// that the DEL the runtime sends after such a failed ADD succeeds without touching it.
pub fn delete_container_interface(netns: &Path, ifname: &str) -> Result<bool> {
    let delete = || {
        let mut netlink = Netlink::open()?;
        match netlink.link_by_name(ifname)? {
            None => Ok(false),
            Some(link) if link.kind.as_deref() != Some("veth") => {
                tracing::debug!(
                    ifname,
                    kind = link.kind.as_deref().unwrap_or("none"),
                    "not a veth: left in place"
                );
                Ok(false)
            }
            Some(_) => netlink.delete_link(ifname),
        }
    };
    match in_netns(netns, delete) {
        Err(Error::UnknownContainer { .. }) => Ok(false),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::testutil::{TestNetns, ip, net};
    use crate::link::{BridgeSpec, RouteSpec};

    /// A host namespace with the bridge `polisbr0` at 198.18.N.1/24 and fd00:N::1/64.
    fn host_with_bridge(n: u8) -> (TestNetns, Link) {
        let host = TestNetns::new();
        let addresses = [
            net(&format!("198.18.{n}.1/24")),
            net(&format!("fd00:{n}::1/64")),
        ];
        let bridge = host.run(|netlink| {
            netlink.ensure_bridge(&BridgeSpec {
                name: "polisbr0",
                mtu: Some(1400),
                vlan_filtering: false,
                addresses: &addresses,
            })
        });
        (host, bridge)
    }

    /// Plugs a container into the bridge as `eth0` with 198.18.N.H/24 and fd00:N::H/64, default routes via the
    /// bridge, as a bridge plugin ADD does.
    fn add_container(
        host: &TestNetns,
        bridge: &Link,
        n: u8,
        h: u8,
        hairpin: bool,
    ) -> (TestNetns, VethPair) {
        let container = TestNetns::new();
        let pair = host.run(|netlink| {
            netlink.create_veth_pair(&VethSpec {
                netns: container.path(),
                ifname: "eth0",
                mtu: 1400,
                mac: None,
                bridge,
                hairpin,
                container_ipv6: true,
            })
        });
        let addresses = [
            net(&format!("198.18.{n}.{h}/24")),
            net(&format!("fd00:{n}::{h}/64")),
        ];
        let routes = [
            RouteSpec::default_via(ip(&format!("198.18.{n}.1"))),
            RouteSpec::default_via(ip(&format!("fd00:{n}::1"))),
        ];
        container.run(|netlink| {
            netlink.set_loopback_up()?;
            let eth0 = netlink.require_link("eth0")?;
            for address in addresses {
                netlink.add_address(&eth0, address)?;
            }
            for route in &routes {
                netlink.add_route(&eth0, route)?;
            }
            // Read back, as CHECK does.
            let present = netlink.addresses(&eth0)?;
            for address in addresses {
                assert!(present.contains(&address), "{address} in {present:?}");
            }
            let installed = netlink.routes()?;
            for route in &routes {
                assert!(
                    installed.iter().any(|r| r.matches(route, eth0.index)),
                    "{route:?} in {installed:?}"
                );
            }
            // Adding them again is fine.
            netlink.add_address(&eth0, addresses[0])?;
            netlink.add_route(&eth0, &routes[0])?;
            Ok(())
        });
        (container, pair)
    }

    /// A link-local address (RFC 4862) only in the container, and only where the network has IPv6.
    #[test]
    fn link_local_addresses_only_in_containers_of_ipv6_networks() {
        let (host, bridge) = host_with_bridge(7);
        let link_local = |addresses: Vec<ipnet::IpNet>| {
            addresses
                .iter()
                .any(|a| matches!(a, ipnet::IpNet::V6(v6) if v6.addr().segments()[0] == 0xfe80))
        };
        for container_ipv6 in [false, true] {
            let container = TestNetns::new();
            let pair = host.run(|netlink| {
                netlink.create_veth_pair(&VethSpec {
                    netns: container.path(),
                    ifname: "eth0",
                    mtu: 1500,
                    mac: None,
                    bridge: &bridge,
                    hairpin: true,
                    container_ipv6,
                })
            });
            let in_container = container.run(|netlink| {
                let eth0 = netlink.require_link("eth0")?;
                Ok(link_local(netlink.addresses(&eth0)?))
            });
            assert_eq!(in_container, container_ipv6);
            let on_host = host.run(|netlink| Ok(link_local(netlink.addresses(&pair.host)?)));
            assert!(!on_host, "the bridge port has a link-local address");
        }
    }

    #[test]
    fn veth_joins_the_bridge_and_the_container_reaches_the_bridge() {
        let (host, bridge) = host_with_bridge(2);
        let container = TestNetns::new();
        let mac: MacAddress = "02:42:c6:12:02:02".parse().unwrap();
        let pair = host.run(|netlink| {
            netlink.create_veth_pair(&VethSpec {
                netns: container.path(),
                ifname: "eth0",
                mtu: 1400,
                mac: Some(mac),
                bridge: &bridge,
                hairpin: false,
                container_ipv6: true,
            })
        });
        assert!(
            pair.host.name.starts_with("veth") && pair.host.name.len() == 12,
            "{}",
            pair.host.name
        );
        assert_eq!(pair.host.master, Some(bridge.index));
        assert!(pair.host.up);
        assert_eq!(pair.host.mtu, 1400);
        assert_eq!(pair.container.name, "eth0");
        assert_eq!(pair.container.mac, Some(mac));
        assert_eq!(pair.container.mtu, 1400);
        assert!(pair.container.up);
        // The peer never showed up in the host namespace, and the host end is not in the container's.
        host.run(|netlink| {
            assert!(
                netlink
                    .links()?
                    .iter()
                    .all(|l| !l.name.starts_with("tmp") && l.name != "eth0")
            );
            Ok(())
        });
        container.run(|netlink| {
            let names: Vec<String> = netlink.links()?.into_iter().map(|l| l.name).collect();
            assert_eq!(names, ["lo", "eth0"]);
            Ok(())
        });

        let routes = [
            RouteSpec::default_via(ip("198.18.2.1")),
            RouteSpec::default_via(ip("fd00:2::1")),
        ];
        container.run(|netlink| {
            let eth0 = netlink.require_link("eth0")?;
            netlink.add_address(&eth0, net("198.18.2.2/24"))?;
            netlink.add_address(&eth0, net("fd00:2::2/64"))?;
            for route in &routes {
                netlink.add_route(&eth0, route)?;
            }
            let installed = netlink.routes()?;
            for route in &routes {
                assert!(
                    installed.iter().any(|r| r.matches(route, eth0.index)),
                    "{route:?} in {installed:?}"
                );
            }
            Ok(())
        });
        container.assert_connects(&host.listen(ip("198.18.2.1")), ip("198.18.2.2"));
        container.assert_connects(&host.listen(ip("fd00:2::1")), ip("fd00:2::2"));
    }

    #[test]
    fn two_containers_on_one_bridge_reach_each_other() {
        let (host, bridge) = host_with_bridge(3);
        let (first, _) = add_container(&host, &bridge, 3, 2, false);
        let (second, _) = add_container(&host, &bridge, 3, 3, false);
        second.assert_connects(&first.listen(ip("198.18.3.2")), ip("198.18.3.3"));
        first.assert_connects(&second.listen(ip("fd00:3::3")), ip("fd00:3::2"));
        // Through the default route: the bridge's address as seen from the second container.
        second.assert_connects(&host.listen(ip("198.18.3.1")), ip("198.18.3.3"));
    }

    #[test]
    fn hairpin_mode_is_set_on_the_bridge_port_when_asked() {
        let (host, bridge) = host_with_bridge(4);
        let (_with, with_hairpin) = add_container(&host, &bridge, 4, 2, true);
        let (_without, without_hairpin) = add_container(&host, &bridge, 4, 3, false);
        assert_eq!(with_hairpin.host.hairpin, Some(true));
        assert_eq!(without_hairpin.host.hairpin, Some(false));
        // Read back again through a fresh lookup.
        host.run(|netlink| {
            assert_eq!(
                netlink.require_link(&with_hairpin.host.name)?.hairpin,
                Some(true)
            );
            Ok(())
        });
    }

    #[test]
    fn delete_is_idempotent_and_fine_when_the_netns_is_gone() {
        let (host, bridge) = host_with_bridge(5);
        let (container, pair) = add_container(&host, &bridge, 5, 2, false);
        assert!(delete_container_interface(container.path(), "eth0").unwrap());
        // Deleting one end removed the pair.
        host.run(|netlink| {
            assert_eq!(netlink.link_by_name(&pair.host.name)?, None);
            Ok(())
        });
        assert!(!delete_container_interface(container.path(), "eth0").unwrap());
        let path = container.path().to_path_buf();
        drop(container);
        assert!(!delete_container_interface(&path, "eth0").unwrap());
    }

    /// DEL deletes veths only: `lo` and an interface of another type under the name stay (and DEL succeeds).
    #[test]
    fn delete_leaves_interfaces_that_are_not_veths() {
        let container = TestNetns::new();
        assert!(!delete_container_interface(container.path(), "lo").unwrap());
        container.run(|netlink| {
            netlink.require_link("lo")?;
            Ok(())
        });
        let error = interface_name_taken("lo", container.path());
        assert_eq!(error.cni_code(), 4);
        assert!(error.to_string().contains("CNI_IFNAME"), "{error}");
        assert!(error.to_string().contains("loopback"), "{error}");
    }

    #[test]
    fn a_missing_netns_on_add_is_an_unknown_container() {
        let (host, bridge) = host_with_bridge(6);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let error = crate::link::in_netns(host.path(), || {
            Netlink::open()?.create_veth_pair(&VethSpec {
                netns: &missing,
                ifname: "eth0",
                mtu: 1400,
                mac: None,
                bridge: &bridge,
                hairpin: false,
                container_ipv6: true,
            })
        })
        .unwrap_err();
        assert_eq!(error.cni_code(), 3, "{error}");
    }

    #[test]
    fn a_taken_container_name_fails_and_leaves_nothing_behind() {
        let (host, bridge) = host_with_bridge(7);
        let (container, _) = add_container(&host, &bridge, 7, 2, false);
        let before = host.run(|netlink| netlink.links()).len();
        let error = crate::link::in_netns(host.path(), || {
            Netlink::open()?.create_veth_pair(&VethSpec {
                netns: container.path(),
                ifname: "eth0",
                mtu: 1400,
                mac: None,
                bridge: &bridge,
                hairpin: false,
                container_ipv6: true,
            })
        })
        .unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Environment {
                    var: "CNI_IFNAME",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.cni_code(), 4);
        assert!(
            error
                .to_string()
                .contains("\"eth0\": the container's network namespace"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("already has an interface of that name"),
            "{error}"
        );
        assert_eq!(host.run(|netlink| netlink.links()).len(), before);
        container.run(|netlink| {
            assert!(netlink.links()?.iter().all(|l| !l.name.starts_with("tmp")));
            Ok(())
        });
    }
}
