//! The WebSocket gateway with real clients (tokio-tungstenite) against the
//! real server, on SQLite + in-memory broker and PostgreSQL + Redis:
//! presence, user-topic events, live notifications, ordered replay, typing,
//! bad input, slow consumers, heartbeats and connection caps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use palaver_core::{Error, UserId};
use palaver_realtime::tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use palaver_realtime::tokio_tungstenite::tungstenite::{self, Message};
use palaver_realtime::tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use palaver_realtime::{Action, Replayed, Topic, TopicKind};
use palaver_service::Principal;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// How long a test waits for a frame it expects.
const WAIT: Duration = Duration::from_secs(15);

/// Generates `sqlite` and `postgres` variants of a test on an app whose
/// config `tweak` changes first.
macro_rules! ws_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) with $tweak:expr; $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::helpers::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app_with($crate::helpers::Backend::Sqlite, $tweak).await.unwrap();
                run(app.clone()).await;
                app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::helpers::spawn_app_with($crate::helpers::Backend::Postgres, $tweak).await else { return };
                run(app.clone()).await;
                app.stop().await;
            }
        }
    };
}

pub(crate) use ws_test;

pub(crate) fn defaults(_: &mut palaver_server::Config) {}

/// A WebSocket client.
pub struct Ws {
    pub(crate) inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub(crate) next_ref: u64,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16, String),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl Ws {
    /// Connects to `path` with `?token=`.
    pub async fn connect(app: &TestApp, path: &str, token: &str) -> Ws {
        let url = format!("ws://{}{}?token={}", app.addr, path, token);
        let (inner, response) = connect_async(url).await.unwrap();
        assert_eq!(response.status(), 101);
        Ws { inner, next_ref: 0 }
    }

    /// Connects with `Authorization: Bearer`.
    pub async fn connect_with_header(app: &TestApp, token: &str) -> Ws {
        let mut request = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (inner, _) = connect_async(request).await.unwrap();
        Ws { inner, next_ref: 0 }
    }

    /// A handshake the server refuses: its status and error body.
    pub async fn refused(app: &TestApp, path_and_query: &str) -> (u16, Value) {
        let url = format!("ws://{}{}", app.addr, path_and_query);
        match connect_async(url).await {
            Err(tungstenite::Error::Http(response)) => {
                let body =
                    response.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
                (response.status().as_u16(), body)
            }
            Ok(_) => panic!("the handshake succeeded"),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.inner.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    /// Sends any message.
    pub async fn send_raw(&mut self, message: Message) {
        self.inner.send(message).await.unwrap();
    }

    /// The next text frame, as JSON.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("no frame within the wait")
                .expect("the connection ended")
                .expect("the connection failed");
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Close(frame) => panic!("closed while waiting for a frame: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next frame matching `pred`, skipping others.
    pub async fn recv_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame =
                tokio::time::timeout_at(deadline, self.recv()).await.expect("no matching frame within the wait");
            if pred(&frame) {
                return frame;
            }
        }
    }

    /// The next event of `event_type` on `topic`.
    pub async fn event(&mut self, topic: &str, event_type: &str) -> Value {
        self.recv_where(|f| f["op"] == "event" && f["topic"] == topic && f["type"] == event_type).await
    }

    /// Sends an op with a fresh `ref` and returns the answer with that `ref`.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        frame["ref"] = json!(reference);
        self.send(frame).await;
        self.recv_where(|f| f["ref"] == reference.as_str()).await
    }

    /// Subscribes and returns the ack (or error).
    pub async fn subscribe(&mut self, topic: &str, since_seq: Option<i64>) -> Value {
        let mut frame = json!({"op": "subscribe", "topic": topic});
        if let Some(since) = since_seq {
            frame["since_seq"] = json!(since);
        }
        self.request(frame).await
    }

    /// Every frame up to the answer of a `ping`: what arrived before it.
    pub async fn drain(&mut self) -> Vec<Value> {
        self.next_ref += 1;
        let reference = format!("barrier{}", self.next_ref);
        self.send(json!({"op": "ping", "ref": reference})).await;
        let mut frames = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["op"] == "pong" && frame["ref"] == reference.as_str() {
                return frames;
            }
            frames.push(frame);
        }
    }

    /// Closes from this side and waits for the end.
    pub async fn ended_after_close(&mut self) -> Ended {
        let _ = self.inner.close(None).await;
        self.ended().await
    }

    /// Reads until the connection ends; how it ended.
    pub async fn ended(&mut self) -> Ended {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next()).await.expect("the connection did not end") {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ended::Closed(frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return Ended::Closed(1005, String::new()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ended::Dropped,
            }
        }
    }
}

