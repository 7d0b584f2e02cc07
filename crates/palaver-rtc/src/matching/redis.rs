//! The queue in Redis, shared by every node: users on different nodes are
//! matched with each other. Each operation is one run of `match.lua`, which
//! Redis executes atomically, so a ticket is taken by at most one pairing
//! however many nodes enqueue at once. Tickets are indexed in sorted sets
//! by (call type, language learnt, native language, level), scored by
//! enqueue time, so pairing reads the heads of a few buckets instead of the
//! whole queue.
//!
//! Every key shares one hash tag (`{prefix:match}`), so the script's keys
//! live in one slot; the script computes its key names, which standalone
//! Redis (and a cluster, thanks to the tag) accepts.

use async_trait::async_trait;
use palaver_core::call::CallType;
use palaver_core::user::Level;
use palaver_core::{Error, Result, UserId};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::{MatchRules, Matcher, Pairing, Ticket, Tier};

/// The Redis [`Matcher`].
pub struct RedisMatcher {
    redis: ConnectionManager,
    base: String,
    rules: MatchRules,
    script: redis::Script,
}

impl std::fmt::Debug for RedisMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMatcher").field("base", &self.base).field("rules", &self.rules).finish_non_exhaustive()
    }
}

/// A ticket as the script reads it.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    uid: String,
    ct: String,
    lang: String,
    level: u8,
    natives: Vec<String>,
    excl: Vec<String>,
    enq: i64,
}

fn level_number(level: Level) -> u8 {
    match level {
        Level::Beginner => 0,
        Level::Intermediate => 1,
        Level::Advanced => 2,
    }
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("matcher: unreadable ticket in Redis: {what}"))
}

impl From<&Ticket> for Wire {
    fn from(t: &Ticket) -> Self {
        Wire {
            uid: t.user_id.to_string(),
            ct: t.call_type.as_str().to_owned(),
            lang: t.language.clone(),
            level: level_number(t.level),
            natives: t.natives.clone(),
            excl: t.excluded.iter().map(ToString::to_string).collect(),
            enq: t.enqueued_ms,
        }
    }
}

impl TryFrom<Wire> for Ticket {
    type Error = Error;

    fn try_from(w: Wire) -> Result<Self> {
        let level = match w.level {
            0 => Level::Beginner,
            1 => Level::Intermediate,
            2 => Level::Advanced,
            other => return Err(corrupt(format!("level {other}"))),
        };
        Ok(Ticket {
            user_id: w.uid.parse().map_err(corrupt)?,
            call_type: w.ct.parse::<CallType>().map_err(corrupt)?,
            language: w.lang,
            level,
            natives: w.natives,
            excluded: w.excl.iter().map(|x| x.parse()).collect::<Result<_, _>>().map_err(corrupt)?,
            enqueued_ms: w.enq,
        })
    }
}

fn decode(raw: &str) -> Result<Ticket> {
    serde_json::from_str::<Wire>(raw).map_err(corrupt)?.try_into()
}

fn pairing((a, b, tier): (String, String, i64)) -> Result<Pairing> {
    let tier = match tier {
        0 => Tier::Complementary,
        1 => Tier::SameLanguage,
        2 => Tier::OneWay,
        other => return Err(corrupt(format!("tier {other}"))),
    };
    Ok(Pairing::of(decode(&a)?, decode(&b)?, tier))
}

fn unavailable(e: redis::RedisError) -> Error {
    tracing::warn!(error = %e, "matchmaking queue in Redis failed");
    Error::Unavailable("the matchmaking queue is unavailable, try again".into())
}

impl RedisMatcher {
    /// A queue under `{prefix:match}` keys.
    pub fn new(redis: ConnectionManager, prefix: &str, rules: MatchRules) -> Self {
        Self {
            redis,
            base: format!("{{{prefix}:match}}"),
            rules,
            script: redis::Script::new(include_str!("match.lua")),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &str, now_ms: i64, arg: &str) -> Result<T> {
        let mut conn = self.redis.clone();
        self.script
            .arg(&self.base)
            .arg(command)
            .arg(self.rules.widen_level_after_ms)
            .arg(self.rules.widen_language_after_ms)
            .arg(self.rules.repeat_after_ms)
            .arg(now_ms)
            .arg(arg)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Matcher for RedisMatcher {
    async fn enqueue(&self, ticket: Ticket, now_ms: i64) -> Result<Option<Pairing>> {
        let raw = serde_json::to_string(&Wire::from(&ticket)).map_err(Error::internal)?;
        let found: Option<(String, String, i64)> = self.run("enqueue", now_ms, &raw).await?;
        found.map(pairing).transpose()
    }

    async fn leave(&self, user: UserId) -> Result<bool> {
        let removed: i64 = self.run("leave", 0, &user.to_string()).await?;
        Ok(removed == 1)
    }

    async fn rescan(&self, now_ms: i64) -> Result<Vec<Pairing>> {
        let found: Vec<(String, String, i64)> = self.run("rescan", now_ms, "").await?;
        found.into_iter().map(pairing).collect()
    }

    async fn ticket(&self, user: UserId) -> Result<Option<Ticket>> {
        let raw: Option<String> = self.run("ticket", 0, &user.to_string()).await?;
        raw.as_deref().map(decode).transpose()
    }

    async fn waiting(&self) -> Result<Vec<Ticket>> {
        let raw: Vec<String> = self.run("waiting", 0, "").await?;
        let mut tickets = raw.iter().map(|r| decode(r)).collect::<Result<Vec<_>>>()?;
        tickets.sort_by_key(|t| (t.enqueued_ms, t.user_id));
        Ok(tickets)
    }
}
