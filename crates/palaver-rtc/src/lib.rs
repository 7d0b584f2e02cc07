//! Palaver's real-time communication: 1-on-1 calls and random matching.
//!
//! - [`machine`]: the call lifecycle as an explicit state machine.
//! - [`calls`]: [`CallService`], the call use cases (place, accept,
//!   decline, end, quality, history), signal routing for the hub, and the
//!   sweeper that applies ring and media timeouts from deadlines in the store.
//! - [`matching`]: the [`Matcher`] queue (in memory, or in Redis for many
//!   nodes) and the pairing rules; [`queue`]: [`MatchService`], its use cases.
//! - [`ice`]: STUN/TURN servers with coturn REST API credentials.
//! - [`media`]: the audio policy (capture constraints, Opus parameters).
//! - [`clock`]: injected time, so timeouts are tested without waiting.
//!
//! Depends on `palaver-core`, `palaver-store` and `palaver-service` (the
//! principal, the event bus, the real-time seam, rate limits). It must not
//! depend on the server, axum or the hub: live events go out through
//! [`palaver_service::Realtime`], and the hub calls in (signals, disconnects).
//! The voice-room SFU will live here too.

pub mod calls;
pub mod clock;
pub mod ice;
pub mod machine;
pub mod matching;
pub mod media;
pub mod metrics;
pub mod queue;

pub use calls::{Call, CallService, CallSettings, QualityInput, SignalDelivery, SignalKind, SignalTarget};
pub use clock::{Clock, ManualClock, SystemClock};
pub use ice::{IceConfig, IceServer, IceSettings};
pub use matching::{MatchRules, Matcher, MemoryMatcher, Pairing, RedisMatcher, Ticket, Tier};
pub use media::{AudioPolicy, MediaPolicy};
pub use queue::{MatchFound, MatchRole, MatchService, MatchSettings, QueueRequest, QueueStatus};
