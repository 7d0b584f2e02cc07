//! Chat: rooms (private between two users, groups, the chat of a voice
//! room), their participants, and messages with a per-room sequence number.
//! The types the API sends and the rules on their fields.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::social::AuthorSummary;
use crate::validate;
use crate::{Error, FieldErrors, Id, Result};

/// Limits on chat content.
pub mod limits {
    /// Longest text message (and media caption), in characters.
    pub const MESSAGE_MAX_CHARS: usize = 4000;
    /// Longest group name, in characters.
    pub const ROOM_NAME_MAX_CHARS: usize = 100;
    /// Most participants in a group, its creator included.
    pub const GROUP_MAX_PARTICIPANTS: usize = 256;
    /// Longest `client_msg_id` (a UUID is 36).
    pub const CLIENT_MSG_ID_MAX_CHARS: usize = 64;
    /// Characters of a message kept in notification and room-list previews.
    pub const PREVIEW_CHARS: usize = 140;
}

/// What kind of conversation a room is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoomType {
    /// Two users; at most one such room per pair.
    Private,
    /// A named group with admins.
    Group,
    /// The text chat beside a voice room (made by the voice-room service).
    VoiceRoom,
}

impl RoomType {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomType::Private => "private",
            RoomType::Group => "group",
            RoomType::VoiceRoom => "voice_room",
        }
    }
}

impl std::str::FromStr for RoomType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [RoomType::Private, RoomType::Group, RoomType::VoiceRoom]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown room type `{s}`"))
    }
}

/// What a participant may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    /// Adds and removes participants, renames the group.
    Admin,
    /// Reads and writes.
    Member,
}

impl ParticipantRole {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantRole::Admin => "admin",
            ParticipantRole::Member => "member",
        }
    }
}

impl std::str::FromStr for ParticipantRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(ParticipantRole::Admin),
            "member" => Ok(ParticipantRole::Member),
            _ => Err(format!("unknown participant role `{s}`")),
        }
    }
}

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// Text.
    Text,
    /// A picture (`media_id`), with an optional caption.
    Image,
    /// A video (`media_id`), with an optional caption.
    Video,
    /// A recording (`media_id`), with an optional caption.
    Audio,
    /// Any file (`media_id`), with an optional caption.
    File,
    /// Written by the server: someone joined, left, renamed the group.
    /// Clients cannot send these.
    System,
}

impl MessageType {
    /// Every type.
    pub const ALL: [MessageType; 6] = [
        MessageType::Text,
        MessageType::Image,
        MessageType::Video,
        MessageType::Audio,
        MessageType::File,
        MessageType::System,
    ];

    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::Video => "video",
            MessageType::Audio => "audio",
            MessageType::File => "file",
            MessageType::System => "system",
        }
    }

    /// Image, video, audio and file messages point at an upload.
    pub fn is_media(self) -> bool {
        matches!(self, MessageType::Image | MessageType::Video | MessageType::Audio | MessageType::File)
    }

    /// The kind of upload (`media.kind`) a media message accepts; `None`
    /// for `file`, which takes any upload, and for non-media types.
    pub fn media_kind(self) -> Option<&'static str> {
        match self {
            MessageType::Image => Some("image"),
            MessageType::Video => Some("video"),
            MessageType::Audio => Some("audio"),
            _ => None,
        }
    }
}

impl std::str::FromStr for MessageType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| format!("unknown message type `{s}`"))
    }
}

/// A chat message as participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// The message's id (global).
    pub id: Id,
    /// Its room.
    pub room_id: Id,
    /// Its place in the room: 1, 2, 3, … with no gaps and no repeats.
    pub seq: i64,
    /// Who sent it (for system messages: whoever caused it).
    pub sender: AuthorSummary,
    /// The sender's idempotency key, if they gave one.
    pub client_msg_id: Option<String>,
    /// What it carries.
    pub message_type: MessageType,
    /// The text or caption; `null` once deleted.
    pub content: Option<String>,
    /// The upload of a media message; `null` once deleted.
    pub media_id: Option<Id>,
    /// That upload's details, with URLs signed for the viewer (live events
    /// are re-signed for each connection); `null` without media.
    #[serde(default)]
    pub media: Option<crate::social::MediaRef>,
    /// The message this one replies to (same room).
    pub reply_to: Option<Id>,
    /// For a moment shared into the conversation: the moment (clients show
    /// it as a card through `GET /moments/{id}`).
    pub shared_moment_id: Option<Id>,
    /// Edited by its sender after it was sent.
    pub is_edited: bool,
    /// Deleted by its sender: the content is gone, the place (`seq`) stays.
    pub is_deleted: bool,
    /// When it was sent.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Someone in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Participant {
    /// The user.
    pub user: AuthorSummary,
    /// Admin or member.
    pub role: ParticipantRole,
    /// Their read watermark: they have read every message up to this seq.
    pub last_read_seq: i64,
    /// When they joined.
    pub joined_at: chrono::DateTime<chrono::Utc>,
}

