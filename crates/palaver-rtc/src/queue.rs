//! The random-matching use cases: join and leave the queue, and turn each
//! pairing into a call that rings for both (`match_found` on each user's
//! topic with `{call_id, peer, role}`; the caller sends the offer).

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use palaver_core::call::CallType;
use palaver_core::user::Level;
use palaver_core::{Error, Id, Result, UserId, validate};
use palaver_service::realtime::Realtime;
use palaver_service::{Principal, RateLimiter, RateSpec};
use palaver_store::{CallParty, Store};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::calls::{Call, CallService, user_topic};
use crate::clock::Clock;
use crate::matching::{MatchRules, Matcher, Pairing, Ticket};

/// Matching settings from configuration.
#[derive(Debug, Clone, Copy)]
pub struct MatchSettings {
    /// Widening thresholds and the repeat window.
    pub rules: MatchRules,
    /// How often waiting tickets are checked for widening.
    pub tick: Duration,
    /// Queue joins and leaves per user.
    pub rate: RateSpec,
}

/// What a user asks the queue for.
#[derive(Debug, Clone)]
pub struct QueueRequest {
    /// Voice or video.
    pub call_type: CallType,
    /// The language to practise.
    pub language: String,
    /// The user's level in it.
    pub level: Level,
}

/// Which side of a matched call a user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchRole {
    /// Sends the offer.
    Caller,
    /// Answers.
    Callee,
}

/// A match, as each side is told (`match_found`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MatchFound {
    /// The new call, ringing for both.
    pub call_id: Id,
    /// The other person.
    pub peer: CallParty,
    /// `caller` sends the offer; `callee` answers and accepts.
    pub role: MatchRole,
    /// The call object.
    pub call: Call,
}

/// Where a user stands after joining the queue.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueStatus {
    /// `waiting` or `matched`.
    pub status: &'static str,
    /// The match, when matched at once (also sent as `match_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#match: Option<MatchFound>,
}

/// The matching use cases.
pub struct MatchService {
    store: Arc<dyn Store>,
    matcher: Arc<dyn Matcher>,
    calls: Arc<CallService>,
    realtime: Arc<dyn Realtime>,
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    settings: MatchSettings,
}

impl std::fmt::Debug for MatchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchService").field("matcher", &self.matcher).finish_non_exhaustive()
    }
}

