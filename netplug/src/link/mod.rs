//! The kernel side of the bridge plugin, over synchronous rtnetlink (rtnetlink(7)): the bridge, the veth pair
//! between it and the container, addresses and routes, each in the network namespace it belongs to.
//!
//! A netlink socket belongs to the network namespace of the thread that opened it: [`Netlink::open`] on the main
//! thread talks to the host, and container-side work runs in [`in_netns`], on a thread that entered `CNI_NETNS`.
//!
//! What a bridge plugin's ADD does, in order (DEL is [`delete_container_interface`]):
//!
//! ```no_run
//! use polis_netplug::link::{BridgeSpec, Netlink, RouteSpec, VethSpec, in_netns};
//! # fn add() -> polis_netplug::Result<()> {
//! # let (netns, ifname) = (std::path::Path::new("/run/netns/c1"), "eth0");
//! # let (gateway, address) = ("198.18.0.1/24".parse().unwrap(), "198.18.0.2/24".parse().unwrap());
//! let mut host = Netlink::open()?;
//! let bridge = host.ensure_bridge(&BridgeSpec {
//!     name: "polis0",
//!     mtu: None,
//!     vlan_filtering: false,
//!     addresses: &[gateway],
//! })?;
//! let mtu = host.default_route_mtu()?; // unless the config names one
//! let pair = host.create_veth_pair(&VethSpec { netns, ifname, mtu, mac: None, bridge: &bridge, hairpin: true,
//!     container_ipv6: true })?;
//! in_netns(netns, || {
//!     let mut container = Netlink::open()?;
//!     let link = container.require_link(ifname)?;
//!     container.add_address(&link, address)?;
//!     container.add_route(&link, &RouteSpec::default_via("198.18.0.1".parse().unwrap()))
//! })?; // a missing netns is Error::UnknownContainer (CNI code 3)
//! // The result's interfaces: pair.host.name / .mac, pair.container.name / .mac.
//! # Ok(()) }
//! ```

mod addresses;
mod bridge;
mod links;
mod netlink;
mod netns;
mod routes;
#[cfg(test)]
mod testutil;
mod veth;

pub use bridge::BridgeSpec;
pub use links::{Link, MAX_INTERFACE_NAME_LEN, MacAddress, validate_interface_name};
pub use netlink::Netlink;
pub use netns::in_netns;
pub use routes::{DEFAULT_MTU, MAIN_TABLE, Route, RouteSpec};
pub use veth::{VethPair, VethSpec, delete_container_interface, interface_name_taken};
