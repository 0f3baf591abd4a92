//! Image endpoints: create (pull, with Docker's JSON progress stream), list, inspect, remove.

use super::openapi::ErrorBody;
use super::params::Query;
use super::{ApiError, ApiResult};
use crate::core::images::{self, Image, credential_from_header, familiar_name};
use crate::core::{Core, Error};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::ImageSummary;
use std::sync::Arc;
use tokio::sync::mpsc;

enum PullMessage {
    Progress(serde_json::Value),
    Done(Box<crate::core::Result<Image>>),
}

/// `POST /images/create?fromImage=NAME&tag=TAG`. A pull that fails before it reports anything (no such image,
/// registry unreachable) answers with an error status; later failures end the stream with Docker's error object.
#[utoipa::path(
    post,
    path = "/images/create",
    params(
        ("fromImage" = String, Query, description = "the image to pull"),
        ("tag" = Option<String>, Query, description = "tag or digest"),
        ("platform" = Option<String>, Query, description = "accepted"),
        ("X-Registry-Auth" = Option<String>, Header, description = "base64url-encoded JSON registry credentials"),
    ),
    responses(
        (status = 200, description = "a stream of progress objects, one JSON object per line", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "repository does not exist or no pull access", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Image"
)]
pub async fn pull(
    State(core): State<Arc<Core>>,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let from = q
        .get("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            ApiError(Error::Invalid(
                "fromImage is required (importing with fromSrc is not supported)".into(),
            ))
        })?;
    let reference = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    let credential = match headers.get("X-Registry-Auth") {
        Some(v) => credential_from_header(v.to_str().unwrap_or_default())?,
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<PullMessage>();
    let progress_tx = tx.clone();
    let sink: images::ProgressSink = Arc::new(move |v| {
        let _ = progress_tx.send(PullMessage::Progress(v));
    });
    let store = core.store.clone();
    let insecure = core.config.insecure_registries.clone();
    let wanted = reference.clone();
    tokio::task::spawn_blocking(move || {
        let result = images::pull(&store, &wanted, &insecure, credential, sink);
        let _ = tx.send(PullMessage::Done(Box::new(result)));
    });
    let first = rx.recv().await;
    let first_line = match first {
        Some(PullMessage::Done(done)) => match *done {
            Err(e) => return Err(ApiError(e)),
            Ok(image) => {
                core.image_event("pull", &image.stored.name);
                None
            }
        },
        Some(PullMessage::Progress(v)) => Some(v),
        None => {
            return Err(ApiError(Error::Failed(
                "the pull ended without a result".into(),
            )));
        }
    };
    let stream =
        futures_util::stream::unfold((rx, first_line, core), |(mut rx, first, core)| async move {
            if let Some(v) = first {
                return Some((line(&v), (rx, None, core)));
            }
            match rx.recv().await? {
                PullMessage::Progress(v) => Some((line(&v), (rx, None, core))),
                PullMessage::Done(done) => match *done {
                    Ok(image) => {
                        core.image_event("pull", &image.stored.name);
                        None
                    }
                    Err(e) => {
                        let m = e.to_string();
                        let v = serde_json::json!({"errorDetail": {"message": m}, "error": m});
                        Some((line(&v), (rx, None, core)))
                    }
                },
            }
        });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn line(v: &serde_json::Value) -> Result<Vec<u8>, std::io::Error> {
    let mut l = serde_json::to_vec(v).unwrap_or_default();
    l.extend_from_slice(b"\r\n");
    Ok(l)
}

fn size(core: &Core, image: &Image) -> i64 {
    image.size(&core.store) as i64
}

fn summary(core: &Core, image: &Image) -> ImageSummary {
    ImageSummary {
        id: image.id.clone(),
        parent_id: String::new(),
        repo_tags: vec![familiar_name(&image.stored.name)],
        repo_digests: vec![image.repo_digest()],
        created: image.created_unix(),
        size: size(core, image),
        shared_size: -1,
        labels: image.labels(),
        containers: -1,
        ..Default::default()
    }
}

#[utoipa::path(
    get,
    path = "/images/json",
    responses(
        (status = 200, description = "the images", body = [Object], content_type = "application/json"),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Image"
)]
pub async fn list(State(core): State<Arc<Core>>) -> ApiResult<Response> {
    let c = core.clone();
    let out = tokio::task::spawn_blocking(move || -> crate::core::Result<Vec<ImageSummary>> {
        // One image ID under several names is one row with several tags, as Docker lists it.
        let mut rows: Vec<ImageSummary> = Vec::new();
        for image in images::list(&c.store)? {
            let s = summary(&c, &image);
            match rows.iter_mut().find(|r| r.id == s.id) {
                Some(r) => {
                    r.repo_tags.extend(s.repo_tags);
                    r.repo_digests.extend(s.repo_digests);
                }
                None => rows.push(s),
            }
        }
        Ok(rows)
    })
    .await
    .map_err(|e| ApiError(Error::failed("list images", e)))??;
    Ok(axum::Json(out).into_response())
}

