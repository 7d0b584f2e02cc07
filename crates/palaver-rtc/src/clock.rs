//! Time as the call and matching logic sees it: injected, so tests move it
//! forward (a 30 s ring timeout, a 10 s matching widening) without waiting.

use std::sync::Mutex;

use chrono::TimeDelta;
use palaver_core::time::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, with microsecond precision.
    fn now(&self) -> Timestamp;

    /// Now in milliseconds since the Unix epoch (the matcher's unit; shared
    /// by every node through Redis, so node clocks must be synchronised, as
    /// token expiry already requires).
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        palaver_core::time::now()
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock stopped at the current time.
    pub fn new() -> Self {
        Self(Mutex::new(palaver_core::time::now()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += TimeDelta::from_std(by).unwrap_or(TimeDelta::zero());
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.0.lock().map(|n| *n).unwrap_or_else(|_| palaver_core::time::now())
    }
}
