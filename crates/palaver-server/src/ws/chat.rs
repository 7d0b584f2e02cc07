//! Chat on the hub: the `chat:{room}` topic kind (participants only,
//! sequenced, replayed from the chat history), the `send` and `read` ops,
//! and the original design's `/ws/chat/{room_id}/` route.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use palaver_core::chat::{Message, MessageType};
use palaver_core::{Error, Id, Result, UserId};
use palaver_realtime::frame::{FrameError, WsError, parse_fields};
use palaver_realtime::tokio_tungstenite::tungstenite::Utf8Bytes;
use palaver_realtime::{
    Action, ClientFrame, EventFrame, Hub, OpContext, OpHandler, Protocol, Replayed, Topic, TopicKind,
};
use palaver_service::chat::SendMessage;
use palaver_service::{ChatService, Principal};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// How many recent messages `/ws/chat/{room_id}/` sends on connect.
pub const LEGACY_RECENT: i64 = 50;

/// Plugs chat into the hub.
pub fn register(hub: &Hub, chat: Arc<ChatService>) {
    hub.register_kind("chat", Arc::new(ChatKind(chat.clone())));
    hub.register_op("send", Arc::new(SendOp(chat.clone())));
    hub.register_op("read", Arc::new(ReadOp(chat)));
}

fn room_of(topic: &Topic) -> Result<Id> {
    if topic.kind() != "chat" {
        return Err(Error::invalid("topic", "must be a chat topic, chat:{room_id}"));
    }
    topic.numeric_id()
}

fn replayed(message: &Message) -> Result<Replayed> {
    Ok(Replayed {
        event_type: "message".into(),
        seq: Some(message.seq),
        data: serde_json::to_value(message).map_err(Error::internal)?,
    })
}

/// `chat:{room_id}`: participants only (checked at subscribe; sends are
/// checked by the chat service), messages numbered by `seq`.
pub struct ChatKind(pub Arc<ChatService>);

#[async_trait]
impl TopicKind for ChatKind {
    async fn authorize(&self, who: &Principal, topic: &Topic, _action: Action) -> Result<()> {
        let room = room_of(topic)?;
        if self.0.is_participant(who, room).await? {
            Ok(())
        } else {
            // The room's existence is not revealed to non-participants.
            Err(Error::not_found("chat room", room))
        }
    }

    fn sequenced(&self) -> bool {
        true
    }

    async fn head(&self, who: &Principal, topic: &Topic) -> Result<i64> {
        Ok(self.0.room_of(who, room_of(topic)?).await?.last_seq)
    }

    async fn replay(&self, who: &Principal, topic: &Topic, after: i64, limit: usize) -> Result<Vec<Replayed>> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX).min(palaver_service::chat::REPLAY_MAX);
        self.0.replay(who, room_of(topic)?, after, limit).await?.iter().map(replayed).collect()
    }

    fn typing(&self) -> bool {
        true
    }
}

#[derive(Deserialize)]
struct SendFields {
    topic: String,
    #[serde(default)]
    client_msg_id: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default = "text")]
    message_type: MessageType,
    #[serde(default)]
    media_id: Option<Id>,
    #[serde(default)]
    reply_to: Option<Id>,
}

fn text() -> MessageType {
    MessageType::Text
}

/// `send`: stores the message (the ack comes once it is durable, with its
/// `seq` and `id`; a retry with the same `client_msg_id` gets the same ack).
pub struct SendOp(pub Arc<ChatService>);

#[async_trait]
impl OpHandler for SendOp {
    async fn handle(&self, ctx: &OpContext, body: Map<String, Value>) -> Result<Map<String, Value>> {
        let f: SendFields = parse_fields(&body)?;
        let topic = Topic::parse(&f.topic)?;
        let room = room_of(&topic)?;
        let message = SendMessage {
            client_msg_id: f.client_msg_id,
            content: f.content,
            message_type: f.message_type,
            media_id: f.media_id,
            reply_to: f.reply_to,
        };
        let sent = self.0.send(&ctx.principal, room, message).await?;
        let mut ack = Map::new();
        ack.insert("topic".into(), Value::String(topic.as_str().to_owned()));
        ack.insert("seq".into(), json!(sent.message.seq));
        ack.insert("id".into(), json!(sent.message.id));
        ack.insert("duplicate".into(), Value::Bool(sent.duplicate));
        Ok(ack)
    }
}

#[derive(Deserialize)]
struct ReadFields {
    topic: String,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default)]
    message_id: Option<Id>,
}

/// `read`: moves the caller's read watermark to `seq` (or to the seq of
/// `message_id`, for the original design's read receipts).
pub struct ReadOp(pub Arc<ChatService>);

