//! The call use cases: place, accept, decline, end, report media and
//! quality, list history, relay signals, and the sweeper that applies
//! timeouts.
//!
//! Every transition is checked against the state machine ([`machine`]),
//! applied by the store as a compare-and-set, and then broadcast as
//! `call_state` (the call object) on both parties' `user:` topics and on
//! `call:{id}`. Timeouts are deadlines stored with the call; any node's
//! sweeper ([`CallService::sweep`]) moves due calls, each exactly once, so
//! a call placed on one node times out even if that node dies.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use palaver_core::call::{CallStatus, CallType, limits};
use palaver_core::{Error, FieldErrors, Id, Result, UserId};
use palaver_service::events::{DomainEvent, EventBus};
use palaver_service::pagination::Page;
use palaver_service::realtime::Realtime;
use palaver_service::{Principal, RateLimiter, RateSpec};
use palaver_store::{
    AcceptOutcome, CallParty, CallQualityReport, CallRecord, FinishOutcome, NewCall, NewCallOutcome, PageRequest, Store,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::machine::{self, CallEvent, Party, Refusal};
use crate::media::MediaPolicy;

/// Call settings from configuration.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// How long a call rings before it is missed.
    pub ring_timeout: Duration,
    /// How long after the accept media must connect before the call fails.
    pub media_timeout: Duration,
    /// How often the sweeper looks for due deadlines.
    pub sweep_interval: Duration,
    /// Calls placed per user.
    pub rate: RateSpec,
    /// Quality reports per user.
    pub quality_rate: RateSpec,
    /// What clients are told about audio.
    pub media: MediaPolicy,
}

/// A call as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Call {
    /// The call's id (`call:{id}` is its topic).
    pub id: Id,
    /// Who placed it (for a random match: the side that sends the offer).
    pub caller: CallParty,
    /// Who was called.
    pub receiver: CallParty,
    /// `voice` or `video`.
    pub call_type: CallType,
    /// Where the call is.
    pub status: CallStatus,
    /// Made by random matching.
    pub is_match: bool,
    /// When it was placed.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When it started ringing.
    pub ringing_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was accepted.
    pub accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When media first flowed.
    pub media_connected_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it reached a final status.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds from accept to end, computed by the server.
    pub duration: i64,
    /// Why it ended: `hangup`, `cancelled`, `declined`, `no_answer`,
    /// `unreachable`, `busy` or `media_timeout`.
    pub end_reason: Option<String>,
    /// The latest quality report of each party.
    pub quality: Vec<CallQualityReport>,
    /// Recommended capture constraints and Opus parameters.
    pub media: MediaPolicy,
}

/// A quality report as a client sends it (from `RTCPeerConnection.getStats`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityInput {
    /// Round-trip time, milliseconds (0 to 60000).
    pub rtt_ms: Option<f64>,
    /// Jitter, milliseconds (0 to 60000).
    pub jitter_ms: Option<f64>,
    /// Fraction of packets lost, 0 to 1.
    pub packet_loss: Option<f64>,
    /// Audio level, 0 to 1.
    pub audio_level: Option<f64>,
    /// Codec, such as `opus` (at most 40 characters).
    pub codec: Option<String>,
}

/// The kinds of signal a party may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// A trickled ICE candidate.
    IceCandidate,
    /// Hang up: ends (or cancels, or declines) the call, and tells the peer.
    Hangup,
    /// Screen sharing starts or stops (`payload.action`); teachers only.
    ScreenShare,
}

impl SignalKind {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::IceCandidate => "ice_candidate",
            SignalKind::Hangup => "hangup",
            SignalKind::ScreenShare => "screen_share",
        }
    }
}

impl std::str::FromStr for SignalKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "offer" => Ok(SignalKind::Offer),
            "answer" => Ok(SignalKind::Answer),
            "ice_candidate" => Ok(SignalKind::IceCandidate),
            "hangup" => Ok(SignalKind::Hangup),
            "screen_share" => Ok(SignalKind::ScreenShare),
            _ => Err(Error::invalid("kind", "must be offer, answer, ice_candidate, hangup or screen_share")),
        }
    }
}

/// Which devices a relayed signal goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalTarget {
    /// Every connected device of the user (before the call is bound to one).
    AllDevices(UserId),
    /// One connection of the user: the device the call is bound to.
    Device {
        /// The user.
        user: UserId,
        /// Their connection's id.
        connection: String,
    },
}

