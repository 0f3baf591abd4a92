//! The bridge the containers' veth pairs attach to: created on first use, adopted afterwards.

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, LinkAttribute, LinkInfo, LinkMessage,
};

use super::links::{Link, MacAddress, check_interface_name};
use super::netlink::{Netlink, failed};
use crate::error::{Error, Result};

/// What the bridge should be like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeSpec<'a> {
    pub name: &'a str,
    /// The MTU; `None` leaves a new bridge at the kernel's 1500 and an adopted one as it is.
    pub mtu: Option<u32>,
    /// VLAN filtering (`IFLA_BR_VLAN_FILTERING`); off, as the reference bridge plugin leaves it, unless asked.
    pub vlan_filtering: bool,
    /// Addresses for the bridge itself (the gateway addresses, when the bridge is the containers' gateway).
    pub addresses: &'a [IpNet],
}

/// `IFLA_LINKINFO` for a bridge with VLAN filtering `on`. Off is the kernel's default and is not sent when creating
/// (`with_default`): a kernel built without `CONFIG_BRIDGE_VLAN_FILTERING` refuses the option, even to turn it off.
fn bridge_info(vlan_filtering: bool, with_default: bool) -> LinkAttribute {
    let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
    if vlan_filtering || with_default {
        info.push(LinkInfo::Data(InfoData::Bridge(vec![
            InfoBridge::VlanFiltering(vlan_filtering),
        ])));
    }
    LinkAttribute::LinkInfo(info)
}

impl Netlink {
    /// Makes sure the bridge `spec.name` exists as asked, and returns it: creates it (type bridge) or adopts the
    /// existing one, sets its VLAN filtering and MTU, adds its addresses (an address it already has is fine), and
    /// sets it up. Safe to run concurrently for the same bridge, and again on an existing one.
    ///
    /// A new bridge gets a fixed random MAC address: otherwise the kernel gives it the lowest MAC of its ports,
    /// and the gateway's MAC would change under the containers each time a port with a lower one joins.
    pub fn ensure_bridge(&mut self, spec: &BridgeSpec) -> Result<Link> {
        self.ensure_bridge_noting(spec, &mut false)
    }

