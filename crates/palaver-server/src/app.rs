//! Building the application and serving it.
//!
//! [`App::build`] turns a [`Config`] into running services (store, Redis,
//! secrets); [`App::router`] is the axum app; [`serve`] runs it on a listener
//! until a shutdown signal. Binding the port is the caller's business, so
//! tests pass a listener on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use palaver_service::{MemoryRateLimiter, RateLimiter, RateSpec, RedisRateLimiter, ServiceSettings, Services};
use palaver_store::{ConnectOptions, Store};
use secrecy::SecretString;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::OpenApi;

use crate::config::Config;
use crate::error::error_response;
use crate::observability;

/// HTTP-level settings handlers consult.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest JSON body.
    pub max_body_bytes: usize,
    /// Longest request.
    pub request_timeout: Duration,
    /// CORS origins (empty: none; `*`: any).
    pub cors_origins: Vec<String>,
    /// Use X-Forwarded-For for the client address.
    pub trust_forwarded_for: bool,
    /// Login budget per address.
    pub rate_login: RateSpec,
    /// Registration budget per address.
    pub rate_register: RateSpec,
    /// Refresh budget per address.
    pub rate_refresh: RateSpec,
    /// Longest upload (`POST /api/v1/media` is exempt from `request_timeout`).
    pub upload_timeout: Duration,
    /// Largest upload body: the largest per-kind limit plus multipart framing.
    pub max_upload_bytes: u64,
}

impl HttpSettings {
    fn from_config(config: &Config) -> Self {
        Self {
            max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
            request_timeout: config.request_timeout,
            cors_origins: config.cors_origins.clone(),
            trust_forwarded_for: config.trust_forwarded_for,
            rate_login: config.rate_login,
            rate_register: config.rate_register,
            rate_refresh: config.rate_refresh,
            upload_timeout: config.media_upload_timeout,
            max_upload_bytes: media_limits(config).max().saturating_add(crate::http::media::MULTIPART_SLACK),
        }
    }
}

fn media_limits(config: &Config) -> palaver_media::SizeLimits {
    palaver_media::SizeLimits {
        image: config.media_max_image_bytes,
        audio: config.media_max_audio_bytes,
        video: config.media_max_video_bytes,
        file: config.media_max_file_bytes,
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The application services.
    pub services: Services,
    /// HTTP settings.
    pub http: Arc<HttpSettings>,
    /// Metrics renderer.
    pub prometheus: PrometheusHandle,
    /// Redis, when configured.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// This node's name.
    pub node_id: Arc<str>,
    /// Cancelled when the server shuts down; long-lived tasks watch it.
    pub shutdown: CancellationToken,
    /// Notifications: the API's use cases, and the fan-out from events.
    pub notifications: Arc<palaver_push::NotificationService>,
    /// The push providers with credentials.
    pub push_providers: palaver_push::Providers,
    /// Uploads, signed media URLs, clean-up and re-encryption of media.
    pub media: Arc<palaver_media::MediaService>,
    /// The real-time hub (WebSocket connections, presence, fan-out).
    pub hub: palaver_realtime::Hub,
    /// Calls, matching and ICE servers.
    pub rtc: crate::rtc::Rtc,
}

impl FromRef<AppState> for Services {
    fn from_ref(state: &AppState) -> Self {
        state.services.clone()
    }
}

/// A built application, ready to serve.
pub struct App {
    /// Shared state.
    pub state: AppState,
    /// Push providers and outbox workers, started by [`serve`].
    pub push: crate::push::PushSetup,
    /// The notification fan-out's subscription, taken when the app is built
    /// so no event published before [`serve`] starts it is missed.
    notification_events: Option<tokio::sync::broadcast::Receiver<palaver_service::DomainEvent>>,
    /// The SFU's events (renegotiation offers, speaking), relayed by [`serve`].
    sfu_events: Option<tokio::sync::mpsc::Receiver<palaver_sfu::SfuEvent>>,
    shutdown_grace: Duration,
    /// The in-process limiter, pruned in the background (None with Redis).
    memory_limiter: Option<Arc<MemoryRateLimiter>>,
    /// How often unattached uploads are collected.
    media_gc_interval: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("node_id", &self.state.node_id).finish_non_exhaustive()
    }
}