#[async_trait]
impl OpHandler for ReadOp {
    async fn handle(&self, ctx: &OpContext, body: Map<String, Value>) -> Result<Map<String, Value>> {
        let f: ReadFields = parse_fields(&body)?;
        let topic = Topic::parse(&f.topic)?;
        let room = room_of(&topic)?;
        let seq = match (f.seq, f.message_id) {
            (Some(seq), _) => seq,
            (None, Some(id)) => {
                let message = self.0.thread(&ctx.principal, id, None, Some(1)).await?.message;
                if message.room_id != room {
                    return Err(Error::not_found("message", id));
                }
                message.seq
            }
            (None, None) => return Err(Error::invalid("seq", "is required")),
        };
        let state = self.0.read(&ctx.principal, room, seq).await?;
        let mut ack = Map::new();
        ack.insert("topic".into(), Value::String(topic.as_str().to_owned()));
        ack.insert("last_read_seq".into(), json!(state.last_read_seq));
        ack.insert("unread_count".into(), json!(state.unread_count));
        Ok(ack)
    }
}

/// Render slot of `/ws/chat/{room_id}/` frames.
const CHAT_SLOT: usize = 1;

/// `/ws/chat/{room_id}/`: the original design's frames. The client sends
/// `{"type":"chat_message","message":"hi"}` (optionally `message_type`,
/// `client_msg_id`, and `media_file`: an upload's id or the url
/// `POST /media` returned, making a `file` message unless `message_type`
/// says otherwise), `{"type":"typing","is_typing":true}` and
/// `{"type":"read_receipt","message_id":9}`; members receive each message
/// as `{"type":"chat_message","id","sender","sender_id","content",
/// "message_type","created_at","media_file","seq"}` and typing as
/// `{"type":"typing","user","user_id","is_typing"}`. Errors are
/// `{"type":"error","code","message"}`.
///
/// `sender` and `user` are the display name: the original design put the
/// sender's email there, but emails are private (users see each other by
/// display name and id), so the shape is kept and the id added.
pub struct ChatProtocol {
    topic: Topic,
    /// Display names of the room's participants when the socket opened
    /// (typing events carry only an id); later joiners are named by the
    /// messages themselves.
    names: HashMap<UserId, String>,
}

impl ChatProtocol {
    /// The protocol of a connection to `room`.
    pub async fn new(chat: &ChatService, who: &Principal, room: Id) -> Result<Self> {
        let found = chat.room_of(who, room).await?;
        let names = found.participants.iter().map(|p| (p.user.id, p.user.display_name.clone())).collect();
        Ok(Self { topic: Topic::new("chat", room), names })
    }

    /// The display name of `user` (an author object or a bare id).
    fn name(&self, user: &Value) -> Value {
        if let Some(name) = user.get("display_name").filter(|n| n.is_string()) {
            return name.clone();
        }
        let id = user.get("id").and_then(Value::as_i64).or_else(|| user.as_i64());
        id.and_then(|id| self.names.get(&id)).map_or(Value::Null, |name| Value::String(name.clone()))
    }
}

/// The upload a legacy `chat_message` names in `media_file`: its id (a
/// number, or digits in a string) or the `url` `POST /media` returned for it
/// (relative or absolute, any signature: the send itself checks the upload
/// is the sender's own). `null` or absent: none.
fn legacy_media_id(value: &Value) -> std::result::Result<Option<Id>, &'static str> {
    const WHY: &str = "must be a media id or the url POST /api/v1/media returned";
    let text = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => return n.as_i64().filter(|id| *id > 0).map(Some).ok_or(WHY),
        Value::String(s) => s.trim(),
        _ => return Err(WHY),
    };
    if let Ok(id) = text.parse::<Id>() {
        return if id > 0 { Ok(Some(id)) } else { Err(WHY) };
    }
    let path = text.split(['?', '#']).next().unwrap_or_default();
    let after = path.split_once("/api/v1/media/").map(|(_, rest)| rest).ok_or(WHY)?;
    let mut parts = after.split('/');
    let id = parts.next().and_then(|id| id.parse::<Id>().ok()).filter(|id| *id > 0).ok_or(WHY)?;
    match (parts.next(), parts.next()) {
        (None | Some("file" | "thumbnail" | ""), None) => Ok(Some(id)),
        _ => Err(WHY),
    }
}

/// The user id of an author object or a bare id.
fn user_id(user: &Value) -> Value {
    user.get("id").or(Some(user)).filter(|v| v.is_i64()).cloned().unwrap_or(Value::Null)
}

fn legacy_error(err: &WsError) -> Option<Utf8Bytes> {
    Some(Utf8Bytes::from(json!({"type": "error", "code": err.code, "message": err.message}).to_string()))
}

