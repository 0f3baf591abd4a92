//! `docker cp`: `HEAD` and `GET /containers/{id}/archive?path=` (the path's stat in the `X-Docker-Container-Path-Stat`
//! header, and a tar archive of it) and `PUT` (a tar archive extracted into a directory of the container).

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
        while let Some(chunk) = stream.next().await {
            let item = chunk
                .map(|b| b.to_vec())
                .map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
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
    feeder.abort();
    result?;
    Ok(StatusCode::OK)
}
