//! Chat: private and group conversations, their participants, messages,
//! threads and read receipts. The REST handlers and the WebSocket hub are
//! both thin adapters over [`ChatService`], so a message sent either way has
//! the same effect.
//!
//! Who may do what: only participants read or write anything of a room;
//! to everyone else a room and its messages do not exist (404). Suspended
//! users are refused. Two users in a block (either way) cannot open or
//! write in a private room. Group admins add, remove and rename; anyone
//! may leave a group.
//!
//! After each write commits, live events go out on `chat:{room}` through
//! [`Realtime`] (best effort: clients recover missed messages by `seq`), and
//! a sent message becomes a [`DomainEvent::MessageSent`] for the
//! notifications service, naming the participants not viewing the room.
//!
//! Message bodies are encoded and decoded in one place, [`BodyCodec`], so
//! encryption at rest slots in there.

use std::collections::HashSet;
use std::sync::Arc;

use palaver_core::chat::{self, ChatRoom, Message, MessageType, ParticipantRole, RoomType, limits};
use palaver_core::social::{AuthorSummary, Visibility};
use palaver_core::time::now;
use palaver_core::{Error, FieldErrors, Id, Result, UserId};
use palaver_crypto::Keyring;
use palaver_store::{
    AddResult, BodyCipher, BodySealer, ChatCandidate, Membership, MessageRange, NewMessage, RoomCursor, RoomRecord,
    SendResult, Store, StoreError, StoredMessage,
};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::chat_writer::{MessageWriter, Recipients};
use crate::events::{DomainEvent, EventBus};
use crate::pagination::{DEFAULT_LIMIT, MAX_LIMIT, Page};
use crate::ratelimit::{RateLimiter, RateSpec};
use crate::realtime::{Realtime, RealtimeHandle};

/// Per-user budgets for chat.
#[derive(Debug, Clone, Copy)]
pub struct ChatRates {
    /// Messages sent (over REST or the WebSocket), edits, and moments
    /// shared into conversations.
    pub messages: RateSpec,
    /// Rooms created, participants added or removed, renames.
    pub rooms: RateSpec,
}

impl Default for ChatRates {
    fn default() -> Self {
        Self {
            messages: RateSpec { count: 120, per: std::time::Duration::from_secs(60) },
            rooms: RateSpec { count: 60, per: std::time::Duration::from_secs(3600) },
        }
    }
}

/// Most messages one replay call returns (the hub calls again from the last
/// one until it has caught up).
pub const REPLAY_MAX: u32 = 1000;

/// Turns message text into the bytes stored in `messages.body` (with the id
/// of the key that sealed them, `None` for plain UTF-8) and back. This is
/// the only place bodies are encoded or decoded.
///
/// With a keyring, bodies are sealed with its newest key (XChaCha20-Poly1305,
/// `palaver-crypto`), bound to their place in the room: the context is the
/// room id and the seq, so a body copied into another message fails to
/// open. New messages get their seq inside the storing transaction, so the
/// store seals them through [`BodyCodec::sealer`]; edits are sealed here.
/// With encryption at rest off, new bodies are plain UTF-8, and bodies
/// sealed before still open.
#[derive(Clone, Default)]
pub struct BodyCodec {
    keyring: Option<Arc<Keyring>>,
    encrypt: bool,
}

impl std::fmt::Debug for BodyCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyCodec").field("keyring", &self.keyring).field("encrypt", &self.encrypt).finish()
    }
}

/// What a body is bound to.
fn body_context(room_id: Id, seq: i64) -> Vec<u8> {
    format!("palaver message room {room_id} seq {seq}").into_bytes()
}

impl BodyCodec {
    /// A codec over `keyring`; `encrypt` false stores new bodies in plain.
    pub fn new(keyring: Arc<Keyring>, encrypt: bool) -> Self {
        Self { keyring: Some(keyring), encrypt }
    }

    /// The key new bodies are sealed with, if they are sealed.
    pub fn active_key(&self) -> Option<&palaver_crypto::KeyId> {
        self.keyring.as_deref().filter(|_| self.encrypt).map(Keyring::active)
    }

    /// Seals new messages in the storing transaction.
    pub fn sealer(&self) -> BodySealer {
        if self.active_key().is_some() { BodySealer::new(Arc::new(self.clone())) } else { BodySealer::plain() }
    }

    /// The stored form of `text` for message `seq` of `room_id`.
    pub fn seal(&self, room_id: Id, seq: i64, text: &str) -> Result<(Vec<u8>, Option<String>)> {
        match self.keyring.as_deref().filter(|_| self.encrypt) {
            Some(keyring) => {
                let sealed = keyring.seal(&body_context(room_id, seq), text.as_bytes()).map_err(Error::internal)?;
                Ok((sealed.bytes, Some(sealed.key_id.to_string())))
            }
            None => Ok((text.as_bytes().to_vec(), None)),
        }
    }

    /// The text of the stored body of message `seq` of `room_id`.
    pub fn open(&self, room_id: Id, seq: i64, body: &[u8], key_id: Option<&str>) -> Result<String> {
        let bytes = match (key_id, self.keyring.as_deref()) {
            (None, _) => body.to_vec(),
            (Some(_), Some(keyring)) => keyring
                .open(&body_context(room_id, seq), body)
                .map_err(|e| Error::internal(format!("message body of room {room_id} seq {seq} does not open: {e}")))?,
            (Some(key), None) => {
                return Err(Error::internal(format!("message body sealed under `{key}` but no keys are configured")));
            }
        };
        String::from_utf8(bytes).map_err(|_| Error::internal("stored message body is not UTF-8"))
    }
}

