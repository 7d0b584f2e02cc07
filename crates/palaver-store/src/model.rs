//! Records the store reads and writes that are not plain domain types.

use palaver_core::social::{ModerationAction, ReportStatus, ReportTarget, ReportType, Visibility};
use palaver_core::time::Timestamp;
use palaver_core::user::{LearningLanguage, Role, User};
use palaver_core::{Id, UserId};
use serde::Serialize;
use sqlx::types::Json;

use crate::StoreError;

/// A validated account ready to insert.
#[derive(Debug, Clone)]
pub struct NewUserRecord {
    /// Lowercased email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Name shown to others.
    pub display_name: String,
    /// Native language codes.
    pub native_languages: Vec<String>,
    /// Learning languages with levels.
    pub learning_languages: Vec<LearningLanguage>,
    /// Role.
    pub role: Role,
    /// Creation time.
    pub now: Timestamp,
}

/// A refresh token to store (its hash, never the token).
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was valid and is now spent; the new one is stored.
    Rotated {
        /// Owner of the session.
        user_id: UserId,
        /// The session (token family).
        session_id: String,
    },
    /// The token was already spent: the session is now revoked.
    Reused {
        /// The revoked session.
        session_id: String,
    },
    /// Unknown, expired, or its session was revoked.
    Invalid,
}

/// Whether a login session still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Usable.
    Active,
    /// Logged out or revoked.
    Revoked,
}

/// A user as another user sees them.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The user.
    pub user: User,
    /// How many follow them.
    pub followers_count: i64,
    /// How many they follow.
    pub following_count: i64,
    /// How many visible moments they have.
    pub moments_count: i64,
    /// The viewer follows them.
    pub is_following: bool,
    /// They follow the viewer.
    pub follows_you: bool,
    /// The viewer blocked them.
    pub is_blocked: bool,
    /// They blocked the viewer.
    pub blocked_you: bool,
}

/// A `users` row as read.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub avatar: Option<String>,
    pub bio: String,
    pub native_languages: Json<Vec<String>>,
    pub learning_languages: Json<Vec<LearningLanguage>>,
    pub role: String,
    pub is_suspended: bool,
    pub last_seen_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            avatar: row.avatar,
            bio: row.bio,
            native_languages: row.native_languages.0,
            learning_languages: row.learning_languages.0,
            role: row.role.parse().map_err(StoreError::Corrupt)?,
            is_suspended: row.is_suspended,
            last_seen_at: row.last_seen_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A media row made ready at once, without stored bytes (tests and
/// benchmarks that need media ids; uploads go through [`NewUpload`]).
#[derive(Debug, Clone)]
pub struct NewMedia {
    /// Who uploaded it.
    pub owner_id: UserId,
    /// `image`, `audio`, `video` or `file`.
    pub kind: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Pixel width.
    pub width: Option<i32>,
    /// Pixel height.
    pub height: Option<i32>,
    /// Where the bytes live in object storage.
    pub storage_key: String,
    /// Upload time.
    pub now: Timestamp,
}

/// An upload that is starting: its row is made first so that its id can
/// bind the ciphertext to the row; it is not ready (not attachable, not
/// served) until [`UploadDone`] is recorded.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Who uploads it.
    pub owner_id: UserId,
    /// `image`, `audio`, `video` or `file`, from the bytes.
    pub kind: String,
    /// MIME type, from the bytes.
    pub content_type: String,
    /// Where the bytes will live (a random name).
    pub storage_key: String,
    /// The key the bytes and file name are sealed with; None when
    /// encryption at rest is off.
    pub key_id: Option<String>,
    /// Start time.
    pub now: Timestamp,
}

/// What a finished upload stored.
#[derive(Debug, Clone, Default)]
pub struct UploadDone {
    /// Plaintext size in bytes.
    pub size_bytes: i64,
    /// Pixel width (images).
    pub width: Option<i32>,
    /// Pixel height (images).
    pub height: Option<i32>,
    /// Playing time (audio and video, when it could be read).
    pub duration_ms: Option<i64>,
    /// Where the thumbnail lives (images).
    pub thumbnail_key: Option<String>,
    /// Thumbnail width.
    pub thumbnail_width: Option<i32>,
    /// Thumbnail height.
    pub thumbnail_height: Option<i32>,
    /// Thumbnail size in bytes.
    pub thumbnail_size_bytes: Option<i64>,
    /// The client's file name: sealed under the row's key, or UTF-8 when
    /// the row has none.
    pub filename: Option<Vec<u8>>,
}

