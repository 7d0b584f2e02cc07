//! The in-process queue, for a single node: one lock around the tickets in
//! FIFO order, indexed by (call type, language learnt) and (call type,
//! native language). A ticket can only pair with one that learns one of its
//! native languages, learns its language, or speaks its language natively
//! (every tier needs one of these), so pairing compares it with those
//! tickets only, in FIFO order, with the rule itself ([`tier`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use palaver_core::{Error, Result, UserId};

use palaver_core::call::CallType;

use super::{MatchRules, Matcher, Pairing, Ticket, Tier, excluded, tier};

#[derive(Debug, Default)]
struct State {
    /// Waiting tickets by (enqueued_ms, arrival number): FIFO order.
    queue: BTreeMap<(i64, u64), Waiting>,
    /// Where each user's ticket is.
    by_user: HashMap<UserId, (i64, u64)>,
    /// Pairings remembered: user -> partner -> when (ms).
    recent: HashMap<UserId, HashMap<UserId, i64>>,
    /// Queue keys by (call type, language learnt).
    by_learning: HashMap<(CallType, String), BTreeSet<(i64, u64)>>,
    /// Queue keys by (call type, native language).
    by_native: HashMap<(CallType, String), BTreeSet<(i64, u64)>>,
    arrivals: u64,
}

#[derive(Debug)]
struct Waiting {
    ticket: Ticket,
    /// The widening stage the ticket was last compared at.
    stage: u8,
}

/// The in-memory [`Matcher`].
#[derive(Debug)]
pub struct MemoryMatcher {
    rules: MatchRules,
    state: Mutex<State>,
}

impl MemoryMatcher {
    /// An empty queue.
    pub fn new(rules: MatchRules) -> Self {
        Self { rules, state: Mutex::default() }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| Error::internal("matcher lock poisoned"))
    }
}

impl State {
    fn remove(&mut self, user: UserId) -> Option<Waiting> {
        let key = self.by_user.remove(&user)?;
        let waiting = self.queue.remove(&key)?;
        let t = &waiting.ticket;
        let drop_key = |index: &mut HashMap<(CallType, String), BTreeSet<(i64, u64)>>, lang: &str| {
            let slot = (t.call_type, lang.to_owned());
            if let Some(set) = index.get_mut(&slot) {
                set.remove(&key);
                if set.is_empty() {
                    index.remove(&slot);
                }
            }
        };
        drop_key(&mut self.by_learning, &t.language);
        for native in &t.natives {
            drop_key(&mut self.by_native, native);
        }
        Some(waiting)
    }

    fn insert(&mut self, ticket: Ticket, stage: u8) {
        self.arrivals += 1;
        let key = (ticket.enqueued_ms, self.arrivals);
        self.by_user.insert(ticket.user_id, key);
        self.by_learning.entry((ticket.call_type, ticket.language.clone())).or_default().insert(key);
        for native in &ticket.natives {
            self.by_native.entry((ticket.call_type, native.clone())).or_default().insert(key);
        }
        self.queue.insert(key, Waiting { ticket, stage });
    }

    /// Queue keys of every ticket `ticket` could pair with at some tier,
    /// in FIFO order.
    fn candidates(&self, ticket: &Ticket) -> Vec<(i64, u64)> {
        let ct = ticket.call_type;
        let mut keys: Vec<(i64, u64)> = Vec::new();
        let mut add = |set: Option<&BTreeSet<(i64, u64)>>| keys.extend(set.into_iter().flatten().copied());
        for native in &ticket.natives {
            add(self.by_learning.get(&(ct, native.clone())));
        }
        add(self.by_learning.get(&(ct, ticket.language.clone())));
        add(self.by_native.get(&(ct, ticket.language.clone())));
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    fn met_recently(&self, a: UserId, b: UserId, now_ms: i64, rules: &MatchRules) -> bool {
        self.recent.get(&a).and_then(|m| m.get(&b)).is_some_and(|at| *at > now_ms - rules.repeat_after_ms)
    }

    /// The best partner for `ticket`: best tier, then longest waiting.
    fn best_partner(&self, ticket: &Ticket, now_ms: i64, rules: &MatchRules) -> Option<(UserId, Tier)> {
        let mut best: Option<(UserId, Tier)> = None;
        for key in self.candidates(ticket) {
            let Some(waiting) = self.queue.get(&key) else { continue };
            let other = &waiting.ticket;
            if other.user_id == ticket.user_id
                || excluded(ticket, other)
                || self.met_recently(ticket.user_id, other.user_id, now_ms, rules)
            {
                continue;
            }
            if let Some(t) = tier(ticket, other, now_ms, rules)
                && best.is_none_or(|(_, b)| t < b)
            {
                best = Some((other.user_id, t));
                if t == Tier::Complementary {
                    break;
                }
            }
        }
        best
    }

    fn pair(
        &mut self,
        ticket: Ticket,
        partner: UserId,
        tier: Tier,
        now_ms: i64,
        rules: &MatchRules,
    ) -> Option<Pairing> {
        let other = self.remove(partner)?.ticket;
        for (a, b) in [(ticket.user_id, other.user_id), (other.user_id, ticket.user_id)] {
            let mine = self.recent.entry(a).or_default();
            mine.retain(|_, at| *at > now_ms - rules.repeat_after_ms);
            mine.insert(b, now_ms);
        }
        Some(Pairing::of(ticket, other, tier))
    }
}

#[async_trait]
impl Matcher for MemoryMatcher {
    async fn enqueue(&self, ticket: Ticket, now_ms: i64) -> Result<Option<Pairing>> {
        let mut state = self.lock()?;
        state.remove(ticket.user_id);
        if let Some((partner, t)) = state.best_partner(&ticket, now_ms, &self.rules) {
            return Ok(state.pair(ticket, partner, t, now_ms, &self.rules));
        }
        let stage = self.rules.stage(now_ms - ticket.enqueued_ms);
        state.insert(ticket, stage);
        Ok(None)
    }

    async fn leave(&self, user: UserId) -> Result<bool> {
        Ok(self.lock()?.remove(user).is_some())
    }

    async fn rescan(&self, now_ms: i64) -> Result<Vec<Pairing>> {
        let mut state = self.lock()?;
        let due: Vec<UserId> = state
            .queue
            .values()
            .filter(|w| self.rules.stage(now_ms - w.ticket.enqueued_ms) > w.stage)
            .map(|w| w.ticket.user_id)
            .collect();
        let mut pairings = Vec::new();
        for user in due {
            let Some(key) = state.by_user.get(&user).copied() else { continue };
            let Some(ticket) = state.queue.get(&key).map(|w| w.ticket.clone()) else { continue };
            match state.best_partner(&ticket, now_ms, &self.rules) {
                Some((partner, t)) => {
                    state.remove(user);
                    pairings.extend(state.pair(ticket, partner, t, now_ms, &self.rules));
                }
                None => {
                    if let Some(w) = state.queue.get_mut(&key) {
                        w.stage = self.rules.stage(now_ms - w.ticket.enqueued_ms);
                    }
                }
            }
        }
        Ok(pairings)
    }

    async fn ticket(&self, user: UserId) -> Result<Option<Ticket>> {
        let state = self.lock()?;
        Ok(state.by_user.get(&user).and_then(|k| state.queue.get(k)).map(|w| w.ticket.clone()))
    }

    async fn waiting(&self) -> Result<Vec<Ticket>> {
        Ok(self.lock()?.queue.values().map(|w| w.ticket.clone()).collect())
    }
}
