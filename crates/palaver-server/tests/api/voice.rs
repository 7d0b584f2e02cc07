//! Voice rooms over HTTP: the room API, seats under concurrent joins,
//! roles and permissions, liveness, and media end to end: real WebRTC
//! client peers (str0m over UDP on loopback) signal through the API and
//! exchange audio through the server's SFU.
//!
//! Events are observed on real WebSocket connections (`/ws`, topic
//! `voice:{id}`), and media signaling goes over the `signal` op with
//! `room_id`, as a browser client does.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use palaver_core::user::Role;
use palaver_realtime::tokio_tungstenite::connect_async;
use palaver_realtime::tokio_tungstenite::tungstenite::Message;
use palaver_sfu::TrackInfo;
use palaver_sfu::client::{ClientOptions, SfuClient};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::helpers::{TestApp, TestUser, api_test};

const WAIT: Duration = Duration::from_secs(15);

async fn create_room(app: &TestApp, host: &TestUser, body: Value) -> i64 {
    app.post("/api/v1/voice-rooms", Some(&host.access_token), body).await.expect(201)["id"].as_i64().unwrap()
}

fn room_body(topic: &str, level: &str, max_participants: i64) -> Value {
    json!({"name": "Talk", "description": "practice", "topic": topic, "difficulty_level": level,
           "max_participants": max_participants})
}

/// A WebSocket client whose frames are read in the background: any number
/// of waiters can watch them, and it never blocks on an idle socket.
#[derive(Clone)]
struct Socket {
    out: mpsc::UnboundedSender<Message>,
    frames: broadcast::Sender<Value>,
}

impl Socket {
    async fn connect(app: &TestApp, path: &str, token: &str) -> Socket {
        Self::connect_to(&app.addr.to_string(), path, token).await
    }

    /// Connects to the server at `addr` (`host:port`).
    async fn connect_to(addr: &str, path: &str, token: &str) -> Socket {
        let (ws, _) = connect_async(format!("ws://{addr}{path}?token={token}")).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<Message>();
        let (frames, _) = broadcast::channel(4096);
        let tx = frames.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message
                    && let Ok(v) = serde_json::from_str::<Value>(text.as_str())
                {
                    let _ = tx.send(v);
                }
            }
        });
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let close = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
        });
        Socket { out, frames }
    }

    fn watch(&self) -> broadcast::Receiver<Value> {
        self.frames.subscribe()
    }

    fn send(&self, frame: Value) {
        let _ = self.out.send(Message::Text(frame.to_string().into()));
    }

    fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    /// Sends an op with `ref` and returns its ack or error.
    async fn request(&self, mut frame: Value) -> Value {
        let reference = uuid::Uuid::new_v4().to_string();
        frame["ref"] = json!(reference);
        let mut rx = self.watch();
        self.send(frame);
        next_frame(&mut rx, WAIT, |f| f["ref"] == reference.as_str()).await.expect("an answer to the op")
    }
}

/// The next frame matching `want`, within `limit`.
async fn next_frame(
    rx: &mut broadcast::Receiver<Value>,
    limit: Duration,
    want: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(f)) if want(&f) => return Some(f),
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            _ => return None,
        }
    }
}

/// The next event of `event_type` on `topic`.
async fn next_event(
    rx: &mut broadcast::Receiver<Value>,
    topic: &str,
    event_type: &str,
    limit: Duration,
) -> Option<Value> {
    next_frame(rx, limit, |f| f["op"] == "event" && f["topic"] == topic && f["type"] == event_type)
        .await
        .map(|f| f["data"].clone())
}

/// Connects `/ws` and subscribes to the room's topic.
async fn observe(app: &TestApp, user: &TestUser, room: i64) -> Socket {
    let ws = Socket::connect(app, "/ws", &user.access_token).await;
    let ack = ws.request(json!({"op": "subscribe", "topic": format!("voice:{room}")})).await;
    assert_eq!(ack["op"], "ack", "subscribed: {ack}");
    ws
}

