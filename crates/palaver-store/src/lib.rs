//! Palaver's storage: the traits services use to read and write durable
//! state, and their two implementations, SQLite (zero-setup, one machine) and
//! PostgreSQL (production, many nodes), each with its own migrations.
//!
//! Depends on `palaver-core` only. Nothing here knows about HTTP, WebSockets
//! or Redis. The SQL is written once (see [`sql`]) and compiled for each
//! backend, so both pass the same conformance suite (`tests/store`).
//! Counters always change in SQL, in the same transaction as the row that
//! justifies them; never as read-modify-write in Rust.

mod error;
pub(crate) mod model;
mod postgres;
mod sql;
mod sqlite;
#[cfg(feature = "test-util")]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use palaver_core::notification::{Notification, PushToken};
use palaver_core::social::{Comment, Moment, Report, ReportStatus};
use palaver_core::time::Timestamp;
use palaver_core::user::{ProfilePatch, Role, User};
use palaver_core::{Id, UserId};

pub use error::StoreError;
pub use model::{
    CommentAccess, FeedKind, LikeOp, LikeOutcome, Media, ModerationLogEntry, MomentAccess, NewComment, NewMedia,
    NewMoment, NewNotification, NewPushToken, NewRefreshToken, NewReport, NewUserRecord, OutboxItem, PageRequest,
    Profile, PushPayload, PushPlan, PushResult, RecordedNotification, RelationOp, RenderInput, Rendered, Renderer,
    ReportReview, Retracted, RotateOutcome, SessionState, UserSummary,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (single node).
    Sqlite,
    /// PostgreSQL server (any number of nodes).
    Postgres,
}

impl Backend {
    /// Name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Largest connection pool (PostgreSQL; SQLite readers).
    pub max_connections: u32,
    /// PostgreSQL schema to work in (created if missing). Tests use a fresh
    /// schema each so they run in parallel on one database.
    pub pg_schema: Option<String>,
    /// How long to wait for a connection (at start-up: for the database to
    /// answer at all).
    pub connect_timeout: std::time::Duration,
}

/// Opens the store the URL names and runs its migrations if asked.
pub async fn connect(options: &ConnectOptions) -> Result<Arc<dyn Store>> {
    if options.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(options).await?))
    } else if options.url.starts_with("postgres:") || options.url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::connect(options).await?))
    } else {
        Err(StoreError::Config("database URL must start with sqlite: or postgres:".into()))
    }
}

/// Everything durable, behind one handle. Services hold an `Arc<dyn Store>`.
#[async_trait]
pub trait Store:
    UserStore
    + AuthStore
    + MediaStore
    + MomentStore
    + RelationStore
    + ModerationStore
    + NotificationStore
    + Send
    + Sync
    + 'static
{
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Brings the schema up to date. Safe to run concurrently from several
    /// nodes (PostgreSQL takes an advisory lock).
    async fn migrate(&self) -> Result<()>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// Closes the pools, waiting for connections in use to return.
    async fn close(&self);
}

/// Accounts and profiles.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates an account. [`StoreError::Conflict`] when the email is taken.
    async fn create_user(&self, user: &NewUserRecord) -> Result<User>;
    /// The user with this id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>>;
    /// The user with this (lowercased) email and their password hash.
    async fn credentials_by_email(&self, email: &str) -> Result<Option<(User, String)>>;
    /// Applies a validated profile change; absent fields stay.
    async fn update_profile(&self, id: UserId, patch: &ProfilePatch, now: Timestamp) -> Result<User>;
    /// Changes a user's role.
    async fn set_role(&self, id: UserId, role: Role, now: Timestamp) -> Result<User>;
    /// Suspends or reinstates a user.
    async fn set_suspended(&self, id: UserId, suspended: bool, now: Timestamp) -> Result<User>;
    /// Replaces the password hash.
    async fn set_password_hash(&self, id: UserId, hash: &str, now: Timestamp) -> Result<()>;
    /// Records when the user was last seen online.
    async fn touch_last_seen(&self, id: UserId, at: Timestamp) -> Result<()>;
    /// A user's public profile as `viewer` sees it: counts and the
    /// relationship between the two.
    async fn profile(&self, viewer: UserId, id: UserId) -> Result<Option<Profile>>;
    /// True when either user blocked the other: the question every service
    /// that lets two users interact (follow, comment, message, call, match)
    /// must ask.
    async fn blocked_either(&self, a: UserId, b: UserId) -> Result<bool>;
}