/// Opens the store the config names and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create the data folder {}", config.data_dir.display()))?;
    }
    let options = ConnectOptions {
        url,
        max_connections: config.db_max_connections,
        pg_schema: None,
        connect_timeout: config.db_connect_timeout,
    };
    let store = palaver_store::connect(&options).await.context("cannot open the database (DATABASE_URL)")?;
    store.migrate().await.context("database migration failed")?;
    Ok(store)
}

impl App {
    /// Connects everything the config names and builds the services.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let store = open_store(config).await?;
        Self::with_store(config, store).await
    }

    /// Builds the app on an already opened, migrated store.
    pub async fn with_store(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        config.validate()?;
        let jwt_secret: SecretString = match &config.jwt_secret {
            Some(secret) => secret.clone(),
            None => crate::secrets::load_or_generate(&config.data_dir, "jwt-secret")
                .context("cannot create the development JWT secret in the data folder")?,
        };
        let keyring = Arc::new(crate::keys::load_keyring(config)?);
        let media_urls = {
            use secrecy::ExposeSecret as _;
            palaver_crypto::MediaUrls::new(jwt_secret.expose_secret().as_bytes(), config.media_url_ttl)
        };
        let redis_client = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str()).context("invalid setting REDIS_URL")?;
                let manager = tokio::time::timeout(Duration::from_secs(10), client.get_connection_manager())
                    .await
                    .context("Redis (REDIS_URL) did not answer within 10 s")?
                    .context("cannot connect to Redis (REDIS_URL)")?;
                Some((client, manager))
            }
            None => None,
        };
        let redis = redis_client.as_ref().map(|(_, manager)| manager.clone());
        // Budgets are shared by every node through Redis when it is
        // configured, else kept in this process.
        let (rate_limiter, memory_limiter): (Arc<dyn RateLimiter>, _) = match &redis {
            Some(redis) => (Arc::new(RedisRateLimiter::new(redis.clone(), &config.redis_prefix)), None),
            None => {
                let memory = Arc::new(MemoryRateLimiter::new());
                (memory.clone(), Some(memory))
            }
        };
        let node_id: Arc<str> = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
            .into();
        let settings = ServiceSettings {
            auth: palaver_service::AuthSettings {
                jwt_secret,
                access_token_ttl: config.access_token_ttl,
                refresh_token_ttl: config.refresh_token_ttl,
                password: palaver_service::PasswordParams {
                    memory_kib: config.argon2_memory_kib,
                    iterations: config.argon2_iterations,
                    parallelism: 1,
                },
            },
            social_rates: palaver_service::SocialRates {
                moments: config.rate_moments,
                comments: config.rate_comments,
                likes: config.rate_likes,
                follows: config.rate_follows,
                reports: config.rate_reports,
            },
            auto_hide_reports: config.auto_hide_reports,
            media_urls: media_urls.clone(),
            voice: palaver_service::VoiceSettings {
                max_participants_ceiling: config.voice_max_participants,
                idle_close: config.voice_idle_close,
                heartbeat_timeout: config.voice_heartbeat_timeout,
                sweep_interval: Duration::from_secs(1),
                node_id: node_id.to_string(),
                // Filled per user at join from the calls' ICE settings
                // (STUN, and TURN with short-lived credentials).
                ice_servers: Vec::new(),
                media: crate::rtc::audio_policy(config).into(),
                host_ttl: config.voice_host_ttl,
            },
            chat_rates: palaver_service::ChatRates { messages: config.rate_messages, rooms: config.rate_chat_rooms },
            body_codec: palaver_service::chat::BodyCodec::new(keyring.clone(), config.encrypt_at_rest),
        };
        let push = crate::push::PushSetup::from_config(config, store.backend() == palaver_store::Backend::Sqlite)?;
        let notifications = Arc::new(palaver_push::NotificationService::new(store.clone(), push.notifications.clone()));
        let services = Services::new(store.clone(), settings, rate_limiter.clone())?;
        let media_settings = palaver_media::MediaSettings {
            limits: media_limits(config),
            max_image_pixels: config.media_max_image_pixels,
            thumbnail_size: config.media_thumbnail_size,
            gc_after: config.media_gc_after,
            idle_timeout: config.request_timeout,
            rate_uploads: config.rate_uploads,
            keyring,
            encrypt: config.encrypt_at_rest,
            urls: media_urls,
        };
        let storage =
            palaver_media::Storage::from_setting(config.media_store.as_deref().unwrap_or_default(), &config.data_dir)
                .context("invalid setting PALAVER_MEDIA_STORE")?;
        let media = Arc::new(palaver_media::MediaService::new(store, storage, media_settings, rate_limiter));
        let shutdown = CancellationToken::new();
        // The media plane: this node's SFU, on its own thread and UDP port.
        let sfu_config = palaver_sfu::SfuConfig {
            bind: config.media_udp,
            public_addr: config.media_public_addr,
            ..palaver_sfu::SfuConfig::default()
        };
        let (sfu, sfu_events) = palaver_sfu::Sfu::start(sfu_config, shutdown.child_token())
            .with_context(|| format!("cannot bind the media UDP socket {} (PALAVER_MEDIA_UDP)", config.media_udp))?;
        services.voice.set_sfu(sfu);
        let rtc = crate::rtc::Rtc::build(config, &services, redis.clone());
        // Voice-room media hosts: in Redis when nodes share one, else here.
        let media_hosts: Arc<dyn palaver_service::media_hosts::MediaHosts> = match &redis {
            Some(redis) => Arc::new(palaver_service::media_hosts::RedisMediaHosts::new(
                redis.clone(),
                &config.redis_prefix,
                config.voice_host_ttl,
            )),
            None => Arc::new(palaver_service::media_hosts::MemoryMediaHosts::new(config.voice_host_ttl)),
        };
        let (hub, nodes) = crate::ws::start_hub(
            crate::ws::hub_config(config, &node_id),
            &services,
            redis_client.map(|(client, manager)| (client, manager, config.redis_prefix.clone())),
            Some(rtc.matching.clone()),
            shutdown.child_token(),
        )
        .await?;
        nodes.register(
            palaver_service::voice::MEDIA_SERVICE,
            Arc::new(palaver_service::voice::MediaNode(services.voice.clone())),
        );
        services.voice.set_cluster(media_hosts, Arc::new(nodes));
        crate::ws::calls::register(&hub, &services, &rtc);
        crate::ws::chat::register(&hub, services.chat.clone());
        crate::ws::voice::register(&hub, &services);
        hub.register_op(
            "voice_legacy",
            Arc::new(crate::ws::voice::LegacyVoiceOps { voice: services.voice.clone(), store: services.store.clone() }),
        );
        notifications.set_live_publisher(Arc::new(crate::ws::kinds::HubLive(hub.clone())));
        let state = AppState {
            hub,
            rtc,
            services,
            http: Arc::new(HttpSettings::from_config(config)),
            prometheus: observability::prometheus(),
            redis,
            node_id,
            shutdown,
            notifications,
            push_providers: push.providers.clone(),
            media,
        };
        let notification_events = Some(state.services.events.subscribe());
        Ok(Self {
            state,
            push,
            notification_events,
            shutdown_grace: config.shutdown_grace,
            memory_limiter,
            media_gc_interval: config.media_gc_interval,
            sfu_events: Some(sfu_events),
        })
    }

    /// The axum application.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = crate::http::documented().split_for_parts();
    let spec: Arc<str> = openapi.to_pretty_json().unwrap_or_default().into();
    let http = state.http.clone();

    let router = api
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], spec.to_string()) }
            }),
        )
        .merge(crate::ws::routes())
        .fallback(crate::web::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);

    with_middleware(router, &http)
}

