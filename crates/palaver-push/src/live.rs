//! Live delivery of notifications to connected devices.
//!
//! The real-time hub lives in another crate; the server wires it in by
//! implementing [`LivePublisher`] as `publish("user:{id}", event_type, data)`
//! (which also feeds the original design's `/ws/notifications/` route).

use palaver_core::UserId;

/// Publishes an event to everything a user has connected. Must not block:
/// the hub queues or drops per connection.
pub trait LivePublisher: Send + Sync {
    /// Sends `data` as an event of `event_type` on the user's `user:{id}`
    /// topic.
    fn publish_to_user(&self, user_id: UserId, event_type: &str, data: serde_json::Value);
}

/// No live delivery (until the hub is wired in): notifications are still
/// stored and pushed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLive;

impl LivePublisher for NoLive {
    fn publish_to_user(&self, _user_id: UserId, _event_type: &str, _data: serde_json::Value) {}
}

/// Forwards every publication to a channel: for tests, and for bridges that
/// want to consume notifications elsewhere.
#[derive(Debug, Clone)]
pub struct ChannelLive(pub tokio::sync::mpsc::UnboundedSender<(UserId, String, serde_json::Value)>);

impl LivePublisher for ChannelLive {
    fn publish_to_user(&self, user_id: UserId, event_type: &str, data: serde_json::Value) {
        let _ = self.0.send((user_id, event_type.to_owned(), data));
    }
}
