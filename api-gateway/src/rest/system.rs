//! System endpoints: `/_ping`, `/version`, `/info`, `/events`.

use super::openapi::ErrorBody;
use super::params::{Query, filters};
use super::{API_VERSION, ApiResult, MIN_API_VERSION};
use crate::core::record::Status;
use crate::core::{Core, host};
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{
    EventMessage, SystemVersion, SystemVersionComponents, SystemVersionPlatform,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

#[utoipa::path(
    method(get, head),
    path = "/_ping",
    responses(
        (status = 200, description = "the daemon is up; headers name the API version", body = String, content_type = "text/plain"),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "System"
)]
pub async fn ping() -> Response {
    (
        [
            ("API-Version", API_VERSION),
            ("Docker-Experimental", "false"),
            ("OSType", "linux"),
            (
                header::CACHE_CONTROL.as_str(),
                "no-cache, no-store, must-revalidate",
            ),
            (header::PRAGMA.as_str(), "no-cache"),
        ],
        "OK",
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/version",
    responses(
        (status = 200, description = "the daemon's version", body = Object, content_type = "application/json"),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "System"
)]
pub async fn version() -> axum::Json<SystemVersion> {
    let version = env!("CARGO_PKG_VERSION").to_string();
    let details: HashMap<String, String> = [
        ("ApiVersion", API_VERSION),
        ("MinAPIVersion", MIN_API_VERSION),
        ("Os", "linux"),
        ("Arch", host::arch()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    axum::Json(SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "Polis".into(),
        }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".into(),
            version: version.clone(),
            details: Some(details),
        }]),
        version: Some(version),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(option_env!("POLIS_GIT_COMMIT").unwrap_or("unknown").into()),
        go_version: Some(format!("rust (polisd {})", env!("CARGO_PKG_VERSION"))),
        os: Some("linux".into()),
        arch: Some(host::arch().into()),
        kernel_version: Some(host::kernel()),
        experimental: Some(false),
        build_time: None,
    })
}

fn cgroup_version() -> &'static str {
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if unified { "2" } else { "1" }
}

#[utoipa::path(
    get,
    path = "/info",
    responses(
        (status = 200, description = "system-wide information", body = Object, content_type = "application/json"),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "System"
)]
pub async fn info(State(core): State<Arc<Core>>) -> ApiResult<Response> {
    let records = core.db.all()?;
    let count = |s: Status| records.iter().filter(|r| r.state.status == s).count();
    let store = core.store.clone();
    let images = tokio::task::spawn_blocking(move || store.images().map(|i| i.len()).unwrap_or(0))
        .await
        .unwrap_or(0);
    let mem_total = host::mem_total();
    let hostname = host::hostname();
    let info = serde_json::json!({
        "ID": hostname,
        "Containers": records.len(),
        "ContainersRunning": count(Status::Running),
        "ContainersPaused": count(Status::Paused),
        "ContainersStopped": records.len() - count(Status::Running) - count(Status::Paused),
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "polis-image store"]],
        "DockerRootDir": core.config.root,
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "NGoroutines": 0,
        "SystemTime": crate::core::logs::now(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "KernelVersion": host::kernel(),
        "OperatingSystem": host::os_name(),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total,
        "Name": hostname,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"polis-runc": {"path": core.config.runtime_path()}},
        "DefaultRuntime": "polis-runc",
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": ""},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=default", "name=no-new-privileges"],
        "Labels": [],
        "ExperimentalBuild": false,
        "Warnings": [],
    });
    Ok(axum::Json(info).into_response())
}

/// Whether an event passes the `filters` of `/events` (type, event, container by ID or name, image, label).
fn wanted(event: &EventMessage, f: &HashMap<String, Vec<String>>) -> bool {
    let kind = event
        .typ
        .map(|t| {
            serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let action = event.action.clone().unwrap_or_default();
    let actor = event.actor.clone().unwrap_or_default();
    let id = actor.id.clone().unwrap_or_default();
    let attrs = actor.attributes.clone().unwrap_or_default();
    let one_of = |key: &str, pass: &dyn Fn(&str) -> bool| {
        f.get(key).is_none_or(|vs| vs.iter().any(|v| pass(v)))
    };
    one_of("type", &|v| v == kind)
        && one_of("event", &|v| {
            v == action || action.starts_with(&format!("{v}:"))
        })
        && one_of("container", &|v| {
            kind == "container" && (id.starts_with(v) || attrs.get("name").is_some_and(|n| n == v))
        })
        && one_of("image", &|v| attrs.get("image").is_some_and(|i| i == v))
        && one_of("label", &|v| super::params::label_matches(&attrs, v))
}

/// Streams events as they happen, one JSON object per line, until `until` (a Unix time) if given.
#[utoipa::path(
    get,
    path = "/events",
    params(
        ("since" = Option<String>, Query, description = "Unix time to show events from"),
        ("until" = Option<String>, Query, description = "Unix time to stream events until"),
        ("filters" = Option<String>, Query, description = "JSON-encoded filters (a map of name to list of values)"),
    ),
    responses(
        (status = 200, description = "a stream of event objects, one JSON object per line", body = Object, content_type = "application/json"),
        (status = 400, description = "bad parameter", body = ErrorBody),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "System"
)]
pub async fn events(State(core): State<Arc<Core>>, q: Query) -> ApiResult<Response> {
    let f = filters(&q)?;
    let seconds = |key: &str| -> ApiResult<Option<f64>> {
        q.get(key)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<f64>().map_err(|_| {
                    super::ApiError(crate::core::Error::Invalid(format!("invalid {key}: {s:?}")))
                })
            })
            .transpose()
    };
    let until = seconds("until")?.map(|u| u as i64);
    // `since` and `until` are Unix seconds with an optional fraction (as `docker events` sends them).
    let since = seconds("since")?.map(|s| (s * 1e9) as i64);
    let (past, rx) = match since {
        Some(nanos) => core.events.subscribe_since(nanos),
        None => (Vec::new(), core.events.subscribe()),
    };
    let stream = futures_util::stream::iter(past)
        .chain(crate::core::events::broadcast_stream(rx))
        .take_while(move |e| {
            let go = until.is_none_or(|u| e.time.unwrap_or(0) <= u);
            async move { go }
        })
        .filter(move |e| {
            let keep = wanted(e, &f);
            async move { keep }
        })
        .map(|e| {
            let mut line = serde_json::to_vec(&legacy_fields(&e)).unwrap_or_default();
            line.push(b'\n');
            Ok::<_, std::io::Error>(line)
        });
    let deadline = until.map(|u| {
        let now = chrono::Utc::now().timestamp();
        std::time::Duration::from_secs(u.saturating_sub(now).max(0) as u64)
    });
    let body = match deadline {
        Some(d) => Body::from_stream(stream.take_until(tokio::time::sleep(d))),
        None => Body::from_stream(stream),
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Docker still sends the pre-1.22 fields (`status`, `id`, `from`) beside the new ones; old clients read them.
fn legacy_fields(e: &EventMessage) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    let actor = e.actor.clone().unwrap_or_default();
    v["status"] = serde_json::json!(e.action);
    v["id"] = serde_json::json!(actor.id);
    if let Some(image) = actor.attributes.as_ref().and_then(|a| a.get("image")) {
        v["from"] = serde_json::json!(image);
    }
    v
}
