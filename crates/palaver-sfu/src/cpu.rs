//! CPU time of the calling thread, from `getrusage(RUSAGE_THREAD)`: the
//! media thread reports its own, so the figure excludes whatever else the
//! process runs (HTTP, benchmark clients).

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike as _;

/// User + system CPU seconds of the calling thread (0 when unavailable).
pub(crate) fn thread_cpu_seconds() -> f64 {
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(usage) => (usage.user_time().num_microseconds() + usage.system_time().num_microseconds()) as f64 / 1e6,
        Err(_) => 0.0,
    }
}
