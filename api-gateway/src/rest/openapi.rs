//! The OpenAPI 3.1 description of the API, generated from the handlers' `#[utoipa::path]` annotations as the
//! router is built (see [`super::api_router`]), served at `/openapi.json` with a Swagger UI (offline: its assets
//! are compiled in) at `/docs/`.

use super::images;
use axum::Router;
use axum::extract::Request;
use axum::http::{Uri, header};
use axum::routing::get;
use utoipa::{OpenApi, ToSchema};

/// An error as the API returns it.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used: errors are written by `ApiError`.
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
}

/// The document's base: its info, and the routes under `/images/{*name}` (image names hold slashes, which an
/// OpenAPI path parameter cannot express; the router serves them with one wildcard route). The only routes
/// described by hand.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "polisd — Docker Engine API",
        version = "1.41",
        description = "The Docker Engine API as polisd serves it. Every path is also served under a `/v1.NN` \
                       prefix, for NN from 24 to 41."
    ),
    paths(images::inspect, images::history, images::tag, images::remove),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The wildcard route and the documented routes it serves: `(method, path)`.
pub const WILDCARD_ROUTE: &str = "/images/{*name}";
#[cfg(test)]
pub const WILDCARD_SERVES: [(&str, &str); 4] = [
    ("get", "/images/{name}/json"),
    ("get", "/images/{name}/history"),
    ("post", "/images/{name}/tag"),
    ("delete", "/images/{name}"),
];

/// `GET /openapi.json` and the Swagger UI at `/docs/`.
pub fn docs_router(doc: &utoipa::openapi::OpenApi) -> Router {
    let json = doc.to_json().expect("the OpenAPI document serializes");
    let ui = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: "/docs",
        api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
        title: Some("polisd — Docker Engine API"),
    })
    // The index page names its assets after the request's path: `/docs/` would give `/docs//swagger-ui.css`.
    .layer(tower::util::MapRequestLayer::new(|mut req: Request| {
        if req.uri().path() == "/docs/" {
            *req.uri_mut() = Uri::from_static("/docs");
        }
        req
    }));
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }),
        )
        .merge(ui)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::core::Core;
    use axum::body::Body;
    use axum::http::StatusCode;
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    const METHODS: [&str; 7] = ["get", "head", "post", "put", "delete", "patch", "options"];

    /// The document's own endpoints and the web dashboard's: served, not part of the Docker API.
    fn is_docs_endpoint(path: &str) -> bool {
        path == "/openapi.json"
            || path == "/docs"
            || path.starts_with("/docs/")
            || super::super::ui::is_ui_path(path)
    }

    fn router(dir: &std::path::Path) -> Router {
        let toml = format!(
            "root = {:?}\nexec_root = {:?}\nsocket = {:?}\n",
            dir.join("root"),
            dir.join("exec"),
            dir.join("polis.sock")
        );
        let config = Config::parse(std::path::Path::new("test.toml"), &toml).unwrap();
        super::super::router(Core::open(config).unwrap())
    }

    async fn call(router: &Router, method: &str, uri: &str) -> axum::response::Response {
        let req = Request::builder()
            .method(method.to_ascii_uppercase().as_str())
            .uri(uri)
            // Not JSON: handlers that read a body refuse it before doing anything.
            .body(Body::from("!"))
            .unwrap();
        router.clone().oneshot(req).await.unwrap()
    }

    /// Whether the router serves `method` on `path` (path parameters filled with names that exist nowhere): the
    /// handler's own answers count, even "no such container"; the router's 405 and its fallback's
    /// "page not found" do not.
    async fn serves(router: &Router, method: &str, path: &str) -> bool {
        let uri = path
            .replace("{id}", "nosuchthing")
            .replace("{name}", "nosuchthing");
        let response = call(router, method, &uri).await;
        match response.status() {
            StatusCode::METHOD_NOT_ALLOWED => false,
            StatusCode::NOT_FOUND => {
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                if body.is_empty() && method == "head" {
                    // No body to tell: HEAD goes where GET goes when the route has no HEAD of its own.
                    return Box::pin(serves(router, "get", path)).await;
                }
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                !v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("page not found")
            }
            _ => true,
        }
    }

    /// The paths of the routes the router serves, from the router itself (axum shows them in its Debug output).
    fn served_paths(router: &Router) -> BTreeSet<String> {
        let text = format!("{router:?}");
        text.split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('/'))
            .map(String::from)
            .collect()
    }

    #[tokio::test]
    async fn the_document_describes_exactly_the_routes_served() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(dir.path());

        let response = call(&router, "get", "/openapi.json").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        assert_eq!(doc["info"]["title"], "polisd — Docker Engine API");
        assert_eq!(doc["info"]["version"], "1.41");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    documented.insert((method.to_string(), path.clone()));
                }
            }
        }
        assert!(documented.len() > 40, "{documented:?}");

        // Every documented route is served.
        for (method, path) in &documented {
            assert!(
                serves(&router, method, path).await,
                "documented but not served: {method} {path}"
            );
        }

        // Every served route is documented.
        let served = served_paths(&router);
        assert!(
            served.contains("/_ping") && served.contains(WILDCARD_ROUTE),
            "{served:?}"
        );
        let mut checked = 0;
        for path in &served {
            if is_docs_endpoint(path) {
                continue;
            }
            if path == WILDCARD_ROUTE {
                // One route for the paths in WILDCARD_SERVES: its methods are theirs (and HEAD with GET), and
                // each is documented.
                let mut methods = BTreeSet::new();
                for method in METHODS {
                    if call(&router, method, "/images/nosuchthing").await.status()
                        != StatusCode::METHOD_NOT_ALLOWED
                    {
                        methods.insert(method);
                    }
                }
                let mut expected: BTreeSet<&str> =
                    WILDCARD_SERVES.iter().map(|(m, _)| *m).collect();
                expected.insert("head");
                assert_eq!(methods, expected, "methods of {WILDCARD_ROUTE}");
                for (method, concrete) in WILDCARD_SERVES {
                    assert!(
                        documented.contains(&(method.to_string(), concrete.to_string())),
                        "served but not documented: {method} {concrete}"
                    );
                }
                checked += 1;
                continue;
            }
            let mut methods = Vec::new();
            for method in METHODS {
                if serves(&router, method, path).await {
                    methods.push(method);
                }
            }
            if methods.is_empty() {
                // axum routes its fallback ("page not found") as "/" and a catch-all.
                assert!(
                    path == "/" || path.contains("__private__axum_fallback"),
                    "a route serving nothing: {path}"
                );
                continue;
            }
            for method in methods {
                // axum answers HEAD with the GET handler.
                let method = if method == "head"
                    && documented.contains(&("get".to_string(), path.clone()))
                {
                    "get"
                } else {
                    method
                };
                assert!(
                    documented.contains(&(method.to_string(), path.clone())),
                    "served but not documented: {method} {path}"
                );
            }
            checked += 1;
        }
        assert!(
            checked > 30,
            "only {checked} served paths found: {served:?}"
        );
    }

    #[tokio::test]
    async fn the_swagger_ui_loads_its_assets_offline() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(dir.path());
        let response = call(&router, "get", "/docs/").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("/openapi.json"), "{html}");
        assert!(html.contains("\"/docs/swagger-ui-bundle.js\""), "{html}");
        for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
            assert_eq!(
                call(&router, "get", asset).await.status(),
                StatusCode::OK,
                "{asset}"
            );
        }
    }
}
