//! The original design's WebSocket routes, as thin protocols over the hub
//! (their frame shapes are a contract with clients written for them).

use palaver_realtime::frame::{FrameError, WsError};
use palaver_realtime::tokio_tungstenite::tungstenite::Utf8Bytes;
use palaver_realtime::{ClientFrame, EventFrame, Protocol, Topic};
use serde_json::{Map, Value, json};

/// Render slot of `/ws/notifications/` frames (see [`EventFrame::rendered`]).
const NOTIFICATIONS_SLOT: usize = 0;

/// `/ws/notifications/`: each notification change (created, updated,
/// read, deleted) as one JSON frame, the `notification` event's payload
/// with `"type": "notification"` added. Clients may send
/// `{"type":"ping"}` (answered `{"type":"pong"}`); nothing else.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotificationsProtocol;

fn parse_object(text: &str) -> Result<Map<String, Value>, FrameError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FrameError { reference: None, error: WsError::new("bad_request", "a frame is a JSON object") }),
        Err(e) => {
            Err(FrameError { reference: None, error: WsError::new("malformed_json", format!("not valid JSON: {e}")) })
        }
    }
}

/// `{"type":"error","code":...,"message":...}`, the legacy routes' error.
fn legacy_error(err: &WsError) -> Option<Utf8Bytes> {
    Some(Utf8Bytes::from(json!({"type": "error", "code": err.code, "message": err.message}).to_string()))
}

impl Protocol for NotificationsProtocol {
    fn decode(&self, text: &str) -> Result<ClientFrame, FrameError> {
        let map = parse_object(text)?;
        match map.get("type").and_then(Value::as_str) {
            Some("ping") => Ok(ClientFrame { op: "ping".into(), reference: None, body: Map::new() }),
            _ => Err(FrameError {
                reference: None,
                error: WsError::new(
                    "unknown_type",
                    "this socket only sends notifications; send {\"type\":\"ping\"} to check it",
                ),
            }),
        }
    }

    fn event(&self, event: &EventFrame) -> Option<Utf8Bytes> {
        if event.topic.kind() != "user" {
            return None;
        }
        event.rendered(NOTIFICATIONS_SLOT, |event| {
            if event.event_type()? != "notification" {
                return None;
            }
            let mut frame = Map::new();
            frame.insert("type".into(), Value::String("notification".into()));
            for (k, v) in event.data()?.as_object()? {
                frame.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Some(Utf8Bytes::from(Value::Object(frame).to_string()))
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
