//! polis.v1.Volumes: create, inspect, list, remove, prune.

use crate::{Client, Result, proto};

impl Client {
    /// Creates a volume of the local driver (an existing one of that name is returned as it is; without a name,
    /// an anonymous volume with a generated one).
    pub async fn create_volume(
        &self,
        request: proto::CreateVolumeRequest,
    ) -> Result<proto::Volume> {
        Ok(self.volumes().create(request).await?.into_inner())
    }

    /// One volume, by name; a missing one is [`crate::Error::NotFound`].
    pub async fn inspect_volume(&self, name: &str) -> Result<proto::Volume> {
        Ok(self
            .volumes()
            .inspect(proto::InspectVolumeRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner())
    }

    /// The volumes the request's filter selects (every volume without one), by name.
    pub async fn list_volumes(
        &self,
        request: proto::ListVolumesRequest,
    ) -> Result<Vec<proto::Volume>> {
        Ok(self.volumes().list(request).await?.into_inner().volumes)
    }

    /// Removes a volume and its data; one a container uses is [`crate::Error::FailedPrecondition`] (also with
    /// `force`, which makes a missing volume no error).
    pub async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        self.volumes()
            .remove(proto::RemoveVolumeRequest {
                name: name.to_string(),
                force,
            })
            .await?;
        Ok(())
    }

    /// Removes the anonymous volumes no container uses; their names and the bytes freed.
    pub async fn prune_volumes(&self) -> Result<proto::PruneVolumesResponse> {
        Ok(self
            .volumes()
            .prune(proto::PruneVolumesRequest::default())
            .await?
            .into_inner())
    }
}
