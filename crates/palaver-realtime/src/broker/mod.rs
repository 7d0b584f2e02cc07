//! Fan-out between nodes: a channel per topic.
//!
//! A node subscribes to a topic's channel while it has local subscribers
//! for the topic (the hub calls [`Broker::subscribe`] and
//! [`Broker::unsubscribe`] in order, from one task, on the first and last
//! local subscriber), and every message published on the channel, by any
//! node, reaches [`Delivery::deliver`] on every subscribed node, the
//! publisher included. Payloads are opaque bytes, serialized once by the
//! publisher.
//!
//! Delivery is at most once: a message published while a node's link to the
//! broker is down is lost for that node, which is then told
//! ([`Delivery::resync`]) so sequenced topics reload what they missed.

mod memory;
mod redis;

use async_trait::async_trait;
use bytes::Bytes;
use palaver_core::Result;

pub use memory::{MemoryBroker, MemoryBus};
pub use redis::RedisBroker;

/// Where a broker hands the messages of subscribed channels.
pub trait Delivery: Send + Sync + 'static {
    /// One message of a subscribed channel. Must not block.
    fn deliver(&self, channel: &str, payload: Bytes);
    /// The link to the broker was lost and is back: messages may have been
    /// missed.
    fn resync(&self) {}
}

/// Publish/subscribe between nodes.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes `payload` on `channel` to every subscribed node. Never
    /// blocks; messages of one publisher arrive in the order published.
    fn publish(&self, channel: &str, payload: Bytes);
    /// Starts delivering `channel` to this node; returns once messages
    /// published from now on will be delivered. Idempotent.
    async fn subscribe(&self, channel: &str) -> Result<()>;
    /// Stops delivering `channel` to this node. Idempotent.
    async fn unsubscribe(&self, channel: &str) -> Result<()>;
    /// `memory` or `redis`, for logs.
    fn name(&self) -> &'static str;
    /// Sends what is still queued (after the broker's shutdown token was
    /// cancelled); bounded in time.
    async fn close(&self) {}
}
