//! polis.v1.Volumes over the core's volume operations (core/volumes.rs), the ones `/volumes` calls: create (the
//! core's driver check), inspect, list (the core's filter), remove and prune (the core's prune rules).

use super::{blocking, status, unix_nanos};
use crate::core::Core;
use crate::core::volumes::{VolumeFilter, VolumeMeta, VolumePruneFilter, check_volume_driver};
use polis_client::proto::{self, volumes_server::Volumes};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct VolumesApi(pub Arc<Core>);

fn volume(core: &Core, v: VolumeMeta) -> proto::Volume {
    proto::Volume {
        mountpoint: core.volume_data(&v.name).display().to_string(),
        created_unix_nano: unix_nanos(Some(&v.created_at)),
        name: v.name,
        driver: "local".into(),
        labels: v.labels,
        options: v.options,
        anonymous: v.anonymous,
    }
}

#[tonic::async_trait]
impl Volumes for VolumesApi {
    async fn create(
        &self,
        request: Request<proto::CreateVolumeRequest>,
    ) -> Result<Response<proto::Volume>, Status> {
        let r = request.into_inner();
        check_volume_driver(&r.driver).map_err(status)?;
        // Without a name, an anonymous volume (as dockerd since API 1.42 labels one).
        let anonymous = r.name.is_empty();
        let v = self
            .0
            .create_volume(Some(&r.name), r.labels, r.options, anonymous)
            .map_err(status)?;
        Ok(Response::new(volume(&self.0, v)))
    }

    async fn inspect(
        &self,
        request: Request<proto::InspectVolumeRequest>,
    ) -> Result<Response<proto::Volume>, Status> {
        let v = self.0.volume(&request.into_inner().name).map_err(status)?;
        Ok(Response::new(volume(&self.0, v)))
    }

    async fn list(
        &self,
        request: Request<proto::ListVolumesRequest>,
    ) -> Result<Response<proto::ListVolumesResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let filter = VolumeFilter {
            names: f.names,
            labels: f.labels,
            dangling: f.dangling,
            ..Default::default()
        };
        let core = self.0.clone();
        let volumes = blocking("list volumes", move || {
            Ok(core
                .list_volumes(&filter)?
                .into_iter()
                .map(|v| volume(&core, v))
                .collect())
        })
        .await?;
        Ok(Response::new(proto::ListVolumesResponse { volumes }))
    }

    async fn remove(
        &self,
        request: Request<proto::RemoveVolumeRequest>,
    ) -> Result<Response<proto::RemoveVolumeResponse>, Status> {
        let r = request.into_inner();
        let core = self.0.clone();
        blocking("remove volume", move || {
            core.remove_volume(&r.name, r.force)
        })
        .await?;
        Ok(Response::new(proto::RemoveVolumeResponse {}))
    }

    async fn prune(
        &self,
        request: Request<proto::PruneVolumesRequest>,
    ) -> Result<Response<proto::PruneVolumesResponse>, Status> {
        let r = request.into_inner();
        let filter = VolumePruneFilter {
            all: r.all,
            labels: r.labels,
        };
        let core = self.0.clone();
        let (removed, bytes) =
            blocking("prune volumes", move || core.prune_volumes(&filter)).await?;
        Ok(Response::new(proto::PruneVolumesResponse {
            removed,
            space_reclaimed_bytes: bytes,
        }))
    }
}
