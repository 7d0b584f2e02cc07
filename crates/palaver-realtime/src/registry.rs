//! This node's connections and who is subscribed to what; the fan-out.
//!
//! One `RwLock` over plain maps: fan-out takes the read lock and only
//! enqueues (`try_send`), so it never waits on a client. Changes that
//! matter beyond this node (a user's first or last connection, a topic's
//! first or last local subscriber) are queued, in order, for the presence
//! and channel tasks of the hub.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use palaver_core::UserId;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::broker::Delivery;
use crate::close;
use crate::connection::ConnId;
use crate::frame::{BrokerMsg, EventFrame, decode};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, PushError};
use crate::topic::Topic;

/// What a connection's writer receives from the fan-out.
pub(crate) enum Item {
    /// An event of a subscribed topic.
    Event(Arc<EventFrame>),
    /// The subscription was revoked (the user left the room). Boxed, as
    /// it is rare: the common variants set the size of every queue slot.
    Revoked(Box<Topic>),
    /// Events may have been lost (broker reconnected): reload sequenced
    /// topics.
    Resync,
    /// An event for this connection alone, whatever it subscribed to.
    Direct(Arc<EventFrame>),
}

/// Ends a connection, once, with a close code and reason.
#[derive(Clone, Default)]
pub(crate) struct Kill(Arc<KillInner>);

#[derive(Default)]
struct KillInner {
    token: CancellationToken,
    reason: OnceLock<(u16, String)>,
}

impl Kill {
    pub(crate) fn kill(&self, code: u16, reason: impl Into<String>) {
        let _ = self.0.reason.set((code, reason.into()));
        self.0.token.cancel();
    }

    /// Records why the connection ends without stopping the writer (it
    /// still sends what is queued).
    pub(crate) fn set_reason(&self, code: u16, reason: impl Into<String>) {
        let _ = self.0.reason.set((code, reason.into()));
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.0.token
    }

    pub(crate) fn reason(&self) -> Option<(u16, String)> {
        self.0.reason.get().cloned()
    }
}

/// A connection as the fan-out sees it.
pub(crate) struct Conn {
    pub id: ConnId,
    pub user: UserId,
    /// The bounded queue the fan-out fills and the writer empties.
    pub outbox: Outbox<Item>,
    pub kill: Kill,
}

/// Changes the presence task forwards to the presence store.
pub(crate) enum Transition {
    Online(UserId),
    Offline(UserId),
    View(Topic, UserId, bool),
    Typing(Topic, UserId, Option<std::time::Duration>),
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

/// Changes the channel task forwards to the broker.
pub(crate) enum ChannelOp {
    Subscribe(Topic, ReadyTx),
    Unsubscribe(Topic),
}

struct TopicEntry {
    subs: HashMap<ConnId, Arc<Conn>>,
    ready: Arc<Ready>,
}

const PENDING: u8 = 0;
const DELIVERED: u8 = 1;
const FAILED: u8 = 2;

/// Whether the broker delivers a topic to this node yet; new subscribers
/// wait for it. (A `watch` channel took some 380 bytes a topic, and every
/// connection has a topic of its own, `user:{id}`.)
pub(crate) struct Ready {
    state: AtomicU8,
    notify: Notify,
}

impl Ready {
    /// A pending readiness and the channel task's end of it.
    fn pending() -> (Arc<Self>, ReadyTx) {
        let ready = Arc::new(Self { state: AtomicU8::new(PENDING), notify: Notify::new() });
        (ready.clone(), ReadyTx(ready))
    }

    /// Waits until the topic is delivered (true) or will not be (false).
    pub(crate) async fn wait(&self) -> bool {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.state.load(Ordering::Acquire) {
                DELIVERED => return true,
                FAILED => return false,
                _ => notified.await,
            }
        }
    }

    fn settle(&self, state: u8) {
        if self.state.compare_exchange(PENDING, state, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.notify.notify_waiters();
        }
    }
}

/// The channel task's end of a [`Ready`]: dropped without
/// [`ReadyTx::delivered`], the subscription failed.
pub(crate) struct ReadyTx(Arc<Ready>);

impl ReadyTx {
    pub(crate) fn delivered(self) {
        self.0.settle(DELIVERED);
    }
}

impl Drop for ReadyTx {
    fn drop(&mut self) {
        self.0.settle(FAILED);
    }
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Arc<Conn>>,
    by_user: HashMap<UserId, Vec<ConnId>>,
    topics: HashMap<Topic, TopicEntry>,
    conn_topics: HashMap<ConnId, HashMap<Topic, bool>>,
    views: HashMap<(Topic, UserId), usize>,
}

/// Why a connection was refused.
pub(crate) struct Refused {
    pub code: u16,
    pub reason: String,
}

pub(crate) struct Registry {
    node_id: String,
    state: RwLock<State>,
    presence_tx: mpsc::UnboundedSender<Transition>,
    channel_tx: mpsc::UnboundedSender<ChannelOp>,
    next_id: AtomicU64,
    max_connections: usize,
    max_per_user: usize,
    queue_capacity: usize,
    metrics: Metrics,
}

