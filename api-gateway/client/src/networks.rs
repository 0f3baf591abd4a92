//! polis.v1.Networks: create, inspect, list, remove, prune; connect and disconnect containers.

use crate::{Client, Result, proto};

impl Client {
    /// Creates a network (a bridge network; a subnet from polisd's default pools when `ipam` is empty). A name in
    /// use is [`crate::Error::AlreadyExists`].
    pub async fn create_network(
        &self,
        request: proto::CreateNetworkRequest,
    ) -> Result<proto::Network> {
        Ok(self.networks().create(request).await?.into_inner())
    }

    /// One network, by ID, ID prefix or name, with the running containers connected to it.
    pub async fn inspect_network(&self, id: &str) -> Result<proto::Network> {
        Ok(self
            .networks()
            .inspect(proto::InspectNetworkRequest { id: id.to_string() })
            .await?
            .into_inner())
    }

    /// The networks the request's filter selects (every network without one).
    pub async fn list_networks(
        &self,
        request: proto::ListNetworksRequest,
    ) -> Result<Vec<proto::Network>> {
        Ok(self.networks().list(request).await?.into_inner().networks)
    }

    /// Removes a network, by ID, ID prefix or name; one a running container is on, or a predefined one, is
    /// [`crate::Error::FailedPrecondition`].
    pub async fn remove_network(&self, id: &str) -> Result<()> {
        self.networks()
            .remove(proto::RemoveNetworkRequest { id: id.to_string() })
            .await?;
        Ok(())
    }

    /// Connects a container to a network (both by ID, ID prefix or name), under its name and `aliases` on a user
    /// network; a running container joins it at once.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        aliases: Vec<String>,
    ) -> Result<()> {
        self.networks()
            .connect(proto::ConnectNetworkRequest {
                network: network.to_string(),
                container: container.to_string(),
                aliases,
                ipv4_address: String::new(),
            })
            .await?;
        Ok(())
    }

    /// Disconnects a container from a network; `force` also removes the endpoint of a container that is gone.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        self.networks()
            .disconnect(proto::DisconnectNetworkRequest {
                network: network.to_string(),
                container: container.to_string(),
                force,
            })
            .await?;
        Ok(())
    }

    /// Removes the user networks no running container is on; their names.
    pub async fn prune_networks(&self) -> Result<proto::PruneNetworksResponse> {
        Ok(self
            .networks()
            .prune(proto::PruneNetworksRequest::default())
            .await?
            .into_inner())
    }
}
