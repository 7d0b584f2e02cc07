//! The SFU with real WebRTC peers: str0m clients on their own UDP sockets on
//! loopback, talking DTLS-SRTP to the SFU's one socket. The test plays the
//! signaling server: it carries offers and answers between the clients and
//! the SFU API, as the voice-room service does over the WebSocket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palaver_sfu::client::{ClientOptions, SfuClient};
use palaver_sfu::{PeerPolicy, RoomId, Sfu, SfuConfig, SfuError, SfuEvent, UserId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SPEAKER: PeerPolicy = PeerPolicy { audio: true, video: false, muted: false };
const LISTENER: PeerPolicy = PeerPolicy { audio: false, video: false, muted: false };
const TEACHER: PeerPolicy = PeerPolicy { audio: true, video: true, muted: false };
const WAIT: Duration = Duration::from_secs(15);

type Clients = Arc<Mutex<HashMap<UserId, SfuClient>>>;

struct Harness {
    sfu: Sfu,
    clients: Clients,
    events: mpsc::UnboundedReceiver<SfuEvent>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts an SFU and the relay that answers its offers through the clients.
fn start() -> Harness {
    let shutdown = CancellationToken::new();
    let (sfu, mut sfu_events) = Sfu::start(SfuConfig::default(), shutdown.clone()).unwrap();
    let clients: Clients = Arc::default();
    let (tx, events) = mpsc::unbounded_channel();
    let relay_sfu = sfu.clone();
    let relay_clients = clients.clone();
    tokio::spawn(async move {
        while let Some(event) = sfu_events.recv().await {
            if let SfuEvent::Offer { room, user, sdp, tracks } = &event {
                deliver_offer(&relay_sfu, &relay_clients, *room, *user, sdp, tracks).await;
            }
            let _ = tx.send(event);
        }
    });
    Harness { sfu, clients, events, shutdown }
}

async fn deliver_offer(
    sfu: &Sfu,
    clients: &Clients,
    room: RoomId,
    user: UserId,
    sdp: &str,
    tracks: &[palaver_sfu::TrackInfo],
) {
    let client = clients.lock().unwrap().get(&user).cloned();
    let Some(client) = client else { return };
    let answer = client.accept_offer(sdp.to_owned(), tracks.to_vec()).await.unwrap();
    // A newer offer may have replaced this one: that is not an error here.
    match sfu.answer(room, user, answer).await {
        Ok(()) | Err(SfuError::NoPendingOffer) | Err(SfuError::BadSignal(_)) => {}
        Err(e) => panic!("answer failed: {e}"),
    }
}

impl Harness {
    /// A client offers, gets its answer (and the follow-up offer with the
    /// room's tracks), and connects.
    async fn join(
        &self,
        room: RoomId,
        user: UserId,
        options: ClientOptions,
        policy: PeerPolicy,
    ) -> (SfuClient, Vec<String>) {
        let client = SfuClient::spawn(ClientOptions { audio_rate: 50, ..options }).await.unwrap();
        self.clients.lock().unwrap().insert(user, client.clone());
        let offer = client.create_offer().await.unwrap();
        let outcome = self.sfu.offer(room, user, offer, policy).await.unwrap();
        client.accept_answer(outcome.answer).await.unwrap();
        if let Some(SfuEvent::Offer { room, user, sdp, tracks }) = outcome.followup {
            deliver_offer(&self.sfu, &self.clients, room, user, &sdp, &tracks).await;
        }
        assert!(client.wait_connected(WAIT).await, "user {user} connects");
        (client, outcome.refused)
    }

    /// The next event matching `want`, skipping others.
    async fn next_event(&mut self, what: &str, want: impl Fn(&SfuEvent) -> bool) -> SfuEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if want(&event) => return event,
                Ok(Some(_)) => continue,
                _ => panic!("no event: {what}"),
            }
        }
    }
}

