//! Network names, subnets and gateways, and the CNI network configuration (conflist) polis-netplug takes.

use super::*;

/// Network names as Docker takes them (those of CNI too).
pub fn check_network_name(name: &str) -> Result<()> {
    if crate::core::docker_name_ok(name, 1, 128) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// A subnet in CIDR notation, without host bits.
pub fn parse_subnet(text: &str) -> Result<IpNet> {
    let net: IpNet = text
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid subnet {text:?}: not an address/prefix")))?;
    if net.trunc() != net {
        return Err(Error::Invalid(format!(
            "invalid subnet {text}: host bits are set (the subnet is {})",
            net.trunc()
        )));
    }
    let min_hosts_prefix = if net.addr().is_ipv4() { 30 } else { 126 };
    if net.prefix_len() > min_hosts_prefix {
        return Err(Error::Invalid(format!(
            "invalid subnet {text}: too small for a gateway and a container"
        )));
    }
    Ok(net)
}

/// Whether two subnets share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A subnet's gateway: the one asked for (inside the subnet, neither its network nor its broadcast address), else
/// the first address after the network's, as Docker picks it.
pub fn gateway_of(subnet: &IpNet, asked: Option<&str>) -> Result<IpAddr> {
    let asked = asked.map(str::trim).filter(|g| !g.is_empty());
    let Some(text) = asked else {
        return subnet
            .hosts()
            .next()
            .ok_or_else(|| Error::Invalid(format!("subnet {subnet} has no room for a gateway")));
    };
    let gw: IpAddr = text
        .parse()
        .map_err(|_| Error::Invalid(format!("invalid gateway {text:?}: not an IP address")))?;
    if !subnet.contains(&gw) || gw == subnet.network() || (gw.is_ipv4() && gw == subnet.broadcast())
    {
        return Err(Error::Invalid(format!(
            "invalid gateway {gw}: not a host address of subnet {subnet}"
        )));
    }
    Ok(gw)
}

/// The first subnet of the pools (`base`, prefix length) that overlaps none of `taken`.
pub fn pick_subnet(pools: &[(IpNet, u8)], taken: &[IpNet]) -> Option<IpNet> {
    for (base, size) in pools {
        let Ok(subnets) = base.subnets(*size) else {
            continue;
        };
        for candidate in subnets {
            if !taken.iter().any(|t| overlaps(t, &candidate)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The IPv4 destinations of the host's routes but the default one (/proc/net/route), which new subnets avoid.
pub(super) fn host_routes() -> Vec<IpNet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            if mask == 0 {
                return None;
            }
            let addr = std::net::Ipv4Addr::from(u32::from_be(dst));
            let prefix = u32::from_be(mask).leading_ones() as u8;
            ipnet::Ipv4Net::new(addr, prefix).ok().map(IpNet::V4)
        })
        .collect()
}

/// The CNI configuration list of a bridge network.
pub fn conflist(
    name: &str,
    bridge: &str,
    subnets: &[Subnet],
    internal: bool,
    mtu: Option<u32>,
    data_dir: &Path,
) -> Value {
    let ranges: Vec<Value> = subnets
        .iter()
        .map(|s| {
            let mut range =
                json!({"subnet": s.subnet.to_string(), "gateway": s.gateway.to_string()});
            if let Some(r) = s.range {
                let mut hosts = r
                    .hosts()
                    .filter(|h| *h != s.gateway && *h != s.subnet.network());
                if let Some(first) = hosts.next() {
                    range["rangeStart"] = json!(first.to_string());
                    let last = hosts.next_back().unwrap_or(first);
                    range["rangeEnd"] = json!(last.to_string());
                }
            }
            json!([range])
        })
        .collect();
    let mut plugin = json!({
        "type": PLUGIN,
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": !internal,
        "hairpinMode": true,
        "capabilities": {"portMappings": true, "aliases": true, "ips": true},
        "ipam": {"type": "polis", "ranges": ranges, "dataDir": data_dir.display().to_string()},
    });
    if let Some(mtu) = mtu {
        plugin["mtu"] = json!(mtu);
    }
    json!({"cniVersion": "1.1.0", "name": name, "plugins": [plugin]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_are_checked() {
        assert_eq!(
            parse_subnet("198.18.201.0/24").unwrap(),
            net("198.18.201.0/24")
        );
        for bad in [
            "198.18.201.5/24",
            "nonsense",
            "10.0.0.0/31",
            "10.0.0.0",
            "fd00::/127",
        ] {
            assert!(matches!(parse_subnet(bad), Err(Error::Invalid(_))), "{bad}");
        }
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.0.0/16")));
        assert!(overlaps(&net("10.1.0.0/16"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.1.0.0/16"), &net("10.2.0.0/16")));
    }

    #[test]
    fn gateways_default_to_the_first_address_and_must_be_inside() {
        let s = net("198.18.201.0/24");
        assert_eq!(gateway_of(&s, None).unwrap().to_string(), "198.18.201.1");
        assert_eq!(
            gateway_of(&s, Some("198.18.201.254")).unwrap().to_string(),
            "198.18.201.254"
        );
        for bad in ["198.18.202.1", "198.18.201.0", "198.18.201.255", "x"] {
            assert!(gateway_of(&s, Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_subnets_avoid_taken_ones() {
        let pools = [(net("198.18.208.0/20"), 24)];
        assert_eq!(pick_subnet(&pools, &[]), Some(net("198.18.208.0/24")));
        let taken = [net("198.18.208.0/23"), net("198.18.210.0/24")];
        assert_eq!(pick_subnet(&pools, &taken), Some(net("198.18.211.0/24")));
        assert_eq!(pick_subnet(&pools, &[net("198.18.0.0/15")]), None);
    }

    #[test]
    fn the_conflist_is_what_polis_netplug_takes() {
        let subnets = [Subnet {
            subnet: net("198.18.201.0/24"),
            gateway: "198.18.201.1".parse().unwrap(),
            range: Some(net("198.18.201.128/25")),
        }];
        let c = conflist(
            "n1",
            "br-1",
            &subnets,
            true,
            Some(1400),
            Path::new("/x/netplug"),
        );
        let list = NetworkList::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(list.name, "n1");
        let p = &list.plugins[0];
        assert_eq!(p["type"], "polis-netplug");
        assert_eq!(p["ipMasq"], false);
        assert_eq!(p["mtu"], 1400);
        let range = &p["ipam"]["ranges"][0][0];
        assert_eq!(range["rangeStart"], "198.18.201.129");
        assert_eq!(range["rangeEnd"], "198.18.201.254");
        polis_netplug::ipam::IpamConfig::parse(&p["ipam"]).unwrap();
        let caps = list.plugin_config(
            0,
            Some(
                json!({"portMappings": [], "aliases": {}, "ips": [], "other": 1})
                    .as_object()
                    .unwrap(),
            ),
            None,
        );
        assert!(caps["runtimeConfig"].get("aliases").is_some());
        assert!(caps["runtimeConfig"].get("other").is_none());
    }

    #[test]
    fn network_names_follow_dockers_rule() {
        check_network_name("n1").unwrap();
        check_network_name("my_net.v2-x").unwrap();
        for bad in ["", "-x", "a b", "a/b"] {
            assert!(check_network_name(bad).is_err(), "{bad:?}");
        }
    }
}