impl BodyCipher for BodyCodec {
    fn seal(&self, room_id: Id, seq: i64, text: &[u8]) -> std::result::Result<(Vec<u8>, Option<String>), StoreError> {
        let text = std::str::from_utf8(text).map_err(|_| StoreError::Check("a message body must be UTF-8".into()))?;
        BodyCodec::seal(self, room_id, seq, text).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// A room to create.
#[derive(Debug, Clone)]
pub struct NewRoom {
    /// `private` (exactly one other participant) or `group`.
    pub room_type: RoomType,
    /// The others in it (the caller is always in it; listing them is fine).
    pub participant_ids: Vec<UserId>,
    /// The group's name (groups only).
    pub name: Option<String>,
}

/// A message to send, as a client gives it.
#[derive(Debug, Clone)]
pub struct SendMessage {
    /// Idempotency key: a retry with the same key returns the original.
    pub client_msg_id: Option<String>,
    /// Text, or a media caption.
    pub content: Option<String>,
    /// What it carries (not `system`).
    pub message_type: MessageType,
    /// The upload, for media types.
    pub media_id: Option<Id>,
    /// A message of the same room replied to.
    pub reply_to: Option<Id>,
}

impl SendMessage {
    /// A text message.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            client_msg_id: None,
            content: Some(content.into()),
            message_type: MessageType::Text,
            media_id: None,
            reply_to: None,
        }
    }
}

/// What sending answered: the message (with its seq, the ack) and whether it
/// was a retry of one already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The stored message.
    pub message: Message,
    /// True when `client_msg_id` matched an earlier message: nothing new was
    /// stored or published.
    pub duplicate: bool,
}

/// Which part of a room's history to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryQuery {
    /// Messages before this seq (older ones), newest of them first taken.
    pub before_seq: Option<i64>,
    /// Messages after this seq (newer ones), oldest first taken.
    pub after_seq: Option<i64>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<u32>,
}

/// A caller's read state after `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadState {
    /// The caller's watermark now.
    pub last_read_seq: i64,
    /// Messages after it.
    pub unread_count: i64,
}

/// A message and its replies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Thread {
    /// The message replied to.
    pub message: Message,
    /// Its direct replies in seq order.
    pub items: Vec<Message>,
    /// Pass as `after_seq` for more replies; null at the end.
    pub next_cursor: Option<String>,
}

/// Who has read a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadBy {
    /// The message.
    pub message_id: Id,
    /// Its seq.
    pub seq: i64,
    /// Participants (other than the sender) whose watermark reached it.
    pub read_by: Vec<AuthorSummary>,
}

/// Default page of history.
const HISTORY_DEFAULT_LIMIT: u32 = 50;

fn room_not_found(id: Id) -> Error {
    Error::not_found("chat room", id)
}

fn message_not_found(id: Id) -> Error {
    Error::not_found("message", id)
}

fn user_not_found(id: Id) -> Error {
    Error::not_found("user", id)
}

fn active(who: &Principal) -> Result<()> {
    if who.user.is_suspended { Err(Error::Suspended) } else { Ok(()) }
}

fn author(who: &Principal) -> AuthorSummary {
    AuthorSummary { id: who.id(), display_name: who.user.display_name.clone(), avatar: who.user.avatar.clone() }
}

fn limit_in(limit: Option<u32>, default: u32, max: u32) -> Result<i64> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(Error::invalid("limit", format!("must be between 1 and {max}")));
    }
    Ok(i64::from(limit))
}

fn seq_param(field: &str, seq: Option<i64>, errors: &mut FieldErrors) {
    if seq.is_some_and(|s| s < 0) {
        errors.add(field, "must be a seq (0 or more)");
    }
}

/// The chat use cases.
pub struct ChatService {
    store: Arc<dyn Store>,
    events: EventBus,
    realtime: RealtimeHandle,
    limiter: Arc<dyn RateLimiter>,
    rates: ChatRates,
    codec: BodyCodec,
    urls: Option<palaver_crypto::MediaUrls>,
    /// Group commit of sends; started by the first send (it needs the
    /// runtime).
    writer: std::sync::OnceLock<MessageWriter>,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService").field("rates", &self.rates).finish_non_exhaustive()
    }
}

impl ChatService {
    /// Builds the service. `realtime` may still be empty: the server
    /// installs the hub into it later.
    pub fn new(
        store: Arc<dyn Store>,
        events: EventBus,
        realtime: RealtimeHandle,
        limiter: Arc<dyn RateLimiter>,
        rates: ChatRates,
    ) -> Self {
        Self {
            store,
            events,
            realtime,
            limiter,
            rates,
            codec: BodyCodec::default(),
            urls: None,
            writer: std::sync::OnceLock::new(),
        }
    }

    /// Signs the URLs of media in messages (without it, `media.url` stays
    /// empty).
    pub fn with_media_urls(mut self, urls: palaver_crypto::MediaUrls) -> Self {
        self.urls = Some(urls);
        self
    }

    /// Seals and opens bodies with `codec` (encryption at rest).
    pub fn with_codec(mut self, codec: BodyCodec) -> Self {
        self.codec = codec;
        self
    }

    /// The body codec (rotation and the moderation view use it).
    pub fn codec(&self) -> &BodyCodec {
        &self.codec
    }

    async fn spend(&self, action: &str, who: &Principal, spec: RateSpec) -> Result<()> {
        self.limiter.check(&format!("{action}:user:{}", who.id()), spec).await
    }

    /// `who`'s standing in a room; 404 when they are not in it.
    async fn member(&self, who: &Principal, room: Id) -> Result<Membership> {
        active(who)?;
        self.store.membership(room, who.id()).await?.ok_or_else(|| room_not_found(room))
    }

    /// `who`'s standing in a room whose admin tasks (add, remove, rename)
    /// they want to do.
    async fn admin_of_group(&self, who: &Principal, room: Id) -> Result<Membership> {
        let membership = self.member(who, room).await?;
        if membership.room_type != RoomType::Group {
            return Err(Error::Unprocessable("only groups have participants added, removed or renamed".into()));
        }
        if membership.role != ParticipantRole::Admin {
            return Err(Error::Forbidden("only the group's admins can do this".into()));
        }
        Ok(membership)
    }

