//! Container endpoints: create, list, inspect, start, stop, restart, kill, pause, unpause, wait, rename, resize,
//! remove.

use super::openapi::ErrorBody;
use super::params::{Query, filters, flag, int, json, terminal_size};
use super::{ApiError, ApiResult};
use crate::core::containers::WaitCondition;
use crate::core::health::{Check, HealthStatus};
use crate::core::record::{ContainerRecord, Status};
use crate::core::{Core, Error};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{
    ContainerCreateBody, ContainerCreateResponse, ContainerInspectResponse, ContainerState,
    ContainerStateStatusEnum, ContainerSummary, ContainerSummaryHealth, ContainerSummaryHostConfig,
    ContainerWaitResponse, Health, HealthcheckResult,
};
use std::sync::Arc;

#[utoipa::path(
    post,
    path = "/containers/create",
    params(
        ("name" = Option<String>, Query, description = "the container's name"),
    ),
    request_body(content = Object, content_type = "application/json", description = "the container's configuration (Docker's ContainerCreateBody)"),
    responses(
        (status = 201, description = "created: `{Id, Warnings}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such image", body = ErrorBody),
        (status = 409, description = "the name is in use", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn create(State(core): State<Arc<Core>>, q: Query, body: Bytes) -> ApiResult<Response> {
    let request: ContainerCreateBody = json(&body)?;
    let id = core
        .create(q.get("name").map(String::as_str), request)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ContainerCreateResponse {
            id,
            warnings: Vec::new(),
        }),
    )
        .into_response())
}

fn unix_time(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// "Up 5 seconds", "Exited (0) 3 minutes ago", as `docker ps` shows them.
fn human_status(r: &ContainerRecord) -> String {
    let since = |t: &Option<String>| {
        let secs = t
            .as_deref()
            .map(|t| chrono::Utc::now().timestamp() - unix_time(t))
            .unwrap_or(0)
            .max(0);
        match secs {
            0 => "Less than a second".to_string(),
            1 => "1 second".to_string(),
            s if s < 60 => format!("{s} seconds"),
            s if s < 120 => "About a minute".to_string(),
            s if s < 3600 => format!("{} minutes", s / 60),
            s if s < 7200 => "About an hour".to_string(),
            s => format!("{} hours", s / 3600),
        }
    };
    match r.state.status {
        Status::Created => "Created".into(),
        Status::Running => match health_of(r) {
            Some(HealthStatus::Starting) => {
                format!("Up {} (health: starting)", since(&r.state.started_at))
            }
            Some(h) => format!("Up {} ({})", since(&r.state.started_at), h.as_str()),
            None => format!("Up {}", since(&r.state.started_at)),
        },
        Status::Paused => format!("Up {} (Paused)", since(&r.state.started_at)),
        Status::Restarting => "Restarting".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            since(&r.state.finished_at)
        ),
    }
}

/// The container's health while it has a health check (Docker shows none for a container whose check is `NONE`).
fn health_of(r: &ContainerRecord) -> Option<HealthStatus> {
    r.state
        .health
        .as_ref()
        .filter(|_| Check::of(&r.config).is_some())
        .map(|h| h.status)
}

/// Docker's `State.Health`.
fn inspect_health(r: &ContainerRecord) -> Option<Health> {
    let h = r.state.health.as_ref()?;
    Check::of(&r.config)?;
    Some(Health {
        status: serde_json::from_value(serde_json::json!(h.status.as_str())).ok(),
        failing_streak: Some(h.failing_streak),
        log: Some(
            h.log
                .iter()
                .map(|l| HealthcheckResult {
                    start: Some(l.start.clone()),
                    end: Some(l.end.clone()),
                    exit_code: Some(l.exit_code),
                    output: Some(l.output.clone()),
                })
                .collect(),
        ),
    })
}

