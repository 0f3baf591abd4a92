//! Handing out, finding, releasing and collecting the addresses of one network.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::config::{IpamConfig, RangeSet, Route, from_u128, to_u128};
use super::request::AddressRequest;
use super::store::{LockedStore, Owner, Pending, Store};
use crate::error::{Error, Result};

/// How long an operation waits for another process's lock on the store before answering "try again" (CNI code 11).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many addresses after the last one handed out are tried directly before the store is listed.
const DIRECT_TRIES: usize = 8;

/// One address of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// The address with its subnet's prefix length, e.g. `198.18.0.10/24`.
    pub address: IpNet,
    /// The gateway of the range the address came from.
    pub gateway: IpAddr,
    /// The index of its range set in the config's `ranges`.
    pub range_set: usize,
}

/// How full one range set is (for STATUS and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RangeSetUsage {
    pub range_set: usize,
    /// Addresses held by some attachment.
    pub allocated: u128,
    /// Addresses the range set can hand out in all (its ranges, less gateways).
    pub capacity: u128,
}

impl RangeSetUsage {
    pub fn free(&self) -> u128 {
        self.capacity.saturating_sub(self.allocated)
    }
}

/// The addresses of one network: its config and its store directory. Cheap; every operation locks the store for
/// its duration, so any number of allocators (threads, processes) may work on one network at once.
#[derive(Debug, Clone)]
pub struct Allocator {
    config: IpamConfig,
    network: String,
    store: Store,
    lock_timeout: Duration,
}

impl Allocator {
    /// Opens the store of network `network` (creating `<dataDir>/<network>` if needed). The name must be a valid
    /// CNI network name (`[A-Za-z0-9][A-Za-z0-9_.-]*`), which also makes it a safe directory name.
    pub fn open(config: &IpamConfig, network: &str) -> Result<Allocator> {
        validate_network_name(network)?;
        let store = Store::open(config.data_dir(), network)?;
        Ok(Allocator {
            config: config.clone(),
            network: network.to_string(),
            store,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        })
    }

    /// Waits at most `timeout` for the store's lock (default [`DEFAULT_LOCK_TIMEOUT`]).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Allocator {
        self.lock_timeout = timeout;
        self
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn config(&self) -> &IpamConfig {
        &self.config
    }

    /// The routes of the config, to give the container with its addresses.
    pub fn routes(&self) -> &[Route] {
        self.config.routes()
    }

    /// The store directory of this network.
    pub fn store_dir(&self) -> &std::path::Path {
        self.store.dir()
    }

    /// ADD: one address from each range set for the attachment (`container_id`, `ifname`), in range set order.
    ///
    /// A range set where the attachment already holds an address gives that one again (a repeated ADD is
    /// idempotent). Otherwise a requested address inside the range set is reserved if free; without a request the
    /// next free address after the range set's last one is taken, wrapping around (round-robin, so a released
    /// address is not reused at once). All or nothing: on error no new address stays reserved.
    ///
    /// Errors: [`Error::AddressUnavailable`] for a request outside every range, on a gateway, with a prefix length
    /// other than its subnet's, two in one range set, or taken; [`Error::PoolExhausted`] when a range set is full.
    pub fn allocate(
        &self,
        container_id: &str,
        ifname: &str,
        requested: &[AddressRequest],
    ) -> Result<Vec<Allocation>> {
        validate_attachment(container_id, ifname)?;
        let wanted = self.requests_by_range_set(requested)?;

        let store = self.store.lock(self.lock_timeout)?;
        let mut reserved = Vec::new();
        let result = self.allocate_locked(&store, &mut reserved, container_id, ifname, &wanted);
        let result = result.and_then(|allocations| {
            if !reserved.is_empty() {
                store.sync()?;
            }
            Ok(allocations)
        });
        if result.is_err() {
            self.roll_back(&store, &reserved, &Owner::new(container_id, ifname));
        }
        result
    }

