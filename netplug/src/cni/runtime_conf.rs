//! The parameters of one attachment (CNI spec "Section 3: Execution of Network Configurations", "Attachment
//! Parameters"), libcni's `RuntimeConf`: what the runtime side passes to every plugin of a list as `CNI_CONTAINERID`,
//! `CNI_NETNS`, `CNI_IFNAME` and `CNI_ARGS` ("Section 2", "Parameters"), and the capability arguments it puts into
//! `runtimeConfig`. The runner runs plugins with them, and the result cache keys and records its entries by them.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::args::CniArgs;
use super::names::{validate_container_id, validate_ifname};
use super::plugin::Command;
use crate::{Error, Result};

/// The parameters of one attachment (CNI spec "Attachment Parameters").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    /// `CNI_NETNS`: required by ADD and CHECK; DEL runs without it (the plugins clean up what they can).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// Capability arguments (`portMappings`, `ips`, `mac`, `bandwidth`, `aliases`, ...); each goes into the
    /// `runtimeConfig` of the plugins that declare that capability, and only of those.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> RuntimeConf {
        RuntimeConf {
            container_id: container_id.into(),
            ifname: ifname.into(),
            ..RuntimeConf::default()
        }
    }

    /// The container ID and interface name (they also name the cache file). Code 4.
    pub(super) fn validate(&self) -> Result<()> {
        validate_container_id(&self.container_id)?;
        validate_ifname(&self.ifname)
    }

    /// ADD and CHECK need the network namespace (CNI spec "ADD", "CHECK": `CNI_NETNS` required). Code 4.
    pub(super) fn require_netns(&self, command: Command) -> Result<()> {
        match &self.netns {
            Some(p) if !p.as_os_str().is_empty() => Ok(()),
            _ => Err(Error::Environment {
                var: "CNI_NETNS",
                reason: format!("required for {} but not given", command.as_str()),
            }),
        }
    }
}
