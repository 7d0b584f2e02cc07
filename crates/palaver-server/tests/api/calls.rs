//! Calls, matching and ICE servers over HTTP, with real WebSocket clients
//! for the live side (ringing, signals, matches).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use palaver_realtime::tokio_tungstenite::{self, MaybeTlsStream, WebSocketStream, tungstenite::Message};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, TestUser, api_test};

/// A WebSocket client.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    refs: u64,
}

impl Ws {
    /// Connects to `path` (with `?token=`) and waits until the server
    /// counts the user online.
    pub async fn connect(app: &TestApp, path: &str, user: &TestUser) -> Self {
        let url = format!("ws://{}{}?token={}", app.addr, path, user.access_token);
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let ws = Self { stream, refs: 0 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !palaver_service::Realtime::is_online(&app.state.hub, user.id).await {
            assert!(tokio::time::Instant::now() < deadline, "user {} never came online", user.id);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ws
    }

    /// Connects to a full URL without waiting for presence.
    pub async fn connect_url(url: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { stream, refs: 0 }
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream.send(Message::text(frame.to_string())).await.unwrap();
    }

    /// The next JSON frame (10 s at most).
    pub async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("no frame within 10 s")
                .expect("socket closed")
                .unwrap();
            if let Message::Text(text) = msg {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Frames until one matches; the others are returned too.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            let frame = self.next().await;
            if pred(&frame) {
                return (frame, skipped);
            }
            skipped.push(frame);
        }
    }

    /// Sends an op with a fresh ref and returns its ack or error.
    pub async fn op(&mut self, mut frame: Value) -> Value {
        self.refs += 1;
        let reference = format!("r{}", self.refs);
        frame["ref"] = json!(reference);
        self.send(frame).await;
        self.until(|f| f["ref"] == reference && (f["op"] == "ack" || f["op"] == "error" || f["op"] == "pong")).await.0
    }

    /// Events of `event_type` received before a ping round trip: what the
    /// server had sent this socket by then.
    pub async fn flush(&mut self) -> Vec<Value> {
        self.refs += 1;
        let reference = format!("r{}", self.refs);
        self.send(json!({"op": "ping", "ref": reference})).await;
        self.until(|f| f["ref"] == reference).await.1
    }
}

async fn place(app: &TestApp, from: &TestUser, to: &TestUser) -> Value {
    app.post("/api/v1/calls", Some(&from.access_token), json!({"receiver_id": to.id, "call_type": "voice"}))
        .await
        .expect(201)
}

api_test! {
    async fn a_call_rings_connects_signals_and_ends(app) {
        let ana = app.register("call-ana@example.org").await;
        let bob = app.register("call-bob@example.org").await;
        let mut ana_ws = Ws::connect(&app, "/ws", &ana).await;
        let mut bob_phone = Ws::connect(&app, "/ws", &bob).await;
        let mut bob_laptop = Ws::connect(&app, "/ws", &bob).await;

        let call = place(&app, &ana, &bob).await;
        assert_eq!(call["status"], "ringing");
        assert_eq!(call["media"]["audio"]["echoCancellation"], true);
        let id = call["id"].as_i64().unwrap();
        for ws in [&mut bob_phone, &mut bob_laptop] {
            let (incoming, _) = ws.until(|f| f["type"] == "call_incoming").await;
            assert_eq!(incoming["topic"], format!("user:{}", bob.id));
            assert_eq!(incoming["data"]["id"], id);
            assert_eq!(incoming["data"]["caller"]["id"], ana.id);
        }
        for ws in [&mut ana_ws, &mut bob_phone, &mut bob_laptop] {
            let ack = ws.op(json!({"op": "subscribe", "topic": format!("call:{id}")})).await;
            assert_eq!(ack["op"], "ack", "{ack}");
        }

        // The phone accepts over the socket; the laptop's accept loses.
        let ack = bob_phone.op(json!({"op": "call_accept", "call_id": id})).await;
        assert_eq!((ack["op"].as_str(), ack["status"].as_str()), (Some("ack"), Some("active")), "{ack}");
        app.post(&format!("/api/v1/calls/{id}/accept"), Some(&bob.access_token), json!({}))
            .await
            .expect_error(409, "conflict");
        let (state, _) = ana_ws.until(|f| f["type"] == "call_state" && f["data"]["status"] == "active").await;
        assert!(state["data"]["accepted_at"].is_string());

        // Ana's offer reaches the phone only.
        let ack = ana_ws.op(json!({"op": "signal", "call_id": id, "kind": "offer", "payload": {"sdp": "v=0"}})).await;
        assert_eq!(ack["op"], "ack", "{ack}");
        let (signal, _) = bob_phone.until(|f| f["type"] == "signal").await;
        assert_eq!(signal["topic"], format!("call:{id}"));
        assert_eq!(signal["data"], json!({"call_id": id, "from": ana.id, "kind": "offer", "payload": {"sdp": "v=0"}}));
        assert!(bob_laptop.flush().await.iter().all(|f| f["type"] != "signal"), "the laptop gets no signal");
        // The laptop cannot signal into the call; the phone answers.
        let refused = bob_laptop.op(json!({"op": "signal", "call_id": id, "kind": "answer", "payload": {}})).await;
        assert_eq!((refused["op"].as_str(), refused["code"].as_str()), (Some("error"), Some("forbidden")), "{refused}");
        bob_phone.op(json!({"op": "signal", "call_id": id, "kind": "answer", "payload": {"sdp": "v=0 a"}})).await;
        let (answer, _) = ana_ws.until(|f| f["type"] == "signal").await;
        assert_eq!(answer["data"]["kind"], "answer");

        // Hang-up over REST; the duration is the server's.
        let ended = app.post(&format!("/api/v1/calls/{id}/end"), Some(&ana.access_token), json!({})).await.expect(200);
        assert_eq!(ended["status"], "ended");
        assert!(ended["duration"].as_i64().unwrap() >= 0);
        let (state, _) = bob_phone.until(|f| f["type"] == "call_state" && f["data"]["status"] == "ended").await;
        assert_eq!(state["data"]["end_reason"], "hangup");
        let late = ana_ws.op(json!({"op": "signal", "call_id": id, "kind": "ice_candidate", "payload": {}})).await;
        assert_eq!(late["code"], "conflict", "{late}");

        let history = app.get("/api/v1/calls", &bob.access_token).await.expect(200);
        assert_eq!(history["items"][0]["id"], id);
        assert_eq!(history["items"][0]["status"], "ended");
        assert_eq!(history["next_cursor"], Value::Null);
    }
}

api_test! {
    async fn call_refusals_over_http(app) {
        let ana = app.register("cr-ana@example.org").await;
        let bob = app.register("cr-bob@example.org").await;
        let eve = app.register("cr-eve@example.org").await;
        let _bob_ws = Ws::connect(&app, "/ws", &bob).await;

        // Offline receiver: missed at once.
        let missed = place(&app, &bob, &ana).await;
        assert_eq!((missed["status"].as_str(), missed["end_reason"].as_str()), (Some("missed"), Some("unreachable")));

        let call = place(&app, &ana, &bob).await;
        let id = call["id"].as_i64().unwrap();
        let path = |action: &str| format!("/api/v1/calls/{id}/{action}");
        app.post(&path("accept"), Some(&eve.access_token), json!({})).await.expect_error(404, "not_found");
        app.get(&format!("/api/v1/calls/{id}"), &eve.access_token).await.expect_error(404, "not_found");
        app.post(&path("accept"), Some(&ana.access_token), json!({})).await.expect_error(403, "forbidden");
        app.post(&path("decline"), Some(&ana.access_token), json!({})).await.expect_error(403, "forbidden");
        app.post(&path("accept"), Some(&bob.access_token), json!({"connection_id": 5})).await.expect_error(400, "validation_failed");
        app.post(&path("accept"), Some(&bob.access_token), json!({"nope": 1})).await.expect_error(400, "validation_failed");
        app.post(&path("quality"), Some(&ana.access_token), json!({"rtt_ms": 5.0})).await.expect_error(409, "conflict");
        assert_eq!(app.get(&format!("/api/v1/calls/{id}"), &bob.access_token).await.expect(200)["status"], "ringing");
        let declined = app.post(&path("decline"), Some(&bob.access_token), json!({})).await.expect(200);
        assert_eq!(declined["status"], "declined");
        app.post(&path("end"), Some(&ana.access_token), json!({})).await.expect_error(409, "conflict");

        // Bad requests.
        app.post("/api/v1/calls", Some(&ana.access_token), json!({"receiver_id": ana.id, "call_type": "voice"}))
            .await
            .expect_error(400, "bad_request");
        app.post("/api/v1/calls", Some(&ana.access_token), json!({"receiver_id": bob.id, "call_type": "fax"}))
            .await
            .expect_error(400, "validation_failed");
        app.post("/api/v1/calls", Some(&ana.access_token), json!({"receiver_id": 99_999_999, "call_type": "voice"}))
            .await
            .expect_error(404, "not_found");
        app.post("/api/v1/calls/0/accept", Some(&bob.access_token), json!({})).await.expect_error(404, "not_found");
        app.post("/api/v1/calls/abc/accept", Some(&bob.access_token), json!({})).await.expect_error(400, "bad_request");
        app.get("/api/v1/calls?limit=0", &ana.access_token).await.expect_error(400, "validation_failed");

        // Busy, then blocks.
        let call = place(&app, &ana, &bob).await;
        let id = call["id"].as_i64().unwrap();
        app.post(&format!("/api/v1/calls/{id}/accept"), Some(&bob.access_token), json!({})).await.expect(200);
        let busy = place(&app, &eve, &bob).await;
        assert_eq!(busy["status"], "busy");
        app.post("/api/v1/calls", Some(&ana.access_token), json!({"receiver_id": eve.id, "call_type": "voice"}))
            .await
            .expect_error(409, "conflict");
        let quality = app
            .post(&format!("/api/v1/calls/{id}/quality"), Some(&ana.access_token),
                  json!({"rtt_ms": 42.5, "jitter_ms": 3.0, "packet_loss": 0.01, "audio_level": 0.2, "codec": "opus"}))
            .await
            .expect(200);
        assert_eq!(quality["quality"][0]["rtt_ms"], 42.5);
        assert!(quality["media_connected_at"].is_string());
        app.post(&format!("/api/v1/calls/{id}/quality"), Some(&ana.access_token), json!({"packet_loss": 3}))
            .await
            .expect_error(400, "validation_failed");
        app.post(&format!("/api/v1/calls/{id}/end"), Some(&bob.access_token), json!({})).await.expect(200);
        app.put(&format!("/api/v1/users/{}/block", ana.id), &bob.access_token).await.expect(200);
        app.post("/api/v1/calls", Some(&ana.access_token), json!({"receiver_id": bob.id, "call_type": "voice"}))
            .await
            .expect_error(403, "forbidden");
        let history = app.get("/api/v1/calls?limit=2", &ana.access_token).await.expect(200);
        assert_eq!(history["items"][0]["quality"][0]["codec"], "opus");
        assert!(history["next_cursor"].is_string());
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("palaver_call_rtt_ms_bucket{"), "quality is a Prometheus histogram");
    }
}