/// `GET /images/{*name}`: names hold slashes, so the route takes the rest of the path and serves
/// `/images/{name}/json` ([`inspect`]) and `/images/{name}/history` ([`history`]).
pub async fn get(State(core): State<Arc<Core>>, Path(rest): Path<String>) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/history") {
        return history(core, name.to_string()).await;
    }
    match rest.strip_suffix("/json") {
        Some(name) => inspect(core, name.to_string()).await,
        None => Err(ApiError(Error::NotFound(format!(
            "page not found: /images/{rest}"
        )))),
    }
}

/// `GET /images/{name}/json`.
#[utoipa::path(
    get,
    path = "/images/{name}/json",
    params(("name" = String, Path, description = "image name or ID")),
    responses(
        (status = 200, description = "the image", body = Object, content_type = "application/json"),
        (status = 404, description = "no such image", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Image"
)]
async fn inspect(core: Arc<Core>, name: String) -> ApiResult<Response> {
    let c = core.clone();
    let doc = tokio::task::spawn_blocking(move || -> crate::core::Result<serde_json::Value> {
        let image = images::find(&c.store, &name)?;
        let config = &image.config;
        Ok(serde_json::json!({
            "Id": image.id,
            "RepoTags": [familiar_name(&image.stored.name)],
            "RepoDigests": [image.repo_digest()],
            "Parent": "",
            "Comment": "",
            "Created": config["created"],
            "DockerVersion": "",
            "Author": config["author"],
            "Config": config["config"],
            "Architecture": config["architecture"],
            "Os": config["os"],
            "Size": size(&c, &image),
            "VirtualSize": size(&c, &image),
            "GraphDriver": {"Name": "overlay", "Data": null},
            "RootFS": {"Type": "layers", "Layers": config["rootfs"]["diff_ids"]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }))
    })
    .await
    .map_err(|e| ApiError(Error::failed("inspect image", e)))??;
    Ok(axum::Json(doc).into_response())
}

/// `DELETE /images/{name}`: untags the name; the content goes when no image uses it. An image a container uses is
/// refused without `force`.
#[utoipa::path(
    delete,
    path = "/images/{name}",
    params(
        ("name" = String, Path, description = "image name or ID"),
        ("force" = Option<bool>, Query, description = "remove even if a container uses the image"),
        ("noprune" = Option<bool>, Query, description = "accepted, ignored"),
    ),
    responses(
        (status = 200, description = "the untagged and deleted images", body = [Object], content_type = "application/json"),
        (status = 404, description = "no such image", body = ErrorBody),
        (status = 409, description = "a container uses the image", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Image"
)]
pub async fn remove(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let force = super::params::flag(&q, "force");
    let c = core.clone();
    let removed = tokio::task::spawn_blocking(move || images::remove(&c, &name, force))
        .await
        .map_err(|e| ApiError(Error::failed("remove image", e)))??;
    let mut out = vec![serde_json::json!({"Untagged": removed.untagged})];
    if let Some(id) = removed.deleted {
        out.push(serde_json::json!({"Deleted": id}));
    }
    Ok(axum::Json(out).into_response())
}

/// `GET /images/{name}/history`: the config's history, newest first, with the size of each layer.
#[utoipa::path(
    get,
    path = "/images/{name}/history",
    params(("name" = String, Path, description = "image name or ID")),
    responses(
        (status = 200, description = "the image's history, newest first", body = [Object], content_type = "application/json"),
        (status = 404, description = "no such image", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Image"
)]
async fn history(core: Arc<Core>, name: String) -> ApiResult<Response> {
    let c = core.clone();
    let doc = tokio::task::spawn_blocking(move || -> crate::core::Result<serde_json::Value> {
        let image = images::find(&c.store, &name)?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&c.store.read_blob(image.stored.manifest.digest().as_ref())?)
                .unwrap_or_default();
        let mut sizes = manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|l| l["size"].as_i64().unwrap_or(0));
        let mut rows = Vec::new();
        let history = image.config["history"].as_array().cloned().unwrap_or_default();
        let count = history.len();
        for (i, h) in history.iter().enumerate() {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty { 0 } else { sizes.next().unwrap_or(0) };
            let created = h["created"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp())
                .unwrap_or(0);
            let last = i + 1 == count;
            rows.push(serde_json::json!({
                "Id": if last { image.id.clone() } else { "<missing>".into() },
                "Created": created,
                "CreatedBy": h["created_by"].as_str().unwrap_or_default(),
                "Tags": if last { serde_json::json!([familiar_name(&image.stored.name)]) } else { serde_json::Value::Null },
                "Size": size,
                "Comment": h["comment"].as_str().unwrap_or_default(),
            }));
        }
        if rows.is_empty() {
            rows.push(serde_json::json!({
                "Id": image.id, "Created": image.created_unix(), "CreatedBy": "", "Size": size(&c, &image),
                "Tags": [familiar_name(&image.stored.name)], "Comment": "",
            }));
        }
        rows.reverse();
        Ok(serde_json::json!(rows))
    })
    .await
    .map_err(|e| ApiError(Error::failed("image history", e)))??;
    Ok(axum::Json(doc).into_response())
}

