//! polis.v1.Images over the core's image operations (core/images.rs), the ones `/images` calls: Pull streams the
//! core's progress as typed messages and ends with the image; List and Inspect read polisd's polis-image store, Tag,
//! Remove and Prune change it.

use super::{RpcStream, blocking, status};
use crate::core::Core;
use crate::core::images::{self, Image, familiar_name};
use polis_client::proto::{self, images_server::Images};
use polis_imagesvc::registry::Credential;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ImagesApi(pub Arc<Core>);

/// An image of the store as the typed Image (blocking: reads the store).
fn image(core: &Core, image: &Image) -> proto::Image {
    proto::Image {
        id: image.id.clone(),
        name: familiar_name(&image.stored.name),
        repo_digest: image.repo_digest(),
        created_unix: image.created_unix(),
        size_bytes: image.size(&core.store),
        labels: image.labels(),
    }
}

/// An image's config (the part of it that says what containers made from it run) as ImageDetails.
fn details(core: &Core, i: &Image) -> proto::ImageDetails {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let texts = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    let config = &i.config["config"];
    proto::ImageDetails {
        image: Some(image(core, i)),
        architecture: text(&i.config["architecture"]),
        os: text(&i.config["os"]),
        entrypoint: texts(&config["Entrypoint"]),
        command: texts(&config["Cmd"]),
        env: texts(&config["Env"]),
        working_dir: text(&config["WorkingDir"]),
        user: text(&config["User"]),
        exposed_ports: keys(&config["ExposedPorts"]),
        volumes: keys(&config["Volumes"]),
        stop_signal: text(&config["StopSignal"]),
        layers: i.layers(),
    }
}

/// The core's progress messages (Docker's JSON progress objects) as typed progress.
fn progress(v: &serde_json::Value) -> proto::PullProgress {
    let detail = &v["progressDetail"];
    proto::PullProgress {
        status: v["status"].as_str().unwrap_or_default().to_string(),
        layer: v["id"].as_str().unwrap_or_default().to_string(),
        current_bytes: detail["current"].as_u64().unwrap_or(0),
        total_bytes: detail["total"].as_u64().unwrap_or(0),
    }
}

fn credential(auth: Option<proto::RegistryAuth>) -> Result<Option<Credential>, Status> {
    let Some(a) = auth else { return Ok(None) };
    if !a.identity_token.is_empty() {
        return Err(Status::invalid_argument(
            "registry identity tokens are not supported yet; give a user name and password",
        ));
    }
    if a.username.is_empty() && a.password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic {
        username: a.username,
        password: a.password,
    }))
}

#[tonic::async_trait]
impl Images for ImagesApi {
    type PullStream = RpcStream<proto::PullImageEvent>;

    async fn pull(
        &self,
        request: Request<proto::PullImageRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let r = request.into_inner();
        if r.reference.is_empty() {
            return Err(Status::invalid_argument("reference is required"));
        }
        let credential = credential(r.auth)?;
        let core = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let progress_tx = tx.clone();
        let sink: images::ProgressSink = Arc::new(move |v| {
            let _ = progress_tx.send(Ok(proto::PullImageEvent {
                event: Some(proto::pull_image_event::Event::Progress(progress(&v))),
            }));
        });
        tokio::task::spawn_blocking(move || {
            let result = images::pull(
                &core.store,
                &r.reference,
                &core.config.insecure_registries,
                credential,
                sink,
            );
            let last = match result {
                Ok(pulled) => {
                    core.image_event("pull", &pulled.stored.name);
                    Ok(proto::PullImageEvent {
                        event: Some(proto::pull_image_event::Event::Image(image(&core, &pulled))),
                    })
                }
                Err(e) => Err(status(e)),
            };
            let _ = tx.send(last);
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list(
        &self,
        request: Request<proto::ListImagesRequest>,
    ) -> Result<Response<proto::ListImagesResponse>, Status> {
        let wanted = request.into_inner().reference;
        let core = self.0.clone();
        let images = blocking("list images", move || {
            Ok(images::list(&core.store)?
                .iter()
                .map(|i| image(&core, i))
                .filter(|i| wanted.is_empty() || i.name.starts_with(&wanted))
                .collect())
        })
        .await?;
        Ok(Response::new(proto::ListImagesResponse { images }))
    }

    async fn inspect(
        &self,
        request: Request<proto::InspectImageRequest>,
    ) -> Result<Response<proto::ImageDetails>, Status> {
        let reference = request.into_inner().reference;
        let core = self.0.clone();
        let d = blocking("inspect image", move || {
            let found = images::find(&core.store, &reference)?;
            Ok(details(&core, &found))
        })
        .await?;
        Ok(Response::new(d))
    }

    async fn tag(
        &self,
        request: Request<proto::TagImageRequest>,
    ) -> Result<Response<proto::TagImageResponse>, Status> {
        let r = request.into_inner();
        if r.target.is_empty() {
            return Err(Status::invalid_argument("target is required"));
        }
        let core = self.0.clone();
        blocking("tag image", move || {
            images::tag(&core, &r.source, &r.target)
        })
        .await?;
        Ok(Response::new(proto::TagImageResponse {}))
    }

    async fn remove(
        &self,
        request: Request<proto::RemoveImageRequest>,
    ) -> Result<Response<proto::RemoveImageResponse>, Status> {
        let r = request.into_inner();
        let core = self.0.clone();
        let removed = blocking("remove image", move || {
            images::remove(&core, &r.reference, r.force)
        })
        .await?;
        Ok(Response::new(proto::RemoveImageResponse {
            untagged: vec![removed.untagged],
            deleted: removed.deleted.into_iter().collect(),
        }))
    }

    async fn prune(
        &self,
        request: Request<proto::PruneImagesRequest>,
    ) -> Result<Response<proto::PruneImagesResponse>, Status> {
        let r = request.into_inner();
        let core = self.0.clone();
        let pruned = blocking("prune images", move || {
            images::prune(&core, r.all, &r.labels)
        })
        .await?;
        Ok(Response::new(proto::PruneImagesResponse {
            deleted: pruned.deleted,
            space_reclaimed_bytes: pruned.reclaimed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_progress_becomes_typed_progress() {
        let p = progress(&serde_json::json!({
            "status": "Downloading", "id": "abc",
            "progressDetail": {"current": 5, "total": 10}
        }));
        assert_eq!(
            (
                p.status.as_str(),
                p.layer.as_str(),
                p.current_bytes,
                p.total_bytes
            ),
            ("Downloading", "abc", 5, 10)
        );
        assert_eq!(progress(&serde_json::json!({"status": "x"})).layer, "");
    }
}
