//! The `ipam` section of a network configuration, modelled on the reference host-local plugin's so that a
//! bridge + host-local conflist works unchanged:
//!
//! ```json
//! "ipam": {
//!   "type": "polis",
//!   "ranges": [
//!     [ {"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.200", "gateway": "198.18.0.1"},
//!       {"subnet": "198.18.1.0/24"} ],
//!     [ {"subnet": "fd00:198:18::/64"} ]
//!   ],
//!   "routes": [ {"dst": "0.0.0.0/0"} ],
//!   "dataDir": "/var/lib/polis/netplug/networks"
//! }
//! ```
//!
//! or the shorthand of one range set with one range: `"subnet"` (and `rangeStart`, `rangeEnd`, `gateway`) directly in
//! the section. Every check happens in [`IpamConfig::parse`]; a parsed config is valid by construction.
//!
//! A subnet must be able to serve containers: the whole address space of a family, loopback, link-local,
//! multicast, "this network" (0.0.0.0/8) and the reserved 240.0.0.0/4 with the limited broadcast address are
//! refused (code 7, naming the subnet and the block), as is a subnet too small for a gateway and one address.
//! [`IpamConfig::parse_for_release`] skips these two checks, for DEL only (see there).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Where the allocations of every network live unless the config says `dataDir`: one directory per network.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/polis/netplug/networks";

/// The values of `ipam.type` this module serves. The config is host-local's, so a conflist written for the
/// reference bridge + host-local plugins works unchanged: "host-local" is served by the same code (with our store).
pub const IPAM_TYPES: &[&str] = &["polis", "host-local"];

const IPAM_FIELDS: &[&str] = &[
    "type",
    "ranges",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "routes",
    "dataDir",
];
const RANGE_FIELDS: &[&str] = &["subnet", "rangeStart", "rangeEnd", "gateway"];
const ROUTE_FIELDS: &[&str] = &["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];

/// A validated `ipam` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    range_sets: Vec<RangeSet>,
    routes: Vec<Route>,
    data_dir: PathBuf,
}

/// One inner list of `ranges`: an attachment gets one address from it, taken from its ranges in order. All its
/// ranges are of one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    index: usize,
    ranges: Vec<AddressRange>,
}

/// One range: the addresses `start..=end` of `subnet`, less the gateway when it lies inside. Never contains the
/// network address or (IPv4) the broadcast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    subnet: IpNet,
    start: IpAddr,
    end: IpAddr,
    gateway: IpAddr,
}

/// A route of the `routes` list, handed to the container as it is: the result's own route type (CNI 1.1 fields).
pub use crate::cni::types::Route;

impl IpamConfig {
    /// Parses and validates the `ipam` section (the JSON object itself, not the whole network config).
    ///
    /// Rejects, naming the field: unknown fields (a typo would silently change addressing), an `ipam.type` other
    /// than [`IPAM_TYPES`], bad CIDRs, subnets with host bits set (never silently normalized), subnets too small to
    /// hand out an address, a rangeStart/rangeEnd/gateway outside its subnet or on its network or broadcast
    /// address, rangeStart after rangeEnd, a range set mixing IPv4 and IPv6, overlapping ranges or subnets
    /// anywhere in the network, and a relative `dataDir`.
    ///
    /// A subnet that cannot serve containers ([`unusable_subnet`]) is refused too.
    pub fn parse(ipam: &Value) -> Result<IpamConfig> {
        IpamConfig::parse_checking(ipam, Checks::All)
    }

    /// [`IpamConfig::parse`] without the checks that each subnet can serve containers (not a block of
    /// [`unusable_subnet`], room for a gateway and an address), for DEL only: the CNI spec has the runtime call
    /// DEL after every ADD, a failed one included, and DEL should release what it can ("Plugins should generally
    /// complete a DEL action without error even if some resources are missing"); a config that ADD refused for its
    /// subnet, or that an older polis-netplug accepted and made attachments with, must not leave its DEL failing
    /// forever. A subnet too small to hand out an address gets a range holding only its network address, which
    /// nothing can hold. Every other check (syntax, overlaps, the store directory) stays: DEL needs them to find
    /// what to release. Such a config is for DEL's release only, never for handing out addresses.
    pub fn parse_for_release(ipam: &Value) -> Result<IpamConfig> {
        IpamConfig::parse_checking(ipam, Checks::ForRelease)
    }

