//! The web dashboard at `/ui`: one page (api-gateway/ui/: index.html, app.js, style.css, hand-written, no build
//! step) compiled into the binary and served wherever the API is. It is not part of the Docker API and is not in
//! the OpenAPI document: the page itself reads only the public REST API, with relative URLs, so it works on
//! whichever listener served it.
//!
//! Every answer carries a Content-Security-Policy that allows nothing but the page's own origin (`'self'`): no
//! inline script or style, no other host, no frames.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy sent with every asset: only this origin, for everything the page loads or connects to.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; \
     form-action 'self'; frame-ancestors 'self'";

/// The assets, by the path they are served at: `(path, content type, body)`.
pub const ASSETS: [(&str, &str, &str); 3] = [
    (
        "/ui/",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "/ui/style.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/style.css"),
    ),
];

/// Whether `path` is one of the dashboard's routes (for the OpenAPI test, which skips what is not the API).
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The assets change with the binary, which a browser cannot tell from their URLs.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET` (and `HEAD`) of `/ui`, `/ui/` and the assets under `/ui/`.
pub fn router() -> Router {
    let mut router = Router::new();
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    // The page's URLs are relative to `/ui/`: from `/ui` itself `app.js` would be `/app.js`, so `/ui` redirects.
    router.route(
        "/ui",
        get(|| async {
            let mut response = asset("text/plain; charset=utf-8", "/ui/\n");
            *response.status_mut() = axum::http::StatusCode::PERMANENT_REDIRECT;
            response
                .headers_mut()
                .insert(header::LOCATION, header::HeaderValue::from_static("/ui/"));
            response
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(router: &Router, method: &str, uri: &str) -> Response {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(req).await.unwrap()
    }

    async fn text(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_each_asset_with_its_type_and_the_policy() {
        let router = router();
        for (path, content_type, body) in ASSETS {
            let response = get(&router, "GET", path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let h = response.headers();
            assert_eq!(h[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(
                h[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            assert_eq!(text(response).await, body, "{path}");
            let head = get(&router, "HEAD", path).await;
            assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        }
        let bare = get(&router, "GET", "/ui").await;
        assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(bare.headers()[header::LOCATION], "/ui/");
        assert_eq!(
            bare.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
    }

    #[test]
    fn the_policy_allows_only_self() {
        for directive in CONTENT_SECURITY_POLICY.split(';') {
            let mut words = directive.split_whitespace();
            let name = words.next().unwrap();
            let sources: Vec<&str> = words.collect();
            assert!(
                sources == ["'self'"] || sources == ["'none'"],
                "{name} allows {sources:?}"
            );
        }
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'self';"));
    }

    /// The page loads its script and style from `/ui/` and nothing from elsewhere: no other host, no inline code
    /// (which the policy would refuse anyway), no fonts.
    #[test]
    fn the_page_needs_nothing_from_outside() {
        let (_, _, html) = ASSETS[0];
        assert!(
            html.contains(r#"<script src="app.js" defer></script>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<link rel="stylesheet" href="style.css">"#),
            "{html}"
        );
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("<style"), "inline style");
        assert!(!html.contains(" style="), "inline style attribute");
        for (path, _, body) in ASSETS {
            for outside in [
                "http://",
                "https://",
                "//cdn",
                "@import",
                "@font-face",
                "url(",
            ] {
                assert!(!body.contains(outside), "{path} names {outside:?}");
            }
        }
        // Every API path the script asks for is relative (no leading slash): it goes to whatever served the page.
        let (_, _, js) = ASSETS[1];
        assert!(!js.contains("fetch(\"/"), "an absolute URL in app.js");
        assert!(!js.contains("fetch('/"), "an absolute URL in app.js");
    }
}
