//! Logs and metrics.
//!
//! Logs are structured (`tracing`), one span per request with the method,
//! the matched route (never the query string, which may carry a token), the
//! request id, the status and the latency. Nothing logs request bodies or
//! headers, so passwords and tokens never reach the log.
//!
//! Metrics are Prometheus, rendered at `GET /metrics`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Installs the global log subscriber. Library crates that log too much at
/// `info` (SQL statements) are capped at `warn` unless the filter names them.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let mut directives = filter.to_owned();
    for noisy in ["sqlx", "hyper", "h2"] {
        if !filter.contains(noisy) {
            directives.push_str(&format!(",{noisy}=warn"));
        }
    }
    let filter = EnvFilter::try_new(&directives).map_err(|e| format!("invalid setting PALAVER_LOG (--log): {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}

/// The process-wide Prometheus recorder. Installed once (tests start many
/// apps in one process; they share it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency_buckets = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let mut builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            for (name, buckets) in palaver_rtc::metrics::BUCKETS {
                builder = match builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, name, "cannot set histogram buckets");
                        PrometheusBuilder::new()
                    }
                };
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    palaver_push::outbox::describe_metrics();
    palaver_rtc::metrics::describe();
    palaver_service::chat_writer::describe_metrics();
    metrics::describe_counter!("http_requests_total", "HTTP requests by method, matched route and status.");
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method and matched route."
    );
}

/// Drains histogram buckets now and then, as the exporter requires when it
/// does not run its own HTTP listener.
pub async fn upkeep(handle: PrometheusHandle, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => break,
        }
    }
}

/// Counts requests and records their latency by matched route (`/users/{id}`,
/// not `/users/42`, so label sets stay bounded).
pub async fn track_requests(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_owned();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The span of one request: no query string, no headers.
pub fn request_span(request: &Request) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        path = request.uri().path(),
        request_id,
        user_id = tracing::field::Empty,
    )
}