impl MatchService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        matcher: Arc<dyn Matcher>,
        calls: Arc<CallService>,
        realtime: Arc<dyn Realtime>,
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
        settings: MatchSettings,
    ) -> Self {
        Self { store, matcher, calls, realtime, limiter, clock, settings }
    }

    /// The queue in use.
    pub fn matcher(&self) -> &Arc<dyn Matcher> {
        &self.matcher
    }

    /// Joins the queue (replacing an earlier ticket: one queue per user).
    /// Refused to users in a live call. Matched at once when a partner
    /// waits; otherwise `match_found` arrives later.
    pub async fn enqueue(&self, who: &Principal, request: QueueRequest) -> Result<QueueStatus> {
        if who.user.is_suspended {
            return Err(Error::Suspended);
        }
        let language = validate::language_code(&request.language).map_err(|m| Error::invalid("language", m))?;
        self.limiter.check(&format!("match_queue:user:{}", who.id()), self.settings.rate).await?;
        if self.store.live_call_of(who.id()).await?.is_some() {
            return Err(Error::Conflict("you are in a call".into()));
        }
        let now = self.clock.now();
        let mut excluded = self.store.block_partners(who.id()).await?;
        let since = now - TimeDelta::milliseconds(self.settings.rules.repeat_after_ms);
        excluded.extend(self.store.recent_match_partners(who.id(), since).await?);
        excluded.sort_unstable();
        excluded.dedup();
        let ticket = Ticket {
            user_id: who.id(),
            call_type: request.call_type,
            language,
            level: request.level,
            natives: who.user.native_languages.clone(),
            excluded,
            enqueued_ms: now.timestamp_millis(),
        };
        let pairing = self.matcher.enqueue(ticket, now.timestamp_millis()).await?;
        let mut mine = None;
        if let Some(pairing) = pairing {
            for found in self.complete(pairing).await? {
                if found.0 == who.id() {
                    mine = Some(found.1);
                }
            }
        }
        metrics::counter!("palaver_match_enqueued_total").increment(1);
        Ok(match mine {
            Some(m) => QueueStatus { status: "matched", r#match: Some(m) },
            None => QueueStatus { status: "waiting", r#match: None },
        })
    }

    /// Leaves the queue; false when the user was not in it.
    pub async fn leave(&self, who: &Principal) -> Result<bool> {
        self.limiter.check(&format!("match_queue:user:{}", who.id()), self.settings.rate).await?;
        self.matcher.leave(who.id()).await
    }

    /// Whether the user waits in the queue.
    pub async fn is_waiting(&self, user: UserId) -> Result<bool> {
        Ok(self.matcher.ticket(user).await?.is_some())
    }

    /// For the real-time hub: the user's last device disconnected, so they
    /// can no longer take a match.
    pub async fn on_all_devices_disconnected(&self, user: UserId) -> Result<()> {
        self.matcher.leave(user).await.map(|_| ())
    }

    /// Pairs tickets whose waiting crossed a widening threshold.
    pub async fn tick(&self) -> Result<usize> {
        let pairings = self.matcher.rescan(self.clock.now_ms()).await?;
        let mut n = 0;
        for pairing in pairings {
            n += self.complete(pairing).await?.len() / 2;
        }
        Ok(n)
    }

    /// Ticks every `tick` until shutdown.
    pub async fn run_ticker(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::warn!(error = %e, "matching tick failed");
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Turns a pairing into a ringing call and tells both sides. The
    /// matcher knew the blocks as of the enqueue and the calls as of then;
    /// if either changed since (a block, a call placed), the pairing is
    /// dropped and whoever can still be matched goes back in the queue, in
    /// their old place. Returns the matches made, per user.
    async fn complete(&self, first: Pairing) -> Result<Vec<(UserId, MatchFound)>> {
        let mut made = Vec::new();
        let mut work = vec![first];
        // Each failed pairing puts at most two tickets back, each with one
        // more exclusion or one ticket fewer, so this ends; the bound keeps
        // it obviously so.
        let mut rounds = 0;
        while let Some(pairing) = work.pop() {
            rounds += 1;
            if rounds > 16 {
                tracing::warn!("matching: giving up re-pairing after 16 rounds");
                break;
            }
            let (caller, callee) = (pairing.caller, pairing.callee);
            let (caller_id, callee_id) = (caller.user_id, callee.user_id);
            if self.store.blocked_either(caller_id, callee_id).await? {
                work.extend(self.requeue(caller, Some(callee_id)).await?);
                work.extend(self.requeue(callee, Some(caller_id)).await?);
                continue;
            }
            let Some(call) = self.calls.place_match_call(caller_id, callee_id, caller.call_type).await? else {
                // Someone is in a call by now: they leave the queue; the
                // other waits on.
                if self.store.live_call_of(caller_id).await?.is_none() {
                    work.extend(self.requeue(caller, None).await?);
                }
                if self.store.live_call_of(callee_id).await?.is_none() {
                    work.extend(self.requeue(callee, None).await?);
                }
                continue;
            };
            let now_ms = self.clock.now_ms();
            for t in [&caller, &callee] {
                metrics::histogram!("palaver_match_wait_seconds")
                    .record((now_ms - t.enqueued_ms).max(0) as f64 / 1000.0);
            }
            metrics::counter!("palaver_matches_total", "tier" => (pairing.tier as u8).to_string()).increment(1);
            for (me, peer, role) in [
                (caller_id, call.receiver.clone(), MatchRole::Caller),
                (callee_id, call.caller.clone(), MatchRole::Callee),
            ] {
                let found = MatchFound { call_id: call.id, peer, role, call: call.clone() };
                let data = serde_json::to_value(&found).unwrap_or_default();
                self.realtime.publish(&user_topic(me), "match_found", None, data);
                made.push((me, found));
            }
        }
        Ok(made)
    }

    async fn requeue(&self, mut ticket: Ticket, exclude: Option<UserId>) -> Result<Option<Pairing>> {
        if let Some(other) = exclude {
            ticket.excluded.push(other);
        }
        self.matcher.enqueue(ticket, self.clock.now_ms()).await
    }
}
