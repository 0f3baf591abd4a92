//! Network endpoints (create, list, inspect, remove, prune, connect, disconnect), and the network side of a
//! container's inspect (`NetworkSettings`, in API 1.41's shape) and of `docker ps` (`Ports`, `NetworkSettings`).

use super::openapi::ErrorBody;
use super::params::{Query, filters, json};
use super::{ApiError, ApiResult};
use crate::core::networks::{
    EndpointRecord, NetworkFilter, NetworkPruneFilter, NetworkRecord, Published, parse_port_key,
};
use crate::core::record::ContainerRecord;
use crate::core::{Core, Error};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{
    ContainerInspectResponse, ContainerSummary, ContainerSummaryNetworkSettings,
    EndpointIpamConfig, EndpointResource, EndpointSettings, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse, NetworkDisconnectRequest,
    NetworkInspect, NetworkPruneResponse, PortBinding, PortSummary, PortSummaryTypeEnum,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Docker's Network object; `Containers` filled for inspect only (as Docker's list leaves it empty).
fn network_json(core: &Core, n: &NetworkRecord, members: bool) -> ApiResult<NetworkInspect> {
    let mut containers = HashMap::new();
    if members {
        for m in core.network_endpoints(n)? {
            containers.insert(
                m.container_id,
                EndpointResource {
                    name: Some(m.container_name),
                    endpoint_id: Some(m.endpoint_id),
                    mac_address: Some(m.mac),
                    ipv4_address: Some(m.ipv4.map(|x| x.to_string()).unwrap_or_default()),
                    ipv6_address: Some(m.ipv6.map(|x| x.to_string()).unwrap_or_default()),
                },
            );
        }
    }
    let config: Vec<IpamConfig> = n
        .subnets
        .iter()
        .map(|s| IpamConfig {
            subnet: Some(s.subnet.to_string()),
            gateway: Some(s.gateway.to_string()),
            ip_range: s.range.map(|r| r.to_string()),
            auxiliary_addresses: None,
        })
        .collect();
    Ok(NetworkInspect {
        name: Some(n.name.clone()),
        id: Some(n.id.clone()),
        created: Some(n.created.clone()),
        scope: Some("local".into()),
        driver: Some(n.driver.as_str().into()),
        enable_ipv4: Some(true),
        enable_ipv6: Some(n.enable_ipv6),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(config),
            options: None,
        }),
        internal: Some(n.internal),
        attachable: Some(n.attachable),
        ingress: Some(false),
        config_only: Some(false),
        options: Some(n.options.clone()),
        labels: Some(n.labels.clone()),
        containers: Some(containers),
        ..Default::default()
    })
}

/// `docker network ls`'s filters as the core's.
fn network_filter(f: HashMap<String, Vec<String>>) -> ApiResult<NetworkFilter> {
    let mut filter = NetworkFilter::default();
    for (key, values) in f {
        match key.as_str() {
            "name" => filter.names = values,
            "id" => filter.ids = values,
            "driver" => filter.drivers = values,
            "scope" => filter.scopes = values,
            "type" => filter.types = values,
            "label" => filter.labels = values,
            "dangling" => filter.dangling = values.first().map(|d| d == "true" || d == "1"),
            other => {
                return Err(ApiError(Error::Invalid(format!(
                    "invalid filter '{other}'"
                ))));
            }
        }
    }
    Ok(filter)
}

#[utoipa::path(
    get,
    path = "/networks",
    params(
        ("filters" = Option<String>, Query, description = "JSON-encoded filters (a map of name to list of values)"),
    ),
    responses(
        (status = 200, description = "the networks", body = [Object], content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Network"
)]
pub async fn list(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let filter = network_filter(filters(&q)?)?;
    let out = core
        .list_networks(&filter)?
        .iter()
        .map(|n| network_json(&core, n, false))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(out).into_response())
}

#[utoipa::path(
    get,
    path = "/networks/{id}",
    params(
        ("id" = String, Path, description = "network ID or name"),
        ("verbose" = Option<bool>, Query, description = "accepted, ignored"),
        ("scope" = Option<String>, Query, description = "accepted, ignored"),
    ),
    responses(
        (status = 200, description = "the network", body = Object, content_type = "application/json"),
        (status = 404, description = "no such network", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Network"
)]
pub async fn inspect(State(core): State<Arc<Core>>, Path(id): Path<String>) -> ApiResult<Response> {
    let n = core.network(&id)?;
    Ok(axum::Json(network_json(&core, &n, true)?).into_response())
}

