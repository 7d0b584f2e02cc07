//! The media loop: one task owning the UDP socket and every peer's `Rtc`.
//!
//! str0m is Sans-IO: every mutation of an `Rtc` (an input, a media write, an
//! SDP change) is followed by draining `poll_output` until it yields a
//! timeout. Media that comes out of one peer is written into the other peers
//! of its room, each write followed by its own drain. Transmits go out with
//! `try_send_to`: a full socket buffer drops the datagram (UDP semantics)
//! rather than stalling every room.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::speaking::Detector;
use crate::{Command, OfferOutcome, PeerPolicy, RoomId, SfuConfig, SfuError, SfuEvent, SfuStats, TrackInfo, UserId};

type PeerId = u64;

/// A track a peer publishes and the SFU accepted.
#[derive(Debug, Clone, Copy)]
struct InTrack {
    mid: Mid,
    kind: MediaKind,
    last_keyframe_request: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

/// A track the SFU sends to a peer: another peer's published track.
#[derive(Debug, Clone, Copy)]
struct OutTrack {
    source: PeerId,
    source_user: UserId,
    source_mid: Mid,
    kind: MediaKind,
    state: OutState,
}

impl OutTrack {
    fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m) | OutState::Open(m) | OutState::ToStop(m) | OutState::NegotiatingStop(m) => {
                Some(m)
            }
        }
    }
}

struct Peer {
    room: RoomId,
    user: UserId,
    rtc: Rtc,
    policy: PeerPolicy,
    incoming: Vec<InTrack>,
    outgoing: Vec<OutTrack>,
    /// Offered send tracks refused: to be set inactive at the next offer.
    refused: Vec<Mid>,
    /// Refused tracks whose inactivation is in the pending offer.
    refusing: Vec<Mid>,
    /// Mids refused since the last client offer began (reported in its outcome).
    newly_refused: Vec<Mid>,
    pending: Option<SdpPendingOffer>,
    timeout: Instant,
    connected: bool,
    lost_since: Option<Instant>,
    detector: Detector,
    last_addr: Option<SocketAddr>,
}

impl Peer {
    fn tracks(&self) -> Vec<TrackInfo> {
        self.outgoing
            .iter()
            .filter(|t| matches!(t.state, OutState::Negotiating(_) | OutState::Open(_)))
            .filter_map(|t| {
                t.mid().map(|mid| TrackInfo { mid: mid.to_string(), user_id: t.source_user, kind: kind_name(t.kind) })
            })
            .collect()
    }

    /// Whether media of this incoming track may be forwarded now.
    fn may_forward(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Audio => self.policy.audio && !self.policy.muted,
            MediaKind::Video => self.policy.video,
        }
    }
}

/// The mids of an SDP's media sections (`a=mid:` lines). str0m parses the
/// SDP but does not expose its sections; their state is then read back
/// from the `Rtc` by mid.
fn offered_mids(sdp: &str) -> impl Iterator<Item = Mid> + '_ {
    sdp.lines().filter_map(|line| line.trim().strip_prefix("a=mid:")).map(|mid| Mid::from(mid.trim()))
}

fn kind_name(kind: MediaKind) -> String {
    match kind {
        MediaKind::Audio => "audio".into(),
        MediaKind::Video => "video".into(),
    }
}

/// Work that one peer's output causes in others.
enum Propagate {
    TrackOpen { mid: Mid, kind: MediaKind },
    TrackClosed { mid: Mid },
    Media(Box<MediaData>),
    Keyframe { source: PeerId, mid: Mid, kind: KeyframeRequestKind },
}

#[derive(Default)]
struct Counters {
    received_packets: u64,
    forwarded_packets: u64,
    forwarded_bytes: u64,
    refused_packets: u64,
    unmatched: u64,
    send_dropped: u64,
}

pub(crate) struct Engine {
    config: SfuConfig,
    socket: UdpSocket,
    advertised: SocketAddr,
    events: mpsc::Sender<SfuEvent>,
    peers: HashMap<PeerId, Peer>,
    by_key: HashMap<(RoomId, UserId), PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    rooms: HashMap<RoomId, Vec<PeerId>>,
    next_id: PeerId,
    next_deadline: Instant,
    counters: Counters,
    flushed: Counters,
    loss: HashMap<(PeerId, Mid), f32>,
    crypto: Arc<str0m::crypto::CryptoProvider>,
}

