//! polis.v1.Images: pull, list, inspect, tag, remove, prune.

use crate::{Client, Result, Stream, proto};

impl Client {
    /// Pulls an image anonymously: progress, then the image (see [`Stream::image`]).
    pub async fn pull(&self, reference: &str) -> Result<Stream<proto::PullImageEvent>> {
        self.pull_with(proto::PullImageRequest {
            reference: reference.to_string(),
            auth: None,
        })
        .await
    }

    /// Pulls an image with the request's credentials.
    pub async fn pull_with(
        &self,
        request: proto::PullImageRequest,
    ) -> Result<Stream<proto::PullImageEvent>> {
        let inner = self.images().pull(request).await?.into_inner();
        Ok(Stream { inner })
    }

    /// Every image of polisd's store, one per name.
    pub async fn list_images(&self) -> Result<Vec<proto::Image>> {
        Ok(self
            .images()
            .list(proto::ListImagesRequest::default())
            .await?
            .into_inner()
            .images)
    }

    /// Removes an image's name (and the image when no name is left); `force` also when a container uses it.
    pub async fn remove_image(
        &self,
        reference: &str,
        force: bool,
    ) -> Result<proto::RemoveImageResponse> {
        Ok(self
            .images()
            .remove(proto::RemoveImageRequest {
                reference: reference.to_string(),
                force,
            })
            .await?
            .into_inner())
    }

    /// One image (by reference, ID or ID prefix) with what its config says about containers made from it and its
    /// layers.
    pub async fn inspect_image(&self, reference: &str) -> Result<proto::ImageDetails> {
        Ok(self
            .images()
            .inspect(proto::InspectImageRequest {
                reference: reference.to_string(),
            })
            .await?
            .into_inner())
    }

    /// Gives the image `source` (reference, ID or ID prefix) the name `target` ("app:2").
    pub async fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        self.images()
            .tag(proto::TagImageRequest {
                source: source.to_string(),
                target: target.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Removes images no container uses: with `all`, every such image; else only those without a name. The IDs
    /// deleted and the bytes freed.
    pub async fn prune_images(&self, all: bool) -> Result<proto::PruneImagesResponse> {
        Ok(self
            .images()
            .prune(proto::PruneImagesRequest {
                all,
                labels: Vec::new(),
            })
            .await?
            .into_inner())
    }
}
