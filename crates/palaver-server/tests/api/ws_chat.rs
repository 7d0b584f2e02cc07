//! Chat over the WebSocket: delivery under concurrent senders and
//! reconnecting receivers, idempotent retries, authorization, removal, and
//! the original design's `/ws/chat/{room_id}/`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser};
use crate::ws::{Ended, Ws, defaults, ws_test};

/// The room's latest seq (creating a group writes a system message).
async fn head(app: &TestApp, user: &TestUser, room: i64) -> i64 {
    app.get(&format!("/api/v1/chat/rooms/{room}"), &user.access_token).await.expect(200)["last_seq"].as_i64().unwrap()
}

async fn group(app: &TestApp, admin: &TestUser, members: &[&TestUser]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|u| u.id).collect();
    let room = app
        .post(
            "/api/v1/chat/rooms",
            Some(&admin.access_token),
            json!({"room_type": "group", "participant_ids": ids, "name": "practice"}),
        )
        .await
        .expect(201);
    room["id"].as_i64().unwrap()
}

fn send_frame(topic: &str, client_msg_id: &str, content: &str) -> Value {
    json!({"op": "send", "topic": topic, "client_msg_id": client_msg_id, "content": content, "message_type": "text"})
}

ws_test! {
    /// 1,000 messages from 10 concurrent senders into one room while three
    /// receivers drop their connection at random moments and resume with
    /// `since_seq`: each receiver ends with every seq exactly once, in
    /// order, and each matches what the senders were acked.
    async fn every_receiver_gets_every_seq_once_in_order(app) with |c| c.ws_rate = "100000/1s".parse().unwrap(); {
        let admin = app.register("admin@example.org").await;
        let mut senders = Vec::new();
        for i in 0..10 {
            senders.push(app.register(&format!("sender{i}@example.org")).await);
        }
        let mut receivers = Vec::new();
        for i in 0..3 {
            receivers.push(app.register(&format!("receiver{i}@example.org")).await);
        }
        let members: Vec<&TestUser> = senders.iter().chain(receivers.iter()).collect();
        let room = group(&app, &admin, &members).await;
        let topic = format!("chat:{room}");
        const PER_SENDER: usize = 100;
        let base = head(&app, &admin, room).await;
        let total = base + 1000;

        let mut receiving = Vec::new();
        for (r, user) in receivers.iter().enumerate() {
            let (app, user, topic) = (app.clone(), user.clone(), topic.clone());
            receiving.push(tokio::spawn(async move {
                let mut seen: Vec<i64> = Vec::new();
                let mut contents: Vec<String> = Vec::new();
                let mut reconnects = 0;
                while seen.last().copied().unwrap_or(0) < total {
                    let mut ws = Ws::connect(&app, "/ws", &user.access_token).await;
                    let since = seen.last().copied().unwrap_or(0);
                    assert_eq!(ws.subscribe(&topic, Some(since)).await["op"], "ack");
                    // Read a random number of messages, then drop the socket.
                    let budget = rand::random_range(1..150usize);
                    for _ in 0..budget {
                        let event = ws.event(&topic, "message").await;
                        seen.push(event["seq"].as_i64().unwrap());
                        contents.push(event["data"]["content"].as_str().unwrap().to_owned());
                        if *seen.last().unwrap() == total {
                            break;
                        }
                    }
                    reconnects += 1;
                    drop(ws);
                }
                eprintln!("receiver {r}: {reconnects} connections");
                (seen, contents)
            }));
        }

        let mut sending = Vec::new();
        for (s, user) in senders.iter().enumerate() {
            let (app, user, topic) = (app.clone(), user.clone(), topic.clone());
            sending.push(tokio::spawn(async move {
                let mut ws = Ws::connect(&app, "/ws", &user.access_token).await;
                let mut acked = Vec::new();
                for i in 0..PER_SENDER {
                    let content = format!("s{s} m{i}");
                    let ack = ws.request(send_frame(&topic, &format!("{s}-{i}"), &content)).await;
                    assert_eq!(ack["op"], "ack", "{ack}");
                    acked.push((ack["seq"].as_i64().unwrap(), content));
                }
                acked
            }));
        }
        let mut by_seq = std::collections::BTreeMap::new();
        for sender in sending {
            for (seq, content) in sender.await.unwrap() {
                assert!(by_seq.insert(seq, content).is_none(), "seq {seq} acked twice");
            }
        }
        assert_eq!(by_seq.len(), 1000);
        assert!(by_seq.keys().copied().eq(base + 1..=total), "acked seqs are gapless after the room's first {base}");
        for receiver in receiving {
            let (seen, contents) = tokio::time::timeout(Duration::from_secs(120), receiver).await.unwrap().unwrap();
            assert!(seen.iter().copied().eq(1..=total), "every seq once, in order (got {} events)", seen.len());
            let expected: Vec<&String> = by_seq.values().collect();
            let got: Vec<&String> = contents.iter().skip(base as usize).collect();
            assert!(got == expected, "each seq carries the acked message");
        }
    }
}