impl Engine {
    pub(crate) fn new(
        config: SfuConfig,
        socket: UdpSocket,
        advertised: SocketAddr,
        events: mpsc::Sender<SfuEvent>,
    ) -> Self {
        Self {
            config,
            socket,
            advertised,
            events,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            by_addr: HashMap::new(),
            rooms: HashMap::new(),
            next_id: 1,
            next_deadline: Instant::now() + Duration::from_secs(1),
            counters: Counters::default(),
            flushed: Counters::default(),
            loss: HashMap::new(),
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(self.config.speaking.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = tokio::time::Instant::from_std(self.next_deadline);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                received = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = received {
                        self.receive(&buf[..n], source);
                    }
                    // Take what else is waiting without going back to the
                    // scheduler: one wake-up per burst, not per datagram.
                    for _ in 0..64 {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, source)) => self.receive(&buf[..n], source),
                            Err(_) => break,
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => self.timeouts(),
                _ = tick.tick() => self.tick(),
            }
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        tracing::info!("media (SFU) stopped");
    }

    fn emit(&self, event: SfuEvent) {
        if self.events.try_send(event).is_err() {
            metrics::counter!("palaver_sfu_events_dropped_total").increment(1);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Offer { room, user, sdp, policy, reply } => {
                let _ = reply.send(self.offer(room, user, &sdp, policy));
            }
            Command::Answer { room, user, sdp, reply } => {
                let _ = reply.send(self.answer(room, user, &sdp));
            }
            Command::Candidate { room, user, candidate, reply } => {
                let result = match self.by_key.get(&(room, user)).copied() {
                    None => Err(SfuError::NoPeer),
                    Some(id) => {
                        let line = candidate.trim().trim_start_matches("a=");
                        match Candidate::from_sdp_string(line) {
                            Ok(c) => {
                                if let Some(peer) = self.peers.get_mut(&id) {
                                    peer.rtc.add_remote_candidate(c);
                                }
                                self.drain(id);
                                Ok(())
                            }
                            Err(e) => Err(SfuError::BadSignal(format!("bad ICE candidate: {e}"))),
                        }
                    }
                };
                let _ = reply.send(result);
            }
            Command::Policy { room, user, policy, reply } => {
                let _ = reply.send(Ok(self.set_policy(room, user, policy)));
            }
            Command::Remove { room, user, reply } => {
                let found = self.by_key.get(&(room, user)).copied();
                if let Some(id) = found {
                    self.remove(id);
                }
                let _ = reply.send(Ok(found.is_some()));
            }
            Command::CloseRoom { room, reply } => {
                let ids = self.rooms.get(&room).cloned().unwrap_or_default();
                for id in &ids {
                    self.remove(*id);
                }
                let _ = reply.send(Ok(ids.len()));
            }
            Command::Stats { reply } => {
                let _ = reply.send(Ok(self.stats()));
            }
            Command::Rooms { reply } => {
                let _ = reply.send(Ok(self.rooms.keys().copied().collect()));
            }
            Command::Connected { reply } => {
                let list = self.peers.values().filter(|p| p.connected).map(|p| (p.room, p.user)).collect();
                let _ = reply.send(Ok(list));
            }
        }
    }

    fn stats(&self) -> SfuStats {
        let loss = if self.loss.is_empty() { 0.0 } else { self.loss.values().sum::<f32>() / self.loss.len() as f32 };
        SfuStats {
            rooms: self.rooms.len(),
            peers: self.peers.len(),
            connected_peers: self.peers.values().filter(|p| p.connected).count(),
            received_packets: self.counters.received_packets,
            forwarded_packets: self.counters.forwarded_packets,
            forwarded_bytes: self.counters.forwarded_bytes,
            refused_packets: self.counters.refused_packets,
            unmatched_datagrams: self.counters.unmatched,
            ingress_loss: loss,
            cpu_seconds: crate::cpu::thread_cpu_seconds(),
        }
    }