/// Waits (bounded) until `check` holds, polling.
pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within the wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

ws_test! {
    /// Two clients: presence goes online and offline (with last seen) as
    /// the other connects and leaves; user-topic events reach the owner.
    async fn presence_and_user_events(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let mut b = Ws::connect(&app, "/ws", &ben.access_token).await;
        let topic = format!("presence:{}", ana.id);
        assert_eq!(b.subscribe(&topic, None).await, json!({"op": "ack", "ref": "r1", "topic": topic}));
        let snapshot = b.event(&topic, "presence").await;
        assert_eq!(snapshot["data"]["online"], false, "{snapshot}");

        let mut a = Ws::connect_with_header(&app, &ana.access_token).await;
        let online = b.event(&topic, "presence").await;
        assert_eq!(online["data"], json!({"user_id": ana.id, "online": true, "last_seen": null}));

        // Ana's own topic: a follow makes a notification, live.
        app.put(&format!("/api/v1/users/{}/follow", ana.id), &ben.access_token).await.expect(200);
        let note = a.event(&format!("user:{}", ana.id), "notification").await;
        assert_eq!(note["data"]["notification"]["notification_type"], "follow", "{note}");

        // A second device: no new presence event; closing one neither.
        let mut a2 = Ws::connect(&app, "/ws", &ana.access_token).await;
        a2.drain().await;
        a2.inner.close(None).await.unwrap();
        drop(a2);
        assert!(app.state.hub.connections() >= 2);
        a.inner.close(None).await.unwrap();
        let offline = b.event(&topic, "presence").await;
        assert_eq!(offline["data"]["online"], false);
        let last_seen = offline["data"]["last_seen"].as_str().expect("last_seen set").to_owned();
        assert!(b.drain().await.is_empty(), "exactly one offline event");
        // Recorded in the store.
        eventually("last_seen stored", async || {
            app.store.user_by_id(ana.id).await.unwrap().unwrap().last_seen_at.is_some()
        })
        .await;
        let stored = app.store.user_by_id(ana.id).await.unwrap().unwrap().last_seen_at.unwrap();
        assert_eq!(stored.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)[..19], last_seen[..19]);
    }
}

ws_test! {
    /// Issue 5's last item: a like reaches the author live, on `/ws` and on
    /// the original design's `/ws/notifications/`.
    async fn live_notification_when_a_moment_is_liked(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let mut native = Ws::connect(&app, "/ws", &ana.access_token).await;
        let mut legacy = Ws::connect(&app, "/ws/notifications/", &ana.access_token).await;
        // The legacy socket answers its ping, which also shows it is subscribed.
        legacy.send(json!({"type": "ping"})).await;
        assert_eq!(legacy.recv().await, json!({"type": "pong"}));
        native.drain().await;

        let moment = app
            .post("/api/v1/moments", Some(&ana.access_token), json!({"content": "hola", "visibility": "public"}))
            .await
            .expect(201);
        let id = moment["id"].as_i64().unwrap();
        app.put(&format!("/api/v1/moments/{id}/like"), &ben.access_token).await.expect(200);

        let event = native.event(&format!("user:{}", ana.id), "notification").await;
        assert_eq!(event["data"]["action"], "created");
        assert_eq!(event["data"]["notification"]["notification_type"], "like");
        assert_eq!(event["data"]["notification"]["data"]["moment_id"], id);
        let frame = legacy.recv().await;
        assert_eq!(frame["type"], "notification", "{frame}");
        assert_eq!(frame["notification"]["notification_type"], "like");
        assert_eq!(frame["notification"], event["data"]["notification"]);
        assert_eq!(frame["unread_count"], 1);
        // The legacy socket only speaks its own shape.
        legacy.send(json!({"op": "subscribe", "topic": "presence:1"})).await;
        assert_eq!(legacy.recv().await["type"], "error");
    }
}

