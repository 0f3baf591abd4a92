//! `GET /metrics`: the Prometheus exposition (crate::metrics), the latency of every REST request, and
//! `GET /polis/alerts`: the alerts firing now (crate::alerts).

use super::openapi::ErrorBody;
use crate::core::Core;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus metrics in the text exposition format 0.0.4: polisd's process, each container's (cAdvisor's names) and Polis's own (`polis_*`)", body = String, content_type = "text/plain"),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "System"
)]
pub async fn metrics(State(core): State<Arc<Core>>) -> Response {
    match tokio::task::spawn_blocking(move || crate::metrics::global().render(&core)).await {
        Ok(text) => ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            super::ApiError(crate::core::Error::Failed(format!("metrics: {e}"))).into_response()
        }
    }
}

#[utoipa::path(
    get,
    path = "/polis/alerts",
    responses(
        (status = 200, description = "the alerts firing now, as Alertmanager's API v2 lists alerts (labels, annotations, startsAt, endsAt, fingerprint, status)", body = Vec<Object>),
        (status = 500, description = "server error", body = ErrorBody),
    ),
    tag = "System"
)]
pub async fn alerts(State(core): State<Arc<Core>>) -> axum::Json<Vec<serde_json::Value>> {
    axum::Json(
        core.alerts
            .firing()
            .iter()
            .map(|a| {
                let mut v = crate::alerts::webhook::alert_json(a);
                // Alertmanager's API v2 status object.
                v["status"] =
                    serde_json::json!({"state": "active", "silencedBy": [], "inhibitedBy": []});
                v
            })
            .collect(),
    )
}

/// Times a request that matched a route: `polis_api_request_duration_seconds{api="rest", operation="METHOD ROUTE"}`
/// (the route's template, so that IDs do not make new series). For streams (logs, events, attach) it is the time
/// to the response's head.
pub async fn timed(path: MatchedPath, req: Request, next: Next) -> Response {
    let operation = format!("{} {}", req.method(), path.as_str());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    crate::metrics::global().observe_request("rest", &operation, started.elapsed());
    response
}
