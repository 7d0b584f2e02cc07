//! Palaver's media plane: a WebRTC selective forwarding unit (SFU) for
//! public voice rooms.
//!
//! One UDP port serves every peer of every room on this node. One task, on
//! a thread of its own, owns the socket and every `str0m` [`Rtc`](str0m::Rtc)
//! instance (ICE-lite, DTLS-SRTP) and demultiplexes incoming datagrams by
//! `Rtc::accepts`, as in str0m's `chat` example. Speakers publish one Opus
//! track; every participant receives the speakers' audio; a teacher who may
//! speak may publish one screen-share video track. What a peer may publish
//! is its [`PeerPolicy`], which the caller (the voice-room service) sets from
//! the room's roles: the SFU enforces it on every packet (a listener's or a
//! muted speaker's packets are never forwarded).
//!
//! This crate knows nothing of users, rooms or databases beyond two integer
//! ids, so it is tested on its own with real WebRTC peers ([`client`]); the
//! server relays its signaling ([`Sfu::offer`], [`Sfu::answer`],
//! [`SfuEvent::Offer`]) over the WebSocket and its [`SfuEvent::Speaking`]
//! events to the room's topic. It must not depend on any other Palaver crate.

pub mod client;
mod cpu;
mod engine;
mod speaking;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use speaking::SpeakingSettings;

/// A voice room's id, as the caller numbers rooms.
pub type RoomId = i64;
/// A user's id, as the caller numbers users.
pub type UserId = i64;

/// What a peer may publish. The SFU drops, never forwards, anything else,
/// so a wrong client cannot be heard by breaking the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct PeerPolicy {
    /// May publish one audio track (hosts and speakers).
    pub audio: bool,
    /// May publish one video track: a screen share (teachers who may speak).
    pub video: bool,
    /// Muted by themselves or by a host: audio is received but not forwarded.
    pub muted: bool,
}

/// Settings of the media plane.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP address to bind (port 0: any free port).
    pub bind: SocketAddr,
    /// Address clients reach the socket at (the ICE candidate), when it is
    /// not the bound one (behind NAT, or bound to 0.0.0.0).
    pub public_addr: Option<SocketAddr>,
    /// Active-speaker detection.
    pub speaking: SpeakingSettings,
    /// A peer whose ICE connection was lost is dropped after this long
    /// unless it reconnects (an ICE restart) first.
    pub disconnect_grace: Duration,
    /// Largest number of peers on this node; offers beyond it are refused.
    pub max_peers: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_addr: None,
            speaking: SpeakingSettings::default(),
            disconnect_grace: Duration::from_secs(20),
            max_peers: 10_000,
        }
    }
}

/// A track the SFU sends to a peer: which m-line (`mid`) carries whose
/// audio or screen share. Sent with every SFU offer so clients can label
/// the streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TrackInfo {
    /// The m-line.
    pub mid: String,
    /// Whose media it carries.
    pub user_id: UserId,
    /// `audio` or `video`.
    pub kind: String,
}

/// The SFU's answer to a peer's offer.
#[derive(Debug, Clone)]
pub struct OfferOutcome {
    /// The SDP answer.
    pub answer: String,
    /// Tracks the SFU sends to this peer (after this answer).
    pub tracks: Vec<TrackInfo>,
    /// Mids of offered send tracks the peer may not publish: they are set
    /// inactive and never forwarded.
    pub refused: Vec<String>,
    /// An SFU offer to deliver right after the answer (the tracks of the
    /// other participants), in this order, so the client never sees an
    /// offer before its answer.
    pub followup: Option<SfuEvent>,
}

/// What the SFU tells the outside, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SfuEvent {
    /// An SFU-initiated renegotiation offer (tracks came or went) for one
    /// peer, which must answer it with [`Sfu::answer`].
    Offer {
        /// The room.
        room: RoomId,
        /// The peer.
        user: UserId,
        /// The SDP offer.
        sdp: String,
        /// The tracks the SFU sends to this peer once it is answered.
        tracks: Vec<TrackInfo>,
    },
    /// A speaker started or stopped speaking, or their level changed while
    /// speaking. Debounced; at least every tick while the level changes.
    Speaking {
        /// The room.
        room: RoomId,
        /// The speaker.
        user: UserId,
        /// Speaking now.
        speaking: bool,
        /// Loudness, 0.0 (silence) to 1.0 (loudest), from the RFC 6464
        /// audio level of the speaker's packets.
        level: f32,
    },
    /// The peer's media connection is up (ICE and DTLS).
    Connected {
        /// The room.
        room: RoomId,
        /// The peer.
        user: UserId,
    },
    /// The peer's media connection was lost; it may come back with an ICE
    /// restart within the grace period.
    Disconnected {
        /// The room.
        room: RoomId,
        /// The peer.
        user: UserId,
    },
    /// The peer is gone from the SFU (removed, or lost past the grace).
    Closed {
        /// The room.
        room: RoomId,
        /// The peer.
        user: UserId,
    },
}

/// Counters of the media plane since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SfuStats {
    /// Rooms with at least one peer.
    pub rooms: usize,
    /// Peers.
    pub peers: usize,
    /// Peers whose media connection is up.
    pub connected_peers: usize,
    /// Media packets received from publishers.
    pub received_packets: u64,
    /// Media packets sent to subscribers.
    pub forwarded_packets: u64,
    /// Media payload bytes sent to subscribers.
    pub forwarded_bytes: u64,
    /// Media packets dropped because the publisher may not publish them
    /// (a listener, a muted speaker, a refused track).
    pub refused_packets: u64,
    /// Datagrams no peer accepted.
    pub unmatched_datagrams: u64,
    /// Mean fraction of packets lost on the way in, over the publishers'
    /// latest receiver reports (0.0 to 1.0).
    pub ingress_loss: f32,
    /// CPU time the media thread has used (user + system), in seconds.
    pub cpu_seconds: f64,
}

