//! Records the chat store reads and writes. Message bodies are stored as
//! bytes plus the id of the key that sealed them (`None`: plain UTF-8). A
//! new message's body is sealed inside the storing transaction, by the
//! [`BodySealer`] it carries, because the seal binds the body to its place
//! in the room (room id and seq) and the seq is only known there; the chat
//! service alone opens bodies.

use palaver_core::chat::{MessageType, Participant, ParticipantRole, RoomType};
use palaver_core::social::AuthorSummary;
use palaver_core::time::Timestamp;
use palaver_core::{Id, UserId};

use crate::StoreError;

/// Seals message bodies for storage (implemented by the chat service over
/// the encryption keyring).
pub trait BodyCipher: Send + Sync {
    /// The stored form of `text` for message `seq` of room `room_id`, and the
    /// id of the key that sealed it (`None`: stored as plain UTF-8).
    fn seal(&self, room_id: Id, seq: i64, text: &[u8]) -> Result<(Vec<u8>, Option<String>), StoreError>;
}

/// How a new message's body is sealed: by a [`BodyCipher`], or not at all.
#[derive(Clone, Default)]
pub struct BodySealer(Option<std::sync::Arc<dyn BodyCipher>>);

impl std::fmt::Debug for BodySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "BodySealer(sealed)" } else { "BodySealer(plain)" })
    }
}

impl BodySealer {
    /// Seals with `cipher`.
    pub fn new(cipher: std::sync::Arc<dyn BodyCipher>) -> Self {
        Self(Some(cipher))
    }

    /// Stores bodies as plain UTF-8 (tests; encryption at rest off).
    pub fn plain() -> Self {
        Self(None)
    }

    /// Whether bodies are sealed (not stored as given).
    pub fn is_sealing(&self) -> bool {
        self.0.is_some()
    }

    /// The stored form of a body at its place.
    pub fn seal(&self, room_id: Id, seq: i64, text: &[u8]) -> Result<(Vec<u8>, Option<String>), StoreError> {
        match &self.0 {
            Some(cipher) => cipher.seal(room_id, seq, text),
            None => Ok((text.to_vec(), None)),
        }
    }
}

/// A message to store. Its `seq` is assigned by the store, in the
/// transaction that stores it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The room.
    pub room_id: Id,
    /// The sender, echoed back in the stored message (the insert does not
    /// read the users table again).
    pub sender: AuthorSummary,
    /// The sender's idempotency key.
    pub client_msg_id: Option<String>,
    /// What it carries.
    pub message_type: MessageType,
    /// The body as UTF-8 text; sealed by `sealer` when stored.
    pub body: Vec<u8>,
    /// Seals `body` once the message has its seq.
    pub sealer: BodySealer,
    /// The upload of a media message (checked by the caller).
    pub media_id: Option<Id>,
    /// The message replied to (checked by the caller to be in the room).
    pub reply_to: Option<Id>,
    /// A moment shared into the room.
    pub shared_moment_id: Option<Id>,
    /// The time of sending.
    pub now: Timestamp,
}

impl NewMessage {
    /// The message as stored under `id` and `seq`, with its sealed body.
    pub(crate) fn stored(&self, id: Id, seq: i64, body: Vec<u8>, body_key_id: Option<String>) -> StoredMessage {
        StoredMessage {
            id,
            room_id: self.room_id,
            seq,
            sender: self.sender.clone(),
            client_msg_id: self.client_msg_id.clone(),
            message_type: self.message_type,
            body,
            body_key_id,
            media_id: self.media_id,
            reply_to: self.reply_to,
            shared_moment_id: self.shared_moment_id,
            is_edited: false,
            is_deleted: false,
            created_at: self.now,
            updated_at: self.now,
        }
    }
}

/// A message body as stored, with what binds it to its row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SealedBody {
    /// The message.
    pub id: Id,
    /// Its room.
    pub room_id: Id,
    /// Its place in the room.
    pub seq: i64,
    /// The stored body.
    pub body: Vec<u8>,
    /// The key that sealed it (`None`: plain UTF-8).
    pub body_key_id: Option<String>,
}