    fn parse_checking(ipam: &Value, checks: Checks) -> Result<IpamConfig> {
        let obj = ipam.as_object().ok_or_else(|| {
            invalid(format!(
                "the ipam section must be a JSON object, not {ipam}"
            ))
        })?;
        check_fields(obj, "ipam", IPAM_FIELDS)?;

        match opt_str(obj, "ipam", "type")? {
            None => return Err(invalid("ipam.type is missing (use \"polis\")")),
            Some(t) if IPAM_TYPES.contains(&t) => {}
            Some(t) => {
                return Err(invalid(format!(
                    "ipam.type {t:?} is not served by polis-netplug, which manages addresses itself: use \"polis\" \
                     (\"host-local\" is accepted as a synonym)"
                )));
            }
        }

        let shorthand = RANGE_FIELDS.iter().any(|f| obj.contains_key(*f));
        let labelled: Vec<Vec<(String, AddressRange)>> = match (obj.get("ranges"), shorthand) {
            (Some(_), true) => {
                return Err(invalid(
                    "ipam: give either \"ranges\" or the shorthand \"subnet\" (with rangeStart, rangeEnd, gateway), \
                     not both",
                ));
            }
            (Some(ranges), false) => parse_ranges(ranges, checks)?,
            (None, true) => vec![vec![(
                "ipam".to_string(),
                parse_range(obj, "ipam", checks)?,
            )]],
            (None, false) => {
                return Err(invalid(
                    "ipam: no addresses to manage: set \"ranges\" (or \"subnet\")",
                ));
            }
        };
        check_families(&labelled)?;
        check_overlaps(&labelled)?;
        let range_sets = labelled
            .into_iter()
            .enumerate()
            .map(|(index, set)| RangeSet {
                index,
                ranges: set.into_iter().map(|(_, r)| r).collect(),
            })
            .collect();

        let routes = match obj.get("routes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, r)| parse_route(r, &format!("ipam.routes[{i}]")))
                .collect::<Result<_>>()?,
            Some(other) => return Err(invalid(format!("ipam.routes must be a list, not {other}"))),
        };

        let data_dir = match opt_str(obj, "ipam", "dataDir")? {
            None => PathBuf::from(DEFAULT_DATA_DIR),
            Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
            Some(d) => {
                return Err(invalid(format!(
                    "ipam.dataDir {d:?} must be an absolute path"
                )));
            }
        };

        Ok(IpamConfig {
            range_sets,
            routes,
            data_dir,
        })
    }

    /// The range sets, in config order; an attachment gets one address from each.
    pub fn range_sets(&self) -> &[RangeSet] {
        &self.range_sets
    }

    /// The routes to give the container.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The directory holding one store directory per network.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The range set one of whose ranges holds `address` (gateway included), if any. Ranges never overlap, so
    /// there is at most one.
    pub fn range_set_for(&self, address: IpAddr) -> Option<&RangeSet> {
        self.range_sets
            .iter()
            .find(|s| s.range_for(address).is_some())
    }
}

impl RangeSet {
    /// Its position in `ranges` (0 for the shorthand).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its ranges, in the order addresses are taken from them.
    pub fn ranges(&self) -> &[AddressRange] {
        &self.ranges
    }

    /// Whether it hands out IPv4 addresses (otherwise IPv6).
    pub fn is_ipv4(&self) -> bool {
        self.ranges
            .first()
            .is_some_and(|r| r.subnet.addr().is_ipv4())
    }

    /// The range whose `start..=end` holds `address` (gateway included), if any.
    pub fn range_for(&self, address: IpAddr) -> Option<&AddressRange> {
        self.ranges.iter().find(|r| r.contains(address))
    }

    /// The range `address` can be handed out from: inside `start..=end` and not the gateway.
    pub fn assignable_range_for(&self, address: IpAddr) -> Option<&AddressRange> {
        self.range_for(address).filter(|r| r.gateway != address)
    }

    /// How many addresses it can hand out (saturating at `u128::MAX`).
    pub fn capacity(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |n, r| n.saturating_add(r.capacity()))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "range set {} (", self.index)?;
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str(")")
    }
}

impl AddressRange {
    /// The subnet; allocated addresses carry its prefix length.
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The first address of the range.
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// The last address of the range (inclusive).
    pub fn end(&self) -> IpAddr {
        self.end
    }

    /// The gateway given to the container with an address of this range; never handed out.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// Whether `address` lies in `start..=end` (the gateway included).
    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.start.is_ipv4() && self.start <= address && address <= self.end
    }

    /// How many addresses it can hand out: the range less the gateway.
    pub fn capacity(&self) -> u128 {
        let size = (to_u128(self.end) - to_u128(self.start)).saturating_add(1);
        size - u128::from(self.contains(self.gateway))
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{} in {}", self.start, self.end, self.subnet)
    }
}

