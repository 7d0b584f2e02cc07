//! The JSON frames of the `/ws` protocol (see docs/API.md), and the
//! encoding of events on the broker.
//!
//! An event is serialized once, where it is published, into the bytes of
//! its final frame. The broker carries those bytes behind a short header;
//! each node turns them into one [`EventFrame`] whose text is shared by
//! every receiver (cloning it is a reference count).

use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use palaver_core::{Error, UserId};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::topic::Topic;

/// Longest `ref` a client may attach to a frame.
pub const MAX_REF_LEN: usize = 64;

/// How many wire shapes (protocols other than the native one) may cache a
/// rendering of the same event.
pub const RENDER_SLOTS: usize = 2;

/// One event as every receiver on this node gets it.
pub struct EventFrame {
    /// The topic it was published on.
    pub topic: Topic,
    /// Its sequence number, for sequenced topics.
    pub seq: Option<i64>,
    /// A user who does not receive it (the typer of a `typing` event).
    pub exclude_user: Option<UserId>,
    /// The serialized `{"op":"event",...}` frame.
    pub text: Utf8Bytes,
    parsed: OnceLock<Option<Value>>,
    rendered: [OnceLock<Option<Utf8Bytes>>; RENDER_SLOTS],
}

impl std::fmt::Debug for EventFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFrame").field("topic", &self.topic).field("seq", &self.seq).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EventOut<'a> {
    op: &'static str,
    topic: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    data: &'a Value,
}

impl EventFrame {
    /// Builds a frame from its parts (replayed and snapshot events, which
    /// are for one receiver).
    pub fn build(topic: &Topic, event_type: &str, seq: Option<i64>, data: &Value) -> Arc<Self> {
        let text = serde_json::to_string(&EventOut { op: "event", topic: topic.as_str(), event_type, seq, data })
            .unwrap_or_default();
        Arc::new(Self::from_parts(topic.clone(), seq, None, Utf8Bytes::from(text)))
    }

    fn from_parts(topic: Topic, seq: Option<i64>, exclude_user: Option<UserId>, text: Utf8Bytes) -> Self {
        Self { topic, seq, exclude_user, text, parsed: OnceLock::new(), rendered: Default::default() }
    }

    /// The frame parsed back into JSON, once per node, for protocols that
    /// reshape events (the original design's routes).
    pub fn value(&self) -> Option<&Value> {
        self.parsed.get_or_init(|| serde_json::from_str(self.text.as_str()).ok()).as_ref()
    }

    /// The event type.
    pub fn event_type(&self) -> Option<&str> {
        self.value()?.get("type")?.as_str()
    }

    /// The event's payload.
    pub fn data(&self) -> Option<&Value> {
        self.value()?.get("data")
    }

    /// A rendering of this event in another wire shape, computed by the
    /// first receiver that needs it and shared by the others.
    pub fn rendered(&self, slot: usize, render: impl FnOnce(&Self) -> Option<Utf8Bytes>) -> Option<Utf8Bytes> {
        let cell = self.rendered.get(slot)?;
        cell.get_or_init(|| render(self)).clone()
    }
}

/// What travels on a topic's broker channel.
#[derive(Debug)]
pub(crate) enum BrokerMsg {
    /// An event for the topic's subscribers.
    Event(Arc<EventFrame>),
    /// End `user`'s subscriptions to the topic.
    Revoke(UserId),
    /// Close every connection of `user` (sent on `user:{id}`).
    Kick { user: UserId, code: u16, reason: String },
    /// An event for one connection (`{node}/{conn}`), whatever it is
    /// subscribed to (sent on its user's `user:{id}`).
    Direct { connection: String, frame: Arc<EventFrame> },
}