api_test! {
    async fn rooms_are_created_listed_filtered_and_closed(app) {
        let host = app.register("host@voice.org").await;
        let other = app.register("other@voice.org").await;
        let travel = create_room(&app, &host, room_body("Travel", "beginner", 20)).await;
        let business = create_room(&app, &host, room_body("business", "advanced", 20)).await;

        let all = app.get("/api/v1/voice-rooms", &other.access_token).await.expect(200);
        let ids: Vec<i64> = all["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![business, travel]);
        let filtered = app.get("/api/v1/voice-rooms?topic=travel&difficulty_level=beginner", &other.access_token).await.expect(200);
        assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
        assert_eq!(filtered["items"][0]["topic"], "travel");
        let none = app.get("/api/v1/voice-rooms?topic=travel&difficulty_level=advanced", &other.access_token).await.expect(200);
        assert!(none["items"].as_array().unwrap().is_empty());
        app.get("/api/v1/voice-rooms?difficulty_level=expert", &other.access_token).await.expect_error(400, "validation_failed");

        // Bad input changes nothing.
        app.post("/api/v1/voice-rooms", Some(&host.access_token), json!({"name": "", "topic": "x", "difficulty_level": "beginner"}))
            .await.expect_error(400, "validation_failed");
        app.post("/api/v1/voice-rooms", Some(&host.access_token), room_body("x", "beginner", 100_000))
            .await.expect_error(400, "validation_failed");
        app.get("/api/v1/voice-rooms/999999", &other.access_token).await.expect_error(404, "not_found");
        app.get("/api/v1/voice-rooms/abc", &other.access_token).await.expect_error(400, "bad_request");

        // Joining shows live counts in the list.
        app.post(&format!("/api/v1/voice-rooms/{travel}/join"), Some(&other.access_token), json!({})).await.expect(200);
        let room = app.get(&format!("/api/v1/voice-rooms/{travel}"), &host.access_token).await.expect(200);
        assert_eq!((room["current_participants"].as_i64(), room["current_speakers"].as_i64()), (Some(1), Some(1)));

        // Only the creator (or a moderator) closes it.
        app.delete(&format!("/api/v1/voice-rooms/{travel}"), &other.access_token).await.expect_error(403, "forbidden");
        app.delete(&format!("/api/v1/voice-rooms/{travel}"), &host.access_token).await.expect(204);
        let closed = app.get(&format!("/api/v1/voice-rooms/{travel}"), &host.access_token).await.expect(200);
        assert_eq!((closed["is_active"].as_bool(), closed["current_participants"].as_i64()), (Some(false), Some(0)));
        app.post(&format!("/api/v1/voice-rooms/{travel}/join"), Some(&other.access_token), json!({})).await.expect_error(404, "not_found");
        let all = app.get("/api/v1/voice-rooms", &other.access_token).await.expect(200);
        assert_eq!(all["items"].as_array().unwrap().len(), 1);
    }
}

api_test! {
    async fn thirty_concurrent_joins_seat_exactly_ten_speakers(app) {
        let host = app.register("host@seats.org").await;
        let room = create_room(&app, &host, json!({"name": "Big", "topic": "t", "difficulty_level": "intermediate",
                                                    "max_participants": 25, "max_speakers": 10})).await;
        let mut users = Vec::new();
        for i in 0..30 {
            users.push(app.register(&format!("u{i}@seats.org")).await);
        }
        let mut tasks = Vec::new();
        for u in users {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                app.post(&format!("/api/v1/voice-rooms/{room}/join"), Some(&u.access_token), json!({})).await
            }));
        }
        let (mut speakers, mut listeners, mut full) = (0, 0, 0);
        for t in tasks {
            let reply = t.await.unwrap();
            match reply.status.as_u16() {
                200 => match reply.body["me"]["role"].as_str() {
                    Some("speaker") => speakers += 1,
                    Some("listener") => listeners += 1,
                    other => panic!("unexpected role {other:?}"),
                },
                409 => full += 1,
                other => panic!("unexpected status {other}: {}", reply.body),
            }
        }
        assert_eq!((speakers, listeners, full), (10, 15, 5));
        let r = app.get(&format!("/api/v1/voice-rooms/{room}"), &host.access_token).await.expect(200);
        let people = app.get(&format!("/api/v1/voice-rooms/{room}/participants"), &host.access_token).await.expect(200);
        let people = people.as_array().unwrap();
        assert_eq!(r["current_participants"].as_i64(), Some(people.len() as i64));
        assert_eq!(r["current_speakers"].as_i64(), Some(people.iter().filter(|p| p["role"] == "speaker").count() as i64));
        assert_eq!((people.len(), r["current_speakers"].as_i64()), (25, Some(10)));
    }
}

