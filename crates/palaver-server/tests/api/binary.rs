//! The `palaver` binary itself: zero-setup start, settings errors, graceful
//! shutdown, CLI commands, and logs that keep secrets out.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory as _;
use serde_json::{Value, json};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_palaver");

/// A `palaver` command with a clean environment (no settings leak in from
/// the developer's shell) and cheap password hashing.
pub(crate) fn palaver(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PALAVER_DATA_DIR", data_dir)
        .env("PALAVER_ARGON2_MEMORY_KIB", "256")
        .env("PALAVER_ARGON2_ITERATIONS", "1")
        .env("PALAVER_LOG_FORMAT", "json");
    cmd
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts the server and waits (polling, bounded) until /readyz answers.
pub(crate) async fn start(mut cmd: Command, port: u16) -> Child {
    let mut child = cmd
        .env("PALAVER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    palaver_push::providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await
            && resp.status().is_success()
        {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("palaver exited with {status} during start-up: {err}");
        }
        assert!(Instant::now() < deadline, "palaver not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM and waits for the exit, returning status and stderr.
pub(crate) fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "palaver did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

#[tokio::test]
async fn starts_with_zero_setup_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let child = start(palaver(&data), port).await;
    assert!(data.join("palaver.db").exists(), "SQLite database created in the data folder");
    assert!(data.join("secrets/jwt-secret").exists(), "development JWT secret generated");
    let (status, log) = terminate(child);
    assert!(status.success(), "clean exit on SIGTERM: {status}; log: {log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("\"stopped\""), "{log}");
}

#[test]
fn a_bad_setting_stops_start_up_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(palaver(dir.path()).env("PALAVER_LISTEN", "not-an-address"));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--listen") && err.contains("PALAVER_LISTEN"), "{err}");

    let out = run(palaver(dir.path()).env("PALAVER_ACCESS_TOKEN_TTL", "soon"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("PALAVER_ACCESS_TOKEN_TTL"), "{}", stderr(&out));

    let out = run(palaver(dir.path()).env("PALAVER_ENV", "production"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("PALAVER_JWT_SECRET"), "{}", stderr(&out));

    let out = run(palaver(dir.path()).env("PALAVER_ENV", "production").env("PALAVER_JWT_SECRET", "x".repeat(40)));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("PALAVER_ENCRYPTION_KEYS"), "{}", stderr(&out));

    let out = run(palaver(dir.path()).env("PALAVER_JWT_SECRET", "too-short"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 32 bytes"), "{}", stderr(&out));

    let out = run(palaver(dir.path()).env("DATABASE_URL", "mysql://localhost/x"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("DATABASE_URL"), "{}", stderr(&out));

    let port = free_port();
    let out = run(palaver(dir.path())
        .env("DATABASE_URL", format!("postgres://nobody@127.0.0.1:{port}/none"))
        .env("PALAVER_DB_CONNECT_TIMEOUT", "1s"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot open the database (DATABASE_URL)"), "{}", stderr(&out));

    let file = dir.path().join("palaver.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nbogus_setting = 1\n").unwrap();
    let out = run(palaver(dir.path()).env("PALAVER_CONFIG", &file));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown setting `bogus_setting`"), "{}", stderr(&out));
}

#[test]
fn help_lists_every_setting() {
    let out = run(Command::new(BIN).arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let command = palaver_server::Cli::command();
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(help.contains(&format!("--{long}")), "--{long} missing from --help");
        }
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(help.contains(env.as_ref()), "{env} missing from --help");
        }
    }
    for env in ["PALAVER_LISTEN", "PALAVER_DATA_DIR", "DATABASE_URL", "REDIS_URL"] {
        assert!(help.contains(env), "{env} missing from --help");
    }
}

/// The README's configuration table names every setting the binary has.
#[test]
fn readme_documents_every_setting() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let command = palaver_server::Cli::command();
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(readme.contains(&format!("`{env}`")), "README's configuration table lacks {env}");
        }
    }
}

#[tokio::test]
async fn migrate_and_admin_create_user() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(palaver(dir.path()).arg("migrate"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));

    let create = |email: &str| {
        run(palaver(dir.path())
            .args(["admin", "create-user", "--email", email, "--role", "admin"])
            .env("PALAVER_ADMIN_PASSWORD", "admin-password-123"))
    };
    let out = create("root@example.org");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("with role admin"));
    let again = create("root@example.org");
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    let bad =
        run(palaver(dir.path()).args(["admin", "create-user", "--email", "x@example.org", "--password", "short"]));
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("password"), "{}", stderr(&bad));

    let port = free_port();
    let child = start(palaver(dir.path()), port).await;
    palaver_push::providers::install_crypto_provider();
    let login: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/auth/login"))
        .json(&json!({"email": "root@example.org", "password": "admin-password-123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["user"]["role"], "admin", "{login}");
    let (status, _) = terminate(child);
    assert!(status.success());
}

/// Runs a session at the most verbose log level and checks that no
/// password, access token or refresh token appears anywhere in the log.
#[tokio::test]
async fn logs_never_contain_passwords_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = palaver(dir.path());
    cmd.env("PALAVER_LOG", "trace");
    let child = start(cmd, port).await;
    let base = format!("http://127.0.0.1:{port}/api/v1");
    palaver_push::providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let password = "Sup3r-Secret-Passw0rd";
    let reg: Value = client
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": "quiet@example.org", "password": password, "display_name": "Quiet"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = reg["access_token"].as_str().unwrap().to_owned();
    let refresh = reg["refresh_token"].as_str().unwrap().to_owned();
    let wrong = "Wr0ng-Passw0rd-Attempt";
    client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "quiet@example.org", "password": wrong}))
        .send()
        .await
        .unwrap();
    let refreshed: Value = client
        .post(format!("{base}/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access2 = refreshed["access_token"].as_str().unwrap().to_owned();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap().to_owned();
    client.get(format!("{base}/users/me")).bearer_auth(&access2).send().await.unwrap();
    client.get(format!("{base}/users/me?token={access2}")).send().await.unwrap();
    // Reuse of a spent token is logged (as a warning), without the token.
    client.post(format!("{base}/auth/refresh")).json(&json!({"refresh_token": refresh})).send().await.unwrap();
    let (status, log) = terminate(child);
    assert!(status.success());
    assert!(log.contains("refresh token presented again"), "the reuse was logged");
    assert!(log.len() > 1000, "trace logging produced output");
    for secret in [password, wrong, &access, &refresh, &access2, &refresh2] {
        assert!(!log.contains(secret), "secret leaked into the log");
    }
    // The parts of a JWT are secrets too (the signature proves possession).
    let signature = access2.rsplit('.').next().unwrap();
    assert!(!log.contains(signature));
}

/// Server processes on one PostgreSQL schema and one Redis prefix: the
/// nodes of one deployment, each with its own data folder and port.
pub(crate) struct Cluster {
    pub db: palaver_store::testing::TestDb,
    pub redis_url: String,
    /// The Redis key prefix the nodes share.
    pub prefix: String,
    pub ports: Vec<u16>,
    pub nodes: Vec<Child>,
    pub http: reqwest::Client,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `n` nodes (`node-1`, `node-2`, …), or says why not and
    /// returns `None` when PostgreSQL or Redis is not configured.
    pub async fn start(n: usize, test: &str) -> Option<Cluster> {
        Self::start_with(n, test, &[]).await
    }

    /// [`Cluster::start`] with extra settings for every node.
    pub async fn start_with(n: usize, test: &str, settings: &[(&str, &str)]) -> Option<Cluster> {
        let (Some(db), Some(redis_url)) =
            (palaver_store::testing::postgres().await.unwrap(), crate::helpers::redis_url())
        else {
            eprintln!("PostgreSQL or Redis not configured: {test} skipped");
            return None;
        };
        let schema = db.options.pg_schema.clone().unwrap();
        let database_url = format!("{}?options%5Bsearch_path%5D={schema}", db.options.url);
        let prefix = format!("palaver-test-{}", uuid::Uuid::new_v4().simple());
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let mut cmd = palaver(dir.path());
            cmd.env("DATABASE_URL", &database_url)
                .env("REDIS_URL", &redis_url)
                .env("PALAVER_REDIS_PREFIX", &prefix)
                .env("PALAVER_JWT_SECRET", crate::helpers::JWT_SECRET)
                // Every node must hold the same keys, like the JWT secret.
                .env("PALAVER_ENCRYPTION_KEYS", crate::helpers::TEST_KEY_1)
                .env("PALAVER_NODE_ID", format!("node-{}", i + 1))
                .env("PALAVER_RATE_REGISTER", "100/1m")
                .env("PALAVER_LOG", "warn")
                .envs(settings.iter().copied());
            nodes.push(start(cmd, ports[i]).await);
        }
        Some(Cluster { db, redis_url, prefix, ports, nodes, http: reqwest::Client::new(), _dirs: dirs })
    }

    /// `http://127.0.0.1:{port}/api/v1{path}` on node `i`.
    pub fn api(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/v1{path}", self.ports[i])
    }

    /// Registers on node `i` (extra fields merged into the body): the
    /// user's id and access token.
    pub async fn register(&self, i: usize, email: &str, extra: Value) -> (i64, String) {
        let mut body = json!({"email": email, "password": "password-123", "display_name": email});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let created: Value =
            self.http.post(self.api(i, "/auth/register")).json(&body).send().await.unwrap().json().await.unwrap();
        (created["user"]["id"].as_i64().unwrap(), created["access_token"].as_str().unwrap().to_owned())
    }

    /// Stops the nodes still running (each must exit cleanly), drops the
    /// schema and deletes the cluster's Redis keys (every key names the
    /// prefix, some inside a `{…}` hash tag).
    pub async fn stop(self) {
        for node in self.nodes {
            let (status, _) = terminate(node);
            assert!(status.success());
        }
        self.db.cleanup().await;
        let client = redis::Client::open(self.redis_url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let pattern = format!("*{}*", self.prefix);
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
        }
    }
}
