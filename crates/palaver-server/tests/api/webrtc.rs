//! Two real WebRTC peers (str0m, each on its own UDP socket, driven as in
//! str0m's examples) place a call through Palaver: REST to ring, the
//! WebSocket `signal` op for the offer and answer, ICE and DTLS between
//! them, audio both ways, and a hang-up that ends the call with a duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::calls::Ws;
use crate::helpers::api_test;

#[derive(Default)]
struct Stats {
    connected: AtomicBool,
    bytes_received: AtomicU64,
    packets_received: AtomicU64,
}

enum Cmd {
    Offer(oneshot::Sender<String>),
    AcceptOffer(String, oneshot::Sender<String>),
    AcceptAnswer(String, oneshot::Sender<()>),
}

/// A peer: one audio line, sending 20 ms frames once connected.
struct Peer {
    tx: mpsc::Sender<Cmd>,
    stats: Arc<Stats>,
}

impl Peer {
    async fn spawn() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .clear_codecs()
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
        let (tx, rx) = mpsc::channel(4);
        let stats = Arc::new(Stats::default());
        let task = PeerTask { rtc, socket, stats: stats.clone(), pending: None, audio: None, time: 0 };
        tokio::spawn(task.run(rx));
        Self { tx, stats }
    }

    async fn offer(&self) -> String {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Offer(reply)).await.unwrap();
        rx.await.unwrap()
    }

    async fn answer(&self, offer: String) -> String {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::AcceptOffer(offer, reply)).await.unwrap();
        rx.await.unwrap()
    }

    async fn accept_answer(&self, answer: String) {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::AcceptAnswer(answer, reply)).await.unwrap();
        rx.await.unwrap();
    }

    async fn wait(&self, what: &str, done: impl Fn(&Stats) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.stats) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct PeerTask {
    rtc: Rtc,
    socket: UdpSocket,
    stats: Arc<Stats>,
    pending: Option<SdpPendingOffer>,
    audio: Option<Mid>,
    time: u64,
}

impl PeerTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            // Sans-IO: drain what str0m wants sent, then wait for the next
            // datagram, command, frame tick or str0m timeout.
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(event)) => self.event(event),
                    Err(_) => return,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return,
                },
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = r {
                        self.input(&buf[..n], source);
                    }
                }
                _ = tick.tick() => self.send_frame(),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }

    fn input(&mut self, data: &[u8], source: SocketAddr) {
        let (Ok(destination), Ok(contents)) = (self.socket.local_addr(), data.try_into()) else { return };
        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination, contents });
        let _ = self.rtc.handle_input(input);
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected => self.stats.connected.store(true, Ordering::Relaxed),
            Event::MediaAdded(added) => self.audio = Some(added.mid),
            Event::MediaData(data) => {
                self.stats.bytes_received.fetch_add(data.data.len() as u64, Ordering::Relaxed);
                self.stats.packets_received.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Offer(reply) => {
                let mut change = self.rtc.sdp_api();
                self.audio = Some(change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None));
                let (offer, pending) = change.apply().unwrap();
                self.pending = Some(pending);
                let _ = reply.send(offer.to_sdp_string());
            }
            Cmd::AcceptOffer(sdp, reply) => {
                let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                let answer = self.rtc.sdp_api().accept_offer(offer).unwrap();
                let _ = reply.send(answer.to_sdp_string());
            }
            Cmd::AcceptAnswer(sdp, reply) => {
                let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                self.rtc.sdp_api().accept_answer(self.pending.take().unwrap(), answer).unwrap();
                let _ = reply.send(());
            }
        }
    }

    /// One 20 ms audio frame (the bytes need not be real Opus: the peers
    /// never decode them).
    fn send_frame(&mut self) {
        if !self.stats.connected.load(Ordering::Relaxed) {
            return;
        }
        let Some(mid) = self.audio else { return };
        let Some(writer) = self.rtc.writer(mid) else { return };
        let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else { return };
        self.time += 960;
        let _ =
            writer.write(pt, Instant::now(), MediaTime::new(self.time, Frequency::FORTY_EIGHT_KHZ), vec![0x78u8; 80]);
    }
}