/// A room as one participant sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatRoom {
    /// The room's id (topic `chat:{id}` on the WebSocket).
    pub id: Id,
    /// Private, group or voice room.
    pub room_type: RoomType,
    /// The group's name (empty for private rooms).
    pub name: String,
    /// Who created it.
    pub created_by: Id,
    /// Everyone in it, in the order they joined.
    pub participants: Vec<Participant>,
    /// The newest message's seq (0 when there is none).
    pub last_seq: i64,
    /// The caller's read watermark.
    pub last_read_seq: i64,
    /// Messages after the caller's watermark.
    pub unread_count: i64,
    /// The newest message, for the room list.
    pub last_message: Option<Message>,
    /// When the newest message was sent.
    pub last_message_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Checks and trims a group name (1 to 100 characters).
pub fn room_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    validate::text(name, 1, limits::ROOM_NAME_MAX_CHARS).map_err(|msg| Error::invalid("name", msg))?;
    Ok(name.to_owned())
}

/// Checks the text of a message: 1 to 4000 characters for text, 0 to 4000
/// (a caption) for media. Not trimmed: whitespace can matter in a message
/// (code, poetry), but a text of only whitespace is empty.
pub fn message_content(raw: &str, message_type: MessageType, errors: &mut FieldErrors) {
    let min = if message_type == MessageType::Text { 1 } else { 0 };
    if min == 1 && raw.trim().is_empty() {
        errors.add("content", "must not be empty");
        return;
    }
    if let Err(msg) = validate::text(raw, min, limits::MESSAGE_MAX_CHARS) {
        errors.add("content", msg);
    }
}

/// Checks an idempotency key: 1 to 64 printable ASCII characters.
pub fn client_msg_id(raw: &str, errors: &mut FieldErrors) {
    let ok =
        !raw.is_empty() && raw.len() <= limits::CLIENT_MSG_ID_MAX_CHARS && raw.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        errors.add(
            "client_msg_id",
            format!("must be 1 to {} printable ASCII characters (a UUID)", limits::CLIENT_MSG_ID_MAX_CHARS),
        );
    }
}

/// A short plain-text preview of a message for notifications: the text cut
/// at a character boundary, or a word for the media kind.
pub fn preview(message_type: MessageType, content: &str) -> String {
    let label = match message_type {
        MessageType::Text | MessageType::System => "",
        MessageType::Image => "Photo",
        MessageType::Video => "Video",
        MessageType::Audio => "Audio",
        MessageType::File => "File",
    };
    let text: String = content.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = text.chars().take(limits::PREVIEW_CHARS).collect();
    if text.chars().count() > limits::PREVIEW_CHARS {
        cut.push('…');
    }
    match (label.is_empty(), cut.is_empty()) {
        (true, _) => cut,
        (false, true) => label.to_owned(),
        (false, false) => format!("{label}: {cut}"),
    }
}

/// A preview that tells what was sent but not what it says, for
/// notifications when message bodies are encrypted at rest: notifications
/// and queued pushes are stored, so a text preview would keep the body in
/// plaintext beside its ciphertext.
pub fn sealed_preview(message_type: MessageType) -> String {
    match message_type {
        MessageType::Text | MessageType::System => "New message",
        MessageType::Image => "Photo",
        MessageType::Video => "Video",
        MessageType::Audio => "Audio",
        MessageType::File => "File",
    }
    .to_owned()
}

/// The aggregation key of message notifications for one room, shared by the
/// notifications service (which merges a room's messages into one
/// notification) and the chat service (which marks it read with the room).
pub fn message_notification_key(room_id: Id) -> String {
    format!("message:room:{room_id}")
}

/// The real-time topic of a room.
pub fn topic(room_id: Id) -> String {
    format!("chat:{room_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_rules() {
        let check = |text: &str, t: MessageType| {
            let mut errors = FieldErrors::new();
            message_content(text, t, &mut errors);
            errors.is_empty()
        };
        assert!(check("hola", MessageType::Text));
        assert!(!check("", MessageType::Text));
        assert!(!check("  \n ", MessageType::Text));
        assert!(check(&"é".repeat(4000), MessageType::Text));
        assert!(!check(&"é".repeat(4001), MessageType::Text));
        assert!(!check("a\u{0}b", MessageType::Text));
        assert!(check("", MessageType::Image));
    }

    #[test]
    fn client_msg_ids() {
        let check = |id: &str| {
            let mut errors = FieldErrors::new();
            client_msg_id(id, &mut errors);
            errors.is_empty()
        };
        assert!(check("7f1c7a0e-3c2b-4e0b-9a55-0d7c2d4f7a11"));
        assert!(!check(""));
        assert!(!check("has space"));
        assert!(!check(&"x".repeat(65)));
    }

    #[test]
    fn previews() {
        assert_eq!(preview(MessageType::Text, "hola\n  qué tal"), "hola qué tal");
        assert_eq!(preview(MessageType::Image, ""), "Photo");
        assert_eq!(preview(MessageType::Audio, "listen"), "Audio: listen");
        let long = preview(MessageType::Text, &"a".repeat(200));
        assert_eq!(long.chars().count(), limits::PREVIEW_CHARS + 1);
    }

    #[test]
    fn names_round_trip() {
        for t in MessageType::ALL {
            assert_eq!(t.as_str().parse::<MessageType>().unwrap(), t);
        }
        for t in [RoomType::Private, RoomType::Group, RoomType::VoiceRoom] {
            assert_eq!(t.as_str().parse::<RoomType>().unwrap(), t);
        }
        assert!("admin".parse::<ParticipantRole>().is_ok());
        assert!("owner".parse::<ParticipantRole>().is_err());
    }
}
