//! Network and endpoint records: the predefined networks, create/list/inspect/remove/prune, and planning a
//! container's endpoints.

use super::netplug::forget_netplug_network;
use super::*;

impl Core {
    pub(super) fn network_event(
        &self,
        network: &NetworkRecord,
        action: &str,
        extra: &[(&str, &str)],
    ) {
        let mut a = HashMap::new();
        a.insert("name".to_string(), network.name.clone());
        a.insert("type".to_string(), network.driver.as_str().to_string());
        for (k, v) in extra {
            a.insert(k.to_string(), v.to_string());
        }
        self.events
            .publish(EventMessageTypeEnum::NETWORK, action, &network.id, a);
    }

    fn bridge_record(
        &self,
        id: String,
        name: &str,
        bridge: &str,
        subnets: Vec<Subnet>,
        internal: bool,
        mtu: Option<u32>,
    ) -> Result<NetworkRecord> {
        let cni = conflist(name, bridge, &subnets, internal, mtu, &self.netplug_dir());
        // polis-netplug's own checks of the addresses (a subnet that cannot serve containers, say).
        polis_netplug::ipam::IpamConfig::parse(&cni["plugins"][0]["ipam"])
            .map_err(|e| Error::Invalid(format!("network {name}: {e}")))?;
        Ok(NetworkRecord {
            id,
            name: name.to_string(),
            driver: Driver::Bridge,
            created: crate::core::logs::now(),
            internal,
            subnets,
            bridge: bridge.to_string(),
            cni,
            ..Default::default()
        })
    }

    /// The default `bridge` record as the config wants it.
    fn default_bridge(&self, id: String) -> Result<NetworkRecord> {
        let bad = |e: Error| {
            Error::Failed(format!(
                "default_bridge_subnet {:?}: {e}",
                self.config.default_bridge_subnet
            ))
        };
        let subnet = parse_subnet(&self.config.default_bridge_subnet).map_err(bad)?;
        let gateway = gateway_of(&subnet, None).map_err(bad)?;
        let mut record = self
            .bridge_record(
                id,
                BRIDGE,
                DEFAULT_BRIDGE_DEVICE,
                vec![Subnet {
                    subnet,
                    gateway,
                    range: None,
                }],
                false,
                None,
            )
            .map_err(bad)?;
        record.predefined = true;
        record.options = [
            ("com.docker.network.bridge.default_bridge", "true"),
            ("com.docker.network.bridge.enable_ip_masquerade", "true"),
            (BRIDGE_NAME_OPTION, DEFAULT_BRIDGE_DEVICE),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Ok(record)
    }

    /// Makes the predefined networks (bridge, host, none) when missing; moves the default bridge to the
    /// configured subnet when it changed and no container uses it.
    pub fn init_networks(&self) -> Result<()> {
        let _lock = networks_lock();
        let known = self.db.networks()?;
        match known.iter().find(|n| n.name == BRIDGE) {
            None => self
                .db
                .insert_network(&self.default_bridge(random_id()?)?)?,
            Some(old) => {
                let wanted = self.default_bridge(old.id.clone())?;
                if wanted.subnets != old.subnets {
                    if self.live_endpoints(&old.id)?.is_empty() {
                        tracing::info!(from = ?old.subnets, to = ?wanted.subnets, "the default bridge changes subnet");
                        forget_netplug_network(
                            &self.netplug_dir(),
                            &old.name,
                            &old.bridge,
                            old.internal,
                        );
                        let mut new = wanted;
                        new.created = old.created.clone();
                        self.db.update_network(&new)?;
                    } else {
                        tracing::warn!(
                            "default_bridge_subnet changed, but running containers use the bridge network: it keeps its subnet until they stop and polisd restarts"
                        );
                    }
                }
            }
        }
        for (name, driver) in [(HOST, Driver::Host), (NONE, Driver::Null)] {
            if !known.iter().any(|n| n.name == name) {
                self.db.insert_network(&NetworkRecord {
                    id: random_id()?,
                    name: name.into(),
                    driver,
                    created: crate::core::logs::now(),
                    predefined: true,
                    ..Default::default()
                })?;
            }
        }
        Ok(())
    }

    /// Endpoints of the network whose containers run.
    fn live_endpoints(&self, network_id: &str) -> Result<Vec<EndpointRecord>> {
        let mut out = Vec::new();
        for e in self.db.endpoints_in(network_id)? {
            let live = self
                .db
                .get(&e.container_id)?
                .is_some_and(|c| c.state.status.is_live());
            if live {
                out.push(e);
            }
        }
        Ok(out)
    }

    pub fn network(&self, reference: &str) -> Result<NetworkRecord> {
        self.db.lookup_network(reference)
    }

    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        self.db.networks()
    }

