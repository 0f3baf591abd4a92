//! Volume endpoints: create, list, inspect, remove, prune.

use super::openapi::ErrorBody;
use super::params::{Query, filters, flag, json};
use super::{ApiError, ApiResult};
use crate::core::Core;
use crate::core::Error;
use crate::core::volumes::VolumeMeta;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{
    Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum,
};
use std::sync::Arc;

fn to_api(core: &Core, v: &VolumeMeta) -> Volume {
    Volume {
        name: v.name.clone(),
        driver: "local".into(),
        mountpoint: core.volume_data(&v.name).display().to_string(),
        created_at: Some(v.created_at.clone()),
        labels: v.labels.clone(),
        scope: Some(VolumeScopeEnum::LOCAL),
        options: v.options.clone(),
        ..Default::default()
    }
}

#[utoipa::path(
    post,
    path = "/volumes/create",
    request_body(content = Object, content_type = "application/json", description = "the volume (Docker's VolumeCreateOptions)"),
    responses(
        (status = 201, description = "the volume", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such volume plugin", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Volume"
)]
pub async fn create(State(core): State<Arc<Core>>, body: Bytes) -> ApiResult<Response> {
    let req: VolumeCreateRequest = json(&body)?;
    if let Some(d) = req
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "local")
    {
        return Err(ApiError(Error::NotFound(format!(
            "error looking up volume plugin {d}: plugin \"{d}\" not found"
        ))));
    }
    let v = core.create_volume(
        req.name.as_deref(),
        req.labels.unwrap_or_default(),
        req.driver_opts.unwrap_or_default(),
        false,
    )?;
    Ok((StatusCode::CREATED, axum::Json(to_api(&core, &v))).into_response())
}

#[utoipa::path(
    get,
    path = "/volumes",
    params(
        ("filters" = Option<String>, Query, description = "JSON-encoded filters (a map of name to list of values)"),
    ),
    responses(
        (status = 200, description = "`{Volumes, Warnings}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Volume"
)]
pub async fn list(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = filters(&q)?;
    let mut out = Vec::new();
    for v in core.volumes()? {
        let mut keep = true;
        for (key, values) in &f {
            let any = |pass: &dyn Fn(&str) -> bool| values.iter().any(|x| pass(x));
            keep &= match key.as_str() {
                "name" => any(&|x| v.name.contains(x)),
                "label" => any(&|x| super::params::label_matches(&v.labels, x)),
                "driver" => any(&|x| x == "local"),
                "dangling" => {
                    let dangling = core.volume_users(&v.name)?.is_empty();
                    any(&|x| matches!(x, "true" | "1") == dangling)
                }
                other => {
                    return Err(ApiError(Error::Invalid(format!(
                        "invalid filter '{other}'"
                    ))));
                }
            };
        }
        if keep {
            out.push(to_api(&core, &v));
        }
    }
    Ok(axum::Json(VolumeListResponse {
        volumes: Some(out),
        warnings: Some(Vec::new()),
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/volumes/{name}",
    params(
        ("name" = String, Path, description = "volume name"),
    ),
    responses(
        (status = 200, description = "the volume", body = Object, content_type = "application/json"),
        (status = 404, description = "no such volume", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Volume"
)]
pub async fn inspect(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let v = core.volume(&name)?;
    Ok(axum::Json(to_api(&core, &v)).into_response())
}

#[utoipa::path(
    delete,
    path = "/volumes/{name}",
    params(
        ("name" = String, Path, description = "volume name"),
        ("force" = Option<bool>, Query, description = "accepted"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "no such volume", body = ErrorBody),
        (status = 409, description = "the volume is in use", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Volume"
)]
pub async fn remove(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let _ = flag(&q, "force");
    core.remove_volume(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// API 1.41 prunes every volume no container uses (named ones too; the `all` filter came with 1.42).
#[utoipa::path(
    post,
    path = "/volumes/prune",
    params(
        ("filters" = Option<String>, Query, description = "JSON-encoded filters (a map of name to list of values)"),
    ),
    responses(
        (status = 200, description = "`{VolumesDeleted, SpaceReclaimed}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Volume"
)]
pub async fn prune(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = filters(&q)?;
    let labels = f.get("label").cloned().unwrap_or_default();
    let (deleted, bytes) = core.prune_volumes(|v| {
        !labels
            .iter()
            .all(|l| super::params::label_matches(&v.labels, l))
    })?;
    Ok(axum::Json(VolumePruneResponse {
        volumes_deleted: Some(deleted),
        space_reclaimed: Some(bytes as i64),
    })
    .into_response())
}