/// Wraps a router in the middleware every route gets: metrics, timeout, body
/// limit, request ids, tracing, panic recovery, CORS.
pub fn with_middleware(router: Router, http: &HttpSettings) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    router
        // Per route (Router::layer wraps each route), so the matched route is known.
        .layer(middleware::from_fn(observability::track_requests))
        .layer(middleware::from_fn_with_state(
            Timeouts { request: http.request_timeout, upload: http.upload_timeout },
            timeout,
        ))
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
                .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(observability::request_span)
                        .on_request(())
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(CatchPanicLayer::custom(panic_response))
                .option_layer(cors(&http.cors_origins)),
        )
}

/// Converts the OpenAPI document built from the handlers, for `palaver
/// openapi` and the drift test.
pub fn openapi() -> OpenApi {
    crate::http::documented().split_for_parts().1
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse::<HeaderValue>().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Request time limits: uploads stream large bodies and get their own.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    request: Duration,
    upload: Duration,
}

async fn timeout(State(limits): State<Timeouts>, request: Request, next: Next) -> Response {
    let limit = if request.method() == Method::POST && request.uri().path() == crate::http::media::UPLOAD_PATH {
        limits.upload
    } else {
        limits.request
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {} s", limit.as_secs_f32()),
            json!({}),
        ),
    }
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
        json!({}),
    )
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error", json!({})).into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests
/// in flight finish for up to the configured grace period.
pub async fn serve(
    listener: TcpListener,
    mut app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = app.state.shutdown.clone();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    tokio::spawn(observability::upkeep(app.state.prometheus.clone(), token.clone()));
    app.state.rtc.spawn_workers(&token);
    if let Some(limiter) = app.memory_limiter.clone() {
        tokio::spawn(prune_rate_limits(limiter, token.clone()));
    }
    app.state.media.spawn_collector(app.media_gc_interval, token.clone());
    // Notifications: the fan-out (subscribed when the app was built) and
    // the outbox workers; both stop with the server.
    if let Some(events) = app.notification_events.take() {
        app.state.notifications.spawn_fanout(events, token.clone());
    }
    // Voice rooms: the sweeper, media heartbeats and the SFU's events.
    app.state.services.voice.spawn_workers(app.sfu_events.take(), token.clone());
    for _ in 0..app.push.workers {
        let worker = palaver_push::OutboxWorker::new(
            app.state.services.store.clone(),
            app.push.providers.clone(),
            app.push.outbox.clone(),
            app.state.notifications.outbox_wake(),
        );
        tokio::spawn(worker.run(token.clone()));
    }

    let addr = listener.local_addr()?;
    tracing::info!(%addr, node = %app.state.node_id, backend = app.state.services.store.backend().as_str(), "listening");
    let service = app.router().into_make_service_with_connect_info::<SocketAddr>();
    // No Nagle delay: a response's last small segment would otherwise wait
    // for the client's delayed ACK (up to 40 ms on Linux), which is what a
    // 1 MiB media download spent most of its time on.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, service).with_graceful_shutdown(token.clone().cancelled_owned());
    let grace = app.shutdown_grace;
    tokio::select! {
        result = server => result?,
        () = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace = ?grace, "connections still open after the grace period; closing");
        }
    }
    // WebSocket connections (not tracked by the HTTP server once
    // upgraded) close now, with 1001; this node's users go offline.
    app.state.hub.shutdown().await;
    app.state.services.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn prune_rate_limits(limiter: Arc<MemoryRateLimiter>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => limiter.prune(),
            () = shutdown.cancelled() => break,
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    fn settings(timeout: Duration) -> HttpSettings {
        let config = Config::defaults();
        HttpSettings { request_timeout: timeout, ..HttpSettings::from_config(&config) }
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn slow_requests_time_out_with_the_error_shape() {
        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
        let app = with_middleware(slow, &settings(Duration::from_millis(50)));
        let response = app.oneshot(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(response).await["error"]["code"], "timeout");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_generic_500() {
        #[allow(clippy::panic)]
        async fn boom() -> &'static str {
            panic!("secret internal detail /srv/palaver")
        }
        let app = with_middleware(Router::new().route("/boom", get(boom)), &settings(Duration::from_secs(5)));
        let response = app.oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret internal detail"));
    }
}
