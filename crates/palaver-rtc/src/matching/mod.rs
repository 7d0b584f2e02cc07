//! Random matching for 1-on-1 practice: the queue of people waiting, and
//! the rules for who may be paired with whom.
//!
//! The rules ([`tier`]): two tickets of the same call type pair when
//! - their languages complement (each is native in what the other learns)
//!   and their levels differ by at most 1: the best pairing (tier 0);
//! - else they learn the same language, levels at most 1 apart (tier 1);
//! - once one of them has waited `widen_level_after` (10 s), any levels;
//! - once one of them has waited `widen_language_after` (30 s), also a
//!   one-way pairing: one is native in what the other learns (tier 2).
//!
//! Never paired: a user with themselves, users in a block either way
//! (`excluded`, loaded from the store at enqueue), users matched with each
//! other within `repeat_after` (24 h; the matcher remembers its pairings and
//! the service adds those in the store). Among eligible partners the best
//! tier wins, then who waited longest (FIFO within a bucket).
//!
//! A new ticket is compared with every waiting ticket as it arrives, so
//! any two compatible tickets are paired at once; tickets are rescanned
//! only when their own waiting time crosses a widening threshold. Each
//! enqueue and rescan is atomic (one lock in memory, one Lua script in
//! Redis), so nobody is matched twice. Both implementations of [`Matcher`]
//! pass one test suite.

mod memory;
mod redis;

use async_trait::async_trait;
use palaver_core::call::CallType;
use palaver_core::user::Level;
use palaver_core::{Result, UserId};
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryMatcher;
pub use self::redis::RedisMatcher;

/// Someone waiting to be matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Who waits.
    pub user_id: UserId,
    /// Voice or video.
    pub call_type: CallType,
    /// The language they want to practise.
    pub language: String,
    /// Their level in it.
    pub level: Level,
    /// The languages they speak natively.
    pub natives: Vec<String>,
    /// Users they must not meet (blocks either way, recent partners).
    pub excluded: Vec<UserId>,
    /// When they joined the queue, ms since the epoch.
    pub enqueued_ms: i64,
}

/// Timing of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchRules {
    /// Waiting this long (ms) allows any level difference.
    pub widen_level_after_ms: i64,
    /// Waiting this long (ms) allows one-way language pairings.
    pub widen_language_after_ms: i64,
    /// Two users matched within this long (ms) are not matched again.
    pub repeat_after_ms: i64,
}

impl Default for MatchRules {
    fn default() -> Self {
        Self { widen_level_after_ms: 10_000, widen_language_after_ms: 30_000, repeat_after_ms: 24 * 3600 * 1000 }
    }
}

impl MatchRules {
    /// Which widening stage a ticket that waited `waited_ms` is in (0, 1, 2).
    pub fn stage(&self, waited_ms: i64) -> u8 {
        if waited_ms >= self.widen_language_after_ms {
            2
        } else if waited_ms >= self.widen_level_after_ms {
            1
        } else {
            0
        }
    }
}

/// How good a pairing is: lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    /// Each is native in what the other learns.
    Complementary = 0,
    /// Both learn the same language.
    SameLanguage = 1,
    /// One is native in what the other learns.
    OneWay = 2,
}

/// The tier at which `a` and `b` may be paired at `now_ms`, ignoring
/// exclusions; `None` when they may not (yet). The Lua script of
/// [`RedisMatcher`] states the same rule.
pub fn tier(a: &Ticket, b: &Ticket, now_ms: i64, rules: &MatchRules) -> Option<Tier> {
    if a.call_type != b.call_type || a.user_id == b.user_id {
        return None;
    }
    let waited = now_ms - a.enqueued_ms.min(b.enqueued_ms);
    let levels_ok = a.level.distance(b.level) <= 1 || waited >= rules.widen_level_after_ms;
    let a_teaches_b = a.natives.contains(&b.language);
    let b_teaches_a = b.natives.contains(&a.language);
    if a_teaches_b && b_teaches_a && levels_ok {
        Some(Tier::Complementary)
    } else if a.language == b.language && levels_ok {
        Some(Tier::SameLanguage)
    } else if (a_teaches_b || b_teaches_a) && waited >= rules.widen_language_after_ms {
        Some(Tier::OneWay)
    } else {
        None
    }
}

/// Whether either ticket excludes the other.
pub fn excluded(a: &Ticket, b: &Ticket) -> bool {
    a.excluded.contains(&b.user_id) || b.excluded.contains(&a.user_id)
}

/// Two tickets taken out of the queue together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    /// The one who waited longer: sends the offer.
    pub caller: Ticket,
    /// The other.
    pub callee: Ticket,
    /// How good the pairing is.
    pub tier: Tier,
}

impl Pairing {
    /// Orders two tickets: the one who waited longer calls.
    pub fn of(a: Ticket, b: Ticket, tier: Tier) -> Self {
        if (b.enqueued_ms, b.user_id) < (a.enqueued_ms, a.user_id) {
            Self { caller: b, callee: a, tier }
        } else {
            Self { caller: a, callee: b, tier }
        }
    }
}

/// The queue. Implementations: in memory (one node) and Redis (any number
/// of nodes sharing one queue).
#[async_trait]
pub trait Matcher: Send + Sync + std::fmt::Debug {
    /// Puts `ticket` in the queue (replacing the user's earlier ticket: a
    /// user is in at most one queue), pairing it at once if a partner
    /// waits. Paired tickets leave the queue.
    async fn enqueue(&self, ticket: Ticket, now_ms: i64) -> Result<Option<Pairing>>;
    /// Takes the user's ticket out; false when they had none.
    async fn leave(&self, user: UserId) -> Result<bool>;
    /// Pairs tickets whose waiting time crossed a widening threshold since
    /// they were last compared, oldest first.
    async fn rescan(&self, now_ms: i64) -> Result<Vec<Pairing>>;
    /// The user's ticket, if they wait.
    async fn ticket(&self, user: UserId) -> Result<Option<Ticket>>;
    /// Every waiting ticket, oldest first (tests and benchmarks).
    async fn waiting(&self) -> Result<Vec<Ticket>>;
}
