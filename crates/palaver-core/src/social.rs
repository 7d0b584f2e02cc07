//! The social domain: moments, comments, likes, shares, follows, blocks,
//! reports and moderation. Types the store returns and the API sends, the
//! rules on their fields, and who may see what.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate;
use crate::{Error, FieldErrors, Id, Result, UserId};

/// Limits on social content.
pub mod limits {
    /// Longest moment, in characters.
    pub const MOMENT_MAX_CHARS: usize = 5000;
    /// Most media items on one moment.
    pub const MOMENT_MAX_MEDIA: usize = 9;
    /// Longest comment, in characters.
    pub const COMMENT_MAX_CHARS: usize = 2000;
    /// Longest report description, in characters.
    pub const REPORT_DESCRIPTION_MAX_CHARS: usize = 2000;
    /// Longest moderator note, in characters.
    pub const ADMIN_NOTES_MAX_CHARS: usize = 5000;
    /// Replies shown inline under each top-level comment; the rest are
    /// paged through `GET /comments/{id}/replies`.
    pub const INLINE_REPLIES: i64 = 20;
}

/// Who may see a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Everyone.
    Public,
    /// The author's followers and the author.
    Followers,
    /// The author only.
    Private,
}

impl Visibility {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Followers => "followers",
            Visibility::Private => "private",
        }
    }

    /// The visibility rule itself, for one viewer: the SQL filters implement
    /// exactly this (and the conformance tests check them against it).
    pub fn allows(self, viewer_is_author: bool, viewer_follows_author: bool, blocked_either: bool) -> bool {
        if blocked_either {
            return false;
        }
        match self {
            Visibility::Public => true,
            Visibility::Followers => viewer_is_author || viewer_follows_author,
            Visibility::Private => viewer_is_author,
        }
    }
}

impl std::str::FromStr for Visibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Visibility::Public),
            "followers" => Ok(Visibility::Followers),
            "private" => Ok(Visibility::Private),
            _ => Err(format!("unknown visibility `{s}` (expected public, followers or private)")),
        }
    }
}

/// The author of a moment or comment, as shown beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthorSummary {
    /// The user's id.
    pub id: UserId,
    /// Name shown to others.
    pub display_name: String,
    /// Avatar URL, if any.
    pub avatar: Option<String>,
}

/// A media item attached to a moment (or a message), as one viewer gets it:
/// with URLs signed for that viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaRef {
    /// The media id.
    pub id: Id,
    /// `image`, `audio`, `video` or `file`.
    pub kind: String,
    /// MIME type, decided from the bytes.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Pixel width, for images.
    pub width: Option<i32>,
    /// Pixel height, for images.
    pub height: Option<i32>,
    /// Playing time of audio and video, when it could be read.
    pub duration_ms: Option<i64>,
    /// Signed, expiring URL of the bytes, valid for this viewer only
    /// (relative to the API's origin).
    pub url: String,
    /// Signed URL of the thumbnail (images).
    pub thumbnail_url: Option<String>,
    /// Whether a thumbnail exists (the URL is signed per viewer).
    #[serde(skip)]
    pub has_thumbnail: bool,
}

/// A moment as one viewer sees it: with its author, counts, and the
/// viewer's relationship to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Moment {
    /// The moment's id.
    pub id: Id,
    /// Its author.
    pub user: AuthorSummary,
    /// The text.
    pub content: String,
    /// Attached media, in the order given.
    pub media: Vec<MediaRef>,
    /// Who may see it.
    pub visibility: Visibility,
    /// For a repost: the original moment's id.
    pub shared_moment_id: Option<Id>,
    /// For a repost: the original, when the viewer may still see it (null
    /// when it was deleted, hidden or made non-public since).
    #[schema(no_recursion)]
    pub shared_moment: Option<Box<Moment>>,
    /// Number of likes.
    pub likes_count: i64,
    /// Number of visible comments and replies.
    pub comments_count: i64,
    /// Number of times it was shared (reposts and shares into chats).
    pub shares_count: i64,
    /// Edited after it was posted.
    pub is_edited: bool,
    /// The viewer likes it.
    pub is_liked: bool,
    /// The viewer follows its author.
    pub is_following_author: bool,
    /// When it was posted.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A comment or reply as one viewer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Comment {
    /// The comment's id.
    pub id: Id,
    /// The moment it is on.
    pub moment_id: Id,
    /// For a reply: the top-level comment it is under.
    pub parent_comment: Option<Id>,
    /// Its author.
    pub user: AuthorSummary,
    /// The text.
    pub content: String,
    /// Number of likes.
    pub likes_count: i64,
    /// The viewer likes it.
    pub is_liked: bool,
    /// When it was written.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// For a top-level comment in a listing: its first replies, oldest
    /// first (the rest through `GET /comments/{id}/replies`).
    #[schema(no_recursion)]
    pub replies: Vec<Comment>,
    /// For a top-level comment in a listing: more replies exist than shown.
    pub has_more_replies: bool,
}

