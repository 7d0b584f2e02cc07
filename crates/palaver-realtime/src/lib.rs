//! Palaver's real-time hub: authenticated WebSocket connections, topics,
//! fan-out, ordered replay, presence and typing, on one node or many.
//!
//! The hub knows nothing about chat, calls or notifications. Services plug
//! in through three extension points: topic kinds ([`TopicKind`]: who may
//! subscribe, how to replay missed events by `seq`, a snapshot on
//! subscribe), op handlers ([`OpHandler`], by op name, such as `send`), and
//! the [`palaver_service::Realtime`] seam the hub implements so services
//! publish events. Events cross nodes through a [`Broker`] (in memory, or
//! Redis pub/sub); presence lives in a [`PresenceStore`] (in memory, or
//! Redis with heartbeats and expiry).
//!
//! The hub runs connections on `tokio-tungstenite` directly; it must not
//! depend on axum. The HTTP upgrade, authentication and routes live in
//! `palaver-server` (`src/ws/`).

mod batched;
pub mod broker;
pub mod close;
pub mod config;
mod connection;
pub mod frame;
mod hub;
mod metrics;
pub mod nodes;
mod outbox;
pub mod presence;
mod registry;
pub mod topic;
mod typing;

pub use batched::BatchedWrites;
pub use broker::{Broker, Delivery, MemoryBroker, MemoryBus, RedisBroker};
pub use config::HubConfig;
pub use connection::{ConnId, ConnectParams, NativeProtocol, Protocol};
pub use frame::{ClientFrame, EventFrame};
pub use hub::{Backend, Hub, NoHooks, PresenceHooks};
pub use nodes::NodeRpc;
pub use presence::{MemoryPresence, PresenceStore, RedisPresence};
pub use topic::{Action, OpContext, OpHandler, Replayed, Topic, TopicKind};

/// The WebSocket library the hub speaks, re-exported so the server and
/// tests use the same version.
pub use tokio_tungstenite;
