//! `docker cp`: `HEAD` and `GET /containers/{id}/archive?path=` (the path's stat in the `X-Docker-Container-Path-Stat`
//! header, and a tar archive of it) and `PUT` (a tar archive extracted into a directory of the container), as the
//! Engine API v1.41 describes them ("Get information about files in a container", "Get an archive of a filesystem
//! resource in a container", "Extract an archive of files or folders to a directory in a container"). Paths are
//! the container's, through its binds and volumes (core/archive.rs).

use super::openapi::ErrorBody;
use super::params::{Query, flag};
use super::{ApiError, ApiResult};
use crate::core::archive::ChunkReader;
use crate::core::{Core, Error};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::sync::Arc;

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";
/// How much of a `PUT` body is read and dropped after the extraction stopped reading it, and for how long.
const DRAIN_LIMIT: usize = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

fn path_param(q: &Query) -> ApiResult<String> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| ApiError(Error::Invalid("path is required".into())))
}

fn stat_header(value: String) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(&value).map_err(|e| ApiError(Error::failed("encode the stat header", e)))
}

/// `HEAD /containers/{id}/archive?path=`.
#[utoipa::path(
    head,
    path = "/containers/{id}/archive",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("path" = String, Query, description = "a path in the container's filesystem"),
    ),
    responses(
        (status = 200, description = "the path exists; X-Docker-Container-Path-Stat holds its base64 JSON stat"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container or path", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn head(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let stat = core.archive_stat(&id, &path).await?;
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(STAT_HEADER, stat_header(stat.header_value())?);
    Ok(response)
}

/// `GET /containers/{id}/archive?path=`.
#[utoipa::path(
    get,
    path = "/containers/{id}/archive",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("path" = String, Query, description = "a path in the container's filesystem"),
    ),
    responses(
        (status = 200, description = "a tar archive of the path", body = String, content_type = "application/x-tar"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container or path", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn get(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let archive = core.archive_get(&id, &path).await?;
    let body = futures_util::stream::unfold(archive.body, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = (
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(body),
    )
        .into_response();
    response
        .headers_mut()
        .insert(STAT_HEADER, stat_header(archive.stat.header_value())?);
    Ok(response)
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: the body is the archive, of any size.
#[utoipa::path(
    put,
    path = "/containers/{id}/archive",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("path" = String, Query, description = "a path in the container's filesystem"),
        ("noOverwriteDirNonDir" = Option<bool>, Query, description = "refuse to replace a directory with a non-directory and back"),
        ("copyUIDGID" = Option<bool>, Query, description = "keep the archive's owners"),
    ),
    request_body(content = String, content_type = "application/x-tar", description = "a tar archive to extract at the path"),
    responses(
        (status = 200, description = "extracted"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 403, description = "the volume or container filesystem is read-only", body = ErrorBody),
        (status = 404, description = "no such container or path", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn put(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> ApiResult<StatusCode> {
    let path = path_param(&q)?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut stream = req.into_body().into_data_stream();
    let feeder = tokio::spawn(async move {
        // Once the extraction is done with the body (the archive ended, or it was refused), what is left of it is
        // read and dropped, up to a limit, as Go's net/http server discards it: a client still sending (the end
        // of a chunked body after the archive's last block, or an archive refused at once) then reads the answer
        // instead of a broken connection.
        let mut taken = true;
        let mut dropped = 0usize;
        while let Some(chunk) = stream.next().await {
            if !taken {
                match chunk {
                    Ok(b) if dropped + b.len() <= DRAIN_LIMIT => dropped += b.len(),
                    _ => return,
                }
                continue;
            }
            let item = chunk
                .map(|b| b.to_vec())
                .map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            if failed {
                let _ = tx.send(item).await;
                return;
            }
            if tx.send(item).await.is_err() {
                taken = false;
            }
        }
    });
    let result = core
        .archive_put(
            &id,
            &path,
            flag(&q, "noOverwriteDirNonDir"),
            flag(&q, "copyUIDGID"),
            ChunkReader::new(rx),
        )
        .await;
    let abort = feeder.abort_handle();
    if tokio::time::timeout(DRAIN_TIME, feeder).await.is_err() {
        abort.abort();
    }
    result?;
    Ok(StatusCode::OK)
}