/// Where and what to deliver for a relayed signal: the hub sends
/// `{"op":"event","topic":…,"type":…,"data":…}` to the target's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalDelivery {
    /// `call:{id}`.
    pub topic: String,
    /// `signal`, or `screen_share` for screen-sharing changes.
    pub event_type: &'static str,
    /// `{call_id, from, kind, payload}`.
    pub data: serde_json::Value,
    /// Who receives it.
    pub target: SignalTarget,
    /// The call's state after the signal (a hangup ends it).
    pub status: CallStatus,
}

/// The call use cases.
pub struct CallService {
    store: Arc<dyn Store>,
    realtime: Arc<dyn Realtime>,
    events: EventBus,
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    settings: CallSettings,
}

impl std::fmt::Debug for CallService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The topic of a call.
pub fn call_topic(id: Id) -> String {
    format!("call:{id}")
}

/// The topic of a user.
pub fn user_topic(id: UserId) -> String {
    format!("user:{id}")
}

fn call_not_found(id: Id) -> Error {
    Error::not_found("call", id)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// A refusal from the state machine as a client error.
fn refused(call: &CallRecord, refusal: Refusal) -> Error {
    match refusal {
        Refusal::Forbidden(why) => Error::Forbidden(why.into()),
        Refusal::WrongState => Error::Conflict(format!("call {} is {}", call.id, call.status)),
    }
}

/// Checks a device's connection id: 1 to 128 visible ASCII characters.
fn connection_id(raw: &str, field: &str) -> Result<String> {
    if raw.is_empty() || raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(field, "must be 1 to 128 visible ASCII characters"));
    }
    Ok(raw.to_owned())
}

