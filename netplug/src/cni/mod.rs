//! The CNI protocol, spec 1.1.0 (containernetworking/cni SPEC.md), both sides of it:
//!
//! - `types`: the plugin configuration, the result and its conversion between versions, the error result, GC's
//!   attachments (spec sections 1 and 5);
//! - `version`: the versions we speak (0.3.0 to 1.1.0) and `cniVersions` negotiation;
//! - `args`: `CNI_ARGS`;
//! - `plugin`: the plugin side, the [`Plugin`] trait and the dispatcher a plugin's `main` calls,
//!   [`run_plugin`] (section 2);
//! - `conflist`: the runtime side as libcni does it, for `polis-cnitool`: load a configuration list, derive
//!   each plugin's configuration, run the plugins found in `CNI_PATH`, cache results (section 3).
//!
//! A plugin:
//! ```no_run
//! use polis_netplug::cni::{Attachment, CniResult, NetworkRequest, Plugin, Request, run_plugin};
//! struct Bridge;
//! impl Plugin for Bridge {
//!     fn add(&self, req: &Request) -> polis_netplug::Result<CniResult> { Ok(CniResult::default()) }
//!     fn del(&self, req: &Request) -> polis_netplug::Result<()> { Ok(()) }
//!     fn check(&self, req: &Request) -> polis_netplug::Result<()> { Ok(()) }
//!     fn status(&self, req: &NetworkRequest) -> polis_netplug::Result<()> { Ok(()) }
//!     fn gc(&self, req: &NetworkRequest, valid: &[Attachment]) -> polis_netplug::Result<()> { Ok(()) }
//! }
//! std::process::exit(run_plugin(&Bridge, "polis-netplug v0.1.0"));
//! ```

pub mod args;
pub mod conflist;
pub mod plugin;
pub mod types;
pub mod version;

pub use args::CniArgs;
pub use conflist::{CniRunner, NetworkList, RuntimeConf};
pub use plugin::{Command, EnvMap, NetworkRequest, Outcome, Plugin, Request, dispatch, run_plugin};
pub use types::{
    Attachment, CniResult, Dns, ErrorResult, Interface, IpConfig, IpamConf, NetConf, Route,
};
pub use version::{Version, VersionInfo};