ws_test! {
    /// Hostile and malformed input gets an error frame or a close code; the
    /// server and other clients are unaffected.
    async fn bad_input(app) with |c| c.ws_max_frame_bytes = 4096; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let mut other = Ws::connect(&app, "/ws", &ben.access_token).await;
        let mut ws = Ws::connect(&app, "/ws", &ana.access_token).await;

        ws.send_raw(Message::Text("not json".into())).await;
        let e = ws.recv().await;
        assert_eq!((e["op"].as_str(), e["code"].as_str()), (Some("error"), Some("malformed_json")), "{e}");
        ws.send_raw(Message::Text("[1,2]".into())).await;
        assert_eq!(ws.recv().await["code"], "bad_request");
        let e = ws.request(json!({"op": "launch"})).await;
        assert_eq!(e["code"], "unknown_op", "{e}");
        let e = ws.request(json!({"op": "subscribe"})).await;
        assert_eq!((e["code"].as_str(), &e["details"]["fields"]["topic"]), (Some("validation_failed"), &json!("is required")));
        let e = ws.request(json!({"op": "subscribe", "topic": 5})).await;
        assert_eq!(e["code"], "validation_failed", "{e}");
        let e = ws.request(json!({"op": "subscribe", "topic": "no spaces:1"})).await;
        assert_eq!(e["code"], "validation_failed");
        let e = ws.request(json!({"op": "subscribe", "topic": "nope:1"})).await;
        assert_eq!((e["code"].as_str(), e["topic"].as_str()), (Some("not_found"), Some("nope:1")));
        let e = ws.subscribe(&format!("user:{}", ben.id), None).await;
        assert_eq!(e["code"], "forbidden", "{e}");
        let e = ws.subscribe("presence:999999", None).await;
        assert_eq!(e["code"], "not_found");
        let e = ws.subscribe(&format!("presence:{}", ben.id), Some(-1)).await;
        assert_eq!(e["code"], "validation_failed");
        let e = ws.request(json!({"op": "typing", "topic": "presence:1", "is_typing": true})).await;
        assert_eq!(e["code"], "not_subscribed");
        let e = ws.request(json!({"op": "unsubscribe", "topic": "presence:1"})).await;
        assert_eq!(e["code"], "not_subscribed");
        ws.send(json!({"op": "ping", "ref": {"nested": true}})).await;
        assert_eq!(ws.recv().await["code"], "validation_failed");
        ws.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
        assert_eq!(ws.recv().await["code"], "unsupported_frame");
        // Still usable after all that.
        assert_eq!(ws.request(json!({"op": "ping"})).await["op"], "pong");

        // An oversized frame closes that connection with 1009 only.
        ws.send_raw(Message::Text("x".repeat(8192).into())).await;
        assert!(matches!(ws.ended().await, Ended::Closed(1009, _)));
        assert_eq!(other.request(json!({"op": "ping"})).await["op"], "pong");

        // Bad handshakes are refused before the upgrade, with the error shape.
        let (status, body) = Ws::refused(&app, "/ws").await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
        let (status, _) = Ws::refused(&app, "/ws?token=garbage").await;
        assert_eq!(status, 401);
        let (status, _) = Ws::refused(&app, "/ws/notifications/?token=garbage").await;
        assert_eq!(status, 401);
        let (sub, sid) = crate::auth::session_of(&ben.access_token);
        let expired = crate::auth::forge(&sub, &sid, chrono::Utc::now().timestamp() - 120, crate::helpers::JWT_SECRET);
        let (status, body) = Ws::refused(&app, &format!("/ws?token={expired}")).await;
        assert_eq!(status, 401, "{body}");
        app.store.set_suspended(ana.id, true, palaver_core::time::now()).await.unwrap();
        let (status, body) = Ws::refused(&app, &format!("/ws?token={}", ana.access_token)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("account_suspended")));
        // Plain HTTP to the socket endpoint: 426 with the error shape.
        app.get("/ws", &ben.access_token).await.expect_error(426, "upgrade_required");
        assert_eq!(other.request(json!({"op": "ping"})).await["op"], "pong");
    }
}

