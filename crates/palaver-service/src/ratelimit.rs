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

#[cfg(test)]
mod tests {
    use super::*;

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
