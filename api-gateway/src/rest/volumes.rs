//! Volume endpoints: create, list, inspect, remove, prune.

use super::openapi::ErrorBody;
use super::params::{Query, filters, flag, json};
use super::{ApiError, ApiResult};
use crate::core::Core;
use crate::core::Error;
use crate::core::volumes::{VolumeFilter, VolumeMeta, VolumePruneFilter, check_volume_driver};
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
    check_volume_driver(req.driver.as_deref().unwrap_or_default())?;
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
    let mut filter = VolumeFilter::default();
    for (key, values) in filters(&q)? {
        match key.as_str() {
            "name" => filter.names = values,
            "label" => filter.labels = values,
            "driver" => filter.drivers = values,
            "dangling" => {
                // Any of the values may match: both "true" and "false" select every volume.
                let wanted: Vec<bool> = values
                    .iter()
                    .map(|x| matches!(x.as_str(), "true" | "1"))
                    .collect();
                filter.dangling = match (wanted.contains(&true), wanted.contains(&false)) {
                    (true, false) => Some(true),
                    (false, true) => Some(false),
                    _ => None,
                };
            }
            other => {
                return Err(ApiError(Error::Invalid(format!(
                    "invalid filter '{other}'"
                ))));
            }
        }
    }
    let out = core
        .list_volumes(&filter)?
        .iter()
        .map(|v| to_api(&core, v))
        .collect();
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
        ("force" = Option<bool>, Query, description = "a missing volume is no error (one in use is still refused)"),
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
    core.remove_volume(&name, flag(&q, "force"))?;
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
    let (deleted, bytes) = core.prune_volumes(&VolumePruneFilter {
        all: true,
        labels: f.get("label").cloned().unwrap_or_default(),
    })?;
    Ok(axum::Json(VolumePruneResponse {
        volumes_deleted: Some(deleted),
        space_reclaimed: Some(bytes as i64),
    })
    .into_response())
}