/// Why a signaling call failed.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The SDP or candidate could not be parsed or applied.
    #[error("{0}")]
    BadSignal(String),
    /// No such peer (it never offered, or it is gone).
    #[error("no media session for this participant; send an offer first")]
    NoPeer,
    /// An answer arrived when no SFU offer was waiting for one (or for an
    /// older offer).
    #[error("no SFU offer is waiting for an answer")]
    NoPendingOffer,
    /// The node is at its peer limit.
    #[error("this media node is full")]
    Full,
    /// The media task stopped.
    #[error("the media server is not running")]
    Stopped,
}

type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

pub(crate) enum Command {
    Offer { room: RoomId, user: UserId, sdp: String, policy: PeerPolicy, reply: Reply<OfferOutcome> },
    Answer { room: RoomId, user: UserId, sdp: String, reply: Reply<()> },
    Candidate { room: RoomId, user: UserId, candidate: String, reply: Reply<()> },
    Policy { room: RoomId, user: UserId, policy: PeerPolicy, reply: Reply<bool> },
    Remove { room: RoomId, user: UserId, reply: Reply<bool> },
    CloseRoom { room: RoomId, reply: Reply<usize> },
    Stats { reply: Reply<SfuStats> },
    Connected { reply: Reply<Vec<(RoomId, UserId)>> },
    Rooms { reply: Reply<Vec<RoomId>> },
}

/// A handle to the media plane; cheap to clone. The media thread stops when
/// the shutdown token is cancelled or every handle is dropped.
#[derive(Clone, Debug)]
pub struct Sfu {
    tx: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    advertised: SocketAddr,
}

impl Sfu {
    /// Binds the UDP socket and starts the media thread. Events come out of
    /// the returned receiver (bounded: when nobody drains it, events are
    /// dropped rather than stalling media).
    pub fn start(config: SfuConfig, shutdown: CancellationToken) -> std::io::Result<(Sfu, mpsc::Receiver<SfuEvent>)> {
        let socket = std::net::UdpSocket::bind(config.bind)?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let advertised = match config.public_addr {
            Some(addr) => addr,
            None if local_addr.ip().is_unspecified() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the media socket is bound to an unspecified address: set its public address",
                ));
            }
            None => local_addr,
        };
        let (tx, rx) = mpsc::channel(1024);
        let (events_tx, events_rx) = mpsc::channel(4096);
        std::thread::Builder::new().name("palaver-sfu".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the media runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let socket = match tokio::net::UdpSocket::from_std(socket) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot register the media socket");
                        return;
                    }
                };
                engine::Engine::new(config, socket, advertised, events_tx).run(rx, shutdown).await;
            });
        })?;
        tracing::info!(%local_addr, %advertised, "media (SFU) listening on UDP");
        Ok((Sfu { tx, local_addr, advertised }, events_rx))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address clients send media to (the ICE candidate).
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertised
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// A peer's offer (its first, a renegotiation, or an ICE restart), with
    /// what it may publish. Creates the peer on its first offer.
    pub async fn offer(
        &self,
        room: RoomId,
        user: UserId,
        sdp: String,
        policy: PeerPolicy,
    ) -> Result<OfferOutcome, SfuError> {
        self.call(|reply| Command::Offer { room, user, sdp, policy, reply }).await
    }

    /// A peer's answer to the SFU's latest offer.
    pub async fn answer(&self, room: RoomId, user: UserId, sdp: String) -> Result<(), SfuError> {
        self.call(|reply| Command::Answer { room, user, sdp, reply }).await
    }

    /// A trickled ICE candidate of the peer (`candidate:...` line). The SFU
    /// is ICE-lite, so this is optional for clients.
    pub async fn ice_candidate(&self, room: RoomId, user: UserId, candidate: String) -> Result<(), SfuError> {
        self.call(|reply| Command::Candidate { room, user, candidate, reply }).await
    }

    /// Changes what a peer may publish (role change, mute). Tracks it may
    /// no longer publish stop being forwarded at once. False when the peer
    /// has no media session (the policy applies from its first offer).
    pub async fn set_policy(&self, room: RoomId, user: UserId, policy: PeerPolicy) -> Result<bool, SfuError> {
        self.call(|reply| Command::Policy { room, user, policy, reply }).await
    }

    /// Ends a peer's media session; false when it had none.
    pub async fn remove_peer(&self, room: RoomId, user: UserId) -> Result<bool, SfuError> {
        self.call(|reply| Command::Remove { room, user, reply }).await
    }

    /// Ends every media session of a room; returns how many there were.
    pub async fn close_room(&self, room: RoomId) -> Result<usize, SfuError> {
        self.call(|reply| Command::CloseRoom { room, reply }).await
    }

    /// Counters and the media thread's CPU time.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// The rooms with at least one peer on this node (whose media it
    /// hosts).
    pub async fn rooms(&self) -> Result<Vec<RoomId>, SfuError> {
        self.call(|reply| Command::Rooms { reply }).await
    }

    /// The peers whose media connection is up (a liveness signal: their
    /// clients answer ICE consent checks).
    pub async fn connected_peers(&self) -> Result<Vec<(RoomId, UserId)>, SfuError> {
        self.call(|reply| Command::Connected { reply }).await
    }
}