    /// The requests matched to their range sets (index = range set), checked against the config.
    fn requests_by_range_set(&self, requested: &[AddressRequest]) -> Result<Vec<Option<IpAddr>>> {
        let sets = self.config.range_sets();
        let mut wanted: Vec<Option<IpAddr>> = vec![None; sets.len()];
        for request in requested {
            let address = request.address;
            let unavailable = |reason: String| Error::AddressUnavailable {
                network: self.network.clone(),
                address: request.to_string(),
                reason,
            };
            let Some(set) = self.config.range_set_for(address) else {
                let ranges = sets.iter().flat_map(|s| s.ranges());
                let reason = if let Some(r) = ranges.clone().find(|r| r.gateway() == address) {
                    format!("it is the gateway of {}", r.subnet())
                } else if let Some(r) = ranges.clone().find(|r| r.subnet().contains(&address)) {
                    format!(
                        "it is in subnet {} but outside its address range {r}",
                        r.subnet()
                    )
                } else {
                    format!(
                        "it is outside every range of the network: {}",
                        sets.iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(unavailable(reason));
            };
            let range = set
                .range_for(address)
                .ok_or_else(|| unavailable("no range".into()))?;
            if range.gateway() == address {
                return Err(unavailable(format!(
                    "it is the gateway of {}",
                    range.subnet()
                )));
            }
            if let Some(prefix) = request
                .prefix_len
                .filter(|p| *p != range.subnet().prefix_len())
            {
                return Err(unavailable(format!(
                    "the request's prefix length /{prefix} is not that of its subnet {}",
                    range.subnet()
                )));
            }
            match wanted[set.index()] {
                Some(other) if other != address => {
                    return Err(unavailable(format!(
                        "{other} is also requested from {set}, which gives one address per attachment"
                    )));
                }
                _ => wanted[set.index()] = Some(address),
            }
        }
        Ok(wanted)
    }

    fn allocate_locked(
        &self,
        store: &LockedStore<'_>,
        reserved: &mut Vec<IpAddr>,
        container_id: &str,
        ifname: &str,
        wanted: &[Option<IpAddr>],
    ) -> Result<Vec<Allocation>> {
        let mut pending = None;
        let mut allocations = Vec::new();
        for (set, want) in self.config.range_sets().iter().zip(wanted) {
            let held = store
                .owned(container_id, ifname, set.index())
                .filter(|a| set.assignable_range_for(*a).is_some());
            let address = match (held, *want) {
                (Some(held), None) => held,
                (Some(held), Some(want)) if held == want => held,
                (Some(held), Some(want)) => {
                    return Err(Error::AddressUnavailable {
                        network: self.network.clone(),
                        address: want.to_string(),
                        reason: format!(
                            "container {container_id} interface {ifname} already holds {held} from {set}; delete the \
                             attachment first"
                        ),
                    });
                }
                (None, want) => {
                    let file = match &mut pending {
                        Some(file) => file,
                        none @ None => none.insert(store.pending(container_id, ifname)?),
                    };
                    let address = match want {
                        Some(want) if file.claim(want)? => want,
                        Some(want) => return Err(self.taken(want, store.owner(want).as_ref())),
                        None => self.claim_next(store, file, set)?,
                    };
                    reserved.push(address);
                    store.link_owner(container_id, ifname, set.index(), address)?;
                    address
                }
            };
            allocations.push(self.allocation(set, address));
        }
        tracing::debug!(
            network = %self.network,
            container_id,
            ifname,
            addresses = ?allocations.iter().map(|a| a.address).collect::<Vec<_>>(),
            new = reserved.len(),
            "allocated addresses"
        );
        Ok(allocations)
    }

    /// Claims the next free address of `set` after the last one handed out (round robin). The addresses after it
    /// are tried in turn, so a network with hundreds of allocations is not listed; after [`DIRECT_TRIES`] taken
    /// ones, the search goes on from the directory listing.
    fn claim_next(
        &self,
        store: &LockedStore<'_>,
        file: &Pending<'_>,
        set: &RangeSet,
    ) -> Result<IpAddr> {
        let last = store.last_reserved(set.index());
        let exhausted = || Error::PoolExhausted {
            network: self.network.clone(),
            pool: set.to_string(),
        };
        let mut taken = BTreeSet::new();
        for _ in 0..DIRECT_TRIES {
            let candidate = next_free(set, &taken, last).ok_or_else(exhausted)?;
            if file.claim(candidate)? {
                store.set_last_reserved(set.index(), candidate)?;
                return Ok(candidate);
            }
            taken.insert(candidate);
        }
        taken.extend(store.list_but(Some(file))?);
        let address = next_free(set, &taken, last).ok_or_else(exhausted)?;
        if !file.claim(address)? {
            // Only something ignoring the lock could have taken it since the directory was read.
            return Err(Error::Ipam {
                network: self.network.clone(),
                reason: format!("address {address} appeared in the store while it was locked"),
            });
        }
        store.set_last_reserved(set.index(), address)?;
        Ok(address)
    }

    fn taken(&self, address: IpAddr, owner: Option<&Owner>) -> Error {
        let reason = match owner {
            Some(o) => format!(
                "it is already allocated to container {} interface {}",
                o.container_id, o.ifname
            ),
            None => "it is already allocated".to_string(),
        };
        Error::AddressUnavailable {
            network: self.network.clone(),
            address: address.to_string(),
            reason,
        }
    }

    fn roll_back(&self, store: &LockedStore<'_>, reserved: &[IpAddr], owner: &Owner) {
        // The error being returned is the one that matters; a failed undo leaves an allocation GC will collect.
        let sets = self.config.range_sets().len();
        let undone = reserved
            .iter()
            .try_for_each(|a| store.remove(*a))
            .and_then(|()| store.unlink_owner(&owner.container_id, &owner.ifname, sets))
            .and_then(|()| store.sync());
        if let Err(e) = undone {
            tracing::warn!(network = %self.network, error = %e, "could not undo a failed allocation");
        }
    }

    fn allocation(&self, set: &RangeSet, address: IpAddr) -> Allocation {
        // Invariant: `address` was found in a range of `set` (held, requested or searched there).
        let range = set.range_for(address).copied();
        let (prefix, gateway) =
            range.map_or((0, address), |r| (r.subnet().prefix_len(), r.gateway()));
        Allocation {
            address: IpNet::new(address, prefix).unwrap_or_else(|_| IpNet::from(address)),
            gateway,
            range_set: set.index(),
        }
    }

    /// DEL: releases every address held by (`container_id`, `ifname`) and returns them. Releasing what is not held
    /// succeeds (DEL must be idempotent).
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let store = self.store.lock(self.lock_timeout)?;
        let sets = self.config.range_sets().len();
        let released = store.held_by(container_id, ifname, sets)?;
        released.iter().try_for_each(|a| store.remove(*a))?;
        store.unlink_owner(container_id, ifname, sets)?;
        if !released.is_empty() {
            store.sync()?;
        }
        tracing::debug!(network = %self.network, container_id, ifname, addresses = ?released, "released addresses");
        Ok(released)
    }

    /// GC: removes every allocation whose attachment is not among `valid` (container ID, interface name), including
    /// allocations whose file cannot be read, and returns the removed addresses.
    pub fn gc(&self, valid: &[(String, String)]) -> Result<Vec<IpAddr>> {
        let store = self.store.lock(self.lock_timeout)?;
        let stale: Vec<IpAddr> = store
            .entries()?
            .into_iter()
            .filter(|(_, owner)| {
                !owner
                    .as_ref()
                    .is_some_and(|o| valid.iter().any(|(id, ifname)| o.matches(id, ifname)))
            })
            .map(|(address, _)| address)
            .collect();
        stale.iter().try_for_each(|a| store.remove(*a))?;
        store.remove_dangling_links()?;
        if !stale.is_empty() {
            store.sync()?;
            tracing::info!(network = %self.network, addresses = ?stale, "collected addresses of gone attachments");
        }
        Ok(stale)
    }

    /// Whether (`container_id`, `ifname`) holds any address of this network (in the current ranges or not): an
    /// attachment that does not was never made here, or has been released, so an interface of that name is not
    /// this network's to delete.
    pub fn holds(&self, container_id: &str, ifname: &str) -> Result<bool> {
        let store = self.store.lock(self.lock_timeout)?;
        let held = store.held_by(container_id, ifname, self.config.range_sets().len())?;
        Ok(!held.is_empty())
    }

    /// The addresses (`container_id`, `ifname`) holds, one per range set at most, in range set order. Addresses
    /// outside the current ranges (the config changed) are not listed (DEL and GC still remove them).
    pub fn allocations(&self, container_id: &str, ifname: &str) -> Result<Vec<Allocation>> {
        let store = self.store.lock(self.lock_timeout)?;
        let held = store.held_by(container_id, ifname, self.config.range_sets().len())?;
        Ok(self
            .config
            .range_sets()
            .iter()
            .filter_map(|set| held_in(set, &held).map(|a| self.allocation(set, a)))
            .collect())
    }

    /// CHECK: the attachment's addresses, or an error if it lacks one in some range set.
    pub fn check(&self, container_id: &str, ifname: &str) -> Result<Vec<Allocation>> {
        let allocations = self.allocations(container_id, ifname)?;
        if let Some(set) = self
            .config
            .range_sets()
            .iter()
            .find(|s| !allocations.iter().any(|a| a.range_set == s.index()))
        {
            return Err(Error::Ipam {
                network: self.network.clone(),
                reason: format!(
                    "container {container_id} interface {ifname} holds no address from {set}"
                ),
            });
        }
        Ok(allocations)
    }

    /// How full each range set is.
    pub fn usage(&self) -> Result<Vec<RangeSetUsage>> {
        let store = self.store.lock(self.lock_timeout)?;
        let listing = store.list()?;
        Ok(self
            .config
            .range_sets()
            .iter()
            .map(|set| RangeSetUsage {
                range_set: set.index(),
                allocated: listing
                    .iter()
                    .filter(|a| set.assignable_range_for(**a).is_some())
                    .count() as u128,
                capacity: set.capacity(),
            })
            .collect())
    }

    /// STATUS: `Ok` while every range set has a free address, else [`Error::PoolExhausted`] naming the first full
    /// one (the plugin reports CNI code 50).
    pub fn status(&self) -> Result<()> {
        let usage = self.usage()?;
        match usage.iter().find(|u| u.free() == 0) {
            None => Ok(()),
            Some(full) => Err(Error::PoolExhausted {
                network: self.network.clone(),
                pool: self.config.range_sets()[full.range_set].to_string(),
            }),
        }
    }
}

/// The address of `held` (an attachment's, in order) in `set`, if any (the lowest, should there be several).
fn held_in(set: &RangeSet, held: &[IpAddr]) -> Option<IpAddr> {
    held.iter()
        .copied()
        .find(|a| set.assignable_range_for(*a).is_some())
}

/// Round-robin search: the first address of `set` that is neither taken nor a gateway, starting after `last` (or
/// at the first range's start when `last` is not in the set), through the following ranges, wrapping around to
/// end just before `last`. Steps are bounded by the number of taken addresses, so a /64 is no slower than a /24.
fn next_free(set: &RangeSet, taken: &BTreeSet<IpAddr>, last: Option<IpAddr>) -> Option<IpAddr> {
    let ranges = set.ranges();
    let ipv4 = set.is_ipv4();
    let last = last.and_then(|l| {
        ranges
            .iter()
            .position(|r| r.contains(l))
            .map(|i| (i, to_u128(l)))
    });
    let (first, from) = match last {
        Some((i, l)) => (i, l.checked_add(1)),
        None => (0, None),
    };
    // (range index, first candidate, last candidate)
    let mut segments = Vec::with_capacity(ranges.len() + 1);
    let start_of = |i: usize| to_u128(ranges[i].start());
    let end_of = |i: usize| to_u128(ranges[i].end());
    segments.push((
        first,
        from.unwrap_or_else(|| start_of(first)),
        end_of(first),
    ));
    for k in 1..ranges.len() {
        let i = (first + k) % ranges.len();
        segments.push((i, start_of(i), end_of(i)));
    }
    if let Some((i, l)) = last {
        segments.push((i, start_of(i), l));
    }
    segments.into_iter().find_map(|(i, from, to)| {
        let gateway = to_u128(ranges[i].gateway());
        let (Some(lo), Some(hi)) = (from_u128(from, ipv4), from_u128(to, ipv4)) else {
            return None;
        };
        if from > to {
            return None;
        }
        let used: BTreeSet<u128> = taken.range(lo..=hi).map(|a| to_u128(*a)).collect();
        let mut candidate = from;
        loop {
            if candidate > to {
                return None;
            }
            if candidate != gateway && !used.contains(&candidate) {
                return from_u128(candidate, ipv4);
            }
            candidate = candidate.checked_add(1)?;
        }
    })
}

/// CNI network names (`[A-Za-z0-9][A-Za-z0-9_.-]*`): a single, safe path component.
fn validate_network_name(name: &str) -> Result<()> {
    let ok = name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            reason: format!(
                "network name {name:?} is not valid: it must start with a letter or digit and hold only letters, \
                 digits, '_', '.' and '-' (at most 255)"
            ),
        })
    }
}

