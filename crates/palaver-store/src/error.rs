//! The storage error.

/// What went wrong in the store. Services turn these into domain errors with
/// context (a unique violation on `users.email` is "email already
/// registered").
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No row matched.
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated; carries the constraint or message.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A foreign key pointed at nothing.
    #[error("referenced row does not exist: {0}")]
    ForeignKey(String),
    /// A CHECK constraint failed.
    #[error("constraint violated: {0}")]
    Check(String),
    /// A stored value could not be understood (a bug or manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store was configured wrongly.
    #[error("store configuration: {0}")]
    Config(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database error (connection, I/O, syntax).
    #[error("database: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = err {
            return StoreError::NotFound;
        }
        if let Some(db) = err.as_database_error() {
            let what = db.constraint().map_or_else(|| db.message().to_owned(), str::to_owned);
            if db.is_unique_violation() {
                return StoreError::Conflict(what);
            }
            if db.is_foreign_key_violation() {
                return StoreError::ForeignKey(what);
            }
            if db.is_check_violation() {
                return StoreError::Check(what);
            }
        }
        StoreError::Database(err)
    }
}

impl From<StoreError> for palaver_core::Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => palaver_core::Error::NotFound("not found".into()),
            StoreError::Conflict(_) => palaver_core::Error::Conflict("already exists".into()),
            StoreError::ForeignKey(_) => palaver_core::Error::NotFound("referenced item not found".into()),
            StoreError::Database(sqlx::Error::PoolTimedOut) => {
                palaver_core::Error::Unavailable("database is busy, try again".into())
            }
            other => palaver_core::Error::internal(other),
        }
    }
}
