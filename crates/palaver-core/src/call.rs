//! 1-on-1 calls: their kinds, their lifecycle states and the quality figures
//! clients report. The transition rules live in `palaver-rtc`'s state
//! machine; these are the words every layer shares.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Audio only, or audio and video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    /// Audio only.
    Voice,
    /// Audio and video.
    Video,
}

impl CallType {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Voice => "voice",
            CallType::Video => "video",
        }
    }
}

impl std::str::FromStr for CallType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "voice" => Ok(CallType::Voice),
            "video" => Ok(CallType::Video),
            _ => Err(format!("unknown call type `{s}` (expected voice or video)")),
        }
    }
}

/// Where a call is in its life. `initiated` only exists for the instant
/// between the request and the decision to ring; the last five are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Placed, not yet ringing.
    Initiated,
    /// The receiver's devices ring.
    Ringing,
    /// Accepted; the parties talk.
    Active,
    /// Hung up (or cancelled by the caller while ringing).
    Ended,
    /// Not answered: nobody was connected, or the ring timed out.
    Missed,
    /// The receiver refused it.
    Declined,
    /// The receiver was already in an active call.
    Busy,
    /// Accepted, but media never connected within the media timeout.
    Failed,
}

impl CallStatus {
    /// Every status.
    pub const ALL: [CallStatus; 8] = [
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::Active,
        CallStatus::Ended,
        CallStatus::Missed,
        CallStatus::Declined,
        CallStatus::Busy,
        CallStatus::Failed,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::Active => "active",
            CallStatus::Ended => "ended",
            CallStatus::Missed => "missed",
            CallStatus::Declined => "declined",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
        }
    }

    /// A final status: nothing happens to the call any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Ended | CallStatus::Missed | CallStatus::Declined | CallStatus::Busy | CallStatus::Failed
        )
    }

    /// Ringing or active: the call holds its parties.
    pub fn is_live(self) -> bool {
        matches!(self, CallStatus::Initiated | CallStatus::Ringing | CallStatus::Active)
    }
}

impl std::fmt::Display for CallStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CallStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallStatus::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown call status `{s}`"))
    }
}

/// Limits on what clients report.
pub mod limits {
    /// Longest codec name in a quality report.
    pub const CODEC_MAX_CHARS: usize = 40;
    /// Largest round-trip time or jitter accepted, in milliseconds.
    pub const MAX_MS: f64 = 60_000.0;
    /// Largest serialized signal payload, in bytes (an SDP with many
    /// candidates is a few KiB; this leaves room and bounds relaying).
    pub const SIGNAL_PAYLOAD_MAX_BYTES: usize = 64 * 1024;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in CallStatus::ALL {
            assert_eq!(status.as_str().parse::<CallStatus>().unwrap(), status);
        }
        assert_eq!("video".parse::<CallType>().unwrap(), CallType::Video);
        assert!("fax".parse::<CallType>().is_err());
        assert!(CallStatus::Busy.is_final() && !CallStatus::Ringing.is_final());
        assert!(CallStatus::Active.is_live() && !CallStatus::Ended.is_live());
    }
}