    /// A network's endpoints whose containers run, with their containers.
    pub fn network_members(
        &self,
        network: &NetworkRecord,
    ) -> Result<Vec<(EndpointRecord, ContainerRecord)>> {
        let mut out = Vec::new();
        for e in self.db.endpoints_in(&network.id)? {
            if let Some(c) = self.db.get(&e.container_id)?
                && c.state.status.is_live()
            {
                out.push((e, c));
            }
        }
        Ok(out)
    }

    /// The networks that pass `filter` (`GET /networks`, polis.v1 Networks/List).
    pub fn list_networks(&self, filter: &NetworkFilter) -> Result<Vec<NetworkRecord>> {
        let mut out = Vec::new();
        for n in self.db.networks()? {
            if !filter.passes(&n) {
                continue;
            }
            if let Some(wanted) = filter.dangling {
                let dangling = !n.predefined && self.network_members(&n)?.is_empty();
                if wanted != dangling {
                    continue;
                }
            }
            out.push(n);
        }
        Ok(out)
    }

    /// The running containers on a network as inspect shows them (Docker's `Containers` of a network).
    pub fn network_endpoints(&self, network: &NetworkRecord) -> Result<Vec<NetworkMember>> {
        Ok(self
            .network_members(network)?
            .into_iter()
            .map(|(e, c)| {
                let a = e.attached.clone().unwrap_or_default();
                NetworkMember {
                    container_id: c.id.clone(),
                    container_name: c.name.clone(),
                    endpoint_id: e.endpoint_id.clone(),
                    mac: a.mac.clone(),
                    ipv4: a.addresses.iter().find(|x| x.addr().is_ipv4()).copied(),
                    ipv6: a.addresses.iter().find(|x| !x.addr().is_ipv4()).copied(),
                    aliases: e.aliases,
                }
            })
            .collect())
    }

    /// A container's endpoints with their networks (an endpoint whose network is gone has None).
    pub fn container_networks(
        &self,
        container_id: &str,
    ) -> Result<Vec<(EndpointRecord, Option<NetworkRecord>)>> {
        self.db
            .endpoints_of(container_id)?
            .into_iter()
            .map(|e| {
                let n = self.db.network(&e.network_id)?;
                Ok((e, n))
            })
            .collect()
    }