/// Login sessions and rotating refresh tokens.
#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Starts a session with its first refresh token.
    async fn create_session(
        &self,
        session_id: &str,
        user_id: UserId,
        token: &NewRefreshToken,
        now: Timestamp,
    ) -> Result<()>;
    /// Spends the refresh token with hash `presented_hash` and stores `next`
    /// in its session, atomically. Presenting an already spent token revokes
    /// the whole session (token theft is assumed).
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next: &NewRefreshToken,
        now: Timestamp,
    ) -> Result<RotateOutcome>;
    /// Ends a session; false when it was already ended or never existed.
    async fn revoke_session(&self, session_id: &str, reason: &str, now: Timestamp) -> Result<bool>;
    /// Ends every session of a user (suspension, password change).
    async fn revoke_user_sessions(&self, user_id: UserId, reason: &str, now: Timestamp) -> Result<u64>;
    /// The user and their session's state, in one query: what every
    /// authenticated request needs.
    async fn session_user(&self, user_id: UserId, session_id: &str) -> Result<Option<(User, SessionState)>>;
}

/// Uploaded media, as far as moments need it (the media service extends
/// this with uploads, URLs and clean-up).
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records an uploaded file.
    async fn create_media(&self, media: &NewMedia) -> Result<Media>;
    /// The media item with this id.
    async fn media_by_id(&self, id: Id) -> Result<Option<Media>>;
    /// Which of `ids` `owner` uploaded (in no particular order).
    async fn owned_media(&self, owner: UserId, ids: &[Id]) -> Result<Vec<Id>>;
}

/// Moments, their likes, comments and shares. Every counter changes in SQL
/// in the transaction that adds or removes the row it counts.
#[async_trait]
pub trait MomentStore: Send + Sync {
    /// Inserts a moment, attaches its media (which the caller checked the
    /// author owns) and counts it on the author's profile.
    async fn create_moment(&self, moment: &NewMoment) -> Result<Id>;
    /// A moment's author, visibility and whether `viewer` may see it;
    /// `None` when it does not exist or was deleted or hidden.
    async fn moment_access(&self, viewer: UserId, id: Id) -> Result<Option<MomentAccess>>;
    /// The moments among `ids` that `viewer` may see, newest first, with
    /// authors, media, originals of reposts, and the viewer's like and
    /// follow flags, in a constant number of queries.
    async fn moments_for(&self, viewer: UserId, ids: &[Id]) -> Result<Vec<Moment>>;
    /// A page of a feed as `viewer` sees it, newest first, keyset-paginated
    /// by moment id, in a constant number of queries.
    async fn feed(&self, viewer: UserId, kind: FeedKind, page: PageRequest) -> Result<Vec<Moment>>;
    /// Edits the text and/or visibility; marks the moment edited. False
    /// when it is not active.
    async fn update_moment(
        &self,
        id: Id,
        content: Option<&str>,
        visibility: Option<palaver_core::social::Visibility>,
        now: Timestamp,
    ) -> Result<bool>;
    /// Soft-deletes a moment (a repost also stops counting as a share).
    /// False when it was not active.
    async fn delete_moment(&self, id: Id, now: Timestamp) -> Result<bool>;
    /// Hides a moment by moderation. False when it was not active.
    async fn hide_moment(&self, id: Id, now: Timestamp) -> Result<bool>;
    /// Likes or unlikes a moment.
    async fn like_moment(&self, user: UserId, moment: Id, op: LikeOp, now: Timestamp) -> Result<LikeOutcome>;
    /// Reposts `original` into `user`'s feed as a new moment and counts the
    /// share, in one transaction. Returns the repost's id.
    async fn share_to_feed(
        &self,
        user: UserId,
        original: Id,
        content: &str,
        visibility: palaver_core::social::Visibility,
        now: Timestamp,
    ) -> Result<Id>;
    /// A comment's moment, author and state; `None` when it does not exist.
    async fn comment_access(&self, id: Id) -> Result<Option<CommentAccess>>;
    /// Inserts a comment and counts it on its moment. NotFound when the
    /// moment is no longer active.
    async fn create_comment(&self, comment: &NewComment) -> Result<Id>;
    /// Active comments by id, as `viewer` sees them (no replies filled in).
    async fn comments_by_ids(&self, viewer: UserId, ids: &[Id]) -> Result<Vec<Comment>>;
    /// A page of top-level comments of a moment, oldest first, each with
    /// its first replies; comments by users in a block with `viewer` are left
    /// out.
    async fn comments(&self, viewer: UserId, moment: Id, page: PageRequest) -> Result<Vec<Comment>>;
    /// A page of replies under a top-level comment, oldest first.
    async fn replies(&self, viewer: UserId, parent: Id, page: PageRequest) -> Result<Vec<Comment>>;
    /// Soft-deletes a comment and its replies, and uncounts them. Returns
    /// how many were deleted.
    async fn delete_comment(&self, id: Id, now: Timestamp) -> Result<u64>;
    /// Hides a comment (and its replies) by moderation.
    async fn hide_comment(&self, id: Id, now: Timestamp) -> Result<u64>;
    /// Likes or unlikes a comment.
    async fn like_comment(&self, user: UserId, comment: Id, op: LikeOp, now: Timestamp) -> Result<LikeOutcome>;
}