impl Registry {
    pub(crate) fn new(
        presence_tx: mpsc::UnboundedSender<Transition>,
        channel_tx: mpsc::UnboundedSender<ChannelOp>,
        config: &crate::HubConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            node_id: config.node_id.clone(),
            state: RwLock::default(),
            presence_tx,
            channel_tx,
            next_id: AtomicU64::new(1),
            max_connections: config.max_connections,
            max_per_user: config.max_connections_per_user,
            queue_capacity: config.queue_capacity.max(1),
            metrics,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection of `user`, unless a cap is reached.
    pub(crate) fn register(&self, user: UserId) -> Result<Arc<Conn>, Refused> {
        let mut state = self.write();
        if state.conns.len() >= self.max_connections {
            self.metrics.refused_total.increment(1);
            return Err(Refused {
                code: close::TRY_AGAIN_LATER,
                reason: "this server is at its connection limit; retry later".into(),
            });
        }
        let mine = state.by_user.get(&user).map_or(0, Vec::len);
        if mine >= self.max_per_user {
            self.metrics.refused_total.increment(1);
            return Err(Refused {
                code: close::TOO_MANY_CONNECTIONS,
                reason: format!("too many connections for this user (at most {})", self.max_per_user),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn { id, user, outbox: Outbox::new(self.queue_capacity), kill: Kill::default() });
        state.conns.insert(id, conn.clone());
        let list = state.by_user.entry(user).or_default();
        list.push(id);
        if list.len() == 1 {
            let _ = self.presence_tx.send(Transition::Online(user));
        }
        self.metrics.connections.increment(1.0);
        self.metrics.connections_total.increment(1);
        Ok(conn)
    }

    /// Removes a connection and all its subscriptions.
    pub(crate) fn unregister(&self, id: ConnId) {
        let mut state = self.write();
        let Some(conn) = state.conns.remove(&id) else { return };
        let topics = state.conn_topics.remove(&id).unwrap_or_default();
        for (topic, track_view) in topics {
            self.remove_sub(&mut state, &topic, &conn, track_view);
        }
        if let Some(list) = state.by_user.get_mut(&conn.user) {
            list.retain(|c| *c != id);
            if list.is_empty() {
                state.by_user.remove(&conn.user);
                let _ = self.presence_tx.send(Transition::Offline(conn.user));
            }
        }
        self.metrics.connections.decrement(1.0);
    }

    /// Subscribes a connection; the [`Ready`] tells when the broker
    /// delivers the topic to this node. `None` when already subscribed.
    pub(crate) fn subscribe(&self, conn: &Arc<Conn>, topic: &Topic, track_view: bool) -> Option<Arc<Ready>> {
        let mut state = self.write();
        if !state.conns.contains_key(&conn.id) {
            return None;
        }
        let subs = state.conn_topics.entry(conn.id).or_default();
        if subs.contains_key(topic) {
            return None;
        }
        subs.insert(topic.clone(), track_view);
        let ready = match state.topics.get_mut(topic) {
            Some(entry) => {
                entry.subs.insert(conn.id, conn.clone());
                entry.ready.clone()
            }
            None => {
                let (ready, tx) = Ready::pending();
                let _ = self.channel_tx.send(ChannelOp::Subscribe(topic.clone(), tx));
                let mut subs = HashMap::new();
                subs.insert(conn.id, conn.clone());
                state.topics.insert(topic.clone(), TopicEntry { subs, ready: ready.clone() });
                ready
            }
        };
        if track_view {
            let count = state.views.entry((topic.clone(), conn.user)).or_default();
            *count += 1;
            if *count == 1 {
                let _ = self.presence_tx.send(Transition::View(topic.clone(), conn.user, true));
            }
        }
        Some(ready)
    }

    /// Unsubscribes a connection; false when it was not subscribed.
    pub(crate) fn unsubscribe(&self, conn: &Arc<Conn>, topic: &Topic) -> bool {
        let mut state = self.write();
        let Some(track_view) = state.conn_topics.get_mut(&conn.id).and_then(|t| t.remove(topic)) else {
            return false;
        };
        self.remove_sub(&mut state, topic, conn, track_view);
        true
    }

    fn remove_sub(&self, state: &mut State, topic: &Topic, conn: &Conn, track_view: bool) {
        if let Some(entry) = state.topics.get_mut(topic) {
            entry.subs.remove(&conn.id);
            if entry.subs.is_empty() {
                state.topics.remove(topic);
                let _ = self.channel_tx.send(ChannelOp::Unsubscribe(topic.clone()));
            }
        }
        if track_view {
            let key = (topic.clone(), conn.user);
            if let Some(count) = state.views.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    state.views.remove(&key);
                    let _ = self.presence_tx.send(Transition::View(topic.clone(), conn.user, false));
                }
            }
        }
    }

    /// Whether the connection is subscribed to the topic.
    pub(crate) fn is_subscribed(&self, id: ConnId, topic: &Topic) -> bool {
        self.read().conn_topics.get(&id).is_some_and(|t| t.contains_key(topic))
    }

    /// Ends `user`'s subscriptions to `topic` on this node.
    pub(crate) fn revoke(&self, topic: &Topic, user: UserId) {
        let mut state = self.write();
        let conns: Vec<Arc<Conn>> = state
            .topics
            .get(topic)
            .map(|e| e.subs.values().filter(|c| c.user == user).cloned().collect())
            .unwrap_or_default();
        for conn in conns {
            let track_view = state.conn_topics.get_mut(&conn.id).and_then(|t| t.remove(topic)).unwrap_or(false);
            self.remove_sub(&mut state, topic, &conn, track_view);
            if conn.outbox.push(Item::Revoked(Box::new(topic.clone()))).is_err() {
                conn.kill.kill(close::SLOW_CONSUMER, close::SLOW_CONSUMER_REASON);
            }
        }
    }

    /// Closes every connection of `user` on this node.
    pub(crate) fn kick(&self, user: UserId, code: u16, reason: &str) {
        let state = self.read();
        for id in state.by_user.get(&user).into_iter().flatten() {
            if let Some(conn) = state.conns.get(id) {
                conn.kill.kill(code, reason);
            }
        }
    }

    /// The cluster-wide key of a connection: `{node}/{id}`.
    pub(crate) fn key(&self, id: ConnId) -> String {
        format!("{}/{id}", self.node_id)
    }

    fn direct(&self, key: &str, frame: Arc<EventFrame>) {
        let Some((node, id)) = key.rsplit_once('/') else { return };
        if node != self.node_id {
            return;
        }
        let Ok(id) = id.parse::<ConnId>() else { return };
        if let Some(conn) = self.read().conns.get(&id)
            && conn.outbox.push(Item::Direct(frame)).is_err()
        {
            conn.kill.kill(close::SLOW_CONSUMER, close::SLOW_CONSUMER_REASON);
        }
    }

    /// Users with a connection on this node.
    pub(crate) fn local_users(&self) -> Vec<UserId> {
        self.read().by_user.keys().copied().collect()
    }

    /// Topics `user` views on this node (for re-announcing after a reap).
    pub(crate) fn local_views(&self) -> Vec<(Topic, UserId)> {
        self.read().views.keys().cloned().collect()
    }

    /// Open connections on this node.
    pub(crate) fn count(&self) -> usize {
        self.read().conns.len()
    }

    fn fan_out(&self, frame: Arc<EventFrame>) {
        let state = self.read();
        let Some(entry) = state.topics.get(&frame.topic) else { return };
        for conn in entry.subs.values() {
            if frame.exclude_user == Some(conn.user) {
                continue;
            }
            match conn.outbox.push(Item::Event(frame.clone())) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    if !conn.kill.token().is_cancelled() {
                        self.metrics.slow_consumers.increment(1);
                        tracing::info!(conn = conn.id, user = conn.user, "slow consumer: closing");
                    }
                    conn.kill.kill(close::SLOW_CONSUMER, close::SLOW_CONSUMER_REASON);
                }
                Err(PushError::Closed) => {}
            }
        }
    }
}

