//! Voice rooms on the hub: the `voice:{id}` topic (its participants only),
//! the `signal` op in its `room_id` form (the SFU is the peer), and the
//! original design's `/ws/voice-room/{room_id}/` route.
//!
//! Signaling: an offer is answered by the SFU with a `signal` event
//! (`from: "sfu"`) on `user:{id}`, sent to the connection that offered,
//! followed by the SFU's own offer when there are tracks to add; later SFU
//! offers (tracks came or went) are published on `user:{id}`.

use std::sync::Arc;

use async_trait::async_trait;
use palaver_core::{Error, Id, Result};
use palaver_realtime::frame::{FrameError, WsError};
use palaver_realtime::tokio_tungstenite::tungstenite::Utf8Bytes;
use palaver_realtime::{Action, ClientFrame, EventFrame, Hub, OpContext, Protocol, Topic, TopicKind};
use palaver_service::voice::{SignalKind, VoiceService};
use palaver_service::{Principal, Services};
use palaver_store::Store;
use serde_json::{Map, Value, json};

/// Plugs voice rooms into the hub: the `voice` topic kind.
pub fn register(hub: &Hub, services: &Services) {
    hub.register_kind("voice", Arc::new(VoiceKind { store: services.store.clone() }));
}

/// `voice:{id}`: participants may subscribe; anyone else is told the room
/// has no such participant (the original design let anyone listen in).
struct VoiceKind {
    store: Arc<dyn Store>,
}

#[async_trait]
impl TopicKind for VoiceKind {
    async fn authorize(&self, who: &Principal, topic: &Topic, action: Action) -> Result<()> {
        let id = topic.numeric_id()?;
        if action == Action::Send {
            return Err(Error::Forbidden("voice rooms take no messages on their topic".into()));
        }
        match self.store.voice_participant(id, who.id()).await? {
            Some(_) => Ok(()),
            None => Err(Error::Forbidden(format!("join voice room {id} before subscribing to it"))),
        }
    }
}

fn room_id(body: &Map<String, Value>) -> Result<Id> {
    body.get("room_id")
        .and_then(Value::as_i64)
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::invalid("room_id", "must be a voice room id"))
}

/// The `signal` op with `room_id`: media signaling with the room's SFU.
/// The answer (and the SFU's follow-up offer) go to the sending connection
/// as `signal` events on `user:{id}`; the ack carries `status: "ok"`.
pub async fn signal(
    voice: &VoiceService,
    store: &dyn Store,
    ctx: &OpContext,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let room = room_id(body)?;
    let kind: SignalKind = serde_json::from_value(body.get("kind").cloned().unwrap_or(Value::Null))
        .map_err(|_| Error::invalid("kind", "must be offer, answer or ice_candidate"))?;
    let payload = body.get("payload").cloned().unwrap_or(Value::Object(Map::new()));
    // Fresh from the store: a role change (teacher) or a suspension since
    // the socket opened counts.
    let user = store.user_by_id(ctx.user).await?.ok_or_else(|| Error::Unauthorized("unknown user".into()))?;
    if user.is_suspended {
        return Err(Error::Suspended);
    }
    let who = Principal { user, session_id: ctx.principal.session_id.clone() };
    let reply = voice.signal(&who, room, kind, &payload).await?;
    let topic = Topic::user(who.id());
    for (kind, payload) in [("answer", &reply.answer), ("offer", &reply.offer)] {
        if let Some(payload) = payload {
            let data = json!({"room_id": room, "from": "sfu", "kind": kind, "payload": payload});
            ctx.hub.send_to_connection(who.id(), &ctx.connection, &topic, "signal", &data);
        }
    }
    let mut ack = Map::new();
    ack.insert("status".into(), Value::String("ok".into()));
    Ok(ack)
}

/// `/ws/voice-room/{room_id}/`: the original design's voice-room socket.
/// Opening it takes a seat in the room (it is refused with 409 when the
/// room is full) and closing it leaves. Frames:
/// `{"type":"join_room"}` (a no-op once seated), `{"type":"leave_room"}`,
/// `{"type":"mute_toggle","is_muted":true}`; `audio_data` is answered with
/// an error: audio flows over WebRTC (see `signal`). Members receive
/// `{"type":"participant_joined","user":display_name,"user_id":id,
/// "participant_count":n}`, `participant_left` alike,
/// `{"type":"mute_toggle","user":display_name,"user_id":id,"is_muted":b}`,
/// and the native event types with their data. The original design put
/// the user's email in `user`; emails are private, so other participants
/// see a display name and an id instead.
pub struct LegacyVoiceProtocol {
    room_id: Id,
}

impl LegacyVoiceProtocol {
    /// The protocol of one socket in one room.
    pub fn new(room_id: Id) -> Self {
        Self { room_id }
    }
}