/// A stored media item.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Media {
    /// Its id.
    pub id: Id,
    /// Who uploaded it.
    pub owner_id: UserId,
    /// `image`, `audio`, `video` or `file`.
    pub kind: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes (of the plaintext).
    pub size_bytes: i64,
    /// Pixel width.
    pub width: Option<i32>,
    /// Pixel height.
    pub height: Option<i32>,
    /// Playing time of audio and video, when known.
    pub duration_ms: Option<i64>,
    /// Where the bytes live.
    pub storage_key: String,
    /// Where the thumbnail lives (images).
    pub thumbnail_key: Option<String>,
    /// Thumbnail width.
    pub thumbnail_width: Option<i32>,
    /// Thumbnail height.
    pub thumbnail_height: Option<i32>,
    /// Thumbnail size in bytes.
    pub thumbnail_size_bytes: Option<i64>,
    /// The client's file name, sealed under `key_id` (UTF-8 when None).
    pub filename: Option<Vec<u8>>,
    /// The key the bytes and file name are sealed with; None: plaintext.
    pub key_id: Option<String>,
    /// When its bytes were stored; None while the upload runs.
    pub ready_at: Option<Timestamp>,
    /// When it was first attached to something (unattached uploads are
    /// garbage-collected).
    pub attached_at: Option<Timestamp>,
    /// Upload time.
    pub created_at: Timestamp,
}

/// A media item's new storage after re-encryption under another key.
#[derive(Debug, Clone)]
pub struct MediaReseal {
    /// The item.
    pub id: Id,
    /// The storage key it had (the update applies only if it still has it).
    pub old_storage_key: String,
    /// Where the re-encrypted bytes are.
    pub storage_key: String,
    /// Where the re-encrypted thumbnail is.
    pub thumbnail_key: Option<String>,
    /// The file name sealed under the new key.
    pub filename: Option<Vec<u8>>,
    /// The new key.
    pub key_id: String,
}

/// A validated moment to insert.
#[derive(Debug, Clone)]
pub struct NewMoment {
    /// The author.
    pub user_id: UserId,
    /// The text.
    pub content: String,
    /// Media the author owns, in order.
    pub media_ids: Vec<Id>,
    /// Who may see it.
    pub visibility: Visibility,
    /// Creation time.
    pub now: Timestamp,
}

/// Which feed to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    /// The viewer's own moments, those of people they follow, and public ones.
    Home,
    /// Public moments.
    Public,
    /// One user's moments that the viewer may see.
    User(UserId),
}

/// A page request for a keyset-paginated list: at most `limit` items after
/// the cursor in the list's order (newest-first lists continue below the
/// cursor id, oldest-first lists above it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The last id of the previous page; None for the first page.
    pub cursor: Option<Id>,
    /// Page size (already clamped by the caller).
    pub limit: i64,
}

/// How a like request changes the like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikeOp {
    /// Like if not liked, unlike if liked.
    Toggle,
    /// Like (no change if already liked).
    Set,
    /// Unlike (no change if not liked).
    Clear,
}

/// What a like request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LikeOutcome {
    /// Whether the user likes it now.
    pub liked: bool,
    /// Whether this request changed anything.
    pub changed: bool,
    /// The counter after the change.
    pub likes_count: i64,
}

/// What services need to know about a moment to decide on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MomentAccess {
    /// The moment.
    pub id: Id,
    /// Its author.
    pub author_id: UserId,
    /// Who may see it.
    pub visibility: Visibility,
    /// For a repost: the original.
    pub shared_moment_id: Option<Id>,
    /// The viewer may see it (visibility, blocks, suspension).
    pub visible: bool,
}

/// What services need to know about a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentAccess {
    /// The comment.
    pub id: Id,
    /// Its moment.
    pub moment_id: Id,
    /// Its author.
    pub author_id: UserId,
    /// For a reply: the top-level comment.
    pub parent_comment_id: Option<Id>,
    /// Not deleted nor hidden.
    pub active: bool,
}

/// A validated comment to insert.
#[derive(Debug, Clone)]
pub struct NewComment {
    /// The moment.
    pub moment_id: Id,
    /// The author.
    pub user_id: UserId,
    /// For a reply: the top-level comment it goes under.
    pub parent_comment_id: Option<Id>,
    /// The text.
    pub content: String,
    /// Creation time.
    pub now: Timestamp,
}

/// How a follow or block request changes the relationship.
pub type RelationOp = LikeOp;

