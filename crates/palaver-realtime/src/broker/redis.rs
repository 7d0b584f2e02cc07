//! The Redis broker: Redis pub/sub, one channel per topic
//! (`{prefix}:rt:t:{topic}`), subscribed only while this node has local
//! subscribers for the topic.
//!
//! Publishing goes through one task that pipelines queued messages on a
//! multiplexed connection, so one node's messages reach Redis in the order
//! published and a burst costs one round trip per batch. Subscriptions use a
//! dedicated pub/sub connection; when it drops, the broker reconnects with
//! backoff, subscribes again to every channel, and calls
//! [`Delivery::resync`] because messages may have been missed meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use palaver_core::{Error, Result};
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Broker, Delivery};

/// Messages waiting for the publisher task; beyond this the broker drops
/// (Redis is down or too slow) rather than grow without bound.
const PUBLISH_QUEUE: usize = 65_536;
/// Longest wait for Redis to confirm a subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Fan-out through Redis pub/sub.
pub struct RedisBroker {
    prefix: String,
    publish_tx: mpsc::Sender<(String, Bytes)>,
    subs: Arc<Mutex<Subscriptions>>,
    publisher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

struct Subscriptions {
    sink: Option<PubSubSink>,
    channels: HashSet<String>,
}

impl RedisBroker {
    /// Connects the pub/sub link and starts the publisher and the reader;
    /// both stop at `shutdown`.
    pub async fn start(
        client: redis::Client,
        publisher: ConnectionManager,
        prefix: &str,
        delivery: Arc<dyn Delivery>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let prefix = format!("{prefix}:rt:t:");
        let pubsub = tokio::time::timeout(SUBSCRIBE_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|_| Error::Unavailable("Redis did not answer within 5 s".into()))?
            .map_err(unavailable)?;
        let (sink, stream) = pubsub.split();
        let subs = Arc::new(Mutex::new(Subscriptions { sink: Some(sink), channels: HashSet::new() }));
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let publisher = tokio::spawn(publish_loop(publisher, publish_rx, shutdown.clone()));
        tokio::spawn(read_loop(client, stream, subs.clone(), prefix.clone(), delivery, shutdown));
        Ok(Self { prefix, publish_tx, subs, publisher: std::sync::Mutex::new(Some(publisher)) })
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("Redis: {e}"))
}

#[async_trait]
impl Broker for RedisBroker {
    fn publish(&self, channel: &str, payload: Bytes) {
        if self.publish_tx.try_send((self.channel(channel), payload)).is_err() {
            metrics::counter!("realtime_broker_dropped_total").increment(1);
            tracing::warn!(channel, "Redis publish queue full: event dropped");
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<()> {
        let channel = self.channel(channel);
        let mut subs = self.subs.lock().await;
        if !subs.channels.insert(channel.clone()) {
            return Ok(());
        }
        // Remembered even if Redis is down: the reader subscribes again to
        // every channel when it reconnects.
        let Some(sink) = subs.sink.as_mut() else {
            return Err(Error::Unavailable("Redis pub/sub is reconnecting".into()));
        };
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(&channel)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(Error::Unavailable("Redis did not confirm a subscription within 5 s".into())),
        }
    }

    async fn unsubscribe(&self, channel: &str) -> Result<()> {
        let channel = self.channel(channel);
        let mut subs = self.subs.lock().await;
        if !subs.channels.remove(&channel) {
            return Ok(());
        }
        if let Some(sink) = subs.sink.as_mut() {
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.unsubscribe(&channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => return Err(Error::Unavailable("Redis did not confirm an unsubscribe within 5 s".into())),
            }
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    async fn close(&self) {
        let publisher = self.publisher.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(publisher) = publisher {
            let _ = tokio::time::timeout(Duration::from_secs(3), publisher).await;
        }
    }
}

async fn publish_loop(
    mut conn: ConnectionManager,
    mut rx: mpsc::Receiver<(String, Bytes)>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(256);
    loop {
        // On shutdown, what is queued is still sent (offline presence
        // events of this node's users are the last thing it publishes).
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, 256) => n,
            () = shutdown.cancelled() => {
                rx.close();
                rx.recv_many(&mut batch, 4096).await
            }
        };
        if n == 0 {
            break;
        }
        let mut pipe = redis::pipe();
        for (channel, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref()).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            metrics::counter!("realtime_broker_dropped_total").increment(n as u64);
            tracing::warn!(error = %e, events = n, "Redis publish failed: events dropped");
        }
    }
}

async fn read_loop(
    client: redis::Client,
    mut stream: PubSubStream,
    subs: Arc<Mutex<Subscriptions>>,
    prefix: String,
    delivery: Arc<dyn Delivery>,
    shutdown: CancellationToken,
) {
    loop {
        loop {
            let msg = tokio::select! {
                msg = stream.next() => msg,
                () = shutdown.cancelled() => return,
            };
            let Some(msg) = msg else { break };
            let channel = msg.get_channel_name();
            let Some(topic) = channel.strip_prefix(prefix.as_str()) else { continue };
            delivery.deliver(topic, Bytes::copy_from_slice(msg.get_payload_bytes()));
        }
        tracing::warn!("Redis pub/sub connection lost; reconnecting");
        subs.lock().await.sink = None;
        let mut backoff = Duration::from_millis(100);
        stream = loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match resubscribe(&client, &subs).await {
                Ok(stream) => break stream,
                Err(e) => tracing::warn!(error = %e, "Redis pub/sub reconnect failed"),
            }
        };
        tracing::info!("Redis pub/sub reconnected");
        delivery.resync();
    }
}

async fn resubscribe(client: &redis::Client, subs: &Mutex<Subscriptions>) -> Result<PubSubStream> {
    let pubsub = tokio::time::timeout(SUBSCRIBE_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| Error::Unavailable("timeout".into()))?
        .map_err(unavailable)?;
    let (mut sink, stream) = pubsub.split();
    let mut subs = subs.lock().await;
    let channels: Vec<String> = subs.channels.iter().cloned().collect();
    for chunk in channels.chunks(500) {
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(chunk))
            .await
            .map_err(|_| Error::Unavailable("timeout".into()))?
            .map_err(unavailable)?;
    }
    subs.sink = Some(sink);
    Ok(stream)
}
