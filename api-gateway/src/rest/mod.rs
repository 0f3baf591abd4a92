//! The REST API: the Docker Engine API, version 1.41, over the core. Requests may name a version (`/v1.24/...` to
//! `/v1.41/...`) or none; `/_ping` tells clients the version to negotiate. Errors are Docker's `{"message": ...}`
//! with its status codes.

mod archive;
mod containers;
mod exec;
mod images;
mod networks;
mod params;
mod stats;
mod stream;
mod system;
mod volumes;

use crate::core::{Core, Error};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use std::sync::Arc;

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
            Error::Conflict(_) => StatusCode::CONFLICT,
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

/// The routes of the API (without version prefixes; see [`strip_version`]).
pub fn router(core: Arc<Core>) -> Router {
    let limit = core.config.max_body_size;
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/attach", post(stream::attach))
        .route("/containers/{id}/logs", get(stream::logs))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route(
            "/containers/{id}/archive",
            get(archive::get).head(archive::head).put(archive::put),
        )
        .route("/containers/{id}/top", get(stats::top))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/containers/{id}", delete(containers::remove))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/images/create", post(images::pull))
        .route("/images/json", get(images::list))
        .route("/images/prune", post(images::prune))
        .route("/system/df", get(images::disk_usage))
        .route(
            "/images/{*name}",
            get(images::get).delete(images::remove).post(images::post),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(core)
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