/// The store writes the container ID and the interface name as two lines: neither may be empty or hold a line break.
fn validate_attachment(container_id: &str, ifname: &str) -> Result<()> {
    let bad = |s: &str| s.is_empty() || s.trim() != s || s.chars().any(char::is_control);
    if bad(container_id) {
        return Err(Error::Environment {
            var: "CNI_CONTAINERID",
            reason: format!(
                "{container_id:?} must be non-empty, without control characters or surrounding spaces"
            ),
        });
    }
    if bad(ifname) || ifname.contains('/') {
        return Err(Error::Environment {
            var: "CNI_IFNAME",
            reason: format!("{ifname:?} is not a valid interface name"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::fs;
    use std::path::Path;
    use tempfile::TempDir;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A config with `dataDir` in a fresh temporary directory, and an allocator for network "test".
    fn setup(mut ipam: Value) -> (TempDir, Allocator) {
        let dir = tempfile::tempdir().unwrap();
        ipam["type"] = json!("polis");
        ipam["dataDir"] = json!(dir.path().join("networks"));
        let config = IpamConfig::parse(&ipam).unwrap();
        let allocator = Allocator::open(&config, "test").unwrap();
        (dir, allocator)
    }

    fn one(allocator: &Allocator, container: &str) -> IpAddr {
        let allocations = allocator.allocate(container, "eth0", &[]).unwrap();
        assert_eq!(allocations.len(), 1);
        allocations[0].address.addr()
    }

    /// The addresses recorded in the store directory.
    fn stored(allocator: &Allocator) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = fs::read_dir(allocator.store_dir())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect();
        v.sort();
        v
    }

    fn requests(list: &[&str]) -> Vec<AddressRequest> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn allocates_in_order_with_defaults_and_records_the_owner() {
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        let first = a.allocate("c1", "eth0", &[]).unwrap();
        assert_eq!(
            first,
            vec![Allocation {
                address: net("198.18.0.2/24"),
                gateway: ip("198.18.0.1"),
                range_set: 0
            }]
        );
        assert_eq!(one(&a, "c2"), ip("198.18.0.3"));
        assert_eq!(one(&a, "c3"), ip("198.18.0.4"));
        let store = a.store_dir();
        assert_eq!(
            fs::read_to_string(store.join("198.18.0.2")).unwrap(),
            "c1\neth0"
        );
        assert_eq!(
            fs::read_to_string(store.join("last_reserved_ip.0")).unwrap(),
            "198.18.0.4"
        );
        assert!(store.join("lock").exists());
        assert_eq!(store, Path::new(&a.config().data_dir().join("test")));
        assert_eq!(
            a.usage().unwrap(),
            vec![RangeSetUsage {
                range_set: 0,
                allocated: 3,
                capacity: 253
            }]
        );
    }

    #[test]
    fn round_robin_reuses_released_addresses_only_after_wrapping() {
        let (_dir, a) = setup(
            json!({"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.13"}),
        );
        assert_eq!(one(&a, "a"), ip("198.18.0.10"));
        assert_eq!(one(&a, "b"), ip("198.18.0.11"));
        assert_eq!(a.release("a", "eth0").unwrap(), vec![ip("198.18.0.10")]);
        assert_eq!(one(&a, "c"), ip("198.18.0.12"), "not the just-released .10");
        assert_eq!(one(&a, "d"), ip("198.18.0.13"));
        assert_eq!(
            one(&a, "e"),
            ip("198.18.0.10"),
            "wrapped around to the released address"
        );
        assert!(matches!(
            a.allocate("f", "eth0", &[]),
            Err(Error::PoolExhausted { .. })
        ));
        a.release("c", "eth0").unwrap();
        assert_eq!(one(&a, "f"), ip("198.18.0.12"));
    }

    #[test]
    fn range_set_spills_over_into_its_next_subnet_and_reports_exhaustion() {
        let (_dir, a) = setup(json!({"ranges": [[
            {"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.11"},
            {"subnet": "198.18.1.0/28", "rangeStart": "198.18.1.1", "rangeEnd": "198.18.1.2", "gateway": "198.18.1.1"}
        ]]}));
        assert_eq!(one(&a, "a"), ip("198.18.0.10"));
        assert_eq!(one(&a, "b"), ip("198.18.0.11"));
        let c = a.allocate("c", "eth0", &[]).unwrap();
        assert_eq!(
            c[0].address,
            net("198.18.1.2/28"),
            "the gateway .1.1 inside the range is skipped"
        );
        assert_eq!(c[0].gateway, ip("198.18.1.1"));
        a.status().unwrap_err();
        let err = a.allocate("d", "eth0", &[]).unwrap_err();
        assert!(matches!(err, Error::PoolExhausted { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("no free address left in range set 0 (198.18.0.10-198.18.0.11"),
            "{err}"
        );
        let status = a.status().unwrap_err();
        assert!(matches!(status, Error::PoolExhausted { .. }), "{status:?}");
        assert_eq!(stored(&a).len(), 3, "the failed ADD left nothing behind");

        a.release("a", "eth0").unwrap();
        a.status().unwrap();
        assert_eq!(one(&a, "d"), ip("198.18.0.10"));
    }

    #[test]
    fn dual_stack_gives_one_address_per_range_set_all_or_nothing() {
        let (_dir, a) = setup(
            json!({"ranges": [[{"subnet": "198.18.0.0/24"}], [{"subnet": "fd00:198:18::/126"}]]}),
        );
        let first = a.allocate("a", "eth0", &[]).unwrap();
        assert_eq!(
            first,
            vec![
                Allocation {
                    address: net("198.18.0.2/24"),
                    gateway: ip("198.18.0.1"),
                    range_set: 0
                },
                Allocation {
                    address: net("fd00:198:18::2/126"),
                    gateway: ip("fd00:198:18::1"),
                    range_set: 1
                },
            ]
        );
        assert_eq!(
            a.allocate("b", "eth0", &[]).unwrap()[1].address,
            net("fd00:198:18::3/126")
        );
        // The IPv6 set is full: the IPv4 address this ADD took is given back.
        let err = a.allocate("c", "eth0", &[]).unwrap_err();
        assert!(
            matches!(&err, Error::PoolExhausted { pool, .. } if pool.starts_with("range set 1")),
            "{err:?}"
        );
        assert_eq!(stored(&a).len(), 4);
        assert!(a.allocations("c", "eth0").unwrap().is_empty());
        assert_eq!(a.check("a", "eth0").unwrap(), first);
        assert_eq!(
            a.usage().unwrap()[1],
            RangeSetUsage {
                range_set: 1,
                allocated: 2,
                capacity: 2
            }
        );
    }

    #[test]
    fn static_requests_are_honoured_or_refused_by_name() {
        let (_dir, a) = setup(json!({"ranges": [
            [{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.200"}],
            [{"subnet": "fd00::/64"}]
        ]}));
        let got = a
            .allocate("a", "eth0", &requests(&["198.18.0.50/24"]))
            .unwrap();
        assert_eq!(got[0].address, net("198.18.0.50/24"));
        assert_eq!(
            got[1].address,
            net("fd00::2/64"),
            "the set without a request allocates dynamically"
        );
        // A static request does not move the round-robin position.
        assert_eq!(one_v4(&a, "b"), ip("198.18.0.10"));

        let unavailable = |container: &str, list: &[&str], needle: &str| {
            let err = a.allocate(container, "eth0", &requests(list)).unwrap_err();
            assert!(matches!(err, Error::AddressUnavailable { .. }), "{err:?}");
            assert_eq!(err.cni_code(), 7);
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle:?}"
            );
        };
        unavailable(
            "c",
            &["198.18.0.50"],
            "198.18.0.50: it is already allocated to container a interface eth0",
        );
        unavailable("c", &["10.0.0.1"], "10.0.0.1: it is outside every range");
        unavailable(
            "c",
            &["198.18.0.5"],
            "in subnet 198.18.0.0/24 but outside its address range 198.18.0.10-198.18.0.200",
        );
        unavailable("c", &["198.18.0.201"], "outside its address range");
        unavailable("c", &["198.18.0.1"], "it is the gateway of 198.18.0.0/24");
        unavailable("c", &["fd00::1"], "it is the gateway of fd00::/64");
        unavailable(
            "c",
            &["198.18.0.60/16"],
            "prefix length /16 is not that of its subnet 198.18.0.0/24",
        );
        unavailable(
            "c",
            &["198.18.0.60", "198.18.0.61"],
            "one address per attachment",
        );
        unavailable("a", &["198.18.0.51"], "already holds 198.18.0.50");
        assert!(a.allocations("c", "eth0").unwrap().is_empty());

        let got = a
            .allocate("c", "eth0", &requests(&["fd00::abcd", "198.18.0.60"]))
            .unwrap();
        assert_eq!(
            (got[0].address, got[1].address),
            (net("198.18.0.60/24"), net("fd00::abcd/64"))
        );
    }

    fn one_v4(a: &Allocator, container: &str) -> IpAddr {
        a.allocate(container, "eth0", &[]).unwrap()[0]
            .address
            .addr()
    }

    #[test]
    fn repeated_add_returns_the_same_addresses() {
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        let first = a.allocate("a", "eth0", &[]).unwrap();
        assert_eq!(a.allocate("a", "eth0", &[]).unwrap(), first);
        let requested = vec![AddressRequest::from(first[0].address.addr())];
        assert_eq!(a.allocate("a", "eth0", &requested).unwrap(), first);
        assert_eq!(stored(&a), vec![ip("198.18.0.2")]);
        // Another interface of the same container is another attachment.
        assert_eq!(
            a.allocate("a", "eth1", &[]).unwrap()[0].address.addr(),
            ip("198.18.0.3")
        );
        assert_eq!(a.check("a", "eth0").unwrap(), first);
    }

    #[test]
    fn release_is_per_attachment_and_idempotent() {
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        one(&a, "a");
        a.allocate("a", "eth1", &[]).unwrap();
        assert!(a.release("unknown", "eth0").unwrap().is_empty());
        assert_eq!(a.release("a", "eth0").unwrap(), vec![ip("198.18.0.2")]);
        assert!(a.release("a", "eth0").unwrap().is_empty());
        assert_eq!(stored(&a), vec![ip("198.18.0.3")]);
        let err = a.check("a", "eth0").unwrap_err();
        assert!(
            err.to_string()
                .contains("container a interface eth0 holds no address from range set 0"),
            "{err}"
        );
    }

    #[test]
    fn gc_removes_only_allocations_of_invalid_attachments() {
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        one(&a, "keep1");
        one(&a, "gone");
        a.allocate("keep1", "eth1", &[]).unwrap();
        one(&a, "keep2");
        // A file another tool left that names no owner.
        fs::write(a.store_dir().join("198.18.0.99"), "").unwrap();
        let valid = vec![
            ("keep1".to_string(), "eth0".to_string()),
            ("keep2".to_string(), "eth0".to_string()),
        ];
        let mut removed = a.gc(&valid).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            vec![ip("198.18.0.3"), ip("198.18.0.4"), ip("198.18.0.99")]
        );
        assert_eq!(stored(&a), vec![ip("198.18.0.2"), ip("198.18.0.5")]);
        assert!(a.gc(&valid).unwrap().is_empty());
        assert_eq!(a.gc(&[]).unwrap().len(), 2);
        assert!(stored(&a).is_empty());
    }

    #[test]
    fn store_survives_a_crash_and_a_new_allocator_sees_it() {
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        let first = a.allocate("a", "eth0", &[]).unwrap();
        // A crash between writing and linking an allocation leaves a temporary file: it does not hold its address.
        let leftover = a.store_dir().join(".tmp.198.18.0.3");
        fs::write(&leftover, "b").unwrap();
        // A crash while rewriting the round-robin hint leaves an unreadable hint: the search restarts at the start.
        fs::write(a.store_dir().join("last_reserved_ip.0"), "198.18").unwrap();

        let reopened = Allocator::open(a.config(), "test").unwrap();
        assert_eq!(reopened.allocations("a", "eth0").unwrap(), first);
        assert_eq!(reopened.usage().unwrap()[0].allocated, 1);
        assert!(
            !leftover.exists(),
            "a listing cleans the leftover under the lock"
        );
        assert_eq!(one(&reopened, "b"), ip("198.18.0.3"));
        assert_eq!(one(&reopened, "c"), ip("198.18.0.4"));
        // An owner in host-local's format (CRLF) is read too.
        fs::write(a.store_dir().join("198.18.0.9"), "hl\r\neth0").unwrap();
        assert_eq!(
            reopened.allocations("hl", "eth0").unwrap()[0].address,
            net("198.18.0.9/24")
        );
        assert_eq!(a.usage().unwrap()[0].allocated, 4);
    }

    /// The store's owner links: name -> target.
    fn owner_links(allocator: &Allocator) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = fs::read_dir(allocator.store_dir())
            .unwrap()
            .map(|e| e.unwrap())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let target = fs::read_link(e.path()).ok()?;
                name.starts_with(".owner.")
                    .then(|| (name, target.display().to_string()))
            })
            .collect();
        v.sort();
        v
    }

    /// Each attachment has an owner link per range set (a symlink to its address), so ADD and DEL find its
    /// addresses without listing the store; a link counts only while the address file names the same owner, and an
    /// attachment without links (host-local's) is found by reading the allocations.
    #[test]
    fn owner_links_find_an_attachment_without_listing_the_store() {
        let (_dir, a) = setup(
            json!({"ranges": [[{"subnet": "198.18.0.0/24"}], [{"subnet": "fd00:198:18::/64"}]]}),
        );
        a.allocate("a", "eth0", &[]).unwrap();
        a.allocate("b", "eth0", &[]).unwrap();
        let links = owner_links(&a);
        assert_eq!(links.len(), 4, "{links:?}");
        assert!(
            links
                .iter()
                .any(|(n, t)| n.ends_with(".0") && t == "198.18.0.2"),
            "{links:?}"
        );
        assert!(
            links
                .iter()
                .any(|(n, t)| n.ends_with(".1") && t == "fd00:198:18::2"),
            "{links:?}"
        );
        let store = a.store_dir();

        // b's IPv4 address file replaced behind the store's back (another owner): b's link to it no longer counts.
        fs::remove_file(store.join("198.18.0.3")).unwrap();
        fs::write(store.join("198.18.0.3"), "c\neth0").unwrap();
        let b: Vec<IpAddr> = a
            .allocations("b", "eth0")
            .unwrap()
            .iter()
            .map(|x| x.address.addr())
            .collect();
        assert_eq!(b, [ip("fd00:198:18::3")]);
        // c has no link: found by reading the allocations.
        assert_eq!(
            a.allocations("c", "eth0").unwrap()[0].address,
            net("198.18.0.3/24")
        );
        // A repeated ADD of a finds its addresses through its links.
        let again = a.allocate("a", "eth0", &[]).unwrap();
        assert_eq!(again[0].address.addr(), ip("198.18.0.2"));
        assert_eq!(owner_links(&a).len(), 4);

        // DEL removes the addresses and the links; GC removes b's link to c's address.
        assert_eq!(
            a.release("a", "eth0").unwrap(),
            vec![ip("198.18.0.2"), ip("fd00:198:18::2")]
        );
        assert_eq!(owner_links(&a).len(), 2);
        let valid = vec![
            ("b".to_string(), "eth0".to_string()),
            ("c".to_string(), "eth0".to_string()),
        ];
        assert!(a.gc(&valid).unwrap().is_empty());
        let links = owner_links(&a);
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].1, "fd00:198:18::3");
        assert_eq!(a.release("c", "eth0").unwrap(), vec![ip("198.18.0.3")]);
        assert_eq!(a.release("b", "eth0").unwrap(), vec![ip("fd00:198:18::3")]);
        assert!(stored(&a).is_empty());
        assert!(owner_links(&a).is_empty());
    }

    /// With many addresses taken after the last one handed out, the search goes on from the listing.
    #[test]
    fn a_long_run_of_taken_addresses_is_skipped() {
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        for n in 2..40 {
            fs::write(
                a.store_dir().join(format!("198.18.0.{n}")),
                format!("x{n}\neth0"),
            )
            .unwrap();
        }
        assert_eq!(one(&a, "c"), ip("198.18.0.40"));
        assert_eq!(one(&a, "d"), ip("198.18.0.41"));
    }

    #[test]
    fn concurrent_allocators_hand_out_distinct_addresses_and_release_them_all() {
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        let config = a.config().clone();
        let threads: Vec<_> = (0..50)
            .map(|t| {
                let config = config.clone();
                std::thread::spawn(move || {
                    // Each thread opens its own allocator, as separate plugin processes would.
                    let a = Allocator::open(&config, "test").unwrap();
                    (0..4)
                        .map(|i| {
                            a.allocate(&format!("c{t}-{i}"), "eth0", &[]).unwrap()[0]
                                .address
                                .addr()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<IpAddr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200, "200 distinct addresses");
        assert_eq!(stored(&a), all);
        assert_eq!(a.usage().unwrap()[0].allocated, 200);

        let threads: Vec<_> = (0..50)
            .map(|t| {
                let config = config.clone();
                std::thread::spawn(move || {
                    let a = Allocator::open(&config, "test").unwrap();
                    for i in 0..4 {
                        assert_eq!(a.release(&format!("c{t}-{i}"), "eth0").unwrap().len(), 1);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(stored(&a).is_empty());
        assert_eq!(a.usage().unwrap()[0].allocated, 0);
    }

    #[test]
    fn a_lock_held_too_long_asks_to_try_again() {
        use nix::fcntl::{Flock, FlockArg};
        let (_dir, a) = setup(json!({"subnet": "198.18.0.0/24"}));
        let a = a.with_lock_timeout(Duration::from_millis(100));
        a.status().unwrap(); // creates the lock file
        let file = fs::File::open(a.store_dir().join("lock")).unwrap();
        let held = Flock::lock(file, FlockArg::LockExclusive).unwrap();
        let err = a.allocate("a", "eth0", &[]).unwrap_err();
        assert!(matches!(err, Error::TryAgain { .. }), "{err:?}");
        assert_eq!(err.cni_code(), 11);
        drop(held);
        assert_eq!(one(&a, "a"), ip("198.18.0.2"));

        // A holder that lets go within the timeout is waited for.
        let a = a.with_lock_timeout(Duration::from_secs(10));
        let file = fs::File::open(a.store_dir().join("lock")).unwrap();
        let held = Flock::lock(file, FlockArg::LockExclusive).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        assert_eq!(one(&a, "b"), ip("198.18.0.3"));
        releaser.join().unwrap();
    }

    #[test]
    fn names_that_would_corrupt_the_store_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = IpamConfig::parse(
            &json!({"type": "polis", "subnet": "198.18.0.0/24", "dataDir": dir.path()}),
        )
        .unwrap();
        for bad in ["", "..", "../etc", "a/b", ".hidden", "x\n"] {
            let err = Allocator::open(&config, bad).unwrap_err();
            assert!(err.to_string().contains("network name"), "{bad:?}: {err}");
        }
        let a = Allocator::open(&config, "polis-0_net.v4").unwrap();
        let err = a.allocate("a\nb", "eth0", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Environment {
                    var: "CNI_CONTAINERID",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = a.allocate("a", "", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Environment {
                    var: "CNI_IFNAME",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(a.allocations("a", "eth0").unwrap().is_empty());
        assert_eq!(a.routes(), &[]);
        a.status().unwrap();
    }

    #[test]
    fn next_free_walks_large_ipv6_ranges_without_enumerating_them() {
        let config = IpamConfig::parse(&json!({"type": "polis", "subnet": "fd00::/64"})).unwrap();
        let set = &config.range_sets()[0];
        let mut taken = BTreeSet::new();
        for n in 2..1000u128 {
            taken.insert(IpAddr::V6((0xfd00u128 << 112 | n).into()));
        }
        assert_eq!(next_free(set, &taken, None), Some(ip("fd00::3e8")));
        assert_eq!(
            next_free(set, &taken, Some(ip("fd00::ffff:ffff:ffff:ffff"))),
            Some(ip("fd00::3e8"))
        );
        assert_eq!(
            next_free(set, &taken, Some(ip("fd00::5"))),
            Some(ip("fd00::3e8"))
        );
        assert_eq!(
            next_free(set, &BTreeSet::new(), Some(ip("fd00::5"))),
            Some(ip("fd00::6"))
        );
    }
}