impl CallService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        realtime: Arc<dyn Realtime>,
        events: EventBus,
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
        settings: CallSettings,
    ) -> Self {
        Self { store, realtime, events, limiter, clock, settings }
    }

    /// The settings in effect.
    pub fn settings(&self) -> &CallSettings {
        &self.settings
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn view(&self, record: CallRecord, quality: Vec<CallQualityReport>) -> Call {
        Call {
            id: record.id,
            caller: record.caller,
            receiver: record.receiver,
            call_type: record.call_type,
            status: record.status,
            is_match: record.is_match,
            started_at: record.started_at,
            ringing_at: record.ringing_at,
            accepted_at: record.accepted_at,
            media_connected_at: record.media_connected_at,
            ended_at: record.ended_at,
            duration: record.duration,
            end_reason: record.end_reason,
            quality,
            media: self.settings.media.clone(),
        }
    }

    /// The call as clients see it, with its quality reports.
    async fn full_view(&self, record: CallRecord) -> Result<Call> {
        let quality = self.store.latest_call_quality(&[record.id]).await?.into_iter().map(|q| q.report).collect();
        Ok(self.view(record, quality))
    }

    /// Tells both parties (and the call's topic) where the call is now.
    fn broadcast(&self, call: &Call) {
        let data = serde_json::to_value(call).unwrap_or_default();
        for topic in [user_topic(call.caller.id), user_topic(call.receiver.id), call_topic(call.id)] {
            self.realtime.publish(&topic, "call_state", None, data.clone());
        }
    }

    /// Publishes what a newly stored call means: ringing rings the
    /// receiver, missed goes to push.
    fn announce(&self, call: &Call) {
        self.broadcast(call);
        match call.status {
            CallStatus::Ringing => {
                let data = serde_json::to_value(call).unwrap_or_default();
                self.realtime.publish(&user_topic(call.receiver.id), "call_incoming", None, data);
                self.events.publish(DomainEvent::CallIncoming {
                    call_id: call.id,
                    caller_id: call.caller.id,
                    receiver_id: call.receiver.id,
                    call_type: call.call_type.as_str().to_owned(),
                });
            }
            CallStatus::Missed => self.events.publish(DomainEvent::CallMissed {
                call_id: call.id,
                caller_id: call.caller.id,
                receiver_id: call.receiver.id,
                call_type: call.call_type.as_str().to_owned(),
            }),
            _ => {}
        }
        metrics::counter!("palaver_calls_total", "outcome" => call.status.as_str()).increment(1);
    }

    /// A call `who` takes part in, and which side they are; not found for
    /// anyone else (a third party learns nothing of the call).
    async fn party_call(&self, who: &Principal, id: Id) -> Result<(CallRecord, Party)> {
        let call = self.store.call_by_id(id).await?.ok_or_else(|| call_not_found(id))?;
        let party = if call.caller.id == who.id() {
            Party::Caller
        } else if call.receiver.id == who.id() {
            Party::Receiver
        } else {
            return Err(call_not_found(id));
        };
        Ok((call, party))
    }

    /// Places a call. The receiver rings when they have a connected device;
    /// otherwise the call is missed at once (and they get a push). A
    /// receiver in an active call makes it `busy`. Refused between users in
    /// a block, and for a caller already in a call.
    pub async fn place_call(&self, who: &Principal, receiver_id: UserId, call_type: CallType) -> Result<Call> {
        if who.user.is_suspended {
            return Err(Error::Suspended);
        }
        if receiver_id == who.id() {
            return Err(Error::BadRequest("you cannot call yourself".into()));
        }
        let receiver = self.store.user_by_id(receiver_id).await?;
        if receiver.is_none_or(|r| r.is_suspended) {
            return Err(Error::not_found("user", receiver_id));
        }
        if self.store.blocked_either(who.id(), receiver_id).await? {
            return Err(Error::Forbidden("calls between you and this user are not possible".into()));
        }
        self.limiter.check(&format!("calls:user:{}", who.id()), self.settings.rate).await?;
        let reachable = self.realtime.is_online(receiver_id).await;
        let now = self.clock.now();
        let outcome = self
            .store
            .create_call(&NewCall {
                caller_id: who.id(),
                receiver_id,
                call_type,
                is_match: false,
                reachable,
                ring_deadline: now + delta(self.settings.ring_timeout),
                now,
            })
            .await?;
        let NewCallOutcome::Created(record) = outcome else {
            return Err(Error::Conflict("you are already in a call".into()));
        };
        let call = self.view(record, Vec::new());
        self.announce(&call);
        Ok(call)
    }

    /// Stores a call between two matched users, ringing for both (the
    /// caller sends the offer). `None` when either is in a live call by now.
    pub async fn place_match_call(&self, caller: UserId, callee: UserId, call_type: CallType) -> Result<Option<Call>> {
        let now = self.clock.now();
        let outcome = self
            .store
            .create_call(&NewCall {
                caller_id: caller,
                receiver_id: callee,
                call_type,
                is_match: true,
                reachable: true,
                ring_deadline: now + delta(self.settings.ring_timeout),
                now,
            })
            .await?;
        let NewCallOutcome::Created(record) = outcome else { return Ok(None) };
        let call = self.view(record, Vec::new());
        self.broadcast(&call);
        metrics::counter!("palaver_calls_total", "outcome" => "matched").increment(1);
        Ok(Some(call))
    }

    /// A call the caller takes part in.
    pub async fn call(&self, who: &Principal, id: Id) -> Result<Call> {
        let (call, _) = self.party_call(who, id).await?;
        self.full_view(call).await
    }

    /// Accepts a ringing call (the receiver only). `connection` is the
    /// accepting device's real-time connection: after the accept, signals
    /// reach only that device. Of two devices accepting at once, one wins;
    /// the other gets a conflict.
    pub async fn accept(&self, who: &Principal, id: Id, connection: Option<&str>) -> Result<Call> {
        let connection = connection.map(|c| connection_id(c, "connection_id")).transpose()?;
        let (call, party) = self.party_call(who, id).await?;
        machine::transition(call.status, CallEvent::Accept(party)).map_err(|r| refused(&call, r))?;
        let now = self.clock.now();
        let deadline = now + delta(self.settings.media_timeout);
        match self.store.accept_call(id, connection.as_deref(), deadline, now).await? {
            AcceptOutcome::Accepted(record) => {
                let call = self.view(record, Vec::new());
                self.broadcast(&call);
                Ok(call)
            }
            AcceptOutcome::NotRinging(current) => Err(refused(&current, Refusal::WrongState)),
            AcceptOutcome::PartyInCall => Err(Error::Conflict("end the call in progress first".into())),
        }
    }

    /// Declines a ringing call (the receiver only).
    pub async fn decline(&self, who: &Principal, id: Id) -> Result<Call> {
        self.finish(who, id, CallEvent::Decline).await
    }

    /// Ends a call: hangs up an active call (either party), cancels a
    /// ringing one (the caller) or declines it (the receiver).
    pub async fn end(&self, who: &Principal, id: Id) -> Result<Call> {
        self.finish(who, id, CallEvent::End).await
    }

    async fn finish(&self, who: &Principal, id: Id, event: fn(Party) -> CallEvent) -> Result<Call> {
        let (call, party) = self.party_call(who, id).await?;
        let event = event(party);
        let (to, reason) = machine::transition(call.status, event).map_err(|r| refused(&call, r))?;
        let from = machine::sources(event);
        let now = self.clock.now();
        match self.store.finish_call(id, &from, to, reason.unwrap_or("ended"), now).await? {
            FinishOutcome::Changed(record) => {
                let call = self.full_view(record).await?;
                self.broadcast(&call);
                Ok(call)
            }
            FinishOutcome::Unchanged(current) => Err(refused(&current, Refusal::WrongState)),
        }
    }

    /// Records that media flows (a party's ICE connection is up): the media
    /// timeout no longer applies. Idempotent.
    pub async fn media_connected(&self, who: &Principal, id: Id) -> Result<Call> {
        let (call, _) = self.party_call(who, id).await?;
        if call.status != CallStatus::Active {
            return Err(refused(&call, Refusal::WrongState));
        }
        self.store.mark_media_connected(id, self.clock.now()).await?;
        let record = self.store.call_by_id(id).await?.ok_or_else(|| call_not_found(id))?;
        self.full_view(record).await
    }

    /// Stores a party's quality report (active or ended calls), counts it in
    /// the metrics, and treats it as proof that media connected.
    pub async fn report_quality(&self, who: &Principal, id: Id, input: QualityInput) -> Result<Call> {
        let mut errors = FieldErrors::new();
        for (field, value, max) in [
            ("rtt_ms", input.rtt_ms, limits::MAX_MS),
            ("jitter_ms", input.jitter_ms, limits::MAX_MS),
            ("packet_loss", input.packet_loss, 1.0),
            ("audio_level", input.audio_level, 1.0),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=max).contains(&v))
            {
                errors.add(field, format!("must be between 0 and {max}"));
            }
        }
        let codec = input.codec.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
        if let Some(c) = &codec
            && (c.chars().count() > limits::CODEC_MAX_CHARS
                || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || "/._-".contains(ch)))
        {
            errors.add("codec", "must be at most 40 letters, digits or / . _ -");
        }
        errors.into_result()?;
        let (call, _) = self.party_call(who, id).await?;
        if !matches!(call.status, CallStatus::Active | CallStatus::Ended) {
            return Err(Error::Conflict(format!(
                "call {id} is {}: quality is reported on calls that connected",
                call.status
            )));
        }
        self.limiter.check(&format!("call_quality:user:{}", who.id()), self.settings.quality_rate).await?;
        let now = self.clock.now();
        let report = CallQualityReport {
            user_id: who.id(),
            rtt_ms: input.rtt_ms,
            jitter_ms: input.jitter_ms,
            packet_loss: input.packet_loss,
            audio_level: input.audio_level,
            codec,
            created_at: now,
        };
        self.store.add_call_quality(id, &report).await?;
        if call.status == CallStatus::Active {
            self.store.mark_media_connected(id, now).await?;
        }
        for (name, value) in [
            ("palaver_call_rtt_ms", report.rtt_ms),
            ("palaver_call_jitter_ms", report.jitter_ms),
            ("palaver_call_packet_loss_ratio", report.packet_loss),
            ("palaver_call_audio_level", report.audio_level),
        ] {
            if let Some(v) = value {
                metrics::histogram!(name).record(v);
            }
        }
        let record = self.store.call_by_id(id).await?.ok_or_else(|| call_not_found(id))?;
        self.full_view(record).await
    }

    /// The caller's calls, placed and received, newest first, with quality.
    pub async fn history(&self, who: &Principal, page: PageRequest) -> Result<Page<Call>> {
        let records = self.store.call_history(who.id(), page).await?;
        let ids: Vec<Id> = records.iter().map(|c| c.id).collect();
        let mut quality = self.store.latest_call_quality(&ids).await?;
        let items = records
            .into_iter()
            .map(|record| {
                let mine: Vec<CallQualityReport> =
                    quality.extract_if(.., |q| q.call_id == record.id).map(|q| q.report).collect();
                self.view(record, mine)
            })
            .collect();
        Ok(Page::new(items, page, |c: &Call| c.id))
    }

    /// Checks and routes a WebRTC signal from `who`'s device `connection`:
    /// the sender must be a party, the call ringing or active, the kind
    /// known. Before the accept a signal reaches every device of the peer;
    /// after it only the device the call is bound to (the receiver's
    /// accepting device; the caller's device that signalled first). A
    /// hangup also ends the call. Screen sharing is for teachers, on active
    /// calls, with `payload.action` `start` or `stop`.
    pub async fn relay_signal(
        &self,
        who: &Principal,
        connection: &str,
        call_id: Id,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<SignalDelivery> {
        let connection = connection_id(connection, "connection")?;
        let kind: SignalKind = kind.parse()?;
        let size = serde_json::to_vec(&payload).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > limits::SIGNAL_PAYLOAD_MAX_BYTES {
            return Err(Error::PayloadTooLarge(format!(
                "signal payload is over {} bytes",
                limits::SIGNAL_PAYLOAD_MAX_BYTES
            )));
        }
        let (call, party) = self.party_call(who, call_id).await?;
        if !matches!(call.status, CallStatus::Ringing | CallStatus::Active) {
            return Err(refused(&call, Refusal::WrongState));
        }
        let mut data = serde_json::json!({
            "call_id": call.id, "from": who.id(), "kind": kind.as_str(), "payload": payload,
        });
        let mut event_type = "signal";
        if kind == SignalKind::ScreenShare {
            if !who.user.role.can_share_screen() {
                return Err(Error::Forbidden("only teachers can share their screen".into()));
            }
            if call.status != CallStatus::Active {
                return Err(Error::Conflict(format!(
                    "call {call_id} is {}: share the screen once it is answered",
                    call.status
                )));
            }
            let action = payload.get("action").and_then(|a| a.as_str());
            let active = match action {
                Some("start") => true,
                Some("stop") => false,
                _ => return Err(Error::invalid("payload.action", "must be start or stop")),
            };
            event_type = "screen_share";
            data["active"] = serde_json::Value::Bool(active);
        }
        // Bind the call to this device, or refuse a device it is not bound
        // to: after the accept, one device per party carries the call.
        let (mine, theirs) = match party {
            Party::Caller => (call.caller_connection.clone(), call.receiver_connection.clone()),
            Party::Receiver => (call.receiver_connection.clone(), call.caller_connection.clone()),
        };
        let bound_here = match (party, call.status, mine) {
            (_, _, Some(bound)) => bound == connection,
            // The receiver's devices all ring; the call binds to one at the
            // accept (or at its first signal after an accept over REST
            // without a connection id).
            (Party::Receiver, CallStatus::Ringing, None) => true,
            (_, _, None) => {
                let bound = self.store.bind_call_connection(call_id, party == Party::Caller, &connection).await?;
                bound.as_deref() == Some(connection.as_str())
            }
        };
        if !bound_here {
            return Err(Error::Forbidden("this call is carried by another of your devices".into()));
        }
        let peer = call.peer_of(who.id());
        let target = match theirs {
            Some(device) => SignalTarget::Device { user: peer, connection: device },
            None => SignalTarget::AllDevices(peer),
        };
        let mut status = call.status;
        if kind == SignalKind::Hangup {
            status = self.end(who, call_id).await?.status;
        }
        Ok(SignalDelivery { topic: call_topic(call_id), event_type, data, target, status })
    }

    /// Moves every call whose deadline passed (missed, failed) and tells
    /// the parties. Returns how many moved.
    pub async fn sweep(&self) -> Result<usize> {
        let due = self.store.expire_due_calls(self.clock.now(), 500).await?;
        let n = due.len();
        for record in due {
            let call = self.view(record, Vec::new());
            self.broadcast(&call);
            if call.status == CallStatus::Missed {
                self.events.publish(DomainEvent::CallMissed {
                    call_id: call.id,
                    caller_id: call.caller.id,
                    receiver_id: call.receiver.id,
                    call_type: call.call_type.as_str().to_owned(),
                });
            }
            metrics::counter!("palaver_calls_total", "outcome" => call.status.as_str()).increment(1);
        }
        Ok(n)
    }

    /// Sweeps every `sweep_interval` until shutdown. Every node runs one;
    /// each due call moves once whichever node gets to it.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "call sweep failed");
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
    }
}
