//! `spawn_app()` and a small typed client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use palaver_server::{App, AppState, Config};
use palaver_store::testing::{self, TestDb};
use palaver_store::{ConnectOptions, Store};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The secret test apps sign tokens with (tests forge tokens with it).
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// Encryption keys tests configure (`id:base64`), so data written before a
/// restart (which gets a new data folder) stays readable.
pub const TEST_KEY_1: &str = "test1:AAsWISw3Qk1YY255hI+apbC7xtHc5/L9CBMeKTQ/SlU=";
/// A second key, for rotation tests.
pub const TEST_KEY_2: &str = "test2:JTA7RlFcZ3J9iJOeqbS/ytXg6/YBDBciLThDTllkb3o=";

/// Which storage a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + in-process broker.
    Sqlite,
    /// PostgreSQL schema + Redis.
    Postgres,
}

/// Generates `sqlite` and `postgres` variants of an API test. The PostgreSQL
/// variant is skipped (and says so) when no test database is configured.
macro_rules! api_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::helpers::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await.unwrap();
                run(app.clone()).await;
                app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await else {
                    return;
                };
                run(app.clone()).await;
                app.stop().await;
            }
        }
    };
}
pub(crate) use api_test;

/// A running server and a client for it.
#[derive(Clone)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// The running app's state (event bus, notifications service).
    pub state: AppState,
    /// Opens the test database again (a second node, a restart).
    pub db_options: ConnectOptions,
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: CancellationToken,
    server: tokio::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
    db: tokio::sync::Mutex<Option<TestDb>>,
    _data_dir: tempfile::TempDir,
}

/// Test defaults: cheap password hashing, a known JWT secret, a private
/// data folder, generous rate limits.
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.data_dir = data_dir.to_path_buf();
    config.jwt_secret = Some(SecretString::from(JWT_SECRET.to_owned()));
    config.encryption_keys = Some(SecretString::from(TEST_KEY_1.to_owned()));
    config.argon2_memory_kib = 256;
    config.argon2_iterations = 1;
    config.rate_login = "1000/1m".parse().unwrap();
    config.rate_register = "1000/1m".parse().unwrap();
    config.rate_refresh = "1000/1m".parse().unwrap();
    for rate in [&mut config.rate_moments, &mut config.rate_comments, &mut config.rate_likes, &mut config.rate_follows]
    {
        *rate = "100000/1m".parse().unwrap();
    }
    config.rate_reports = "1000/1m".parse().unwrap();
    config.rate_messages = "1000000/1m".parse().unwrap();
    config.rate_chat_rooms = "100000/1m".parse().unwrap();
    config.shutdown_grace = Duration::from_secs(2);
    // Push retries and polls on a test's time scale.
    config.push_poll_interval = Duration::from_millis(50);
    config.push_retry_base = Duration::from_millis(50);
    config.push_retry_max = Duration::from_millis(200);
    config.push_request_timeout = Duration::from_secs(3);
    config.push_lease = Duration::from_secs(5);
    config
}

/// A server on SQLite, or on PostgreSQL (+ Redis when configured); `None`
/// when PostgreSQL is asked for but not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// [`spawn_app`] with a chance to change the config first.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
    init_test_logging();
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    let db = match backend {
        Backend::Sqlite => testing::sqlite().await.unwrap(),
        Backend::Postgres => {
            let db = testing::postgres().await.unwrap()?;
            if let Some(url) = redis_url() {
                config.redis_url = Some(url);
                config.redis_prefix = format!("palaver-test-{}", uuid::Uuid::new_v4().simple());
            }
            db
        }
    };
    config.database_url = Some(db.options.url.clone());
    tweak(&mut config);
    let store = db.store.clone();
    Some(start(config, store, db, data_dir).await)
}

async fn start(config: Config, store: Arc<dyn Store>, db: TestDb, data_dir: tempfile::TempDir) -> TestApp {
    let app = App::with_store(&config, store.clone()).await.unwrap();
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let server = tokio::spawn(palaver_server::serve(listener, app, async move { stop.cancelled().await }));
    TestApp {
        addr,
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        store,
        config: Arc::new(config),
        state,
        db_options: db.options.clone(),
        inner: Arc::new(Inner {
            shutdown,
            server: tokio::sync::Mutex::new(Some(server)),
            db: tokio::sync::Mutex::new(Some(db)),
            _data_dir: data_dir,
        }),
    }
}

/// The Redis URL tests may use, if any.
pub fn redis_url() -> Option<String> {
    std::env::var("PALAVER_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

/// Installs, once per test binary, the tracing subscriber: the SQL
/// statement counter (always) and, when `TEST_LOG` is set, log output.
fn init_test_logging() {
    palaver_push::providers::install_crypto_provider();
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fmt = std::env::var_os("TEST_LOG").is_some().then(|| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new("info,palaver=debug"))
        });
        let _ = tracing_subscriber::registry().with(sql_count::layer()).with(fmt).try_init();
    });
}