    /// [`Netlink::ensure_bridge`], which sets `created` as soon as this call has created the bridge (rather than
    /// found it, or lost the race to create it to another process), so that a caller undoing a failed ADD knows
    /// the bridge is its own, also when a later step of this call failed.
    pub fn ensure_bridge_noting(&mut self, spec: &BridgeSpec, created: &mut bool) -> Result<Link> {
        check_interface_name(spec.name)?;
        let mut bridge = match self.link_by_name(spec.name)? {
            Some(existing) => existing,
            None => {
                let (bridge, made) = self.create_bridge(spec)?;
                *created = made;
                bridge
            }
        };
        if bridge.kind.as_deref() != Some("bridge") {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "link {} exists but is not a bridge (its type is {})",
                    spec.name,
                    bridge.kind.as_deref().unwrap_or("a device without a type")
                ),
            });
        }
        if bridge
            .vlan_filtering
            .is_some_and(|on| on != spec.vlan_filtering)
        {
            let mut message = LinkMessage::default();
            message.header.index = bridge.index;
            message
                .attributes
                .push(bridge_info(spec.vlan_filtering, true));
            self.request(RouteNetlinkMessage::NewLink(message), 0)
                .map_err(failed("set VLAN filtering of bridge", spec.name))?;
        }
        if let Some(mtu) = spec.mtu.filter(|&mtu| mtu != bridge.mtu) {
            self.set_link_mtu(&bridge, mtu)?;
        }
        for &address in spec.addresses {
            self.add_address(&bridge, address)?;
        }
        if !bridge.up {
            self.set_link_up(&bridge)?;
        }
        bridge = self.require_link(spec.name)?;
        Ok(bridge)
    }

    /// Creates the bridge; if another invocation created it meanwhile (EEXIST), returns that one. The flag says
    /// whether this call created it.
    fn create_bridge(&mut self, spec: &BridgeSpec) -> Result<(Link, bool)> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(spec.name.to_string()));
        message
            .attributes
            .push(LinkAttribute::Address(MacAddress::random().0.to_vec()));
        if let Some(mtu) = spec.mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        message
            .attributes
            .push(bridge_info(spec.vlan_filtering, false));
        let created = match self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => {
                tracing::debug!(bridge = spec.name, "created bridge");
                true
            }
            Err(e) if e.is(libc::EEXIST) => false,
            Err(e) => return Err(e.into_error("create bridge", spec.name)),
        };
        Ok((self.require_link(spec.name)?, created))
    }

    /// Deletes `bridge` (as [`Netlink::ensure_bridge_noting`] returned it) if it is still that bridge and no link
    /// is its port: the undoing of a failed ADD that created it. Returns whether it was deleted; a bridge already
    /// gone, one with a port (another container's veth), or a link that now has the bridge's index but another
    /// name or type stays.
    pub fn delete_bridge_if_unused(&mut self, bridge: &Link) -> Result<bool> {
        let Some(now) = self.link_by_index(bridge.index)? else {
            return Ok(false);
        };
        if now.name != bridge.name || now.kind.as_deref() != Some("bridge") {
            return Ok(false);
        }
        if self
            .links()?
            .iter()
            .any(|link| link.master == Some(bridge.index))
        {
            return Ok(false);
        }
        self.delete_link_by_index(&now)?;
        tracing::debug!(
            bridge = bridge.name,
            "deleted the bridge a failed ADD created"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::testutil::{TestNetns, create_local_veth, net};

    #[test]
    fn bridge_is_created_then_adopted_with_its_addresses_and_mtu() {
        let host = TestNetns::new();
        host.run(|netlink| {
            let addresses = [net("198.18.1.1/24"), net("fd00:1::1/64")];
            let spec = BridgeSpec {
                name: "polisbr0",
                mtu: Some(1400),
                vlan_filtering: false,
                addresses: &addresses,
            };
            let created = netlink.ensure_bridge(&spec)?;
            assert_eq!(created.kind.as_deref(), Some("bridge"));
            assert_eq!(created.mtu, 1400);
            assert!(created.up);
            assert_eq!(created.vlan_filtering, Some(false));
            let mac = created.mac.expect("a bridge has a MAC address");
            assert_eq!(
                mac.0[0] & 0x03,
                0x02,
                "a locally administered unicast MAC: {mac}"
            );

            // The second call finds the same bridge; the same addresses again are fine.
            let adopted = netlink.ensure_bridge(&spec)?;
            assert_eq!(adopted.index, created.index);
            assert_eq!(adopted.mac, created.mac);
            netlink.add_address(&adopted, addresses[0])?;
            netlink.add_address(&adopted, addresses[1])?;
            let present = netlink.addresses(&adopted)?;
            for address in addresses {
                assert_eq!(
                    present.iter().filter(|&&a| a == address).count(),
                    1,
                    "{address} in {present:?}"
                );
            }

            // Adopting applies a changed MTU.
            let changed = netlink.ensure_bridge(&BridgeSpec {
                mtu: Some(1300),
                ..spec
            })?;
            assert_eq!(changed.index, created.index);
            assert_eq!(changed.mtu, 1300);

            // And VLAN filtering, where the kernel has it (CONFIG_BRIDGE_VLAN_FILTERING; this CI kernel has not).
            match netlink.ensure_bridge(&BridgeSpec {
                vlan_filtering: true,
                ..spec
            }) {
                Ok(filtering) => assert_eq!(filtering.vlan_filtering, Some(true)),
                Err(Error::Netlink { op, reason, .. }) => {
                    assert_eq!(op, "set VLAN filtering of bridge");
                    assert!(reason.contains("Operation not supported"), "{reason}");
                }
                Err(other) => panic!("{other}"),
            }
            Ok(())
        });
    }

    /// A new bridge is reported as created (an adopted one is not), and is deleted only while it has no port.
    #[test]
    fn a_created_bridge_is_noted_and_deleted_only_while_unused() {
        let host = TestNetns::new();
        host.run(|netlink| {
            let spec = BridgeSpec {
                name: "polisbr2",
                mtu: None,
                vlan_filtering: false,
                addresses: &[],
            };
            let mut created = false;
            let bridge = netlink.ensure_bridge_noting(&spec, &mut created)?;
            assert!(created);
            let mut again = false;
            assert_eq!(
                netlink.ensure_bridge_noting(&spec, &mut again)?.index,
                bridge.index
            );
            assert!(!again, "an existing bridge is adopted, not created");

            // A port keeps it.
            let port = create_local_veth(netlink, "polisport0", "polisport1")?;
            netlink.set_link_master(&port, &bridge)?;
            assert!(!netlink.delete_bridge_if_unused(&bridge)?);
            assert!(netlink.link_by_name("polisbr2")?.is_some());
            assert!(netlink.delete_link("polisport0")?);

            assert!(netlink.delete_bridge_if_unused(&bridge)?);
            assert_eq!(netlink.link_by_name("polisbr2")?, None);
            // Gone already: nothing to do.
            assert!(!netlink.delete_bridge_if_unused(&bridge)?);
            Ok(())
        });
    }

    #[test]
    fn a_link_of_another_type_is_not_adopted() {
        let host = TestNetns::new();
        let error = in_host(&host, |netlink| {
            netlink.ensure_bridge(&BridgeSpec {
                name: "lo",
                mtu: None,
                vlan_filtering: false,
                addresses: &[],
            })
        });
        assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");
        assert!(error.to_string().contains("not a bridge"), "{error}");
    }

    #[test]
    fn kernel_errors_name_the_operation_the_object_and_the_kernel_reason() {
        let host = TestNetns::new();
        let error = in_host(&host, |netlink| {
            let bridge = netlink.ensure_bridge(&BridgeSpec {
                name: "polisbr1",
                mtu: None,
                vlan_filtering: false,
                addresses: &[],
            })?;
            netlink.set_link_mtu(&bridge, 1 << 20)
        });
        let Error::Netlink { op, object, reason } = &error else {
            panic!("expected a netlink error, got {error:?}");
        };
        assert_eq!(*op, "set MTU of link");
        assert_eq!(object, "polisbr1");
        // EINVAL, with the extended ACK's text.
        assert!(
            reason.contains("Invalid argument") && reason.contains("mtu"),
            "{reason}"
        );
        assert_eq!(error.cni_code(), 5);
    }

    fn in_host<T: Send + std::fmt::Debug>(
        host: &TestNetns,
        work: impl FnOnce(&mut Netlink) -> Result<T> + Send,
    ) -> Error {
        crate::link::in_netns(host.path(), || work(&mut Netlink::open()?)).unwrap_err()
    }
}
