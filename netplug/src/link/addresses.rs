//! IP addresses of a link (RTM_NEWADDR, RTM_GETADDR).

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::links::Link;
use super::netlink::{Netlink, failed};
use crate::error::Result;

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

impl Netlink {
    /// Adds `address` (the host address with its prefix length, e.g. `198.18.0.2/24`) to `link`; an address the
    /// link already has is fine. IPv4 addresses get their broadcast address (below /31), as `ip addr add ... brd +`.
    /// IPv6 addresses are added with `IFA_F_NODAD`: they are assigned by address management, so duplicate address
    /// detection would only keep them tentative, and unusable, for a second or more.
    pub fn add_address(&mut self, link: &Link, address: IpNet) -> Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = family(address.addr());
        message.header.prefix_len = address.prefix_len();
        message.header.scope = AddressScope::Universe;
        message.header.index = link.index;
        match address {
            IpNet::V4(v4) => {
                message
                    .attributes
                    .push(AddressAttribute::Local(IpAddr::V4(v4.addr())));
                message
                    .attributes
                    .push(AddressAttribute::Address(IpAddr::V4(v4.addr())));
                if v4.prefix_len() < 31 {
                    message
                        .attributes
                        .push(AddressAttribute::Broadcast(v4.broadcast()));
                }
            }
            IpNet::V6(v6) => {
                message.header.flags = AddressHeaderFlags::Nodad;
                message
                    .attributes
                    .push(AddressAttribute::Address(IpAddr::V6(v6.addr())));
                message
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
        }
        match self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is(libc::EEXIST) => Ok(()),
            Err(e) => Err(e.into_error("add address", format!("{address} to link {}", link.name))),
        }
    }

    /// The addresses of `link`, IPv4 and IPv6 (the kernel's IPv6 link-local address included), each with its
    /// prefix length.
    pub fn addresses(&mut self, link: &Link) -> Result<Vec<IpNet>> {
        let mut request = AddressMessage::default();
        request.header.index = link.index;
        let answers = self
            .dump(RouteNetlinkMessage::GetAddress(request))
            .map_err(failed("list addresses of link", &link.name))?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewAddress(message) if message.header.index == link.index => {
                    address_of(&message)
                }
                _ => None,
            })
            .collect())
    }
}

/// The local address of an address message (`IFA_LOCAL`, which differs from `IFA_ADDRESS` only on point-to-point
/// links; IPv6 has only `IFA_ADDRESS`).
fn address_of(message: &AddressMessage) -> Option<IpNet> {
    let find = |local: bool| {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Local(ip) if local => Some(*ip),
                AddressAttribute::Address(ip) if !local => Some(*ip),
                _ => None,
            })
    };
    let ip = find(true).or_else(|| find(false))?;
    IpNet::new(ip, message.header.prefix_len).ok()
}
