//! The CNI protocol, spec 1.1.0 (containernetworking/cni SPEC.md), both sides of it:
//!
//! - `names`: the names the spec constrains (container ID, interface name, network name, plugin type), checked by
//!   both sides; it depends on no other module here;
//! - `types`: the plugin configuration, the result and its conversion between versions, the error result, GC's
//!   attachments (spec sections 1 and 5);
//! - `version`: the versions we speak (0.3.0 to 1.1.0) and `cniVersions` negotiation;
//! - `args`: `CNI_ARGS`;
//! - `plugin`: the plugin side, the [`Plugin`] trait and the dispatcher a plugin's `main` calls,
//!   [`run_plugin`] (section 2);
//! - the runtime side as libcni does it, for `polis-cnitool` (section 3): `conflist` loads a configuration list
//!   and derives each plugin's configuration; `runtime_conf` holds an attachment's parameters; `cache` is the
//!   result cache, libcni's files; `runner` runs the plugins found in `CNI_PATH` for ADD, CHECK, DEL, STATUS and GC.
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
pub mod cache;
pub mod conflist;
pub mod names;
pub mod plugin;
pub mod runner;
pub mod runtime_conf;
pub mod types;
pub mod version;

pub use args::CniArgs;
pub use cache::{CachedAttachment, ResultCache};
pub use conflist::NetworkList;
pub use plugin::{Command, EnvMap, NetworkRequest, Outcome, Plugin, Request, dispatch, run_plugin};
pub use runner::CniRunner;
pub use runtime_conf::RuntimeConf;
pub use types::{
    Attachment, CniResult, Dns, ErrorResult, Interface, IpConfig, IpamConf, NetConf, Route,
};
pub use version::{Version, VersionInfo};
