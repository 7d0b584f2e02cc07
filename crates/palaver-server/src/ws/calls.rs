//! Calls on the hub: the `call:{id}` topic (its parties only), the `signal`
//! op in its `call_id` form, `call_accept` (accept on this device), and
//! the original design's `/ws/call/{call_id}/` route.
//!
//! Devices. Once a call is answered its signals reach one device per
//! party: the hub's per-connection delivery ([`Hub::send_to_connection`])
//! sends them to the connection the call is bound to (the receiver's
//! accepting connection; the caller's connection that signalled first),
//! on whichever node it is. Before that, signals are published on
//! `call:{id}` to every subscribed device of the peer (not to the sender):
//! clients subscribe to `call:{id}` when the call starts ringing for them
//! (`call_incoming`, `match_found`) or when they place it.

use std::sync::Arc;

use async_trait::async_trait;
use palaver_core::{Error, Id, Result, UserId};
use palaver_realtime::frame::{FrameError, WsError};
use palaver_realtime::tokio_tungstenite::tungstenite::Utf8Bytes;
use palaver_realtime::{Action, ClientFrame, EventFrame, Hub, OpContext, OpHandler, Protocol, Topic, TopicKind};
use palaver_rtc::{CallService, SignalDelivery, SignalTarget};
use palaver_service::{Principal, Services};
use palaver_store::Store;
use serde_json::{Map, Value, json};

use crate::rtc::Rtc;

/// Plugs calls into the hub: the `call` topic kind and the call ops.
pub fn register(hub: &Hub, services: &Services, rtc: &Rtc) {
    hub.register_kind("call", Arc::new(CallKind { store: services.store.clone() }));
    let ops =
        Arc::new(CallOps { store: services.store.clone(), calls: rtc.calls.clone(), voice: services.voice.clone() });
    hub.register_op("signal", ops.clone());
    hub.register_op("call_accept", ops);
}

/// `call:{id}`: the call's two parties may subscribe; anyone else is told
/// it does not exist.
struct CallKind {
    store: Arc<dyn Store>,
}

#[async_trait]
impl TopicKind for CallKind {
    async fn authorize(&self, who: &Principal, topic: &Topic, _action: Action) -> Result<()> {
        let user = who.id();
        let id = topic.numeric_id()?;
        match self.store.call_by_id(id).await? {
            Some(call) if call.is_party(user) => Ok(()),
            _ => Err(Error::not_found("call", id)),
        }
    }

    fn tracks_viewers(&self) -> bool {
        false
    }
}

/// `signal` (call_id form) and `call_accept`.
struct CallOps {
    store: Arc<dyn Store>,
    calls: Arc<CallService>,
    /// Voice rooms: `signal` with `room_id` goes to the room's SFU.
    voice: Arc<palaver_service::VoiceService>,
}

fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a Value> {
    body.get(name).ok_or_else(|| Error::invalid(name, "is required"))
}

fn call_id(body: &Map<String, Value>) -> Result<Id> {
    field(body, "call_id")?.as_i64().filter(|id| *id > 0).ok_or_else(|| Error::invalid("call_id", "must be a call id"))
}

/// Delivers a relayed signal: to the one connection the call is bound to,
/// or on the call's topic to the peer's subscribed devices (never back to
/// the sender).
pub fn deliver(hub: &Hub, from: UserId, delivery: SignalDelivery) {
    let topic = Topic::trusted(&delivery.topic);
    match &delivery.target {
        SignalTarget::Device { user, connection } => {
            hub.send_to_connection(*user, connection, &topic, delivery.event_type, &delivery.data);
        }
        SignalTarget::AllDevices(_) => hub.publish_event(&topic, delivery.event_type, None, Some(from), &delivery.data),
    }
}

#[async_trait]
impl OpHandler for CallOps {
    async fn handle(&self, ctx: &OpContext, body: Map<String, Value>) -> Result<Map<String, Value>> {
        let device = ctx.connection.clone();
        if body.contains_key("room_id") && !body.contains_key("call_id") {
            return crate::ws::voice::signal(&self.voice, &*self.store, ctx, &body).await;
        }
        let id = call_id(&body)?;
        // Fresh from the store: a suspension or a role change (screen
        // sharing is for teachers) since the socket opened counts.
        let user = self.store.user_by_id(ctx.user).await?.ok_or_else(|| Error::Unauthorized("unknown user".into()))?;
        if user.is_suspended {
            return Err(Error::Suspended);
        }
        let who = &Principal { user, session_id: ctx.principal.session_id.clone() };
        if let Some(target) = body.get("target_user") {
            // The original design names the peer; it must be the other party.
            let call = self.store.call_by_id(id).await?.filter(|c| c.is_party(who.id()));
            let call = call.ok_or_else(|| Error::not_found("call", id))?;
            if target.as_i64() != Some(call.peer_of(who.id())) {
                return Err(Error::Forbidden("target_user is not the other party of this call".into()));
            }
        }
        let mut ack = Map::new();
        ack.insert("device".into(), Value::String(device.clone()));
        if body.contains_key("kind") {
            let kind = field(&body, "kind")?.as_str().ok_or_else(|| Error::invalid("kind", "must be a string"))?;
            let payload = body.get("payload").cloned().unwrap_or(Value::Object(Map::new()));
            let delivery = self.calls.relay_signal(who, &device, id, kind, payload).await?;
            ack.insert("status".into(), Value::String(delivery.status.as_str().into()));
            deliver(&ctx.hub, who.id(), delivery);
        } else {
            let call = self.calls.accept(who, id, Some(&device)).await?;
            ack.insert("status".into(), Value::String(call.status.as_str().into()));
        }
        Ok(ack)
    }
}

