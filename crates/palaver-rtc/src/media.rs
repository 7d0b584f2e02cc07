//! The audio policy calls hand to clients: the same one voice rooms hand
//! out with `join`, defined in `palaver-core` so the voice-room service
//! (which `palaver-rtc` depends on) shares it rather than keeping a copy.

pub use palaver_core::media::{AudioConstraints, AudioPolicy, MediaPolicy, OpusParameters};
