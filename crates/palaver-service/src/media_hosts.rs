//! Which node hosts each voice room's media.
//!
//! A room's media lives in one node's SFU. The record of that node is a
//! lease: the first node that needs the room's media claims it, the hosting
//! node renews the leases of the rooms its SFU carries every third of the
//! lease's time to live, and a node that dies stops renewing, so its rooms
//! fall free within one TTL and the next join or signal re-hosts them on a
//! live node. In one process the record lives in memory; across nodes in
//! Redis (`{prefix}:voice:host:{room}`, a JSON value with a `PX` expiry,
//! changed only by Lua scripts so a claim never overwrites a live host).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use palaver_core::{Error, Id, Result};
use serde::{Deserialize, Serialize};

/// A node that carries media: its name and its SFU's UDP address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaHost {
    /// The node's name (`PALAVER_NODE_ID`).
    pub node: String,
    /// Where clients send media (`host:port`).
    pub udp: String,
}

/// The directory of room hosts.
#[async_trait]
pub trait MediaHosts: Send + Sync {
    /// The room's host; `me` becomes it when the room has none (never
    /// hosted, released, or its host's lease expired).
    async fn claim(&self, room: Id, me: &MediaHost) -> Result<MediaHost>;

    /// The room's host, if it has a live one.
    async fn get(&self, room: Id) -> Result<Option<MediaHost>>;

    /// Extends `me`'s leases on `rooms` (those its SFU carries), taking
    /// back any that lapsed meanwhile; returns the rooms another node now
    /// hosts, whose media `me` should end.
    async fn renew(&self, me: &MediaHost, rooms: &[Id]) -> Result<Vec<Id>>;

    /// Forgets the room's host (the room closed or emptied): the next
    /// participant's node hosts it.
    async fn release(&self, room: Id) -> Result<()>;
}

/// The directory in this process (one node, or nodes sharing it in tests).
#[derive(Debug)]
pub struct MemoryMediaHosts {
    ttl: Duration,
    rooms: Mutex<HashMap<Id, (MediaHost, Instant)>>,
}

impl MemoryMediaHosts {
    /// Leases live `ttl` unless renewed.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, rooms: Mutex::default() }
    }
}

#[async_trait]
impl MediaHosts for MemoryMediaHosts {
    async fn claim(&self, room: Id, me: &MediaHost) -> Result<MediaHost> {
        let now = Instant::now();
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        match rooms.get(&room) {
            Some((host, until)) if *until > now => Ok(host.clone()),
            _ => {
                rooms.insert(room, (me.clone(), now + self.ttl));
                Ok(me.clone())
            }
        }
    }

    async fn get(&self, room: Id) -> Result<Option<MediaHost>> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        Ok(rooms.get(&room).filter(|(_, until)| *until > Instant::now()).map(|(host, _)| host.clone()))
    }

    async fn renew(&self, me: &MediaHost, ids: &[Id]) -> Result<Vec<Id>> {
        let now = Instant::now();
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let mut lost = Vec::new();
        for id in ids {
            match rooms.get(id) {
                Some((host, until)) if *until > now && host != me => lost.push(*id),
                _ => {
                    rooms.insert(*id, (me.clone(), now + self.ttl));
                }
            }
        }
        Ok(lost)
    }

    async fn release(&self, room: Id) -> Result<()> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).remove(&room);
        Ok(())
    }
}

/// Claims a free room for `ARGV[1]`, or returns its live host.
const CLAIM_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

/// For each room: 1 when `ARGV[1]` holds (or took back) its lease, 0 when
/// another node hosts it.
const RENEW_LUA: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v == false or v == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
";

/// The directory in Redis, shared by every node.
pub struct RedisMediaHosts {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    ttl: Duration,
    claim: redis::Script,
    renew: redis::Script,
}

impl std::fmt::Debug for RedisMediaHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMediaHosts").field("prefix", &self.prefix).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl RedisMediaHosts {
    /// Leases under `{prefix}:voice:host:`, living `ttl` unless renewed.
    pub fn new(redis: redis::aio::ConnectionManager, prefix: &str, ttl: Duration) -> Self {
        Self {
            redis,
            prefix: format!("{prefix}:voice:host:"),
            ttl,
            claim: redis::Script::new(CLAIM_LUA),
            renew: redis::Script::new(RENEW_LUA),
        }
    }

    fn key(&self, room: Id) -> String {
        format!("{}{room}", self.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("Redis: {e}"))
}

