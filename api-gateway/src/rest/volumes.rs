//! Volume endpoints: create, list, inspect, remove, prune.

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

pub async fn list(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = filters(&q)?;
    let mut out = Vec::new();
    for v in core.volumes()? {
        let mut keep = true;
        for (key, values) in &f {
            let any = |pass: &dyn Fn(&str) -> bool| values.iter().any(|x| pass(x));
            keep &= match key.as_str() {
                "name" => any(&|x| v.name.contains(x)),
                "label" => any(&|x| match x.split_once('=') {
                    Some((k, val)) => v.labels.get(k).is_some_and(|l| l == val),
                    None => v.labels.contains_key(x),
                }),
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

pub async fn inspect(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let v = core.volume(&name)?;
    Ok(axum::Json(to_api(&core, &v)).into_response())
}

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
pub async fn prune(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = filters(&q)?;
    let labels = f.get("label").cloned().unwrap_or_default();
    let (deleted, bytes) = core.prune_volumes(|v| {
        !labels.iter().all(|l| match l.split_once('=') {
            Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
            None => v.labels.contains_key(l),
        })
    })?;
    Ok(axum::Json(VolumePruneResponse {
        volumes_deleted: Some(deleted),
        space_reclaimed: Some(bytes as i64),
    })
    .into_response())
}