    /// A message of a room `who` is in, with their standing there; 404
    /// otherwise.
    async fn visible_message(&self, who: &Principal, id: Id) -> Result<(StoredMessage, Membership)> {
        active(who)?;
        let message = self.store.message_by_id(id).await?.ok_or_else(|| message_not_found(id))?;
        let membership =
            self.store.membership(message.room_id, who.id()).await?.ok_or_else(|| message_not_found(id))?;
        Ok((message, membership))
    }

    /// A stored message as clients see it.
    fn message(&self, m: StoredMessage) -> Result<Message> {
        let content = if m.is_deleted {
            None
        } else {
            Some(self.codec.open(m.room_id, m.seq, &m.body, m.body_key_id.as_deref())?)
        };
        Ok(Message {
            id: m.id,
            room_id: m.room_id,
            seq: m.seq,
            sender: m.sender,
            client_msg_id: m.client_msg_id,
            message_type: m.message_type,
            content,
            media_id: m.media_id,
            media: None,
            reply_to: m.reply_to,
            shared_moment_id: m.shared_moment_id,
            is_edited: m.is_edited,
            is_deleted: m.is_deleted,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }

    /// Fills in the media of messages, with URLs signed for `viewer`: one
    /// query for all of them.
    async fn with_media(&self, viewer: UserId, messages: &mut [&mut Message]) -> Result<()> {
        let mut ids: Vec<Id> = messages.iter().filter(|m| !m.is_deleted).filter_map(|m| m.media_id).collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort_unstable();
        ids.dedup();
        let mut refs = self.store.media_refs(&ids).await?;
        if let Some(urls) = &self.urls {
            crate::media_links::sign_refs(urls, viewer, &mut refs);
        }
        for m in messages.iter_mut() {
            m.media = m.media_id.filter(|_| !m.is_deleted).and_then(|id| refs.iter().find(|r| r.id == id).cloned());
        }
        Ok(())
    }

    async fn with_media_all(&self, viewer: UserId, messages: &mut [Message]) -> Result<()> {
        let mut refs: Vec<&mut Message> = messages.iter_mut().collect();
        self.with_media(viewer, &mut refs).await
    }

    async fn rooms_with_media(&self, viewer: UserId, rooms: &mut [ChatRoom]) -> Result<()> {
        let mut refs: Vec<&mut Message> = rooms.iter_mut().filter_map(|r| r.last_message.as_mut()).collect();
        self.with_media(viewer, &mut refs).await
    }

    fn room(&self, r: RoomRecord) -> Result<ChatRoom> {
        let last_message = r.last_message.map(|m| self.message(m)).transpose()?;
        Ok(ChatRoom {
            id: r.id,
            room_type: r.room_type,
            name: r.name,
            created_by: r.created_by,
            participants: r.participants,
            last_seq: r.last_seq,
            last_read_seq: r.last_read_seq,
            unread_count: (r.last_seq - r.last_read_seq).max(0),
            last_message,
            last_message_at: r.last_message_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    /// A system message announcing a change, sent by whoever made it.
    fn announcement(&self, who: &Principal, room: Id, text: &str) -> Result<NewMessage> {
        Ok(NewMessage {
            room_id: room,
            sender: author(who),
            client_msg_id: None,
            message_type: MessageType::System,
            body: text.as_bytes().to_vec(),
            sealer: self.codec.sealer(),
            media_id: None,
            reply_to: None,
            shared_moment_id: None,
            now: now(),
        })
    }

    /// Publishes a stored message live on its room's topic.
    fn publish_message(&self, message: &Message) {
        match serde_json::to_value(message) {
            Ok(data) => self.realtime.publish(&chat::topic(message.room_id), "message", Some(message.seq), data),
            Err(e) => tracing::error!(error = %e, "cannot serialise a message"),
        }
    }

    /// After a message committed: live to the room, then a domain event
    /// naming the participants who are not viewing the room. Never fails:
    /// the message is durable and acked whatever happens here.
    async fn announce_message(&self, message: &Message, participants: Recipients) {
        self.publish_message(message);
        if message.message_type == MessageType::System {
            return;
        }
        let participants = match participants {
            Some(ids) => ids,
            None => match self.store.participant_ids(message.room_id).await {
                Ok(ids) => Arc::from(ids),
                Err(e) => {
                    tracing::warn!(error = %e, room_id = message.room_id, "no notifications for a message: participants unknown");
                    return;
                }
            },
        };
        let others: Vec<UserId> = participants.iter().copied().filter(|u| *u != message.sender.id).collect();
        if others.is_empty() {
            return;
        }
        let viewing: HashSet<UserId> =
            self.realtime.viewers(&chat::topic(message.room_id), &others).await.into_iter().collect();
        let notify_user_ids: Vec<UserId> = others.into_iter().filter(|u| !viewing.contains(u)).collect();
        self.events.publish(DomainEvent::MessageSent {
            room_id: message.room_id,
            message_id: message.id,
            seq: message.seq,
            sender_id: message.sender.id,
            sender_name: message.sender.display_name.clone(),
            // With bodies sealed at rest, the stored notification (and its
            // queued push) must not hold the text either.
            preview: if self.codec.active_key().is_some() {
                chat::sealed_preview(message.message_type)
            } else {
                chat::preview(message.message_type, message.content.as_deref().unwrap_or_default())
            },
            notify_user_ids,
        });
    }

    /// Tells a user's devices about a room they are now in (they learn of
    /// new rooms without polling, and subscribe to `chat:{room}`).
    fn publish_room_added(&self, user: UserId, room: Id, room_type: RoomType, by: UserId) {
        self.realtime.publish(
            &format!("user:{user}"),
            "chat_room_added",
            None,
            json!({"room_id": room, "room_type": room_type, "by": by}),
        );
    }

    /// Users `who` wants in a room, checked: each exists, is not suspended
    /// and has not blocked `who` (404, as their profile would be), and `who`
    /// has not blocked them (422).
    async fn candidates(&self, who: &Principal, ids: &[UserId]) -> Result<Vec<ChatCandidate>> {
        let found = self.store.chat_candidates(who.id(), ids).await?;
        for id in ids {
            let Some(c) = found.iter().find(|c| c.user.id == *id) else { return Err(user_not_found(*id)) };
            if c.is_suspended || c.blocks_actor {
                return Err(user_not_found(*id));
            }
            if c.blocked_by_actor {
                return Err(Error::Unprocessable(format!("you blocked user {id}; unblock them to talk with them")));
            }
        }
        Ok(found)
    }

    /// Creates a room. A private room with someone the caller already has
    /// one with is that room (`false`: not created).
    pub async fn create_room(&self, who: &Principal, new: NewRoom) -> Result<(ChatRoom, bool)> {
        active(who)?;
        let mut errors = FieldErrors::new();
        let mut others: Vec<UserId> = Vec::new();
        for (i, id) in new.participant_ids.iter().enumerate() {
            if *id <= 0 {
                errors.add(format!("participant_ids[{i}]"), "must be a user id");
            } else if new.participant_ids[..i].contains(id) {
                errors.add(format!("participant_ids[{i}]"), "is listed twice");
            } else if *id != who.id() {
                others.push(*id);
            }
        }
        let name = match new.room_type {
            RoomType::Private => {
                if others.len() != 1 {
                    errors.add("participant_ids", "must name exactly one other user for a private room");
                }
                if new.name.as_deref().is_some_and(|n| !n.trim().is_empty()) {
                    errors.add("name", "is only for groups");
                }
                String::new()
            }
            RoomType::Group => {
                if others.is_empty() {
                    errors.add("participant_ids", "must name at least one other user");
                } else if others.len() >= limits::GROUP_MAX_PARTICIPANTS {
                    errors.add(
                        "participant_ids",
                        format!("must name at most {} other users", limits::GROUP_MAX_PARTICIPANTS - 1),
                    );
                }
                match new.name.as_deref() {
                    None => {
                        errors.add("name", "is required for a group");
                        String::new()
                    }
                    Some(raw) => match chat::room_name(raw) {
                        Ok(name) => name,
                        Err(Error::Validation(fields)) => {
                            for (field, msg) in fields.fields() {
                                errors.add(field.clone(), msg.clone());
                            }
                            String::new()
                        }
                        Err(other) => return Err(other),
                    },
                }
            }
            RoomType::VoiceRoom => {
                return Err(Error::Unprocessable("a voice room's chat is created with the voice room".into()));
            }
        };
        errors.into_result()?;
        self.candidates(who, &others).await?;
        self.spend("chat_rooms", who, self.rates.rooms).await?;
        let (room, created) = match new.room_type {
            RoomType::Private => {
                let other = others[0];
                let (room, created) = self.store.create_private_room(who.id(), other, now()).await?;
                if created {
                    self.publish_room_added(other, room, RoomType::Private, who.id());
                }
                (room, created)
            }
            _ => {
                let text = format!("{} created the group “{name}”", who.user.display_name);
                let announce = self.announcement(who, 0, &text)?;
                let (room, first) =
                    self.store.create_group_room(&name, &others, &announce).await.map_err(|e| match e {
                        StoreError::NotFound | StoreError::ForeignKey(_) => {
                            Error::NotFound("a participant no longer exists".into())
                        }
                        other => other.into(),
                    })?;
                self.publish_message(&self.message(first)?);
                for other in &others {
                    self.publish_room_added(*other, room, RoomType::Group, who.id());
                }
                (room, true)
            }
        };
        let room = self.store.room_for(who.id(), room).await?.ok_or_else(|| room_not_found(room))?;
        let mut rooms = [self.room(room)?];
        self.rooms_with_media(who.id(), &mut rooms).await?;
        let [room] = rooms;
        Ok((room, created))
    }

    /// Re-encrypts up to `limit` message bodies with id above `after` that
    /// are not sealed with the active key, each only if unchanged meanwhile
    /// (an edit wins). Returns (re-encrypted, changed meanwhile, last id).
    /// Safe beside serving nodes, and resumable at any point.
    pub async fn reseal_bodies(&self, after: Id, limit: i64) -> Result<(u64, u64, Option<Id>)> {
        let Some(active) = self.codec.active_key().map(ToString::to_string) else {
            return Err(Error::Unavailable("encryption at rest is off: nothing to re-encrypt to".into()));
        };
        let (mut resealed, mut skipped, mut last) = (0, 0, None);
        for b in self.store.bodies_to_reseal(&active, after, limit).await? {
            last = Some(b.id);
            let text = self.codec.open(b.room_id, b.seq, &b.body, b.body_key_id.as_deref())?;
            let (body, key) = self.codec.seal(b.room_id, b.seq, &text)?;
            let key = key.unwrap_or_else(|| active.clone());
            if self.store.reseal_body(b.id, &b.body, &body, &key).await? {
                resealed += 1;
            } else {
                skipped += 1;
            }
        }
        Ok((resealed, skipped, last))
    }

    /// The moderation view of a reported message (moderators and admins
    /// only): the server opens its body for them, though they are not in
    /// the room; media URLs are signed for the moderator. Only messages
    /// someone reported are readable this way.
    pub async fn reported_message(&self, who: &Principal, report: Id) -> Result<Message> {
        active(who)?;
        if !who.user.role.is_moderator() {
            return Err(Error::Forbidden("only moderators can read reported messages".into()));
        }
        let found = self.store.report_by_id(report).await?.ok_or_else(|| Error::not_found("report", report))?;
        let palaver_core::social::ReportTarget::Message(id) = found.target else {
            return Err(Error::Unprocessable(format!("report {report} is not about a message")));
        };
        let stored = self.store.message_by_id(id).await?.ok_or_else(|| message_not_found(id))?;
        let mut message = self.message(stored)?;
        self.with_media(who.id(), &mut [&mut message]).await?;
        tracing::info!(moderator = who.id(), report, message_id = id, "moderator read a reported message");
        Ok(message)
    }

    /// A room the caller is in.
    pub async fn room_of(&self, who: &Principal, room: Id) -> Result<ChatRoom> {
        active(who)?;
        let found = self.store.room_for(who.id(), room).await?.ok_or_else(|| room_not_found(room))?;
        let mut room = [self.room(found)?];
        self.rooms_with_media(who.id(), &mut room).await?;
        let [room] = room;
        Ok(room)
    }

    /// The caller's rooms, most recently active first, each with its newest
    /// message and the caller's unread count. The cursor is opaque (the
    /// last room's activity time and id).
    pub async fn rooms(&self, who: &Principal, limit: Option<u32>, cursor: Option<&str>) -> Result<Page<ChatRoom>> {
        active(who)?;
        let limit = limit_in(limit, DEFAULT_LIMIT, MAX_LIMIT)?;
        let cursor = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => Some(
                parse_room_cursor(raw).ok_or_else(|| Error::invalid("cursor", "is not a cursor this list returned"))?,
            ),
        };
        let records = self.store.rooms_for(who.id(), cursor, limit).await?;
        let next = (i64::try_from(records.len()).unwrap_or(i64::MAX) >= limit)
            .then(|| records.last().map(|r| format_room_cursor(r.cursor())))
            .flatten();
        let mut items = records.into_iter().map(|r| self.room(r)).collect::<Result<Vec<_>>>()?;
        self.rooms_with_media(who.id(), &mut items).await?;
        Ok(Page { items, next_cursor: next })
    }

    /// Adds a user to a group (admins). Adding someone already in it
    /// changes nothing.
    pub async fn add_participant(&self, who: &Principal, room: Id, user: UserId) -> Result<ChatRoom> {
        self.admin_of_group(who, room).await?;
        if user <= 0 {
            return Err(user_not_found(user));
        }
        let candidate = self.candidates(who, &[user]).await?.remove(0);
        self.spend("chat_rooms", who, self.rates.rooms).await?;
        let text = format!("{} added {}", who.user.display_name, candidate.user.display_name);
        let announce = self.announcement(who, room, &text)?;
        let max = i64::try_from(limits::GROUP_MAX_PARTICIPANTS).unwrap_or(i64::MAX);
        match self.store.add_participant(user, &announce, max).await? {
            AddResult::Added(stored) => {
                let message = self.message(stored)?;
                self.publish_message(&message);
                self.realtime.publish(
                    &chat::topic(room),
                    "participant_joined",
                    None,
                    json!({"room_id": room, "user": candidate.user, "added_by": who.id()}),
                );
                self.publish_room_added(user, room, RoomType::Group, who.id());
            }
            AddResult::AlreadyParticipant => {}
            AddResult::Full => {
                return Err(Error::Unprocessable(format!(
                    "a group has at most {} participants",
                    limits::GROUP_MAX_PARTICIPANTS
                )));
            }
            AddResult::NotParticipant => return Err(room_not_found(room)),
        }
        self.room_of(who, room).await
    }

    /// Removes a user from a group (admins; removing oneself is leaving).
    /// The removed user's live subscription to the room ends at once.
    pub async fn remove_participant(&self, who: &Principal, room: Id, user: UserId) -> Result<()> {
        if user == who.id() {
            return self.leave(who, room).await;
        }
        self.admin_of_group(who, room).await?;
        let name = self
            .store
            .chat_candidates(who.id(), &[user])
            .await?
            .pop()
            .map(|c| c.user.display_name)
            .ok_or_else(|| Error::NotFound(format!("user {user} is not in this room")))?;
        self.spend("chat_rooms", who, self.rates.rooms).await?;
        let announce = self.announcement(who, room, &format!("{} removed {name}", who.user.display_name))?;
        let stored = self
            .store
            .remove_participant(user, &announce)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user} is not in this room")))?;
        self.departed(room, user, Some(who.id()), stored)
    }

    /// Leaves a group. Private conversations cannot be left (block the user
    /// to stop them writing); a voice room's chat is left with the voice
    /// room.
    pub async fn leave(&self, who: &Principal, room: Id) -> Result<()> {
        let membership = self.member(who, room).await?;
        match membership.room_type {
            RoomType::Group => {}
            RoomType::Private => {
                return Err(Error::Unprocessable(
                    "a private conversation cannot be left; block the user to stop their messages".into(),
                ));
            }
            RoomType::VoiceRoom => {
                return Err(Error::Unprocessable("a voice room's chat is left by leaving the voice room".into()));
            }
        }
        let announce = self.announcement(who, room, &format!("{} left", who.user.display_name))?;
        let stored = self.store.remove_participant(who.id(), &announce).await?.ok_or_else(|| room_not_found(room))?;
        self.departed(room, who.id(), None, stored)
    }

    fn departed(&self, room: Id, user: UserId, by: Option<UserId>, announcement: StoredMessage) -> Result<()> {
        let message = self.message(announcement)?;
        self.publish_message(&message);
        self.realtime.publish(
            &chat::topic(room),
            "participant_left",
            None,
            json!({"room_id": room, "user_id": user, "removed_by": by}),
        );
        self.realtime.revoke(&chat::topic(room), user);
        self.realtime.publish(&format!("user:{user}"), "chat_room_removed", None, json!({"room_id": room}));
        Ok(())
    }

    /// Renames a group (admins).
    pub async fn rename(&self, who: &Principal, room: Id, name: &str) -> Result<ChatRoom> {
        let name = chat::room_name(name)?;
        self.admin_of_group(who, room).await?;
        self.spend("chat_rooms", who, self.rates.rooms).await?;
        let text = format!("{} renamed the group to “{name}”", who.user.display_name);
        let announce = self.announcement(who, room, &text)?;
        let stored = self.store.rename_room(&name, &announce).await?.ok_or_else(|| room_not_found(room))?;
        let message = self.message(stored)?;
        self.publish_message(&message);
        self.realtime.publish(&chat::topic(room), "room_updated", None, json!({"room_id": room, "name": name}));
        self.room_of(who, room).await
    }

    /// Checks a message a client wants to send; returns its text.
    async fn check_message(&self, who: &Principal, room: Id, m: &SendMessage) -> Result<String> {
        let mut errors = FieldErrors::new();
        if m.message_type == MessageType::System {
            errors.add("message_type", "system messages are written by the server");
        }
        if let Some(id) = &m.client_msg_id {
            chat::client_msg_id(id, &mut errors);
        }
        let content = m.content.clone().unwrap_or_default();
        match (&m.content, m.message_type) {
            (None, MessageType::Text) => errors.add("content", "is required"),
            _ => chat::message_content(&content, m.message_type, &mut errors),
        }
        match (m.media_id, m.message_type.is_media()) {
            (None, true) => errors.add("media_id", "is required for a media message"),
            (Some(_), false) => errors.add("media_id", "is only for image, video, audio and file messages"),
            (Some(id), true) if id <= 0 => errors.add("media_id", "must be a media id"),
            _ => {}
        }
        if m.reply_to.is_some_and(|id| id <= 0) {
            errors.add("reply_to", "must be a message id");
        }
        errors.into_result()?;
        if let Some(media) = m.media_id {
            self.check_media(who, media, m.message_type).await?;
        }
        if let Some(reply_to) = m.reply_to {
            // A non-participant learns nothing from the reply target.
            self.member(who, room).await?;
            let target = self.store.message_by_id(reply_to).await?;
            match target {
                Some(t) if t.room_id == room && !t.is_deleted => {}
                Some(t) if t.room_id == room => {
                    return Err(Error::Unprocessable(format!("message {reply_to} was deleted")));
                }
                _ => return Err(Error::Unprocessable(format!("reply_to: message {reply_to} is not in this room"))),
            }
        }
        Ok(content)
    }

    /// The media validation hook: a media message may only carry an upload
    /// of its sender's, of the kind its type names (`file` takes any).
    async fn check_media(&self, who: &Principal, media: Id, message_type: MessageType) -> Result<()> {
        let found = self.store.media_by_id(media).await?.filter(|m| m.owner_id == who.id() && m.ready_at.is_some());
        let Some(found) = found else {
            return Err(Error::invalid("media_id", "is not a media item you uploaded"));
        };
        // Voice notes recorded in browsers come in WebM or MP4 containers,
        // which are typed `video` from their bytes: audio messages take them.
        let audio_in_video = message_type == MessageType::Audio && found.kind == "video";
        if let Some(kind) = message_type.media_kind()
            && found.kind != kind
            && !audio_in_video
        {
            return Err(Error::invalid(
                "media_id",
                format!("is a {} upload, not a {}", found.kind, message_type.as_str()),
            ));
        }
        Ok(())
    }

    /// Sends a message: stored with the room's next seq (in one
    /// transaction with whatever other sends are waiting: group commit,
    /// see `chat_writer.rs`), then published and notified. A retry with the
    /// same `client_msg_id` returns the original (`duplicate`), stores and
    /// publishes nothing.
    pub async fn send(&self, who: &Principal, room: Id, m: SendMessage) -> Result<Sent> {
        active(who)?;
        let content = self.check_message(who, room, &m).await?;
        self.spend("messages", who, self.rates.messages).await?;
        let new = NewMessage {
            room_id: room,
            sender: author(who),
            client_msg_id: m.client_msg_id,
            message_type: m.message_type,
            body: content.into_bytes(),
            sealer: self.codec.sealer(),
            media_id: m.media_id,
            reply_to: m.reply_to,
            shared_moment_id: None,
            now: now(),
        };
        let writer = self.writer.get_or_init(|| MessageWriter::start(self.store.clone()));
        let (result, recipients) = writer.send(new).await?;
        self.sent(who, room, result, recipients).await
    }

    /// Turns a store's send result into the answer, announcing new messages.
    /// Media URLs are signed for the sender; the hub re-signs them for each
    /// connection the live event reaches.
    async fn sent(&self, who: &Principal, room: Id, result: SendResult, recipients: Recipients) -> Result<Sent> {
        match result {
            SendResult::Sent(stored) => {
                let mut message = self.message(stored)?;
                self.with_media(who.id(), &mut [&mut message]).await?;
                self.announce_message(&message, recipients).await;
                Ok(Sent { message, duplicate: false })
            }
            SendResult::Duplicate(stored) => {
                let mut message = self.message(stored)?;
                self.with_media(who.id(), &mut [&mut message]).await?;
                Ok(Sent { message, duplicate: true })
            }
            SendResult::NotParticipant => Err(room_not_found(room)),
            SendResult::Blocked => Err(Error::Forbidden("you cannot send messages in this conversation".into())),
        }
    }

    /// Shares a moment into a conversation: a text message (the sharer's
    /// words, or the moment's author and opening words) referencing the
    /// moment by `shared_moment_id`, and the share counted on the moment in
    /// the same transaction. Only public moments can be shared (as for
    /// reposts: every participant may then open it); sharing a repost
    /// shares its original.
    pub async fn share_moment(&self, who: &Principal, moment: Id, room: Id, words: Option<&str>) -> Result<Message> {
        self.member(who, room).await?;
        let mut found = self.store.moments_for(who.id(), &[moment]).await?;
        let mut shared = found.pop().ok_or_else(|| Error::not_found("moment", moment))?;
        if shared.shared_moment_id.is_some() {
            shared = *shared.shared_moment.take().ok_or_else(|| {
                Error::Unprocessable(format!("moment {moment} is a repost of a moment that is no longer available"))
            })?;
        }
        if shared.visibility != Visibility::Public {
            return Err(Error::Unprocessable("only public moments can be shared".into()));
        }
        let content = match words.map(str::trim).filter(|w| !w.is_empty()) {
            Some(words) => {
                palaver_core::validate::text(words, 1, limits::MESSAGE_MAX_CHARS)
                    .map_err(|msg| Error::invalid("content", msg))?;
                words.to_owned()
            }
            None => {
                let excerpt = chat::preview(MessageType::Text, &shared.content);
                format!("{}: {excerpt}", shared.user.display_name)
            }
        };
        self.spend("messages", who, self.rates.messages).await?;
        let new = NewMessage {
            room_id: room,
            sender: author(who),
            client_msg_id: None,
            message_type: MessageType::Text,
            body: content.into_bytes(),
            sealer: self.codec.sealer(),
            media_id: None,
            reply_to: None,
            shared_moment_id: Some(shared.id),
            now: now(),
        };
        let result = self.store.share_moment_to_chat(&new, shared.id).await.map_err(|e| match e {
            StoreError::NotFound => Error::not_found("moment", moment),
            other => other.into(),
        })?;
        Ok(self.sent(who, room, result, None).await?.message)
    }

    /// Edits the text (or caption) of one's own message; it is marked
    /// edited and the change published.
    pub async fn edit(&self, who: &Principal, id: Id, content: &str) -> Result<Message> {
        let (message, _) = self.visible_message(who, id).await?;
        if message.sender.id != who.id() {
            return Err(Error::Forbidden("only the sender can edit a message".into()));
        }
        if message.message_type == MessageType::System {
            return Err(Error::Unprocessable("system messages cannot be edited".into()));
        }
        if message.is_deleted {
            return Err(Error::Unprocessable("a deleted message cannot be edited".into()));
        }
        let mut errors = FieldErrors::new();
        chat::message_content(content, message.message_type, &mut errors);
        errors.into_result()?;
        self.spend("messages", who, self.rates.messages).await?;
        let (body, key_id) = self.codec.seal(message.room_id, message.seq, content)?;
        let edited = self
            .store
            .edit_message(id, who.id(), &body, key_id.as_deref(), now())
            .await?
            .ok_or_else(|| Error::Unprocessable("the message was deleted meanwhile".into()))?;
        let mut edited = self.message(edited)?;
        self.with_media(who.id(), &mut [&mut edited]).await?;
        match serde_json::to_value(&edited) {
            Ok(data) => self.realtime.publish(&chat::topic(edited.room_id), "message_edited", None, data),
            Err(e) => tracing::error!(error = %e, "cannot serialise a message"),
        }
        Ok(edited)
    }

    /// Deletes one's own message: its content goes, its place (seq) stays.
    /// Deleting it again changes nothing.
    pub async fn delete(&self, who: &Principal, id: Id) -> Result<()> {
        let (message, _) = self.visible_message(who, id).await?;
        if message.sender.id != who.id() {
            return Err(Error::Forbidden("only the sender can delete a message".into()));
        }
        if message.message_type == MessageType::System {
            return Err(Error::Unprocessable("system messages cannot be deleted".into()));
        }
        if message.is_deleted {
            return Ok(());
        }
        if let Some(deleted) = self.store.delete_message(id, who.id(), now()).await? {
            self.realtime.publish(
                &chat::topic(deleted.room_id),
                "message_deleted",
                None,
                json!({"id": deleted.id, "room_id": deleted.room_id, "seq": deleted.seq}),
            );
        }
        Ok(())
    }

    /// A page of a room's history in seq order, deleted messages included
    /// (as tombstones, so seqs have no holes). With `after_seq`: the oldest
    /// messages after it (and before `before_seq`, if given: a gap's range);
    /// otherwise the newest before `before_seq` (or the newest of all).
    /// `next_cursor` continues in the same direction: the next `after_seq`,
    /// or the next `before_seq`.
    pub async fn history(&self, who: &Principal, room: Id, q: HistoryQuery) -> Result<Page<Message>> {
        let mut errors = FieldErrors::new();
        seq_param("after_seq", q.after_seq, &mut errors);
        seq_param("before_seq", q.before_seq, &mut errors);
        errors.into_result()?;
        let limit = limit_in(q.limit, HISTORY_DEFAULT_LIMIT, MAX_LIMIT)?;
        self.member(who, room).await?;
        let range = MessageRange { after_seq: q.after_seq, before_seq: q.before_seq, limit };
        let stored = self.store.messages(room, range).await?;
        let full = i64::try_from(stored.len()).unwrap_or(i64::MAX) >= limit;
        let next_cursor = match (full, q.after_seq.is_some()) {
            (false, _) => None,
            (true, true) => stored.last().map(|m| m.seq.to_string()),
            (true, false) => stored.first().map(|m| m.seq.to_string()),
        };
        let mut items = stored.into_iter().map(|m| self.message(m)).collect::<Result<Vec<_>>>()?;
        self.with_media_all(who.id(), &mut items).await?;
        Ok(Page { items, next_cursor })
    }

    /// For the hub: whether `who` may subscribe to `chat:{room}` (is a
    /// participant, not suspended).
    pub async fn is_participant(&self, who: &Principal, room: Id) -> Result<bool> {
        active(who)?;
        Ok(self.store.membership(room, who.id()).await?.is_some())
    }

    /// For the hub's resume (`since_seq`): up to `limit` (at most
    /// [`REPLAY_MAX`]) messages after `since_seq`, in seq order. Call again
    /// from the last seq returned until fewer than `limit` come back.
    pub async fn replay(&self, who: &Principal, room: Id, since_seq: i64, limit: u32) -> Result<Vec<Message>> {
        let limit = limit_in(Some(limit), REPLAY_MAX, REPLAY_MAX)?;
        self.member(who, room).await?;
        let range = MessageRange { after_seq: Some(since_seq.max(0)), before_seq: None, limit };
        let mut items =
            self.store.messages(room, range).await?.into_iter().map(|m| self.message(m)).collect::<Result<Vec<_>>>()?;
        self.with_media_all(who.id(), &mut items).await?;
        Ok(items)
    }

    /// A message and its direct replies, after `after_seq`.
    pub async fn thread(&self, who: &Principal, id: Id, after_seq: Option<i64>, limit: Option<u32>) -> Result<Thread> {
        let mut errors = FieldErrors::new();
        seq_param("after_seq", after_seq, &mut errors);
        errors.into_result()?;
        let limit = limit_in(limit, HISTORY_DEFAULT_LIMIT, MAX_LIMIT)?;
        let (root, _) = self.visible_message(who, id).await?;
        let replies = self.store.thread(id, after_seq.unwrap_or(0), limit).await?;
        let next_cursor = (i64::try_from(replies.len()).unwrap_or(i64::MAX) >= limit)
            .then(|| replies.last().map(|m| m.seq.to_string()))
            .flatten();
        let mut items = replies.into_iter().map(|m| self.message(m)).collect::<Result<Vec<_>>>()?;
        let mut message = self.message(root)?;
        {
            let mut all: Vec<&mut Message> = items.iter_mut().collect();
            all.push(&mut message);
            self.with_media(who.id(), &mut all).await?;
        }
        Ok(Thread { message, items, next_cursor })
    }

    /// Marks the room read up to `seq` (never backwards; at most the newest
    /// message). A moved watermark is published as a `read` event; once the
    /// caller has read everything, the room's message notifications are
    /// marked read too.
    pub async fn read(&self, who: &Principal, room: Id, seq: i64) -> Result<ReadState> {
        if seq < 0 {
            return Err(Error::invalid("seq", "must be a seq (0 or more)"));
        }
        let membership = self.member(who, room).await?;
        let watermark = match self.store.mark_read(room, who.id(), seq).await? {
            Some(moved) => {
                self.realtime.publish(&chat::topic(room), "read", None, json!({"user_id": who.id(), "seq": moved}));
                moved
            }
            None => membership.last_read_seq,
        };
        if watermark >= membership.last_seq {
            self.mark_notifications_read(who.id(), room).await;
        }
        Ok(ReadState { last_read_seq: watermark, unread_count: (membership.last_seq - watermark).max(0) })
    }

    /// Marks a room's message notifications read and tells the user's
    /// devices, as the notifications API would. Best effort.
    async fn mark_notifications_read(&self, user: UserId, room: Id) {
        let ids = match self.store.mark_room_notifications_read(user, room, now()).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, room_id = room, "cannot mark the room's notifications read");
                return;
            }
        };
        if ids.is_empty() {
            return;
        }
        let unread = self.store.unread_notification_count(user).await.unwrap_or_default();
        for id in ids {
            self.realtime.publish(
                &format!("user:{user}"),
                "notification",
                None,
                json!({"action": "read", "notification_id": id, "unread_count": unread}),
            );
        }
    }