fn command(r: &ContainerRecord) -> String {
    std::iter::once(r.path.as_str())
        .chain(r.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary(r: &ContainerRecord) -> ContainerSummary {
    ContainerSummary {
        id: Some(r.id.clone()),
        names: Some(vec![format!("/{}", r.name)]),
        image: Some(r.image.clone()),
        image_id: Some(r.image_id.clone()),
        command: Some(command(r)),
        created: Some(unix_time(&r.created)),
        ports: Some(Vec::new()),
        labels: r.config.labels.clone(),
        state: serde_json::from_value(serde_json::json!(r.state.status.as_str())).ok(),
        status: Some(human_status(r)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(
                r.host_config
                    .network_mode
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
            ..Default::default()
        }),
        mounts: Some(mount_points(r)),
        health: Some(ContainerSummaryHealth {
            status: serde_json::from_value(serde_json::json!(
                health_of(r).map_or("none", HealthStatus::as_str)
            ))
            .ok(),
            failing_streak: Some(
                r.state
                    .health
                    .as_ref()
                    .filter(|_| health_of(r).is_some())
                    .map_or(0, |h| h.failing_streak),
            ),
        }),
        ..Default::default()
    }
}

/// Whether a container passes `docker ps`'s filters.
fn passes(
    r: &ContainerRecord,
    f: &std::collections::HashMap<String, Vec<String>>,
) -> ApiResult<bool> {
    for (key, values) in f {
        let any = |pass: &dyn Fn(&str) -> bool| values.iter().any(|v| pass(v));
        let ok = match key.as_str() {
            "id" => any(&|v| r.id.starts_with(v)),
            "name" => any(&|v| r.name.contains(v.trim_start_matches('/'))),
            "status" => any(&|v| v == r.state.status.as_str()),
            "ancestor" => any(&|v| {
                r.image == v
                    || r.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }),
            "label" => {
                let labels = r.config.labels.clone().unwrap_or_default();
                any(&|v| super::params::label_matches(&labels, v))
            }
            "health" => {
                for v in values {
                    if !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()) {
                        return Err(ApiError(Error::Invalid(format!(
                            "Unrecognised filter value for health: {v}"
                        ))));
                    }
                }
                let status = health_of(r).map_or("none", HealthStatus::as_str);
                any(&|v| v == status)
            }
            "exited" => {
                any(&|v| r.state.status == Status::Exited && v == r.state.exit_code.to_string())
            }
            "network" => any(&|v| {
                r.host_config.network_mode.as_deref().unwrap_or("bridge") == v
                    || (v == "bridge"
                        && r.host_config
                            .network_mode
                            .as_deref()
                            .is_none_or(|m| m == "default"))
            }),
            other => {
                return Err(ApiError(Error::Invalid(format!(
                    "invalid filter '{other}'"
                ))));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[utoipa::path(
    get,
    path = "/containers/json",
    params(
        ("all" = Option<bool>, Query, description = "show all containers, not only running ones"),
        ("limit" = Option<i64>, Query, description = "show at most this many, newest first"),
        ("size" = Option<bool>, Query, description = "accepted, ignored"),
        ("filters" = Option<String>, Query, description = "JSON-encoded filters (a map of name to list of values)"),
    ),
    responses(
        (status = 200, description = "the containers", body = [Object], content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn list(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = filters(&q)?;
    let all = flag(&q, "all") || f.contains_key("status");
    let limit = int(&q, "limit")?.filter(|l| *l > 0);
    let mut records = core.db.all()?;
    records.sort_by(|a, b| b.created.cmp(&a.created));
    let mut networks = super::networks::all_container_networks(&core);
    let mut out = Vec::new();
    for r in &records {
        if !all && limit.is_none() && !r.state.status.is_live() {
            continue;
        }
        if passes(r, &f)? {
            let endpoints = networks.remove(&r.id).unwrap_or_default();
            let published = super::networks::published_ports(r, &endpoints);
            out.push(super::networks::summary_with_endpoints(
                r,
                summary(r),
                endpoints,
                published,
            ));
        }
    }
    if let Some(l) = limit {
        out.truncate(l as usize);
    }
    Ok(axum::Json(out).into_response())
}

fn mount_points(r: &ContainerRecord) -> Vec<bollard_stubs::models::MountPoint> {
    r.mounts
        .iter()
        .map(|m| bollard_stubs::models::MountPoint {
            typ: Some(m.kind.clone()),
            name: m.name.clone(),
            source: Some(m.source.display().to_string()),
            destination: Some(m.destination.clone()),
            driver: m.name.as_ref().map(|_| "local".to_string()),
            mode: Some(String::new()),
            rw: Some(m.rw),
            propagation: Some(if m.kind == "bind" {
                m.propagation.clone()
            } else {
                String::new()
            }),
        })
        .collect()
}

/// Docker always shows the log driver; clients (docker-py) read `HostConfig.LogConfig.Type`.
fn with_log_config(
    mut host: bollard_stubs::models::HostConfig,
) -> bollard_stubs::models::HostConfig {
    if host
        .log_config
        .as_ref()
        .is_none_or(|l| l.typ.as_deref().unwrap_or("").is_empty())
    {
        host.log_config = Some(bollard_stubs::models::HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(Default::default()),
        });
    }
    host
}

pub fn inspect_record(core: &Core, r: &ContainerRecord) -> ContainerInspectResponse {
    let status: Option<ContainerStateStatusEnum> =
        serde_json::from_value(serde_json::json!(r.state.status.as_str())).ok();
    let dir = core.config.containers_dir().join(&r.id);
    let mut config = r.config.clone();
    config.image = Some(r.image.clone());
    config.hostname = Some(r.hostname());
    ContainerInspectResponse {
        id: Some(r.id.clone()),
        created: Some(r.created.clone()),
        path: Some(r.path.clone()),
        args: Some(r.args.clone()),
        state: Some(ContainerState {
            status,
            running: Some(r.state.status.is_live()),
            paused: Some(r.state.status == Status::Paused),
            restarting: Some(r.state.status == Status::Restarting),
            oom_killed: Some(r.state.oom_killed),
            dead: Some(r.state.status == Status::Dead),
            pid: Some(r.state.pid),
            exit_code: Some(r.state.exit_code),
            error: Some(r.state.error.clone()),
            started_at: Some(
                r.state
                    .started_at
                    .clone()
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            ),
            finished_at: Some(
                r.state
                    .finished_at
                    .clone()
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            ),
            health: inspect_health(r),
        }),
        image: Some(r.image_id.clone()),
        resolv_conf_path: Some(dir.join("etc/resolv.conf").display().to_string()),
        hostname_path: Some(dir.join("etc/hostname").display().to_string()),
        hosts_path: Some(dir.join("etc/hosts").display().to_string()),
        log_path: Some(r.log_path.display().to_string()),
        name: Some(format!("/{}", r.name)),
        restart_count: Some(r.restart_count),
        driver: Some("overlay".into()),
        platform: Some("linux".into()),
        host_config: Some(with_log_config(r.host_config.clone())),
        config: Some(config),
        mounts: Some(mount_points(r)),
        ..Default::default()
    }
}

#[utoipa::path(
    get,
    path = "/containers/{id}/json",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("size" = Option<bool>, Query, description = "accepted, ignored"),
    ),
    responses(
        (status = 200, description = "the container", body = Object, content_type = "application/json"),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn inspect(State(core): State<Arc<Core>>, Path(id): Path<String>) -> ApiResult<Response> {
    let r = core.db.lookup(&id)?;
    let inspect = inspect_record(&core, &r);
    Ok(axum::Json(super::networks::with_network_settings(&core, &r, inspect)).into_response())
}

#[utoipa::path(
    post,
    path = "/containers/{id}/start",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("detachKeys" = Option<String>, Query, description = "accepted, ignored"),
    ),
    responses(
        (status = 204, description = "started"),
        (status = 304, description = "already started"),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn start(State(core): State<Arc<Core>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    core.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/containers/{id}/stop",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("t" = Option<i64>, Query, description = "seconds to wait before killing the container"),
    ),
    responses(
        (status = 204, description = "stopped"),
        (status = 304, description = "already stopped"),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn stop(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    core.stop(&id, int(&q, "t")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/containers/{id}/restart",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("t" = Option<i64>, Query, description = "seconds to wait before killing the container"),
    ),
    responses(
        (status = 204, description = "restarted"),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn restart(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    core.restart(&id, int(&q, "t")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/containers/{id}/kill",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("signal" = Option<String>, Query, description = "the signal (default SIGKILL)"),
    ),
    responses(
        (status = 204, description = "signalled"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the container is not running", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn kill(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    core.kill(&id, q.get("signal").map(String::as_str)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/containers/{id}/pause",
    params(
        ("id" = String, Path, description = "container ID or name"),
    ),
    responses(
        (status = 204, description = "paused"),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the container is not running", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn pause(State(core): State<Arc<Core>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    core.pause(&id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/containers/{id}/unpause",
    params(
        ("id" = String, Path, description = "container ID or name"),
    ),
    responses(
        (status = 204, description = "unpaused"),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the container is not paused", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn unpause(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    core.pause(&id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answers at once with the headers (clients wait for them before starting the container), and with the exit
/// status when the condition is met.
#[utoipa::path(
    post,
    path = "/containers/{id}/wait",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("condition" = Option<String>, Query, description = "not-running (default), next-exit or removed"),
    ),
    responses(
        (status = 200, description = "the exit status, once the condition is met: `{StatusCode, Error}`", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn wait(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let condition = WaitCondition::parse(q.get("condition").map(String::as_str).unwrap_or(""))?;
    let record = core.db.lookup(&id)?;
    let body = futures_util::stream::once(async move {
        let response = match core.wait(&record.id, condition).await {
            Ok(code) => ContainerWaitResponse {
                status_code: code,
                error: None,
            },
            Err(e) => ContainerWaitResponse {
                status_code: -1,
                error: Some(bollard_stubs::models::ContainerWaitExitError {
                    message: Some(e.to_string()),
                }),
            },
        };
        let mut line = serde_json::to_vec(&response).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(line)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/containers/{id}/rename",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("name" = String, Query, description = "the new name"),
    ),
    responses(
        (status = 204, description = "renamed"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the name is in use", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn rename(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let name = q
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError(Error::Invalid("rename: the new name is empty".into())))?;
    core.rename(&id, name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/containers/{id}/resize",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("h" = Option<i64>, Query, description = "height"),
        ("w" = Option<i64>, Query, description = "width"),
    ),
    responses(
        (status = 200, description = "resized"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn resize(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    let (w, h) = terminal_size(&q)?;
    core.resize(&id, w, h).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(
    delete,
    path = "/containers/{id}",
    params(
        ("id" = String, Path, description = "container ID or name"),
        ("force" = Option<bool>, Query, description = "kill a running container first"),
        ("v" = Option<bool>, Query, description = "remove its anonymous volumes"),
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 404, description = "no such container", body = ErrorBody),
        (status = 409, description = "the container is running", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "Container"
)]
pub async fn remove(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<StatusCode> {
    core.remove(&id, flag(&q, "force"), flag(&q, "v")).await?;
    Ok(StatusCode::NO_CONTENT)
}