api_test! {
    async fn random_matching_over_http(app) {
        let ana = app.register("m-ana@example.org").await;
        let bob = app
            .post("/api/v1/auth/register", None, json!({
                "email": "m-bob@example.org", "password": "bob-password-1", "display_name": "bob",
                "native_languages": ["en"], "learning_languages": [{"code": "es", "level": "beginner"}],
            }))
            .await
            .expect(201);
        let bob = TestUser {
            id: bob["user"]["id"].as_i64().unwrap(),
            email: "m-bob@example.org".into(),
            password: "bob-password-1".into(),
            access_token: bob["access_token"].as_str().unwrap().into(),
            refresh_token: bob["refresh_token"].as_str().unwrap().into(),
        };
        let mut ana_ws = Ws::connect(&app, "/ws", &ana).await;
        // Ana speaks Spanish and learns English; Bob the other way round.
        let waiting = app
            .post("/api/v1/match/queue", Some(&ana.access_token), json!({"call_type": "voice", "language": "en", "level": "intermediate"}))
            .await
            .expect(200);
        assert_eq!(waiting["status"], "waiting");
        app.post("/api/v1/match/queue", Some(&bob.access_token), json!({"call_type": "voice", "language": "xx yy", "level": "beginner"}))
            .await
            .expect_error(400, "validation_failed");
        app.post("/api/v1/match/queue", Some(&bob.access_token), json!({"call_type": "voice", "language": "es", "level": "expert"}))
            .await
            .expect_error(400, "validation_failed");
        let matched = app
            .post("/api/v1/match/queue", Some(&bob.access_token), json!({"call_type": "voice", "language": "es", "level": "beginner"}))
            .await
            .expect(200);
        assert_eq!(matched["status"], "matched");
        assert_eq!(matched["match"]["role"], "callee");
        assert_eq!(matched["match"]["peer"]["id"], ana.id);
        let call_id = matched["match"]["call_id"].as_i64().unwrap();
        let (found, _) = ana_ws.until(|f| f["type"] == "match_found").await;
        assert_eq!(found["data"]["call_id"], call_id);
        assert_eq!(found["data"]["role"], "caller");
        assert_eq!(found["data"]["peer"]["id"], bob.id);
        let call = app.get(&format!("/api/v1/calls/{call_id}"), &bob.access_token).await.expect(200);
        assert_eq!((call["status"].as_str(), call["is_match"].as_bool()), (Some("ringing"), Some(true)));

        // In a call, nobody queues; leaving twice is fine.
        app.post("/api/v1/match/queue", Some(&ana.access_token), json!({"call_type": "voice", "language": "en", "level": "intermediate"}))
            .await
            .expect_error(409, "conflict");
        assert_eq!(app.delete("/api/v1/match/queue", &ana.access_token).await.expect(200)["removed"], false);
    }
}

