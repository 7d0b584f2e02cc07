//! Test helpers: a fresh, migrated store per test, on SQLite (a temporary
//! file) or on PostgreSQL (a new schema in the database named by
//! `PALAVER_TEST_DATABASE_URL`), so tests run in parallel without sharing
//! state.

use std::sync::Arc;

use crate::{ConnectOptions, Result, Store};

/// The variable naming the PostgreSQL database tests may use.
pub const DATABASE_URL_VAR: &str = "PALAVER_TEST_DATABASE_URL";

/// A store that lives as long as this value: the SQLite file is deleted on
/// drop; PostgreSQL schemas are dropped by [`TestDb::cleanup`] or by a later
/// run once they are old.
pub struct TestDb {
    /// The migrated store.
    pub store: Arc<dyn Store>,
    /// Options that open the same database again (a second node, say).
    pub options: ConnectOptions,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("url", &self.options.url).finish()
    }
}

impl TestDb {
    /// Drops the PostgreSQL schema (no-op on SQLite).
    pub async fn cleanup(self) {
        self.store.close().await;
        if let (Some(schema), Ok(url)) = (&self.options.pg_schema, std::env::var(DATABASE_URL_VAR)) {
            drop_schema(&url, schema).await;
        }
    }
}

/// Options for a fresh SQLite file in a new temporary directory.
pub fn sqlite_options() -> std::io::Result<(ConnectOptions, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("palaver.db").display());
    Ok((
        ConnectOptions {
            url,
            max_connections: 8,
            pg_schema: None,
            connect_timeout: std::time::Duration::from_secs(10),
        },
        dir,
    ))
}

/// Options for a fresh PostgreSQL schema, or `None` when
/// `PALAVER_TEST_DATABASE_URL` is not set.
pub async fn postgres_options() -> Option<ConnectOptions> {
    let url = std::env::var(DATABASE_URL_VAR).ok().filter(|u| !u.is_empty())?;
    drop_stale_schemas(&url).await;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let schema = format!("palaver_t_{now}_{}", uuid::Uuid::new_v4().simple());
    Some(ConnectOptions {
        url,
        max_connections: 10,
        pg_schema: Some(schema),
        connect_timeout: std::time::Duration::from_secs(10),
    })
}

/// A fresh migrated SQLite store.
pub async fn sqlite() -> Result<TestDb> {
    let (options, dir) = sqlite_options().map_err(|e| crate::StoreError::Config(e.to_string()))?;
    let store = crate::connect(&options).await?;
    store.migrate().await?;
    Ok(TestDb { store, options, _dir: Some(dir) })
}

/// A fresh migrated PostgreSQL store, or `None` (with a note on stderr)
/// when no test database is configured.
pub async fn postgres() -> Result<Option<TestDb>> {
    let Some(options) = postgres_options().await else {
        note_skipped("PostgreSQL", DATABASE_URL_VAR);
        return Ok(None);
    };
    let store = crate::connect(&options).await?;
    store.migrate().await?;
    Ok(Some(TestDb { store, options, _dir: None }))
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection as _;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// Schemas of test runs that ended without cleaning up (a panic) are dropped
/// by a later run once they are over two hours old; once per process.
async fn drop_stale_schemas(url: &str) {
    use sqlx::Connection as _;
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(mut conn) = sqlx::PgConnection::connect(url).await else { return };
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'palaver\\_t\\_%'")
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        for (name,) in names {
            let created: u64 = name.split('_').nth(2).and_then(|t| t.parse().ok()).unwrap_or(now);
            if now.saturating_sub(created) > 2 * 3600 {
                let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
            }
        }
        let _ = conn.close().await;
    })
    .await;
}

/// Says, once per test binary, that tests needing a service were skipped.
/// Written straight to the stderr handle: the test harness captures
/// `eprintln!` of passing tests, and this note must be seen.
pub fn note_skipped(service: &str, variable: &str) {
    use std::collections::HashSet;
    use std::io::Write as _;
    use std::sync::Mutex;
    static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.get_or_insert_with(HashSet::new).insert(service.to_owned()) {
        let _ = writeln!(
            std::io::stderr(),
            "note: {service} tests skipped ({variable} is not set); .ci/run sets it and runs them"
        );
    }
}
