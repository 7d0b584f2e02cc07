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
pub(crate) mod calls;
pub(crate) mod chat;
pub(crate) mod media;
pub(crate) mod moderation;
pub(crate) mod moments;
pub(crate) mod notifications;
pub(crate) mod relations;
pub(crate) mod users;
pub(crate) mod voice;

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
        $crate::sql::media::impl_media_store!($store);
        $crate::sql::moments::impl_moment_store!($store);
        $crate::sql::relations::impl_relation_store!($store);
        $crate::sql::moderation::impl_moderation_store!($store);
        $crate::sql::notifications::impl_notification_store!($store);
        $crate::sql::calls::impl_call_store!($store);
        $crate::sql::chat::impl_chat_store!($store);
        $crate::sql::voice::impl_voice_store!($store);
    };
}
pub(crate) use impl_all_stores;

/// `$first, $first+1, ...` for `n` values: the placeholders of an `IN`
/// list of bound ids. Only numbers go into the SQL text; the ids are bound.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Columns of a moment as `model::MomentRow` reads them, for viewer `$1`.
/// Needs `moments m JOIN users au ON au.id = m.user_id`.
macro_rules! moment_cols {
    () => {
        "m.id, m.user_id, au.display_name, au.avatar, m.content, m.visibility, m.shared_moment_id, \
         m.likes_count, m.comments_count, m.shares_count, m.is_edited, m.created_at, m.updated_at, \
         EXISTS (SELECT 1 FROM moment_likes ml WHERE ml.moment_id = m.id AND ml.user_id = $1) AS is_liked, \
         EXISTS (SELECT 1 FROM follows mf WHERE mf.follower_id = $1 AND mf.following_id = m.user_id) \
         AS is_following_author"
    };
}
pub(crate) use moment_cols;

/// Neither the viewer `$1` nor the author of moment `m` blocks the other.
macro_rules! moment_not_blocked {
    () => {
        "NOT EXISTS (SELECT 1 FROM blocks vb WHERE vb.blocker_id = $1 AND vb.blocked_id = m.user_id) \
         AND NOT EXISTS (SELECT 1 FROM blocks vb2 WHERE vb2.blocker_id = m.user_id AND vb2.blocked_id = $1)"
    };
}
pub(crate) use moment_not_blocked;

/// THE visibility rule, for viewer `$1` and moment `m`:
/// active, author not suspended, public / followers (viewer follows or is
/// the author) / private (viewer is the author), and no block either way.
/// Every read of moments goes through it (`Visibility::allows` states the
/// same rule in Rust). The author's suspension is a correlated lookup by
/// primary key rather than a join: with a join, SQLite's planner builds a
/// Bloom filter over all users for every feed page (20 ms at 100k users).
macro_rules! moment_visible {
    () => {
        concat!(
            "(m.is_active AND (SELECT NOT su.is_suspended FROM users su WHERE su.id = m.user_id) \
             AND (m.user_id = $1 OR m.visibility = 'public' OR (m.visibility = 'followers' AND EXISTS \
             (SELECT 1 FROM follows vf WHERE vf.follower_id = $1 AND vf.following_id = m.user_id))) AND ",
            $crate::sql::moment_not_blocked!(),
            ")"
        )
    };
}
pub(crate) use moment_visible;

/// Columns of a comment as `model::CommentRow` reads them, for viewer `$1`.
/// Needs `moment_comments c JOIN users cu ON cu.id = c.user_id`.
macro_rules! comment_cols {
    () => {
        "c.id, c.moment_id, c.parent_comment_id, c.user_id, cu.display_name, cu.avatar, c.content, \
         c.likes_count, c.created_at, \
         EXISTS (SELECT 1 FROM comment_likes cl WHERE cl.comment_id = c.id AND cl.user_id = $1) AS is_liked"
    };
}
pub(crate) use comment_cols;

/// Comment `c` is active, its author not suspended, and no block between
/// its author and viewer `$1`.
macro_rules! comment_visible {
    () => {
        "(c.is_active AND (SELECT NOT su.is_suspended FROM users su WHERE su.id = c.user_id) \
         AND NOT EXISTS (SELECT 1 FROM blocks cb WHERE cb.blocker_id = $1 AND cb.blocked_id = c.user_id) \
         AND NOT EXISTS (SELECT 1 FROM blocks cb2 WHERE cb2.blocker_id = c.user_id AND cb2.blocked_id = $1))"
    };
}
pub(crate) use comment_visible;
