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
use std::sync::Arc;
use std::time::Duration;

/// dockerd's collection interval.
const INTERVAL: Duration = Duration::from_secs(1);

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

/// One sample, read on a blocking thread; None when that thread failed.
async fn sample(
    sampler: Sampler,
) -> Option<(Sampler, crate::core::Result<ContainerStatsResponse>)> {
    tokio::task::spawn_blocking(move || {
        let mut sampler = sampler;
        let r = sampler.sample();
        (sampler, r)
    })
    .await
    .ok()
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
    let sampler = Sampler::new(&record);
    if !stream {
        let failed = || Error::Failed("stats: the sampler failed".into());
        let (sampler, mut result) = sample(sampler).await.ok_or_else(failed)?;
        if !one_shot && result.is_ok() {
            tokio::time::sleep(INTERVAL).await;
            result = sample(sampler).await.ok_or_else(failed)?.1;
        }
        let stats = result.map_err(|e| {
            if core
                .db
                .get(&record.id)
                .ok()
                .flatten()
                .is_some_and(|r| !r.state.status.is_live())
            {
                Error::Conflict(format!("Container {} is not running", record.id))
            } else {
                e
            }
        })?;
        return Ok((json, line(&stats)).into_response());
    }
    let id = record.id.clone();
    let body =
        futures_util::stream::unfold((core, sampler, true), move |(core, sampler, first)| {
            let id = id.clone();
            async move {
                if !first {
                    tokio::time::sleep(INTERVAL).await;
                }
                let live = core
                    .db
                    .get(&id)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.state.status.is_live());
                if !live {
                    return None;
                }
                let (sampler, result) = sample(sampler).await?;
                match result {
                    Ok(stats) => Some((
                        Ok::<_, std::io::Error>(line(&stats)),
                        (core, sampler, false),
                    )),
                    Err(e) => {
                        tracing::debug!(container = id, error = %e, "stats");
                        None
                    }
                }
            }
        });
    Ok((json, Body::from_stream(body)).into_response())
}
