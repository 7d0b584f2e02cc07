//! Timestamps. PostgreSQL keeps microseconds; every timestamp Palaver makes is
//! truncated to microseconds so a value reads back from either database
//! exactly as it was written.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// Timestamps as stored and sent: UTC, microsecond precision.
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to microseconds.
pub fn now() -> Timestamp {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;

    #[test]
    fn now_has_microsecond_precision() {
        assert_eq!(super::now().nanosecond() % 1_000, 0);
    }
}
