//! Palaver's storage: the traits services use to read and write durable
//! state, and their two implementations, SQLite (zero-setup, one machine) and
//! PostgreSQL (production, many nodes), each with its own migrations.
//!
//! Depends on `palaver-core` only. Nothing here knows about HTTP, WebSockets
//! or Redis. The SQL is written once (see [`sql`]) and compiled for each
//! backend, so both pass the same conformance suite (`tests/store`).
//! Counters always change in SQL, in the same transaction as the row that
//! justifies them; never as read-modify-write in Rust.

mod batch;
mod calls;
mod chat_model;
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

pub use calls::{
    AcceptOutcome, CallParty, CallQualityReport, CallRecord, FinishOutcome, NewCall, NewCallOutcome, StoredCallQuality,
};
pub use chat_model::{
    AddResult, BodyCipher, BodySealer, ChatCandidate, Membership, MessageRange, NewMessage, RoomCursor, RoomRecord,
    SealedBody, SendResult, StoredMessage,
};
pub use error::StoreError;
pub use model::{
    CommentAccess, FeedKind, LikeOp, LikeOutcome, Media, MediaReseal, ModerationLogEntry, MomentAccess, NewComment,
    NewMedia, NewMoment, NewNotification, NewPushToken, NewRefreshToken, NewReport, NewUpload, NewUserRecord,
    OutboxItem, PageRequest, Profile, PushPayload, PushPlan, PushResult, RecordedNotification, RelationOp,
    RemovedParticipant, RenderInput, Rendered, Renderer, ReportReview, Retracted, RoleChange, RotateOutcome,
    SessionState, UploadDone, UserSummary, VoiceFlag, VoiceJoin,
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
    + CallStore
    + ChatStore
    + VoiceStore
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

/// Uploaded media: the rows behind uploads, who may see them, clean-up and
/// re-encryption. The bytes live in object storage (`palaver-media`).
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records a media item that is ready at once (tests, benchmarks).
    async fn create_media(&self, media: &NewMedia) -> Result<Media>;
    /// Starts an upload: a row that is not ready yet. Returns its id.
    async fn begin_upload(&self, upload: &NewUpload) -> Result<Id>;
    /// Records what a finished upload stored and makes it ready.
    async fn finish_upload(&self, id: Id, done: &UploadDone, now: Timestamp) -> Result<Media>;
    /// The media item with this id (ready or not).
    async fn media_by_id(&self, id: Id) -> Result<Option<Media>>;
    /// Which of `ids` `owner` uploaded and are ready (in no particular order).
    async fn owned_media(&self, owner: UserId, ids: &[Id]) -> Result<Vec<Id>>;
    /// Whether `viewer` may see media `id`: they uploaded it, or it is on a
    /// moment they may see, or in a (not deleted) message of a room they
    /// take part in, or they moderate and it is in reported content. False
    /// for media that is not ready.
    async fn media_visible_to(&self, viewer: UserId, id: Id) -> Result<bool>;
    /// Deletes a media row (its objects are the caller's business).
    async fn delete_media(&self, id: Id) -> Result<bool>;
    /// Unattached media created before `before`, oldest first: uploads
    /// nobody used, or abandoned half-way.
    async fn stale_media(&self, before: Timestamp, limit: i64) -> Result<Vec<Media>>;
    /// Deletes a media row if it is still unattached (a moment or message
    /// may have claimed it since it was listed as stale).
    async fn delete_stale_media(&self, id: Id) -> Result<bool>;
    /// Ready media with id above `after` not sealed with `active_key` (or
    /// not sealed at all), by id: the work of a key rotation.
    async fn media_to_reseal(&self, active_key: &str, after: Id, limit: i64) -> Result<Vec<Media>>;
    /// Points a media row at its re-encrypted objects, if it still has
    /// `old_storage_key`. False when it changed or went meanwhile.
    async fn reseal_media(&self, reseal: &MediaReseal) -> Result<bool>;
    /// How many media rows each key seals (None: not sealed).
    async fn media_key_counts(&self) -> Result<Vec<(Option<String>, i64)>>;
    /// What clients are shown of the ready media among `ids` (URLs left
    /// empty for the caller to sign), in one query.
    async fn media_refs(&self, ids: &[Id]) -> Result<Vec<palaver_core::social::MediaRef>>;
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

/// 1-on-1 calls: each step of a call's life is one atomic statement or
/// transaction, so two nodes (or two devices) acting at once on a call
/// cannot both win, and timeouts are driven by deadlines stored here.
#[async_trait]
pub trait CallStore: Send + Sync {
    /// Places a call, deciding in one transaction (both parties locked)
    /// whether it rings, is missed (unreachable) or is busy.
    async fn create_call(&self, call: &NewCall) -> Result<NewCallOutcome>;
    /// A call by id.
    async fn call_by_id(&self, id: Id) -> Result<Option<CallRecord>>;
    /// Calls by id, newest first (missing ids are left out).
    async fn calls_by_ids(&self, ids: &[Id]) -> Result<Vec<CallRecord>>;
    /// Accepts a ringing call for `receiver_connection` (the device that
    /// accepted, if known): exactly one of concurrent accepts wins.
    async fn accept_call(
        &self,
        id: Id,
        receiver_connection: Option<&str>,
        media_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<AcceptOutcome>;
    /// Moves a call whose status is one of `from` to the final status `to`,
    /// computing the duration from accept to now.
    async fn finish_call(
        &self,
        id: Id,
        from: &[palaver_core::call::CallStatus],
        to: palaver_core::call::CallStatus,
        reason: &str,
        now: Timestamp,
    ) -> Result<FinishOutcome>;
    /// Records that media flows on an active call (the media timeout no
    /// longer applies). True when this changed the call.
    async fn mark_media_connected(&self, id: Id, now: Timestamp) -> Result<bool>;
    /// Binds the call to one device of a party, the first time; returns the
    /// device the call is bound to now (`connection` or an earlier one).
    async fn bind_call_connection(&self, id: Id, caller_side: bool, connection: &str) -> Result<Option<String>>;
    /// Moves every call whose deadline passed: ringing ones to `missed`,
    /// active ones without media to `failed`. Each call moves once even
    /// when several nodes sweep at the same time. Returns the moved calls.
    async fn expire_due_calls(&self, now: Timestamp, limit: i64) -> Result<Vec<CallRecord>>;
    /// A user's calls (placed or received), newest first.
    async fn call_history(&self, user: UserId, page: PageRequest) -> Result<Vec<CallRecord>>;
    /// A live (ringing or active) call the user takes part in, if any.
    async fn live_call_of(&self, user: UserId) -> Result<Option<CallRecord>>;
    /// Stores a quality report.
    async fn add_call_quality(&self, call_id: Id, report: &CallQualityReport) -> Result<()>;
    /// The latest report of each party of each call among `call_ids`.
    async fn latest_call_quality(&self, call_ids: &[Id]) -> Result<Vec<StoredCallQuality>>;
    /// Everyone `user` blocks or is blocked by (the matcher never pairs them).
    async fn block_partners(&self, user: UserId) -> Result<Vec<UserId>>;
    /// Everyone `user` was randomly matched with since `since`.
    async fn recent_match_partners(&self, user: UserId, since: Timestamp) -> Result<Vec<UserId>>;
}

/// Chat rooms, their participants, and messages with a per-room `seq`
/// assigned in the transaction that stores the message (see `sql/chat.rs`).
/// Bodies are stored as given (bytes and the id of the key that sealed
/// them); the chat service encodes and decodes them.
#[async_trait]
pub trait ChatStore: Send + Sync {
    /// `ids` as users `actor` wants in a room: who exists, who is
    /// suspended, and the blocks between them and `actor`.
    async fn chat_candidates(&self, actor: UserId, ids: &[UserId]) -> Result<Vec<ChatCandidate>>;
    /// The private room of two users, created with both as participants
    /// if the pair has none (`true`). Concurrent calls for one pair find
    /// one room.
    async fn create_private_room(&self, creator: UserId, other: UserId, now: Timestamp) -> Result<(Id, bool)>;
    /// A group named `name` with its creator (`announce.sender`, admin) and
    /// `members`, and its first message `announce` (whose `room_id` is
    /// ignored), in one transaction. NotFound when a member does not exist.
    async fn create_group_room(
        &self,
        name: &str,
        members: &[UserId],
        announce: &NewMessage,
    ) -> Result<(Id, StoredMessage)>;
    /// `user`'s standing in active room `room`; `None` when not a participant.
    async fn membership(&self, room: Id, user: UserId) -> Result<Option<Membership>>;
    /// A room as participant `user` sees it; `None` when not a participant.
    async fn room_for(&self, user: UserId, room: Id) -> Result<Option<RoomRecord>>;
    /// `user`'s active rooms by last activity, newest first, after `cursor`,
    /// with the newest message and the participants, in two queries.
    async fn rooms_for(&self, user: UserId, cursor: Option<RoomCursor>, limit: i64) -> Result<Vec<RoomRecord>>;
    /// Everyone in a room.
    async fn participant_ids(&self, room: Id) -> Result<Vec<UserId>>;
    /// Everyone in each of `rooms` (rooms without participants are left
    /// out), in one query: the recipients of a batch of messages.
    async fn participant_ids_of(&self, rooms: &[Id]) -> Result<std::collections::HashMap<Id, Vec<UserId>>>;
    /// Adds `user` as a member of `announce.room_id` and stores `announce`
    /// (sent by whoever adds them), in one transaction; the room holds at
    /// most `max_participants`.
    async fn add_participant(&self, user: UserId, announce: &NewMessage, max_participants: i64) -> Result<AddResult>;
    /// Removes `user` from `announce.room_id` (themselves when they are the
    /// sender: leaving) and stores `announce`, in one transaction. A group
    /// left without an admin gets its longest-standing member as admin; an
    /// empty room closes. `None` (nothing changed) when the sender or `user`
    /// is not a participant.
    async fn remove_participant(&self, user: UserId, announce: &NewMessage) -> Result<Option<StoredMessage>>;
    /// Renames `announce.room_id` and stores `announce`, in one transaction;
    /// `None` when the sender is not a participant.
    async fn rename_room(&self, name: &str, announce: &NewMessage) -> Result<Option<StoredMessage>>;
    /// Stores a message with the room's next seq, or finds the one a retry
    /// repeats.
    async fn send_message(&self, message: &NewMessage) -> Result<SendResult>;
    /// Group commit: stores `batch` (messages of any rooms) in one
    /// transaction, each message with its room's next seq in batch order,
    /// and returns each message's own result, in batch order, once that
    /// transaction has committed. Each message is decided as
    /// [`ChatStore::send_message`] would: a refused one or a retry (of a
    /// stored message, or of a key earlier in the batch) does not stop the
    /// others; if the transaction cannot commit at all (a reference deleted
    /// meanwhile, a lost connection), each message is sent on its own, so
    /// only the one at fault fails.
    async fn send_messages(&self, batch: &[NewMessage]) -> Vec<Result<SendResult>>;
    /// [`ChatStore::send_message`], counting a share of `moment` (which
    /// must be active and public, else NotFound and nothing stored) in the
    /// same transaction.
    async fn share_moment_to_chat(&self, message: &NewMessage, moment: Id) -> Result<SendResult>;
    /// A message by id.
    async fn message_by_id(&self, id: Id) -> Result<Option<StoredMessage>>;
    /// Messages of a room in seq order (deleted ones included, so seqs
    /// have no holes).
    async fn messages(&self, room: Id, range: MessageRange) -> Result<Vec<StoredMessage>>;
    /// Replies to `message` with seq above `after_seq`, in seq order.
    async fn thread(&self, message: Id, after_seq: i64, limit: i64) -> Result<Vec<StoredMessage>>;
    /// Replaces the body of `sender`'s message and marks it edited; `None`
    /// when it is not theirs, deleted, or a system message.
    async fn edit_message(
        &self,
        id: Id,
        sender: UserId,
        body: &[u8],
        body_key_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<StoredMessage>>;
    /// Deletes `sender`'s message softly: the body, media and shared moment
    /// go (the share is uncounted), the seq stays. `None` when it is not
    /// theirs, already deleted, or a system message.
    async fn delete_message(&self, id: Id, sender: UserId, now: Timestamp) -> Result<Option<StoredMessage>>;
    /// Moves `user`'s watermark in `room` forward to `seq` (at most the
    /// room's last seq); returns the new watermark, or `None` when it did
    /// not move (never backwards).
    async fn mark_read(&self, room: Id, user: UserId, seq: i64) -> Result<Option<i64>>;
    /// Participants other than the sender whose watermark covers `message`.
    async fn read_by(&self, message: Id) -> Result<Vec<palaver_core::social::AuthorSummary>>;
    /// Marks `user`'s unread message notifications of `room` read when
    /// their watermark has reached the room's newest message; returns
    /// their ids.
    async fn mark_room_notifications_read(&self, user: UserId, room: Id, now: Timestamp) -> Result<Vec<Id>>;
    /// Bodies of messages (not deleted) with id above `after` not sealed
    /// with `active_key`, by id: the work of a key rotation.
    async fn bodies_to_reseal(&self, active_key: &str, after: Id, limit: i64) -> Result<Vec<SealedBody>>;
    /// Replaces a message body with its re-encryption, only if it is still
    /// `old_body` (an edit meanwhile wins). False when it changed.
    async fn reseal_body(&self, id: Id, old_body: &[u8], body: &[u8], key_id: &str) -> Result<bool>;
    /// How many message bodies (not deleted) each key seals (None: plain).
    async fn message_key_counts(&self) -> Result<Vec<(Option<String>, i64)>>;
}

/// Voice rooms and their participants. The room's participant and speaker
/// counts change in the transaction that changes the participant rows, with
/// the limits checked in the same statement as the increment.
#[async_trait]
pub trait VoiceStore: Send + Sync {
    /// Creates an open, empty room.
    async fn create_voice_room(
        &self,
        creator: UserId,
        room: &palaver_core::voice::NewVoiceRoom,
        now: Timestamp,
    ) -> Result<palaver_core::voice::VoiceRoom>;
    /// A room, open or closed.
    async fn voice_room(&self, id: Id) -> Result<Option<palaver_core::voice::VoiceRoom>>;
    /// Open rooms, newest first, filtered by topic and level.
    async fn list_voice_rooms(
        &self,
        topic: Option<&str>,
        level: Option<palaver_core::user::Level>,
        page: PageRequest,
    ) -> Result<Vec<palaver_core::voice::VoiceRoom>>;
    /// Closes an open room and removes everyone in it; returns who was in
    /// it, or `None` when it was not open.
    async fn close_voice_room(&self, id: Id, now: Timestamp) -> Result<Option<Vec<UserId>>>;
    /// Takes a seat: a speaker seat while one is free (the host's always),
    /// else a listener's; refused when the room is full or closed. An empty
    /// room's media is placed on `node`, whose SFU takes UDP at `media_addr`.
    async fn join_voice_room(
        &self,
        room: Id,
        user: UserId,
        node: &str,
        media_addr: &str,
        now: Timestamp,
    ) -> Result<VoiceJoin>;
    /// Records that an open room's media is now on `node` at `media_addr`
    /// (its old node died and another took it over); false when the room
    /// is closed or unknown.
    async fn set_voice_media(&self, room: Id, node: &str, media_addr: &str, now: Timestamp) -> Result<bool>;
    /// Leaves; returns the role the user had, `None` when not in the room.
    async fn leave_voice_room(
        &self,
        room: Id,
        user: UserId,
        now: Timestamp,
    ) -> Result<Option<palaver_core::voice::VoiceRole>>;
    /// Everyone in a room: host, speakers, then listeners, by join time.
    async fn voice_participants(&self, room: Id) -> Result<Vec<palaver_core::voice::VoiceParticipant>>;
    /// One participant.
    async fn voice_participant(&self, room: Id, user: UserId) -> Result<Option<palaver_core::voice::VoiceParticipant>>;
    /// Moves a participant between listener and speaker, taking or freeing
    /// a speaker seat in the same transaction.
    async fn set_voice_role(
        &self,
        room: Id,
        user: UserId,
        role: palaver_core::voice::VoiceRole,
        now: Timestamp,
    ) -> Result<RoleChange>;
    /// Sets a participant flag; false when the user is not in the room.
    async fn set_voice_flag(&self, room: Id, user: UserId, flag: VoiceFlag, value: bool) -> Result<bool>;
    /// Refreshes the heartbeat of these participants, and of every
    /// participation of `user` when given. Returns the rows touched.
    async fn touch_voice_participants(
        &self,
        pairs: &[(Id, UserId)],
        user: Option<UserId>,
        now: Timestamp,
    ) -> Result<u64>;
    /// Up to `limit` participants whose heartbeat is older than `cutoff`,
    /// oldest first.
    async fn stale_voice_participants(&self, cutoff: Timestamp, limit: i64) -> Result<Vec<(Id, UserId)>>;
    /// Removes (and uncounts) these participants, in one transaction; with
    /// `stale_before`, only those whose heartbeat is still older than it (a
    /// heartbeat since the caller looked keeps the seat).
    async fn remove_voice_participants(
        &self,
        pairs: &[(Id, UserId)],
        stale_before: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<RemovedParticipant>>;
    /// Removes a user from every voice room (their connection dropped).
    async fn remove_voice_user(&self, user: UserId, now: Timestamp) -> Result<Vec<RemovedParticipant>>;
    /// Closes open rooms that have been empty since before `cutoff`.
    async fn close_idle_voice_rooms(&self, cutoff: Timestamp, now: Timestamp) -> Result<Vec<Id>>;
}