    fn new_rtc(&self) -> Result<Rtc, SfuError> {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .set_stats_interval(Some(Duration::from_secs(2)))
            .build(Instant::now());
        let candidate = Candidate::host(self.advertised, "udp")
            .map_err(|e| SfuError::BadSignal(format!("media address unusable as a candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok(rtc)
    }

    fn offer(&mut self, room: RoomId, user: UserId, sdp: &str, policy: PeerPolicy) -> Result<OfferOutcome, SfuError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::BadSignal(format!("bad SDP offer: {e}")))?;
        let (id, created) = match self.by_key.get(&(room, user)) {
            Some(id) => (*id, false),
            None => {
                if self.peers.len() >= self.config.max_peers {
                    return Err(SfuError::Full);
                }
                let id = self.next_id;
                self.next_id += 1;
                let rtc = self.new_rtc()?;
                self.peers.insert(
                    id,
                    Peer {
                        room,
                        user,
                        rtc,
                        policy,
                        incoming: Vec::new(),
                        outgoing: Vec::new(),
                        refused: Vec::new(),
                        refusing: Vec::new(),
                        newly_refused: Vec::new(),
                        pending: None,
                        timeout: Instant::now(),
                        connected: false,
                        lost_since: None,
                        detector: Detector::default(),
                        last_addr: None,
                    },
                );
                self.by_key.insert((room, user), id);
                self.rooms.entry(room).or_default().push(id);
                (id, true)
            }
        };
        let answer = {
            let Some(peer) = self.peers.get_mut(&id) else { return Err(SfuError::NoPeer) };
            peer.policy = policy;
            peer.newly_refused.clear();
            let answer = peer.rtc.sdp_api().accept_offer(offer);
            // Any offer of ours in flight is void now: redo it afterwards.
            if peer.pending.take().is_some() {
                for t in &mut peer.outgoing {
                    t.state = match t.state {
                        OutState::Negotiating(_) => OutState::ToOpen,
                        OutState::NegotiatingStop(m) => OutState::ToStop(m),
                        other => other,
                    };
                }
                let refusing = std::mem::take(&mut peer.refusing);
                peer.refused.extend(refusing);
            }
            answer
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                if created {
                    self.remove(id);
                }
                return Err(SfuError::BadSignal(format!("offer not accepted: {e}")));
            }
        };
        if created {
            // The newcomer receives every track already published in the room.
            let existing: Vec<(PeerId, UserId, InTrack)> = self
                .rooms
                .get(&room)
                .into_iter()
                .flatten()
                .filter(|other| **other != id)
                .filter_map(|other| self.peers.get(other).map(|p| (*other, p)))
                .flat_map(|(other, p)| p.incoming.iter().map(move |t| (other, p.user, *t)))
                .collect();
            if let Some(peer) = self.peers.get_mut(&id) {
                for (source, source_user, track) in existing {
                    peer.outgoing.push(OutTrack {
                        source,
                        source_user,
                        source_mid: track.mid,
                        kind: track.kind,
                        state: OutState::ToOpen,
                    });
                }
            }
        }
        // What the offer declares: str0m reports it as MediaAdded only once
        // DTLS is up, but the caller learns refusals with the answer.
        let declared: Vec<(Mid, MediaKind, Direction)> = {
            let Some(peer) = self.peers.get(&id) else { return Err(SfuError::NoPeer) };
            offered_mids(sdp).filter_map(|mid| peer.rtc.media(mid).map(|m| (mid, m.kind(), m.direction()))).collect()
        };
        for (mid, kind, direction) in declared {
            if let Some(work) = self.track_declared(id, mid, kind, direction) {
                self.propagate(id, work);
            }
        }
        self.drain(id);
        self.enforce_policy(id);
        let followup = self.negotiate(id);
        let Some(peer) = self.peers.get_mut(&id) else { return Err(SfuError::NoPeer) };
        Ok(OfferOutcome {
            answer: answer.to_sdp_string(),
            tracks: peer.tracks(),
            refused: peer.newly_refused.drain(..).map(|m| m.to_string()).collect(),
            followup,
        })
    }

