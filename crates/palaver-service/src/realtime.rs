//! The seam between services and the real-time hub.
//!
//! Services (chat, calls, voice rooms, notifications) publish live events and
//! ask who is connected through [`Realtime`]; the hub in `palaver-realtime`
//! implements it. The hub in turn calls the services (to authorize a
//! subscription, to store a message sent over the socket), so the two are
//! built in two steps: services first with an empty [`RealtimeHandle`], then
//! the hub, which the server installs with [`RealtimeHandle::set`].
//!
//! Live events are best effort by design: what must not be lost is in the
//! store, and clients recover it through `seq` (chat) or by refetching.

use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use palaver_core::UserId;
use tokio::sync::broadcast;

/// What services need from the real-time hub.
#[async_trait]
pub trait Realtime: Send + Sync {
    /// Publishes an event of `event_type` on `topic` (e.g. `chat:42`,
    /// `user:7`) to every subscriber on every node. `seq` is the per-room
    /// sequence number for chat events that carry one. Never blocks.
    fn publish(&self, topic: &str, event_type: &str, seq: Option<i64>, data: serde_json::Value);

    /// Ends every subscription of `user_id` to `topic`, on every node (a
    /// participant removed from a room stops receiving at once).
    fn revoke(&self, topic: &str, user_id: UserId);

    /// Those of `user_ids` that have a connected device subscribed to
    /// `topic` right now, on any node (a room "open" on a device).
    async fn viewers(&self, topic: &str, user_ids: &[UserId]) -> Vec<UserId>;

    /// Whether `user_id` has at least one connected device on any node.
    async fn is_online(&self, user_id: UserId) -> bool;
}

/// A late-bound [`Realtime`]: empty (every call a no-op, nobody online)
/// until the server installs the hub.
#[derive(Clone, Default)]
pub struct RealtimeHandle(Arc<OnceLock<Arc<dyn Realtime>>>);

impl std::fmt::Debug for RealtimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeHandle").field("installed", &self.0.get().is_some()).finish()
    }
}

impl RealtimeHandle {
    /// Installs the hub. Only the first call takes effect; returns whether
    /// this one did.
    pub fn set(&self, realtime: Arc<dyn Realtime>) -> bool {
        self.0.set(realtime).is_ok()
    }

    fn get(&self) -> Option<&Arc<dyn Realtime>> {
        self.0.get()
    }
}

#[async_trait]
impl Realtime for RealtimeHandle {
    fn publish(&self, topic: &str, event_type: &str, seq: Option<i64>, data: serde_json::Value) {
        if let Some(rt) = self.get() {
            rt.publish(topic, event_type, seq, data);
        }
    }

    fn revoke(&self, topic: &str, user_id: UserId) {
        if let Some(rt) = self.get() {
            rt.revoke(topic, user_id);
        }
    }

    async fn viewers(&self, topic: &str, user_ids: &[UserId]) -> Vec<UserId> {
        match self.get() {
            Some(rt) => rt.viewers(topic, user_ids).await,
            None => Vec::new(),
        }
    }

    async fn is_online(&self, user_id: UserId) -> bool {
        match self.get() {
            Some(rt) => rt.is_online(user_id).await,
            None => false,
        }
    }
}

/// One publication seen by [`RecordingRealtime`].
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The topic.
    pub topic: String,
    /// The event type.
    pub event_type: String,
    /// The chat sequence number, if any.
    pub seq: Option<i64>,
    /// The payload.
    pub data: serde_json::Value,
}

/// A [`Realtime`] for service tests: records publications and revocations,
/// and answers presence from a set the test controls.
#[derive(Debug)]
pub struct RecordingRealtime {
    tx: broadcast::Sender<Published>,
    revoked: Mutex<Vec<(String, UserId)>>,
    online: Mutex<Vec<(String, UserId)>>,
}

impl Default for RecordingRealtime {
    fn default() -> Self {
        Self { tx: broadcast::channel(4096).0, revoked: Mutex::default(), online: Mutex::default() }
    }
}

impl RecordingRealtime {
    /// Every publication from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    /// Revocations so far.
    pub fn revoked(&self) -> Vec<(String, UserId)> {
        self.revoked.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Marks `user_id` as viewing `topic` (and so online).
    pub fn set_viewing(&self, topic: &str, user_id: UserId) {
        if let Ok(mut v) = self.online.lock() {
            v.push((topic.to_owned(), user_id));
        }
    }
}

#[async_trait]
impl Realtime for RecordingRealtime {
    fn publish(&self, topic: &str, event_type: &str, seq: Option<i64>, data: serde_json::Value) {
        let _ = self.tx.send(Published { topic: topic.to_owned(), event_type: event_type.to_owned(), seq, data });
    }

    fn revoke(&self, topic: &str, user_id: UserId) {
        if let Ok(mut v) = self.revoked.lock() {
            v.push((topic.to_owned(), user_id));
        }
    }

    async fn viewers(&self, topic: &str, user_ids: &[UserId]) -> Vec<UserId> {
        let Ok(v) = self.online.lock() else { return Vec::new() };
        user_ids.iter().copied().filter(|u| v.iter().any(|(t, o)| t == topic && o == u)).collect()
    }

    async fn is_online(&self, user_id: UserId) -> bool {
        self.online.lock().map(|v| v.iter().any(|(_, o)| *o == user_id)).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_handle_is_a_no_op_until_set() {
        let handle = RealtimeHandle::default();
        handle.publish("user:1", "x", None, serde_json::json!({}));
        assert!(!handle.is_online(1).await);

        let rec = Arc::new(RecordingRealtime::default());
        let mut rx = rec.subscribe();
        assert!(handle.set(rec.clone()));
        assert!(!handle.set(rec.clone()), "a second install is refused");
        rec.set_viewing("chat:3", 1);
        handle.publish("chat:3", "message", Some(5), serde_json::json!({"a": 1}));
        let got = rx.try_recv().ok();
        assert_eq!(got.map(|p| (p.topic, p.seq)), Some(("chat:3".to_owned(), Some(5))));
        assert!(handle.is_online(1).await);
        assert_eq!(handle.viewers("chat:3", &[1, 2]).await, vec![1]);
    }
}
