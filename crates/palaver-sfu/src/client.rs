//! A WebRTC client peer in Rust (str0m over its own UDP socket), for tests
//! and benchmarks: it offers, answers the SFU's offers, publishes Opus-like
//! audio packets with an RFC 6464 audio level (and optionally screen-share
//! video), and counts what it receives, per publishing user.
//!
//! The payload is not real Opus: the SFU never decodes audio, so any bytes
//! do. Each payload starts with its send time (nanoseconds since a process
//! epoch), so receivers in the same process measure forwarding latency.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::{TrackInfo, UserId};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// What the client publishes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Offer an audio track to send.
    pub audio: bool,
    /// Offer a video (screen-share) track to send.
    pub video: bool,
    /// Packets per second of audio while sending (50: 20 ms frames).
    pub audio_rate: u32,
    /// Record the latency of every received packet.
    pub record_latency: bool,
}

/// What a client has seen; shared with its task.
#[derive(Debug, Default)]
pub struct ClientStats {
    connected: AtomicBool,
    sent_audio: AtomicU64,
    sent_video: AtomicU64,
    received: Mutex<HashMap<(UserId, &'static str), u64>>,
    latencies_us: Mutex<Vec<u32>>,
}

enum Cmd {
    Offer(oneshot::Sender<Result<String, String>>),
    IceRestart { new_socket: bool, reply: oneshot::Sender<Result<String, String>> },
    AcceptAnswer(String, oneshot::Sender<Result<(), String>>),
    AcceptOffer(String, Vec<TrackInfo>, oneshot::Sender<Result<String, String>>),
}

/// A client peer running on its own task.
#[derive(Debug, Clone)]
pub struct SfuClient {
    tx: mpsc::Sender<Cmd>,
    stats: Arc<ClientStats>,
    level: Arc<Mutex<Option<i8>>>,
    video: Arc<AtomicBool>,
}

impl SfuClient {
    /// Binds a UDP socket on 127.0.0.1 and starts the client's task.
    pub async fn spawn(options: ClientOptions) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let (tx, rx) = mpsc::channel(16);
        let stats = Arc::new(ClientStats::default());
        let level = Arc::new(Mutex::new(None));
        let video = Arc::new(AtomicBool::new(false));
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        let candidate = Candidate::host(socket.local_addr()?, "udp")
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let task = ClientTask {
            rtc,
            socket,
            options,
            stats: stats.clone(),
            level: level.clone(),
            video: video.clone(),
            pending: None,
            send_audio: None,
            send_video: None,
            tracks: HashMap::new(),
            audio_time: 0,
            video_time: 0,
        };
        let _ = epoch();
        tokio::spawn(task.run(rx));
        Ok(Self { tx, stats, level, video })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Cmd) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| "client task stopped".to_owned())?;
        rx.await.map_err(|_| "client task stopped".to_owned())?
    }

    /// The first offer: the publish tracks (or one receive-only audio line).
    pub async fn create_offer(&self) -> Result<String, String> {
        self.ask(Cmd::Offer).await
    }

    /// An ICE restart offer; with `new_socket`, first moves to a new UDP
    /// port, as a client whose network changed would.
    pub async fn ice_restart(&self, new_socket: bool) -> Result<String, String> {
        self.ask(|reply| Cmd::IceRestart { new_socket, reply }).await
    }

    /// Applies the SFU's answer to our latest offer.
    pub async fn accept_answer(&self, sdp: String) -> Result<(), String> {
        self.ask(|reply| Cmd::AcceptAnswer(sdp, reply)).await
    }

    /// Answers an SFU offer, learning whose media each m-line carries.
    pub async fn accept_offer(&self, sdp: String, tracks: Vec<TrackInfo>) -> Result<String, String> {
        self.ask(|reply| Cmd::AcceptOffer(sdp, tracks, reply)).await
    }

    /// Sends audio at this level (0 loudest to -127 silent), or stops.
    pub fn set_audio_level(&self, level: Option<i8>) {
        if let Ok(mut l) = self.level.lock() {
            *l = level;
        }
    }

    /// Starts or stops sending screen-share video frames.
    pub fn set_video(&self, on: bool) {
        self.video.store(on, Ordering::Relaxed);
    }

    /// Whether ICE and DTLS are up.
    pub fn connected(&self) -> bool {
        self.stats.connected.load(Ordering::Relaxed)
    }

    /// Audio packets sent so far.
    pub fn sent_audio(&self) -> u64 {
        self.stats.sent_audio.load(Ordering::Relaxed)
    }

    /// Video frames sent so far.
    pub fn sent_video(&self) -> u64 {
        self.stats.sent_video.load(Ordering::Relaxed)
    }

    /// Packets (audio) or frames (video) received from `user`'s `kind`
    /// (`audio` or `video`) track.
    pub fn received(&self, user: UserId, kind: &str) -> u64 {
        let kind: &'static str = if kind == "video" { "video" } else { "audio" };
        self.stats.received.lock().map(|r| r.get(&(user, kind)).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Takes the latencies recorded so far, in microseconds.
    pub fn take_latencies(&self) -> Vec<u32> {
        self.stats.latencies_us.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }

    /// Waits until connected, up to `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.connected() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

struct ClientTask {
    rtc: Rtc,
    socket: UdpSocket,
    options: ClientOptions,
    stats: Arc<ClientStats>,
    level: Arc<Mutex<Option<i8>>>,
    video: Arc<AtomicBool>,
    pending: Option<SdpPendingOffer>,
    send_audio: Option<Mid>,
    send_video: Option<Mid>,
    tracks: HashMap<Mid, (UserId, &'static str)>,
    audio_time: u64,
    video_time: u64,
}

impl ClientTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 2048];
        let rate = self.options.audio_rate.max(1);
        let mut audio_tick = tokio::time::interval(Duration::from_secs(1) / rate);
        let mut video_tick = tokio::time::interval(Duration::from_millis(100));
        audio_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        video_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let Some(timeout) = self.drain() else { return };
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout));
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => return,
                },
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = r {
                        self.input(&buf[..n], source);
                    }
                }
                _ = audio_tick.tick() => self.send_audio_frame(),
                _ = video_tick.tick() => self.send_video_frame(),
                () = sleep => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }

    fn input(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(destination) = self.socket.local_addr() else { return };
        let Ok(contents) = data.try_into() else { return };
        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination, contents });
        let _ = self.rtc.handle_input(input);
    }

    /// Drains output; `None` when the session is over.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(event)) => self.event(event),
                Err(_) => return None,
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected => self.stats.connected.store(true, Ordering::Relaxed),
            Event::MediaData(data) => {
                let Some((user, kind)) = self.tracks.get(&data.mid).copied() else { return };
                if let Ok(mut r) = self.stats.received.lock() {
                    *r.entry((user, kind)).or_default() += 1;
                }
                if self.options.record_latency && data.data.len() >= 8 {
                    let mut stamp = [0u8; 8];
                    stamp.copy_from_slice(&data.data[..8]);
                    let sent = u64::from_be_bytes(stamp);
                    let now = epoch().elapsed().as_nanos() as u64;
                    let us = now.saturating_sub(sent) / 1000;
                    if let Ok(mut l) = self.stats.latencies_us.lock() {
                        l.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
            }
            _ => {}
        }
    }

    async fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Offer(reply) => {
                let mut change = self.rtc.sdp_api();
                if self.options.audio {
                    self.send_audio = Some(change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
                } else {
                    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
                }
                if self.options.video {
                    self.send_video = Some(change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
                }
                let result = match change.apply() {
                    Some((offer, pending)) => {
                        self.pending = Some(pending);
                        Ok(offer.to_sdp_string())
                    }
                    None => Err("nothing to offer".to_owned()),
                };
                let _ = reply.send(result);
            }
            Cmd::IceRestart { new_socket, reply } => {
                if new_socket {
                    match UdpSocket::bind("127.0.0.1:0").await {
                        Ok(socket) => self.socket = socket,
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
                let mut change = self.rtc.sdp_api();
                change.ice_restart(false);
                let result = match change.apply() {
                    Some((offer, pending)) => {
                        self.pending = Some(pending);
                        Ok(offer.to_sdp_string())
                    }
                    None => Err("nothing to offer".to_owned()),
                };
                let _ = reply.send(result);
            }
            Cmd::AcceptAnswer(sdp, reply) => {
                let result = match (SdpAnswer::from_sdp_string(&sdp), self.pending.take()) {
                    (Ok(answer), Some(pending)) => {
                        let result = self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| e.to_string());
                        // An ICE restart clears local candidates when it is
                        // applied: offer our (possibly new) socket again.
                        if result.is_ok()
                            && let Ok(addr) = self.socket.local_addr()
                            && let Ok(c) = Candidate::host(addr, "udp")
                        {
                            self.rtc.add_local_candidate(c);
                        }
                        result
                    }
                    (Err(e), _) => Err(e.to_string()),
                    (_, None) => Err("no offer pending".to_owned()),
                };
                let _ = reply.send(result);
            }
            Cmd::AcceptOffer(sdp, tracks, reply) => {
                let result = match SdpOffer::from_sdp_string(&sdp) {
                    Ok(offer) => {
                        self.pending = None;
                        let answer = self.rtc.sdp_api().accept_offer(offer).map(|a| a.to_sdp_string());
                        for t in tracks {
                            let kind = if t.kind == "video" { "video" } else { "audio" };
                            self.tracks.insert(Mid::from(t.mid.as_str()), (t.user_id, kind));
                        }
                        answer.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn send_audio_frame(&mut self) {
        let level = self.level.lock().ok().and_then(|l| *l);
        let (Some(mid), Some(level)) = (self.send_audio, level) else { return };
        if !self.stats.connected.load(Ordering::Relaxed) {
            return;
        }
        let Some(writer) = self.rtc.writer(mid) else { return };
        let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else { return };
        let mut payload = vec![0x78u8; 60];
        let stamp = epoch().elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&stamp.to_be_bytes());
        let rate = u64::from(self.options.audio_rate.max(1));
        self.audio_time += 48_000 / rate;
        let time = MediaTime::new(self.audio_time, str0m::media::Frequency::FORTY_EIGHT_KHZ);
        let writer = writer.audio_level(level, level > -60);
        if writer.write(pt, Instant::now(), time, payload).is_ok() {
            self.stats.sent_audio.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send_video_frame(&mut self) {
        let Some(mid) = self.send_video else { return };
        if !self.video.load(Ordering::Relaxed) || !self.stats.connected.load(Ordering::Relaxed) {
            return;
        }
        let Some(writer) = self.rtc.writer(mid) else { return };
        let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else { return };
        // A VP8 key frame header (3-byte frame tag + start code) then filler.
        let mut frame = vec![0u8; 900];
        frame[..10].copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
        let stamp = epoch().elapsed().as_nanos() as u64;
        frame[10..18].copy_from_slice(&stamp.to_be_bytes());
        self.video_time += 9000;
        let time = MediaTime::new(self.video_time, str0m::media::Frequency::NINETY_KHZ);
        if writer.write(pt, Instant::now(), time, frame).is_ok() {
            self.stats.sent_video.fetch_add(1, Ordering::Relaxed);
        }
    }
}
