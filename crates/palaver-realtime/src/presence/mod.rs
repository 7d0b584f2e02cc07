//! Who is online, who is viewing which topic, and who is typing, across
//! nodes.
//!
//! The hub counts connections and subscriptions per user on its own node
//! and tells the store only about transitions, in order, from one task: a
//! user's first connection on this node ([`PresenceStore::connected`]) and
//! their last ([`PresenceStore::disconnected`]), a user's first and last
//! subscription to a topic on this node ([`PresenceStore::view`]). The store
//! answers whether a transition is also one for the whole cluster (first
//! device anywhere, last device anywhere), which is when the hub publishes a
//! `presence` event.
//!
//! In memory, that is a map. In Redis, each node keeps a heartbeat entry
//! that expires; a node that stops heartbeating (crashed, partitioned) is
//! reaped by any other node's next heartbeat, and its users who have no
//! device elsewhere go offline (see `redis.rs`).

mod memory;
mod redis;

use std::collections::HashSet;

use async_trait::async_trait;
use palaver_core::{Result, UserId};

pub use memory::MemoryPresence;
pub use redis::RedisPresence;

/// What a heartbeat found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Users who went offline because the node they were on died.
    pub offline: Vec<UserId>,
    /// This node's own entry had expired (it was reaped by another node):
    /// the hub announces its users again.
    pub rejoined: bool,
}

/// Cluster-wide presence, viewers and typing state.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// `user` has their first connection on this node; true when they had
    /// none anywhere (they came online).
    async fn connected(&self, user: UserId) -> Result<bool>;
    /// `user` closed their last connection on this node; true when they
    /// have none anywhere now (they went offline).
    async fn disconnected(&self, user: UserId) -> Result<bool>;
    /// Whether `user` has a connection on a live node.
    async fn is_online(&self, user: UserId) -> Result<bool>;
    /// `user` started (`true`) or stopped viewing `topic` on this node.
    async fn view(&self, topic: &str, user: UserId, viewing: bool) -> Result<()>;
    /// Users viewing `topic` on live nodes.
    async fn viewers(&self, topic: &str) -> Result<HashSet<UserId>>;
    /// Records that `user` is typing on `topic` for `ttl` (or stopped, with
    /// `None`).
    async fn set_typing(&self, topic: &str, user: UserId, ttl: Option<std::time::Duration>) -> Result<()>;
    /// Users typing on `topic` now.
    async fn typing(&self, topic: &str) -> Result<Vec<UserId>>;
    /// Keeps this node alive and reaps dead ones. Called every third of the
    /// presence TTL.
    async fn heartbeat(&self) -> Result<Heartbeat>;
    /// Removes this node (clean shutdown); returns the users who went
    /// offline with it.
    async fn leave(&self) -> Result<Vec<UserId>>;
}