ws_test! {
    /// A flood gets rate_limited errors, then a 4029 close; others go on.
    async fn floods_are_limited(app) with |c| c.ws_rate = "20/10s".parse().unwrap(); {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let mut other = Ws::connect(&app, "/ws", &ben.access_token).await;
        let mut ws = Ws::connect(&app, "/ws", &ana.access_token).await;
        for i in 0..200 {
            if ws.inner.send(Message::Text(json!({"op": "ping", "ref": i}).to_string().into())).await.is_err() {
                break;
            }
        }
        let mut pongs = 0;
        let mut limited = 0;
        let ended = loop {
            match tokio::time::timeout(WAIT, ws.inner.next()).await.expect("nothing arrived") {
                Some(Ok(Message::Text(t))) => {
                    let f: Value = serde_json::from_str(t.as_str()).unwrap();
                    match f["op"].as_str() {
                        Some("pong") => pongs += 1,
                        Some("error") => {
                            assert_eq!(f["code"], "rate_limited");
                            assert!(f["details"]["retry_after_ms"].is_u64());
                            limited += 1;
                        }
                        _ => panic!("unexpected {f}"),
                    }
                }
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            }
        };
        assert!((20..=22).contains(&pongs), "about the burst was served: {pongs}");
        assert!(limited > 10, "over-budget frames were answered: {limited}");
        assert_eq!(ended, Some(4029));
        assert_eq!(other.request(json!({"op": "ping"})).await["op"], "pong");
    }
}

ws_test! {
    /// Per-user and per-node caps close extra connections with a code.
    async fn connection_caps(app) with |c| { c.ws_max_connections_per_user = 2; c.ws_max_connections = 3; }; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        // Each connection answers a ping before the next opens: it is
        // registered (the hub registers after the 101).
        let mut a1 = Ws::connect(&app, "/ws", &ana.access_token).await;
        a1.drain().await;
        let mut a2 = Ws::connect(&app, "/ws", &ana.access_token).await;
        a2.drain().await;
        let mut a3 = Ws::connect(&app, "/ws", &ana.access_token).await;
        assert!(matches!(a3.ended().await, Ended::Closed(4009, reason) if reason.contains("too many connections")));
        let mut b1 = Ws::connect(&app, "/ws", &ben.access_token).await;
        b1.drain().await;
        let mut b2 = Ws::connect(&app, "/ws", &ben.access_token).await;
        assert!(matches!(b2.ended().await, Ended::Closed(1013, _)));
        for ws in [&mut a1, &mut a2, &mut b1] {
            assert_eq!(ws.request(json!({"op": "ping"})).await["op"], "pong");
        }
        // A freed slot can be taken again.
        a1.inner.close(None).await.unwrap();
        assert!(matches!(a1.ended().await, Ended::Closed(..) | Ended::Dropped));
        eventually("the slot is freed", async || app.state.hub.connections() == 2).await;
        let mut b3 = Ws::connect(&app, "/ws", &ben.access_token).await;
        assert_eq!(b3.request(json!({"op": "ping"})).await["op"], "pong");
    }
}