/// Waits until `cond` holds, polling the clients' counters.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn speaker() -> ClientOptions {
    ClientOptions { audio: true, ..ClientOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_speakers_listener_mute_and_speaking() {
    let mut h = start();
    let room = 7;
    let (a, refused_a) = h.join(room, 1, speaker(), SPEAKER).await;
    let (b, refused_b) = h.join(room, 2, speaker(), SPEAKER).await;
    // The listener offers a send track too: it is refused.
    let (c, refused_c) = h.join(room, 3, speaker(), LISTENER).await;
    assert!(refused_a.is_empty() && refused_b.is_empty());
    assert_eq!(refused_c.len(), 1, "the listener's audio track is refused");

    a.set_audio_level(Some(-20));
    b.set_audio_level(Some(-127));
    c.set_audio_level(Some(-10));

    // Both speakers reach the two other participants.
    until("B and C hear A", || b.received(1, "audio") > 25 && c.received(1, "audio") > 25).await;
    until("A and C hear B", || a.received(2, "audio") > 25 && c.received(2, "audio") > 25).await;
    // The listener receives but is never heard, while it keeps sending.
    let base = a.received(2, "audio");
    until("another second of B at A", || a.received(2, "audio") > base + 50).await;
    assert_eq!(a.received(3, "audio"), 0, "nothing from the listener reaches A");
    assert_eq!(b.received(3, "audio"), 0, "nothing from the listener reaches B");

    // Speaking follows the loud peer.
    h.next_event("A speaking", |e| matches!(e, SfuEvent::Speaking { user: 1, speaking: true, .. })).await;
    a.set_audio_level(Some(-127));
    b.set_audio_level(Some(-25));
    h.next_event("B speaking", |e| matches!(e, SfuEvent::Speaking { user: 2, speaking: true, .. })).await;
    h.next_event("A stops", |e| matches!(e, SfuEvent::Speaking { user: 1, speaking: false, .. })).await;

    // A muted speaker is not forwarded; A keeps sending.
    assert!(h.sfu.set_policy(room, 1, PeerPolicy { muted: true, ..SPEAKER }).await.unwrap());
    let settle = c.received(2, "audio");
    until("a second of B at C", || c.received(2, "audio") > settle + 50).await;
    let (muted_at_b, muted_at_c, sent) = (b.received(1, "audio"), c.received(1, "audio"), a.sent_audio());
    let mark = c.received(2, "audio");
    until("another second of B at C", || c.received(2, "audio") > mark + 50).await;
    assert!(a.sent_audio() > sent + 25, "A still sends while muted");
    assert_eq!(b.received(1, "audio"), muted_at_b, "muted A does not reach B");
    assert_eq!(c.received(1, "audio"), muted_at_c, "muted A does not reach C");
    // Unmuted, A is heard again.
    assert!(h.sfu.set_policy(room, 1, SPEAKER).await.unwrap());
    until("B hears A again", || b.received(1, "audio") > muted_at_b + 25).await;

    let stats = h.sfu.stats().await.unwrap();
    assert_eq!((stats.rooms, stats.peers, stats.connected_peers), (1, 3, 3));
    assert!(stats.forwarded_packets > 200 && stats.refused_packets > 0, "{stats:?}");
    assert!(stats.cpu_seconds > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teachers_share_their_screen_others_are_refused() {
    let h = start();
    let room = 8;
    let (teacher, refused) =
        h.join(room, 10, ClientOptions { audio: true, video: true, ..ClientOptions::default() }, TEACHER).await;
    assert!(refused.is_empty());
    let (student, refused_student) =
        h.join(room, 11, ClientOptions { audio: true, video: true, ..ClientOptions::default() }, SPEAKER).await;
    assert_eq!(refused_student.len(), 1, "a non-teacher's video is refused, their audio accepted");
    let (listener, _) = h.join(room, 12, ClientOptions::default(), LISTENER).await;

    teacher.set_video(true);
    student.set_video(true);
    until("everyone sees the teacher's screen", || {
        student.received(10, "video") > 5 && listener.received(10, "video") > 5
    })
    .await;
    let mark = listener.received(10, "video");
    until("more of the teacher's screen", || listener.received(10, "video") > mark + 10).await;
    assert_eq!(teacher.received(11, "video"), 0, "the student's screen goes nowhere");
    assert_eq!(listener.received(11, "video"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_on_a_new_socket_keeps_the_session() {
    let h = start();
    let room = 9;
    let (a, _) = h.join(room, 20, speaker(), SPEAKER).await;
    let (b, _) = h.join(room, 21, ClientOptions::default(), LISTENER).await;
    a.set_audio_level(Some(-30));
    until("B hears A", || b.received(20, "audio") > 20).await;

    // B's network changes: new port, ICE restart through signaling.
    let offer = b.ice_restart(true).await.unwrap();
    let outcome = h.sfu.offer(room, 21, offer, LISTENER).await.unwrap();
    b.accept_answer(outcome.answer).await.unwrap();
    let mark = b.received(20, "audio");
    until("B hears A on its new socket", || b.received(20, "audio") > mark + 50).await;
    assert_eq!(h.sfu.stats().await.unwrap().peers, 2, "the same two sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signals_are_refused_and_change_nothing() {
    let mut h = start();
    let room = 10;
    assert!(matches!(h.sfu.offer(room, 1, "not sdp".into(), SPEAKER).await, Err(SfuError::BadSignal(_))));
    assert!(matches!(h.sfu.answer(room, 1, "v=0".into()).await, Err(SfuError::BadSignal(_) | SfuError::NoPeer)));
    assert!(matches!(
        h.sfu.ice_candidate(room, 1, "candidate:1 1 udp 1 1.2.3.4 5 typ host".into()).await,
        Err(SfuError::NoPeer)
    ));
    assert_eq!(h.sfu.stats().await.unwrap().peers, 0, "no session was made");

    let (a, _) = h.join(room, 1, speaker(), SPEAKER).await;
    assert!(matches!(h.sfu.ice_candidate(room, 1, "garbage".into()).await, Err(SfuError::BadSignal(_))));
    let (b, _) = h.join(room, 2, ClientOptions::default(), LISTENER).await;
    a.set_audio_level(Some(-30));
    until("B hears A", || b.received(1, "audio") > 10).await;
    // An answer nobody asked for.
    let stray = b.create_offer().await.unwrap();
    assert!(h.sfu.answer(room, 2, stray).await.is_err());
    let mark = b.received(1, "audio");
    until("B still hears A", || b.received(1, "audio") > mark + 25).await;

    // Removing A ends its session and tells B's client to stop the track.
    assert!(h.sfu.remove_peer(room, 1).await.unwrap());
    h.next_event("B renegotiated", |e| matches!(e, SfuEvent::Offer { user: 2, .. })).await;
    h.next_event("A closed", |e| matches!(e, SfuEvent::Closed { user: 1, .. })).await;
    assert_eq!(h.sfu.close_room(room).await.unwrap(), 1);
    assert_eq!(h.sfu.stats().await.unwrap().rooms, 0);
}