/// Follows and blocks, with the profile counters kept exact.
#[async_trait]
pub trait RelationStore: Send + Sync {
    /// Follows or unfollows. Returns whether `follower` now follows
    /// `followee` and whether this changed anything. Following is refused
    /// (`Ok((false, false))`) while either blocks the other.
    async fn set_follow(
        &self,
        follower: UserId,
        followee: UserId,
        op: RelationOp,
        now: Timestamp,
    ) -> Result<(bool, bool)>;
    /// Blocks or unblocks; blocking removes follows both ways (and their
    /// counts). Returns whether `blocker` now blocks `blocked` and whether
    /// this changed anything.
    async fn set_block(&self, blocker: UserId, blocked: UserId, op: RelationOp, now: Timestamp)
    -> Result<(bool, bool)>;
    /// Who follows `user`, by descending user id (cursor: a user id).
    async fn followers(&self, viewer: UserId, user: UserId, page: PageRequest) -> Result<Vec<UserSummary>>;
    /// Whom `user` follows, by descending user id.
    async fn following(&self, viewer: UserId, user: UserId, page: PageRequest) -> Result<Vec<UserSummary>>;
    /// Whom `user` blocks, by descending user id.
    async fn blocks(&self, user: UserId, page: PageRequest) -> Result<Vec<UserSummary>>;
}

