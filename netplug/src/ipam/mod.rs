//! Address management for the bridge plugin: the `ipam` section of a network config (host-local's format), and a
//! crash-safe, multi-process store of who holds which address.
//!
//! - [`IpamConfig::parse`] validates the section: range sets of one or more subnets (each able to serve
//!   containers: [`unusable_subnet`]), routes, the store directory.
//! - [`static_requests`] gathers the addresses a caller asked for (`ips` capability, `CNI_ARGS` `IP=`,
//!   `args.cni.ips`).
//! - [`Allocator`] hands out one address per range set to an attachment (container ID, interface name) on ADD,
//!   finds them again for CHECK, releases them on DEL, collects those of gone attachments on GC, and reports an
//!   exhausted pool on STATUS.
//!
//! ```no_run
//! use polis_netplug::ipam::{Allocator, IpamConfig, static_requests};
//! # fn main() -> polis_netplug::Result<()> {
//! let network: serde_json::Value = serde_json::from_str(r#"{
//!     "cniVersion": "1.1.0", "name": "polis0", "type": "polis-netplug",
//!     "ipam": {"type": "polis", "ranges": [[{"subnet": "198.18.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]},
//!     "runtimeConfig": {"ips": ["198.18.0.50/24"]}
//! }"#).unwrap();
//! let config = IpamConfig::parse(&network["ipam"])?;
//! let allocator = Allocator::open(&config, "polis0")?;
//! let requested = static_requests(&network, std::env::var("CNI_ARGS").ok().as_deref())?;
//! let addresses = allocator.allocate("c0ffee", "eth0", &requested)?; // [198.18.0.50/24 via 198.18.0.1]
//! allocator.release("c0ffee", "eth0")?;
//! # Ok(()) }
//! ```
//!
//! This module knows nothing of netlink or of the CNI dispatcher; its only side effects are files under `dataDir`.

mod allocator;
mod config;
mod request;
mod store;

pub use allocator::{Allocation, Allocator, DEFAULT_LOCK_TIMEOUT, RangeSetUsage};
pub use config::{
    AddressRange, DEFAULT_DATA_DIR, IPAM_TYPES, IpamConfig, RangeSet, Route, unusable_subnet,
};
pub use request::{AddressRequest, static_requests};
