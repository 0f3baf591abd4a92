//! The services of polis.v1 not served yet: each RPC answers UNIMPLEMENTED, naming itself.

use polis_client::proto::{self, networks_server::Networks, volumes_server::Volumes};
use tonic::{Request, Response, Status};

fn unimplemented<T>(rpc: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{rpc} is not implemented yet by polisd"
    )))
}

pub struct NetworksApi;

#[tonic::async_trait]
impl Networks for NetworksApi {
    async fn create(
        &self,
        _: Request<proto::CreateNetworkRequest>,
    ) -> Result<Response<proto::Network>, Status> {
        unimplemented("polis.v1.Networks/Create")
    }
    async fn inspect(
        &self,
        _: Request<proto::InspectNetworkRequest>,
    ) -> Result<Response<proto::Network>, Status> {
        unimplemented("polis.v1.Networks/Inspect")
    }
    async fn list(
        &self,
        _: Request<proto::ListNetworksRequest>,
    ) -> Result<Response<proto::ListNetworksResponse>, Status> {
        unimplemented("polis.v1.Networks/List")
    }
    async fn remove(
        &self,
        _: Request<proto::RemoveNetworkRequest>,
    ) -> Result<Response<proto::RemoveNetworkResponse>, Status> {
        unimplemented("polis.v1.Networks/Remove")
    }
    async fn connect(
        &self,
        _: Request<proto::ConnectNetworkRequest>,
    ) -> Result<Response<proto::ConnectNetworkResponse>, Status> {
        unimplemented("polis.v1.Networks/Connect")
    }
    async fn disconnect(
        &self,
        _: Request<proto::DisconnectNetworkRequest>,
    ) -> Result<Response<proto::DisconnectNetworkResponse>, Status> {
        unimplemented("polis.v1.Networks/Disconnect")
    }
    async fn prune(
        &self,
        _: Request<proto::PruneNetworksRequest>,
    ) -> Result<Response<proto::PruneNetworksResponse>, Status> {
        unimplemented("polis.v1.Networks/Prune")
    }
}

pub struct VolumesApi;

#[tonic::async_trait]
impl Volumes for VolumesApi {
    async fn create(
        &self,
        _: Request<proto::CreateVolumeRequest>,
    ) -> Result<Response<proto::Volume>, Status> {
        unimplemented("polis.v1.Volumes/Create")
    }
    async fn inspect(
        &self,
        _: Request<proto::InspectVolumeRequest>,
    ) -> Result<Response<proto::Volume>, Status> {
        unimplemented("polis.v1.Volumes/Inspect")
    }
    async fn list(
        &self,
        _: Request<proto::ListVolumesRequest>,
    ) -> Result<Response<proto::ListVolumesResponse>, Status> {
        unimplemented("polis.v1.Volumes/List")
    }
    async fn remove(
        &self,
        _: Request<proto::RemoveVolumeRequest>,
    ) -> Result<Response<proto::RemoveVolumeResponse>, Status> {
        unimplemented("polis.v1.Volumes/Remove")
    }
    async fn prune(
        &self,
        _: Request<proto::PruneVolumesRequest>,
    ) -> Result<Response<proto::PruneVolumesResponse>, Status> {
        unimplemented("polis.v1.Volumes/Prune")
    }
}
