//! Presence in Redis.
//!
//! Keys (under `{prefix}:rt:`):
//! - `nodes`: sorted set, node id -> expiry (ms, Redis clock); each node
//!   pushes its expiry forward by the presence TTL every third of it.
//! - `on:{user}`: set of the nodes where the user has a connection. The
//!   user is online when one of them is alive (in `nodes`, not expired).
//! - `nu:{node}`: set of the users connected on a node, so that a dead
//!   node's users can be found.
//! - `vw:{topic}`: set of `user@node` viewing a topic.
//! - `ty:{topic}`: sorted set, user -> typing expiry.
//!
//! Every transition is one Lua script, so two nodes changing the same user
//! at once agree on which of them saw the first connection or the last: a
//! `presence` event is published exactly once per change. Any node's
//! heartbeat reaps expired nodes: it claims one (`ZREM` inside the script,
//! so only one reaper gets it), removes it from its users' sets and returns
//! the users left without a live node, who are then offline. With the
//! default TTL of 10 s and heartbeats every 3.3 s, a crashed node's users
//! are offline within about 13 s.
//!
//! The scripts build key names from the prefix, so this needs a single
//! Redis (or a primary with replicas), not Redis Cluster.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use palaver_core::{Error, Result, UserId};
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Heartbeat, PresenceStore};

const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live(key, nodes)
  local n = 0
  for _, node in ipairs(redis.call('SMEMBERS', key)) do
    local exp = redis.call('ZSCORE', nodes, node)
    if exp and tonumber(exp) > now then n = n + 1 end
  end
  return n
end
";

// KEYS: nodes, on:{user}, nu:{node}; ARGV: node, user.
const CONNECT: &str = r"
local added = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
if added == 1 and live(KEYS[2], KEYS[1]) == 1 then return 1 end
return 0
";

// KEYS: nodes, on:{user}, nu:{node}; ARGV: node, user.
const DISCONNECT: &str = r"
local removed = redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
if removed == 1 and live(KEYS[2], KEYS[1]) == 0 then return 1 end
return 0
";

// KEYS: nodes, on:{user}.
const IS_ONLINE: &str = r"
return live(KEYS[2], KEYS[1])
";

// KEYS: nodes; ARGV: node, ttl ms. Returns 1 when the entry was missing.
const HEARTBEAT: &str = r"
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
";

// KEYS: nodes; ARGV: key prefix, node to reap or '' for any expired one.
// Returns nil, or {node, {users gone offline}}.
const REAP: &str = r"
local node = ARGV[2]
if node == '' then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
  if #dead == 0 then return false end
  node = dead[1]
end
redis.call('ZREM', KEYS[1], node)
local nu = ARGV[1] .. 'nu:' .. node
local offline = {}
for _, user in ipairs(redis.call('SMEMBERS', nu)) do
  local on = ARGV[1] .. 'on:' .. user
  if redis.call('SREM', on, node) == 1 and live(on, KEYS[1]) == 0 then
    table.insert(offline, user)
  end
end
redis.call('DEL', nu)
return {node, offline}
";

// KEYS: vw:{topic}, nodes. Returns the users on live nodes; drops entries
// of reaped nodes.
const VIEWERS: &str = r"
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local at = string.find(m, '@', 1, true)
  if at then
    local exp = redis.call('ZSCORE', KEYS[2], string.sub(m, at + 1))
    if not exp then
      redis.call('SREM', KEYS[1], m)
    elseif tonumber(exp) > now then
      table.insert(out, string.sub(m, 1, at - 1))
    end
  end
end
return out
";

// KEYS: ty:{topic}; ARGV: user, ttl ms (0: stopped).
const SET_TYPING: &str = r"
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
";

// KEYS: ty:{topic}.
const TYPING: &str = r"
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
";

/// Presence shared by every node through Redis.
pub struct RedisPresence {
    conn: ConnectionManager,
    keys: String,
    node: String,
    ttl: Duration,
    connect: Script,
    disconnect: Script,
    is_online: Script,
    heartbeat: Script,
    reap: Script,
    viewers: Script,
    set_typing: Script,
    typing: Script,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence").field("node", &self.node).finish_non_exhaustive()
    }
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("Redis: {e}"))
}

