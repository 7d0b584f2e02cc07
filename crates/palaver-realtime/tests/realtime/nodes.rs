//! Requests between nodes (`NodeRpc`), on the in-memory bus and on Redis:
//! an answer comes back to the asker, errors cross unchanged, and a node
//! that does not answer gives a clear error once the timeout passes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use palaver_core::{Error, Result};
use palaver_realtime::{Backend, MemoryPresence, NodeRpc};
use palaver_service::nodes::{NodeLink, NodeService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Answers `{n}` with `{n, node}`, and `{fail: true}` with a validation error.
struct Echo(&'static str);

#[async_trait]
impl NodeService for Echo {
    async fn handle(&self, body: Value) -> Result<Value> {
        if body["fail"] == true {
            return Err(Error::invalid("payload.sdp", "is required"));
        }
        Ok(json!({"n": body["n"], "node": self.0}))
    }
}

async fn suite(backend: &Backend, shutdown: &CancellationToken) {
    let timeout = Duration::from_millis(500);
    let a = NodeRpc::start(backend, "node-a", timeout, shutdown.clone()).await.unwrap();
    let b = NodeRpc::start(backend, "node-b", timeout, shutdown.clone()).await.unwrap();
    a.register("echo", Arc::new(Echo("node-a")));
    b.register("echo", Arc::new(Echo("node-b")));
    assert_eq!(a.node_id(), "node-a");

    // Each request reaches the named node, and its answer the asker, even
    // when many are in flight at once.
    let mut asks = Vec::new();
    for n in 0..50 {
        let (from, to) = if n % 2 == 0 { (a.clone(), "node-b") } else { (b.clone(), "node-a") };
        asks.push(tokio::spawn(async move { (n, to, from.request(to, "echo", json!({"n": n})).await.unwrap()) }));
    }
    for ask in asks {
        let (n, to, answer) = ask.await.unwrap();
        assert_eq!(answer, json!({"n": n, "node": to}));
    }

    // The answering node's error is the asker's error.
    match a.request("node-b", "echo", json!({"fail": true})).await {
        Err(Error::Validation(fields)) => assert_eq!(fields.fields()["payload.sdp"], "is required"),
        other => panic!("expected the validation error, got {other:?}"),
    }
    // A service the node does not run, and a node that does not exist.
    let err = a.request("node-b", "nothing", json!({})).await.unwrap_err();
    assert!(matches!(&err, Error::Unavailable(m) if m.contains("does not serve nothing")), "{err:?}");
    let started = Instant::now();
    let err = a.request("node-gone", "echo", json!({"n": 1})).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains("node-gone") && m.contains("did not answer")),
        "{err:?}"
    );
    assert!(started.elapsed() >= timeout, "it waited the timeout");
}

#[tokio::test]
async fn node_requests_in_memory() {
    let backend = Backend::Memory { bus: Default::default(), presence: MemoryPresence::new() };
    suite(&backend, &CancellationToken::new()).await;
}

#[tokio::test]
async fn node_requests_over_redis() {
    let Some((client, conn, prefix)) = crate::redis().await else { return };
    let shutdown = CancellationToken::new();
    let backend = Backend::Redis { client, conn: conn.clone(), prefix: prefix.clone() };
    suite(&backend, &shutdown).await;
    shutdown.cancel();
    crate::cleanup(&mut conn.clone(), &prefix).await;
}
