//! The SQLite store: one file, zero setup.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{Backend, ConnectOptions, Result, Store, StoreError};

/// SQLite with WAL: many readers, and one writer connection so that write
/// transactions wait their turn in the pool rather than failing with
/// `SQLITE_BUSY` (SQLite allows one writer at a time anyway).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `options.url`.
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        if options.url.contains(":memory:") || options.url.contains("mode=memory") {
            return Err(StoreError::Config(
                "in-memory SQLite is not supported: readers and the writer must share a file".into(),
            ));
        }
        let base = SqliteConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Config(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a process crash; an OS crash may lose the
            // last commits. Production runs on PostgreSQL.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self { reader, writer })
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Group commit (`ChatStore::send_messages`): one statement after
    /// another in one transaction, since SQLite's statements are function
    /// calls here, not round trips.
    pub(crate) async fn send_batch(&self, batch: &[&crate::NewMessage]) -> Result<Vec<crate::SendResult>> {
        self.send_batch_looped(batch).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The driver the shared SQL (`crate::sql`) is compiled for here.
type Db = sqlx::Sqlite;

crate::sql::impl_all_stores!(SqliteStore);