    /// Creates a bridge network (`POST /networks/create`); its ID and a warning.
    pub fn create_network(&self, req: NetworkCreateRequest) -> Result<(String, String)> {
        check_network_name(&req.name)?;
        match req.driver.as_deref().unwrap_or("") {
            "" | "bridge" => {}
            other => {
                return Err(Error::Invalid(format!(
                    "network driver {other:?} is not supported: polisd makes bridge networks only"
                )));
            }
        }
        let ipam = req.ipam.clone().unwrap_or_default();
        if let Some(d) = ipam
            .driver
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "default")
        {
            return Err(Error::Invalid(format!(
                "IPAM driver {d:?} is not supported: polisd has the default one only"
            )));
        }
        let options = req.options.clone().unwrap_or_default();
        let mtu = match options.get(MTU_OPTION) {
            None => None,
            Some(m) => Some(
                m.parse::<u32>()
                    .ok()
                    .filter(|m| *m >= 68)
                    .ok_or_else(|| Error::Invalid(format!("invalid {MTU_OPTION} {m:?}")))?,
            ),
        };
        let id = random_id()?;
        let bridge = match options.get(BRIDGE_NAME_OPTION) {
            Some(b) => {
                polis_netplug::link::validate_interface_name(b)
                    .map_err(|why| Error::Invalid(format!("bridge name {b:?}: {why}")))?;
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let _lock = networks_lock();
        let existing = self.db.networks()?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(Error::AlreadyExists(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        if existing.iter().any(|n| n.bridge == bridge) {
            return Err(Error::Conflict(format!(
                "bridge device {bridge} is already used by another network"
            )));
        }
        let taken: Vec<IpNet> = existing
            .iter()
            .flat_map(|n| n.subnets.iter().map(|s| s.subnet))
            .collect();
        let mut subnets: Vec<Subnet> = Vec::new();
        for c in ipam.config.clone().unwrap_or_default() {
            let Some(text) = c.subnet.as_deref().filter(|s| !s.is_empty()) else {
                if c.gateway.is_some() || c.ip_range.is_some() {
                    return Err(Error::Invalid(
                        "a gateway or an IP range needs a subnet in the same IPAM config".into(),
                    ));
                }
                continue;
            };
            let subnet = parse_subnet(text)?;
            if let Some(other) = taken
                .iter()
                .chain(subnets.iter().map(|s| &s.subnet))
                .find(|t| overlaps(t, &subnet))
            {
                return Err(Error::Invalid(format!(
                    "invalid pool request: Pool overlaps with other one on this address space ({subnet} and {other})"
                )));
            }
            let range = match c.ip_range.as_deref().filter(|r| !r.is_empty()) {
                None => None,
                Some(r) => {
                    let r: IpNet = r
                        .parse()
                        .map_err(|_| Error::Invalid(format!("invalid IP range {r:?}")))?;
                    if !subnet.contains(&r) {
                        return Err(Error::Invalid(format!(
                            "IP range {r} is not inside subnet {subnet}"
                        )));
                    }
                    Some(r.trunc())
                }
            };
            subnets.push(Subnet {
                subnet,
                gateway: gateway_of(&subnet, c.gateway.as_deref())?,
                range,
            });
        }
        if subnets.iter().any(|s| !s.subnet.addr().is_ipv4()) && !req.enable_ipv6.unwrap_or(false) {
            return Err(Error::Invalid(
                "an IPv6 subnet needs EnableIPv6 (--ipv6)".into(),
            ));
        }
        if !subnets.iter().any(|s| s.subnet.addr().is_ipv4()) {
            let pools: Vec<(IpNet, u8)> = self
                .config
                .default_address_pools
                .iter()
                .filter_map(|p| p.base.parse::<IpNet>().ok().map(|b| (b.trunc(), p.size)))
                .collect();
            let mut avoid = taken.clone();
            avoid.extend(host_routes());
            let subnet = pick_subnet(&pools, &avoid).ok_or_else(|| {
                Error::Failed(
                    "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
                        .into(),
                )
            })?;
            subnets.insert(
                0,
                Subnet {
                    subnet,
                    gateway: gateway_of(&subnet, None)?,
                    range: None,
                },
            );
        }
        let internal = req.internal.unwrap_or(false);
        let mut record = self.bridge_record(id, &req.name, &bridge, subnets, internal, mtu)?;
        record.attachable = req.attachable.unwrap_or(false);
        record.enable_ipv6 = req.enable_ipv6.unwrap_or(false);
        record.labels = req.labels.clone().unwrap_or_default();
        record.options = options;
        self.db.insert_network(&record)?;
        self.network_event(&record, "create", &[]);
        Ok((record.id, String::new()))
    }

    /// Removes a user network (`DELETE /networks/{id}`): refused for the predefined ones and while containers
    /// on it run.
    pub async fn remove_network(&self, reference: &str) -> Result<()> {
        let network = self.db.lookup_network(reference)?;
        // A container that just exited may still be leaving the network (its CNI DEL): wait for it.
        let mut members: Vec<String> = self
            .db
            .endpoints_in(&network.id)?
            .into_iter()
            .map(|e| e.container_id)
            .collect();
        members.sort();
        let locks: Vec<_> = members.iter().map(|id| container_lock(id)).collect();
        let mut guards = Vec::new();
        for l in &locks {
            guards.push(l.lock().await);
        }
        {
            let _lock = networks_lock();
            if network.predefined {
                return Err(Error::Forbidden(format!(
                    "{} is a pre-defined network and cannot be removed",
                    network.name
                )));
            }
            if !self.live_endpoints(&network.id)?.is_empty() {
                return Err(Error::Conflict(format!(
                    "error while removing network: network {} id {} has active endpoints",
                    network.name, network.id
                )));
            }
            self.db.remove_network(&network.id)?;
        }
        let (dir, name, bridge, internal) = (
            self.netplug_dir(),
            network.name.clone(),
            network.bridge.clone(),
            network.internal,
        );
        blocking(move || {
            forget_netplug_network(&dir, &name, &bridge, internal);
            Ok(())
        })
        .await?;
        self.network_event(&network, "destroy", &[]);
        Ok(())
    }

    /// Removes the user networks no running container uses that `filter` selects (`POST /networks/prune`,
    /// polis.v1 Networks/Prune); their names.
    pub async fn prune_networks(&self, filter: &NetworkPruneFilter) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.db.networks()? {
            if n.predefined || !filter.selects(&n) || !self.live_endpoints(&n.id)?.is_empty() {
                continue;
            }
            match self.remove_network(&n.id).await {
                Ok(()) => removed.push(n.name),
                Err(Error::Conflict(_)) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The networks a container asks for at create (`HostConfig.NetworkMode` and `NetworkingConfig`), checked.
    pub fn plan_endpoints(
        &self,
        host: &HostConfig,
        networking: Option<&NetworkingConfig>,
        exposed: &[String],
    ) -> Result<Vec<(NetworkRecord, EndpointSettings)>> {
        let mode = host
            .network_mode
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "default".into());
        if mode.starts_with("container:") {
            return Err(Error::Invalid(format!(
                "network mode {mode} is not supported by polisd"
            )));
        }
        let primary = match mode.as_str() {
            "default" | BRIDGE => self.db.lookup_network(BRIDGE)?,
            other => self.db.lookup_network(other)?,
        };
        port_requests(host, exposed)?;
        let mut configs = networking
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let take = |configs: &mut HashMap<String, EndpointSettings>, n: &NetworkRecord| {
            [mode.as_str(), n.name.as_str(), n.id.as_str()]
                .iter()
                .find_map(|k| configs.remove(*k))
        };
        let settings = take(&mut configs, &primary).unwrap_or_default();
        let mut planned = vec![(primary, settings)];
        let mut extra: Vec<(String, EndpointSettings)> = configs.into_iter().collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, settings) in extra {
            let n = self.db.lookup_network(&name)?;
            if planned[0].0.driver != Driver::Bridge || n.driver != Driver::Bridge {
                return Err(Error::Invalid(format!(
                    "Container cannot be connected to network endpoints: {}, {name}",
                    planned[0].0.name
                )));
            }
            if !planned.iter().any(|(p, _)| p.id == n.id) {
                planned.push((n, settings));
            }
        }
        for (n, s) in &planned {
            check_endpoint_settings(n, s)?;
        }
        Ok(planned)
    }

    /// Records a new container's endpoints (after `plan_endpoints`); on failure the container's row goes too.
    pub fn add_endpoints(
        &self,
        container_id: &str,
        planned: &[(NetworkRecord, EndpointSettings)],
    ) -> Result<()> {
        let result = (|| {
            let _lock = networks_lock();
            for (n, s) in planned {
                if self.db.network(&n.id)?.is_none() {
                    return Err(Error::NotFound(format!("network {} not found", n.name)));
                }
                let e = self.new_endpoint(container_id, n, s)?;
                self.db.put_endpoint(&e)?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = self.db.remove_endpoints_of(container_id);
            let _ = self.db.remove(container_id);
        }
        result
    }

    pub(super) fn new_endpoint(
        &self,
        container_id: &str,
        network: &NetworkRecord,
        settings: &EndpointSettings,
    ) -> Result<EndpointRecord> {
        let ifname = if network.driver == Driver::Bridge {
            let used: Vec<String> = self
                .db
                .endpoints_of(container_id)?
                .into_iter()
                .map(|e| e.ifname)
                .collect();
            (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(n))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut static_ips = Vec::new();
        if let Some(c) = &settings.ipam_config {
            for a in [&c.ipv4_address, &c.ipv6_address]
                .into_iter()
                .flatten()
                .filter(|a| !a.is_empty())
            {
                static_ips.push(
                    a.parse::<IpAddr>()
                        .map_err(|_| Error::Invalid(format!("invalid IP address {a:?}")))?,
                );
            }
        }
        Ok(EndpointRecord {
            network_id: network.id.clone(),
            network_name: network.name.clone(),
            container_id: container_id.to_string(),
            endpoint_id: random_id()?,
            ifname,
            aliases: settings.aliases.clone().unwrap_or_default(),
            static_ips,
            attached: None,
        })
    }
}

/// Which networks a list returns (`docker network ls` filters, polis.v1's NetworkFilter): each non-empty list must
/// match one of its values; `dangling`: only networks (not predefined) no running container is on, or only the
/// others.
#[derive(Debug, Clone, Default)]
pub struct NetworkFilter {
    /// ID prefixes.
    pub ids: Vec<String>,
    /// Substrings of names.
    pub names: Vec<String>,
    pub drivers: Vec<String>,
    /// `KEY` or `KEY=VALUE`.
    pub labels: Vec<String>,
    /// Scopes: only "local" matches.
    pub scopes: Vec<String>,
    /// "builtin" (the predefined networks) or "custom".
    pub types: Vec<String>,
    pub dangling: Option<bool>,
}

impl NetworkFilter {
    /// Whether the network passes the lists (`dangling` needs the database: [`Core::list_networks`]).
    fn passes(&self, n: &NetworkRecord) -> bool {
        let any = |values: &[String], pass: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| pass(v))
        };
        any(&self.names, &|v| n.name.contains(v))
            && any(&self.ids, &|v| n.id.starts_with(v))
            && any(&self.drivers, &|v| n.driver.as_str() == v)
            && any(&self.scopes, &|v| v == "local")
            && any(&self.types, &|v| match v {
                "builtin" => n.predefined,
                "custom" => !n.predefined,
                _ => false,
            })
            && any(&self.labels, &|v| crate::core::label_matches(&n.labels, v))
    }
}

/// Which unused user networks a prune removes (`POST /networks/prune` filters, polis.v1's PruneNetworksRequest).
#[derive(Debug, Clone, Default)]
pub struct NetworkPruneFilter {
    /// Only networks created before this Unix time.
    pub until: Option<i64>,
    /// Only networks with every one of these labels (`KEY` or `KEY=VALUE`).
    pub labels: Vec<String>,
    /// Only networks with none of these labels.
    pub not_labels: Vec<String>,
}

impl NetworkPruneFilter {
    pub fn selects(&self, n: &NetworkRecord) -> bool {
        let has = |v: &String| crate::core::label_matches(&n.labels, v);
        let created = chrono::DateTime::parse_from_rfc3339(&n.created)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        self.until.is_none_or(|b| created < b)
            && self.labels.iter().all(has)
            && !self.not_labels.iter().any(has)
    }
}

/// A running container on a network, as a network's inspect shows it.
#[derive(Debug, Clone, Default)]
pub struct NetworkMember {
    pub container_id: String,
    pub container_name: String,
    pub endpoint_id: String,
    pub mac: String,
    pub ipv4: Option<IpNet>,
    pub ipv6: Option<IpNet>,
    /// The names asked for besides the container's name (EndpointSettings.Aliases).
    pub aliases: Vec<String>,
}

/// A container's names on a user network: those its ADD registers (the `aliases` capability: its name, the
/// endpoint's aliases, its hostname when one was asked for), and those Docker lists as its DNS names (the same
/// and its short ID, which polis-netplug registers by itself).
pub(super) fn user_network_names(
    record: &ContainerRecord,
    endpoint: &EndpointRecord,
) -> (Vec<String>, Vec<String>) {
    let mut names = vec![record.name.clone()];
    for a in &endpoint.aliases {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    if let Some(h) = record.config.hostname.as_ref().filter(|h| !h.is_empty())
        && !names.contains(h)
    {
        names.push(h.clone());
    }
    let mut listed = names.clone();
    listed.push(record.short_id().to_string());
    (names, listed)
}

/// Endpoint settings a network can take: aliases only on user networks (Docker's rule).
pub(super) fn check_endpoint_settings(
    network: &NetworkRecord,
    settings: &EndpointSettings,
) -> Result<()> {
    let aliases = settings.aliases.clone().unwrap_or_default();
    if !aliases.is_empty() && !network.is_user_bridge() {
        return Err(Error::Invalid(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    let has_static = settings.ipam_config.as_ref().is_some_and(|c| {
        c.ipv4_address.as_deref().is_some_and(|a| !a.is_empty())
            || c.ipv6_address.as_deref().is_some_and(|a| !a.is_empty())
    });
    if has_static && !network.is_user_bridge() {
        return Err(Error::Invalid(
            "user specified IP address is supported on user defined networks only".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(name: &str, predefined: bool, labels: &[(&str, &str)]) -> NetworkRecord {
        NetworkRecord {
            id: format!("{name}0123456789"),
            name: name.into(),
            predefined,
            created: "2026-01-02T03:04:05.000000006Z".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn list_filters_match_one_value_of_each_list() {
        let n = network("front", false, &[("tier", "web")]);
        let passes = |f: NetworkFilter| f.passes(&n);
        assert!(passes(NetworkFilter::default()));
        assert!(passes(NetworkFilter {
            names: vec!["nope".into(), "ron".into()],
            ids: vec!["front01".into()],
            drivers: vec!["bridge".into()],
            labels: vec!["tier=web".into()],
            scopes: vec!["local".into()],
            types: vec!["custom".into()],
            ..Default::default()
        }));
        assert!(!passes(NetworkFilter {
            types: vec!["builtin".into()],
            ..Default::default()
        }));
        assert!(!passes(NetworkFilter {
            labels: vec!["tier=db".into()],
            ..Default::default()
        }));
        assert!(!passes(NetworkFilter {
            ids: vec!["0123".into()],
            ..Default::default()
        }));
    }

    #[test]
    fn prune_filters_select_by_age_and_labels() {
        let n = network("old", false, &[("keep", "no"), ("team", "a")]);
        let created = 1_767_323_045; // 2026-01-02T03:04:05Z
        assert!(NetworkPruneFilter::default().selects(&n));
        assert!(
            NetworkPruneFilter {
                until: Some(created + 1),
                labels: vec!["team".into(), "keep=no".into()],
                ..Default::default()
            }
            .selects(&n)
        );
        assert!(
            !NetworkPruneFilter {
                until: Some(created),
                ..Default::default()
            }
            .selects(&n)
        );
        assert!(
            !NetworkPruneFilter {
                labels: vec!["team".into(), "other".into()],
                ..Default::default()
            }
            .selects(&n)
        );
        assert!(
            !NetworkPruneFilter {
                not_labels: vec!["team=a".into()],
                ..Default::default()
            }
            .selects(&n)
        );
    }
}
