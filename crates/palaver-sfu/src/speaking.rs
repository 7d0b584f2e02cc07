//! Active-speaker detection from the RFC 6464 audio level that senders put
//! in an RTP header extension of every audio packet (0 dBov loudest, -127
//! silence). No decoding: the SFU never touches the Opus payload.
//!
//! Per publisher, levels are averaged over each tick. A tick louder than the
//! threshold makes the publisher speaking at once; it stops speaking after
//! `hang` quiet ticks in a row (so pauses between words do not flicker).
//! While speaking, the level is reported whenever it moved by at least
//! `min_change` since the last report, so at most every tick.

use std::time::Duration;

/// Tuning of the detector.
#[derive(Debug, Clone, Copy)]
pub struct SpeakingSettings {
    /// How often levels are evaluated (and at most how often a speaker's
    /// level is reported).
    pub interval: Duration,
    /// Average level, in dBov (0 to 127, lower is louder), at or below which
    /// a tick counts as speech.
    pub threshold_dbov: u8,
    /// Quiet ticks in a row before a speaker stops speaking.
    pub hang: u8,
    /// Smallest change of the reported level (0.0 to 1.0) worth a report.
    pub min_change: f32,
}

impl Default for SpeakingSettings {
    fn default() -> Self {
        Self { interval: Duration::from_millis(200), threshold_dbov: 60, hang: 3, min_change: 0.03 }
    }
}

/// One publisher's detector.
#[derive(Debug, Default)]
pub(crate) struct Detector {
    sum: u32,
    count: u32,
    speaking: bool,
    quiet_ticks: u8,
    reported: f32,
}

/// 0.0 (silence, 127 dBov) to 1.0 (0 dBov).
fn loudness(dbov: f32) -> f32 {
    ((127.0 - dbov) / 127.0).clamp(0.0, 1.0)
}

impl Detector {
    /// Records one packet's level (str0m's value: 0 down to -127).
    pub(crate) fn record(&mut self, level: i8) {
        self.sum += u32::from(level.unsigned_abs().min(127));
        self.count += 1;
    }

    /// Ends a tick: `Some((speaking, level))` when there is something to
    /// report.
    pub(crate) fn tick(&mut self, settings: &SpeakingSettings) -> Option<(bool, f32)> {
        let dbov = if self.count == 0 { 127.0 } else { self.sum as f32 / self.count as f32 };
        self.sum = 0;
        self.count = 0;
        let level = loudness(dbov);
        let loud = dbov <= f32::from(settings.threshold_dbov);
        if loud {
            self.quiet_ticks = 0;
            if !self.speaking || (level - self.reported).abs() >= settings.min_change {
                self.speaking = true;
                self.reported = level;
                return Some((true, level));
            }
            return None;
        }
        if !self.speaking {
            return None;
        }
        self.quiet_ticks = self.quiet_ticks.saturating_add(1);
        if self.quiet_ticks >= settings.hang {
            self.speaking = false;
            self.quiet_ticks = 0;
            self.reported = 0.0;
            return Some((false, level));
        }
        if (level - self.reported).abs() >= settings.min_change {
            self.reported = level;
            return Some((true, level));
        }
        None
    }

    /// Whether the publisher counts as speaking now.
    pub(crate) fn speaking(&self) -> bool {
        self.speaking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_starts_at_once_and_quiet_stops_after_the_hang() {
        let s = SpeakingSettings::default();
        let mut d = Detector::default();
        assert_eq!(d.tick(&s), None, "silence reports nothing");
        for _ in 0..10 {
            d.record(-20);
        }
        let (speaking, level) = d.tick(&s).unwrap();
        assert!(speaking && level > 0.8);
        for _ in 0..10 {
            d.record(-20);
        }
        assert_eq!(d.tick(&s), None, "an unchanged level is not repeated");
        for _ in 0..10 {
            d.record(-40);
        }
        assert!(matches!(d.tick(&s), Some((true, l)) if l < 0.7), "a changed level is reported");
        for _ in 0..usize::from(s.hang) - 1 {
            d.record(-127);
            let r = d.tick(&s);
            assert!(r.is_none() || r.is_some_and(|(sp, _)| sp), "still speaking during the hang: {r:?}");
        }
        d.record(-127);
        assert!(matches!(d.tick(&s), Some((false, _))));
        assert!(!d.speaking());
    }
}
