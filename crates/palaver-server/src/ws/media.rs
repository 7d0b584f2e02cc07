//! Media URLs in live chat events, signed for each connection.
//!
//! A message event is published once per room and reaches every member's
//! connections, but media URLs are signed for one viewer. The chat service
//! publishes URLs signed for the sender; this wrapper re-signs the `media`
//! of `message` and `message_edited` events for the user of the connection
//! it serves, so each member gets a URL that is theirs (and stops working
//! when they lose access). Other events pass through untouched.

use palaver_core::UserId;
use palaver_crypto::{MediaUrls, Variant};
use palaver_realtime::frame::{FrameError, WsError};
use palaver_realtime::tokio_tungstenite::tungstenite::Utf8Bytes;
use palaver_realtime::{ClientFrame, EventFrame, Protocol, Topic};
use serde_json::{Map, Value};

/// Wraps a protocol, re-signing media URLs in chat events for `viewer`.
pub struct SignedMedia<P> {
    inner: P,
    viewer: UserId,
    urls: MediaUrls,
}

impl<P> SignedMedia<P> {
    /// The wrapper for a connection of `viewer`.
    pub fn new(inner: P, viewer: UserId, urls: MediaUrls) -> Self {
        Self { inner, viewer, urls }
    }
}

/// The event with its media URLs signed for `viewer`, when it carries media.
pub fn resign(event: &EventFrame, viewer: UserId, urls: &MediaUrls) -> Option<std::sync::Arc<EventFrame>> {
    if event.topic.kind() != "chat" || !matches!(event.event_type()?, "message" | "message_edited") {
        return None;
    }
    let data = event.data()?;
    let media = data.get("media")?.as_object()?;
    let id = media.get("id")?.as_i64()?;
    let now = chrono::Utc::now().timestamp();
    let mut data = data.clone();
    let target = data.get_mut("media")?.as_object_mut()?;
    target.insert("url".into(), Value::String(urls.url(id, Variant::File, viewer, now)));
    if media.get("thumbnail_url").is_some_and(|t| !t.is_null()) {
        target.insert("thumbnail_url".into(), Value::String(urls.url(id, Variant::Thumbnail, viewer, now)));
    }
    Some(EventFrame::build(&event.topic, event.event_type()?, event.seq, &data))
}

impl<P: Protocol> Protocol for SignedMedia<P> {
    fn decode(&self, text: &str) -> Result<ClientFrame, FrameError> {
        self.inner.decode(text)
    }

    fn event(&self, event: &EventFrame) -> Option<Utf8Bytes> {
        match resign(event, self.viewer, &self.urls) {
            Some(signed) => self.inner.event(&signed),
            None => self.inner.event(event),
        }
    }

    fn ack(&self, reference: Option<&Value>, fields: Map<String, Value>) -> Option<Utf8Bytes> {
        self.inner.ack(reference, fields)
    }

    fn error(&self, reference: Option<&Value>, topic: Option<&Topic>, err: &WsError) -> Option<Utf8Bytes> {
        self.inner.error(reference, topic, err)
    }

    fn pong(&self, reference: Option<&Value>) -> Option<Utf8Bytes> {
        self.inner.pong(reference)
    }
}