api_test! {
    async fn the_original_call_socket(app) {
        let ana = app.register("lc-ana@example.org").await;
        let bob = app.register("lc-bob@example.org").await;
        let eve = app.register("lc-eve@example.org").await;
        let _bob_ws = Ws::connect(&app, "/ws", &bob).await;
        let call = place(&app, &ana, &bob).await;
        let id = call["id"].as_i64().unwrap();
        let url = |user: &TestUser| format!("ws://{}/ws/call/{id}/?token={}", app.addr, user.access_token);
        let refused = tokio_tungstenite::connect_async(url(&eve)).await.unwrap_err();
        assert!(refused.to_string().contains("404"), "{refused}");

        let (mut ana_sock, _) = tokio_tungstenite::connect_async(url(&ana)).await.unwrap();
        let (mut bob_sock, _) = tokio_tungstenite::connect_async(url(&bob)).await.unwrap();
        let mut ana_sock = LegacyWs(&mut ana_sock);
        let mut bob_sock = LegacyWs(&mut bob_sock);
        // Both sockets are subscribed once a ping round trip is done.
        for sock in [&mut ana_sock, &mut bob_sock] {
            sock.send(json!({"type": "ping"})).await;
            sock.until(|f| f["type"] == "pong").await;
        }
        ana_sock.send(json!({"type": "offer", "offer": {"type": "offer", "sdp": "v=0"}, "target_user": bob.id})).await;
        let offer = bob_sock.until(|f| f["type"] == "offer").await;
        assert_eq!(offer["offer"]["sdp"], "v=0");
        assert_eq!((offer["from_user"].as_i64(), offer["call_id"].as_i64()), (Some(ana.id), Some(id)));
        ana_sock.send(json!({"type": "ice_candidate", "candidate": {"candidate": "c1"}, "target_user": eve.id})).await;
        let error = ana_sock.until(|f| f["type"] == "error").await;
        assert_eq!(error["code"], "forbidden");
        bob_sock.send(json!({"type": "hello"})).await;
        assert_eq!(bob_sock.until(|f| f["type"] == "error").await["code"], "unknown_type");
        bob_sock.send(json!({"type": "hangup", "target_user": ana.id})).await;
        let state = ana_sock.until(|f| f["type"] == "call_state").await;
        assert_eq!(state["status"], "declined");
    }
}

