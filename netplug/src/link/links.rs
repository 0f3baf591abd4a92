//! Links (network interfaces) in the netlink socket's namespace: look them up, change them, delete them
//! (RTM_GETLINK, RTM_SETLINK, RTM_NEWLINK on an existing link, RTM_DELLINK).

use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoBridgePort, InfoData, InfoPortData,
    InfoPortKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

use super::netlink::{KernelError, Netlink, failed};
use crate::error::{Error, Result};

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The hardware address; `None` for links without one.
    pub mac: Option<MacAddress>,
    pub mtu: u32,
    /// The index of the link's master (its bridge, for a bridge port).
    pub master: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The link type (`IFLA_INFO_KIND`: "bridge", "veth", ...); `None` for physical devices and loopback.
    pub kind: Option<String>,
    /// For a bridge port: whether hairpin mode is on (`IFLA_BRPORT_MODE`).
    pub hairpin: Option<bool>,
    /// For a bridge: whether VLAN filtering is on (`IFLA_BR_VLAN_FILTERING`).
    pub vlan_filtering: Option<bool>,
}

impl Link {
    fn from_message(message: LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            master: None,
            up: message.header.flags.contains(LinkFlags::Up),
            kind: None,
            hairpin: None,
            vlan_filtering: None,
        };
        for attribute in message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddress)
                }
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::Controller(master) => link.master = Some(master),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                            LinkInfo::Data(InfoData::Bridge(options)) => {
                                link.vlan_filtering =
                                    options.iter().find_map(|option| match option {
                                        InfoBridge::VlanFiltering(on) => Some(*on),
                                        _ => None,
                                    });
                            }
                            LinkInfo::PortData(InfoPortData::BridgePort(options)) => {
                                link.hairpin = options.iter().find_map(|option| match option {
                                    InfoBridgePort::HairpinMode(on) => Some(*on),
                                    _ => None,
                                });
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// An Ethernet (MAC) address, shown as `aa:bb:cc:dd:ee:ff` (the form CNI results use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// A random unicast, locally administered address.
    pub fn random() -> Self {
        let bytes = random_u64().to_le_bytes();
        let mut mac = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]];
        mac[0] = (mac[0] & 0xfe) | 0x02;
        MacAddress(mac)
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddress {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let invalid = || {
            format!("invalid MAC address {text:?}: expected six hex bytes like 02:42:ac:11:00:02")
        };
        let mut mac = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut mac {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(invalid)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddress(mac))
    }
}

/// Random bits for names and MAC addresses (not secrets): std's `RandomState` is seeded from the OS once per
/// thread and changes its keys on every `new`.
pub(crate) fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// Checks `name` as the kernel's `dev_valid_name` does: 1 to 15 bytes, not "." or "..", no '/', ':' or
/// whitespace. The error is the reason, for the caller's own error (a CNI_IFNAME, a config field).
pub fn validate_interface_name(name: &str) -> std::result::Result<(), String> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_INTERFACE_NAME_LEN {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "is . or .."
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "contains '/', ':' or whitespace"
    } else {
        return Ok(());
    };
    Err(format!("interface name {name:?} {problem}"))
}

/// [`validate_interface_name`] as an [`Error::InvalidConfig`].
pub(crate) fn check_interface_name(name: &str) -> Result<()> {
    validate_interface_name(name).map_err(|reason| Error::InvalidConfig { reason })
}

fn link_message(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
}