    /// Who has read a message (from the participants' watermarks).
    pub async fn read_by(&self, who: &Principal, id: Id) -> Result<ReadBy> {
        let (message, _) = self.visible_message(who, id).await?;
        let read_by = self.store.read_by(id).await?;
        Ok(ReadBy { message_id: id, seq: message.seq, read_by })
    }
}

/// `micros.id`: the room list's opaque cursor.
fn format_room_cursor(c: RoomCursor) -> String {
    format!("{}.{}", c.activity_at.timestamp_micros(), c.id)
}

fn parse_room_cursor(raw: &str) -> Option<RoomCursor> {
    let (micros, id) = raw.split_once('.')?;
    let activity_at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    let id: Id = id.parse().ok().filter(|id| *id > 0)?;
    Some(RoomCursor { activity_at, id })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn room_cursors_round_trip() {
        let c = RoomCursor { activity_at: now(), id: 42 };
        assert_eq!(parse_room_cursor(&format_room_cursor(c)), Some(c));
        for bad in ["", "42", "x.1", "1.x", "1.-3", "1.0"] {
            assert_eq!(parse_room_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn plain_bodies_round_trip() {
        let codec = BodyCodec::default();
        let (body, key) = codec.seal(1, 1, "¿qué tal?").unwrap();
        assert_eq!(key, None);
        assert_eq!(codec.open(1, 1, &body, None).unwrap(), "¿qué tal?");
        assert!(codec.open(1, 1, &[0xff, 0xfe], None).is_err());
        assert!(codec.open(1, 1, &body, Some("k1")).is_err());
    }

    #[test]
    fn sealed_bodies_are_bound_to_their_place() {
        let spec = palaver_crypto::generate_key_spec(&palaver_crypto::KeyId::new("k1").unwrap());
        let codec = BodyCodec::new(Arc::new(Keyring::parse(&spec).unwrap()), true);
        let (body, key) = codec.seal(3, 7, "secreto").unwrap();
        assert_eq!(key.as_deref(), Some("k1"));
        assert!(!String::from_utf8_lossy(&body).contains("secreto"));
        assert_eq!(codec.open(3, 7, &body, key.as_deref()).unwrap(), "secreto");
        // Swapped into another message or room: refused.
        assert!(codec.open(3, 8, &body, key.as_deref()).is_err());
        assert!(codec.open(4, 7, &body, key.as_deref()).is_err());
        // Encryption off: new bodies plain, old ones still open.
        let off = BodyCodec::new(codec.keyring.clone().unwrap(), false);
        assert_eq!(off.seal(3, 9, "x").unwrap().1, None);
        assert_eq!(off.open(3, 7, &body, key.as_deref()).unwrap(), "secreto");
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod service_tests;