ws_test! {
    /// A client that does not answer pings is closed after the idle
    /// timeout; one that reads (and so answers) stays.
    async fn silent_connections_are_closed(app) with |c| {
        c.ws_ping_interval = Duration::from_millis(200);
        c.ws_idle_timeout = Duration::from_millis(800);
    }; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let mut live = Ws::connect(&app, "/ws", &ana.access_token).await;
        let silent = Ws::connect(&app, "/ws", &ben.access_token).await;
        let stop = tokio_util::sync::CancellationToken::new();
        let reading = stop.clone();
        let reader = tokio::spawn(async move {
            // Reading answers pings (tungstenite replies on read).
            loop {
                tokio::select! {
                    m = live.inner.next() => assert!(matches!(m, Some(Ok(_))), "the reading client stays open"),
                    () = reading.cancelled() => return live,
                }
            }
        });
        eventually("the silent client is closed", async || app.state.hub.connections() == 1).await;
        stop.cancel();
        let mut live = reader.await.unwrap();
        assert_eq!(live.request(json!({"op": "ping"})).await["op"], "pong");
        drop(silent);
    }
}

ws_test! {
    /// A client that stops reading is disconnected (4008, or dropped if even
    /// the close frame cannot be written) while another client on the same
    /// topic receives every event, in order.
    async fn slow_consumers_are_dropped_without_slowing_others(app) with |c| c.ws_queue = 16; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let cleo = app.register("cleo@example.org").await;
        let topic = format!("presence:{}", cleo.id);
        let mut fast = Ws::connect(&app, "/ws", &ana.access_token).await;
        let mut slow = Ws::connect(&app, "/ws", &ben.access_token).await;
        fast.subscribe(&topic, None).await;
        slow.subscribe(&topic, None).await;
        fast.event(&topic, "presence").await;
        slow.event(&topic, "presence").await;

        let hub = app.state.hub.clone();
        let blob = "x".repeat(32 * 1024);
        let t = Topic::parse(&topic).unwrap();
        let mut sent = 0u64;
        // Paced by the fast reader: a few events, then wait for them.
        while hub.connections() == 2 {
            assert!(sent < 20_000, "the slow client was never dropped");
            for _ in 0..4 {
                sent += 1;
                hub.publish_event(&t, "load", None, None, &json!({"n": sent, "blob": blob}));
            }
            for expect in sent - 3..=sent {
                let f = fast.event(&topic, "load").await;
                assert_eq!(f["data"]["n"], expect, "in order, none missing");
            }
        }
        assert!(sent > 16, "the slow client's buffers absorbed {sent} events first");
        let ended = slow.ended().await;
        assert!(
            matches!(&ended, Ended::Closed(4008, reason) if reason.contains("since_seq")) || ended == Ended::Dropped,
            "{ended:?}"
        );
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("ws_slow_consumers_total"), "counted");
        // The fast client keeps receiving.
        hub.publish_event(&t, "load", None, None, &json!({"n": "after"}));
        assert_eq!(fast.event(&topic, "load").await["data"]["n"], "after");
    }
}

/// A sequenced topic kind for tests: history in memory, members only.
struct Room {
    members: Vec<UserId>,
    history: Mutex<Vec<Value>>,
}

impl Room {
    fn append(&self, data: Value) -> i64 {
        let mut history = self.history.lock().unwrap();
        history.push(data);
        history.len() as i64
    }
}

#[async_trait::async_trait]
impl TopicKind for Room {
    async fn authorize(&self, who: &Principal, _topic: &Topic, _action: Action) -> palaver_core::Result<()> {
        if self.members.contains(&who.id()) { Ok(()) } else { Err(Error::Forbidden("not a member".into())) }
    }
    fn sequenced(&self) -> bool {
        true
    }
    async fn head(&self, _who: &Principal, _topic: &Topic) -> palaver_core::Result<i64> {
        Ok(self.history.lock().unwrap().len() as i64)
    }
    async fn replay(
        &self,
        _who: &Principal,
        _topic: &Topic,
        after: i64,
        limit: usize,
    ) -> palaver_core::Result<Vec<Replayed>> {
        let history = self.history.lock().unwrap();
        Ok(history
            .iter()
            .enumerate()
            .skip(after as usize)
            .take(limit)
            .map(|(i, data)| Replayed { event_type: "message".into(), seq: Some(i as i64 + 1), data: data.clone() })
            .collect())
    }
    fn typing(&self) -> bool {
        true
    }
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames.iter().filter(|f| f["type"] == "message").map(|f| f["seq"].as_i64().unwrap()).collect()
}

