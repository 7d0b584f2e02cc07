//! The PostgreSQL store: production, shared by every node.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};

use crate::{Backend, ConnectOptions, Result, Store, StoreError};

/// PostgreSQL through one connection pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database named by `options.url`, in `pg_schema` when
    /// given (created if missing).
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
        if let Some(schema) = &options.pg_schema {
            if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Config(format!("bad schema name `{schema}`")));
            }
            let mut conn = connect.connect().await?;
            // The name was checked to be [A-Za-z0-9_]+ above, so quoting is safe.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { pool })
    }

    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// The driver the shared SQL (`crate::sql`) is compiled for here.
type Db = sqlx::Postgres;

crate::sql::impl_all_stores!(PgStore);