/// A user in a list (followers, following, blocks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    /// The user's id.
    pub id: UserId,
    /// Name shown to others.
    pub display_name: String,
    /// Avatar URL.
    pub avatar: Option<String>,
    /// The viewer follows them.
    pub is_following: bool,
}

/// A validated report to insert.
#[derive(Debug, Clone)]
pub struct NewReport {
    /// Who reports.
    pub reporter_id: UserId,
    /// What.
    pub target: ReportTarget,
    /// Why.
    pub report_type: ReportType,
    /// The reporter's words.
    pub description: String,
    /// Content reported by this many distinct users (pending reports) is
    /// hidden until a moderator reviews it.
    pub auto_hide_threshold: i64,
    /// Creation time.
    pub now: Timestamp,
}

/// A moderator's decision on a report.
#[derive(Debug, Clone)]
pub struct ReportReview {
    /// The report.
    pub report_id: Id,
    /// The moderator.
    pub moderator_id: UserId,
    /// New status.
    pub status: ReportStatus,
    /// New notes (None keeps them).
    pub admin_notes: Option<String>,
    /// What to do to the target.
    pub action: ModerationAction,
    /// The user to suspend, for `suspend_user` (resolved by the service).
    pub suspend_user_id: Option<UserId>,
    /// Time of the decision.
    pub now: Timestamp,
}

/// One entry of the moderation audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ModerationLogEntry {
    /// Its id.
    pub id: Id,
    /// The moderator (null for automatic actions).
    pub moderator_id: Option<UserId>,
    /// The report acted on.
    pub report_id: Option<Id>,
    /// `none`, `hide_content`, `suspend_user`, `auto_hide`, `delete_moment`, `delete_comment`.
    pub action: String,
    /// `user`, `moment`, `comment` or `message`.
    pub target_kind: String,
    /// The target's id.
    pub target_id: Id,
    /// Notes (the status change, the moderator's notes).
    pub notes: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl PageRequest {
    /// The cursor for newest-first lists (ids below it).
    pub(crate) fn below(&self) -> Id {
        self.cursor.unwrap_or(Id::MAX)
    }

    /// The cursor for oldest-first lists (ids above it).
    pub(crate) fn above(&self) -> Id {
        self.cursor.unwrap_or(0)
    }
}

/// A moment row as the feed queries read it (with the viewer's flags).
#[derive(sqlx::FromRow)]
pub(crate) struct MomentRow {
    pub id: i64,
    pub user_id: i64,
    pub display_name: String,
    pub avatar: Option<String>,
    pub content: String,
    pub visibility: String,
    pub shared_moment_id: Option<i64>,
    pub likes_count: i64,
    pub comments_count: i64,
    pub shares_count: i64,
    pub is_edited: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub is_liked: bool,
    pub is_following_author: bool,
}

impl TryFrom<MomentRow> for palaver_core::social::Moment {
    type Error = StoreError;