ws_test! {
    /// Sequenced topics: live events arrive once and in order even when
    /// published out of order or lost (gaps are loaded from history);
    /// `since_seq` replays what was missed and continues live with no
    /// duplicate at the seam; non-members are refused; a revoked member
    /// stops receiving.
    async fn sequenced_delivery_replay_and_revocation(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let eve = app.register("eve@example.org").await;
        let room = Arc::new(Room { members: vec![ana.id, ben.id], history: Mutex::default() });
        app.state.hub.register_kind("room", room.clone());
        let hub = app.state.hub.clone();
        let topic = Topic::parse("room:1").unwrap();
        for i in 1..=5 {
            room.append(json!({"text": format!("m{i}")}));
        }

        let mut a = Ws::connect(&app, "/ws", &ana.access_token).await;
        assert_eq!(a.subscribe("room:1", None).await["op"], "ack");
        let mut e = Ws::connect(&app, "/ws", &eve.access_token).await;
        assert_eq!(e.subscribe("room:1", None).await["code"], "forbidden");

        // 6..=20 stored; published out of order, 9 and 14 never published.
        let mut live: Vec<i64> = (6..=20).collect();
        for _ in 6..=20 {
            room.append(json!({"text": "live"}));
        }
        live.reverse();
        live.retain(|s| *s != 9 && *s != 14);
        for seq in live {
            hub.publish_event(&topic, "message", Some(seq), None, &json!({"text": "live", "seq": seq}));
        }
        let mut got = Vec::new();
        while got.len() < 15 {
            got.push(a.event("room:1", "message").await["seq"].as_i64().unwrap());
        }
        assert_eq!(got, (6..=20).collect::<Vec<_>>(), "no earlier history, then every live seq once, in order");

        // Ben catches up from seq 3: 4..=20 replayed, then live 21 once.
        let mut b = Ws::connect(&app, "/ws", &ben.access_token).await;
        assert_eq!(b.subscribe("room:1", Some(3)).await["op"], "ack");
        let seq = room.append(json!({"text": "m21"}));
        hub.publish_event(&topic, "message", Some(seq), None, &json!({"text": "m21"}));
        hub.publish_event(&topic, "message", Some(seq), None, &json!({"text": "m21 again"}));
        let mut got = Vec::new();
        while got.len() < 18 {
            got.push(b.event("room:1", "message").await);
        }
        assert_eq!(seqs(&got), (4..=21).collect::<Vec<_>>());
        assert_eq!(got[0]["data"]["text"], "m4", "replayed events carry their data");
        assert!(seqs(&b.drain().await).is_empty(), "the duplicate was dropped");

        // Revocation ends Ben's subscription at once.
        palaver_service::Realtime::revoke(&hub, "room:1", ben.id);
        let ended = b.event("room:1", "unsubscribed").await;
        assert_eq!(ended["data"]["reason"], "revoked");
        let seq = room.append(json!({"text": "m22"}));
        hub.publish_event(&topic, "message", Some(seq), None, &json!({"text": "m22"}));
        assert_eq!(a.event("room:1", "message").await["seq"], 21);
        assert_eq!(a.event("room:1", "message").await["seq"], 22);
        assert!(seqs(&b.drain().await).is_empty(), "a revoked member receives nothing");

        // Viewers: who has the room open, across devices.
        let viewers = palaver_service::Realtime::viewers(&hub, "room:1", &[ana.id, ben.id, eve.id]).await;
        assert_eq!(viewers, vec![ana.id]);
    }
}