/// `POST /images/{*name}`: serves `/images/{name}/tag` ([`tag`]).
pub async fn post(
    State(core): State<Arc<Core>>,
    Path(rest): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    match rest.strip_suffix("/tag") {
        Some(name) => tag(core, name, q).await,
        None => Err(ApiError(Error::NotFound(format!(
            "page not found: /images/{rest}"
        )))),
    }
}

/// `POST /images/{name}/tag?repo=REPO&tag=TAG`.
#[utoipa::path(
    post,
    path = "/images/{name}/tag",
    params(
        ("name" = String, Path, description = "image name or ID"),
        ("repo" = String, Query, description = "the repository to tag in"),
        ("tag" = Option<String>, Query, description = "the tag"),
    ),
    responses(
        (status = 201, description = "tagged"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such image", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Image"
)]
async fn tag(core: Arc<Core>, name: &str, q: Query) -> ApiResult<Response> {
    let repo = q.get("repo").filter(|r| !r.is_empty()).ok_or_else(|| {
        ApiError(Error::Invalid(
            "repository name must have at least one component".into(),
        ))
    })?;
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    };
    let c = core.clone();
    let source = name.to_string();
    tokio::task::spawn_blocking(move || images::tag(&c, &source, &target))
        .await
        .map_err(|e| ApiError(Error::failed("tag image", e)))??;
    Ok(axum::http::StatusCode::CREATED.into_response())
}

/// `POST /images/prune`: every image in the store has a name, so there are no dangling ones; with
/// `dangling=false`, the images no container uses (with every `label` asked) are removed ([`images::prune`]). Then
/// the content nothing references goes.
#[utoipa::path(
    post,
    path = "/images/prune",
    params(
        ("filters" = Option<String>, Query, description = "JSON-encoded filters (a map of name to list of values)"),
    ),
    responses(
        (status = 200, description = "`{ImagesDeleted, SpaceReclaimed}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Image"
)]
pub async fn prune(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = super::params::filters(&q)?;
    let all = f
        .get("dangling")
        .is_some_and(|v| v.iter().any(|d| matches!(d.as_str(), "false" | "0")));
    let labels = f.get("label").cloned().unwrap_or_default();
    let c = core.clone();
    let pruned = tokio::task::spawn_blocking(move || images::prune(&c, all, &labels))
        .await
        .map_err(|e| ApiError(Error::failed("prune images", e)))??;
    let mut deleted = Vec::new();
    for (name, id) in pruned.untagged {
        deleted.push(serde_json::json!({"Untagged": name}));
        deleted.push(serde_json::json!({"Deleted": id}));
    }
    Ok(axum::Json(
        serde_json::json!({"ImagesDeleted": deleted, "SpaceReclaimed": pruned.reclaimed}),
    )
    .into_response())
}

/// `GET /system/df`: images, containers and volumes with their sizes.
#[utoipa::path(
    get,
    path = "/system/df",
    responses(
        (status = 200, description = "images, containers and volumes with their sizes", body = Object, content_type = "application/json"),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "System"
)]
pub async fn disk_usage(State(core): State<Arc<Core>>) -> ApiResult<Response> {
    let c = core.clone();
    let usage = tokio::task::spawn_blocking(move || crate::core::disk::disk_usage(&c))
        .await
        .map_err(|e| ApiError(Error::failed("disk usage", e)))??;
    let image_rows: Vec<ImageSummary> = usage
        .images
        .iter()
        .map(|i| ImageSummary {
            id: i.image.id.clone(),
            parent_id: String::new(),
            repo_tags: i.names.clone(),
            repo_digests: i.repo_digests.clone(),
            created: i.image.created_unix(),
            size: i.size as i64,
            shared_size: -1,
            labels: i.image.labels(),
            containers: i.containers as i64,
            ..Default::default()
        })
        .collect();
    let containers: Vec<serde_json::Value> = usage
        .containers
        .iter()
        .map(|u| {
            let r = &u.record;
            serde_json::json!({
                "Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.image, "ImageID": r.image_id,
                "Command": r.path, "State": r.state.status.as_str(), "SizeRw": u.size_rw,
            })
        })
        .collect();
    let volumes: Vec<serde_json::Value> = usage
        .volumes
        .iter()
        .map(|u| {
            let v = &u.volume;
            serde_json::json!({
                "Name": v.name, "Driver": "local", "Mountpoint": core.volume_data(&v.name),
                "CreatedAt": v.created_at, "Labels": v.labels, "Scope": "local", "Options": v.options,
                "UsageData": {"Size": u.size, "RefCount": u.users},
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({
        "LayersSize": usage.images_size(), "Images": image_rows, "Containers": containers,
        "Volumes": volumes, "BuildCache": [],
    }))
    .into_response())
}
