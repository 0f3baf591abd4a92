//! Routes (RTM_NEWROUTE, RTM_GETROUTE) and the MTU of the default route's link.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::links::Link;
use super::netlink::{Netlink, failed};
use crate::error::{Error, Result};

/// The MTU used when the namespace has no default route.
pub const DEFAULT_MTU: u32 = 1500;

/// The main routing table (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// A route to add through a link: CNI's route (`dst`, `gw`, and CNI 1.1's `mtu`, `advmss`, `priority`, `table`,
/// `scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The destination; host bits are ignored (`198.18.0.7/24` means `198.18.0.0/24`). `0.0.0.0/0` or `::/0`
    /// is the default route.
    pub destination: IpNet,
    /// The next hop; `None` for a route straight out of the link (scope link).
    pub gateway: Option<IpAddr>,
    /// The metric; `None` leaves the kernel's default (0 for IPv4, 1024 for IPv6).
    pub priority: Option<u32>,
    /// The routing table; `None` is the main table.
    pub table: Option<u32>,
    /// The scope (`RT_SCOPE_*`); `None` is universe with a gateway and link without one.
    pub scope: Option<u8>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
}

impl RouteSpec {
    /// A route to `destination` via `gateway` (or straight out of the link), with the kernel's defaults for the rest.
    pub fn new(destination: IpNet, gateway: Option<IpAddr>) -> Self {
        RouteSpec {
            destination,
            gateway,
            priority: None,
            table: None,
            scope: None,
            mtu: None,
            advmss: None,
        }
    }

    /// The default route (`0.0.0.0/0` or `::/0`, after the gateway's family) via `gateway`.
    pub fn default_via(gateway: IpAddr) -> Self {
        let destination = match gateway {
            IpAddr::V4(_) => IpNet::V4(Default::default()),
            IpAddr::V6(_) => IpNet::V6(Default::default()),
        };
        RouteSpec::new(destination, Some(gateway))
    }
}

/// A unicast route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination network (`0.0.0.0/0` or `::/0` for a default route).
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    /// The outgoing link's index (the first next hop's, for a multipath route).
    pub oif: Option<u32>,
    pub table: u32,
    pub priority: Option<u32>,
    pub scope: u8,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
}

impl Route {
    /// Whether this route is what `spec` asked for through the link with index `oif`: same destination network,
    /// gateway, table and link, and the same metric when `spec` named one.
    pub fn matches(&self, spec: &RouteSpec, oif: u32) -> bool {
        self.destination == spec.destination.trunc()
            && self.gateway == spec.gateway
            && self.table == spec.table.unwrap_or(MAIN_TABLE)
            && self.oif == Some(oif)
            && spec
                .priority
                .is_none_or(|priority| self.priority == Some(priority))
    }