struct LegacyWs<'a>(&'a mut WebSocketStream<MaybeTlsStream<TcpStream>>);

impl LegacyWs<'_> {
    async fn send(&mut self, frame: Value) {
        self.0.send(Message::text(frame.to_string())).await.unwrap();
    }

    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.0.next())
                .await
                .expect("no frame within 10 s")
                .expect("socket closed")
                .unwrap();
            if let Message::Text(text) = msg {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if pred(&frame) {
                    return frame;
                }
            }
        }
    }
}

api_test! {
    async fn ice_servers_without_turn(app) {
        let ana = app.register("ice-ana@example.org").await;
        let ice = app.get("/api/v1/rtc/ice-servers", &ana.access_token).await.expect(200);
        assert_eq!(ice["ice_servers"], json!([]));
        app.call(reqwest::Method::GET, "/api/v1/rtc/ice-servers", None, None).await.expect_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn ice_servers_with_turn() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |c| {
        c.stun_urls = vec!["stun:stun.palaver.example:3478".into()];
        c.turn_urls = vec!["turn:turn.palaver.example:3478?transport=udp".into()];
        c.turn_secret = Some(secrecy::SecretString::from("coturn-shared-secret".to_owned()));
        c.turn_ttl = Duration::from_secs(600);
    })
    .await
    .unwrap();
    let ana = app.register("ice-turn@example.org").await;
    let ice = app.get("/api/v1/rtc/ice-servers", &ana.access_token).await.expect(200);
    assert_eq!(ice["ttl"], 600);
    assert_eq!(ice["ice_servers"][0], json!({"urls": ["stun:stun.palaver.example:3478"]}));
    let turn = &ice["ice_servers"][1];
    let username = turn["username"].as_str().unwrap();
    assert!(username.ends_with(&format!(":{}", ana.id)), "{username}");
    let (expected_user, expected_password) = palaver_rtc::ice::turn_credential(
        "coturn-shared-secret",
        ana.id,
        username.split(':').next().unwrap().parse().unwrap(),
    );
    assert_eq!((username, turn["credential"].as_str().unwrap()), (expected_user.as_str(), expected_password.as_str()));
    app.stop().await;
}