/// Encodes an event for the broker: `E{seq}|{exclude}|{frame}`. The frame
/// is serialized straight into the payload buffer.
pub(crate) fn encode_event(
    topic: &Topic,
    event_type: &str,
    seq: Option<i64>,
    exclude_user: Option<UserId>,
    data: &Value,
) -> Option<Bytes> {
    let mut buf = Vec::with_capacity(160);
    buf.push(b'E');
    if let Some(seq) = seq {
        let _ = write!(buf, "{seq}");
    }
    buf.push(b'|');
    if let Some(user) = exclude_user {
        let _ = write!(buf, "{user}");
    }
    buf.push(b'|');
    let event = EventOut { op: "event", topic: topic.as_str(), event_type, seq, data };
    match serde_json::to_writer(&mut buf, &event) {
        Ok(()) => Some(Bytes::from(buf)),
        Err(e) => {
            tracing::error!(error = %e, topic = %topic, "cannot serialize an event");
            None
        }
    }
}

/// `D{node}/{conn}|{topic}|{frame}`: an event for one connection.
pub(crate) fn encode_direct(connection: &str, topic: &Topic, event_type: &str, data: &Value) -> Option<Bytes> {
    let mut buf = Vec::with_capacity(160);
    buf.push(b'D');
    buf.extend_from_slice(connection.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(topic.as_str().as_bytes());
    buf.push(b'|');
    let event = EventOut { op: "event", topic: topic.as_str(), event_type, seq: None, data };
    serde_json::to_writer(&mut buf, &event).ok()?;
    Some(Bytes::from(buf))
}

/// `R{user}`.
pub(crate) fn encode_revoke(user: UserId) -> Bytes {
    Bytes::from(format!("R{user}"))
}

/// `K{user}|{code}|{reason}`.
pub(crate) fn encode_kick(user: UserId, code: u16, reason: &str) -> Bytes {
    Bytes::from(format!("K{user}|{code}|{reason}"))
}

/// Decodes a broker payload; `None` for anything malformed (logged).
pub(crate) fn decode(topic: Topic, payload: Bytes) -> Option<BrokerMsg> {
    let kind = *payload.first()?;
    let rest = payload.slice(1..);
    match kind {
        b'E' => {
            let first = rest.iter().position(|&b| b == b'|')?;
            let second = first + 1 + rest[first + 1..].iter().position(|&b| b == b'|')?;
            let number = |bytes: &[u8]| -> Option<Option<i64>> {
                if bytes.is_empty() {
                    return Some(None);
                }
                std::str::from_utf8(bytes).ok()?.parse().ok().map(Some)
            };
            let seq = number(&rest[..first])?;
            let exclude = number(&rest[first + 1..second])?;
            let text = Utf8Bytes::try_from(rest.slice(second + 1..)).ok()?;
            Some(BrokerMsg::Event(Arc::new(EventFrame::from_parts(topic, seq, exclude, text))))
        }
        b'R' => std::str::from_utf8(&rest).ok()?.parse().ok().map(BrokerMsg::Revoke),
        b'D' => {
            let first = rest.iter().position(|&b| b == b'|')?;
            let second = first + 1 + rest[first + 1..].iter().position(|&b| b == b'|')?;
            let connection = std::str::from_utf8(&rest[..first]).ok()?.to_owned();
            let event_topic = Topic::trusted(std::str::from_utf8(&rest[first + 1..second]).ok()?);
            let text = Utf8Bytes::try_from(rest.slice(second + 1..)).ok()?;
            let frame = Arc::new(EventFrame::from_parts(event_topic, None, None, text));
            Some(BrokerMsg::Direct { connection, frame })
        }
        b'K' => {
            let text = std::str::from_utf8(&rest).ok()?;
            let mut parts = text.splitn(3, '|');
            let user = parts.next()?.parse().ok()?;
            let code = parts.next()?.parse().ok()?;
            let reason = parts.next().unwrap_or_default().to_owned();
            Some(BrokerMsg::Kick { user, code, reason })
        }
        _ => None,
    }
}

/// A client frame: its op, its `ref` (echoed in the answer), and the rest.
#[derive(Debug, Clone)]
pub struct ClientFrame {
    /// The op name.
    pub op: String,
    /// The client's correlation id: a string or a number.
    pub reference: Option<Value>,
    /// Every other field.
    pub body: Map<String, Value>,
}

/// A frame the hub refuses: the error and the `ref`, if one could be read.
#[derive(Debug)]
pub struct FrameError {
    /// The `ref` of the frame, if it had a valid one.
    pub reference: Option<Value>,
    /// The problem.
    pub error: WsError,
}

/// An error as an `error` frame carries it.
#[derive(Debug, Clone)]
pub struct WsError {
    /// Stable code (the REST codes, plus `unknown_op`, `unsupported_frame`,
    /// `not_subscribed`, `resync_required`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structure (`fields` for validation errors, `retry_after_ms`).
    pub details: Value,
}

impl WsError {
    /// An error with a code of its own.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_owned(), message: message.into(), details: json!({}) }
    }
}