impl Protocol for ChatProtocol {
    fn decode(&self, text: &str) -> std::result::Result<ClientFrame, FrameError> {
        let fail = |code: &str, message: String| FrameError { reference: None, error: WsError::new(code, message) };
        let map = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(fail("bad_request", "a frame is a JSON object".into())),
            Err(e) => return Err(fail("malformed_json", format!("not valid JSON: {e}"))),
        };
        let topic = Value::String(self.topic.as_str().to_owned());
        let mut body = Map::new();
        body.insert("topic".into(), topic);
        let op = match map.get("type").and_then(Value::as_str) {
            Some("chat_message") => {
                let media_id = match legacy_media_id(map.get("media_file").unwrap_or(&Value::Null)) {
                    Ok(id) => id,
                    Err(why) => {
                        return Err(FrameError { reference: None, error: Error::invalid("media_file", why).into() });
                    }
                };
                match map.get("message") {
                    Some(message) => {
                        body.insert("content".into(), message.clone());
                    }
                    // A media message may come without a caption.
                    None if media_id.is_some() => {}
                    None => {
                        return Err(FrameError {
                            reference: None,
                            error: Error::invalid("message", "is required").into(),
                        });
                    }
                }
                // With a file and no type, the message is a `file` message,
                // which takes any kind of upload.
                let default_type = if media_id.is_some() { "file" } else { "text" };
                body.insert("message_type".into(), map.get("message_type").cloned().unwrap_or(json!(default_type)));
                if let Some(id) = media_id {
                    body.insert("media_id".into(), json!(id));
                }
                let id = map
                    .get("client_msg_id")
                    .cloned()
                    .unwrap_or_else(|| Value::String(uuid::Uuid::new_v4().to_string()));
                body.insert("client_msg_id".into(), id);
                "send"
            }
            Some("typing") => {
                body.insert("is_typing".into(), map.get("is_typing").cloned().unwrap_or(Value::Null));
                "typing"
            }
            Some("read_receipt") => {
                body.insert("message_id".into(), map.get("message_id").cloned().unwrap_or(Value::Null));
                "read"
            }
            Some("ping") => "ping",
            _ => {
                return Err(fail("unknown_type", "type must be chat_message, typing, read_receipt or ping".into()));
            }
        };
        Ok(ClientFrame { op: op.into(), reference: None, body })
    }

    fn event(&self, event: &EventFrame) -> Option<Utf8Bytes> {
        if event.topic != self.topic {
            return None;
        }
        event.rendered(CHAT_SLOT, |event| {
            let data = event.data()?;
            let frame = match event.event_type()? {
                "message" => json!({
                    "type": "chat_message",
                    "id": data.get("id"),
                    "sender": self.name(data.get("sender")?),
                    "sender_id": user_id(data.get("sender")?),
                    "content": data.get("content"),
                    "message_type": data.get("message_type"),
                    "created_at": data.get("created_at"),
                    // The media's URL, signed for this connection's user
                    // (`media::SignedMedia` re-signs the event first).
                    "media_file": data.get("media").and_then(|m| m.get("url")).cloned().unwrap_or(Value::Null),
                    "seq": data.get("seq"),
                }),
                "typing" => json!({
                    "type": "typing",
                    "user": self.name(data.get("user_id")?),
                    "user_id": data.get("user_id"),
                    "is_typing": data.get("is_typing"),
                }),
                _ => return None,
            };
            Some(Utf8Bytes::from(frame.to_string()))
        })
    }

    fn ack(&self, _reference: Option<&Value>, _fields: Map<String, Value>) -> Option<Utf8Bytes> {
        None
    }

    fn error(&self, _reference: Option<&Value>, _topic: Option<&Topic>, err: &WsError) -> Option<Utf8Bytes> {
        legacy_error(err)
    }

    fn pong(&self, _reference: Option<&Value>) -> Option<Utf8Bytes> {
        Some(Utf8Bytes::from_static(r#"{"type":"pong"}"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_media_file_names_an_upload() {
        for (value, id) in [
            (json!(null), None),
            (json!(42), Some(42)),
            (json!("42"), Some(42)),
            (json!("/api/v1/media/42/file?viewer=7&expires=1&sig=abc"), Some(42)),
            (json!("https://chat.example.org/api/v1/media/42/thumbnail?viewer=7"), Some(42)),
            (json!("/api/v1/media/42"), Some(42)),
        ] {
            assert_eq!(legacy_media_id(&value), Ok(id), "{value}");
        }
        for value in [
            json!(0),
            json!(-3),
            json!(1.5),
            json!("cat.png"),
            json!("/api/v1/media/abc/file"),
            json!("/api/v1/media/42/file/more"),
            json!("/api/v1/media/42/other"),
            json!({"id": 42}),
            json!(true),
        ] {
            assert!(legacy_media_id(&value).is_err(), "{value}");
        }
    }
}