/// Checks and trims the text of a moment (1 to 5000 characters).
pub fn moment_content(raw: &str, field: &str, errors: &mut FieldErrors) -> String {
    let content = raw.trim();
    if let Err(msg) = validate::text(content, 1, limits::MOMENT_MAX_CHARS) {
        errors.add(field, msg);
    }
    content.to_owned()
}

/// Checks and trims the text of a comment (1 to 2000 characters).
pub fn comment_content(raw: &str) -> Result<String> {
    let content = raw.trim();
    validate::text(content, 1, limits::COMMENT_MAX_CHARS).map_err(|msg| Error::invalid("content", msg))?;
    Ok(content.to_owned())
}

/// Checks a list of media ids: at most nine, positive, no repeats.
pub fn media_ids(ids: &[Id], errors: &mut FieldErrors) {
    if ids.len() > limits::MOMENT_MAX_MEDIA {
        errors.add("media_ids", format!("must list at most {} media items", limits::MOMENT_MAX_MEDIA));
        return;
    }
    for (i, id) in ids.iter().enumerate() {
        if *id <= 0 {
            errors.add(format!("media_ids[{i}]"), "must be a media id");
        } else if ids[..i].contains(id) {
            errors.add(format!("media_ids[{i}]"), "is listed twice");
        }
    }
}

/// Why a report was filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportType {
    /// Unsolicited advertising or repetition.
    Spam,
    /// Abuse aimed at someone.
    Harassment,
    /// Content that breaks the rules.
    Inappropriate,
    /// An impersonation or fake account.
    Fake,
    /// Anything else (the description says what).
    Other,
}

impl ReportType {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportType::Spam => "spam",
            ReportType::Harassment => "harassment",
            ReportType::Inappropriate => "inappropriate",
            ReportType::Fake => "fake",
            ReportType::Other => "other",
        }
    }
}

impl std::str::FromStr for ReportType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ReportType::Spam, ReportType::Harassment, ReportType::Inappropriate, ReportType::Fake, ReportType::Other]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown report type `{s}`"))
    }
}

/// Where a report stands in the moderation queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Waiting for a moderator.
    Pending,
    /// Looked at, not closed.
    Reviewed,
    /// Closed with an action.
    Resolved,
    /// Closed without action.
    Dismissed,
}

impl ReportStatus {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Pending => "pending",
            ReportStatus::Reviewed => "reviewed",
            ReportStatus::Resolved => "resolved",
            ReportStatus::Dismissed => "dismissed",
        }
    }
}

impl std::str::FromStr for ReportStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ReportStatus::Pending, ReportStatus::Reviewed, ReportStatus::Resolved, ReportStatus::Dismissed]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown report status `{s}`"))
    }
}

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum ReportTarget {
    /// A user account.
    User(UserId),
    /// A moment.
    Moment(Id),
    /// A comment or reply.
    Comment(Id),
    /// A chat message.
    Message(Id),
}

impl ReportTarget {
    /// `user`, `moment`, `comment` or `message`.
    pub fn kind(self) -> &'static str {
        match self {
            ReportTarget::User(_) => "user",
            ReportTarget::Moment(_) => "moment",
            ReportTarget::Comment(_) => "comment",
            ReportTarget::Message(_) => "message",
        }
    }

    /// The target's id.
    pub fn id(self) -> Id {
        match self {
            ReportTarget::User(id)
            | ReportTarget::Moment(id)
            | ReportTarget::Comment(id)
            | ReportTarget::Message(id) => id,
        }
    }

    /// Builds a target from its stored kind and id.
    pub fn from_parts(kind: &str, id: Id) -> Option<Self> {
        match kind {
            "user" => Some(ReportTarget::User(id)),
            "moment" => Some(ReportTarget::Moment(id)),
            "comment" => Some(ReportTarget::Comment(id)),
            "message" => Some(ReportTarget::Message(id)),
            _ => None,
        }
    }

    /// Moments and comments can be hidden by moderation (and auto-hidden).
    pub fn is_hideable_content(self) -> bool {
        matches!(self, ReportTarget::Moment(_) | ReportTarget::Comment(_))
    }
}

