//! The SQL, written once for both backends.
//!
//! Each submodule defines a macro that implements one store trait for a
//! store type. `sqlite.rs` and `postgres.rs` invoke every macro, so each
//! query is compiled twice, once per `sqlx` driver, from one source. This is
//! the pragmatic middle ground between duplicating every query (two places to
//! fix each bug) and code generic over `sqlx::Database` (whose trait bounds
//! drown the queries). It works because the two dialects agree on what we
//! use: `$n` placeholders (SQLite reads `$1` as parameter 1), `RETURNING`,
//! `ON CONFLICT`, partial indexes, and timestamps always bound from Rust.
//! Where they differ, the store type provides the piece (see `Dialect`).
//!
//! Every store type provides `reader()` and `writer()` pools: the same pool on
//! PostgreSQL; on SQLite a single-connection writer so write transactions
//! queue in the pool instead of failing with `SQLITE_BUSY`.

pub(crate) mod auth;
pub(crate) mod notifications;
pub(crate) mod users;

/// Columns of `users` as `model::UserRow` reads them, table-qualified so the
/// list works in joins and in `RETURNING`.
macro_rules! user_cols {
    () => {
        "users.id, users.email, users.display_name, users.avatar, users.bio, \
         users.native_languages, users.learning_languages, users.role, \
         users.is_suspended, users.last_seen_at, users.created_at, users.updated_at"
    };
}
pub(crate) use user_cols;

/// Invokes every store-trait macro for a store type.
macro_rules! impl_all_stores {
    ($store:ty) => {
        $crate::sql::users::impl_user_store!($store);
        $crate::sql::auth::impl_auth_store!($store);
        $crate::sql::notifications::impl_notification_store!($store);
    };
}
pub(crate) use impl_all_stores;