    fn from_message(message: RouteMessage) -> Option<Self> {
        if message.header.kind != RouteType::Unicast
            || message.header.flags.contains(RouteFlags::Cloned)
        {
            return None;
        }
        let mut destination = None;
        let mut route = Route {
            destination: IpNet::V4(Default::default()),
            gateway: None,
            oif: None,
            table: u32::from(message.header.table),
            priority: None,
            scope: message.header.scope.into(),
            mtu: None,
            advmss: None,
        };
        for attribute in message.attributes {
            match attribute {
                RouteAttribute::Destination(address) => destination = ip_of(&address),
                RouteAttribute::Gateway(address) => route.gateway = ip_of(&address),
                RouteAttribute::Oif(index) => route.oif = Some(index),
                RouteAttribute::Table(table) => route.table = table,
                RouteAttribute::Priority(priority) => route.priority = Some(priority),
                RouteAttribute::MultiPath(hops) => {
                    route.oif = route.oif.or(hops.first().map(|hop| hop.interface_index));
                }
                RouteAttribute::Metrics(metrics) => {
                    for metric in metrics {
                        match metric {
                            RouteMetric::Mtu(mtu) => route.mtu = Some(mtu),
                            RouteMetric::Advmss(advmss) => route.advmss = Some(advmss),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let prefix = message.header.destination_prefix_length;
        route.destination = match (message.header.address_family, destination) {
            (_, Some(ip)) => IpNet::new(ip, prefix).ok()?,
            (AddressFamily::Inet, None) => IpNet::V4(Default::default()),
            (AddressFamily::Inet6, None) => IpNet::V6(Default::default()),
            _ => return None,
        };
        Some(route)
    }
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn describe(spec: &RouteSpec, link: &Link) -> String {
    match spec.gateway {
        Some(gateway) => format!(
            "{} via {gateway} dev {}",
            spec.destination.trunc(),
            link.name
        ),
        None => format!("{} dev {}", spec.destination.trunc(), link.name),
    }
}

impl Netlink {
    /// Adds the route `spec` through `link` (as `ip route add`, protocol "boot"). The same route already present
    /// is fine; a different route to the same destination (another gateway or link) is an error.
    pub fn add_route(&mut self, link: &Link, spec: &RouteSpec) -> Result<()> {
        let destination = spec.destination.trunc();
        let ipv4 = matches!(destination, IpNet::V4(_));
        if spec
            .gateway
            .is_some_and(|gateway| gateway.is_ipv4() != ipv4)
        {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "route {}: the gateway's address family differs from the destination's",
                    describe(spec, link)
                ),
            });
        }
        let table = spec.table.unwrap_or(MAIN_TABLE);
        let mut message = RouteMessage::default();
        message.header.address_family = if ipv4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        message.header.destination_prefix_length = destination.prefix_len();
        message.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        message.header.protocol = RouteProtocol::Boot;
        message.header.kind = RouteType::Unicast;
        message.header.scope = match (spec.scope, spec.gateway) {
            (Some(scope), _) => RouteScope::from(scope),
            (None, Some(_)) => RouteScope::Universe,
            (None, None) => RouteScope::Link,
        };
        if destination.prefix_len() > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(destination.addr().into()));
        }
        if let Some(gateway) = spec.gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(gateway.into()));
        }
        message.attributes.push(RouteAttribute::Oif(link.index));
        message.attributes.push(RouteAttribute::Table(table));
        if let Some(priority) = spec.priority {
            message.attributes.push(RouteAttribute::Priority(priority));
        }
        let metrics: Vec<RouteMetric> = [
            spec.mtu.map(RouteMetric::Mtu),
            spec.advmss.map(RouteMetric::Advmss),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !metrics.is_empty() {
            message.attributes.push(RouteAttribute::Metrics(metrics));
        }
        match self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is(libc::EEXIST) => {
                if self
                    .routes()?
                    .iter()
                    .any(|route| route.matches(spec, link.index))
                {
                    Ok(())
                } else {
                    Err(Error::Netlink {
                        op: "add route",
                        object: describe(spec, link),
                        reason: format!("{}: another route to {destination} exists", e.reason),
                    })
                }
            }
            Err(e) => Err(e.into_error("add route", describe(spec, link))),
        }
    }

    /// The unicast routes of every table, IPv4 and IPv6 (the kernel's own prefix routes included; cached clones
    /// and local, broadcast and multicast routes left out).
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let answers = self
            .dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))
            .map_err(failed("list routes", "all tables"))?;
        Ok(routes_in(answers))
    }

    /// The routes of one address family in the main table. The kernel filters them when it can (strict checking,
    /// Linux 4.20), so the answer leaves out the local table's route per interface (an IPv6 `multicast ff00::/8`
    /// each, which would make every ADD slower with each container on the host).
    pub fn main_table_routes(&mut self, family: AddressFamily) -> Result<Vec<Route>> {
        let mut request = RouteMessage::default();
        request.header.address_family = family;
        request.header.table = RouteHeader::RT_TABLE_MAIN;
        let strict = self.set_strict_check(true).is_ok();
        let answers = self.dump(RouteNetlinkMessage::GetRoute(request));
        if strict {
            let _ = self.set_strict_check(false);
        }
        let answers = match answers {
            Ok(answers) => answers,
            // A namespace without any route of the family has no main table yet.
            Err(e) if strict && e.is(libc::ENOENT) => Vec::new(),
            Err(e) => return Err(e.into_error("list routes", "main table")),
        };
        Ok(routes_in(answers)
            .into_iter()
            .filter(|r| r.table == MAIN_TABLE)
            .collect())
    }

    /// The MTU of the link that the namespace's default route goes out of: the IPv4 default route of the main
    /// table with the lowest metric, else the IPv6 one; [`DEFAULT_MTU`] when there is neither. This is the
    /// bridge's MTU when the configuration names none.
    pub fn default_route_mtu(&mut self) -> Result<u32> {
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let routes = self.main_table_routes(family)?;
            let default_route = routes
                .iter()
                .filter(|route| {
                    route.destination.prefix_len() == 0
                        && route.table == MAIN_TABLE
                        && route.oif.is_some()
                })
                .min_by_key(|route| route.priority.unwrap_or(0));
            let link = match default_route.and_then(|route| route.oif) {
                Some(index) => self.link_by_index(index)?,
                None => None,
            };
            if let Some(link) = link {
                return Ok(link.mtu);
            }
        }
        Ok(DEFAULT_MTU)
    }
}