/// What a moderator does while reviewing a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    /// Only the status and notes change.
    None,
    /// Hide the reported moment or comment from everyone.
    HideContent,
    /// Suspend the reported user (or the author of the reported content)
    /// and end their sessions.
    SuspendUser,
}

impl ModerationAction {
    /// The name stored in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationAction::None => "none",
            ModerationAction::HideContent => "hide_content",
            ModerationAction::SuspendUser => "suspend_user",
        }
    }
}

/// A report as the moderation queue shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// The report's id.
    pub id: Id,
    /// Who filed it.
    pub reporter_id: UserId,
    /// What it is about.
    pub target: ReportTarget,
    /// The reported user, when the target is a user.
    pub reported_user: Option<UserId>,
    /// The reported moment, when the target is a moment.
    pub reported_moment: Option<Id>,
    /// The reported comment, when the target is a comment.
    pub reported_comment: Option<Id>,
    /// The reported message, when the target is a message.
    pub reported_message: Option<Id>,
    /// Why.
    pub report_type: ReportType,
    /// The reporter's words.
    pub description: String,
    /// Queue state.
    pub status: ReportStatus,
    /// Moderators' notes.
    pub admin_notes: String,
    /// The moderator who last reviewed it.
    pub reviewed_by: Option<UserId>,
    /// For moderators: the author of the reported content (or the reported
    /// user) and a short excerpt of the content, to review without
    /// visiting it (hidden content cannot be visited).
    pub target_user_id: Option<UserId>,
    /// An excerpt of the reported moment or comment (messages: see the
    /// chat's moderation tools).
    pub target_excerpt: Option<String>,
    /// When it was filed.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rule() {
        use Visibility::*;
        // (author, follower, stranger) for each visibility, no blocks.
        assert!(Public.allows(false, false, false));
        assert!(Followers.allows(false, true, false) && Followers.allows(true, false, false));
        assert!(!Followers.allows(false, false, false));
        assert!(Private.allows(true, false, false) && !Private.allows(false, true, false));
        for v in [Public, Followers, Private] {
            assert!(!v.allows(false, true, true), "blocks hide everything");
            assert_eq!(v.as_str().parse::<Visibility>().unwrap(), v);
        }
    }

    #[test]
    fn content_and_media_rules() {
        let mut errors = FieldErrors::new();
        assert_eq!(moment_content("  hi  ", "content", &mut errors), "hi");
        assert!(errors.is_empty());
        moment_content("   ", "content", &mut errors);
        moment_content(&"x".repeat(5001), "other", &mut errors);
        assert_eq!(errors.fields().len(), 2);
        let mut errors = FieldErrors::new();
        media_ids(&[1, 2, 1, -3], &mut errors);
        assert_eq!(errors.fields().keys().cloned().collect::<Vec<_>>(), ["media_ids[2]", "media_ids[3]"]);
        let mut errors = FieldErrors::new();
        media_ids(&(1..=10).collect::<Vec<_>>(), &mut errors);
        assert!(errors.fields().contains_key("media_ids"));
        assert!(comment_content("").is_err() && comment_content("ok").is_ok());
    }

    #[test]
    fn report_names_round_trip() {
        for t in ["spam", "harassment", "inappropriate", "fake", "other"] {
            assert_eq!(t.parse::<ReportType>().unwrap().as_str(), t);
        }
        for s in ["pending", "reviewed", "resolved", "dismissed"] {
            assert_eq!(s.parse::<ReportStatus>().unwrap().as_str(), s);
        }
        let target = ReportTarget::from_parts("comment", 7).unwrap();
        assert_eq!((target.kind(), target.id()), ("comment", 7));
        assert!(target.is_hideable_content() && !ReportTarget::User(1).is_hideable_content());
    }
}
