//! Health, readiness, metrics, the OpenAPI document, CORS.

use serde_json::Value;

use crate::helpers::{Backend, api_test, spawn_app_with};

api_test! {
    async fn health_and_readiness(app) {
        let health = app.call(reqwest::Method::GET, "/healthz", None, None).await.expect(200);
        assert_eq!(health["status"], "ok");
        let ready = app.call(reqwest::Method::GET, "/readyz", None, None).await.expect(200);
        assert_eq!(ready["status"], "ok");
        let names: Vec<&str> = ready["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"database"));
        if app.config.redis_url.is_some() {
            assert!(names.contains(&"redis"), "Redis is checked when configured: {ready}");
        }
        assert!(ready["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true));
    }
}

/// With the database gone, readiness fails (and says which dependency)
/// while liveness still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    app.store.close().await;
    let ready = app.call(reqwest::Method::GET, "/readyz", None, None).await.expect(503);
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["checks"][0]["name"], "database");
    assert_eq!(ready["checks"][0]["ok"], false);
    app.call(reqwest::Method::GET, "/healthz", None, None).await.expect(200);
    app.stop().await;
}

api_test! {
    async fn metrics_count_requests_by_matched_route(app) {
        let user = app.register("metrics@example.org").await;
        app.get("/api/v1/users/424242", &user.access_token).await.expect(404);
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(text.contains(r#"http_requests_total{method="GET",route="/api/v1/users/{id}",status="404"}"#), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket"), "latency histogram exported");
        assert!(!text.contains("/api/v1/users/424242"), "raw paths are not labels");
    }
}

/// The committed `docs/openapi.json` must equal what the code generates.
/// Regenerate with `cargo run -- openapi > docs/openapi.json` (or run the
/// tests with `UPDATE_OPENAPI=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_committed_one() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    let served: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    app.stop().await;
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
        "/api/v1/users/{id}",
        "/healthz",
        "/readyz",
    ] {
        assert!(served["paths"].get(path).is_some(), "{path} is documented");
    }
    let committed_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = format!("{}\n", palaver_server::app::openapi().to_pretty_json().unwrap());
    assert_eq!(served, serde_json::from_str::<Value>(&generated).unwrap(), "served document is the generated one");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json` and commit it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_configured_origins() {
    let app =
        spawn_app_with(Backend::Sqlite, |c| c.cors_origins = vec!["https://app.example.org".into()]).await.unwrap();
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/users/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://app.example.org").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.org");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    app.stop().await;

    let closed = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    let resp =
        closed.client.get(closed.url("/healthz")).header("origin", "https://app.example.org").send().await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "no CORS unless configured");
    closed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await.unwrap();
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"].to_str().unwrap().len(), 36);
    let resp = app.client.get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123", "a caller's id is kept");
    app.stop().await;
}