ws_test! {
    /// A retried `send` (same client_msg_id) gets the same ack and stores
    /// nothing new; non-participants can neither subscribe nor send; a
    /// removed participant stops receiving at once.
    async fn retries_authorization_and_removal(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let eve = app.register("eve@example.org").await;
        let room = group(&app, &ana, &[&ben]).await;
        let topic = format!("chat:{room}");
        let mut a = Ws::connect(&app, "/ws", &ana.access_token).await;
        let mut b = Ws::connect(&app, "/ws", &ben.access_token).await;
        a.subscribe(&topic, Some(0)).await;
        assert_eq!(b.subscribe(&topic, None).await["op"], "ack");

        let first = a.request(send_frame(&topic, "retry-1", "hola")).await;
        let again = a.request(send_frame(&topic, "retry-1", "hola")).await;
        assert_eq!((first["op"].as_str(), first["duplicate"].as_bool()), (Some("ack"), Some(false)), "{first}");
        assert_eq!((&first["seq"], &first["id"]), (&again["seq"], &again["id"]), "the same ack");
        assert_eq!(again["duplicate"], true);
        let history = app.get(&format!("/api/v1/chat/rooms/{room}/messages"), &ana.access_token).await.expect(200);
        let texts: Vec<&str> = history["items"].as_array().unwrap().iter().filter_map(|m| m["content"].as_str()).collect();
        assert_eq!(texts.iter().filter(|t| **t == "hola").count(), 1, "one message: {texts:?}");
        let got = b.event(&topic, "message").await;
        assert_eq!((got["seq"].as_i64(), got["data"]["content"].as_str()), (first["seq"].as_i64(), Some("hola")));

        // Eve is not in the room.
        let mut e = Ws::connect(&app, "/ws", &eve.access_token).await;
        assert_eq!(e.subscribe(&topic, None).await["code"], "not_found");
        let refused = e.request(send_frame(&topic, "x", "let me in")).await;
        assert_eq!(refused["op"], "error");
        assert!(["not_found", "forbidden"].contains(&refused["code"].as_str().unwrap()), "{refused}");
        let bad = e.request(json!({"op": "send", "topic": topic})).await;
        assert_eq!(bad["op"], "error");

        // Ben is removed: his subscription ends and nothing more reaches him.
        app.delete(&format!("/api/v1/chat/rooms/{room}/participants/{}", ben.id), &ana.access_token).await;
        let ended = b.event(&topic, "unsubscribed").await;
        assert_eq!(ended["data"]["reason"], "revoked");
        let mut frame = send_frame(&topic, "after", "ben is gone");
        frame["ref"] = json!("after");
        a.send(frame).await;
        let (mut ack, mut event) = (None, None);
        while ack.is_none() || event.is_none() {
            let f = a.recv().await;
            if f["ref"] == "after" {
                ack = Some(f);
            } else if f["data"]["content"] == "ben is gone" {
                event = Some(f);
            }
        }
        assert_eq!(event.unwrap()["seq"], ack.unwrap()["seq"]);
        assert!(b.drain().await.iter().all(|f| f["type"] != "message"), "a removed participant receives nothing");
        assert_eq!(b.subscribe(&topic, None).await["code"], "not_found");
    }
}

ws_test! {
    /// Read and typing over the socket.
    async fn read_and_typing(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = group(&app, &ana, &[&ben]).await;
        let topic = format!("chat:{room}");
        let mut a = Ws::connect(&app, "/ws", &ana.access_token).await;
        let mut b = Ws::connect(&app, "/ws", &ben.access_token).await;
        a.subscribe(&topic, None).await;
        b.subscribe(&topic, None).await;
        let sent = a.request(send_frame(&topic, "m1", "one")).await;
        b.event(&topic, "message").await;
        let read = b.request(json!({"op": "read", "topic": topic, "seq": sent["seq"]})).await;
        assert_eq!((read["op"].as_str(), &read["last_read_seq"]), (Some("ack"), &sent["seq"]), "{read}");
        let event = a.event(&topic, "read").await;
        assert_eq!(event["data"]["user_id"], ben.id);
        b.send(json!({"op": "typing", "topic": topic, "is_typing": true})).await;
        assert_eq!(a.event(&topic, "typing").await["data"], json!({"user_id": ben.id, "is_typing": true}));
    }
}

