//! Attaching containers to networks: network_up/down at start and exit, connect/disconnect, CNI ADD and DEL through
//! polis-netplug.

use super::dns::remove_own_resolver;
use super::netplug::{firewall_rules_missing, mark_internal};
use super::records::{check_endpoint_settings, user_network_names};
use super::*;

/// polis-netplug's error as polisd's: a host port taken is a conflict.
fn cni_error(network: &str, e: polis_netplug::Error) -> Error {
    let text = e.to_string();
    if text.contains("already mapped") {
        Error::Conflict(format!("network {network}: {text}"))
    } else {
        Error::Failed(format!("network {network}: {text}"))
    }
}

/// What CNI ADD gave an endpoint.
fn attached_from(result: &CniResult, ports: Vec<Published>, dns_names: Vec<String>) -> Attached {
    let mac = result
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_some())
        .and_then(|i| i.mac.clone())
        .unwrap_or_default();
    Attached {
        addresses: result.ips.iter().map(|i| i.address).collect(),
        gateways: result.ips.iter().filter_map(|i| i.gateway).collect(),
        mac,
        nameservers: result.dns.nameservers.clone(),
        ports,
        dns_names,
    }
}

/// A bridge endpoint to attach: the network, the endpoint, the capability arguments of its ADD.
pub(super) struct Attachment {
    network: NetworkRecord,
    endpoint: EndpointRecord,
    /// The container's default route goes through this network (its first one).
    default_route: bool,
    capability_args: Map<String, Value>,
    ports: Vec<Published>,
    dns_names: Vec<String>,
}

