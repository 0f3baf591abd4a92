//! polis.v1.Networks over the core's network operations (core/networks), the ones `/networks` calls: create, list
//! (the core's filter), inspect (the core's view of a network's running containers), remove, prune (the core's
//! prune rules), connect (with aliases and a static address) and disconnect (with force).

use super::{status, unix_nanos};
use crate::core::Core;
use crate::core::networks::{NetworkFilter, NetworkPruneFilter, NetworkRecord};
use bollard_stubs::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkCreateRequest,
};
use polis_client::proto::{self, networks_server::Networks};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct NetworksApi(pub Arc<Core>);

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A network as the typed Network, with its running containers.
fn network(core: &Core, n: &NetworkRecord) -> Result<proto::Network, Status> {
    let endpoints = core
        .network_endpoints(n)
        .map_err(status)?
        .into_iter()
        .map(|m| proto::NetworkEndpoint {
            container_id: m.container_id,
            container_name: m.container_name,
            ipv4_address: m.ipv4.map(|a| a.to_string()).unwrap_or_default(),
            mac_address: m.mac,
            aliases: m.aliases,
        })
        .collect();
    Ok(proto::Network {
        id: n.id.clone(),
        name: n.name.clone(),
        driver: n.driver.as_str().into(),
        ipam: n
            .subnets
            .iter()
            .map(|s| proto::IpamConfig {
                subnet: s.subnet.to_string(),
                gateway: s.gateway.to_string(),
                ip_range: s.range.map(|r| r.to_string()).unwrap_or_default(),
            })
            .collect(),
        internal: n.internal,
        labels: n.labels.clone(),
        options: n.options.clone(),
        created_unix_nano: unix_nanos(Some(&n.created)),
        endpoints,
    })
}

/// The typed create request as Docker's, which the core takes.
fn create_request(r: proto::CreateNetworkRequest) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: r.name,
        driver: some(r.driver),
        ipam: (!r.ipam.is_empty()).then(|| Ipam {
            config: Some(
                r.ipam
                    .into_iter()
                    .map(|c| IpamConfig {
                        subnet: some(c.subnet),
                        gateway: some(c.gateway),
                        ip_range: some(c.ip_range),
                        auxiliary_addresses: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        internal: Some(r.internal),
        labels: Some(r.labels),
        options: Some(r.options),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Networks for NetworksApi {
    async fn create(
        &self,
        request: Request<proto::CreateNetworkRequest>,
    ) -> Result<Response<proto::Network>, Status> {
        let core = &self.0;
        let (id, _warning) = core
            .create_network(create_request(request.into_inner()))
            .map_err(status)?;
        let n = core.network(&id).map_err(status)?;
        Ok(Response::new(network(core, &n)?))
    }

    async fn inspect(
        &self,
        request: Request<proto::InspectNetworkRequest>,
    ) -> Result<Response<proto::Network>, Status> {
        let n = self.0.network(&request.into_inner().id).map_err(status)?;
        Ok(Response::new(network(&self.0, &n)?))
    }

    async fn list(
        &self,
        request: Request<proto::ListNetworksRequest>,
    ) -> Result<Response<proto::ListNetworksResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let filter = NetworkFilter {
            ids: f.ids,
            names: f.names,
            drivers: f.drivers,
            labels: f.labels,
            ..Default::default()
        };
        let networks = self
            .0
            .list_networks(&filter)
            .map_err(status)?
            .iter()
            .map(|n| network(&self.0, n))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(proto::ListNetworksResponse { networks }))
    }

    async fn remove(
        &self,
        request: Request<proto::RemoveNetworkRequest>,
    ) -> Result<Response<proto::RemoveNetworkResponse>, Status> {
        self.0
            .remove_network(&request.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RemoveNetworkResponse {}))
    }

    async fn connect(
        &self,
        request: Request<proto::ConnectNetworkRequest>,
    ) -> Result<Response<proto::ConnectNetworkResponse>, Status> {
        let r = request.into_inner();
        let settings = EndpointSettings {
            aliases: (!r.aliases.is_empty()).then_some(r.aliases),
            ipam_config: some(r.ipv4_address).map(|a| EndpointIpamConfig {
                ipv4_address: Some(a),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.0
            .connect_network(&r.network, &r.container, Some(settings))
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ConnectNetworkResponse {}))
    }

    async fn disconnect(
        &self,
        request: Request<proto::DisconnectNetworkRequest>,
    ) -> Result<Response<proto::DisconnectNetworkResponse>, Status> {
        let r = request.into_inner();
        self.0
            .disconnect_network(&r.network, &r.container, r.force)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::DisconnectNetworkResponse {}))
    }

    async fn prune(
        &self,
        request: Request<proto::PruneNetworksRequest>,
    ) -> Result<Response<proto::PruneNetworksResponse>, Status> {
        let filter = NetworkPruneFilter {
            labels: request.into_inner().labels,
            ..Default::default()
        };
        let removed = self.0.prune_networks(&filter).await.map_err(status)?;
        Ok(Response::new(proto::PruneNetworksResponse { removed }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_create_requests_become_dockers() {
        let r = create_request(proto::CreateNetworkRequest {
            name: "n".into(),
            ipam: vec![proto::IpamConfig {
                subnet: "198.18.3.0/24".into(),
                ..Default::default()
            }],
            internal: true,
            ..Default::default()
        });
        assert_eq!(r.name, "n");
        assert_eq!(r.driver, None);
        assert_eq!(r.internal, Some(true));
        let config = r.ipam.unwrap().config.unwrap();
        assert_eq!(config[0].subnet.as_deref(), Some("198.18.3.0/24"));
        assert_eq!(config[0].gateway, None);
        assert!(
            create_request(proto::CreateNetworkRequest::default())
                .ipam
                .is_none()
        );
    }
}
