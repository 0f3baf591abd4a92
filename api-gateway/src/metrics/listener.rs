//! The plain-HTTP listener of `[metrics] address` (off by default, as dockerd's `metrics-addr`): `/metrics` for
//! scrapers, and the read-only part of the REST API for the dashboard at `/ui` in a browser. It answers GET and
//! HEAD only, and not the routes that hand out a container's or an image's data (`archive`, `logs`, image
//! export): those stay behind the root-only socket and mutual TLS.

use crate::rest::ApiError;
use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::Method;
use std::net::SocketAddr;
use tokio::task::JoinHandle;
use tower::Layer;

/// Listens on `address` (failing at once when it cannot) and serves `app` (the REST API with its version
/// prefixes) read-only on it.
pub async fn serve<S>(address: SocketAddr, app: S) -> Result<JoinHandle<()>>
where
    S: tower::Service<
            Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("metrics address {address}: listen"))?;
    tracing::info!(%address, "polisd serves /metrics and the read-only API over plain HTTP");
    let app = axum::middleware::map_request(read_only).layer(app);
    Ok(tokio::spawn(async move {
        let served = axum::serve(
            listener,
            axum::ServiceExt::<Request>::into_make_service(app),
        )
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener");
        }
    }))
}

/// Lets through what only reads polisd's state; the rest is 403 in Docker's error shape.
async fn read_only(req: Request) -> std::result::Result<Request, ApiError> {
    if readable(req.method(), req.uri().path()) {
        Ok(req)
    } else {
        Err(ApiError(crate::core::Error::Forbidden(format!(
            "{} {}: the metrics listener serves only GET and HEAD of the read-only API; use the API socket",
            req.method(),
            req.uri().path()
        ))))
    }
}

fn readable(method: &Method, path: &str) -> bool {
    // Version prefixes are stripped after this filter: look past them.
    let path = path
        .strip_prefix("/v1.")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(path);
    let data = (path.starts_with("/containers/")
        && (path.ends_with("/archive") || path.ends_with("/logs") || path.ends_with("/export")))
        || (path.starts_with("/images/") && path.ends_with("/get"));
    (method == Method::GET || method == Method::HEAD) && !data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_of_state_pass() {
        assert!(readable(&Method::GET, "/metrics"));
        assert!(readable(&Method::GET, "/ui/"));
        assert!(readable(&Method::GET, "/v1.41/containers/json"));
        assert!(readable(&Method::HEAD, "/_ping"));
        assert!(!readable(&Method::POST, "/containers/create"));
        assert!(!readable(&Method::DELETE, "/containers/abc"));
        assert!(!readable(&Method::GET, "/containers/abc/archive"));
        assert!(!readable(&Method::GET, "/v1.41/containers/abc/logs"));
        assert!(!readable(&Method::GET, "/images/busybox/get"));
    }
}
