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

/// A media row to insert (the upload service makes these).
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
    /// Size in bytes.
    pub size_bytes: i64,
    /// Pixel width.
    pub width: Option<i32>,
    /// Pixel height.
    pub height: Option<i32>,
    /// Where the bytes live.
    pub storage_key: String,
    /// When it was first attached to something (unattached uploads are
    /// garbage-collected).
    pub attached_at: Option<Timestamp>,
    /// Upload time.
    pub created_at: Timestamp,
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
    pub width: Option<i32>,
    pub height: Option<i32>,
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
