//! Operational endpoints: liveness, readiness, metrics, the API document.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::extract::ApiJson;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// Liveness and readiness answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when a dependency is down.
    pub status: String,
    /// Each dependency and whether it answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `database` or `redis`.
    pub name: String,
    /// True when it answered in time.
    pub ok: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
async fn healthz() -> ApiJson<Health> {
    ApiJson(Health { status: "ok".into(), checks: vec![] })
}

/// The process can serve: the database (and Redis, when configured) answer.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let mut checks = Vec::new();
    let db = tokio::time::timeout(TIMEOUT, state.services.store.ping()).await;
    checks.push(check("database", db.map_err(|_| "timed out".to_owned()).and_then(|r| r.map_err(|e| e.to_string()))));
    if let Some(redis) = &state.redis {
        let mut conn = redis.clone();
        let ping =
            tokio::time::timeout(TIMEOUT, async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
                .await;
        checks.push(check(
            "redis",
            ping.map_err(|_| "timed out".to_owned()).and_then(|r| r.map(drop).map_err(|e| e.to_string())),
        ));
    }
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, ApiJson(Health { status: if ok { "ok" } else { "unavailable" }.into(), checks }))
}

/// The detail (host names, driver messages) goes to the log; the response
/// only says that the dependency did not answer.
fn check(name: &str, result: Result<(), String>) -> Check {
    if let Err(detail) = &result {
        tracing::warn!(dependency = name, error = %detail, "readiness check failed");
    }
    Check { name: name.into(), ok: result.is_ok(), error: result.err().map(|_| "not answering".into()) }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.prometheus.render())
}