/// `/ws/call/{call_id}/`: the original design's call socket. The client
/// sends `{"type":"offer","offer":{…},"target_user":12}` (also `answer`
/// with `answer`, `ice_candidate` with `candidate`, and `hangup`); the peer
/// receives the same shape with `from_user` and `call_id` added. Other
/// frames and errors are `{"type":"error","code","message"}`.
pub struct LegacyCallProtocol {
    call_id: Id,
}

impl LegacyCallProtocol {
    /// The protocol of one socket on one call.
    pub fn new(call_id: Id) -> Self {
        Self { call_id }
    }
}

fn legacy_error(code: &str, message: impl Into<String>) -> FrameError {
    FrameError { reference: None, error: WsError::new(code, message) }
}

impl Protocol for LegacyCallProtocol {
    fn decode(&self, text: &str) -> Result<ClientFrame, FrameError> {
        let map = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(legacy_error("bad_request", "a frame is a JSON object")),
            Err(e) => return Err(legacy_error("malformed_json", format!("not valid JSON: {e}"))),
        };
        let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
        let payload_field = match kind {
            "ping" => return Ok(ClientFrame { op: "ping".into(), reference: None, body: Map::new() }),
            "offer" => "offer",
            "answer" => "answer",
            "ice_candidate" => "candidate",
            "hangup" => "",
            _ => {
                return Err(legacy_error(
                    "unknown_type",
                    "send offer, answer, ice_candidate or hangup (with target_user), or ping",
                ));
            }
        };
        let mut body = Map::new();
        body.insert("call_id".into(), json!(self.call_id));
        body.insert("kind".into(), json!(kind));
        let payload = if payload_field.is_empty() {
            json!({})
        } else {
            map.get(payload_field)
                .cloned()
                .ok_or_else(|| legacy_error("validation_failed", format!("`{payload_field}` is required")))?
        };
        body.insert("payload".into(), payload);
        if let Some(target) = map.get("target_user") {
            body.insert("target_user".into(), target.clone());
        }
        Ok(ClientFrame { op: "signal".into(), reference: None, body })
    }

    fn event(&self, event: &EventFrame) -> Option<Utf8Bytes> {
        if event.topic.kind() != "call" {
            return None;
        }
        let data = event.data()?;
        match event.event_type()? {
            "signal" => {
                let kind = data.get("kind")?.as_str()?;
                let mut frame = Map::new();
                frame.insert("type".into(), json!(kind));
                let field = match kind {
                    "offer" => Some("offer"),
                    "answer" => Some("answer"),
                    "ice_candidate" => Some("candidate"),
                    _ => None,
                };
                if let Some(field) = field {
                    frame.insert(field.into(), data.get("payload").cloned().unwrap_or(Value::Null));
                } else {
                    frame.insert("payload".into(), data.get("payload").cloned().unwrap_or(Value::Null));
                }
                frame.insert("from_user".into(), data.get("from").cloned().unwrap_or(Value::Null));
                frame.insert("call_id".into(), json!(self.call_id));
                Some(Utf8Bytes::from(Value::Object(frame).to_string()))
            }
            "call_state" => {
                let mut frame = json!({"type": "call_state", "call": data});
                if let Some(status) = data.get("status") {
                    frame["status"] = status.clone();
                }
                Some(Utf8Bytes::from(frame.to_string()))
            }
            "screen_share" => {
                let frame =
                    json!({"type": "screen_share", "from_user": data.get("from"), "active": data.get("active")});
                Some(Utf8Bytes::from(frame.to_string()))
            }
            _ => None,
        }
    }

    fn ack(&self, _reference: Option<&Value>, _fields: Map<String, Value>) -> Option<Utf8Bytes> {
        None
    }

    fn error(&self, _reference: Option<&Value>, _topic: Option<&Topic>, err: &WsError) -> Option<Utf8Bytes> {
        Some(Utf8Bytes::from(json!({"type": "error", "code": err.code, "message": err.message}).to_string()))
    }

    fn pong(&self, _reference: Option<&Value>) -> Option<Utf8Bytes> {
        Some(Utf8Bytes::from_static(r#"{"type":"pong"}"#))
    }
}
