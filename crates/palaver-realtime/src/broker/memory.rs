//! The in-process broker: nodes are broker instances sharing one
//! [`MemoryBus`] (a single process has one). Publishing delivers inline, so
//! the fan-out runs on the publisher's task; it only enqueues.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use palaver_core::Result;

use super::{Broker, Delivery};

/// The medium in-memory nodes share.
#[derive(Clone, Default)]
pub struct MemoryBus {
    nodes: Arc<RwLock<Vec<Arc<Node>>>>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus").finish_non_exhaustive()
    }
}

struct Node {
    channels: RwLock<HashSet<String>>,
    delivery: Arc<dyn Delivery>,
}

/// One node on a [`MemoryBus`].
pub struct MemoryBroker {
    bus: MemoryBus,
    node: Arc<Node>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// Joins `bus`, delivering subscribed channels to `delivery`.
    pub fn new(bus: &MemoryBus, delivery: Arc<dyn Delivery>) -> Self {
        let node = Arc::new(Node { channels: RwLock::new(HashSet::new()), delivery });
        bus.nodes.write().unwrap_or_else(|e| e.into_inner()).push(node.clone());
        Self { bus: bus.clone(), node }
    }
}

impl Drop for MemoryBroker {
    fn drop(&mut self) {
        let mut nodes = self.bus.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|n| !Arc::ptr_eq(n, &self.node));
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn publish(&self, channel: &str, payload: Bytes) {
        let nodes = self.bus.nodes.read().unwrap_or_else(|e| e.into_inner());
        for node in nodes.iter() {
            if node.channels.read().unwrap_or_else(|e| e.into_inner()).contains(channel) {
                node.delivery.deliver(channel, payload.clone());
            }
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<()> {
        self.node.channels.write().unwrap_or_else(|e| e.into_inner()).insert(channel.to_owned());
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<()> {
        self.node.channels.write().unwrap_or_else(|e| e.into_inner()).remove(channel);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
