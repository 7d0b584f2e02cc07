//! Request budgets per key (an IP, a user and an action), in process by
//! default; a shared implementation over Redis lets several nodes enforce
//! one budget.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use palaver_core::{Error, Result};

/// A budget: `count` requests per `per`, refilled continuously (GCRA), so a
/// client may burst up to `count` and then continues at `count/per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateSpec {
    /// Requests allowed in one period (and the burst size).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl std::str::FromStr for RateSpec {
    type Err = String;

    /// Parses `N/period`, such as `10/1m`, `300/1min` or `20/1h`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, per) = s.split_once('/').ok_or("expected N/period, such as 10/1m")?;
        let count: u32 = count.trim().parse().map_err(|_| format!("`{count}` is not a count"))?;
        let per = humantime::parse_duration(per.trim()).map_err(|e| format!("bad period `{per}`: {e}"))?;
        if count == 0 || per.is_zero() {
            return Err("count and period must be above zero".into());
        }
        Ok(Self { count, per })
    }
}

impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.per.as_secs())
    }
}

/// Checks and spends budgets.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Spends one unit of `key`'s budget, or fails with
    /// [`Error::RateLimited`] saying when to retry.
    async fn check(&self, key: &str, spec: RateSpec) -> Result<()>;
}

/// In-process budgets (one node). Keys idle for a full period are forgotten
/// by [`MemoryRateLimiter::prune`], so memory stays bounded.
#[derive(Default)]
pub struct MemoryRateLimiter {
    limiters: Mutex<HashMap<RateSpec, Arc<DefaultKeyedRateLimiter<String>>>>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter").finish_non_exhaustive()
    }
}

impl MemoryRateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn limiter(&self, spec: RateSpec) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut map = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(spec)
            .or_insert_with(|| {
                let burst = NonZeroU32::new(spec.count).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(spec.per / spec.count.max(1))
                    .unwrap_or_else(|| Quota::per_second(burst))
                    .allow_burst(burst);
                Arc::new(DefaultKeyedRateLimiter::keyed(quota))
            })
            .clone()
    }

    /// Forgets keys whose budget is full again.
    pub fn prune(&self) {
        let limiters: Vec<_> = self.limiters.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for limiter in limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, spec: RateSpec) -> Result<()> {
        let limiter = self.limiter(spec);
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::RateLimited { retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
        })
    }
}

