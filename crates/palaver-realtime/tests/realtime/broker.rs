//! One suite, run on the in-memory and the Redis broker: two nodes, each a
//! broker delivering into a channel the test reads.

use std::sync::Arc;

use bytes::Bytes;
use palaver_realtime::{Broker, Delivery, MemoryBroker, MemoryBus, RedisBroker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::WAIT;

struct Collect(mpsc::UnboundedSender<(String, Bytes)>);

impl Delivery for Collect {
    fn deliver(&self, channel: &str, payload: Bytes) {
        let _ = self.0.send((channel.to_owned(), payload));
    }
}

struct Node {
    broker: Arc<dyn Broker>,
    rx: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl Node {
    async fn next(&mut self) -> (String, Bytes) {
        tokio::time::timeout(WAIT, self.rx.recv()).await.expect("no message within the wait").unwrap()
    }
}

/// Makes nodes on one shared medium.
enum Medium {
    Memory(MemoryBus),
    Redis(redis::Client, redis::aio::ConnectionManager, String, CancellationToken),
}

impl Medium {
    async fn node(&self) -> Node {
        let (tx, rx) = mpsc::unbounded_channel();
        let delivery = Arc::new(Collect(tx));
        let broker: Arc<dyn Broker> = match self {
            Medium::Memory(bus) => Arc::new(MemoryBroker::new(bus, delivery)),
            Medium::Redis(client, conn, prefix, token) => Arc::new(
                RedisBroker::start(client.clone(), conn.clone(), prefix, delivery, token.clone()).await.unwrap(),
            ),
        };
        Node { broker, rx }
    }
}

async fn suite(medium: Medium) {
    let mut a = medium.node().await;
    let mut b = medium.node().await;

    // A subscribed node receives what any node publishes, the publisher
    // included, byte for byte.
    a.broker.subscribe("chat:1").await.unwrap();
    b.broker.subscribe("chat:1").await.unwrap();
    let payload = Bytes::from_static(b"E1||{\"op\":\"event\",\"x\":\"\xc3\xa9\"}");
    b.broker.publish("chat:1", payload.clone());
    assert_eq!(a.next().await, ("chat:1".to_owned(), payload.clone()));
    assert_eq!(b.next().await, ("chat:1".to_owned(), payload.clone()));

    // One publisher's messages arrive in order.
    for i in 0..500 {
        a.broker.publish("chat:1", Bytes::from(format!("m{i}")));
    }
    for i in 0..500 {
        assert_eq!(b.next().await.1, Bytes::from(format!("m{i}")));
        assert_eq!(a.next().await.1, Bytes::from(format!("m{i}")));
    }

    // A node not subscribed to a channel gets nothing from it: a marker on
    // a subscribed channel, published after, arrives first.
    a.broker.subscribe("user:9").await.unwrap();
    b.broker.publish("chat:2", Bytes::from_static(b"not for a"));
    b.broker.publish("user:9", Bytes::from_static(b"marker"));
    assert_eq!(a.next().await, ("user:9".to_owned(), Bytes::from_static(b"marker")));

    // Subscribing twice is one subscription; unsubscribing stops delivery.
    a.broker.subscribe("chat:1").await.unwrap();
    a.broker.unsubscribe("chat:1").await.unwrap();
    b.broker.publish("chat:1", Bytes::from_static(b"after unsubscribe"));
    b.broker.publish("user:9", Bytes::from_static(b"marker 2"));
    assert_eq!(b.next().await.1, Bytes::from_static(b"after unsubscribe"));
    assert_eq!(a.next().await, ("user:9".to_owned(), Bytes::from_static(b"marker 2")));
    a.broker.unsubscribe("chat:1").await.unwrap();

    // A node that leaves stops receiving; the others go on.
    drop(a);
    b.broker.publish("chat:1", Bytes::from_static(b"still here"));
    assert_eq!(b.next().await.1, Bytes::from_static(b"still here"));
    assert!(b.rx.try_recv().is_err(), "nothing else arrived");
}

#[tokio::test]
async fn memory_broker() {
    suite(Medium::Memory(MemoryBus::default())).await;
}

#[tokio::test]
async fn redis_broker() {
    let Some((client, conn, prefix)) = crate::redis().await else { return };
    let token = CancellationToken::new();
    suite(Medium::Redis(client, conn, prefix, token.clone())).await;
    token.cancel();
}