ws_test! {
    /// Typing goes to the topic except the typer, is throttled, and ends
    /// with a `typing` false when the typer stops, or disconnects.
    async fn typing_is_relayed_throttled_and_ended(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = Arc::new(Room { members: vec![ana.id, ben.id], history: Mutex::default() });
        app.state.hub.register_kind("room", room);
        let mut a = Ws::connect(&app, "/ws", &ana.access_token).await;
        let mut b = Ws::connect(&app, "/ws", &ben.access_token).await;
        a.subscribe("room:1", None).await;
        b.subscribe("room:1", None).await;

        let started = std::time::Instant::now();
        for _ in 0..5 {
            a.send(json!({"op": "typing", "topic": "room:1", "is_typing": true})).await;
        }
        let t = b.event("room:1", "typing").await;
        assert_eq!(t["data"], json!({"user_id": ana.id, "is_typing": true}));
        assert!(a.drain().await.iter().all(|f| f["type"] != "typing"), "not echoed to the typer");
        let burst = b.drain().await;
        // At most one renewal per throttle window (2 s by default) gets
        // through; on a loaded machine the burst may straddle a window.
        let windows = (started.elapsed().as_secs_f64() / 2.0).floor() as usize;
        let renewals = burst.iter().filter(|f| f["type"] == "typing").count();
        assert!(renewals <= windows, "renewals are throttled: {renewals} in {windows} windows: {burst:?}");

        // A newcomer learns who is typing.
        let mut b2 = Ws::connect(&app, "/ws", &ben.access_token).await;
        b2.subscribe("room:1", None).await;
        assert_eq!(b2.event("room:1", "typing").await["data"]["user_id"], ana.id);

        a.send(json!({"op": "typing", "topic": "room:1", "is_typing": false})).await;
        assert_eq!(b.event("room:1", "typing").await["data"]["is_typing"], false);

        a.send(json!({"op": "typing", "topic": "room:1", "is_typing": true})).await;
        assert_eq!(b.event("room:1", "typing").await["data"]["is_typing"], true);
        a.inner.close(None).await.unwrap();
        let end = b.event("room:1", "typing").await;
        assert_eq!(end["data"], json!({"user_id": ana.id, "is_typing": false}), "ended by the disconnect");
    }
}

ws_test! {
    /// Without renewal, typing ends by itself after 6 s.
    async fn typing_expires(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = Arc::new(Room { members: vec![ana.id, ben.id], history: Mutex::default() });
        app.state.hub.register_kind("room", room);
        let mut a = Ws::connect(&app, "/ws", &ana.access_token).await;
        let mut b = Ws::connect(&app, "/ws", &ben.access_token).await;
        a.subscribe("room:1", None).await;
        b.subscribe("room:1", None).await;
        a.send(json!({"op": "typing", "topic": "room:1", "is_typing": true})).await;
        assert_eq!(b.event("room:1", "typing").await["data"]["is_typing"], true);
        let started = std::time::Instant::now();
        let reader = tokio::spawn(async move {
            // Keep Ana's connection answering pings meanwhile.
            let _ = tokio::time::timeout(Duration::from_secs(8), a.inner.next()).await;
        });
        // (A snapshot may repeat the `true` if Ben's subscription raced the
        // typing frame; the state is the same.)
        b.recv_where(|f| f["type"] == "typing" && f["data"]["is_typing"] == false).await;
        assert!(started.elapsed() >= Duration::from_secs(5), "not before the TTL");
        reader.abort();
    }
}