impl From<Error> for WsError {
    fn from(err: Error) -> Self {
        if let Error::Internal(detail) = &err {
            tracing::error!(error = %detail, "internal error in a WebSocket op");
        }
        let details = match &err {
            Error::Validation(fields) => json!({ "fields": fields }),
            Error::RateLimited { retry_after_secs } => json!({ "retry_after": retry_after_secs }),
            _ => json!({}),
        };
        Self { code: err.code().to_owned(), message: err.public_message(), details }
    }
}

impl ClientFrame {
    /// Parses a native `/ws` frame.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|e| FrameError {
            reference: None,
            error: Error::MalformedJson(format!("not valid JSON: {e}")).into(),
        })?;
        let Value::Object(mut body) = value else {
            return Err(FrameError {
                reference: None,
                error: Error::BadRequest("a frame is a JSON object with an `op`".into()).into(),
            });
        };
        let reference = match body.remove("ref") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= MAX_REF_LEN => Some(Value::String(s)),
            Some(n @ Value::Number(_)) => Some(n),
            Some(_) => {
                return Err(FrameError {
                    reference: None,
                    error: Error::invalid(
                        "ref",
                        format!("must be a string of at most {MAX_REF_LEN} characters or a number"),
                    )
                    .into(),
                });
            }
        };
        let op = match body.remove("op") {
            Some(Value::String(op)) => op,
            None => return Err(FrameError { reference, error: Error::invalid("op", "is required").into() }),
            Some(_) => return Err(FrameError { reference, error: Error::invalid("op", "must be a string").into() }),
        };
        Ok(Self { op, reference, body })
    }

    /// The body as an op's typed fields; a missing or mistyped field is a
    /// `validation_failed` error naming it.
    pub fn fields<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        parse_fields(&self.body)
    }
}

/// Deserializes op fields, naming the field in errors.
pub fn parse_fields<T: serde::de::DeserializeOwned>(body: &Map<String, Value>) -> Result<T, Error> {
    T::deserialize(Value::Object(body.clone())).map_err(|e| {
        let message = e.to_string();
        if let Some(rest) = message.strip_prefix("missing field `")
            && let Some(name) = rest.split('`').next()
        {
            return Error::invalid(name, "is required");
        }
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some(name) = rest.split('`').next()
        {
            return Error::invalid(name, "is not a known field");
        }
        Error::invalid("frame", message)
    })
}

/// `{"op":"ack","ref":...}` plus the handler's fields.
pub fn ack(reference: Option<&Value>, extra: Map<String, Value>) -> Utf8Bytes {
    let mut frame = Map::with_capacity(extra.len() + 2);
    frame.insert("op".into(), Value::String("ack".into()));
    if let Some(r) = reference {
        frame.insert("ref".into(), r.clone());
    }
    frame.extend(extra);
    Utf8Bytes::from(Value::Object(frame).to_string())
}

