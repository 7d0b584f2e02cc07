//! Topics and the extension points services plug into the hub with.
//!
//! A topic is `kind:id` (`chat:42`, `user:7`, `presence:7`). Each kind is
//! registered with a [`TopicKind`]: it decides who may subscribe (and, for
//! sequenced kinds such as chat, replays history by `seq`). Client ops other
//! than the hub's own (`subscribe`, `unsubscribe`, `typing`, `ping`) are
//! dispatched by name to an [`OpHandler`].

use std::sync::Arc;

use async_trait::async_trait;
use palaver_core::{Error, Result, UserId};
use palaver_service::Principal;
use serde_json::{Map, Value};

use crate::connection::ConnId;
use crate::hub::Hub;

/// Longest topic name accepted from a client.
pub const MAX_TOPIC_LEN: usize = 96;

/// A topic name, `kind:id`, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Topic {
    /// Parses a client-supplied name: a lowercase kind, a colon, and an id
    /// of letters, digits, `-` or `_`.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = || Error::invalid("topic", "must look like kind:id, for example chat:42");
        if name.len() > MAX_TOPIC_LEN {
            return Err(Error::invalid("topic", format!("is longer than {MAX_TOPIC_LEN} characters")));
        }
        let (kind, id) = name.split_once(':').ok_or_else(bad)?;
        let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !kind_ok || !id_ok {
            return Err(bad());
        }
        Ok(Self(name.into()))
    }

    /// A topic built by the server (trusted, not validated).
    pub fn new(kind: &str, id: impl std::fmt::Display) -> Self {
        Self(format!("{kind}:{id}").into())
    }

    /// A name that came from this server (a service, the broker), used as
    /// it is.
    pub fn trusted(name: &str) -> Self {
        Self(name.into())
    }

    /// `user:{id}`: a user's own events (notifications, calls, matches).
    pub fn user(id: UserId) -> Self {
        Self::new("user", id)
    }

    /// `presence:{id}`: a user's online state.
    pub fn presence(id: UserId) -> Self {
        Self::new("presence", id)
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the colon.
    pub fn kind(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(k, _)| k)
    }

    /// The part after the colon.
    pub fn id(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, id)| id)
    }

    /// The id as a number, for kinds whose ids are database ids.
    pub fn id_i64(&self) -> Option<i64> {
        self.id().parse().ok()
    }

    /// The id as a number, or a `not_found` error naming the topic (a
    /// kind with numeric ids was given something else).
    pub fn numeric_id(&self) -> Result<i64> {
        self.id_i64().ok_or_else(|| Error::NotFound(format!("topic {self} not found")))
    }
}

/// What a user wants to do with a topic; kinds may allow some and refuse
/// others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Receive its events (checked at `subscribe`).
    Subscribe,
    /// Post to it (checked by op handlers that post).
    Send,
}

/// One event loaded from history (replay) or built for a snapshot.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The event type (`message`, `presence`, ...).
    pub event_type: String,
    /// The event's sequence number in its topic, for sequenced kinds.
    pub seq: Option<i64>,
    /// The payload, as live events carry it.
    pub data: Value,
}

/// A kind of topic, registered with [`Hub::register_kind`].
///
/// Sequenced kinds (chat) number their events with a gapless per-topic
/// `seq` and can load them again from durable storage: the hub then
/// delivers each connection every event exactly once and in order, filling
/// gaps from [`TopicKind::replay`], and replays what a client missed when it
/// subscribes with `since_seq`.
#[async_trait]
pub trait TopicKind: Send + Sync + 'static {
    /// Whether `who` may do `action` on `topic`. Refusals are `forbidden`
    /// or `not_found` errors, sent to the client as they are. `who` is the
    /// connection's user as authenticated when it opened.
    async fn authorize(&self, who: &Principal, topic: &Topic, action: Action) -> Result<()>;

    /// Whether events carrying a `seq` are numbered without gaps and can be
    /// replayed.
    fn sequenced(&self) -> bool {
        false
    }

    /// The latest `seq` of the topic (0 when empty): where a subscription
    /// without `since_seq` starts.
    async fn head(&self, _who: &Principal, _topic: &Topic) -> Result<i64> {
        Ok(0)
    }

    /// Up to `limit` events with `seq > after`, in `seq` order, as live
    /// events carried them.
    async fn replay(&self, _who: &Principal, _topic: &Topic, _after: i64, _limit: usize) -> Result<Vec<Replayed>> {
        Ok(Vec::new())
    }

    /// Events sent to a new subscriber right after the ack (current state,
    /// such as a user's presence).
    async fn snapshot(&self, _who: &Principal, _topic: &Topic) -> Result<Vec<Replayed>> {
        Ok(Vec::new())
    }

    /// Whether subscribers may send `typing` on the topic.
    fn typing(&self) -> bool {
        false
    }

    /// Whether subscriptions count for [`palaver_service::Realtime::viewers`]
    /// ("who has this room open"); off for kinds every connection has.
    fn tracks_viewers(&self) -> bool {
        true
    }
}

/// What an op handler knows about the frame's sender.
#[derive(Clone)]
pub struct OpContext {
    /// The authenticated user.
    pub user: UserId,
    /// The user and session as authenticated when the connection opened
    /// (services take it as they do from REST).
    pub principal: Arc<Principal>,
    /// The connection the frame came on.
    pub conn: ConnId,
    /// The connection's cluster-wide key (`{node}/{id}`), for
    /// [`Hub::send_to_connection`].
    pub connection: String,
    /// The hub, to publish or look up presence.
    pub hub: Hub,
}

impl std::fmt::Debug for OpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpContext").field("user", &self.user).field("conn", &self.conn).finish()
    }
}

/// Handles one client op (`send`, `read`, `signal`), registered with
/// [`Hub::register_op`]. Handlers own their authorization: they are
/// services that check the same rules as their REST twins.
#[async_trait]
pub trait OpHandler: Send + Sync + 'static {
    /// Handles one frame (its fields other than `op` and `ref`). The
    /// returned fields are added to the `ack`; an error becomes an `error`
    /// frame with the same `ref`.
    async fn handle(&self, ctx: &OpContext, body: Map<String, Value>) -> Result<Map<String, Value>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_strictly() {
        let t = Topic::parse("chat:42").unwrap();
        assert_eq!((t.kind(), t.id(), t.id_i64()), ("chat", "42", Some(42)));
        for bad in ["", "chat", "chat:", ":42", "Chat:1", "chat:4 2", "chat:1:2", "chat:ü"] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
        assert!(Topic::parse(&format!("chat:{}", "1".repeat(200))).is_err());
    }
}