/// Two real server processes on one PostgreSQL and one Redis: presence and
/// events cross nodes, and killing a node takes its users offline on the
/// other within 15 s (presence TTL 10 s, heartbeats every 3.3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_presence_and_events() {
    let Some(mut cluster) = crate::binary::Cluster::start(2, "the multi-node test").await else {
        return;
    };
    let ports = cluster.ports.clone();
    let http = cluster.http.clone();
    let register = async |node: usize, email: &str| cluster.register(node, email, json!({})).await;
    let connect = async |port: u16, token: &str| -> Ws {
        let (inner, _) = connect_async(format!("ws://127.0.0.1:{port}/ws?token={token}")).await.unwrap();
        Ws { inner, next_ref: 0 }
    };
    let (ana, ana_token) = register(0, "ana@example.org").await;
    let (_ben, ben_token) = register(1, "ben@example.org").await;

    // Ben on node 2 watches Ana's presence; Ana connects to node 1.
    let mut b = connect(ports[1], &ben_token).await;
    let topic = format!("presence:{ana}");
    assert_eq!(b.subscribe(&topic, None).await["op"], "ack");
    assert_eq!(b.event(&topic, "presence").await["data"]["online"], false);
    let mut a = connect(ports[0], &ana_token).await;
    a.drain().await;
    assert_eq!(b.event(&topic, "presence").await["data"]["online"], true, "presence crossed nodes");

    // An event made on node 2 reaches Ana on node 1.
    let followed = http
        .put(format!("http://127.0.0.1:{}/api/v1/users/{ana}/follow", ports[1]))
        .bearer_auth(&ben_token)
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200);
    let note = a.event(&format!("user:{ana}"), "notification").await;
    assert_eq!(note["data"]["notification"]["notification_type"], "follow");

    // Chat across nodes: Ben sends on node 2, Ana (node 1) gets it live
    // with its seq; Ben's retry is acked the same.
    let room: Value = http
        .post(format!("http://127.0.0.1:{}/api/v1/chat/rooms", ports[1]))
        .bearer_auth(&ben_token)
        .json(&json!({"room_type": "private", "participant_ids": [ana]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = format!("chat:{}", room["id"].as_i64().unwrap());
    assert_eq!(a.subscribe(&chat, Some(0)).await["op"], "ack");
    let send = json!({"op": "send", "topic": chat, "client_msg_id": "n2-1", "content": "hola", "message_type": "text"});
    let ack = b.request(send.clone()).await;
    assert_eq!(ack["op"], "ack", "{ack}");
    let message = a.event(&chat, "message").await;
    assert_eq!((message["seq"].as_i64(), message["data"]["content"].as_str()), (ack["seq"].as_i64(), Some("hola")));
    let again = b.request(send).await;
    assert_eq!((again["seq"].as_i64(), again["duplicate"].as_bool()), (ack["seq"].as_i64(), Some(true)));

    // Node 1 dies without a word: Ana goes offline on node 2 within 15 s.
    let mut node1 = cluster.nodes.remove(0);
    node1.kill().unwrap();
    let killed = std::time::Instant::now();
    node1.wait().unwrap();
    let offline = tokio::time::timeout(Duration::from_secs(20), b.event(&topic, "presence")).await.unwrap();
    assert_eq!(offline["data"]["online"], false);
    let took = killed.elapsed();
    eprintln!("node 1 killed: its user was offline on node 2 after {took:?}");
    assert!(took < Duration::from_secs(15), "offline after {took:?}");
    assert!(offline["data"]["last_seen"].is_string());

    cluster.stop().await;
}

/// An op that answers the connection's cluster-wide key.
struct WhoAmI;

#[async_trait::async_trait]
impl palaver_realtime::OpHandler for WhoAmI {
    async fn handle(
        &self,
        ctx: &palaver_realtime::OpContext,
        _body: serde_json::Map<String, Value>,
    ) -> palaver_core::Result<serde_json::Map<String, Value>> {
        let mut fields = serde_json::Map::new();
        fields.insert("connection".into(), json!(ctx.connection));
        Ok(fields)
    }
}

ws_test! {
    /// Registered ops get an ack with their fields; an event can target one
    /// device of a user (a call bound to it) without a subscription.
    async fn ops_and_events_for_one_connection(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        app.state.hub.register_op("whoami", Arc::new(WhoAmI));
        let mut phone = Ws::connect(&app, "/ws", &ana.access_token).await;
        let mut laptop = Ws::connect(&app, "/ws", &ana.access_token).await;
        let ack = phone.request(json!({"op": "whoami"})).await;
        assert_eq!(ack["op"], "ack");
        let key = ack["connection"].as_str().unwrap().to_owned();
        assert_ne!(laptop.request(json!({"op": "whoami"})).await["connection"], key.as_str());
        let topic = Topic::parse("call:9").unwrap();
        app.state.hub.send_to_connection(ana.id, &key, &topic, "signal", &json!({"kind": "offer"}));
        let signal = phone.event("call:9", "signal").await;
        assert_eq!(signal["data"]["kind"], "offer");
        assert!(laptop.drain().await.is_empty(), "the other device got nothing");
    }
}