impl RedisPresence {
    /// Presence for node `node`; entries expire `ttl` after the last
    /// heartbeat.
    pub fn new(conn: ConnectionManager, prefix: &str, node: &str, ttl: Duration) -> Self {
        Self {
            conn,
            keys: format!("{prefix}:rt:"),
            node: node.to_owned(),
            ttl,
            connect: script(CONNECT),
            disconnect: script(DISCONNECT),
            is_online: script(IS_ONLINE),
            heartbeat: script(HEARTBEAT),
            reap: script(REAP),
            viewers: script(VIEWERS),
            set_typing: script(SET_TYPING),
            typing: script(TYPING),
        }
    }

    fn key(&self, rest: impl std::fmt::Display) -> String {
        format!("{}{rest}", self.keys)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Reaps `node` (or any expired node, with `""`); `None` when there was
    /// none.
    async fn reap_one(&self, node: &str) -> Result<Option<Vec<UserId>>> {
        let mut conn = self.conn.clone();
        let out: Option<(String, Vec<String>)> = self
            .reap
            .key(self.key("nodes"))
            .arg(&self.keys)
            .arg(node)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(out.map(|(reaped, users)| {
            tracing::info!(node = reaped, users = users.len(), "reaped a node's presence");
            users.iter().filter_map(|u| u.parse().ok()).collect()
        }))
    }

    /// Reaps this node's own entries left from an earlier run with the same
    /// node id; returns the users who went offline.
    pub async fn reset(&self) -> Result<Vec<UserId>> {
        Ok(self.reap_one(&self.node).await?.unwrap_or_default())
    }
}

impl RedisPresence {
    /// Runs the connect or disconnect script for one of this node's
    /// connections of `user`: true when the user's online state changed.
    async fn run_membership(&self, script: &Script, user: UserId) -> Result<bool> {
        let mut conn = self.conn.clone();
        let changed: i64 = script
            .key(self.key("nodes"))
            .key(self.key(format!("on:{user}")))
            .key(self.key(format!("nu:{}", self.node)))
            .arg(&self.node)
            .arg(user)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn connected(&self, user: UserId) -> Result<bool> {
        self.run_membership(&self.connect, user).await
    }

    async fn disconnected(&self, user: UserId) -> Result<bool> {
        self.run_membership(&self.disconnect, user).await
    }

    async fn is_online(&self, user: UserId) -> Result<bool> {
        let mut conn = self.conn.clone();
        let live: i64 = self
            .is_online
            .key(self.key("nodes"))
            .key(self.key(format!("on:{user}")))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(live > 0)
    }

    async fn view(&self, topic: &str, user: UserId, viewing: bool) -> Result<()> {
        let mut conn = self.conn.clone();
        let member = format!("{user}@{}", self.node);
        let cmd = if viewing { "SADD" } else { "SREM" };
        redis::cmd(cmd)
            .arg(self.key(format!("vw:{topic}")))
            .arg(member)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn viewers(&self, topic: &str) -> Result<HashSet<UserId>> {
        let mut conn = self.conn.clone();
        let users: Vec<String> = self
            .viewers
            .key(self.key(format!("vw:{topic}")))
            .key(self.key("nodes"))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(users.iter().filter_map(|u| u.parse().ok()).collect())
    }

    async fn set_typing(&self, topic: &str, user: UserId, ttl: Option<Duration>) -> Result<()> {
        let mut conn = self.conn.clone();
        let ms = ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
        self.set_typing
            .key(self.key(format!("ty:{topic}")))
            .arg(user)
            .arg(ms)
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn typing(&self, topic: &str) -> Result<Vec<UserId>> {
        let mut conn = self.conn.clone();
        let users: Vec<String> =
            self.typing.key(self.key(format!("ty:{topic}"))).invoke_async(&mut conn).await.map_err(unavailable)?;
        let mut users: Vec<UserId> = users.iter().filter_map(|u| u.parse().ok()).collect();
        users.sort_unstable();
        Ok(users)
    }

    async fn heartbeat(&self) -> Result<Heartbeat> {
        let mut conn = self.conn.clone();
        let added: i64 = self
            .heartbeat
            .key(self.key("nodes"))
            .arg(&self.node)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut offline = Vec::new();
        // A bounded number of dead nodes per beat; the next beat goes on.
        for _ in 0..32 {
            match self.reap_one("").await? {
                Some(users) => offline.extend(users),
                None => break,
            }
        }
        Ok(Heartbeat { offline, rejoined: added == 1 })
    }

    async fn leave(&self) -> Result<Vec<UserId>> {
        self.reset().await
    }
}