/// `{"op":"error","ref":...,"code":...,"message":...,"details":{...}}`, with
/// the topic when the error is about one.
pub fn error(reference: Option<&Value>, topic: Option<&Topic>, err: &WsError) -> Utf8Bytes {
    let mut frame = Map::with_capacity(6);
    frame.insert("op".into(), Value::String("error".into()));
    if let Some(r) = reference {
        frame.insert("ref".into(), r.clone());
    }
    if let Some(t) = topic {
        frame.insert("topic".into(), Value::String(t.as_str().to_owned()));
    }
    frame.insert("code".into(), Value::String(err.code.clone()));
    frame.insert("message".into(), Value::String(err.message.clone()));
    frame.insert("details".into(), err.details.clone());
    Utf8Bytes::from(Value::Object(frame).to_string())
}

/// `{"op":"pong","ref":...}`.
pub fn pong(reference: Option<&Value>) -> Utf8Bytes {
    let frame = match reference {
        Some(r) => json!({"op": "pong", "ref": r}),
        None => json!({"op": "pong"}),
    };
    Utf8Bytes::from(frame.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_broker_encoding() {
        let topic = Topic::parse("chat:9").unwrap();
        let payload = encode_event(&topic, "message", Some(12), Some(4), &json!({"a": "b|c"})).unwrap();
        let Some(BrokerMsg::Event(frame)) = decode(topic.clone(), payload) else { panic!("not an event") };
        assert_eq!((frame.seq, frame.exclude_user), (Some(12), Some(4)));
        let v: Value = serde_json::from_str(frame.text.as_str()).unwrap();
        assert_eq!(v, json!({"op": "event", "topic": "chat:9", "type": "message", "seq": 12, "data": {"a": "b|c"}}));
        let payload = encode_event(&topic, "typing", None, None, &json!(1)).unwrap();
        let Some(BrokerMsg::Event(frame)) = decode(topic.clone(), payload) else { panic!("not an event") };
        assert_eq!((frame.seq, frame.exclude_user), (None, None));
        assert!(matches!(decode(topic.clone(), encode_revoke(5)), Some(BrokerMsg::Revoke(5))));
        let Some(BrokerMsg::Kick { user, code, reason }) = decode(topic.clone(), encode_kick(5, 4001, "a|b")) else {
            panic!("not a kick")
        };
        assert_eq!((user, code, reason.as_str()), (5, 4001, "a|b"));
        let payload = encode_direct("n1/7", &Topic::parse("call:3").unwrap(), "signal", &json!({"k": 1})).unwrap();
        let Some(BrokerMsg::Direct { connection, frame }) = decode(topic.clone(), payload) else {
            panic!("not direct")
        };
        assert_eq!((connection.as_str(), frame.topic.as_str()), ("n1/7", "call:3"));
        assert_eq!(frame.event_type(), Some("signal"));
        for junk in [&b""[..], b"X1", b"E1", b"Ex||{}", b"E||\xff", b"Dn1/7|call:3"] {
            assert!(decode(topic.clone(), Bytes::copy_from_slice(junk)).is_none());
        }
    }

    #[test]
    fn client_frames_are_checked() {
        let f = ClientFrame::parse(r#"{"op":"subscribe","ref":"1","topic":"chat:1"}"#).unwrap();
        assert_eq!((f.op.as_str(), f.reference), ("subscribe", Some(json!("1"))));
        assert_eq!(f.body.len(), 1);
        assert_eq!(ClientFrame::parse("nope").unwrap_err().error.code, "malformed_json");
        assert_eq!(ClientFrame::parse("[1]").unwrap_err().error.code, "bad_request");
        let e = ClientFrame::parse(r#"{"ref":7}"#).unwrap_err();
        assert_eq!((e.reference, e.error.code.as_str()), (Some(json!(7)), "validation_failed"));
        assert_eq!(ClientFrame::parse(r#"{"op":"x","ref":{}}"#).unwrap_err().error.code, "validation_failed");
    }
}