#[utoipa::path(
    post,
    path = "/networks/create",
    request_body(content = Object, content_type = "application/json", description = "the network (Docker's NetworkCreateRequest)"),
    responses(
        (status = 201, description = "created: `{Id, Warning}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 403, description = "operation not supported for pre-defined networks", body = ErrorBody),
        (status = 404, description = "plugin not found", body = ErrorBody),
        (status = 409, description = "the name is in use", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Network"
)]
pub async fn create(State(core): State<Arc<Core>>, body: Bytes) -> ApiResult<Response> {
    let req: NetworkCreateRequest = json(&body)?;
    let (id, warning) = core.create_network(req)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(NetworkCreateResponse { id, warning }),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/networks/{id}",
    params(
        ("id" = String, Path, description = "network ID or name"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 403, description = "operation not supported for pre-defined networks", body = ErrorBody),
        (status = 404, description = "no such network", body = ErrorBody),
        (status = 409, description = "the network has active endpoints", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Network"
)]
pub async fn remove(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    core.remove_network(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `until` as Docker takes it: a Unix time, or an RFC 3339 date.
fn until(v: &str) -> ApiResult<i64> {
    if let Ok(t) = v.parse::<f64>() {
        return Ok(t as i64);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp())
        .map_err(|_| ApiError(Error::Invalid(format!("invalid until filter {v:?}"))))
}

#[utoipa::path(
    post,
    path = "/networks/prune",
    params(
        ("filters" = Option<String>, Query, description = "JSON-encoded filters (a map of name to list of values)"),
    ),
    responses(
        (status = 200, description = "`{NetworksDeleted}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Network"
)]
pub async fn prune(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = filters(&q)?;
    for key in f.keys() {
        if !matches!(key.as_str(), "until" | "label" | "label!") {
            return Err(ApiError(Error::Invalid(format!("invalid filter '{key}'"))));
        }
    }
    let filter = NetworkPruneFilter {
        until: match f.get("until").and_then(|u| u.first()) {
            Some(u) => Some(until(u)?),
            None => None,
        },
        labels: f.get("label").cloned().unwrap_or_default(),
        not_labels: f.get("label!").cloned().unwrap_or_default(),
    };
    let removed = core.prune_networks(&filter).await?;
    Ok(axum::Json(NetworkPruneResponse {
        networks_deleted: Some(removed),
    })
    .into_response())
}

#[utoipa::path(
    post,
    path = "/networks/{id}/connect",
    params(
        ("id" = String, Path, description = "network ID or name"),
    ),
    request_body(content = Object, content_type = "application/json", description = "`{Container, EndpointConfig}`"),
    responses(
        (status = 200, description = "connected"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 403, description = "operation not supported", body = ErrorBody),
        (status = 404, description = "no such network or container", body = ErrorBody),
        (status = 409, description = "already connected", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Network"
)]
pub async fn connect(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: NetworkConnectRequest = json(&body)?;
    core.connect_network(&id, &req.container, req.endpoint_config)
        .await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(
    post,
    path = "/networks/{id}/disconnect",
    params(
        ("id" = String, Path, description = "network ID or name"),
    ),
    request_body(content = Object, content_type = "application/json", description = "`{Container, Force}`"),
    responses(
        (status = 200, description = "disconnected"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 403, description = "operation not supported", body = ErrorBody),
        (status = 404, description = "no such network or container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Network"
)]
pub async fn disconnect(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: NetworkDisconnectRequest = json(&body)?;
    core.disconnect_network(&id, &req.container, req.force.unwrap_or(false))
        .await?;
    Ok(StatusCode::OK)
}

/// A container's endpoint as inspect shows it (its addresses while it runs).
fn endpoint_settings(
    r: &ContainerRecord,
    e: &EndpointRecord,
    n: Option<&NetworkRecord>,
) -> EndpointSettings {
    let a = e.attached.clone().unwrap_or_default();
    let v4 = a.addresses.iter().find(|x| x.addr().is_ipv4());
    let v6 = a.addresses.iter().find(|x| !x.addr().is_ipv4());
    let gw4 = a.gateways.iter().find(|g| g.is_ipv4());
    let gw6 = a.gateways.iter().find(|g| !g.is_ipv4());
    let mut aliases = e.aliases.clone();
    if n.is_some_and(|n| n.is_user_bridge()) && !aliases.iter().any(|x| x == r.short_id()) {
        aliases.push(r.short_id().to_string());
    }
    let static4 = e.static_ips.iter().find(|i| i.is_ipv4());
    let static6 = e.static_ips.iter().find(|i| !i.is_ipv4());
    EndpointSettings {
        ipam_config: (!e.static_ips.is_empty()).then(|| EndpointIpamConfig {
            ipv4_address: static4.map(|i| i.to_string()),
            ipv6_address: static6.map(|i| i.to_string()),
            link_local_ips: None,
        }),
        links: None,
        aliases: (!aliases.is_empty()).then_some(aliases),
        network_id: Some(e.network_id.clone()),
        endpoint_id: Some(if e.attached.is_some() {
            e.endpoint_id.clone()
        } else {
            String::new()
        }),
        gateway: Some(gw4.map(|g| g.to_string()).unwrap_or_default()),
        ip_address: Some(v4.map(|x| x.addr().to_string()).unwrap_or_default()),
        ip_prefix_len: Some(v4.map(|x| x.prefix_len() as i64).unwrap_or(0)),
        ipv6_gateway: Some(gw6.map(|g| g.to_string()).unwrap_or_default()),
        global_ipv6_address: Some(v6.map(|x| x.addr().to_string()).unwrap_or_default()),
        global_ipv6_prefix_len: Some(v6.map(|x| x.prefix_len() as i64).unwrap_or(0)),
        mac_address: Some(a.mac.clone()),
        dns_names: (!a.dns_names.is_empty()).then(|| a.dns_names.clone()),
        driver_opts: None,
        gw_priority: None,
    }
}

/// The container's ports: those it exposes or publishes, with their host bindings while it runs.
fn ports<'a>(
    r: &ContainerRecord,
    published: &'a [Published],
) -> Vec<(u16, String, Option<&'a Published>)> {
    let mut keys: Vec<(u16, String)> = r
        .config
        .exposed_ports
        .iter()
        .flatten()
        .chain(r.host_config.port_bindings.iter().flat_map(|b| b.keys()))
        .filter_map(|k| parse_port_key(k).ok())
        .collect();
    keys.extend(
        published
            .iter()
            .map(|p| (p.container_port, p.protocol.clone())),
    );
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for (port, proto) in keys {
        let mine: Vec<&Published> = published
            .iter()
            .filter(|p| p.container_port == port && p.protocol == proto)
            .collect();
        if mine.is_empty() {
            out.push((port, proto, None));
        } else {
            for p in mine {
                out.push((port, proto.clone(), Some(p)));
            }
        }
    }
    out
}

fn host_ip(p: &Published) -> String {
    p.host_ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "0.0.0.0".into())
}

/// The container's endpoints with their networks, and its published ports (while it runs).
fn container_networks(
    core: &Core,
    r: &ContainerRecord,
) -> (Vec<(EndpointRecord, Option<NetworkRecord>)>, Vec<Published>) {
    let endpoints = core.container_networks(&r.id).unwrap_or_default();
    let published = published_ports(r, &endpoints);
    (endpoints, published)
}

/// The ports a running container has published through its endpoints.
pub fn published_ports(
    r: &ContainerRecord,
    endpoints: &[(EndpointRecord, Option<NetworkRecord>)],
) -> Vec<Published> {
    if r.state.status.is_live() {
        endpoints
            .iter()
            .filter_map(|(e, _)| e.attached.as_ref())
            .flat_map(|a| a.ports.clone())
            .collect()
    } else {
        Vec::new()
    }
}

/// Inspect with `NetworkSettings` as API 1.41 has it (the top-level address fields are the default bridge's).
pub fn with_network_settings(
    core: &Core,
    r: &ContainerRecord,
    inspect: ContainerInspectResponse,
) -> Value {
    let mut value = serde_json::to_value(&inspect).unwrap_or_else(|_| json!({}));
    let (endpoints, published) = container_networks(core, r);
    let running = r.state.status.is_live();
    let mut networks = serde_json::Map::new();
    let mut top = EndpointSettings::default();
    for (e, n) in &endpoints {
        let s = endpoint_settings(r, e, n.as_ref());
        let name = n
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_else(|| e.network_name.clone());
        if n.as_ref()
            .is_some_and(|n| n.predefined && n.name == "bridge")
        {
            top = s.clone();
        }
        networks.insert(name, serde_json::to_value(&s).unwrap_or_default());
    }
    let mut port_map = serde_json::Map::new();
    if running {
        for (port, proto, p) in ports(r, &published) {
            let key = format!("{port}/{proto}");
            match p {
                None => {
                    port_map.entry(key).or_insert(Value::Null);
                }
                Some(p) => {
                    let entry = port_map.entry(key).or_insert_with(|| json!([]));
                    if !entry.is_array() {
                        *entry = json!([]);
                    }
                    if let Some(list) = entry.as_array_mut() {
                        list.push(
                            serde_json::to_value(PortBinding {
                                host_ip: Some(host_ip(p)),
                                host_port: Some(p.host_port.to_string()),
                            })
                            .unwrap_or_default(),
                        );
                    }
                }
            }
        }
    }
    let sandbox = core.config.netns_dir().join(&r.id);
    let has_sandbox = running && sandbox.exists();
    value["NetworkSettings"] = json!({
        "Bridge": "",
        "SandboxID": if has_sandbox { r.id.clone() } else { String::new() },
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": port_map,
        "SandboxKey": if has_sandbox { sandbox.display().to_string() } else { String::new() },
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": top.endpoint_id.unwrap_or_default(),
        "Gateway": top.gateway.unwrap_or_default(),
        "GlobalIPv6Address": top.global_ipv6_address.unwrap_or_default(),
        "GlobalIPv6PrefixLen": top.global_ipv6_prefix_len.unwrap_or(0),
        "IPAddress": top.ip_address.unwrap_or_default(),
        "IPPrefixLen": top.ip_prefix_len.unwrap_or(0),
        "IPv6Gateway": top.ipv6_gateway.unwrap_or_default(),
        "MacAddress": top.mac_address.unwrap_or_default(),
        "Networks": networks,
    });
    value
}

/// The networks of every container, read at once (for `docker ps`): endpoints by container ID, each with its
/// network.
pub fn all_container_networks(
    core: &Core,
) -> HashMap<String, Vec<(EndpointRecord, Option<NetworkRecord>)>> {
    let networks: HashMap<String, NetworkRecord> = core
        .db
        .networks()
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    let mut by_container: HashMap<String, Vec<_>> = HashMap::new();
    for e in core.db.all_endpoints().unwrap_or_default() {
        let n = networks.get(&e.network_id).cloned();
        by_container
            .entry(e.container_id.clone())
            .or_default()
            .push((e, n));
    }
    by_container
}

/// A `docker ps` entry with its ports and networks, from endpoints already read (see [`all_container_networks`]).
pub fn summary_with_endpoints(
    r: &ContainerRecord,
    mut summary: ContainerSummary,
    endpoints: Vec<(EndpointRecord, Option<NetworkRecord>)>,
    published: Vec<Published>,
) -> ContainerSummary {
    let typ = |proto: &str| match proto {
        "udp" => PortSummaryTypeEnum::UDP,
        _ => PortSummaryTypeEnum::TCP,
    };
    if r.state.status.is_live() {
        summary.ports = Some(
            ports(r, &published)
                .into_iter()
                .map(|(port, proto, p)| PortSummary {
                    ip: p.map(host_ip),
                    private_port: port,
                    public_port: p.map(|p| p.host_port),
                    typ: Some(typ(&proto)),
                })
                .collect(),
        );
    }
    let networks = endpoints
        .iter()
        .map(|(e, n)| {
            let name = n
                .as_ref()
                .map(|n| n.name.clone())
                .unwrap_or_else(|| e.network_name.clone());
            (name, endpoint_settings(r, e, n.as_ref()))
        })
        .collect();
    summary.network_settings = Some(ContainerSummaryNetworkSettings {
        networks: Some(networks),
    });
    summary
}