/// An address as a number, for arithmetic (IPv4 in the low 32 bits).
pub(crate) fn to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_u128`]; `None` when `n` does not fit the family.
pub(crate) fn from_u128(n: u128, ipv4: bool) -> Option<IpAddr> {
    if ipv4 {
        u32::try_from(n).ok().map(|v| IpAddr::V4(v.into()))
    } else {
        Some(IpAddr::V6(n.into()))
    }
}

/// Which checks [`IpamConfig::parse_checking`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    All,
    /// All but those that a subnet can serve containers: [`IpamConfig::parse_for_release`].
    ForRelease,
}

/// Address blocks that no container can have an address of, and why (IANA's special-purpose address registries,
/// RFC 6890, and how Linux treats them). A subnet inside one of them, equal to one, or containing one is refused.
const UNUSABLE_BLOCKS: &[(&str, &str)] = &[
    (
        "0.0.0.0/8",
        "\"this network\" (RFC 1122): 0.0.0.0 is the unspecified address, and the kernel drops packets from the \
         rest of the block as martians",
    ),
    (
        "127.0.0.0/8",
        "loopback (RFC 1122): every network namespace routes the whole block to its own lo, so packets to these \
         addresses never leave it",
    ),
    (
        "169.254.0.0/16",
        "link-local (RFC 3927): valid on one link only and never to be routed, so neither masquerading nor port \
         mappings through the host can serve it",
    ),
    (
        "224.0.0.0/4",
        "multicast (RFC 5771): group addresses, which no interface can have as its own",
    ),
    (
        "240.0.0.0/4",
        "reserved (RFC 1112, not forwardable by RFC 6890), ending in the limited broadcast address \
         255.255.255.255 (RFC 919), which is never routed",
    ),
    (
        "::1/128",
        "the loopback address (RFC 4291), which only lo can have",
    ),
    (
        "::/128",
        "the unspecified address (RFC 4291), which no interface can have",
    ),
    (
        "fe80::/10",
        "link-local (RFC 4291): every interface makes its own fe80:: address, and they are never routed",
    ),
    (
        "ff00::/8",
        "multicast (RFC 4291): group addresses, which no interface can have as its own",
    ),
];

/// Why `subnet` cannot serve containers, if it cannot: it is the whole address space of its family, or it meets a
/// block of `UNUSABLE_BLOCKS` (lies in it, is it, or contains it). The kernel would refuse such addresses only at
/// ADD, with a message that does not say why, or accept them and leave the containers unreachable.
pub fn unusable_subnet(subnet: IpNet) -> Option<String> {
    if subnet.prefix_len() == 0 {
        return Some(format!(
            "it is the whole {} address space (loopback, link-local and multicast addresses included): the \
             bridge's route to it would take every destination",
            family(&subnet.addr())
        ));
    }
    UNUSABLE_BLOCKS.iter().find_map(|(block, why)| {
        let block: IpNet = block.parse().ok()?;
        let how = if block == subnet {
            "it is"
        } else if block.contains(&subnet) {
            "it lies in"
        } else if subnet.contains(&block) {
            "it contains"
        } else {
            return None;
        };
        Some(format!("{how} {block}, {why}"))
    })
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        reason: reason.into(),
    }
}

fn family(address: &IpAddr) -> &'static str {
    if address.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Unknown fields are errors: a misspelt `rangeStart` would otherwise silently change the addresses handed out.
fn check_fields(obj: &Map<String, Value>, path: &str, known: &[&str]) -> Result<()> {
    let Some(unknown) = obj.keys().find(|k| !known.contains(&k.as_str())) else {
        return Ok(());
    };
    let hint = match known.iter().find(|k| k.eq_ignore_ascii_case(unknown)) {
        Some(k) => format!("did you mean {k:?}? "),
        None if unknown == "resolvConf" => {
            "polis-netplug does not read resolv.conf files: set the network's \"dns\"; ".to_string()
        }
        None => String::new(),
    };
    Err(Error::UnsupportedField {
        field: format!("{path}.{unknown}"),
        context: Some(format!("{hint}known fields here: {}", known.join(", "))),
    })
}

fn opt_str<'a>(obj: &'a Map<String, Value>, path: &str, key: &str) -> Result<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!(
            "{path}.{key} must be a string, not {other}"
        ))),
    }
}

fn opt_uint<T: TryFrom<u64>>(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<T>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "{path}.{key} must be a small non-negative integer, not {v}"
                ))
            }),
    }
}

fn parse_address(s: &str, path: &str, key: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| invalid(format!("{path}.{key}: {s:?} is not an IP address")))
}

/// A CIDR whose address is the network address: `198.18.0.5/24` is refused rather than silently normalized.
pub(crate) fn parse_network(s: &str, what: &str) -> Result<IpNet> {
    let net: IpNet = s.parse().map_err(|_| {
        invalid(format!(
            "{what}: {s:?} is not a CIDR (an address and a prefix length, like 198.18.0.0/24 or fd00::/64)"
        ))
    })?;
    if net.addr() != net.network() {
        return Err(invalid(format!(
            "{what}: {s} has host bits set: for a /{} the network address is {}",
            net.prefix_len(),
            net.trunc()
        )));
    }
    Ok(net)
}

fn parse_ranges(ranges: &Value, checks: Checks) -> Result<Vec<Vec<(String, AddressRange)>>> {
    let sets = ranges.as_array().ok_or_else(|| {
        invalid(format!(
            "ipam.ranges must be a list of lists of ranges, not {ranges}"
        ))
    })?;
    if sets.is_empty() {
        return Err(invalid("ipam.ranges is empty: no addresses to manage"));
    }
    sets.iter()
        .enumerate()
        .map(|(i, set)| {
            let path = format!("ipam.ranges[{i}]");
            let list = set.as_array().ok_or_else(|| {
                invalid(format!(
                    "{path} must be a list of ranges (a range set), not {set}"
                ))
            })?;
            if list.is_empty() {
                return Err(invalid(format!("{path} is an empty range set")));
            }
            list.iter()
                .enumerate()
                .map(|(j, range)| {
                    let path = format!("{path}[{j}]");
                    let obj = range.as_object().ok_or_else(|| {
                        invalid(format!(
                            "{path} must be an object with a subnet, not {range}"
                        ))
                    })?;
                    check_fields(obj, &path, RANGE_FIELDS)?;
                    Ok((path.clone(), parse_range(obj, &path, checks)?))
                })
                .collect()
        })
        .collect()
}

/// One range from `subnet`, `rangeStart`, `rangeEnd`, `gateway` (the shorthand's fields are the same). Defaults as
/// host-local's: the gateway is the subnet's first host address; the range runs from the first host address (past
/// the gateway) to the last (IPv4: before the broadcast address; IPv6: the subnet's last address).
fn parse_range(obj: &Map<String, Value>, path: &str, checks: Checks) -> Result<AddressRange> {
    let subnet = opt_str(obj, path, "subnet")?
        .ok_or_else(|| invalid(format!("{path}.subnet is missing")))?;
    let subnet = parse_network(subnet, &format!("{path}.subnet"))?;
    if checks == Checks::All
        && let Some(why) = unusable_subnet(subnet)
    {
        return Err(invalid(format!(
            "{path}.subnet: {subnet} cannot serve containers: {why}; use a private subnet such as one of \
             10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or, for IPv6, fd00::/8"
        )));
    }
    let ipv4 = subnet.addr().is_ipv4();
    let max_prefix = subnet.max_prefix_len() - 2;
    if subnet.prefix_len() > max_prefix && checks == Checks::ForRelease {
        // Nothing can have been handed out of it; DEL only needs to know the range set is there.
        let network = subnet.network();
        return Ok(AddressRange {
            subnet,
            start: network,
            end: network,
            gateway: network,
        });
    }
    if subnet.prefix_len() > max_prefix {
        return Err(invalid(format!(
            "{path}.subnet: {subnet} is too small to allocate from (a gateway and an address need at least a /{max_prefix})"
        )));
    }
    let network = to_u128(subnet.network());
    let last = to_u128(subnet.broadcast());
    let lowest = network + 1;
    let highest = if ipv4 { last - 1 } else { last };
    let at = |n: u128| from_u128(n, ipv4).unwrap_or(subnet.addr());

    let inside = |key: &str| -> Result<Option<u128>> {
        let Some(s) = opt_str(obj, path, key)? else {
            return Ok(None);
        };
        let address = parse_address(s, path, key)?;
        if address.is_ipv4() != ipv4 {
            return Err(invalid(format!(
                "{path}.{key}: {address} is an {} address but subnet {subnet} is {}",
                family(&address),
                family(&subnet.addr())
            )));
        }
        if !subnet.contains(&address) {
            return Err(invalid(format!(
                "{path}.{key}: {address} is outside subnet {subnet}"
            )));
        }
        let n = to_u128(address);
        if n == network {
            return Err(invalid(format!(
                "{path}.{key}: {address} is the network address of {subnet}"
            )));
        }
        if ipv4 && n == last {
            return Err(invalid(format!(
                "{path}.{key}: {address} is the broadcast address of {subnet}"
            )));
        }
        Ok(Some(n))
    };
    let gateway = inside("gateway")?.unwrap_or(lowest);
    let start = match inside("rangeStart")? {
        Some(n) => n,
        None if lowest == gateway => lowest + 1,
        None => lowest,
    };
    let end = inside("rangeEnd")?.unwrap_or(highest);
    if start > end {
        return Err(invalid(format!(
            "{path}: rangeStart {} is after rangeEnd {}",
            at(start),
            at(end)
        )));
    }
    let range = AddressRange {
        subnet,
        start: at(start),
        end: at(end),
        gateway: at(gateway),
    };
    if range.capacity() == 0 {
        return Err(invalid(format!(
            "{path}: range {range} holds no address to hand out besides the gateway"
        )));
    }
    Ok(range)
}

/// One range set gives one address: of one family.
fn check_families(sets: &[Vec<(String, AddressRange)>]) -> Result<()> {
    for (i, set) in sets.iter().enumerate() {
        let (_, first) = &set[0];
        if let Some((_, other)) = set
            .iter()
            .find(|(_, r)| r.subnet.addr().is_ipv4() != first.subnet.addr().is_ipv4())
        {
            return Err(invalid(format!(
                "ipam.ranges[{i}] mixes {} ({}) and {} ({}): a range set gives one address of one family; put \
                 them in separate range sets",
                family(&first.subnet.addr()),
                first.subnet,
                family(&other.subnet.addr()),
                other.subnet
            )));
        }
    }
    Ok(())
}

/// No address may belong to two ranges, and two subnets are either the same or disjoint, across all range sets.
fn check_overlaps(sets: &[Vec<(String, AddressRange)>]) -> Result<()> {
    let all: Vec<&(String, AddressRange)> = sets.iter().flatten().collect();
    for (i, (label_a, a)) in all.iter().enumerate() {
        for (label_b, b) in &all[..i] {
            if a.start.is_ipv4() != b.start.is_ipv4() {
                continue;
            }
            if a.start.max(b.start) <= a.end.min(b.end) {
                return Err(invalid(format!(
                    "{label_a} ({a}) overlaps {label_b} ({b}): ranges of one network must not share addresses"
                )));
            }
            if a.subnet != b.subnet
                && (a.subnet.contains(&b.subnet) || b.subnet.contains(&a.subnet))
            {
                return Err(invalid(format!(
                    "{label_a}.subnet {} overlaps {label_b}.subnet {}: subnets of one network must be equal or \
                     disjoint",
                    a.subnet, b.subnet
                )));
            }
        }
    }
    Ok(())
}

fn parse_route(route: &Value, path: &str) -> Result<Route> {
    let obj = route
        .as_object()
        .ok_or_else(|| invalid(format!("{path} must be an object with a dst, not {route}")))?;
    check_fields(obj, path, ROUTE_FIELDS)?;
    let dst =
        opt_str(obj, path, "dst")?.ok_or_else(|| invalid(format!("{path}.dst is missing")))?;
    let dst = parse_network(dst, &format!("{path}.dst"))?;
    let gw = opt_str(obj, path, "gw")?
        .map(|s| parse_address(s, path, "gw"))
        .transpose()?;
    if let Some(gw) = gw.filter(|gw| gw.is_ipv4() != dst.addr().is_ipv4()) {
        return Err(invalid(format!(
            "{path}: gateway {gw} is {} but destination {dst} is {}",
            family(&gw),
            family(&dst.addr())
        )));
    }
    Ok(Route {
        dst,
        gw,
        mtu: opt_uint(obj, path, "mtu")?,
        advmss: opt_uint(obj, path, "advmss")?,
        priority: opt_uint(obj, path, "priority")?,
        table: opt_uint(obj, path, "table")?,
        scope: opt_uint(obj, path, "scope")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn reason(value: Value) -> String {
        match IpamConfig::parse(&value) {
            Ok(c) => panic!("accepted {value}: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_rejected(value: Value, needles: &[&str]) {
        let message = reason(value);
        for needle in needles {
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn shorthand_defaults_skip_network_gateway_and_broadcast() {
        let c = IpamConfig::parse(&json!({"type": "polis", "subnet": "198.18.0.0/24"})).unwrap();
        assert_eq!(c.range_sets().len(), 1);
        let r = c.range_sets()[0].ranges()[0];
        assert_eq!(r.subnet(), "198.18.0.0/24".parse::<IpNet>().unwrap());
        assert_eq!(
            (r.gateway(), r.start(), r.end()),
            (ip("198.18.0.1"), ip("198.18.0.2"), ip("198.18.0.254"))
        );
        assert_eq!(c.range_sets()[0].capacity(), 253);
        assert_eq!(c.data_dir(), Path::new(DEFAULT_DATA_DIR));
        assert!(c.routes().is_empty());

        // A gateway elsewhere: the range starts right after the network address and skips the gateway.
        let c = IpamConfig::parse(
            &json!({"type": "host-local", "subnet": "198.18.0.0/30", "gateway": "198.18.0.2"}),
        )
        .unwrap();
        let r = c.range_sets()[0].ranges()[0];
        assert_eq!((r.start(), r.end()), (ip("198.18.0.1"), ip("198.18.0.2")));
        assert_eq!(r.capacity(), 1);

        // IPv6 has no broadcast address: the range runs to the subnet's last address.
        let c = IpamConfig::parse(&json!({"type": "polis", "subnet": "fd00::/120"})).unwrap();
        let r = c.range_sets()[0].ranges()[0];
        assert_eq!(
            (r.gateway(), r.start(), r.end()),
            (ip("fd00::1"), ip("fd00::2"), ip("fd00::ff"))
        );
    }

    #[test]
    fn host_local_example_parses() {
        let c = IpamConfig::parse(&json!({
            "type": "polis",
            "ranges": [
                [{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.200",
                  "gateway": "198.18.0.1"},
                 {"subnet": "198.18.1.0/24"}],
                [{"subnet": "fd00:198:18::/64"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "198.18.0.254", "mtu": 1400, "priority": 5}],
            "dataDir": "/run/polis/ipam"
        }))
        .unwrap();
        let sets = c.range_sets();
        assert_eq!(sets.len(), 2);
        assert!(sets[0].is_ipv4() && !sets[1].is_ipv4());
        assert_eq!(sets[1].index(), 1);
        assert_eq!(
            sets[0].ranges()[0].to_string(),
            "198.18.0.10-198.18.0.200 in 198.18.0.0/24"
        );
        assert_eq!(
            sets[0].ranges()[1].to_string(),
            "198.18.1.2-198.18.1.254 in 198.18.1.0/24"
        );
        assert_eq!(sets[0].capacity(), 191 + 253);
        assert_eq!(
            sets[1].ranges()[0].to_string(),
            "fd00:198:18::2-fd00:198:18:0:ffff:ffff:ffff:ffff in fd00:198:18::/64"
        );
        assert_eq!(sets[1].capacity(), (1u128 << 64) - 2);
        assert_eq!(c.routes()[1].gw, Some(ip("198.18.0.254")));
        assert_eq!(c.routes()[1].mtu, Some(1400));
        assert_eq!(
            serde_json::to_value(&c.routes()[1]).unwrap(),
            json!({"dst": "10.0.0.0/8", "gw": "198.18.0.254", "mtu": 1400, "priority": 5})
        );
        assert_eq!(c.data_dir(), Path::new("/run/polis/ipam"));
        assert_eq!(
            c.range_set_for(ip("198.18.1.7")).map(RangeSet::index),
            Some(0)
        );
        assert_eq!(c.range_set_for(ip("198.18.0.5")), None);
    }

    #[test]
    fn bad_cidrs_are_rejected() {
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0/24"}),
            &["ipam.subnet", "\"198.18.0/24\" is not a CIDR"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0"}),
            &["is not a CIDR"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/33"}),
            &["is not a CIDR"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": 24}),
            &["ipam.subnet must be a string"],
        );
        assert_rejected(
            json!({"type": "polis", "ranges": [[{"subnet": "198.18.0.5/24"}]]}),
            &[
                "ipam.ranges[0][0].subnet",
                "198.18.0.5/24 has host bits set",
                "198.18.0.0/24",
            ],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/31"}),
            &["too small", "/30"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "fd00::/127"}),
            &["too small", "/126"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/24", "routes": [{"dst": "10.1.2.3/8"}]}),
            &["ipam.routes[0].dst", "host bits"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/24", "routes": [{"dst": "::/0", "gw": "198.18.0.1"}]}),
            &["ipam.routes[0]", "gateway 198.18.0.1 is IPv4"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/24", "routes": [{"gw": "198.18.0.1"}]}),
            &["ipam.routes[0].dst is missing"],
        );
    }

    /// Subnets that cannot serve containers are refused with code 7, naming the field, the subnet and the block
    /// it meets; every way of giving a subnet (shorthand, ranges) is checked.
    #[test]
    fn subnets_that_cannot_serve_containers_are_refused() {
        let cases: &[(&str, &[&str])] = &[
            ("0.0.0.0/0", &["whole IPv4 address space"]),
            ("::/0", &["whole IPv6 address space"]),
            ("224.0.0.0/24", &["lies in 224.0.0.0/4", "multicast"]),
            ("224.0.0.0/4", &["it is 224.0.0.0/4", "multicast"]),
            ("239.255.0.0/16", &["multicast"]),
            ("ff00::/64", &["lies in ff00::/8", "multicast"]),
            ("ff02::/16", &["multicast"]),
            ("127.0.0.0/8", &["it is 127.0.0.0/8", "loopback"]),
            ("127.0.0.0/24", &["lies in 127.0.0.0/8", "loopback"]),
            ("127.5.0.0/16", &["loopback"]),
            ("::1/128", &["it is ::1/128", "loopback"]),
            // A subnet that would hand out ::1 (or ::) is refused for it too.
            ("::/96", &["contains ::1/128", "loopback"]),
            ("::/128", &["it is ::/128", "unspecified"]),
            ("169.254.0.0/16", &["it is 169.254.0.0/16", "link-local"]),
            ("169.254.1.0/24", &["link-local"]),
            ("fe80::/64", &["lies in fe80::/10", "link-local"]),
            ("fe80::/10", &["link-local"]),
            (
                "255.255.255.0/24",
                &["lies in 240.0.0.0/4", "limited broadcast"],
            ),
            ("240.0.0.0/4", &["reserved"]),
            ("0.0.0.0/8", &["it is 0.0.0.0/8", "unspecified"]),
            ("0.0.0.0/24", &["lies in 0.0.0.0/8"]),
            // Larger subnets that contain a block: 0.0.0.0/1 would hand out loopback addresses.
            ("0.0.0.0/1", &["contains 0.0.0.0/8"]),
            ("96.0.0.0/3", &["contains 127.0.0.0/8", "loopback"]),
            ("128.0.0.0/1", &["contains 169.254.0.0/16", "link-local"]),
        ];
        for (subnet, needles) in cases {
            for (config, field) in [
                (json!({"type": "polis", "subnet": subnet}), "ipam.subnet"),
                (
                    json!({"type": "polis", "ranges": [[{"subnet": "198.18.0.0/24"}], [{"subnet": subnet}]]}),
                    "ipam.ranges[1][0].subnet",
                ),
            ] {
                let err = IpamConfig::parse(&config).unwrap_err();
                assert_eq!(err.cni_code(), 7, "{err}");
                let message = err.to_string();
                let head = format!("{field}: {subnet} cannot serve containers: ");
                assert!(
                    message.contains(&head),
                    "{message:?} should contain {head:?}"
                );
                for needle in *needles {
                    assert!(
                        message.contains(needle),
                        "{subnet}: {message:?} should mention {needle:?}"
                    );
                }
                assert!(message.contains("private subnet"), "{message}");
            }
        }
    }

    /// Subnets next to the refused blocks, and the ones the tests and examples use, are fine.
    #[test]
    fn subnets_beside_the_refused_blocks_are_accepted() {
        for subnet in [
            "198.18.0.0/15",
            "198.18.0.0/24",
            "10.88.0.0/16",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "1.0.0.0/8",
            "126.255.255.0/24",
            "128.0.0.0/8",
            "169.253.0.0/16",
            "169.255.0.0/16",
            "223.255.255.0/24",
            "fd00::/8",
            "fd00:198:18::/64",
            "fe00::/16",
            "fec0::/10",
            "2001:db8::/32",
            "::2/127",
            "::4/126",
        ] {
            if let Err(e) = IpamConfig::parse(&json!({"type": "polis", "subnet": subnet})) {
                assert!(
                    !e.to_string().contains("cannot serve containers"),
                    "{subnet}: {e}"
                );
            }
            assert_eq!(unusable_subnet(subnet.parse().unwrap()), None, "{subnet}");
        }
    }

    /// DEL parses what ADD refuses for its subnet (so that it can release what an attachment holds), but nothing
    /// else that ADD refuses.
    #[test]
    fn release_parses_unusable_subnets_but_nothing_else_that_is_wrong() {
        for subnet in [
            "0.0.0.0/0",
            "::/0",
            "127.0.0.0/24",
            "255.255.255.0/24",
            "fe80::/64",
            "::1/128",
            "0.0.0.0/32",
            "255.255.255.255/32",
        ] {
            let ipam = json!({"type": "polis", "subnet": subnet, "dataDir": "/run/polis-test"});
            assert!(IpamConfig::parse(&ipam).is_err(), "{subnet}");
            let c = IpamConfig::parse_for_release(&ipam).unwrap();
            assert_eq!(c.range_sets()[0].ranges()[0].subnet().to_string(), subnet);
            assert_eq!(c.data_dir(), Path::new("/run/polis-test"));
        }
        for bad in [
            json!({"type": "polis", "subnet": "198.18.0.5/24"}),
            json!({"type": "polis", "subnet": "198.18.0/24"}),
            json!({"type": "polis", "subnet": "127.0.0.0/24", "dataDir": "relative"}),
            json!({"type": "polis", "subnet": "::/0", "rangeStart": "198.18.0.1"}),
        ] {
            let err = IpamConfig::parse_for_release(&bad).unwrap_err();
            assert_eq!(err.cni_code(), 7, "{err}");
        }
    }

    #[test]
    fn range_bounds_and_gateway_must_be_inside_and_ordered() {
        let subnet = |extra: Value| {
            let mut v = json!({"type": "polis", "subnet": "198.18.0.0/24"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        assert_rejected(
            subnet(json!({"rangeStart": "198.18.1.10"})),
            &[
                "ipam.rangeStart",
                "198.18.1.10 is outside subnet 198.18.0.0/24",
            ],
        );
        assert_rejected(
            subnet(json!({"rangeEnd": "fd00::1"})),
            &["ipam.rangeEnd", "IPv6", "IPv4"],
        );
        assert_rejected(
            subnet(json!({"gateway": "10.0.0.1"})),
            &["ipam.gateway", "outside"],
        );
        assert_rejected(
            subnet(json!({"rangeStart": "198.18.0.0"})),
            &["network address"],
        );
        assert_rejected(
            subnet(json!({"rangeEnd": "198.18.0.255"})),
            &["broadcast address"],
        );
        assert_rejected(
            subnet(json!({"gateway": "198.18.0.255"})),
            &["broadcast address"],
        );
        assert_rejected(
            subnet(json!({"rangeStart": "198.18.0.x"})),
            &["\"198.18.0.x\" is not an IP address"],
        );
        assert_rejected(
            subnet(json!({"rangeStart": "198.18.0.100", "rangeEnd": "198.18.0.50"})),
            &["rangeStart 198.18.0.100 is after rangeEnd 198.18.0.50"],
        );
        assert_rejected(
            subnet(
                json!({"rangeStart": "198.18.0.1", "rangeEnd": "198.18.0.1", "gateway": "198.18.0.1"}),
            ),
            &["no address to hand out"],
        );
        assert_rejected(
            json!({"type": "polis", "rangeStart": "198.18.0.5"}),
            &["ipam.subnet is missing"],
        );
    }

    #[test]
    fn overlaps_and_mixed_families_are_rejected() {
        assert_rejected(
            json!({"type": "polis", "ranges": [
                [{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.100"}],
                [{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.100", "rangeEnd": "198.18.0.200"}]
            ]}),
            &[
                "ipam.ranges[1][0]",
                "overlaps ipam.ranges[0][0]",
                "198.18.0.10-198.18.0.100",
            ],
        );
        assert_rejected(
            json!({"type": "polis", "ranges": [[{"subnet": "198.18.0.0/24"}, {"subnet": "198.18.0.0/24"}]]}),
            &["ipam.ranges[0][1]", "overlaps ipam.ranges[0][0]"],
        );
        assert_rejected(
            json!({"type": "polis", "ranges": [
                [{"subnet": "198.18.0.0/16", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.20"}],
                [{"subnet": "198.18.1.0/24"}]
            ]}),
            &[
                "ipam.ranges[1][0].subnet 198.18.1.0/24 overlaps ipam.ranges[0][0].subnet 198.18.0.0/16",
            ],
        );
        assert_rejected(
            json!({"type": "polis", "ranges": [[{"subnet": "198.18.0.0/24"}, {"subnet": "fd00::/64"}]]}),
            &[
                "ipam.ranges[0] mixes IPv4 (198.18.0.0/24) and IPv6 (fd00::/64)",
                "separate range sets",
            ],
        );
        // Disjoint ranges of one subnet are fine.
        IpamConfig::parse(&json!({"type": "polis", "ranges": [
            [{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.99"}],
            [{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.100", "rangeEnd": "198.18.0.200"}]
        ]}))
        .unwrap();
    }

    #[test]
    fn unknown_fields_and_structure_errors_are_named() {
        let err = IpamConfig::parse(
            &json!({"type": "polis", "subnet": "198.18.0.0/24", "rangestart": "198.18.0.9"}),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedField { field, .. } if field == "ipam.rangestart"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("did you mean \"rangeStart\"?"),
            "{err}"
        );
        assert_eq!(err.cni_code(), 2);
        assert_rejected(
            json!({"type": "polis", "ranges": [[{"subnet": "198.18.0.0/24", "gw": "198.18.0.1"}]]}),
            &[
                "\"ipam.ranges[0][0].gw\"",
                "known fields here: subnet, rangeStart, rangeEnd, gateway",
            ],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/24", "resolvConf": "/etc/resolv.conf"}),
            &["ipam.resolvConf", "\"dns\""],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/24", "routes": [{"dst": "0.0.0.0/0", "via": "x"}]}),
            &["ipam.routes[0].via"],
        );
        assert_rejected(
            json!({"subnet": "198.18.0.0/24"}),
            &["ipam.type is missing"],
        );
        assert_rejected(
            json!({"type": "dhcp", "subnet": "198.18.0.0/24"}),
            &["ipam.type \"dhcp\""],
        );
        assert_rejected(json!({"type": "polis"}), &["no addresses to manage"]);
        assert_rejected(
            json!({"type": "polis", "ranges": []}),
            &["ipam.ranges is empty"],
        );
        assert_rejected(
            json!({"type": "polis", "ranges": [[]]}),
            &["ipam.ranges[0] is an empty range set"],
        );
        assert_rejected(
            json!({"type": "polis", "ranges": [{"subnet": "198.18.0.0/24"}]}),
            &["ipam.ranges[0] must be a list"],
        );
        assert_rejected(
            json!({"type": "polis", "ranges": [[{"subnet": "198.18.0.0/24"}]], "subnet": "198.18.1.0/24"}),
            &["either \"ranges\" or the shorthand"],
        );
        assert_rejected(
            json!({"type": "polis", "subnet": "198.18.0.0/24", "dataDir": "var/lib/x"}),
            &["ipam.dataDir \"var/lib/x\" must be an absolute path"],
        );
        assert_rejected(json!(["not", "an", "object"]), &["must be a JSON object"]);
        let err =
            IpamConfig::parse(&json!({"type": "polis", "subnet": "198.18.0.5/24"})).unwrap_err();
        assert_eq!(err.cni_code(), 7);
    }
}
