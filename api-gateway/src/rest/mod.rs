//! The REST API: the Docker Engine API, version 1.41, over the core. Requests may name a version (`/v1.24/...` to
//! `/v1.41/...`) or none; `/_ping` tells clients the version to negotiate. Errors are Docker's `{"message": ...}`
//! with its status codes.

mod archive;
mod containers;
mod exec;
mod images;
mod metrics;
mod networks;
pub mod openapi;
mod params;
mod stats;
mod stream;
mod system;
pub mod ui;
mod volumes;

use crate::core::{Core, Error};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const API_VERSION: &str = "1.41";
pub const MIN_API_VERSION: &str = "1.24";

/// An error as Docker's API returns it.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::AlreadyExists(_) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotModified(_) => return StatusCode::NOT_MODIFIED.into_response(),
            Error::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "request failed");
        }
        (
            status,
            axum::Json(serde_json::json!({ "message": self.0.to_string() })),
        )
            .into_response()
    }
}

/// The routes of the API (without version prefixes; see [`strip_version`]), with `/openapi.json` describing them,
/// the Swagger UI at `/docs/` and the web dashboard at `/ui/` ([`ui`]).
pub fn router(core: Arc<Core>) -> Router {
    let limit = core.config.max_body_size;
    let (api, doc) = api_router().split_for_parts();
    api.route_layer(axum::middleware::from_fn(metrics::timed))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(core)
        .merge(openapi::docs_router(&doc))
        .merge(ui::router())
}

/// The API's routes and their OpenAPI description, from one list: `routes!` takes each handler's method and path
/// from its `#[utoipa::path]` annotation. Only the wildcard route under `/images/` is a plain route; its
/// documented paths are in [`openapi::ApiDoc`].
pub fn api_router() -> OpenApiRouter<Arc<Core>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(system::ping))
        .routes(routes!(system::version))
        .routes(routes!(system::info))
        .routes(routes!(system::events))
        .routes(routes!(metrics::metrics))
        .routes(routes!(metrics::alerts))
        .routes(routes!(containers::create))
        .routes(routes!(containers::list))
        .routes(routes!(containers::inspect))
        .routes(routes!(containers::start))
        .routes(routes!(containers::stop))
        .routes(routes!(containers::restart))
        .routes(routes!(containers::kill))
        .routes(routes!(containers::pause))
        .routes(routes!(containers::unpause))
        .routes(routes!(containers::wait))
        .routes(routes!(containers::rename))
        .routes(routes!(containers::resize))
        .routes(routes!(stream::attach))
        .routes(routes!(stream::logs))
        .routes(routes!(exec::create))
        .routes(routes!(exec::start))
        .routes(routes!(exec::resize))
        .routes(routes!(exec::inspect))
        .routes(routes!(archive::get, archive::head, archive::put))
        .routes(routes!(stats::top))
        .routes(routes!(stats::stats))
        .routes(routes!(containers::remove))
        .routes(routes!(networks::list))
        .routes(routes!(networks::create))
        .routes(routes!(networks::prune))
        .routes(routes!(networks::inspect, networks::remove))
        .routes(routes!(networks::connect))
        .routes(routes!(networks::disconnect))
        .routes(routes!(volumes::list))
        .routes(routes!(volumes::create))
        .routes(routes!(volumes::prune))
        .routes(routes!(volumes::inspect, volumes::remove))
        .routes(routes!(images::pull))
        .routes(routes!(images::list))
        .routes(routes!(images::prune))
        .routes(routes!(images::disk_usage))
        .route(
            openapi::WILDCARD_ROUTE,
            get(images::get).delete(images::remove).post(images::post),
        )
}

/// Gives each request an ID: its log events carry it (a `request` span with `request_id`), the response has it in
/// `X-Request-Id` (or keeps the client's, when it sent a sane one), and an error's JSON body has it as
/// `request_id` beside Docker's `message`, so that a user can quote it and an operator find the request's log.
async fn request_id(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            // polisd's start time and a counter: unique across restarts, and sorted by time.
            static START: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{:x}-{n:x}", *START)
        });
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = next.run(req).instrument(span.clone()).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    // 500s are logged where they happen (ApiError); a refused request is worth a line too.
    if status.is_client_error() {
        tracing::info!(parent: &span, status = status.as_u16(), %message, "request refused");
    }
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut o)) => {
            o.insert("request_id".into(), serde_json::Value::String(id));
            let text = serde_json::to_vec(&o).unwrap_or_default();
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            text
        }
        _ => bytes.to_vec(),
    };
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Errors axum answers itself, before a handler runs (an extractor's rejection: 413 for a body over
/// `max_body_size`, 400 for a bad path or query parameter), in Docker's shape like every other error: JSON
/// `{"message": ...}` with the same status.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let plain_text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain_text {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_string();
    (
        status,
        axum::Json(serde_json::json!({ "message": message })),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError(Error::NotFound(format!("page not found: {}", uri.path())))
}

/// Removes a `/v1.NN` prefix, refusing versions outside 1.24 to 1.41 (as dockerd does, with 400).
pub fn strip_version<B>(mut req: Request<B>) -> std::result::Result<Request<B>, ApiError> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(req);
    };
    let (version, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(minor) = version
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
    else {
        return Ok(req);
    };
    if minor > 41 {
        return Err(ApiError(Error::Invalid(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        ))));
    }
    if minor < 24 {
        return Err(ApiError(Error::Invalid(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        ))));
    }
    let tail = if tail.is_empty() { "/" } else { tail };
    let new = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    match new.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => {
            return Err(ApiError(Error::Invalid(format!("bad request path {path}"))));
        }
    }
    Ok(req)
}