    fn try_from(r: MomentRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            user: palaver_core::social::AuthorSummary { id: r.user_id, display_name: r.display_name, avatar: r.avatar },
            content: r.content,
            media: Vec::new(),
            visibility: r.visibility.parse().map_err(StoreError::Corrupt)?,
            shared_moment_id: r.shared_moment_id,
            shared_moment: None,
            likes_count: r.likes_count,
            comments_count: r.comments_count,
            shares_count: r.shares_count,
            is_edited: r.is_edited,
            is_liked: r.is_liked,
            is_following_author: r.is_following_author,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A media row joined to its moment.
#[derive(sqlx::FromRow)]
pub(crate) struct MomentMediaRow {
    pub moment_id: i64,
    pub id: i64,
    pub kind: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_ms: Option<i64>,
    pub has_thumbnail: bool,
}

/// A comment row as listings read it.
#[derive(sqlx::FromRow)]
pub(crate) struct CommentRow {
    pub id: i64,
    pub moment_id: i64,
    pub parent_comment_id: Option<i64>,
    pub user_id: i64,
    pub display_name: String,
    pub avatar: Option<String>,
    pub content: String,
    pub likes_count: i64,
    pub created_at: Timestamp,
    pub is_liked: bool,
}

impl From<CommentRow> for palaver_core::social::Comment {
    fn from(r: CommentRow) -> Self {
        Self {
            id: r.id,
            moment_id: r.moment_id,
            parent_comment: r.parent_comment_id,
            user: palaver_core::social::AuthorSummary { id: r.user_id, display_name: r.display_name, avatar: r.avatar },
            content: r.content,
            likes_count: r.likes_count,
            is_liked: r.is_liked,
            created_at: r.created_at,
            replies: Vec::new(),
            has_more_replies: false,
        }
    }
}

/// A report row with what moderators see of its target.
#[derive(sqlx::FromRow)]
pub(crate) struct ReportRow {
    pub id: i64,
    pub reporter_id: i64,
    pub target_kind: String,
    pub target_id: i64,
    pub report_type: String,
    pub description: String,
    pub status: String,
    pub admin_notes: String,
    pub reviewed_by: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub target_user_id: Option<i64>,
    pub target_excerpt: Option<String>,
}

impl TryFrom<ReportRow> for palaver_core::social::Report {
    type Error = StoreError;

    fn try_from(r: ReportRow) -> Result<Self, StoreError> {
        let target = ReportTarget::from_parts(&r.target_kind, r.target_id)
            .ok_or_else(|| StoreError::Corrupt(format!("report target kind `{}`", r.target_kind)))?;
        let pick = |kind: &str| (target.kind() == kind).then_some(r.target_id);
        Ok(Self {
            id: r.id,
            reporter_id: r.reporter_id,
            target,
            reported_user: pick("user"),
            reported_moment: pick("moment"),
            reported_comment: pick("comment"),
            reported_message: pick("message"),
            report_type: r.report_type.parse().map_err(StoreError::Corrupt)?,
            description: r.description,
            status: r.status.parse().map_err(StoreError::Corrupt)?,
            admin_notes: r.admin_notes,
            reviewed_by: r.reviewed_by,
            target_user_id: r.target_user_id,
            target_excerpt: r.target_excerpt,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// How a notification's text is made from its current state. Called inside
/// the transaction that changes the notification, so the text always matches
/// the counts it states, even under concurrent events.
pub type Renderer = dyn Fn(&RenderInput<'_>) -> Rendered + Send + Sync;

/// What a [`Renderer`] sees.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// What the notification is about.
    pub notification_type: palaver_core::notification::NotificationType,
    /// Display names of the most recent actors, newest first (at most two).
    pub actor_names: &'a [String],
    /// How many different actors the notification stands for.
    pub actor_count: i64,
    /// How many events were merged into it.
    pub event_count: i64,
    /// The notification's data (ids, message preview, call kind).
    pub data: &'a serde_json::Value,
}

/// A notification's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The headline ("Ana and 3 others liked your moment").
    pub title: String,
    /// The detail line.
    pub message: String,
}

/// A notification to record: a new one, or an event merged into an open
/// aggregate with the same key.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// The recipient.
    pub user_id: UserId,
    /// What it is about.
    pub notification_type: palaver_core::notification::NotificationType,
    /// Ids for navigation; replaces the aggregate's data on merge.
    pub data: serde_json::Value,
    /// Events with the same key merge into one unread notification opened
    /// after `aggregate_since`; `None` never merges.
    pub aggregation_key: Option<String>,
    /// Who caused it, if anyone (counted once per aggregate).
    pub actor_id: Option<UserId>,
    /// Start of the aggregation window: older open aggregates are closed.
    pub aggregate_since: Timestamp,
    /// Store it in the user's notification list.
    pub in_app: bool,
    /// Push it to the user's devices.
    pub push: Option<PushPlan>,
    /// The time of the event.
    pub now: Timestamp,
}

/// How to push a notification.
#[derive(Debug, Clone)]
pub struct PushPlan {
    /// Pushes with the same key replace each other: pending ones in the
    /// outbox, shown ones on the device.
    pub collapse_key: Option<String>,
    /// Wake the device now (calls, messages) rather than when convenient.
    pub high_priority: bool,
    /// How long the push service should keep trying to reach the device.
    pub ttl_secs: u32,
    /// Not before this time (quiet hours deferral).
    pub not_before: Timestamp,
    /// Dropped if not sent by then.
    pub expires_at: Timestamp,
}

/// What is sent to a device, stored in the outbox as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PushPayload {
    /// The in-app notification, when there is one.
    pub notification_id: Option<palaver_core::Id>,
    /// What it is about.
    pub notification_type: palaver_core::notification::NotificationType,
    /// Headline.
    pub title: String,
    /// Detail line.
    pub body: String,
    /// Ids for navigation.
    pub data: serde_json::Value,
    /// The unread count to show on the app icon.
    pub badge: Option<i64>,
    /// Deliver immediately, waking the device.
    pub high_priority: bool,
    /// Seconds the push service may hold it for an offline device.
    pub ttl_secs: u32,
    /// When the event happened (event-to-push latency is measured from it).
    pub event_at: Timestamp,
}

/// What recording a notification did.
#[derive(Debug, Clone)]
pub struct RecordedNotification {
    /// The notification as stored (`None` when it was push-only).
    pub notification: Option<palaver_core::notification::Notification>,
    /// A new notification (rather than an update of an aggregate).
    pub created: bool,
    /// The user's unread count afterwards.
    pub unread_count: i64,
    /// Pushes queued in the outbox.
    pub pushes_queued: u64,
}

/// What taking back an event (an unlike) did.
#[derive(Debug, Clone)]
pub enum Retracted {
    /// No unread notification stood for that actor: nothing changed.
    Unchanged,
    /// The notification now stands for fewer actors.
    Updated {
        /// The notification as it is now.
        notification: palaver_core::notification::Notification,
        /// The user's unread count.
        unread_count: i64,
    },
    /// The actor was the only one: the notification is gone.
    Deleted {
        /// The removed notification.
        id: palaver_core::Id,
        /// The user's unread count.
        unread_count: i64,
    },
}

/// A push token to register.
#[derive(Debug, Clone)]
pub struct NewPushToken {
    /// The device token or web subscription identity.
    pub token: String,
    /// Which push service.
    pub device_type: palaver_core::notification::DeviceType,
    /// For the web: the subscription.
    pub web_push: Option<palaver_core::notification::WebPushSubscription>,
}

/// A push claimed by a worker, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// The outbox row.
    pub id: palaver_core::Id,
    /// The token row.
    pub push_token_id: palaver_core::Id,
    /// The device token.
    pub token: String,
    /// Which push service.
    pub device_type: palaver_core::notification::DeviceType,
    /// For the web: the subscription.
    pub web_push: Option<palaver_core::notification::WebPushSubscription>,
    /// What to send; `None` when the stored JSON cannot be read (dropped).
    pub payload: Option<PushPayload>,
    /// Pushes with the same key replace each other.
    pub collapse_key: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it stops being worth sending.
    pub expires_at: Option<Timestamp>,
}

/// How one claimed push ended, for [`crate::NotificationStore::finish_pushes`].
#[derive(Debug, Clone)]
pub enum PushResult {
    /// The push service accepted it: the row goes, the notification is sent.
    Delivered,
    /// Try again at this time.
    Retry {
        /// When.
        at: Timestamp,
        /// Why it failed (for operators; never a token).
        error: String,
    },
    /// Give up on this push (expired, rejected for good).
    Drop {
        /// Why.
        error: String,
    },
    /// The token is dead (unregistered): delete it and everything queued
    /// for it.
    PruneToken,
}

/// A `notifications` row as read.
#[derive(sqlx::FromRow)]
pub(crate) struct NotificationRow {
    pub id: i64,
    pub user_id: i64,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub data: Json<serde_json::Value>,
    pub actor_count: i64,
    pub event_count: i64,
    pub is_read: bool,
    pub is_sent: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub read_at: Option<Timestamp>,
}

impl TryFrom<NotificationRow> for palaver_core::notification::Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            notification_type: row.notification_type.parse().map_err(StoreError::Corrupt)?,
            title: row.title,
            message: row.message,
            data: row.data.0,
            actor_count: row.actor_count,
            event_count: row.event_count,
            is_read: row.is_read,
            is_sent: row.is_sent,
            created_at: row.created_at,
            updated_at: row.updated_at,
            read_at: row.read_at,
        })
    }
}