fn encode(host: &MediaHost) -> Result<String> {
    serde_json::to_string(host).map_err(Error::internal)
}

fn decode(raw: &str) -> Result<MediaHost> {
    serde_json::from_str(raw).map_err(|e| Error::internal(format!("bad media host record: {e}")))
}

#[async_trait]
impl MediaHosts for RedisMediaHosts {
    async fn claim(&self, room: Id, me: &MediaHost) -> Result<MediaHost> {
        let mut conn = self.redis.clone();
        let raw: String = self
            .claim
            .key(self.key(room))
            .arg(encode(me)?)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        decode(&raw)
    }

    async fn get(&self, room: Id) -> Result<Option<MediaHost>> {
        let mut conn = self.redis.clone();
        let raw: Option<String> =
            redis::cmd("GET").arg(self.key(room)).query_async(&mut conn).await.map_err(unavailable)?;
        raw.as_deref().map(decode).transpose()
    }

    async fn renew(&self, me: &MediaHost, rooms: &[Id]) -> Result<Vec<Id>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.redis.clone();
        let mut invocation = self.renew.prepare_invoke();
        for room in rooms {
            invocation.key(self.key(*room));
        }
        invocation.arg(encode(me)?).arg(self.ttl_ms());
        let held: Vec<i64> = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(rooms.iter().zip(held).filter(|(_, held)| *held == 0).map(|(room, _)| *room).collect())
    }

    async fn release(&self, room: Id) -> Result<()> {
        let mut conn = self.redis.clone();
        redis::cmd("DEL").arg(self.key(room)).query_async::<()>(&mut conn).await.map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(node: &str) -> MediaHost {
        MediaHost { node: node.into(), udp: format!("127.0.0.1:{}", node.len() + 4000) }
    }

    /// Waits (bounded) until the room's lease has lapsed.
    async fn until_free(hosts: &dyn MediaHosts, room: Id) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while hosts.get(room).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the lease never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The behaviour both directories must have; `ttl` is short.
    async fn conformance(hosts: &dyn MediaHosts, room: Id) {
        let (a, b) = (host("node-a"), host("node-b"));
        assert_eq!(hosts.get(room).await.unwrap(), None);
        assert_eq!(hosts.claim(room, &a).await.unwrap(), a, "a free room goes to the claimer");
        assert_eq!(hosts.claim(room, &b).await.unwrap(), a, "a hosted room keeps its host");
        assert_eq!(hosts.get(room).await.unwrap(), Some(a.clone()));
        // The host renews; another node's renewal of the room is refused.
        assert!(hosts.renew(&a, &[room]).await.unwrap().is_empty());
        assert_eq!(hosts.renew(&b, &[room, room + 1]).await.unwrap(), vec![room]);
        assert_eq!(hosts.get(room + 1).await.unwrap(), Some(b.clone()), "a free room is taken by its renewer");
        // Released: the next claimer hosts it.
        hosts.release(room).await.unwrap();
        assert_eq!(hosts.claim(room, &b).await.unwrap(), b);
        // A host that stops renewing (a dead node) loses the room within a TTL.
        until_free(hosts, room).await;
        assert_eq!(hosts.claim(room, &a).await.unwrap(), a, "an expired lease is re-hosted");
        hosts.release(room).await.unwrap();
        hosts.release(room + 1).await.unwrap();
    }

    #[tokio::test]
    async fn memory_hosts_conformance() {
        conformance(&MemoryMediaHosts::new(Duration::from_millis(300)), 7).await;
    }

    #[tokio::test]
    async fn redis_hosts_conformance() {
        let Some(url) = std::env::var("PALAVER_TEST_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
            eprintln!("note: Redis media-hosts test skipped (PALAVER_TEST_REDIS_URL is not set)");
            return;
        };
        let client = redis::Client::open(url).unwrap();
        let manager = client.get_connection_manager().await.unwrap();
        let prefix = format!("palaver-test-{}", uuid::Uuid::new_v4().simple());
        let hosts = RedisMediaHosts::new(manager.clone(), &prefix, Duration::from_millis(300));
        conformance(&hosts, 7).await;
        // Two nodes on one Redis see one host.
        let other = RedisMediaHosts::new(manager, &prefix, Duration::from_millis(300));
        assert_eq!(hosts.claim(9, &host("node-a")).await.unwrap(), host("node-a"));
        assert_eq!(other.claim(9, &host("node-b")).await.unwrap(), host("node-a"));
        hosts.release(9).await.unwrap();
    }
}