/// Counts the SQL statements each request runs, by its `x-request-id`:
/// sqlx reports every statement as a `sqlx::query` event, which happens
/// inside the request's span (the SQLite worker thread enters the caller's
/// span too). Tests send a unique request id and read the count, to show a
/// handler's number of queries does not grow with the size of its answer.
pub mod sql_count {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    static COUNTS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);
    static CLOSED: LazyLock<Mutex<std::collections::HashSet<String>>> = LazyLock::new(Default::default);

    struct RequestId(String);
    struct Counter;

    struct FindRequestId(Option<String>);
    impl Visit for FindRequestId {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "request_id" {
                self.0 = Some(value.to_owned());
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "request_id" {
                self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
            }
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Counter {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if attrs.metadata().name() != "request" {
                return;
            }
            let mut found = FindRequestId(None);
            attrs.record(&mut found);
            if let (Some(request_id), Some(span)) = (found.0, ctx.span(id)) {
                span.extensions_mut().insert(RequestId(request_id));
            }
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(&id)
                && let Some(RequestId(request_id)) = span.extensions().get::<RequestId>()
            {
                CLOSED.lock().unwrap().insert(request_id.clone());
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            if event.metadata().target() != "sqlx::query" {
                return;
            }
            let Some(scope) = ctx.event_scope(event) else { return };
            for span in scope.from_root() {
                if let Some(RequestId(id)) = span.extensions().get::<RequestId>() {
                    *COUNTS.lock().unwrap().entry(id.clone()).or_default() += 1;
                    return;
                }
            }
        }
    }

    /// The counting layer, seeing only request spans and statements.
    pub fn layer<S: Subscriber + for<'a> LookupSpan<'a>>() -> impl Layer<S> {
        Counter.with_filter(
            Targets::new()
                .with_target("palaver_server::observability", Level::INFO)
                .with_target("sqlx::query", Level::DEBUG),
        )
    }

    /// Statements run by the request with this id. Waits (with a deadline)
    /// until the request's span has closed: every task that ran a statement
    /// for it (the SQLite worker thread too) holds the span until it is
    /// done, so by then every statement has been counted.
    pub async fn statements(request_id: &str) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !CLOSED.lock().unwrap().contains(request_id) {
            assert!(std::time::Instant::now() < deadline, "request span {request_id} never closed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        COUNTS.lock().unwrap().get(request_id).copied().unwrap_or(0)
    }
}

/// A registered user with live tokens.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// A response: status, headers and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, with the body in the message when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts an error response: status, error code, and the error shape.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "body: {body}");
        assert!(body["error"]["message"].is_string(), "error has a message: {body}");
        assert!(body["error"]["details"].is_object(), "error has details: {body}");
        body
    }
}

impl TestApp {
    /// `http://127.0.0.1:port` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    /// Turns a response into a [`Reply`].
    pub async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    /// GET with a fresh request id; returns the reply and the number of SQL
    /// statements the server ran to answer it.
    pub async fn get_counting(&self, path: &str, token: &str) -> (Reply, usize) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();
        let reply = Self::reply(resp).await;
        (reply, sql_count::statements(&request_id).await)
    }

    pub async fn put(&self, path: &str, token: &str) -> Reply {
        self.call(Method::PUT, path, Some(token), None).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body)).await
    }

    /// Sends raw bytes with a given content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let resp =
            self.client.post(self.url(path)).header("content-type", content_type).body(body).send().await.unwrap();
        Self::reply(resp).await
    }

    /// Registers a user (display name from the email) and returns it with
    /// its tokens.
    pub async fn register(&self, email: &str) -> TestUser {
        let password = format!("pw-{email}-secret");
        let body = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({
                    "email": email,
                    "password": password,
                    "display_name": email.split('@').next().unwrap(),
                    "native_languages": ["es"],
                    "learning_languages": [{"code": "en", "level": "intermediate"}],
                }),
            )
            .await
            .expect(201);
        TestUser {
            id: body["user"]["id"].as_i64().unwrap(),
            email: email.to_owned(),
            password,
            access_token: body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Stops the server gracefully and starts a new one on the same
    /// database, as a restart of the process would.
    pub async fn restart(&self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// [`TestApp::restart`] with a changed config (new keys, say).
    pub async fn restart_with(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        self.inner.shutdown.cancel();
        if let Some(server) = self.inner.server.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        let db = self.inner.db.lock().await.take().expect("the app was stopped");
        let store = palaver_store::connect(&db.options).await.unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = (*self.config).clone();
        config.data_dir = data_dir.path().to_path_buf();
        tweak(&mut config);
        start(config, store, db, data_dir).await
    }

    /// Stops the server and drops the test database.
    pub async fn stop(&self) {
        self.inner.shutdown.cancel();
        if let Some(server) = self.inner.server.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        if let Some(db) = self.inner.db.lock().await.take() {
            db.cleanup().await;
        }
    }
}