/// Budgets shared by every node through Redis: the same GCRA as
/// [`MemoryRateLimiter`] (burst of `count`, then `count` per period),
/// computed atomically in a Lua script against Redis's clock, so nodes with
/// skewed clocks agree. One key per budget and subject, under the
/// configured prefix, expiring when the budget is full again.
///
/// Written by hand because it is a dozen lines of Lua; the crates that
/// offer it bring their own Redis clients.
#[derive(Clone)]
pub struct RedisRateLimiter {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    script: Arc<redis::Script>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// GCRA: `tat` is the theoretical arrival time of the next request. A
/// request is allowed when `tat + interval - period <= now`; it then moves
/// `tat` on by one interval. Returns 0 when allowed, else the milliseconds
/// to wait.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  return math.ceil((allow_at - now) / 1000)
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"#;

impl RedisRateLimiter {
    /// A limiter keeping its keys under `{prefix}:rl:`.
    pub fn new(redis: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self { redis, prefix: prefix.to_owned(), script: Arc::new(redis::Script::new(GCRA_LUA)) }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, spec: RateSpec) -> Result<()> {
        let period = u64::try_from(spec.per.as_micros()).unwrap_or(u64::MAX);
        let interval = (period / u64::from(spec.count.max(1))).max(1);
        let redis_key = format!("{}:rl:{}/{}us:{key}", self.prefix, spec.count, period);
        let mut conn = self.redis.clone();
        let wait_ms: u64 = self
            .script
            .key(redis_key)
            .arg(interval)
            .arg(period)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Error::Unavailable(format!("rate limiter unavailable: {e}")))?;
        if wait_ms == 0 { Ok(()) } else { Err(Error::RateLimited { retry_after_secs: wait_ms.div_ceil(1000).max(1) }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The behaviour both limiters must have.
    async fn conformance(limiter: &dyn RateLimiter, subject: &str) {
        let spec: RateSpec = "3/1h".parse().unwrap();
        for _ in 0..3 {
            limiter.check(&format!("{subject}:a"), spec).await.unwrap();
        }
        match limiter.check(&format!("{subject}:a"), spec).await {
            Err(Error::RateLimited { retry_after_secs }) => {
                assert!((1..=1200).contains(&retry_after_secs), "retry after {retry_after_secs}")
            }
            other => panic!("expected rate limit, got {other:?}"),
        }
        limiter.check(&format!("{subject}:b"), spec).await.expect("other keys have their own budget");
        let other_spec: RateSpec = "1/1h".parse().unwrap();
        limiter.check(&format!("{subject}:a"), other_spec).await.expect("each budget counts on its own");

        // A short budget refills: wait (with a deadline) until allowed again.
        let fast: RateSpec = "2/1s".parse().unwrap();
        limiter.check(&format!("{subject}:f"), fast).await.unwrap();
        limiter.check(&format!("{subject}:f"), fast).await.unwrap();
        let Err(Error::RateLimited { retry_after_secs }) = limiter.check(&format!("{subject}:f"), fast).await else {
            panic!("third request in a burst of two is refused");
        };
        assert_eq!(retry_after_secs, 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match limiter.check(&format!("{subject}:f"), fast).await {
                Ok(()) => break,
                Err(Error::RateLimited { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("budget never refilled: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn memory_limiter_conformance() {
        conformance(&MemoryRateLimiter::new(), "mem").await;
    }

    #[tokio::test]
    async fn redis_limiter_conformance() {
        let Some(url) = std::env::var("PALAVER_TEST_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
            eprintln!("note: Redis rate-limiter test skipped (PALAVER_TEST_REDIS_URL is not set)");
            return;
        };
        let client = redis::Client::open(url).unwrap();
        let manager = client.get_connection_manager().await.unwrap();
        let prefix = format!("palaver-test-{}", uuid::Uuid::new_v4().simple());
        let limiter = RedisRateLimiter::new(manager.clone(), &prefix);
        conformance(&limiter, "redis").await;
        // Two limiters on one Redis (two nodes) share the budget.
        let other_node = RedisRateLimiter::new(manager.clone(), &prefix);
        let spec: RateSpec = "2/1h".parse().unwrap();
        limiter.check("shared", spec).await.unwrap();
        other_node.check("shared", spec).await.unwrap();
        assert!(matches!(limiter.check("shared", spec).await, Err(Error::RateLimited { .. })));
        // Keys live under the prefix and expire.
        let mut conn = manager.clone();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:rl:*")).query_async(&mut conn).await.unwrap();
        assert!(!keys.is_empty());
        for key in &keys {
            let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
            assert!(ttl > 0, "{key} expires");
        }
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }

    #[test]
    fn specs_parse() {
        let spec: RateSpec = "10/10m".parse().unwrap();
        assert_eq!((spec.count, spec.per), (10, Duration::from_secs(600)));
        assert_eq!("300/1min".parse::<RateSpec>().unwrap().per, Duration::from_secs(60));
        for bad in ["", "10", "0/1m", "10/0s", "x/1m", "10/1q"] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn burst_then_refuse_with_retry_after() {
        let limiter = MemoryRateLimiter::new();
        let spec: RateSpec = "3/1h".parse().unwrap();
        for _ in 0..3 {
            limiter.check("ip:1", spec).await.unwrap();
        }
        match limiter.check("ip:1", spec).await {
            Err(Error::RateLimited { retry_after_secs }) => assert!((1..=1200).contains(&retry_after_secs)),
            other => panic!("expected rate limit, got {other:?}"),
        }
        limiter.check("ip:2", spec).await.expect("other keys have their own budget");
    }
}