/// A `push_tokens` row as read.
#[derive(sqlx::FromRow)]
pub(crate) struct PushTokenRow {
    pub id: i64,
    pub user_id: i64,
    pub token: String,
    pub device_type: String,
    pub web_endpoint: Option<String>,
    pub web_p256dh: Option<String>,
    pub web_auth: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The web subscription stored in a token row's columns, when complete.
pub(crate) fn web_subscription(
    endpoint: Option<String>,
    p256dh: Option<String>,
    auth: Option<String>,
) -> Option<palaver_core::notification::WebPushSubscription> {
    match (endpoint, p256dh, auth) {
        (Some(endpoint), Some(p256dh), Some(auth)) => Some(palaver_core::notification::WebPushSubscription {
            endpoint,
            keys: palaver_core::notification::WebPushKeys { p256dh, auth },
        }),
        _ => None,
    }
}

impl TryFrom<PushTokenRow> for palaver_core::notification::PushToken {
    type Error = StoreError;

    fn try_from(row: PushTokenRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            token: row.token,
            device_type: row.device_type.parse().map_err(StoreError::Corrupt)?,
            web_push: web_subscription(row.web_endpoint, row.web_p256dh, row.web_auth),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A claimed `push_outbox` row joined with its token.
#[derive(sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub push_token_id: i64,
    pub token: String,
    pub device_type: String,
    pub web_endpoint: Option<String>,
    pub web_p256dh: Option<String>,
    pub web_auth: Option<String>,
    pub payload: Json<serde_json::Value>,
    pub collapse_key: Option<String>,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

impl TryFrom<OutboxRow> for OutboxItem {
    type Error = StoreError;

    fn try_from(row: OutboxRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            push_token_id: row.push_token_id,
            token: row.token,
            device_type: row.device_type.parse().map_err(StoreError::Corrupt)?,
            web_push: web_subscription(row.web_endpoint, row.web_p256dh, row.web_auth),
            payload: serde_json::from_value(row.payload.0).ok(),
            collapse_key: row.collapse_key,
            attempts: row.attempts,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

/// A `voice_rooms` row as read.
#[derive(sqlx::FromRow)]
pub(crate) struct VoiceRoomRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub topic: String,
    pub difficulty_level: String,
    pub max_participants: i64,
    pub max_speakers: i64,
    pub current_participants: i64,
    pub current_speakers: i64,
    pub is_active: bool,
    pub created_by: i64,
    pub media_node: Option<String>,
    pub media_addr: Option<String>,
    pub created_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

impl TryFrom<VoiceRoomRow> for palaver_core::voice::VoiceRoom {
    type Error = StoreError;

    fn try_from(row: VoiceRoomRow) -> Result<Self, StoreError> {
        Ok(palaver_core::voice::VoiceRoom {
            id: row.id,
            name: row.name,
            description: row.description,
            topic: row.topic,
            difficulty_level: row.difficulty_level.parse().map_err(StoreError::Corrupt)?,
            max_participants: row.max_participants,
            max_speakers: row.max_speakers,
            current_participants: row.current_participants,
            current_speakers: row.current_speakers,
            is_active: row.is_active,
            created_by: row.created_by,
            media_node: row.media_node,
            media_addr: row.media_addr,
            created_at: row.created_at,
            closed_at: row.closed_at,
        })
    }
}

/// A participant row with its user, as read.
#[derive(sqlx::FromRow)]
pub(crate) struct VoiceParticipantRow {
    pub room_id: i64,
    pub user_id: i64,
    pub display_name: String,
    pub avatar: Option<String>,
    pub role: String,
    pub is_muted: bool,
    pub is_speaking: bool,
    pub hand_raised: bool,
    pub joined_at: Timestamp,
}

impl TryFrom<VoiceParticipantRow> for palaver_core::voice::VoiceParticipant {
    type Error = StoreError;

    fn try_from(row: VoiceParticipantRow) -> Result<Self, StoreError> {
        Ok(palaver_core::voice::VoiceParticipant {
            room_id: row.room_id,
            user_id: row.user_id,
            display_name: row.display_name,
            avatar: row.avatar,
            role: row.role.parse().map_err(StoreError::Corrupt)?,
            is_muted: row.is_muted,
            is_speaking: row.is_speaking,
            hand_raised: row.hand_raised,
            joined_at: row.joined_at,
        })
    }
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceJoin {
    /// Joined now, with this role.
    Joined(palaver_core::voice::VoiceRole),
    /// Was already in the room (the heartbeat was refreshed).
    Already(palaver_core::voice::VoiceRole),
    /// Every seat is taken.
    Full,
    /// No such room, or it is closed.
    Closed,
}

/// What a role change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Done.
    Changed,
    /// The participant already had that role.
    Unchanged,
    /// Every speaker seat is taken.
    NoSeat,
    /// The user is not in the room.
    NotParticipant,
    /// Only listener <-> speaker changes exist (the host stays host).
    NotAllowed,
}

/// A participant flag that changes without counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceFlag {
    /// `is_muted`.
    Muted,
    /// `hand_raised`.
    HandRaised,
    /// `is_speaking`.
    Speaking,
}

/// A participant removed by a sweep or a disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovedParticipant {
    /// The room.
    pub room_id: Id,
    /// The user.
    pub user_id: UserId,
    /// The role they had.
    pub role: palaver_core::voice::VoiceRole,
}
