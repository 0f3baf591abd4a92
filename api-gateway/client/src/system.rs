//! polis.v1.System: version, info, disk usage, events.

use crate::{Client, Result, Stream, proto};

impl Client {
    /// polisd's version.
    pub async fn version(&self) -> Result<proto::VersionResponse> {
        Ok(self
            .system()
            .version(proto::VersionRequest {})
            .await?
            .into_inner())
    }

    /// What polisd runs on and what it holds.
    pub async fn info(&self) -> Result<proto::InfoResponse> {
        Ok(self
            .system()
            .info(proto::InfoRequest {})
            .await?
            .into_inner())
    }

    /// The space images, containers and volumes take, what is in use and what removing the rest would free.
    pub async fn disk_usage(&self) -> Result<proto::DiskUsageResponse> {
        Ok(self
            .system()
            .disk_usage(proto::DiskUsageRequest {})
            .await?
            .into_inner())
    }

    /// Events as they happen, filtered (see [`proto::EventsRequest`] for replaying past ones and an end).
    pub async fn events(&self, request: proto::EventsRequest) -> Result<Stream<proto::Event>> {
        let inner = self.system().events(request).await?.into_inner();
        Ok(Stream { inner })
    }
}