/// A message as stored, body still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: Id,
    /// Its room.
    pub room_id: Id,
    /// Its place in the room.
    pub seq: i64,
    /// Who sent it.
    pub sender: AuthorSummary,
    /// The sender's idempotency key.
    pub client_msg_id: Option<String>,
    /// What it carries.
    pub message_type: MessageType,
    /// The encoded body (empty once deleted).
    pub body: Vec<u8>,
    /// The key that sealed `body`.
    pub body_key_id: Option<String>,
    /// The upload of a media message.
    pub media_id: Option<Id>,
    /// The message replied to.
    pub reply_to: Option<Id>,
    /// A shared moment.
    pub shared_moment_id: Option<Id>,
    /// Edited after sending.
    pub is_edited: bool,
    /// Deleted (body emptied).
    pub is_deleted: bool,
    /// Sent at.
    pub created_at: Timestamp,
    /// Last changed at.
    pub updated_at: Timestamp,
}

/// What sending did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// Stored now, with the next seq of its room.
    Sent(StoredMessage),
    /// The sender already stored a message with this `client_msg_id` in
    /// this room: that message, and nothing new stored.
    Duplicate(StoredMessage),
    /// The sender is not a participant, or the room is closed.
    NotParticipant,
    /// A private room whose other participant and the sender are in a
    /// block (either way).
    Blocked,
}

/// What adding a participant did.
// Returned once per call and matched at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddResult {
    /// Added; the system message announcing it.
    Added(StoredMessage),
    /// They were already in the room: nothing changed.
    AlreadyParticipant,
    /// The room has the most participants it may have.
    Full,
    /// The one adding is not in the room (or it is closed).
    NotParticipant,
}

/// A caller's standing in an active room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The room's kind.
    pub room_type: RoomType,
    /// The caller's role.
    pub role: ParticipantRole,
    /// The caller's read watermark.
    pub last_read_seq: i64,
    /// The room's newest seq.
    pub last_seq: i64,
}

/// A user someone wants in a room, with what decides whether they may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCandidate {
    /// The user.
    pub user: AuthorSummary,
    /// Suspended users cannot be added.
    pub is_suspended: bool,
    /// The actor blocks them.
    pub blocked_by_actor: bool,
    /// They block the actor.
    pub blocks_actor: bool,
}

/// Where a page of the room list starts: after the room with this activity
/// time and id (the list is ordered by both, newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomCursor {
    /// The room's last activity (its newest message, or its creation).
    pub activity_at: Timestamp,
    /// The room's id, breaking ties.
    pub id: Id,
}

/// A room as one participant sees it, bodies still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    /// Its id.
    pub id: Id,
    /// Its kind.
    pub room_type: RoomType,
    /// The group's name.
    pub name: String,
    /// Its creator.
    pub created_by: UserId,
    /// Its participants, in the order they joined.
    pub participants: Vec<Participant>,
    /// The newest seq.
    pub last_seq: i64,
    /// The viewer's watermark.
    pub last_read_seq: i64,
    /// The newest message.
    pub last_message: Option<StoredMessage>,
    /// When the newest message was sent.
    pub last_message_at: Option<Timestamp>,
    /// Created at.
    pub created_at: Timestamp,
    /// Last changed at.
    pub updated_at: Timestamp,
}

impl RoomRecord {
    /// Where the room list continues after this room.
    pub fn cursor(&self) -> RoomCursor {
        RoomCursor { activity_at: self.last_message_at.unwrap_or(self.created_at), id: self.id }
    }
}