impl Core {
    /// `POST /networks/{id}/connect`: the container joins the network, at once when it runs.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        settings: Option<EndpointSettings>,
    ) -> Result<()> {
        let network = self.db.lookup_network(network)?;
        let record = self.db.lookup(container)?;
        let settings = settings.unwrap_or_default();
        let mode = record.host_config.network_mode.as_deref().unwrap_or("");
        if mode == HOST || network.driver == Driver::Host {
            return Err(Error::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if mode == NONE || network.driver == Driver::Null {
            return Err(Error::Forbidden(format!(
                "container {} is in the none network mode or would join it: it cannot be connected to other networks",
                record.name
            )));
        }
        check_endpoint_settings(&network, &settings)?;
        let lock = container_lock(&record.id);
        let _guard = lock.lock().await;
        let endpoint = {
            let _lock = networks_lock();
            if self
                .db
                .endpoints_of(&record.id)?
                .iter()
                .any(|e| e.network_id == network.id)
            {
                return Err(Error::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    record.name, network.name
                )));
            }
            let e = self.new_endpoint(&record.id, &network, &settings)?;
            self.db.put_endpoint(&e)?;
            e
        };
        let record = self.db.get(&record.id)?.unwrap_or(record);
        let netns = self.netns_path(&record.id);
        if record.state.status.is_live() && netns.exists() {
            let mut attachment = self.attachment(&record, network.clone(), endpoint.clone(), &[]);
            // The default route stays with the networks the container has, unless all are internal; an internal
            // network never has it.
            attachment.default_route = !network.internal
                && !self
                    .container_networks(&record.id)?
                    .iter()
                    .any(|(e, n)| e.attached.is_some() && n.as_ref().is_some_and(|n| !n.internal));
            let runner = self.cni();
            let (data_dir, internal_bridges) = (self.netplug_dir(), self.internal_bridges()?);
            let added = blocking(move || {
                let mut done = attach_isolated(
                    &runner,
                    &netns,
                    vec![attachment],
                    &data_dir,
                    &internal_bridges,
                )?;
                Ok(done.remove(0))
            })
            .await;
            match added {
                Ok(e) => {
                    self.db.put_endpoint(&e)?;
                    self.refresh_own_resolver(&record).await;
                    self.refresh_files(&record)?;
                    self.sync_own_resolvers();
                }
                Err(e) => {
                    let _ = self.db.remove_endpoint(&network.id, &record.id);
                    return Err(e);
                }
            }
        }
        self.network_event(&network, "connect", &[("container", &record.id)]);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`: the container leaves the network, at once when it runs. With `force`, a
    /// container that is gone but still has an endpoint on the network (its ID or an ID prefix given) loses it, as
    /// dockerd's forced disconnect deletes the endpoint of a container it no longer knows.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        let network = self.db.lookup_network(network)?;
        let record = match self.db.lookup(container) {
            Err(Error::NotFound(m)) if force => {
                return self.forget_stale_endpoints(&network, container, m);
            }
            other => other?,
        };
        if network.driver == Driver::Host {
            return Err(Error::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        let lock = container_lock(&record.id);
        let _guard = lock.lock().await;
        let Some(endpoint) = self
            .db
            .endpoints_of(&record.id)?
            .into_iter()
            .find(|e| e.network_id == network.id)
        else {
            return Err(Error::Forbidden(format!(
                "container {} is not connected to network {}",
                record.id, network.name
            )));
        };
        if network.driver == Driver::Bridge
            && (endpoint.attached.is_some() || self.netns_path(&record.id).exists())
        {
            let (runner, netns) = (self.cni(), self.netns_path(&record.id));
            let (n, e) = (network.clone(), endpoint.clone());
            blocking(move || detach(&runner, &netns, &n, &e)).await?;
        }
        self.db.remove_endpoint(&network.id, &record.id)?;
        if record.state.status.is_live() {
            self.refresh_own_resolver(&record).await;
            let _ = self.refresh_files(&record);
        }
        self.sync_own_resolvers();
        self.network_event(&network, "disconnect", &[("container", &record.id)]);
        Ok(())
    }

    /// Removes the network's endpoints of containers that no longer exist whose ID starts with `container`;
    /// `missing` (the container's NotFound message) when there is none.
    fn forget_stale_endpoints(
        &self,
        network: &NetworkRecord,
        container: &str,
        missing: String,
    ) -> Result<()> {
        let _lock = networks_lock();
        let mut stale = Vec::new();
        for e in self.db.endpoints_in(&network.id)? {
            if !container.is_empty()
                && e.container_id.starts_with(container)
                && self.db.get(&e.container_id)?.is_none()
            {
                stale.push(e.container_id);
            }
        }
        if stale.is_empty() {
            return Err(Error::NotFound(missing));
        }
        for id in stale {
            self.db.remove_endpoint(&network.id, &id)?;
            self.network_event(network, "disconnect", &[("container", &id)]);
        }
        Ok(())
    }

    /// The ADD of one endpoint: its capability arguments (ports on the first one, names on user networks,
    /// static addresses).
    fn attachment(
        &self,
        record: &ContainerRecord,
        network: NetworkRecord,
        endpoint: EndpointRecord,
        ports: &[Published],
    ) -> Attachment {
        let mut args = Map::new();
        if !ports.is_empty() {
            let mappings: Vec<Value> = ports
                .iter()
                .map(|p| {
                    let mut m = json!({"hostPort": p.host_port, "containerPort": p.container_port,
                                       "protocol": p.protocol});
                    if let Some(ip) = p.host_ip {
                        m["hostIP"] = json!(ip.to_string());
                    }
                    m
                })
                .collect();
            args.insert("portMappings".into(), Value::Array(mappings));
        }
        let mut dns_names = Vec::new();
        if network.is_user_bridge() {
            let (aliases, listed) = user_network_names(record, &endpoint);
            args.insert("aliases".into(), json!({ network.name.clone(): aliases }));
            dns_names = listed;
        }
        if !endpoint.static_ips.is_empty() {
            let ips: Vec<String> = endpoint
                .static_ips
                .iter()
                .map(|ip| {
                    network
                        .subnets
                        .iter()
                        .find(|s| s.subnet.contains(ip))
                        .map(|s| format!("{ip}/{}", s.subnet.prefix_len()))
                        .unwrap_or_else(|| ip.to_string())
                })
                .collect();
            args.insert("ips".into(), json!(ips));
        }
        Attachment {
            network,
            endpoint,
            default_route: true,
            capability_args: args,
            ports: ports.to_vec(),
            dns_names,
        }
    }

    /// Before a container starts: its network namespace and its attachments (nothing for the host's network; for
    /// `none` the namespace with its loopback only). Everything made is undone on failure.
    pub async fn network_up(&self, record: &ContainerRecord) -> Result<()> {
        if record.host_config.network_mode.as_deref() == Some(HOST) {
            return Ok(());
        }
        let lock = container_lock(&record.id);
        let _guard = lock.lock().await;
        let netns = self.netns_path(&record.id);
        if netns.exists() {
            // Left by a run polisd did not see end.
            self.network_down_locked(&record.id).await;
        }
        let mut wanted = Vec::new();
        for (mut e, n) in self.container_networks(&record.id)? {
            let n = match n {
                Some(n) => n,
                // Removed since: a network of the same name takes its place (as dockerd finds it by name).
                None => {
                    let n = self.db.lookup_network(&e.network_name)?;
                    let _lock = networks_lock();
                    self.db.remove_endpoint(&e.network_id, &e.container_id)?;
                    e.network_id = n.id.clone();
                    self.db.put_endpoint(&e)?;
                    n
                }
            };
            if n.driver == Driver::Bridge {
                wanted.push((n, e));
            }
        }
        let ports = if wanted.is_empty() {
            Vec::new()
        } else {
            let requests = port_requests(
                &record.host_config,
                record.config.exposed_ports.as_deref().unwrap_or(&[]),
            )?;
            let taken: Vec<Published> = self
                .db
                .all_endpoints()?
                .into_iter()
                .filter(|e| e.container_id != record.id)
                .filter_map(|e| e.attached)
                .flat_map(|a| a.ports)
                .collect();
            allocate_ports(&requests, &taken, ephemeral_range(), &host_port_free)?
        };
        // The default route goes through the first network that is not internal (an internal one has none).
        let mut default_taken = false;
        let attachments: Vec<Attachment> = wanted
            .into_iter()
            .enumerate()
            .map(|(i, (n, e))| {
                let mut a = self.attachment(record, n, e, if i == 0 { &ports } else { &[] });
                a.default_route = !a.network.internal && !default_taken;
                default_taken |= a.default_route;
                a
            })
            .collect();
        let runner = self.cni();
        let path = netns.clone();
        let bundle = record.bundle.clone();
        let (data_dir, internal_bridges) = (self.netplug_dir(), self.internal_bridges()?);
        let done = blocking(move || {
            make_netns(&path)?;
            let attached =
                attach_isolated(&runner, &path, attachments, &data_dir, &internal_bridges);
            let result = attached.and_then(|done| {
                let config = bundle.join("config.json");
                let text =
                    std::fs::read(&config).map_err(|e| Error::failed(config.display(), e))?;
                let mut spec: Value = serde_json::from_slice(&text)
                    .map_err(|e| Error::failed(config.display(), e))?;
                if set_network_namespace(&mut spec, &path) {
                    let text = serde_json::to_vec_pretty(&spec)
                        .map_err(|e| Error::failed("encode config.json", e))?;
                    polis_host::atomic::write_atomic(&config, &text)
                        .map_err(|e| Error::failed(config.display(), e))?;
                }
                Ok(done)
            });
            if result.is_err() {
                remove_netns(&path);
            }
            result
        })
        .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => return Err(e),
        };
        let saved = done.iter().try_for_each(|e| self.db.put_endpoint(e));
        if saved.is_ok() {
            self.refresh_own_resolver(record).await;
        }
        if let Err(e) = saved.and_then(|_| self.refresh_files(record)) {
            self.network_down_locked(&record.id).await;
            return Err(e);
        }
        self.sync_own_resolvers();
        Ok(())
    }

    /// After a container exited (or failed to start): CNI DEL of its attachments, its network namespace removed.
    pub async fn network_down(&self, container_id: &str) {
        let lock = container_lock(container_id);
        let _guard = lock.lock().await;
        self.network_down_locked(container_id).await;
    }

    async fn network_down_locked(&self, container_id: &str) {
        if self.own_resolvers_dir().join(container_id).exists() {
            let (views, id) = (self.own_resolvers_dir(), container_id.to_string());
            let _ = blocking(move || {
                remove_own_resolver(&views, &id);
                Ok(())
            })
            .await;
        }
        let netns = self.netns_path(container_id);
        let endpoints = match self.container_networks(container_id) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(container = container_id, error = %e, "read the container's networks");
                Vec::new()
            }
        };
        let exists = netns.exists();
        let detach_these: Vec<(NetworkRecord, EndpointRecord)> = endpoints
            .iter()
            .filter_map(|(e, n)| Some((n.clone()?, e.clone())))
            .filter(|(n, e)| n.driver == Driver::Bridge && (exists || e.attached.is_some()))
            .collect();
        if !exists && detach_these.is_empty() {
            return;
        }
        let runner = self.cni();
        let path = netns.clone();
        let id = container_id.to_string();
        let _ = blocking(move || {
            for (n, e) in detach_these.iter().rev() {
                if let Err(error) = detach(&runner, &path, n, e) {
                    tracing::warn!(container = id, network = n.name, %error, "CNI DEL");
                }
            }
            remove_netns(&path);
            Ok(())
        })
        .await;
        for (mut e, _) in endpoints {
            if e.attached.take().is_some() {
                let _ = self.db.put_endpoint(&e);
            }
        }
        self.sync_own_resolvers();
    }

    /// When a container is removed: its network state and endpoints.
    pub async fn forget_container_networks(&self, container_id: &str) {
        self.network_down(container_id).await;
        if let Err(e) = self.db.remove_endpoints_of(container_id) {
            tracing::warn!(container = container_id, error = %e, "remove endpoints");
        }
        forget_container_lock(container_id);
    }
}

/// CNI ADD of each attachment in order; on a failure every one of them (the failed one included, as the CNI spec
/// wants) is deleted again and the error returned. The endpoints with what they got.
fn attach_all(
    runner: &CniRunner,
    netns: &Path,
    attachments: Vec<Attachment>,
) -> Result<Vec<EndpointRecord>> {
    let mut done: Vec<EndpointRecord> = Vec::new();
    for (i, a) in attachments.iter().enumerate() {
        let mut network = a.network.clone();
        if !a.default_route {
            network.cni["plugins"][0]["isDefaultGateway"] = json!(false);
        }
        let added = network.list().and_then(|list| {
            let mut rt =
                RuntimeConf::new(a.endpoint.container_id.clone(), a.endpoint.ifname.clone());
            rt.netns = Some(netns.to_path_buf());
            rt.capability_args = a.capability_args.clone();
            runner
                .add(&list, &rt)
                .map_err(|e| cni_error(&a.network.name, e))
        });
        match added {
            Ok(result) => {
                let mut e = a.endpoint.clone();
                e.attached = Some(attached_from(&result, a.ports.clone(), a.dns_names.clone()));
                done.push(e);
            }
            Err(error) => {
                for b in attachments[..=i].iter().rev() {
                    if let Err(e) = detach(runner, netns, &b.network, &b.endpoint) {
                        tracing::warn!(network = b.network.name, error = %e, "CNI DEL after a failed ADD");
                    }
                }
                return Err(error);
            }
        }
    }
    Ok(done)
}

/// [`attach_all`] with the bridges of the internal networks among the attachments marked in the firewall: before
/// the ADDs when the firewall has its rules, so that no interface of the container is ever on an unmarked internal
/// bridge; else after them (the first ADD puts the rules back), and then every internal network's (all of
/// `internal_bridges`), whose marks went with the rules. When the marking fails, nothing stays attached.
fn attach_isolated(
    runner: &CniRunner,
    netns: &Path,
    attachments: Vec<Attachment>,
    data_dir: &Path,
    internal_bridges: &[String],
) -> Result<Vec<EndpointRecord>> {
    let attached: Vec<(NetworkRecord, EndpointRecord)> = attachments
        .iter()
        .map(|a| (a.network.clone(), a.endpoint.clone()))
        .collect();
    let mut mark: Vec<String> = attached
        .iter()
        .filter(|(n, _)| n.internal)
        .map(|(n, _)| n.bridge.clone())
        .collect();
    let rules_missing = !internal_bridges.is_empty() && firewall_rules_missing();
    if !rules_missing {
        mark_internal(data_dir, &mark)?;
    }
    let done = attach_all(runner, netns, attachments)?;
    if !rules_missing {
        return Ok(done);
    }
    mark.extend(internal_bridges.iter().cloned());
    mark.sort();
    mark.dedup();
    if let Err(error) = mark_internal(data_dir, &mark) {
        for (n, e) in attached.iter().rev() {
            if let Err(e) = detach(runner, netns, n, e) {
                tracing::warn!(network = n.name, error = %e, "CNI DEL after a failed isolation");
            }
        }
        return Err(error);
    }
    Ok(done)
}

/// eth0, eth1, ...: the order in which a container joined its networks.
pub(super) fn ifname_order(ifname: &str) -> u32 {
    ifname
        .strip_prefix("eth")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// CNI DEL of one attachment.
fn detach(
    runner: &CniRunner,
    netns: &Path,
    network: &NetworkRecord,
    endpoint: &EndpointRecord,
) -> Result<()> {
    let list = network.list()?;
    let mut rt = RuntimeConf::new(endpoint.container_id.clone(), endpoint.ifname.clone());
    rt.netns = netns.exists().then(|| netns.to_path_buf());
    runner
        .del(&list, &rt)
        .map_err(|e| cni_error(&network.name, e))
}