api_test! {
    async fn two_webrtc_peers_call_through_palaver(app) {
        let ana = app.register("rtc-ana@example.org").await;
        let bob = app.register("rtc-bob@example.org").await;
        let mut ana_ws = Ws::connect(&app, "/ws", &ana).await;
        let mut bob_ws = Ws::connect(&app, "/ws", &bob).await;

        let call = app
            .post("/api/v1/calls", Some(&ana.access_token), json!({"receiver_id": bob.id, "call_type": "voice"}))
            .await
            .expect(201);
        let id = call["id"].as_i64().unwrap();
        bob_ws.until(|f| f["type"] == "call_incoming").await;
        for ws in [&mut ana_ws, &mut bob_ws] {
            assert_eq!(ws.op(json!({"op": "subscribe", "topic": format!("call:{id}")})).await["op"], "ack");
        }
        let accepted = bob_ws.op(json!({"op": "call_accept", "call_id": id})).await;
        assert_eq!(accepted["status"], "active", "{accepted}");
        ana_ws.until(|f| f["type"] == "call_state" && f["data"]["status"] == "active").await;

        // Offer and answer through Palaver's signaling.
        let (caller, callee) = (Peer::spawn().await, Peer::spawn().await);
        let offer = caller.offer().await;
        let ack = ana_ws.op(json!({"op": "signal", "call_id": id, "kind": "offer", "payload": {"type": "offer", "sdp": offer}})).await;
        assert_eq!(ack["op"], "ack", "{ack}");
        let (signal, _) = bob_ws.until(|f| f["type"] == "signal" && f["data"]["kind"] == "offer").await;
        assert_eq!(signal["data"]["from"], ana.id);
        let answer = callee.answer(signal["data"]["payload"]["sdp"].as_str().unwrap().to_owned()).await;
        let ack = bob_ws.op(json!({"op": "signal", "call_id": id, "kind": "answer", "payload": {"type": "answer", "sdp": answer}})).await;
        assert_eq!(ack["op"], "ack", "{ack}");
        let (signal, _) = ana_ws.until(|f| f["type"] == "signal" && f["data"]["kind"] == "answer").await;
        caller.accept_answer(signal["data"]["payload"]["sdp"].as_str().unwrap().to_owned()).await;

        // ICE connects, and audio flows both ways.
        caller.wait("the caller to connect", |s| s.connected.load(Ordering::Relaxed)).await;
        callee.wait("the callee to connect", |s| s.connected.load(Ordering::Relaxed)).await;
        app.post(&format!("/api/v1/calls/{id}/connected"), Some(&ana.access_token), json!({})).await.expect(200);
        for (peer, who) in [(&caller, "caller"), (&callee, "callee")] {
            peer.wait(&format!("audio at the {who}"), |s| s.packets_received.load(Ordering::Relaxed) >= 50).await;
        }
        let (a, b) = (caller.stats.bytes_received.load(Ordering::Relaxed), callee.stats.bytes_received.load(Ordering::Relaxed));
        callee.wait("more audio at the callee", |s| s.bytes_received.load(Ordering::Relaxed) > b).await;
        caller.wait("more audio at the caller", |s| s.bytes_received.load(Ordering::Relaxed) > a).await;

        // Hang-up over the signaling ends the call; the server computes
        // the duration (50 frames of 20 ms took at least a second).
        let ack = ana_ws.op(json!({"op": "signal", "call_id": id, "kind": "hangup", "payload": {}})).await;
        assert_eq!(ack["status"], "ended", "{ack}");
        // The hang-up signal and the ended state may come in either order.
        let (mut hangup, mut state) = (None, None);
        while hangup.is_none() || state.is_none() {
            let frame = bob_ws.next().await;
            if frame["type"] == "signal" && frame["data"]["kind"] == "hangup" {
                hangup = Some(frame);
            } else if frame["type"] == "call_state" && frame["data"]["status"] == "ended" && frame["topic"] == format!("call:{id}") {
                state = Some(frame);
            }
        }
        assert_eq!(hangup.unwrap()["data"]["from"], ana.id);
        let state = state.unwrap();
        assert!(state["data"]["duration"].as_i64().unwrap() >= 1, "{state}");
        let stored = app.get(&format!("/api/v1/calls/{id}"), &bob.access_token).await.expect(200);
        assert_eq!(stored["status"], "ended");
        assert!(stored["media_connected_at"].is_string());
    }
}
