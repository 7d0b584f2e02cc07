//! The browser client served at `/`: content types, ETag revalidation, the
//! client-route fallback, and the server's own paths left alone.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use crate::helpers::{Backend, spawn_app};

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn the_client_is_served_with_types_and_etags() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let index = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(header(&index, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&index, CACHE_CONTROL), "no-cache");
    assert!(header(&index, CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    let etag = header(&index, ETAG).to_owned();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert!(index.text().await.unwrap().contains("/js/main.js"));

    for (path, content_type) in [
        ("/js/main.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/sw.js", "text/javascript; charset=utf-8"),
        ("/icon.svg", "image/svg+xml"),
        ("/manifest.webmanifest", "application/manifest+json"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, CONTENT_TYPE), content_type, "{path}");
        assert_eq!(header(&response, "x-content-type-options".parse().unwrap()), "nosniff");
    }

    // Revalidation: the same ETag is a 304 without a body; another is a 200.
    let again = app.client.get(app.url("/")).header(IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, ETAG), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let weak = app.client.get(app.url("/")).header(IF_NONE_MATCH, format!("\"x\", W/{etag}")).send().await.unwrap();
    assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
    let other = app.client.get(app.url("/")).header(IF_NONE_MATCH, "\"other\"").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);

    // HEAD answers the headers.
    let head = app.client.head(app.url("/js/main.js")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, CONTENT_TYPE), "text/javascript; charset=utf-8");
    app.stop().await;
}

#[tokio::test]
async fn client_routes_get_the_page_and_server_paths_keep_their_404() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let index = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    for path in ["/login", "/u/42", "/chat/7", "/moments/3", "/u/42/followers"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, CONTENT_TYPE), "text/html; charset=utf-8", "{path}");
        assert_eq!(response.text().await.unwrap(), index, "{path}");
    }
    // The server's own prefixes are never the client's page.
    for path in ["/api/v1/nope", "/api", "/ws/nope", "/healthz/x", "/metrics/x", "/readyz/x"] {
        app.call(reqwest::Method::GET, path, None, None).await.expect_error(404, "not_found");
    }
    // A missing file (with an extension) is a 404, not the page.
    app.call(reqwest::Method::GET, "/js/missing.js", None, None).await.expect_error(404, "not_found");
    // Other methods on client paths are 404s in the API's shape.
    app.call(reqwest::Method::POST, "/u/42", None, None).await.expect_error(404, "not_found");
    // Traversal finds nothing outside the client.
    let response = app.client.get(app.url("/..%2F..%2FCargo.toml")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The endpoints themselves still answer.
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(header(&health, CONTENT_TYPE), "application/json");
    app.stop().await;
}
