//! `GET /containers/{id}/top` and `GET /containers/{id}/stats`.

use super::openapi::ErrorBody;
use super::params::{Query, flag};
use super::{ApiError, ApiResult};
use crate::core::stats::Sampler;
use crate::core::{Core, Error};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::ContainerStatsResponse;
use futures_util::StreamExt;
use std::sync::Arc;

/// `GET /containers/{id}/top?ps_args=`.
#[utoipa::path(
    get,
    path = "/containers/{id}/top",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("ps_args" = Option<String>, Query, description = "ps arguments"),
    ),
    responses(
        (status = 200, description = "`{Titles, Processes}`", body = Object, content_type = "application/json"),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the container is not running", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn top(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let ps_args = q.get("ps_args").map(String::as_str).unwrap_or("");
    let top = core.top(&id, ps_args).await?;
    Ok(axum::Json(top).into_response())
}

fn line(stats: &ContainerStatsResponse) -> Vec<u8> {
    let mut out = serde_json::to_vec(stats).unwrap_or_default();
    out.push(b'\n');
    out
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: with `stream` (the default) one object a second until the
/// container stops or the client leaves; without, one object whose `precpu_stats` is a second older (none with
/// `one-shot`).
#[utoipa::path(
    get,
    path = "/containers/{id}/stats",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("stream" = Option<bool>, Query, description = "keep streaming (default true)"),
        ("one-shot" = Option<bool>, Query, description = "one sample at once (with stream=false)"),
    ),
    responses(
        (status = 200, description = "stats objects, one JSON object per line while streaming", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn stats(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let record = core.db.lookup(&id)?;
    let stream = q.get("stream").is_none() || flag(&q, "stream");
    let one_shot = flag(&q, "one-shot");
    if one_shot && stream {
        return Err(ApiError(Error::Invalid(
            "cannot have stream=true and one-shot=true".into(),
        )));
    }
    let json = [(header::CONTENT_TYPE, "application/json")];
    if !record.state.status.is_live() {
        return Ok((json, line(&Sampler::empty(&record))).into_response());
    }
    if !stream {
        let stats = core.stats_sample(&record, !one_shot).await?;
        return Ok((json, line(&stats)).into_response());
    }
    let body = core
        .stats_stream(&record)
        .map(|stats| Ok::<_, std::io::Error>(line(&stats)));
    Ok((json, Body::from_stream(body)).into_response())
}