/// Which messages of a room to read, in seq order. With `after_seq`, the
/// first `limit` messages above it (and below `before_seq`, if given: the
/// range fetch that repairs a gap); otherwise the last `limit` messages
/// below `before_seq` (or the newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRange {
    /// Only messages with a greater seq.
    pub after_seq: Option<i64>,
    /// Only messages with a smaller seq.
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// A `messages` row joined with its sender.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub id: i64,
    pub room_id: i64,
    pub seq: i64,
    pub sender_id: i64,
    pub sender_name: String,
    pub sender_avatar: Option<String>,
    pub client_msg_id: Option<String>,
    pub message_type: String,
    pub body: Vec<u8>,
    pub body_key_id: Option<String>,
    pub media_id: Option<i64>,
    pub reply_to_id: Option<i64>,
    pub shared_moment_id: Option<i64>,
    pub is_edited: bool,
    pub is_deleted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TryFrom<MessageRow> for StoredMessage {
    type Error = StoreError;

    fn try_from(r: MessageRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            room_id: r.room_id,
            seq: r.seq,
            sender: AuthorSummary { id: r.sender_id, display_name: r.sender_name, avatar: r.sender_avatar },
            client_msg_id: r.client_msg_id,
            message_type: r.message_type.parse().map_err(StoreError::Corrupt)?,
            body: r.body,
            body_key_id: r.body_key_id,
            media_id: r.media_id,
            reply_to: r.reply_to_id,
            shared_moment_id: r.shared_moment_id,
            is_edited: r.is_edited,
            is_deleted: r.is_deleted,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A room row with the viewer's watermark and the newest message (whose
/// columns are all null when the room has none).
#[derive(sqlx::FromRow)]
pub(crate) struct RoomRow {
    pub id: i64,
    pub room_type: String,
    pub name: String,
    pub created_by: i64,
    pub last_seq: i64,
    pub last_message_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_read_seq: i64,
    pub lm_id: Option<i64>,
    pub lm_seq: Option<i64>,
    pub lm_sender_id: Option<i64>,
    pub lm_sender_name: Option<String>,
    pub lm_sender_avatar: Option<String>,
    pub lm_client_msg_id: Option<String>,
    pub lm_message_type: Option<String>,
    pub lm_body: Option<Vec<u8>>,
    pub lm_body_key_id: Option<String>,
    pub lm_media_id: Option<i64>,
    pub lm_reply_to_id: Option<i64>,
    pub lm_shared_moment_id: Option<i64>,
    pub lm_is_edited: Option<bool>,
    pub lm_is_deleted: Option<bool>,
    pub lm_created_at: Option<Timestamp>,
    pub lm_updated_at: Option<Timestamp>,
}

impl TryFrom<RoomRow> for RoomRecord {
    type Error = StoreError;

    fn try_from(r: RoomRow) -> Result<Self, StoreError> {
        let last_message = match (r.lm_id, r.lm_seq, r.lm_sender_id, r.lm_message_type, r.lm_created_at) {
            (Some(id), Some(seq), Some(sender_id), Some(message_type), Some(created_at)) => Some(StoredMessage {
                id,
                room_id: r.id,
                seq,
                sender: AuthorSummary {
                    id: sender_id,
                    display_name: r.lm_sender_name.unwrap_or_default(),
                    avatar: r.lm_sender_avatar,
                },
                client_msg_id: r.lm_client_msg_id,
                message_type: message_type.parse().map_err(StoreError::Corrupt)?,
                body: r.lm_body.unwrap_or_default(),
                body_key_id: r.lm_body_key_id,
                media_id: r.lm_media_id,
                reply_to: r.lm_reply_to_id,
                shared_moment_id: r.lm_shared_moment_id,
                is_edited: r.lm_is_edited.unwrap_or(false),
                is_deleted: r.lm_is_deleted.unwrap_or(false),
                created_at,
                updated_at: r.lm_updated_at.unwrap_or(created_at),
            }),
            _ => None,
        };
        Ok(Self {
            id: r.id,
            room_type: r.room_type.parse().map_err(StoreError::Corrupt)?,
            name: r.name,
            created_by: r.created_by,
            participants: Vec::new(),
            last_seq: r.last_seq,
            last_read_seq: r.last_read_seq,
            last_message,
            last_message_at: r.last_message_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A participant row joined with the user.
#[derive(sqlx::FromRow)]
pub(crate) struct ParticipantRow {
    pub room_id: i64,
    pub user_id: i64,
    pub display_name: String,
    pub avatar: Option<String>,
    pub role: String,
    pub last_read_seq: i64,
    pub joined_at: Timestamp,
}

impl ParticipantRow {
    pub(crate) fn into_participant(self) -> Result<(Id, Participant), StoreError> {
        Ok((
            self.room_id,
            Participant {
                user: AuthorSummary { id: self.user_id, display_name: self.display_name, avatar: self.avatar },
                role: self.role.parse().map_err(StoreError::Corrupt)?,
                last_read_seq: self.last_read_seq,
                joined_at: self.joined_at,
            },
        ))
    }
}
