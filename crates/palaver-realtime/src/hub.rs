//! The hub: registries of topic kinds and ops, the background tasks
//! (broker subscriptions, presence, typing expiry), and the
//! [`Realtime`] seam services publish through.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use palaver_core::{Error, Result, UserId};
use palaver_service::Realtime;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, MemoryBroker, MemoryBus, RedisBroker};
use crate::config::HubConfig;
use crate::connection::{self, ConnId, ConnectParams};
use crate::frame::{encode_direct, encode_event, encode_kick, encode_revoke};
use crate::metrics::Metrics;
use crate::presence::{MemoryPresence, PresenceStore, RedisPresence};
use crate::registry::{ChannelOp, Registry, Transition};
use crate::topic::{Action, OpHandler, Topic, TopicKind};
use crate::typing::Typing;

/// Where the hub shares state with other nodes.
pub enum Backend {
    /// One process: the in-memory broker and presence (nodes sharing a bus
    /// and a presence state, in tests).
    Memory {
        /// The bus.
        bus: MemoryBus,
        /// The presence state.
        presence: MemoryPresence,
    },
    /// Many nodes: Redis pub/sub and presence in Redis.
    Redis {
        /// For the pub/sub connection.
        client: redis::Client,
        /// For publishing and presence.
        conn: redis::aio::ConnectionManager,
        /// Prefix of every key and channel.
        prefix: String,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory { .. } => "Memory",
            Self::Redis { .. } => "Redis",
        })
    }
}

impl Backend {
    /// A single process.
    pub fn memory() -> Self {
        Self::Memory { bus: MemoryBus::default(), presence: MemoryPresence::new() }
    }
}

/// What the hub tells the rest of the server about presence.
#[async_trait]
pub trait PresenceHooks: Send + Sync + 'static {
    /// `user` went offline everywhere at `at` (record it as last seen).
    async fn went_offline(&self, user: UserId, at: DateTime<Utc>);
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

#[async_trait]
impl PresenceHooks for NoHooks {
    async fn went_offline(&self, _user: UserId, _at: DateTime<Utc>) {}
}

/// The real-time hub, cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("node", &self.0.config.node_id).field("broker", &self.0.broker.name()).finish()
    }
}

struct Inner {
    config: HubConfig,
    registry: Arc<Registry>,
    broker: Arc<dyn Broker>,
    presence: Arc<dyn PresenceStore>,
    kinds: RwLock<HashMap<String, Arc<dyn TopicKind>>>,
    ops: RwLock<HashMap<String, Arc<dyn OpHandler>>>,
    typing: Typing,
    hooks: Arc<dyn PresenceHooks>,
    presence_tx: mpsc::UnboundedSender<Transition>,
    conn_shutdown: CancellationToken,
    tasks_shutdown: CancellationToken,
    metrics: Metrics,
}

/// `user:{id}`: the owner only; every native connection has it.
struct UserKind;

#[async_trait]
impl TopicKind for UserKind {
    async fn authorize(&self, who: &palaver_service::Principal, topic: &Topic, _action: Action) -> Result<()> {
        if topic.id_i64() == Some(who.id()) {
            Ok(())
        } else {
            Err(Error::Forbidden("only the owner may subscribe to a user topic".into()))
        }
    }

    fn tracks_viewers(&self) -> bool {
        false
    }
}

impl Hub {
    /// Connects the backend and starts the hub's tasks. With Redis, entries
    /// left by an earlier run of the same node id are cleared first.
    pub async fn start(config: HubConfig, backend: Backend, hooks: Arc<dyn PresenceHooks>) -> Result<Self> {
        let metrics = Metrics::new();
        let (presence_tx, presence_rx) = mpsc::unbounded_channel();
        let (channel_tx, channel_rx) = mpsc::unbounded_channel();
        let registry = Arc::new(Registry::new(presence_tx.clone(), channel_tx, &config, metrics.clone()));
        let tasks_shutdown = CancellationToken::new();
        let mut stale_offline = Vec::new();
        let (broker, presence): (Arc<dyn Broker>, Arc<dyn PresenceStore>) = match backend {
            Backend::Memory { bus, presence } => {
                (Arc::new(MemoryBroker::new(&bus, registry.clone())), Arc::new(presence.node(&config.node_id)))
            }
            Backend::Redis { client, conn, prefix } => {
                let broker =
                    RedisBroker::start(client, conn.clone(), &prefix, registry.clone(), tasks_shutdown.clone()).await?;
                let presence = RedisPresence::new(conn, &prefix, &config.node_id, config.presence_ttl);
                stale_offline = presence.reset().await?;
                (Arc::new(broker), Arc::new(presence))
            }
        };
        let mut kinds: HashMap<String, Arc<dyn TopicKind>> = HashMap::new();
        kinds.insert("user".into(), Arc::new(UserKind));
        let hub = Self(Arc::new(Inner {
            config,
            registry,
            broker,
            presence,
            kinds: RwLock::new(kinds),
            ops: RwLock::default(),
            typing: Typing::default(),
            hooks,
            presence_tx,
            conn_shutdown: CancellationToken::new(),
            tasks_shutdown,
            metrics,
        }));
        for user in stale_offline {
            hub.went_offline(user).await;
        }
        if let Err(e) = hub.0.presence.heartbeat().await {
            tracing::warn!(error = %e, "first presence heartbeat failed");
        }
        tokio::spawn(channel_task(hub.0.broker.clone(), channel_rx, hub.0.tasks_shutdown.clone()));
        tokio::spawn(presence_task(hub.clone(), presence_rx));
        tokio::spawn(typing_task(hub.clone()));
        tracing::info!(node = %hub.0.config.node_id, broker = hub.0.broker.name(), "real-time hub started");
        Ok(hub)
    }

