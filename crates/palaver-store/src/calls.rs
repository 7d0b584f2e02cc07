//! Records of the call store: what a call row holds, and the outcomes of the
//! atomic steps a call goes through.

use palaver_core::call::{CallStatus, CallType};
use palaver_core::time::Timestamp;
use palaver_core::{Id, UserId};
use serde::Serialize;

use crate::StoreError;

/// One side of a call, as shown in call payloads and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CallParty {
    /// The user's id.
    pub id: UserId,
    /// Name shown to others.
    pub display_name: String,
    /// Avatar URL.
    pub avatar: Option<String>,
}

/// A call session as stored, with both parties.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The call's id.
    pub id: Id,
    /// Who placed it (for a random match: the side that sends the offer).
    pub caller: CallParty,
    /// Who was called.
    pub receiver: CallParty,
    /// Voice or video.
    pub call_type: CallType,
    /// Where the call is.
    pub status: CallStatus,
    /// Made by random matching.
    pub is_match: bool,
    /// When it was placed.
    pub started_at: Timestamp,
    /// When it started ringing.
    pub ringing_at: Option<Timestamp>,
    /// When it was accepted.
    pub accepted_at: Option<Timestamp>,
    /// When a party first reported media flowing.
    pub media_connected_at: Option<Timestamp>,
    /// When it reached a final status.
    pub ended_at: Option<Timestamp>,
    /// Seconds from accept to end (0 when never accepted).
    pub duration: i64,
    /// Why it ended (`hangup`, `cancelled`, `no_answer`, `unreachable`,
    /// `busy`, `declined`, `media_timeout`).
    pub end_reason: Option<String>,
    /// When a ringing call becomes missed.
    pub ring_deadline: Option<Timestamp>,
    /// When an active call without media becomes failed.
    pub media_deadline: Option<Timestamp>,
    /// The caller's device the call is bound to.
    pub caller_connection: Option<String>,
    /// The receiver's device the call is bound to (the one that accepted).
    pub receiver_connection: Option<String>,
}

impl CallRecord {
    /// Whether `user` is one of the two parties.
    pub fn is_party(&self, user: UserId) -> bool {
        self.caller.id == user || self.receiver.id == user
    }

    /// The other party of `user`.
    pub fn peer_of(&self, user: UserId) -> UserId {
        if self.caller.id == user { self.receiver.id } else { self.caller.id }
    }
}

/// A call to place.
#[derive(Debug, Clone)]
pub struct NewCall {
    /// Who calls.
    pub caller_id: UserId,
    /// Who is called.
    pub receiver_id: UserId,
    /// Voice or video.
    pub call_type: CallType,
    /// Made by random matching: then a party already in a live call makes
    /// the whole call impossible ([`NewCallOutcome::PartyInCall`]).
    pub is_match: bool,
    /// The receiver has a connected device: ring (else: missed at once).
    pub reachable: bool,
    /// When the ring times out.
    pub ring_deadline: Timestamp,
    /// Now.
    pub now: Timestamp,
}

/// What placing a call did, decided in one transaction with both parties
/// locked, so two calls cannot both find a party free.
// Returned once per call action and matched at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum NewCallOutcome {
    /// The call was stored: `ringing`, `missed` (unreachable) or `busy`
    /// (the receiver is in an active call).
    Created(CallRecord),
    /// The caller is in an active call or already has an outgoing call
    /// ringing (for a match: either party is in any live call). Nothing stored.
    PartyInCall,
}

/// What accepting a call did.
// Returned once per call action and matched at once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AcceptOutcome {
    /// This request accepted it; the call is now active.
    Accepted(CallRecord),
    /// The call was not ringing (already accepted, or over): its state now.
    NotRinging(CallRecord),
    /// A party is in another active call; nothing changed.
    PartyInCall,
}

/// What a transition to a final status did.
#[derive(Debug, Clone, PartialEq)]
pub enum FinishOutcome {
    /// This request moved the call; its state now.
    Changed(CallRecord),
    /// The call was not in an expected status; its state now, unchanged.
    Unchanged(CallRecord),
}

/// A quality report from a party's client (WebRTC stats).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CallQualityReport {
    /// Who reported it.
    pub user_id: UserId,
    /// Round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Jitter, milliseconds.
    pub jitter_ms: Option<f64>,
    /// Fraction of packets lost, 0 to 1.
    pub packet_loss: Option<f64>,
    /// Audio level, 0 to 1.
    pub audio_level: Option<f64>,
    /// Codec in use, such as `opus`.
    pub codec: Option<String>,
    /// When it was reported.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A stored quality report, with its call.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCallQuality {
    /// The call.
    pub call_id: Id,
    /// The report.
    pub report: CallQualityReport,
}

/// A `call_sessions` row joined with both parties' names.
#[derive(sqlx::FromRow)]
pub(crate) struct CallRow {
    pub id: i64,
    pub caller_id: i64,
    pub caller_name: String,
    pub caller_avatar: Option<String>,
    pub receiver_id: i64,
    pub receiver_name: String,
    pub receiver_avatar: Option<String>,
    pub call_type: String,
    pub status: String,
    pub is_match: bool,
    pub started_at: Timestamp,
    pub ringing_at: Option<Timestamp>,
    pub accepted_at: Option<Timestamp>,
    pub media_connected_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub duration: i64,
    pub end_reason: Option<String>,
    pub ring_deadline: Option<Timestamp>,
    pub media_deadline: Option<Timestamp>,
    pub caller_connection: Option<String>,
    pub receiver_connection: Option<String>,
}

impl TryFrom<CallRow> for CallRecord {
    type Error = StoreError;

    fn try_from(row: CallRow) -> Result<Self, StoreError> {
        Ok(CallRecord {
            id: row.id,
            caller: CallParty { id: row.caller_id, display_name: row.caller_name, avatar: row.caller_avatar },
            receiver: CallParty { id: row.receiver_id, display_name: row.receiver_name, avatar: row.receiver_avatar },
            call_type: row.call_type.parse().map_err(StoreError::Corrupt)?,
            status: row.status.parse().map_err(StoreError::Corrupt)?,
            is_match: row.is_match,
            started_at: row.started_at,
            ringing_at: row.ringing_at,
            accepted_at: row.accepted_at,
            media_connected_at: row.media_connected_at,
            ended_at: row.ended_at,
            duration: row.duration,
            end_reason: row.end_reason,
            ring_deadline: row.ring_deadline,
            media_deadline: row.media_deadline,
            caller_connection: row.caller_connection,
            receiver_connection: row.receiver_connection,
        })
    }
}

/// A `call_quality` row.
#[derive(sqlx::FromRow)]
pub(crate) struct CallQualityRow {
    pub call_id: i64,
    pub user_id: i64,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub packet_loss: Option<f64>,
    pub audio_level: Option<f64>,
    pub codec: Option<String>,
    pub created_at: Timestamp,
}

impl From<CallQualityRow> for StoredCallQuality {
    fn from(row: CallQualityRow) -> Self {
        StoredCallQuality {
            call_id: row.call_id,
            report: CallQualityReport {
                user_id: row.user_id,
                rtt_ms: row.rtt_ms,
                jitter_ms: row.jitter_ms,
                packet_loss: row.packet_loss,
                audio_level: row.audio_level,
                codec: row.codec,
                created_at: row.created_at,
            },
        }
    }
}
