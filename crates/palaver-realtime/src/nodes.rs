//! Requests between nodes over the broker: [`NodeRpc`] implements the
//! services' [`NodeLink`].
//!
//! Every node subscribes to its own channel, `node:{node_id}` (on Redis
//! `{prefix}:rt:t:node:{id}`, beside the topic channels; `node` is no topic
//! kind, so no client can subscribe to it). A request is published on the
//! target's channel with a correlation id and the sender's name; the
//! target runs the [`NodeService`] registered under the request's service
//! name on a task of its own and publishes the answer on the sender's
//! channel, where the waiting caller is woken by the id. A caller waits at
//! most the link's timeout, then gets [`Error::Unavailable`] naming the
//! node: a dead node, a node without that service, or a lost message all
//! look the same to it, and the answer that comes after is dropped.
//!
//! It uses a broker of its own (a second Redis pub/sub connection), so
//! requests never queue behind, or mix with, the topics' fan-out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use palaver_core::{Error, Result};
use palaver_service::nodes::{NodeLink, NodeService, WireError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, Delivery, MemoryBroker, RedisBroker};
use crate::hub::Backend;

/// How long a caller waits for an answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One message on a node's channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Envelope {
    Request { id: u64, from: String, service: String, body: Value },
    Response { id: u64, result: std::result::Result<Value, WireError> },
}

fn channel(node: &str) -> String {
    format!("node:{node}")
}

type Waiter = oneshot::Sender<std::result::Result<Value, WireError>>;

struct Inner {
    node_id: String,
    timeout: Duration,
    broker: OnceLock<Arc<dyn Broker>>,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiter>>,
    services: RwLock<HashMap<String, Arc<dyn NodeService>>>,
}

impl Inner {
    fn publish(&self, node: &str, envelope: &Envelope) {
        let Some(broker) = self.broker.get() else { return };
        match serde_json::to_vec(envelope) {
            Ok(bytes) => broker.publish(&channel(node), Bytes::from(bytes)),
            Err(e) => tracing::warn!(error = %e, "cannot encode a node message"),
        }
    }
}

/// Requests to other nodes, and this node's answers; cheap to clone.
#[derive(Clone)]
pub struct NodeRpc(Arc<Inner>);

impl std::fmt::Debug for NodeRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRpc").field("node", &self.0.node_id).finish_non_exhaustive()
    }
}

/// Delivers the node channel's messages. The broker holds it, so it holds
/// the rest weakly (no cycle through the broker).
struct Receiver(Weak<Inner>);

impl Delivery for Receiver {
    fn deliver(&self, _channel: &str, payload: Bytes) {
        let Some(inner) = self.0.upgrade() else { return };
        match serde_json::from_slice::<Envelope>(&payload) {
            Ok(Envelope::Response { id, result }) => {
                let waiter = inner.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(result);
                }
            }
            Ok(Envelope::Request { id, from, service, body }) => {
                let handler = inner.services.read().unwrap_or_else(|e| e.into_inner()).get(&service).cloned();
                tokio::spawn(async move {
                    let result = match handler {
                        Some(handler) => handler.handle(body).await.map_err(|e| WireError::from(&e)),
                        None => Err(WireError::from(&Error::Unavailable(format!(
                            "node {} does not serve {service}",
                            inner.node_id
                        )))),
                    };
                    inner.publish(&from, &Envelope::Response { id, result });
                });
            }
            Err(e) => tracing::warn!(error = %e, "malformed message on this node's channel"),
        }
    }
}

impl NodeRpc {
    /// Subscribes this node's channel on `backend` (the hub's: the same
    /// memory bus, or the same Redis and prefix) and returns once requests
    /// can reach it. Stops at `shutdown`.
    pub async fn start(
        backend: &Backend,
        node_id: &str,
        timeout: Duration,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let inner = Arc::new(Inner {
            node_id: node_id.to_owned(),
            timeout,
            broker: OnceLock::new(),
            next_id: AtomicU64::new(1),
            waiting: Mutex::default(),
            services: RwLock::default(),
        });
        let receiver: Arc<dyn Delivery> = Arc::new(Receiver(Arc::downgrade(&inner)));
        let broker: Arc<dyn Broker> = match backend {
            Backend::Memory { bus, .. } => Arc::new(MemoryBroker::new(bus, receiver)),
            Backend::Redis { client, conn, prefix } => {
                Arc::new(RedisBroker::start(client.clone(), conn.clone(), prefix, receiver, shutdown).await?)
            }
        };
        broker.subscribe(&channel(node_id)).await?;
        let _ = inner.broker.set(broker);
        Ok(Self(inner))
    }

    /// Answers requests for `service` with `handler` (a later registration
    /// replaces an earlier one).
    pub fn register(&self, service: &str, handler: Arc<dyn NodeService>) {
        self.0.services.write().unwrap_or_else(|e| e.into_inner()).insert(service.to_owned(), handler);
    }
}

#[async_trait]
impl NodeLink for NodeRpc {
    fn node_id(&self) -> &str {
        &self.0.node_id
    }

    async fn request(&self, node: &str, service: &str, body: Value) -> Result<Value> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.0.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let request = Envelope::Request { id, from: self.0.node_id.clone(), service: service.to_owned(), body };
        self.0.publish(node, &request);
        let outcome = tokio::time::timeout(self.0.timeout, rx).await;
        self.0.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(wire))) => Err(Error::from(wire)),
            Ok(Err(_)) | Err(_) => {
                metrics::counter!("realtime_node_request_timeouts_total").increment(1);
                Err(Error::Unavailable(format!(
                    "node {node} did not answer within {} ms ({service}); it may be down",
                    self.0.timeout.as_millis()
                )))
            }
        }
    }
}