ws_test! {
    /// The original design's chat socket: recent messages on connect (they
    /// were built and never sent there), its frame shapes both ways, typing
    /// and read receipts; non-participants are refused before the upgrade.
    async fn legacy_chat_route(app) with defaults; {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let eve = app.register("eve@example.org").await;
        let room = group(&app, &ana, &[&ben]).await;
        let topic = format!("chat:{room}");
        for i in 1..=60 {
            app.post(
                &format!("/api/v1/chat/rooms/{room}/messages"),
                Some(&ana.access_token),
                json!({"content": format!("old {i}"), "message_type": "text", "client_msg_id": format!("old-{i}")}),
            )
            .await
            .expect(201);
        }
        let mut legacy = Ws::connect(&app, &format!("/ws/chat/{room}/"), &ben.access_token).await;
        let mut recent = Vec::new();
        for _ in 0..50 {
            recent.push(legacy.recv().await);
        }
        let texts: Vec<String> = recent.iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect();
        let last = head(&app, &ana, room).await;
        assert_eq!(texts, (11..=60).map(|i| format!("old {i}")).collect::<Vec<_>>(), "the last 50, oldest first");
        let m = &recent[0];
        for key in ["id", "sender", "sender_id", "content", "message_type", "created_at", "media_file"] {
            assert!(m.get(key).is_some(), "{key} in {m}");
        }
        // The sender by email, as the original design's clients expect, and by id.
        assert_eq!((m["sender"].as_str(), m["sender_id"].as_i64(), m["message_type"].as_str()), (Some(ana.email.as_str()), Some(ana.id), Some("text")));
        assert!(m["media_file"].is_null());

        // Ben speaks the original protocol; Ana on /ws sees a message event.
        let mut native = Ws::connect(&app, "/ws", &ana.access_token).await;
        native.subscribe(&topic, None).await;
        legacy.send(json!({"type": "chat_message", "message": "hi"})).await;
        let event = native.event(&topic, "message").await;
        assert_eq!((event["data"]["content"].as_str(), event["seq"].as_i64()), (Some("hi"), Some(last + 1)));
        let echo = legacy.recv().await;
        assert_eq!((echo["content"].as_str(), echo["sender"].as_str()), (Some("hi"), Some(ben.email.as_str())));
        assert_eq!(echo["id"], event["data"]["id"]);

        native.send(json!({"op": "typing", "topic": topic, "is_typing": true})).await;
        assert_eq!(legacy.recv().await, json!({"type": "typing", "user": ana.email, "user_id": ana.id, "is_typing": true}));
        legacy.send(json!({"type": "typing", "is_typing": true})).await;
        assert_eq!(native.event(&topic, "typing").await["data"]["user_id"], ben.id);

        // A read receipt (by message id) moves Ben's watermark.
        native.send(send_frame(&topic, "for-ben", "for ben")).await;
        let for_ben = legacy.recv_where(|f| f["type"] == "chat_message").await;
        assert_eq!(for_ben["content"], "for ben");
        legacy.send(json!({"type": "read_receipt", "message_id": for_ben["id"]})).await;
        let read = native.event(&topic, "read").await;
        assert_eq!((read["data"]["user_id"].as_i64(), read["data"]["seq"].as_i64()), (Some(ben.id), Some(last + 2)));

        legacy.send(json!({"type": "nonsense"})).await;
        assert_eq!(legacy.recv().await["type"], "error");
        legacy.send(json!({"type": "chat_message"})).await;
        assert_eq!(legacy.recv().await["type"], "error");

        let (status, _) = Ws::refused(&app, &format!("/ws/chat/{room}/?token={}", eve.access_token)).await;
        assert_eq!(status, 404);
        let (status, _) = Ws::refused(&app, &format!("/ws/chat/{room}/")).await;
        assert_eq!(status, 401);
        assert!(matches!(native.ended_after_close().await, Ended::Closed(..) | Ended::Dropped));
    }
}