api_test! {
    async fn roles_hands_mutes_and_removals_follow_the_rules(app) {
        let host = app.register("host@roles.org").await;
        let a = app.register("a@roles.org").await;
        let b = app.register("b@roles.org").await;
        let outsider = app.register("out@roles.org").await;
        let room = create_room(&app, &host, json!({"name": "R", "topic": "t", "difficulty_level": "beginner",
                                                    "max_participants": 10, "max_speakers": 2})).await;
        let base = format!("/api/v1/voice-rooms/{room}");
        // Only participants may subscribe to the room's events.
        let outsider_ws = Socket::connect(&app, "/ws", &outsider.access_token).await;
        let refused = outsider_ws.request(json!({"op": "subscribe", "topic": format!("voice:{room}")})).await;
        assert_eq!((refused["op"].as_str(), refused["code"].as_str()), (Some("error"), Some("forbidden")), "{refused}");
        let me = app.post(&format!("{base}/join"), Some(&host.access_token), json!({})).await.expect(200);
        assert_eq!(me["me"]["role"], "host");
        let host_ws = observe(&app, &host, room).await;
        let mut events = host_ws.watch();
        let topic = format!("voice:{room}");
        assert!(me["media"]["udp"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(me["media"]["publish"]["audio"], true);
        // The audio policy is the calls' one: capture constraints and Opus parameters.
        assert_eq!(me["media"]["audio"]["echoCancellation"], true);
        assert_eq!(me["media"]["opus"]["fmtp"], "useinbandfec=1;usedtx=1;maxaveragebitrate=32000;stereo=0");
        assert_eq!(me["media"]["audio_level_extension"], "urn:ietf:params:rtp-hdrext:ssrc-audio-level");
        let call = app.post("/api/v1/calls", Some(&host.access_token), json!({"receiver_id": a.id, "call_type": "voice"})).await.expect(201);
        assert_eq!((&me["media"]["audio"], &me["media"]["opus"]), (&call["media"]["audio"], &call["media"]["opus"]));
        assert!(me["media"]["ice_servers"].is_array());
        assert_eq!(app.post(&format!("{base}/join"), Some(&a.access_token), json!({})).await.expect(200)["me"]["role"], "speaker");
        let joined = next_event(&mut events, &topic, "participant_joined", WAIT).await.unwrap();
        assert_eq!((joined["user_id"].as_i64(), joined["participant_count"].as_i64()), (Some(a.id), Some(2)));
        let joined_b = app.post(&format!("{base}/join"), Some(&b.access_token), json!({})).await.expect(200);
        assert_eq!(joined_b["me"]["role"], "listener");
        assert_eq!(joined_b["media"]["publish"]["audio"], false);

        // A listener raises a hand; a speaker cannot.
        let hand = app.post(&format!("{base}/hand"), Some(&b.access_token), json!({"raised": true})).await.expect(200);
        assert_eq!(hand["hand_raised"], true);
        let raised = next_event(&mut events, &topic, "hand_raised", WAIT).await.unwrap();
        assert_eq!(raised["user_id"].as_i64(), Some(b.id));
        app.post(&format!("{base}/hand"), Some(&a.access_token), json!({"raised": true})).await.expect_error(422, "unprocessable");

        // Only the host changes others' roles; seats are capped.
        let role = |id: i64| format!("{base}/participants/{id}/role");
        app.post(&role(b.id), Some(&a.access_token), json!({"role": "speaker"})).await.expect_error(403, "forbidden");
        app.post(&role(b.id), Some(&outsider.access_token), json!({"role": "speaker"})).await.expect_error(403, "forbidden");
        app.post(&role(b.id), Some(&host.access_token), json!({"role": "speaker"})).await.expect_error(409, "conflict");
        app.post(&role(a.id), Some(&host.access_token), json!({"role": "listener"})).await.expect(200);
        let promoted = app.post(&role(b.id), Some(&host.access_token), json!({"role": "speaker"})).await.expect(200);
        assert_eq!((promoted["role"].as_str(), promoted["hand_raised"].as_bool()), (Some("speaker"), Some(false)));
        let changed = next_frame(&mut events, WAIT, |f| f["type"] == "role_changed" && f["data"]["user_id"] == b.id).await.unwrap();
        assert_eq!(changed["data"]["role"], "speaker");
        app.post(&role(host.id), Some(&host.access_token), json!({"role": "listener"})).await.expect_error(422, "unprocessable");
        app.post(&role(b.id), Some(&host.access_token), json!({"role": "host"})).await.expect_error(400, "validation_failed");
        // Anyone steps down on their own.
        app.post(&role(b.id), Some(&b.access_token), json!({"role": "listener"})).await.expect(200);

        // Mutes: oneself either way; the host mutes others but cannot unmute them.
        let mute = |id: i64| format!("{base}/participants/{id}/mute");
        app.post(&mute(a.id), Some(&b.access_token), json!({"muted": true})).await.expect_error(403, "forbidden");
        assert_eq!(app.post(&mute(a.id), Some(&host.access_token), json!({"muted": true})).await.expect(200)["is_muted"], true);
        let muted = next_event(&mut events, &topic, "mute_changed", WAIT).await.unwrap();
        assert_eq!((muted["user_id"].as_i64(), muted["is_muted"].as_bool()), (Some(a.id), Some(true)));
        app.post(&mute(a.id), Some(&host.access_token), json!({"muted": false})).await.expect_error(403, "forbidden");
        assert_eq!(app.post(&mute(a.id), Some(&a.access_token), json!({"muted": false})).await.expect(200)["is_muted"], false);

        // Removal: host only, never the host. B watches the room until then.
        let b_ws = observe(&app, &b, room).await;
        app.delete(&format!("{base}/participants/{b}", b = b.id), &a.access_token).await.expect_error(403, "forbidden");
        app.delete(&format!("{base}/participants/{h}", h = host.id), &host.access_token).await.expect_error(422, "unprocessable");
        app.delete(&format!("{base}/participants/{b}", b = b.id), &host.access_token).await.expect(204);
        let left = next_event(&mut events, &topic, "participant_left", WAIT).await.unwrap();
        assert_eq!((left["user_id"].as_i64(), left["reason"].as_str()), (Some(b.id), Some("removed")));
        let again = b_ws.request(json!({"op": "subscribe", "topic": topic})).await;
        assert_eq!(again["op"], "error", "a removed participant cannot watch the room: {again}");

        // A non-participant's signal is refused.
        app.post(&format!("{base}/signal"), Some(&outsider.access_token), json!({"kind": "offer", "payload": {"type": "offer", "sdp": "v=0"}}))
            .await.expect_error(403, "forbidden");
        // Bad signals are refused with the error shape.
        app.post(&format!("{base}/signal"), Some(&a.access_token), json!({"kind": "offer", "payload": {"type": "offer", "sdp": "nonsense"}}))
            .await.expect_error(400, "validation_failed");
        app.post(&format!("{base}/signal"), Some(&a.access_token), json!({"kind": "offer", "payload": {}}))
            .await.expect_error(400, "validation_failed");
        app.post(&format!("{base}/signal"), Some(&a.access_token), json!({"kind": "dance", "payload": {}}))
            .await.expect_error(400, "validation_failed");

        app.post(&format!("{base}/leave"), Some(&a.access_token), json!({})).await.expect(204);
        app.post(&format!("{base}/leave"), Some(&a.access_token), json!({})).await.expect(204);
        let r = app.get(&base, &host.access_token).await.expect(200);
        assert_eq!((r["current_participants"].as_i64(), r["current_speakers"].as_i64()), (Some(1), Some(1)));
    }
}

api_test! {
    async fn dropped_participants_leave_within_ten_seconds(app) {
        let host = app.register("host@drop.org").await;
        let gone = app.register("gone@drop.org").await;
        let hooked = app.register("hooked@drop.org").await;
        let live = app.register("live@drop.org").await;
        let room = create_room(&app, &host, room_body("t", "beginner", 10)).await;
        let base = format!("/api/v1/voice-rooms/{room}");
        let topic = format!("voice:{room}");
        app.post(&format!("{base}/join"), Some(&host.access_token), json!({})).await.expect(200);
        let host_ws = observe(&app, &host, room).await;
        let mut events = host_ws.watch();

        // The hub's disconnect hook removes at once.
        app.post(&format!("{base}/join"), Some(&hooked.access_token), json!({})).await.expect(200);
        app.state.services.voice.on_disconnect(hooked.id).await.unwrap();
        let left = next_event(&mut events, &topic, "participant_left", Duration::from_secs(2)).await.unwrap();
        assert_eq!((left["user_id"].as_i64(), left["reason"].as_str()), (Some(hooked.id), Some("disconnected")));

        // One participant keeps its WebSocket open on the room; another joins
        // and then goes silent (no socket, no media, no heartbeat): it is
        // swept out within 10 s of its last sign of life, the first stays.
        app.post(&format!("{base}/join"), Some(&live.access_token), json!({})).await.expect(200);
        let live_ws = observe(&app, &live, room).await;
        let joined_at = Instant::now();
        app.post(&format!("{base}/join"), Some(&gone.access_token), json!({})).await.expect(200);
        let left = next_frame(&mut events, Duration::from_secs(10), |f| f["type"] == "participant_left")
            .await
            .expect("removed within 10 s");
        assert_eq!((left["data"]["user_id"].as_i64(), left["data"]["reason"].as_str()), (Some(gone.id), Some("timeout")));
        assert!(joined_at.elapsed() < Duration::from_secs(10));
        app.post(&format!("{base}/heartbeat"), Some(&gone.access_token), json!({})).await.expect_error(404, "not_found");
        let people = app.get(&format!("{base}/participants"), &host.access_token).await.expect(200);
        assert!(people.as_array().unwrap().iter().any(|p| p["user_id"] == live.id), "the connected participant stays");

        // Its socket drops: it leaves within 10 s too.
        let dropped_at = Instant::now();
        live_ws.close();
        let left = next_frame(&mut events, Duration::from_secs(10), |f| {
            f["type"] == "participant_left" && f["data"]["user_id"] == live.id
        })
        .await
        .expect("a dropped socket leaves within 10 s");
        assert!(dropped_at.elapsed() < Duration::from_secs(10), "{left}");
        let r = app.get(&base, &host.access_token).await.expect(200);
        assert_eq!(r["current_participants"].as_i64(), Some(1));
    }
}

/// A participant's media client, signaling over its own `/ws` connection.
struct Peer {
    user: TestUser,
    client: SfuClient,
    ws: Socket,
}

/// Connects media: joins over REST, opens `/ws`, offers with the `signal`
/// op, and answers every SFU offer that arrives as a `signal` event, in the
/// background, as a browser client would.
async fn connect(app: &TestApp, room: i64, user: TestUser, options: ClientOptions) -> (Peer, Value) {
    let joined =
        app.post(&format!("/api/v1/voice-rooms/{room}/join"), Some(&user.access_token), json!({})).await.expect(200);
    assert!(joined["media"]["udp"].is_string());
    connect_media(&app.addr.to_string(), room, user, options).await
}

/// Connects media for a seated participant, signaling over `/ws` of the
/// server at `addr` (which need not be the node hosting the room).
async fn connect_media(addr: &str, room: i64, user: TestUser, options: ClientOptions) -> (Peer, Value) {
    let client = SfuClient::spawn(ClientOptions { audio_rate: 50, ..options }).await.unwrap();
    let ws = Socket::connect_to(addr, "/ws", &user.access_token).await;
    let mut signals = ws.watch();
    let (first_answer, mut answered) = mpsc::unbounded_channel::<Value>();
    {
        let client = client.clone();
        let ws = ws.clone();
        tokio::spawn(async move {
            while let Ok(f) = signals.recv().await {
                if f["type"] != "signal" || f["data"]["from"] != "sfu" || f["data"]["room_id"] != room {
                    continue;
                }
                let payload = &f["data"]["payload"];
                let sdp = payload["sdp"].as_str().unwrap_or_default().to_owned();
                if f["data"]["kind"] == "answer" {
                    client.accept_answer(sdp).await.unwrap();
                    let _ = first_answer.send(payload.clone());
                } else if f["data"]["kind"] == "offer" {
                    let tracks: Vec<TrackInfo> = serde_json::from_value(payload["tracks"].clone()).unwrap();
                    let answer = client.accept_offer(sdp, tracks).await.unwrap();
                    ws.send(json!({"op": "signal", "ref": "a", "room_id": room, "kind": "answer",
                                   "payload": {"type": "answer", "sdp": answer}}));
                }
            }
        });
    }
    // As a browser client does: the room's events first (the ack comes once
    // this connection's events flow, `user:{id}` included), then media.
    let sub = ws.request(json!({"op": "subscribe", "topic": format!("voice:{room}")})).await;
    assert_eq!(sub["op"], "ack", "{sub}");
    let offer = client.create_offer().await.unwrap();
    let ack = ws
        .request(json!({"op": "signal", "room_id": room, "kind": "offer", "payload": {"type": "offer", "sdp": offer}}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    let answer = tokio::time::timeout(WAIT, answered.recv()).await.unwrap().unwrap();
    assert!(client.wait_connected(WAIT).await, "media connects");
    (Peer { user, client, ws }, answer)
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

api_test! {
    async fn three_real_peers_talk_through_the_api_and_the_sfu(app) {
        let host = app.register("host@media.org").await;
        let teacher = app.register("teacher@media.org").await;
        app.state.services.users.set_role(teacher.id, Role::Teacher).await.unwrap();
        let student = app.register("student@media.org").await;
        let listener = app.register("listener@media.org").await;
        let room = create_room(&app, &host, json!({"name": "M", "topic": "t", "difficulty_level": "beginner",
                                                    "max_participants": 10, "max_speakers": 3})).await;
        let both = ClientOptions { audio: true, video: true, ..ClientOptions::default() };
        // The teacher and the student take the first speaker seats; the
        // host's own seat stays free (the host does not join here).
        let (t, t_answer) = connect(&app, room, teacher, both).await;
        let (s, s_answer) = connect(&app, room, student, both).await;
        let (l, l_reply) = connect(&app, room, listener.clone(), ClientOptions { audio: true, ..ClientOptions::default() }).await;
        let _ = &host;
        assert!(t_answer["refused"].as_array().unwrap().is_empty(), "a teacher may publish audio and screen");
        assert_eq!(s_answer["refused"].as_array().unwrap().len(), 1, "a student's screen share is refused");
        let mut events = l.ws.watch();
        // The listener joined third of max_speakers 3 while the host was away: a speaker.
        // Demote it to test a listener's publishing.
        let _ = l_reply;
        app.post(&format!("/api/v1/voice-rooms/{room}/participants/{}/role", l.user.id), Some(&l.user.access_token), json!({"role": "listener"}))
            .await.expect(200);

        t.client.set_audio_level(Some(-20));
        s.client.set_audio_level(Some(-127));
        l.client.set_audio_level(Some(-10));
        t.client.set_video(true);
        s.client.set_video(true);
        let (tid, sid, lid) = (t.user.id, s.user.id, l.user.id);
        until("the student and the listener hear the teacher", || s.client.received(tid, "audio") > 25 && l.client.received(tid, "audio") > 25).await;
        until("the teacher and the listener hear the student", || t.client.received(sid, "audio") > 25 && l.client.received(sid, "audio") > 25).await;
        until("everyone sees the teacher's screen", || s.client.received(tid, "video") > 3 && l.client.received(tid, "video") > 3).await;
        let mark = t.client.received(sid, "audio");
        until("another second of the student", || t.client.received(sid, "audio") > mark + 50).await;
        assert_eq!(t.client.received(lid, "audio"), 0, "the demoted listener is not heard");
        assert_eq!(s.client.received(lid, "audio"), 0, "the demoted listener is not heard");
        assert_eq!(t.client.received(sid, "video"), 0, "the student's screen goes nowhere");

        // Speaking follows the loud peer, on the room's topic.
        let speaking = next_frame(&mut events, WAIT, |f| {
            f["type"] == "speaking" && f["data"]["user_id"] == tid && f["data"]["speaking"] == true
        })
        .await;
        assert_eq!(speaking.unwrap()["topic"], format!("voice:{room}"));
        let _ = &s.ws;

        // The teacher mutes themselves: their audio stops arriving.
        app.post(&format!("/api/v1/voice-rooms/{room}/participants/{tid}/mute"), Some(&t.user.access_token), json!({"muted": true})).await.expect(200);
        let settle = l.client.received(sid, "audio");
        until("a second of the student at the listener", || l.client.received(sid, "audio") > settle + 50).await;
        let (at_s, at_l) = (s.client.received(tid, "audio"), l.client.received(tid, "audio"));
        let mark = l.client.received(sid, "audio");
        until("another second of the student", || l.client.received(sid, "audio") > mark + 50).await;
        assert_eq!((s.client.received(tid, "audio"), l.client.received(tid, "audio")), (at_s, at_l), "muted teacher not forwarded");

        // Leaving ends the media session; the room counts stay exact.
        app.post(&format!("/api/v1/voice-rooms/{room}/leave"), Some(&s.user.access_token), json!({})).await.expect(204);
        let stats = app.state.services.voice.sfu().unwrap().stats().await.unwrap();
        assert_eq!(stats.peers, 2);
        assert!(stats.forwarded_packets > 100);
        let r = app.get(&format!("/api/v1/voice-rooms/{room}"), &listener.access_token).await.expect(200);
        assert_eq!(r["current_participants"].as_i64(), Some(2));
    }
}

api_test! {
    async fn the_original_voice_room_socket_seats_mutes_and_points_audio_to_webrtc(app) {
        let host = app.register("host@legacy.org").await;
        let a = app.register("a@legacy.org").await;
        let b = app.register("b@legacy.org").await;
        let c = app.register("c@legacy.org").await;
        let room = create_room(&app, &host, room_body("t", "beginner", 2)).await;
        let path = format!("/ws/voice-room/{room}/");
        let a_ws = Socket::connect(&app, &path, &a.access_token).await;
        let mut seen = a_ws.watch();
        let b_ws = Socket::connect(&app, &path, &b.access_token).await;
        let mut b_seen = b_ws.watch();
        // Members are named by display name and id, never by email.
        let joined = next_frame(&mut seen, WAIT, |f| f["type"] == "participant_joined" && f["user_id"] == b.id).await.unwrap();
        assert_eq!((joined["user"].as_str(), joined["participant_count"].as_i64()), (Some("b"), Some(2)));

        b_ws.send(json!({"type": "mute_toggle", "is_muted": true}));
        let muted = next_frame(&mut seen, WAIT, |f| f["type"] == "mute_toggle").await.unwrap();
        assert_eq!((muted["user"].as_str(), muted["user_id"].as_i64(), muted["is_muted"].as_bool()), (Some("b"), Some(b.id), Some(true)));

        b_ws.send(json!({"type": "audio_data", "audio_data": "AAAA"}));
        let err = next_frame(&mut b_seen, WAIT, |f| f["type"] == "error").await.unwrap();
        assert_eq!(err["code"], "use_webrtc");
        assert!(err["message"].as_str().unwrap().contains("WebRTC"));

        // The room is full: the third socket is refused before the upgrade.
        match connect_async(format!("ws://{}{}?token={}", app.addr, path, c.access_token)).await {
            Err(palaver_realtime::tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 409);
            }
            other => panic!("a full room must refuse the socket: {:?}", other.map(|_| ())),
        }

        b_ws.send(json!({"type": "leave_room"}));
        let left = next_frame(&mut seen, WAIT, |f| f["type"] == "participant_left").await.unwrap();
        assert_eq!((left["user"].as_str(), left["participant_count"].as_i64()), (Some("b"), Some(1)));
    }
}

/// Every frame a receiver got so far, as sent (re-serialized JSON).
fn drain_texts(rx: &mut broadcast::Receiver<Value>) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(frame) => texts.push(frame.to_string()),
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return texts,
        }
    }
}

api_test! {
    /// Emails are private: whatever another user does in a voice room, a
    /// chat room or a call, no frame the host receives on `/ws` or the
    /// original design's `/ws/voice-room/` (public rooms) carries the other
    /// user's email; they are named by display name and id. The original
    /// `/ws/chat/` is the one exception: its contract names members by
    /// email, and only the conversation's members receive it.
    async fn room_frames_never_carry_emails(app) {
        let host = app.register("priv-host@private.example").await;
        let guest = app.register("priv-guest@private.example").await;
        let room = create_room(&app, &host, room_body("t", "beginner", 10)).await;
        let base = format!("/api/v1/voice-rooms/{room}");
        let topic = format!("voice:{room}");
        app.post(&format!("{base}/join"), Some(&host.access_token), json!({})).await.expect(200);
        let native = observe(&app, &host, room).await;
        let legacy = Socket::connect(&app, &format!("/ws/voice-room/{room}/"), &host.access_token).await;
        let (mut native_all, mut legacy_all) = (native.watch(), legacy.watch());
        let (mut events, mut legacy_events) = (native.watch(), legacy.watch());

        // The guest joins, mutes, steps down, raises a hand and leaves.
        app.post(&format!("{base}/join"), Some(&guest.access_token), json!({})).await.expect(200);
        let joined = next_event(&mut events, &topic, "participant_joined", WAIT).await.unwrap();
        assert_eq!((joined["user_id"].as_i64(), joined["display_name"].as_str()), (Some(guest.id), Some("priv-guest")));
        let legacy_joined = next_frame(&mut legacy_events, WAIT, |f| f["type"] == "participant_joined" && f["user_id"] == guest.id).await.unwrap();
        assert_eq!(legacy_joined["user"], "priv-guest");
        let mute = format!("{base}/participants/{}/mute", guest.id);
        app.post(&mute, Some(&guest.access_token), json!({"muted": true})).await.expect(200);
        let muted = next_event(&mut events, &topic, "mute_changed", WAIT).await.unwrap();
        assert_eq!(muted["display_name"], "priv-guest");
        next_frame(&mut legacy_events, WAIT, |f| f["type"] == "mute_toggle" && f["user"] == "priv-guest").await.unwrap();
        let role = format!("{base}/participants/{}/role", guest.id);
        app.post(&role, Some(&guest.access_token), json!({"role": "listener"})).await.expect(200);
        next_event(&mut events, &topic, "role_changed", WAIT).await.unwrap();
        app.post(&format!("{base}/hand"), Some(&guest.access_token), json!({"raised": true})).await.expect(200);
        next_event(&mut events, &topic, "hand_raised", WAIT).await.unwrap();
        app.post(&format!("{base}/leave"), Some(&guest.access_token), json!({})).await.expect(204);
        let left = next_event(&mut events, &topic, "participant_left", WAIT).await.unwrap();
        assert_eq!(left["display_name"], "priv-guest");
        next_frame(&mut legacy_events, WAIT, |f| f["type"] == "participant_left" && f["user"] == "priv-guest").await.unwrap();

        // A chat room: the guest writes and types; the host reads the
        // original design's chat socket.
        let chat = app
            .post("/api/v1/chat/rooms", Some(&host.access_token), json!({"room_type": "group", "participant_ids": [guest.id], "name": "g"}))
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
        let chat_legacy = Socket::connect(&app, &format!("/ws/chat/{chat}/"), &host.access_token).await;
        let mut chat_frames = chat_legacy.watch();
        let guest_ws = Socket::connect(&app, "/ws", &guest.access_token).await;
        let ack = guest_ws.request(json!({"op": "subscribe", "topic": format!("chat:{chat}")})).await;
        assert_eq!(ack["op"], "ack", "{ack}");
        guest_ws.send(json!({"op": "typing", "topic": format!("chat:{chat}"), "is_typing": true}));
        let typing = next_frame(&mut chat_frames, WAIT, |f| f["type"] == "typing").await.unwrap();
        // The original chat socket names members by email (its contract,
        // seen only by the room's members): checked, then left out below.
        assert_eq!((typing["user"].as_str(), typing["user_id"].as_i64()), (Some(guest.email.as_str()), Some(guest.id)));
        app.post(&format!("/api/v1/chat/rooms/{chat}/messages"), Some(&guest.access_token),
                 json!({"content": "hola", "message_type": "text", "client_msg_id": "priv-1"})).await.expect(201);
        let message = next_frame(&mut chat_frames, WAIT, |f| f["type"] == "chat_message" && f["content"] == "hola").await.unwrap();
        assert_eq!((message["sender"].as_str(), message["sender_id"].as_i64()), (Some(guest.email.as_str()), Some(guest.id)));

        // A call from the guest rings on the host's native socket.
        app.post("/api/v1/calls", Some(&guest.access_token), json!({"receiver_id": host.id, "call_type": "voice"}))
            .await
            .expect(201);
        next_frame(&mut events, WAIT, |f| f["type"] == "call_incoming").await.unwrap();

        let frames: Vec<String> =
            [&mut native_all, &mut legacy_all].into_iter().flat_map(drain_texts).collect();
        assert!(frames.len() >= 12, "the host saw the guest's doings: {frames:?}");
        for frame in &frames {
            assert!(!frame.contains(&guest.email) && !frame.contains("@private.example"), "an email reached another user: {frame}");
        }
    }
}

/// A server process of a two-node cluster.
struct Node {
    port: u16,
    http: reqwest::Client,
}

impl Node {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("http://{}/api/v1{path}", self.addr()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, body) = self.call(reqwest::Method::POST, path, token, body).await;
        assert!((200..300).contains(&status), "POST {path} on :{}: {status} {body}", self.port);
        body
    }

    async fn register(&self, email: &str) -> TestUser {
        let password = "password-123".to_owned();
        let body: Value = self
            .http
            .post(format!("http://{}/api/v1/auth/register", self.addr()))
            .json(&json!({"email": email, "password": password, "display_name": email.split('@').next()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        TestUser {
            id: body["user"]["id"].as_i64().unwrap(),
            email: email.to_owned(),
            password,
            access_token: body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A counter from the node's `/metrics`.
    async fn metric(&self, name: &str) -> f64 {
        let text = self.http.get(format!("http://{}/metrics", self.addr())).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }
}

/// Two server processes on one PostgreSQL and one Redis. A room's media
/// lives on the node that hosts it (node 1); a participant whose REST calls
/// and WebSocket go to node 2 is told node 1's media address, signals
/// through node 2 (which forwards to node 1 and relays the answers), and
/// real WebRTC audio flows both ways through node 1's SFU. A mute made on
/// node 2 is enforced by node 1's SFU, and node 1's errors come back
/// through node 2. When node 1 dies, its lease lapses and node 2 hosts the
/// room: a new media session connects there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_hosted_on_one_node_is_heard_through_another() {
    let settings = [("PALAVER_VOICE_HOST_TTL", "2s")];
    let Some(mut cluster) = crate::binary::Cluster::start_with(2, "the multi-node voice test", &settings).await else {
        return;
    };
    let ports = [cluster.ports[0], cluster.ports[1]];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let [one, two] = ports.map(|port| Node { port, http: http.clone() });

    let ana = one.register("ana@nodes.org").await;
    let ben = two.register("ben@nodes.org").await;
    let room = one
        .post("/voice-rooms", &ana.access_token, json!({"name": "N", "topic": "t", "difficulty_level": "beginner"}))
        .await["id"]
        .as_i64()
        .unwrap();
    // Ana joins on node 1, which hosts the room; Ben joins on node 2 and is
    // told node 1's media address.
    let ana_join = one.post(&format!("/voice-rooms/{room}/join"), &ana.access_token, json!({})).await;
    assert_eq!(ana_join["media"]["node"], "node-1");
    let udp_one = ana_join["media"]["udp"].as_str().unwrap().to_owned();
    let ben_join = two.post(&format!("/voice-rooms/{room}/join"), &ben.access_token, json!({})).await;
    assert_eq!(
        (ben_join["media"]["node"].as_str(), ben_join["media"]["udp"].as_str()),
        (Some("node-1"), Some(udp_one.as_str()))
    );
    assert_eq!(ben_join["room"]["media_node"], "node-1");

    // Media: Ana signals through node 1, Ben through node 2; both publish.
    let both = ClientOptions { audio: true, ..ClientOptions::default() };
    let (a, _) = connect_media(&one.addr(), room, ana.clone(), both).await;
    let (b, answer) = connect_media(&two.addr(), room, ben.clone(), both).await;
    assert!(
        answer["sdp"].as_str().unwrap().contains(udp_one.split(':').next_back().unwrap()),
        "node 1's SFU answered Ben"
    );
    a.client.set_audio_level(Some(-20));
    b.client.set_audio_level(Some(-20));
    until("Ben (signaling on node 2) hears Ana", || b.client.received(ana.id, "audio") > 25).await;
    until("Ana hears Ben", || a.client.received(ben.id, "audio") > 25).await;

    // Node 1's errors reach Ben through node 2.
    let bad = b
        .ws
        .request(json!({"op": "signal", "room_id": room, "kind": "ice_candidate", "payload": {"candidate": "candidate:nonsense"}}))
        .await;
    assert_eq!((bad["op"].as_str(), bad["code"].as_str()), (Some("error"), Some("validation_failed")), "{bad}");

    // Ana mutes herself through node 2: node 1's SFU stops forwarding her.
    let refused = one.metric("palaver_sfu_refused_packets_total").await;
    two.post(&format!("/voice-rooms/{room}/participants/{}/mute", ana.id), &ana.access_token, json!({"muted": true}))
        .await;
    let deadline = Instant::now() + WAIT;
    while one.metric("palaver_sfu_refused_packets_total").await < refused + 25.0 {
        assert!(Instant::now() < deadline, "node 1 never refused the muted speaker's packets");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let heard = b.client.received(ana.id, "audio");
    let mark = a.client.received(ben.id, "audio");
    until("another second of Ben at Ana", || a.client.received(ben.id, "audio") > mark + 50).await;
    assert!(b.client.received(ana.id, "audio") <= heard + 3, "a muted speaker is not forwarded");

    // Node 1 dies: its lease lapses and node 2 takes the room over.
    let mut node1 = cluster.nodes.remove(0);
    node1.kill().unwrap();
    node1.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rejoined = loop {
        let (status, body) =
            two.call(reqwest::Method::POST, &format!("/voice-rooms/{room}/join"), &ben.access_token, json!({})).await;
        assert_eq!(status, 200, "{body}");
        if body["media"]["node"] == "node-2" {
            break body;
        }
        assert!(Instant::now() < deadline, "the room was never re-hosted: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(rejoined["media"]["udp"].as_str(), Some(udp_one.as_str()));
    assert_eq!(rejoined["room"]["media_node"], "node-2");
    let (again, _) = connect_media(&two.addr(), room, ben.clone(), both).await;
    assert!(again.client.connected());
    drop((a, b));

    cluster.stop().await;
}