/// Reports, the moderation queue and its audit log.
#[async_trait]
pub trait ModerationStore: Send + Sync {
    /// Whether `user` takes part in the conversation of message `message`
    /// (the one question reports on messages ask of chat), and the sender.
    async fn message_reportable_by(&self, user: UserId, message: Id) -> Result<Option<UserId>>;
    /// Files a report; Conflict when the reporter already has a pending
    /// report on this target. When enough distinct users have pending
    /// reports on a moment or comment, hides it in the same transaction and
    /// logs an `auto_hide` action. Returns the report and whether the
    /// content was hidden now.
    async fn create_report(&self, report: &NewReport) -> Result<(Report, bool)>;
    /// A report by id.
    async fn report_by_id(&self, id: Id) -> Result<Option<Report>>;
    /// The queue: reports with `status` (all when None), oldest first,
    /// keyset-paginated by id (`before` is read as "after" here).
    async fn reports(&self, status: Option<ReportStatus>, page: PageRequest) -> Result<Vec<Report>>;
    /// Applies a moderator's decision: status, notes, the action on the
    /// target, and an audit log entry, in one transaction.
    async fn review_report(&self, review: &ReportReview) -> Result<Report>;
    /// Records a moderator action taken outside a report (a moderator
    /// deleting a moment, say).
    async fn log_moderation(
        &self,
        moderator: UserId,
        action: &str,
        target_kind: &str,
        target_id: Id,
        notes: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// The audit log, newest first (cursor: an entry id).
    async fn moderation_log(&self, page: PageRequest) -> Result<Vec<ModerationLogEntry>>;
}

/// Notifications, preferences, push tokens and the push outbox.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Records a notification in one transaction: closes aggregates older
    /// than the window, creates the notification or merges the event into
    /// the open aggregate with the same key (counting the actor once),
    /// renders its text with `render`, and queues one push per active token
    /// of the user, replacing pending pushes with the same collapse key.
    async fn record_notification(&self, new: &NewNotification, render: &Renderer) -> Result<RecordedNotification>;
    /// Takes an actor back out of the newest unread notification with this
    /// key that stands for them (an unlike): re-rendered, or deleted with
    /// its pending pushes when no actor remains.
    async fn retract_notification(
        &self,
        user_id: UserId,
        aggregation_key: &str,
        actor_id: UserId,
        render: &Renderer,
        now: Timestamp,
    ) -> Result<Retracted>;
    /// A page of a user's notifications, newest first, ids below `before`.
    async fn list_notifications(
        &self,
        user_id: UserId,
        unread_only: bool,
        before: Option<Id>,
        limit: u32,
    ) -> Result<Vec<Notification>>;
    /// How many unread notifications the user has.
    async fn unread_notification_count(&self, user_id: UserId) -> Result<i64>;
    /// Marks one of the user's notifications read (it stops aggregating);
    /// `None` when the user has no such notification.
    async fn mark_notification_read(&self, user_id: UserId, id: Id, now: Timestamp) -> Result<Option<Notification>>;
    /// Marks every unread notification (with id up to `up_to`, if given)
    /// read; returns how many changed.
    async fn mark_all_notifications_read(&self, user_id: UserId, up_to: Option<Id>, now: Timestamp) -> Result<u64>;
    /// The user's stored preferences document, if they saved one.
    async fn notification_preferences(&self, user_id: UserId) -> Result<Option<serde_json::Value>>;
    /// Replaces the user's preferences document.
    async fn set_notification_preferences(
        &self,
        user_id: UserId,
        preferences: &serde_json::Value,
        now: Timestamp,
    ) -> Result<()>;
    /// Registers a token for a user. A token belongs to one user: one
    /// registered by someone else moves (and its queued pushes for the
    /// previous owner are dropped). A user keeps at most `max_per_user`
    /// tokens; the least recently registered go first.
    async fn register_push_token(
        &self,
        user_id: UserId,
        token: &NewPushToken,
        max_per_user: u32,
        now: Timestamp,
    ) -> Result<PushToken>;
    /// Removes a user's token; false when the user has no such token.
    async fn delete_push_token(&self, user_id: UserId, token: &str) -> Result<bool>;
    /// A user's active tokens.
    async fn push_tokens(&self, user_id: UserId) -> Result<Vec<PushToken>>;
    /// Claims up to `limit` due pushes for `claim_id` (unique per call) until
    /// `lease_until`.
    /// Rows claimed by another live claim are skipped (`FOR UPDATE SKIP
    /// LOCKED` on PostgreSQL); rows whose lease ran out are claimed again.
    async fn claim_pushes(
        &self,
        claim_id: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>>;
    /// Records how claimed pushes ended, in one transaction. Rows no longer
    /// held by `claim_id` are left alone. Returns how many tokens were
    /// pruned.
    async fn finish_pushes(&self, claim_id: &str, results: &[(OutboxItem, PushResult)]) -> Result<u64>;
    /// How many pushes wait in the outbox (claimed or not).
    async fn pending_push_count(&self) -> Result<i64>;
}