    fn answer(&mut self, room: RoomId, user: UserId, sdp: &str) -> Result<(), SfuError> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::BadSignal(format!("bad SDP answer: {e}")))?;
        let id = *self.by_key.get(&(room, user)).ok_or(SfuError::NoPeer)?;
        let Some(peer) = self.peers.get_mut(&id) else { return Err(SfuError::NoPeer) };
        let pending = peer.pending.take().ok_or(SfuError::NoPendingOffer)?;
        let result = peer.rtc.sdp_api().accept_answer(pending, answer);
        match result {
            Ok(()) => {
                for t in &mut peer.outgoing {
                    if let OutState::Negotiating(m) = t.state {
                        t.state = OutState::Open(m);
                    }
                }
                peer.outgoing.retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
                peer.refusing.clear();
            }
            Err(e) => {
                // The offer is void: everything in it is to be offered again.
                for t in &mut peer.outgoing {
                    t.state = match t.state {
                        OutState::Negotiating(_) => OutState::ToOpen,
                        OutState::NegotiatingStop(m) => OutState::ToStop(m),
                        other => other,
                    };
                }
                let refusing = std::mem::take(&mut peer.refusing);
                peer.refused.extend(refusing);
                self.drain(id);
                return Err(SfuError::BadSignal(format!("answer not accepted: {e}")));
            }
        }
        self.drain(id);
        // Keyframes for video tracks that just opened, so they show at once.
        let opened: Vec<(PeerId, Mid)> = self
            .peers
            .get(&id)
            .map(|p| {
                p.outgoing
                    .iter()
                    .filter(|t| t.kind == MediaKind::Video && matches!(t.state, OutState::Open(_)))
                    .map(|t| (t.source, t.source_mid))
                    .collect()
            })
            .unwrap_or_default();
        for (source, mid) in opened {
            self.request_keyframe(source, mid, KeyframeRequestKind::Pli);
        }
        if let Some(event) = self.negotiate(id) {
            self.emit(event);
        }
        Ok(())
    }

    fn set_policy(&mut self, room: RoomId, user: UserId, policy: PeerPolicy) -> bool {
        let Some(id) = self.by_key.get(&(room, user)).copied() else { return false };
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.policy = policy;
        }
        self.enforce_policy(id);
        if let Some(event) = self.negotiate(id) {
            self.emit(event);
        }
        true
    }

    /// Stops tracks the peer may no longer publish: they leave the other
    /// peers and are set inactive at the next negotiation.
    fn enforce_policy(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        let policy = peer.policy;
        let mut closed = Vec::new();
        peer.incoming.retain(|t| {
            let allowed = match t.kind {
                MediaKind::Audio => policy.audio,
                MediaKind::Video => policy.video,
            };
            if !allowed {
                closed.push(t.mid);
            }
            allowed
        });
        for mid in &closed {
            peer.refused.push(*mid);
        }
        for mid in closed {
            self.propagate(id, Propagate::TrackClosed { mid });
        }
    }

    /// Offers pending track changes to a peer, if it has none in flight.
    /// Returns the offer event, which the caller delivers.
    fn negotiate(&mut self, id: PeerId) -> Option<SfuEvent> {
        let peer = self.peers.get_mut(&id)?;
        if peer.pending.is_some() {
            return None;
        }
        let mut change = peer.rtc.sdp_api();
        for t in &mut peer.outgoing {
            match t.state {
                OutState::ToOpen => {
                    let stream = format!("user-{}", t.source_user);
                    let track = format!("{}-{}", kind_name(t.kind), t.source_user);
                    let mid = change.add_media(t.kind, Direction::SendOnly, Some(stream), Some(track), None);
                    t.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        let refused = std::mem::take(&mut peer.refused);
        for mid in &refused {
            change.set_direction(*mid, Direction::Inactive);
        }
        let applied = if change.has_changes() { change.apply() } else { None };
        let event = match applied {
            Some((offer, pending)) => {
                peer.pending = Some(pending);
                peer.refusing = refused;
                Some(SfuEvent::Offer {
                    room: peer.room,
                    user: peer.user,
                    sdp: offer.to_sdp_string(),
                    tracks: peer.tracks(),
                })
            }
            None => {
                // Stops of tracks never offered need no negotiation.
                peer.outgoing.retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
                None
            }
        };
        self.drain(id);
        event
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else {
            self.counters.unmatched += 1;
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.advertised, contents },
        );
        let known =
            self.by_addr.get(&source).copied().filter(|id| self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)));
        let id = match known {
            Some(id) => id,
            None => match self.peers.iter().find(|(_, p)| p.rtc.accepts(&input)).map(|(id, _)| *id) {
                Some(id) => {
                    if let Some(peer) = self.peers.get_mut(&id)
                        && let Some(old) = peer.last_addr.replace(source)
                    {
                        self.by_addr.remove(&old);
                    }
                    self.by_addr.insert(source, id);
                    id
                }
                None => {
                    self.counters.unmatched += 1;
                    return;
                }
            },
        };
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(room = peer.room, user = peer.user, error = %e, "media input rejected");
        }
        self.drain(id);
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self.peers.iter().filter(|(_, p)| p.timeout <= now).map(|(id, _)| *id).collect();
        for id in due {
            if let Some(peer) = self.peers.get_mut(&id)
                && let Err(e) = peer.rtc.handle_input(Input::Timeout(now))
            {
                tracing::debug!(room = peer.room, user = peer.user, error = %e, "media timeout failed");
            }
            self.drain(id);
        }
        let grace = self.config.disconnect_grace;
        let dead: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.rtc.is_alive() || p.lost_since.is_some_and(|t| now.duration_since(t) >= grace))
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove(id);
        }
        self.next_deadline =
            self.peers.values().map(|p| p.timeout).min().unwrap_or(now + Duration::from_secs(1)).max(now);
        // Never sleep past a grace deadline or a second.
        self.next_deadline = self.next_deadline.min(now + Duration::from_secs(1));
    }

    /// Drains a peer's output until its next timeout, sending datagrams and
    /// acting on its events.
    fn drain(&mut self, id: PeerId) {
        let mut work = Vec::new();
        loop {
            let Some(peer) = self.peers.get_mut(&id) else { return };
            let output = match peer.rtc.poll_output() {
                Ok(output) => output,
                Err(e) => {
                    tracing::debug!(room = peer.room, user = peer.user, error = %e, "media session failed");
                    peer.rtc.disconnect();
                    peer.timeout = Instant::now();
                    break;
                }
            };
            match output {
                Output::Timeout(t) => {
                    peer.timeout = t;
                    if t < self.next_deadline {
                        self.next_deadline = t;
                    }
                    break;
                }
                Output::Transmit(t) => {
                    if self.socket.try_send_to(&t.contents, t.destination).is_err() {
                        self.counters.send_dropped += 1;
                    }
                }
                Output::Event(event) => {
                    if let Some(p) = self.on_event(id, event) {
                        work.push(p);
                    }
                }
            }
        }
        for p in work {
            self.propagate(id, p);
        }
    }

    fn on_event(&mut self, id: PeerId, event: Event) -> Option<Propagate> {
        let peer = self.peers.get_mut(&id)?;
        match event {
            Event::Connected => {
                peer.connected = true;
                peer.lost_since = None;
                let (room, user) = (peer.room, peer.user);
                self.emit(SfuEvent::Connected { room, user });
                None
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) if peer.connected => {
                peer.connected = false;
                peer.lost_since = Some(Instant::now());
                let (room, user) = (peer.room, peer.user);
                self.emit(SfuEvent::Disconnected { room, user });
                None
            }
            Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed)
                if peer.lost_since.is_some() =>
            {
                peer.lost_since = None;
                peer.connected = true;
                let (room, user) = (peer.room, peer.user);
                self.emit(SfuEvent::Connected { room, user });
                None
            }
            Event::MediaAdded(added) => self.track_declared(id, added.mid, added.kind, added.direction),
            Event::MediaChanged(changed) => {
                let kind = peer.rtc.media(changed.mid).map(|m| m.kind())?;
                self.track_declared(id, changed.mid, kind, changed.direction)
            }
            Event::MediaData(data) => {
                let Some(track) = peer.incoming.iter().find(|t| t.mid == data.mid).copied() else {
                    self.counters.refused_packets += 1;
                    return None;
                };
                self.counters.received_packets += 1;
                if !peer.may_forward(track.kind) {
                    self.counters.refused_packets += 1;
                    return None;
                }
                if track.kind == MediaKind::Audio
                    && let Some(level) = data.ext_vals.audio_level
                {
                    peer.detector.record(level);
                }
                if track.kind == MediaKind::Video && !data.contiguous {
                    let mid = data.mid;
                    let peer_id = id;
                    let _ = peer;
                    self.request_keyframe(peer_id, mid, KeyframeRequestKind::Fir);
                }
                Some(Propagate::Media(Box::new(data)))
            }
            Event::KeyframeRequest(req) => {
                let track = peer.outgoing.iter().find(|t| t.mid() == Some(req.mid))?;
                Some(Propagate::Keyframe { source: track.source, mid: track.source_mid, kind: req.kind })
            }
            Event::MediaIngressStats(stats) => {
                if let Some(loss) = stats.loss {
                    self.loss.insert((id, stats.mid), loss);
                }
                None
            }
            _ => None,
        }
    }

    /// A peer's m-line now has `direction` (ours): if we receive on it, it
    /// is a track the peer publishes, accepted if its policy allows one more
    /// of that kind.
    fn track_declared(&mut self, id: PeerId, mid: Mid, kind: MediaKind, direction: Direction) -> Option<Propagate> {
        let peer = self.peers.get_mut(&id)?;
        let known = peer.incoming.iter().position(|t| t.mid == mid);
        if !direction.is_receiving() {
            let index = known?;
            peer.incoming.remove(index);
            return Some(Propagate::TrackClosed { mid });
        }
        if known.is_some() {
            return None;
        }
        // Our own send-only tracks come back as receiving only if the
        // client flipped them; never treat them as published.
        if peer.outgoing.iter().any(|t| t.mid() == Some(mid)) {
            return None;
        }
        let allowed = match kind {
            MediaKind::Audio => peer.policy.audio,
            MediaKind::Video => peer.policy.video,
        } && !peer.incoming.iter().any(|t| t.kind == kind);
        if !allowed {
            if peer.refused.contains(&mid) || peer.refusing.contains(&mid) {
                return None;
            }
            peer.refused.push(mid);
            if !peer.newly_refused.contains(&mid) {
                peer.newly_refused.push(mid);
            }
            tracing::debug!(room = peer.room, user = peer.user, %mid, ?kind, "refused a track the peer may not publish");
            return None;
        }
        peer.incoming.push(InTrack { mid, kind, last_keyframe_request: None });
        Some(Propagate::TrackOpen { mid, kind })
    }

    fn propagate(&mut self, origin: PeerId, work: Propagate) {
        let Some(source) = self.peers.get(&origin) else { return };
        let (room, source_user) = (source.room, source.user);
        let others: Vec<PeerId> = self
            .rooms
            .get(&room)
            .map(|ids| ids.iter().copied().filter(|id| *id != origin).collect())
            .unwrap_or_default();
        match work {
            Propagate::TrackOpen { mid, kind } => {
                for id in others {
                    if let Some(peer) = self.peers.get_mut(&id) {
                        peer.outgoing.push(OutTrack {
                            source: origin,
                            source_user,
                            source_mid: mid,
                            kind,
                            state: OutState::ToOpen,
                        });
                    }
                    if let Some(event) = self.negotiate(id) {
                        self.emit(event);
                    }
                }
            }
            Propagate::TrackClosed { mid } => {
                for id in others {
                    if let Some(peer) = self.peers.get_mut(&id) {
                        peer.outgoing.retain_mut(|t| {
                            if t.source != origin || t.source_mid != mid {
                                return true;
                            }
                            match t.state {
                                OutState::ToOpen => false,
                                OutState::Negotiating(m) | OutState::Open(m) => {
                                    t.state = OutState::ToStop(m);
                                    true
                                }
                                _ => true,
                            }
                        });
                    }
                    if let Some(event) = self.negotiate(id) {
                        self.emit(event);
                    }
                }
            }
            Propagate::Media(data) => {
                for id in others {
                    self.forward(id, origin, &data);
                }
            }
            Propagate::Keyframe { source, mid, kind } => self.request_keyframe(source, mid, kind),
        }
    }

    fn forward(&mut self, to: PeerId, origin: PeerId, data: &MediaData) {
        let Some(peer) = self.peers.get_mut(&to) else { return };
        let Some(mid) = peer
            .outgoing
            .iter()
            .find(|t| t.source == origin && t.source_mid == data.mid)
            .and_then(|t| if let OutState::Open(m) = t.state { Some(m) } else { None })
        else {
            return;
        };
        let Some(writer) = peer.rtc.writer(mid) else { return };
        let Some(pt) = writer.match_params(data.params) else { return };
        let writer = match (data.ext_vals.audio_level, data.ext_vals.voice_activity) {
            (Some(level), vad) => writer.audio_level(level, vad.unwrap_or(level > -60)),
            _ => writer,
        };
        match writer.write(pt, data.network_time, data.time, data.data.clone()) {
            Ok(()) => {
                self.counters.forwarded_packets += 1;
                self.counters.forwarded_bytes += data.data.len() as u64;
            }
            Err(e) => tracing::debug!(error = %e, "forwarding failed"),
        }
        self.drain(to);
    }

    fn request_keyframe(&mut self, source: PeerId, mid: Mid, kind: KeyframeRequestKind) {
        let Some(peer) = self.peers.get_mut(&source) else { return };
        let now = Instant::now();
        let Some(track) = peer.incoming.iter_mut().find(|t| t.mid == mid) else { return };
        if track.last_keyframe_request.is_some_and(|t| now.duration_since(t) < Duration::from_millis(500)) {
            return;
        }
        track.last_keyframe_request = Some(now);
        if let Some(mut writer) = peer.rtc.writer(mid)
            && writer.is_request_keyframe_possible(kind)
        {
            let _ = writer.request_keyframe(None, kind);
        }
        self.drain(source);
    }

    fn remove(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else { return };
        let closed: Vec<Mid> = peer.incoming.iter().map(|t| t.mid).collect();
        for mid in closed {
            self.propagate(id, Propagate::TrackClosed { mid });
        }
        // Tracks of this peer that others had not negotiated yet.
        let Some(mut peer) = self.peers.remove(&id) else { return };
        peer.rtc.disconnect();
        self.by_key.remove(&(peer.room, peer.user));
        if let Some(addr) = peer.last_addr {
            self.by_addr.remove(&addr);
        }
        if let Some(ids) = self.rooms.get_mut(&peer.room) {
            ids.retain(|p| *p != id);
            if ids.is_empty() {
                self.rooms.remove(&peer.room);
            }
        }
        self.loss.retain(|(p, _), _| *p != id);
        self.emit(SfuEvent::Closed { room: peer.room, user: peer.user });
    }

    fn tick(&mut self) {
        let settings = self.config.speaking;
        let mut events = Vec::new();
        for peer in self.peers.values_mut() {
            if !peer.incoming.iter().any(|t| t.kind == MediaKind::Audio) && !peer.detector.speaking() {
                continue;
            }
            if let Some((speaking, level)) = peer.detector.tick(&settings) {
                events.push(SfuEvent::Speaking { room: peer.room, user: peer.user, speaking, level });
            }
        }
        for event in events {
            self.emit(event);
        }
        self.flush_metrics();
    }

    fn flush_metrics(&mut self) {
        let c = &self.counters;
        let f = &mut self.flushed;
        metrics::counter!("palaver_sfu_received_packets_total").increment(c.received_packets - f.received_packets);
        metrics::counter!("palaver_sfu_forwarded_packets_total").increment(c.forwarded_packets - f.forwarded_packets);
        metrics::counter!("palaver_sfu_forwarded_bytes_total").increment(c.forwarded_bytes - f.forwarded_bytes);
        metrics::counter!("palaver_sfu_refused_packets_total").increment(c.refused_packets - f.refused_packets);
        metrics::counter!("palaver_sfu_send_dropped_total").increment(c.send_dropped - f.send_dropped);
        *f = Counters {
            received_packets: c.received_packets,
            forwarded_packets: c.forwarded_packets,
            forwarded_bytes: c.forwarded_bytes,
            refused_packets: c.refused_packets,
            unmatched: c.unmatched,
            send_dropped: c.send_dropped,
        };
        metrics::gauge!("palaver_sfu_rooms").set(self.rooms.len() as f64);
        metrics::gauge!("palaver_sfu_peers").set(self.peers.len() as f64);
        let loss = if self.loss.is_empty() { 0.0 } else { self.loss.values().sum::<f32>() / self.loss.len() as f32 };
        metrics::gauge!("palaver_sfu_ingress_packet_loss_ratio").set(f64::from(loss));
    }
}