impl Netlink {
    /// The link named `name`, or `None` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut message = link_message(0);
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.get_link(message).map_err(failed("look up link", name))
    }

    /// The link with index `index`, or `None` when there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.get_link(link_message(index))
            .map_err(failed("look up link", format!("index {index}")))
    }

    /// The link named `name`; its absence is an error (`Error::Netlink` "find link NAME: no such link").
    pub fn require_link(&mut self, name: &str) -> Result<Link> {
        self.link_by_name(name)?.ok_or_else(|| Error::Netlink {
            op: "find link",
            object: name.to_string(),
            reason: "no such link".into(),
        })
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let messages = self
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(failed("list links", "all"))?;
        Ok(messages
            .into_iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })
            .collect())
    }

    fn get_link(&mut self, message: LinkMessage) -> std::result::Result<Option<Link>, KernelError> {
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })),
            Err(e) if e.is(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// RTM_SETLINK on `link` with `change` applied to the message.
    fn set_link(
        &mut self,
        op: &'static str,
        link: &Link,
        change: impl FnOnce(&mut LinkMessage),
    ) -> Result<()> {
        let mut message = link_message(link.index);
        change(&mut message);
        self.request(RouteNetlinkMessage::SetLink(message), 0)
            .map(drop)
            .map_err(failed(op, &link.name))
    }

    /// Sets `link` administratively up.
    pub fn set_link_up(&mut self, link: &Link) -> Result<()> {
        self.set_link("set up link", link, |message| {
            message.header.flags = LinkFlags::Up;
            message.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets the MTU of `link`.
    pub fn set_link_mtu(&mut self, link: &Link, mtu: u32) -> Result<()> {
        self.set_link("set MTU of link", link, |message| {
            message.attributes.push(LinkAttribute::Mtu(mtu))
        })
    }

    /// Makes `link` a port of `master` (a bridge).
    pub fn set_link_master(&mut self, link: &Link, master: &Link) -> Result<()> {
        self.set_link("attach link to its bridge", link, |message| {
            message
                .attributes
                .push(LinkAttribute::Controller(master.index))
        })
    }

    /// Gives `link` no IPv6 address of its own when it comes up (`IFLA_INET6_ADDR_GEN_MODE` none, as
    /// `ip link set LINK addrgenmode none`). A kernel without IPv6 refuses the attribute; that is fine.
    pub fn skip_ipv6_addresses(&mut self, link: &Link) -> Result<()> {
        let mut message = link_message(link.index);
        message
            .attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]));
        match self.request(RouteNetlinkMessage::SetLink(message), 0) {
            Ok(_) => Ok(()),
            Err(e) if e.is(libc::EAFNOSUPPORT) => Ok(()),
            Err(e) => Err(e.into_error("turn off IPv6 address generation", &link.name)),
        }
    }

    /// Renames `link` (which must be down) and returns it as it is now.
    pub fn rename_link(&mut self, link: &Link, name: &str) -> Result<Link> {
        check_interface_name(name)?;
        self.set_link("rename link", link, |message| {
            message
                .attributes
                .push(LinkAttribute::IfName(name.to_string()))
        })?;
        self.require_link(name)
    }

    /// Turns hairpin mode (reflective relay: frames may leave by the port they came in) on or off for `port`, a
    /// bridge port (`IFLA_INFO_PORT_DATA` / `IFLA_BRPORT_MODE`, as `ip link set PORT type bridge_slave hairpin on`).
    /// The link must already be attached: the kernel finds the port options through the link's current master.
    pub fn set_hairpin(&mut self, port: &Link, on: bool) -> Result<()> {
        let mut message = link_message(port.index);
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(message), 0)
            .map(drop)
            .map_err(failed("set hairpin mode of bridge port", &port.name))
    }

    /// Sets the loopback device `lo` up.
    pub fn set_loopback_up(&mut self) -> Result<()> {
        let lo = self.require_link("lo")?;
        self.set_link_up(&lo)
    }

    /// Deletes the link named `name`; for one end of a veth pair, the pair. Returns `false` when there was no
    /// such link (deleting is idempotent).
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let mut message = link_message(0);
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(message), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.is(libc::ENODEV) => Ok(false),
            Err(e) => Err(e.into_error("delete link", name)),
        }
    }

    /// Deletes `link` by index (used to undo a half-made link); a link already gone is fine.
    pub(crate) fn delete_link_by_index(&mut self, link: &Link) -> Result<()> {
        match self.request(RouteNetlinkMessage::DelLink(link_message(link.index)), 0) {
            Ok(_) => Ok(()),
            Err(e) if e.is(libc::ENODEV) => Ok(()),
            Err(e) => Err(e.into_error("delete link", &link.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_address_round_trips_and_random_is_local_unicast() {
        let mac: MacAddress = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        assert!("02:42:ac:11:00".parse::<MacAddress>().is_err());
        assert!("02:42:ac:11:00:02:03".parse::<MacAddress>().is_err());
        assert!("02:42:ac:11:00:zz".parse::<MacAddress>().is_err());
        let random = MacAddress::random();
        assert_eq!(random.0[0] & 0x03, 0x02, "{random}");
        assert_ne!(MacAddress::random(), MacAddress::random());
    }

    #[test]
    fn interface_names_are_checked_like_the_kernel() {
        assert!(validate_interface_name("eth0").is_ok());
        assert!(validate_interface_name("veth0123abcd").is_ok());
        assert!(validate_interface_name("abcdefghijklmno").is_ok());
        for bad in ["", "abcdefghijklmnop", ".", "..", "a/b", "a:b", "a b"] {
            assert!(validate_interface_name(bad).is_err(), "{bad:?}");
        }
    }
}