api_test! {
    async fn the_last_device_leaving_leaves_the_queue(app) {
        let ana = app.register("q-ana@example.org").await;
        let ws = Ws::connect(&app, "/ws", &ana).await;
        let waiting = app
            .post("/api/v1/match/queue", Some(&ana.access_token), json!({"call_type": "video", "language": "en", "level": "advanced"}))
            .await
            .expect(200);
        assert_eq!(waiting["status"], "waiting");
        assert!(app.state.rtc.matching.is_waiting(ana.id).await.unwrap());
        drop(ws);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while app.state.rtc.matching.is_waiting(ana.id).await.unwrap() {
            assert!(tokio::time::Instant::now() < deadline, "still queued after the last device left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Two server processes on one PostgreSQL and one Redis: users on different
/// nodes are matched (one queue in Redis), the call rings across nodes, and
/// after the accept the caller's signals reach the callee's accepting
/// connection on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_match_and_its_call_cross_nodes() {
    let Some(cluster) = crate::binary::Cluster::start(2, "the multi-node call test").await else {
        return;
    };
    let ports = cluster.ports.clone();
    let http = cluster.http.clone();
    let register = async |node: usize, email: &str, native: &str, learns: &str| {
        let languages =
            json!({"native_languages": [native], "learning_languages": [{"code": learns, "level": "advanced"}]});
        cluster.register(node, email, languages).await
    };
    let (ana, ana_token) = register(0, "x-ana@example.org", "es", "de").await;
    let (ben, ben_token) = register(1, "x-ben@example.org", "de", "es").await;
    let mut a = Ws::connect_url(&format!("ws://127.0.0.1:{}/ws?token={ana_token}", ports[0])).await;
    let mut b = Ws::connect_url(&format!("ws://127.0.0.1:{}/ws?token={ben_token}", ports[1])).await;
    a.flush().await;
    b.flush().await;

    let join = async |port: u16, token: &str, language: &str| -> Value {
        http.post(format!("http://127.0.0.1:{port}/api/v1/match/queue"))
            .bearer_auth(token)
            .json(&json!({"call_type": "voice", "language": language, "level": "advanced"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    assert_eq!(join(ports[0], &ana_token, "de").await["status"], "waiting");
    let matched = join(ports[1], &ben_token, "es").await;
    assert_eq!(matched["status"], "matched", "{matched}");
    let id = matched["match"]["call_id"].as_i64().unwrap();
    let (found, _) = a.until(|f| f["type"] == "match_found").await;
    assert_eq!((found["data"]["call_id"].as_i64(), found["data"]["role"].as_str()), (Some(id), Some("caller")));
    assert_eq!(found["data"]["peer"]["id"], ben);

    for ws in [&mut a, &mut b] {
        assert_eq!(ws.op(json!({"op": "subscribe", "topic": format!("call:{id}")})).await["op"], "ack");
    }
    let accepted = b.op(json!({"op": "call_accept", "call_id": id})).await;
    assert_eq!(accepted["status"], "active", "{accepted}");
    let (state, _) = a.until(|f| f["type"] == "call_state" && f["data"]["status"] == "active").await;
    assert_eq!(state["topic"], format!("user:{ana}"));
    let ack = a.op(json!({"op": "signal", "call_id": id, "kind": "offer", "payload": {"sdp": "v=0 cross"}})).await;
    assert_eq!(ack["op"], "ack", "{ack}");
    let (signal, _) = b.until(|f| f["type"] == "signal").await;
    assert_eq!(signal["data"]["payload"]["sdp"], "v=0 cross");
    assert_eq!(signal["data"]["from"], ana);

    cluster.stop().await;
}
