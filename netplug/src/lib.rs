//! polis-netplug: a CNI 1.1 plugin for bridge networking (CNI spec, "Container Network Interface Specification"):
//! the protocol (`cni`), address management (`ipam`), the kernel's links, addresses and routes (`link`, where
//! `link::bridge` is the bridge *device*), and the bridge *plugin* that puts them together (`bridge_plugin`).

pub mod bridge_plugin;
pub mod cni;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod lock;

pub use error::{Error, Result};