fn routes_in(answers: Vec<RouteNetlinkMessage>) -> Vec<Route> {
    answers
        .into_iter()
        .filter_map(|answer| match answer {
            RouteNetlinkMessage::NewRoute(message) => Route::from_message(message),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::testutil::{TestNetns, create_local_veth, ip, net};

    #[test]
    fn default_route_mtu_is_the_mtu_of_the_default_routes_link() {
        let netns = TestNetns::new();
        netns.run(|netlink| {
            assert_eq!(
                netlink.default_route_mtu()?,
                DEFAULT_MTU,
                "no default route yet"
            );
            let uplink = create_local_veth(netlink, "uplink0", "uplink1")?;
            netlink.set_link_mtu(&uplink, 1400)?;
            netlink.set_link_up(&uplink)?;
            netlink.add_address(&uplink, net("198.18.8.2/24"))?;
            netlink.add_route(&uplink, &RouteSpec::default_via(ip("198.18.8.1")))?;
            assert_eq!(netlink.default_route_mtu()?, 1400);
            Ok(())
        });
    }

    #[test]
    fn default_route_mtu_falls_back_to_ipv6() {
        let netns = TestNetns::new();
        netns.run(|netlink| {
            let uplink = create_local_veth(netlink, "uplink0", "uplink1")?;
            netlink.set_link_mtu(&uplink, 1380)?;
            netlink.set_link_up(&uplink)?;
            netlink.add_address(&uplink, net("fd00:8::2/64"))?;
            netlink.add_route(&uplink, &RouteSpec::default_via(ip("fd00:8::1")))?;
            assert_eq!(netlink.default_route_mtu()?, 1380);
            Ok(())
        });
    }

    #[test]
    fn routes_with_options_are_added_and_read_back() {
        let netns = TestNetns::new();
        netns.run(|netlink| {
            let link = create_local_veth(netlink, "uplink0", "uplink1")?;
            netlink.set_link_up(&link)?;
            netlink.add_address(&link, net("198.18.9.2/24"))?;
            let spec = RouteSpec {
                priority: Some(50),
                table: Some(1000),
                mtu: Some(1300),
                advmss: Some(1200),
                ..RouteSpec::new(net("198.19.0.7/16"), Some(ip("198.18.9.1")))
            };
            netlink.add_route(&link, &spec)?;
            let scoped = RouteSpec::new(net("198.19.128.0/24"), None);
            netlink.add_route(&link, &scoped)?;
            let routes = netlink.routes()?;
            let route = routes
                .iter()
                .find(|r| r.matches(&spec, link.index))
                .expect("the route is there");
            assert_eq!(route.destination, net("198.19.0.0/16"));
            assert_eq!(
                (route.table, route.priority, route.mtu, route.advmss),
                (1000, Some(50), Some(1300), Some(1200))
            );
            let route = routes
                .iter()
                .find(|r| r.matches(&scoped, link.index))
                .expect("the route is there");
            assert_eq!(route.scope, 253, "scope link");

            // Again is fine; another gateway for the same destination is not.
            netlink.add_route(&link, &spec)?;
            let conflicting = RouteSpec {
                gateway: Some(ip("198.18.9.3")),
                ..spec.clone()
            };
            let error = netlink.add_route(&link, &conflicting).unwrap_err();
            assert!(error.to_string().contains("another route"), "{error}");
            // Mixed families are refused before the kernel sees them.
            let mixed = RouteSpec::new(net("198.19.0.0/16"), Some(ip("fd00::1")));
            assert!(matches!(
                netlink.add_route(&link, &mixed),
                Err(Error::InvalidConfig { .. })
            ));
            Ok(())
        });
    }
}