fn legacy_error(code: &str, message: impl Into<String>) -> FrameError {
    FrameError { reference: None, error: WsError::new(code, message) }
}

impl Protocol for LegacyVoiceProtocol {
    fn decode(&self, text: &str) -> std::result::Result<ClientFrame, FrameError> {
        let map = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(legacy_error("bad_request", "a frame is a JSON object")),
            Err(e) => return Err(legacy_error("malformed_json", format!("not valid JSON: {e}"))),
        };
        let mut body = Map::new();
        body.insert("room_id".into(), json!(self.room_id));
        let action = match map.get("type").and_then(Value::as_str) {
            Some("ping") => return Ok(ClientFrame { op: "ping".into(), reference: None, body: Map::new() }),
            Some("join_room") => "join",
            Some("leave_room") => "leave",
            Some("mute_toggle") => {
                let muted = map
                    .get("is_muted")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| legacy_error("validation_failed", "`is_muted` (true or false) is required"))?;
                body.insert("is_muted".into(), Value::Bool(muted));
                "mute"
            }
            Some("audio_data") => {
                return Err(legacy_error(
                    "use_webrtc",
                    "audio does not travel over this socket: connect WebRTC media to the room's SFU \
                     (POST /api/v1/voice-rooms/{id}/join, then the signal op with room_id on /ws)",
                ));
            }
            _ => {
                return Err(legacy_error(
                    "unknown_type",
                    "send join_room, leave_room or mute_toggle (audio goes over WebRTC), or ping",
                ));
            }
        };
        body.insert("action".into(), json!(action));
        Ok(ClientFrame { op: "voice_legacy".into(), reference: None, body })
    }

    fn event(&self, event: &EventFrame) -> Option<Utf8Bytes> {
        if event.topic.kind() != "voice" {
            return None;
        }
        let data = event.data()?;
        let kind = event.event_type()?;
        let frame = match kind {
            "participant_joined" | "participant_left" => {
                let mut frame = json!({
                    "type": kind,
                    "user": data.get("display_name").cloned().unwrap_or(Value::Null),
                    "user_id": data.get("user_id").cloned().unwrap_or(Value::Null),
                    "participant_count": data.get("participant_count").cloned().unwrap_or(Value::Null),
                });
                if let (Some(map), Some(extra)) = (frame.as_object_mut(), data.as_object()) {
                    for (k, v) in extra {
                        map.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                frame
            }
            "mute_changed" => json!({
                "type": "mute_toggle",
                "user": data.get("display_name").cloned().unwrap_or(Value::Null),
                "user_id": data.get("user_id").cloned().unwrap_or(Value::Null),
                "is_muted": data.get("is_muted").cloned().unwrap_or(Value::Null),
            }),
            other => {
                let mut frame = data.clone();
                if let Some(map) = frame.as_object_mut() {
                    map.insert("type".into(), json!(other));
                }
                frame
            }
        };
        Some(Utf8Bytes::from(frame.to_string()))
    }

    fn ack(&self, _reference: Option<&Value>, _fields: Map<String, Value>) -> Option<Utf8Bytes> {
        None
    }

    fn error(&self, _reference: Option<&Value>, _topic: Option<&Topic>, err: &WsError) -> Option<Utf8Bytes> {
        Some(Utf8Bytes::from(json!({"type": "error", "code": err.code, "message": err.message}).to_string()))
    }

    fn pong(&self, _reference: Option<&Value>) -> Option<Utf8Bytes> {
        Some(Utf8Bytes::from(json!({"type": "pong"}).to_string()))
    }
}

/// The legacy socket's ops: join (idempotent), leave, mute.
pub struct LegacyVoiceOps {
    /// The voice service.
    pub voice: Arc<VoiceService>,
    /// The store, to read the user fresh.
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl palaver_realtime::OpHandler for LegacyVoiceOps {
    async fn handle(&self, ctx: &OpContext, body: Map<String, Value>) -> Result<Map<String, Value>> {
        let room = room_id(&body)?;
        let user = self.store.user_by_id(ctx.user).await?.ok_or_else(|| Error::Unauthorized("unknown user".into()))?;
        let who = Principal { user, session_id: ctx.principal.session_id.clone() };
        match body.get("action").and_then(Value::as_str) {
            Some("join") => {
                self.voice.join(&who, room).await?;
            }
            Some("leave") => self.voice.leave(&who, room).await?,
            Some("mute") => {
                let muted = body.get("is_muted").and_then(Value::as_bool).unwrap_or(false);
                self.voice.set_muted(&who, room, who.id(), muted).await?;
            }
            _ => return Err(Error::BadRequest("unknown voice-room action".into())),
        }
        Ok(Map::new())
    }
}