impl Delivery for Registry {
    fn deliver(&self, channel: &str, payload: Bytes) {
        let topic = Topic::trusted(channel);
        match decode(topic.clone(), payload) {
            Some(BrokerMsg::Event(frame)) => self.fan_out(frame),
            Some(BrokerMsg::Revoke(user)) => self.revoke(&topic, user),
            Some(BrokerMsg::Kick { user, code, reason }) => self.kick(user, code, &reason),
            Some(BrokerMsg::Direct { connection, frame }) => self.direct(&connection, frame),
            None => tracing::warn!(channel, "malformed broker message ignored"),
        }
    }

    fn resync(&self) {
        for conn in self.read().conns.values() {
            let _ = conn.outbox.push(Item::Resync);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn ready_tells_waiters_before_and_after_delivery() {
        let (ready, tx) = Ready::pending();
        let early = tokio::spawn({
            let ready = ready.clone();
            async move { ready.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(tokio::time::timeout(Duration::from_millis(50), ready.wait()).await.is_err(), "pending");
        tx.delivered();
        assert!(tokio::time::timeout(Duration::from_secs(5), early).await.unwrap().unwrap());
        assert!(ready.wait().await, "a later subscriber sees the delivery");
    }

    #[tokio::test]
    async fn ready_fails_when_the_channel_task_drops_it() {
        let (ready, tx) = Ready::pending();
        let waiter = tokio::spawn({
            let ready = ready.clone();
            async move { ready.wait().await }
        });
        drop(tx);
        assert!(!tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap());
        assert!(!ready.wait().await);
    }
}
