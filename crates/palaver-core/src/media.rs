//! The audio policy every call and every voice room hands to clients:
//! which processing to turn on in `getUserMedia` and how to configure Opus.
//! One struct, filled from configuration, so all clients speak with the
//! same settings and operators change them in one place.

use serde::Serialize;
use utoipa::ToSchema;

/// Audio settings from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioPolicy {
    /// Acoustic echo cancellation.
    pub echo_cancellation: bool,
    /// Noise suppression.
    pub noise_suppression: bool,
    /// Automatic gain control.
    pub auto_gain_control: bool,
    /// Opus in-band forward error correction (recovers lost packets).
    pub opus_fec: bool,
    /// Opus discontinuous transmission (near-silent packets are not sent).
    pub opus_dtx: bool,
    /// Opus target bitrate, bits per second.
    pub opus_max_average_bitrate: u32,
}

impl Default for AudioPolicy {
    fn default() -> Self {
        Self {
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain_control: true,
            opus_fec: true,
            opus_dtx: true,
            opus_max_average_bitrate: 32_000,
        }
    }
}

/// `getUserMedia` audio constraints (names as the browser API spells them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudioConstraints {
    /// Acoustic echo cancellation.
    pub echo_cancellation: bool,
    /// Noise suppression.
    pub noise_suppression: bool,
    /// Automatic gain control.
    pub auto_gain_control: bool,
    /// Always 1: speech is mono.
    pub channel_count: u8,
}

/// Opus `a=fmtp` parameters (RFC 7587), as numbers, and the line itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OpusParameters {
    /// 1: in-band FEC on.
    pub useinbandfec: u8,
    /// 1: DTX on.
    pub usedtx: u8,
    /// Target bitrate, bits per second.
    pub maxaveragebitrate: u32,
    /// 0: mono.
    pub stereo: u8,
    /// The parameters as an SDP fmtp value, ready to munge into an offer.
    pub fmtp: String,
}

/// The media part of a call payload, and of a voice room's `join` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MediaPolicy {
    /// Audio capture constraints.
    pub audio: AudioConstraints,
    /// Opus parameters.
    pub opus: OpusParameters,
}

impl From<AudioPolicy> for MediaPolicy {
    fn from(p: AudioPolicy) -> Self {
        let (useinbandfec, usedtx) = (u8::from(p.opus_fec), u8::from(p.opus_dtx));
        let bitrate = p.opus_max_average_bitrate;
        Self {
            audio: AudioConstraints {
                echo_cancellation: p.echo_cancellation,
                noise_suppression: p.noise_suppression,
                auto_gain_control: p.auto_gain_control,
                channel_count: 1,
            },
            opus: OpusParameters {
                useinbandfec,
                usedtx,
                maxaveragebitrate: bitrate,
                stereo: 0,
                fmtp: format!("useinbandfec={useinbandfec};usedtx={usedtx};maxaveragebitrate={bitrate};stereo=0"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_speech_friendly() {
        let media = MediaPolicy::from(AudioPolicy::default());
        let json = serde_json::to_value(&media).unwrap();
        assert_eq!(json["audio"]["echoCancellation"], true);
        assert_eq!(json["audio"]["channelCount"], 1);
        assert_eq!(json["opus"]["fmtp"], "useinbandfec=1;usedtx=1;maxaveragebitrate=32000;stereo=0");
    }
}