    /// Registers a topic kind (`chat`, `presence`, ...). A later
    /// registration of the same name replaces the earlier.
    pub fn register_kind(&self, name: &str, kind: Arc<dyn TopicKind>) {
        self.0.kinds.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), kind);
    }

    /// Registers the handler of a client op (`send`, `read`, `signal`).
    /// The hub's own ops (`subscribe`, `unsubscribe`, `typing`, `ping`)
    /// cannot be replaced.
    pub fn register_op(&self, op: &str, handler: Arc<dyn OpHandler>) {
        self.0.ops.write().unwrap_or_else(|e| e.into_inner()).insert(op.to_owned(), handler);
    }

    /// Runs a connection (already upgraded and authenticated) until it
    /// closes. Spawn the returned future as a task of its own: it is all
    /// the state the connection keeps.
    pub fn serve<S>(&self, ws: WebSocketStream<S>, params: ConnectParams) -> impl Future<Output = ()> + Send + use<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        connection::run(self.clone(), ws, params)
    }

    /// Publishes an event on every node; `exclude_user` does not receive
    /// it.
    pub fn publish_event(
        &self,
        topic: &Topic,
        event_type: &str,
        seq: Option<i64>,
        exclude_user: Option<UserId>,
        data: &Value,
    ) {
        if let Some(payload) = encode_event(topic, event_type, seq, exclude_user, data) {
            self.0.metrics.events_published.increment(1);
            self.0.broker.publish(topic.as_str(), payload);
        }
    }

    /// Sends an event to one connection of `user` (its key from
    /// [`crate::OpContext::connection`]), on whichever node it is, whatever
    /// it is subscribed to: a call bound to one device.
    pub fn send_to_connection(&self, user: UserId, connection: &str, topic: &Topic, event_type: &str, data: &Value) {
        if let Some(payload) = encode_direct(connection, topic, event_type, data) {
            self.0.metrics.events_published.increment(1);
            self.0.broker.publish(Topic::user(user).as_str(), payload);
        }
    }

    /// Closes every connection of `user`, on every node (suspension).
    pub fn disconnect_user(&self, user: UserId, code: u16, reason: &str) {
        self.0.registry.kick(user, code, reason);
        self.0.broker.publish(Topic::user(user).as_str(), encode_kick(user, code, reason));
    }

    /// Open connections on this node.
    pub fn connections(&self) -> usize {
        self.0.registry.count()
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.0.config
    }

    /// The topic kind registered under `name`.
    pub fn kind(&self, name: &str) -> Option<Arc<dyn TopicKind>> {
        self.0.kinds.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Users typing on `topic` now (any node).
    pub async fn typing_now(&self, topic: &Topic) -> Vec<UserId> {
        self.0.presence.typing(topic.as_str()).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read typing state");
            Vec::new()
        })
    }

    /// Closes every connection (1001), marks this node's users offline,
    /// flushes the broker and stops the hub's tasks.
    pub async fn shutdown(&self) {
        self.0.conn_shutdown.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.0.registry.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.0.presence_tx.send(Transition::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        self.0.tasks_shutdown.cancel();
        self.0.broker.close().await;
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.0.registry
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn conn_shutdown(&self) -> &CancellationToken {
        &self.0.conn_shutdown
    }

    pub(crate) fn op(&self, name: &str) -> Option<Arc<dyn OpHandler>> {
        self.0.ops.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub(crate) fn typing_update(&self, conn: ConnId, user: UserId, topic: &Topic, is_typing: bool) {
        let config = &self.0.config;
        if let Some(state) =
            self.0.typing.update(conn, user, topic, is_typing, config.typing_ttl, config.typing_throttle)
        {
            self.typing_changed(topic.clone(), user, state);
        }
    }

    fn typing_changed(&self, topic: Topic, user: UserId, is_typing: bool) {
        self.publish_event(&topic, "typing", None, Some(user), &json!({"user_id": user, "is_typing": is_typing}));
        let ttl = is_typing.then_some(self.0.config.typing_ttl);
        let _ = self.0.presence_tx.send(Transition::Typing(topic, user, ttl));
    }

    pub(crate) fn connection_closed(&self, conn: ConnId) {
        for (topic, user) in self.0.typing.conn_closed(conn) {
            self.typing_changed(topic, user, false);
        }
    }

    fn publish_presence(&self, user: UserId, online: bool, last_seen: Option<DateTime<Utc>>) {
        let data = json!({"user_id": user, "online": online, "last_seen": last_seen});
        self.publish_event(&Topic::presence(user), "presence", None, None, &data);
    }

    async fn went_offline(&self, user: UserId) {
        let now = Utc::now();
        self.publish_presence(user, false, Some(now));
        let hooks = self.0.hooks.clone();
        tokio::spawn(async move { hooks.went_offline(user, now).await });
    }

    async fn apply(&self, transition: Transition) {
        let presence = &self.0.presence;
        let result = match transition {
            Transition::Online(user) => match presence.connected(user).await {
                Ok(true) => {
                    self.publish_presence(user, true, None);
                    Ok(())
                }
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            },
            Transition::Offline(user) => match presence.disconnected(user).await {
                Ok(true) => {
                    self.went_offline(user).await;
                    Ok(())
                }
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            },
            Transition::View(topic, user, viewing) => presence.view(topic.as_str(), user, viewing).await,
            Transition::Typing(topic, user, ttl) => presence.set_typing(topic.as_str(), user, ttl).await,
            Transition::Shutdown(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "presence update failed");
        }
    }

    async fn beat(&self) {
        match self.0.presence.heartbeat().await {
            Ok(beat) => {
                for user in beat.offline {
                    self.went_offline(user).await;
                }
                if beat.rejoined {
                    tracing::warn!(node = %self.0.config.node_id, "this node's presence had expired; announcing again");
                    for user in self.0.registry.local_users() {
                        self.apply(Transition::Online(user)).await;
                    }
                    for (topic, user) in self.0.registry.local_views() {
                        self.apply(Transition::View(topic, user, true)).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence heartbeat failed"),
        }
    }
}

async fn channel_task(
    broker: Arc<dyn Broker>,
    mut rx: mpsc::UnboundedReceiver<ChannelOp>,
    shutdown: CancellationToken,
) {
    loop {
        let op = tokio::select! {
            op = rx.recv() => op,
            () = shutdown.cancelled() => None,
        };
        match op {
            None => break,
            Some(ChannelOp::Subscribe(topic, ready)) => match broker.subscribe(topic.as_str()).await {
                Ok(()) => ready.delivered(),
                Err(e) => tracing::warn!(error = %e, %topic, "broker subscribe failed"),
            },
            Some(ChannelOp::Unsubscribe(topic)) => {
                if let Err(e) = broker.unsubscribe(topic.as_str()).await {
                    tracing::warn!(error = %e, %topic, "broker unsubscribe failed");
                }
            }
        }
    }
}

async fn presence_task(hub: Hub, mut rx: mpsc::UnboundedReceiver<Transition>) {
    let period = (hub.0.config.presence_ttl / 3).max(Duration::from_millis(100));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            transition = rx.recv() => match transition {
                None => break,
                Some(Transition::Shutdown(done)) => {
                    match hub.0.presence.leave().await {
                        Ok(users) => {
                            for user in users {
                                let now = Utc::now();
                                hub.publish_presence(user, false, Some(now));
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(2),
                                    hub.0.hooks.went_offline(user, now),
                                ).await;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot remove this node's presence"),
                    }
                    let _ = done.send(());
                    break;
                }
                Some(transition) => hub.apply(transition).await,
            },
            _ = beat.tick() => hub.beat().await,
            () = hub.0.tasks_shutdown.cancelled() => break,
        }
    }
}

async fn typing_task(hub: Hub) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for (topic, user) in hub.0.typing.expired() {
                    hub.typing_changed(topic, user, false);
                }
            }
            () = hub.0.tasks_shutdown.cancelled() => break,
        }
    }
}

#[async_trait]
impl Realtime for Hub {
    fn publish(&self, topic: &str, event_type: &str, seq: Option<i64>, data: Value) {
        self.publish_event(&Topic::trusted(topic), event_type, seq, None, &data);
    }

    fn revoke(&self, topic: &str, user_id: UserId) {
        let topic = Topic::trusted(topic);
        self.0.registry.revoke(&topic, user_id);
        self.0.broker.publish(topic.as_str(), encode_revoke(user_id));
    }

    async fn viewers(&self, topic: &str, user_ids: &[UserId]) -> Vec<UserId> {
        match self.0.presence.viewers(topic).await {
            Ok(viewing) => user_ids.iter().copied().filter(|u| viewing.contains(u)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read viewers");
                Vec::new()
            }
        }
    }

    async fn is_online(&self, user_id: UserId) -> bool {
        self.0.presence.is_online(user_id).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read presence");
            false
        })
    }
}
