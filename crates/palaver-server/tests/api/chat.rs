//! Chat over HTTP: rooms, messages, idempotent retries, concurrency,
//! authorization (non-participants get 404 for everything of a room),
//! blocks, validation, unread counts, room order, shares into chats, and
//! reports on messages.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, api_test};
use crate::moments::post_moment;

const WAIT: Duration = Duration::from_secs(15);

async fn private_room(app: &TestApp, a: &TestUser, b: &TestUser) -> i64 {
    let body = app
        .post("/api/v1/chat/rooms", Some(&a.access_token), json!({"room_type": "private", "participant_ids": [b.id]}))
        .await;
    assert!(body.status == 201 || body.status == 200, "{}", body.body);
    body.body["id"].as_i64().unwrap()
}

async fn group_room(app: &TestApp, admin: &TestUser, members: &[&TestUser], name: &str) -> i64 {
    let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
    app.post(
        "/api/v1/chat/rooms",
        Some(&admin.access_token),
        json!({"room_type": "group", "participant_ids": ids, "name": name}),
    )
    .await
    .expect(201)["id"]
        .as_i64()
        .unwrap()
}

async fn say(app: &TestApp, user: &TestUser, room: i64, text: &str) -> Value {
    app.post(&format!("/api/v1/chat/rooms/{room}/messages"), Some(&user.access_token), json!({"content": text}))
        .await
        .expect(201)
}

/// Every message of a room, walking pages forward from the start.
async fn all_messages(app: &TestApp, user: &TestUser, room: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(&format!("/api/v1/chat/rooms/{room}/messages?after_seq={after}&limit=100"), &user.access_token)
            .await
            .expect(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => after = next.parse().unwrap(),
            None => return out,
        }
    }
}

fn room_ids(list: &Value) -> Vec<i64> {
    list["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

api_test! {
    /// The whole life of a conversation over REST: a private room (found
    /// again, not duplicated), messages with seqs, an idempotent retry,
    /// history pages, unread counts, read receipts, threads, edits and
    /// deletes.
    async fn a_conversation(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let created = app
            .post("/api/v1/chat/rooms", Some(&ana.access_token), json!({"room_type": "private", "participant_ids": [ben.id]}))
            .await
            .expect(201);
        let room = created["id"].as_i64().unwrap();
        assert_eq!(created["room_type"], "private");
        assert_eq!(created["participants"].as_array().unwrap().len(), 2);
        assert_eq!(created["unread_count"], 0);
        assert_eq!(created["last_message"], Value::Null);
        // Ben opening the same conversation finds it.
        let again = app
            .post("/api/v1/chat/rooms", Some(&ben.access_token), json!({"room_type": "private", "participant_ids": [ana.id, ben.id]}))
            .await
            .expect(200);
        assert_eq!(again["id"], room);

        let first = app
            .post(
                &format!("/api/v1/chat/rooms/{room}/messages"),
                Some(&ana.access_token),
                json!({"client_msg_id": "5b0c1a4e-0b7e-4f43-9d1c-2f1f0a0b0c01", "content": "¿Hablamos mañana?"}),
            )
            .await
            .expect(201);
        assert_eq!(first["seq"], 1);
        assert_eq!(first["message_type"], "text");
        assert_eq!(first["sender"]["id"], ana.id);
        assert_eq!(first["client_msg_id"], "5b0c1a4e-0b7e-4f43-9d1c-2f1f0a0b0c01");
        // The retry: 200, the same message, nothing new.
        let retry = app
            .post(
                &format!("/api/v1/chat/rooms/{room}/messages"),
                Some(&ana.access_token),
                json!({"client_msg_id": "5b0c1a4e-0b7e-4f43-9d1c-2f1f0a0b0c01", "content": "¿Hablamos mañana?"}),
            )
            .await
            .expect(200);
        assert_eq!(retry, first);
        for i in 2..=6 {
            assert_eq!(say(&app, &ben, room, &format!("respuesta {i}")).await["seq"], i);
        }

        // History: newest page, then older ones by before_seq.
        let newest = app.get(&format!("/api/v1/chat/rooms/{room}/messages?limit=4"), &ana.access_token).await.expect(200);
        let seqs: Vec<i64> = newest["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, vec![3, 4, 5, 6]);
        assert_eq!(newest["next_cursor"], "3");
        let older = app
            .get(&format!("/api/v1/chat/rooms/{room}/messages?before_seq=3&limit=4"), &ana.access_token)
            .await
            .expect(200);
        let seqs: Vec<i64> = older["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(older["next_cursor"], Value::Null);
        let gap = app
            .get(&format!("/api/v1/chat/rooms/{room}/messages?after_seq=2&before_seq=5"), &ana.access_token)
            .await
            .expect(200);
        assert_eq!(gap["items"].as_array().unwrap().len(), 2);
        assert_eq!(all_messages(&app, &ben, room).await.len(), 6);

        // Unread counts: ana has five unread from ben; ben none.
        let list = app.get("/api/v1/chat/rooms", &ana.access_token).await.expect(200);
        assert_eq!(list["items"][0]["id"], room);
        assert_eq!(list["items"][0]["unread_count"], 5);
        assert_eq!(list["items"][0]["last_message"]["content"], "respuesta 6");
        assert_eq!(app.get(&format!("/api/v1/chat/rooms/{room}"), &ben.access_token).await.expect(200)["unread_count"], 0);
        let read = app.post(&format!("/api/v1/chat/rooms/{room}/read"), Some(&ana.access_token), json!({"seq": 4})).await.expect(200);
        assert_eq!(read, json!({"last_read_seq": 4, "unread_count": 2}));
        let back = app.post(&format!("/api/v1/chat/rooms/{room}/read"), Some(&ana.access_token), json!({"seq": 2})).await.expect(200);
        assert_eq!(back["last_read_seq"], 4, "the watermark never moves back");
        let m4 = all_messages(&app, &ana, room).await[3]["id"].as_i64().unwrap();
        let receipts = app.get(&format!("/api/v1/chat/messages/{m4}/read_by"), &ben.access_token).await.expect(200);
        assert_eq!(receipts["read_by"][0]["id"], ana.id);
        let m5 = all_messages(&app, &ana, room).await[4]["id"].as_i64().unwrap();
        let receipts = app.get(&format!("/api/v1/chat/messages/{m5}/read_by"), &ben.access_token).await.expect(200);
        assert_eq!(receipts["read_by"], json!([]));

        // A thread.
        let root = first["id"].as_i64().unwrap();
        let reply = app
            .post(&format!("/api/v1/chat/rooms/{room}/messages"), Some(&ben.access_token), json!({"content": "¡Sí!", "reply_to": root}))
            .await
            .expect(201);
        assert_eq!(reply["reply_to"], root);
        let thread = app.get(&format!("/api/v1/chat/messages/{root}/thread"), &ana.access_token).await.expect(200);
        assert_eq!(thread["message"]["id"], root);
        assert_eq!(thread["items"][0]["id"], reply["id"]);

        // Edit and delete: the sender only.
        app.patch(&format!("/api/v1/chat/messages/{root}"), &ben.access_token, json!({"content": "mine"}))
            .await
            .expect_error(403, "forbidden");
        let edited = app.patch(&format!("/api/v1/chat/messages/{root}"), &ana.access_token, json!({"content": "¿Mañana?"})).await.expect(200);
        assert_eq!(edited["content"], "¿Mañana?");
        assert_eq!(edited["is_edited"], true);
        app.delete(&format!("/api/v1/chat/messages/{root}"), &ben.access_token).await.expect_error(403, "forbidden");
        app.delete(&format!("/api/v1/chat/messages/{root}"), &ana.access_token).await.expect(204);
        app.delete(&format!("/api/v1/chat/messages/{root}"), &ana.access_token).await.expect(204);
        let tombstone = &all_messages(&app, &ben, room).await[0];
        assert_eq!(tombstone["seq"], 1);
        assert_eq!(tombstone["is_deleted"], true);
        assert_eq!(tombstone["content"], Value::Null);
    }
}

api_test! {
    /// Anyone not in a room gets 404 for the room, its messages, threads,
    /// receipts and every write, exactly as for a room that does not exist;
    /// the room list shows them nothing.
    async fn non_participants_get_404_everywhere(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let eve = app.register("eve@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        let msg = say(&app, &ana, room, "just us").await["id"].as_i64().unwrap();
        let t = &eve.access_token;
        for missing in [999_999, 0, -1] {
            app.get(&format!("/api/v1/chat/rooms/{missing}"), t).await.expect_error(404, "not_found");
        }
        app.get(&format!("/api/v1/chat/rooms/{room}"), t).await.expect_error(404, "not_found");
        app.get(&format!("/api/v1/chat/rooms/{room}/messages"), t).await.expect_error(404, "not_found");
        app.post(&format!("/api/v1/chat/rooms/{room}/messages"), Some(t), json!({"content": "let me in"}))
            .await
            .expect_error(404, "not_found");
        app.post(&format!("/api/v1/chat/rooms/{room}/read"), Some(t), json!({"seq": 1})).await.expect_error(404, "not_found");
        app.patch(&format!("/api/v1/chat/rooms/{room}"), t, json!({"name": "mine"})).await.expect_error(404, "not_found");
        app.post(&format!("/api/v1/chat/rooms/{room}/participants"), Some(t), json!({"user_id": eve.id}))
            .await
            .expect_error(404, "not_found");
        app.delete(&format!("/api/v1/chat/rooms/{room}/participants/{}", ben.id), t).await.expect_error(404, "not_found");
        app.get(&format!("/api/v1/chat/messages/{msg}/thread"), t).await.expect_error(404, "not_found");
        app.get(&format!("/api/v1/chat/messages/{msg}/read_by"), t).await.expect_error(404, "not_found");
        app.patch(&format!("/api/v1/chat/messages/{msg}"), t, json!({"content": "x"})).await.expect_error(404, "not_found");
        app.delete(&format!("/api/v1/chat/messages/{msg}"), t).await.expect_error(404, "not_found");
        assert_eq!(app.get("/api/v1/chat/rooms", t).await.expect(200)["items"], json!([]));
        // Nothing was written by the attempts.
        assert_eq!(all_messages(&app, &ana, room).await.len(), 1);
        // Without a token: 401.
        app.call(Method::GET, "/api/v1/chat/rooms", None, None).await.expect_error(401, "unauthorized");
        app.call(Method::GET, &format!("/api/v1/chat/rooms/{room}/messages"), None, None)
            .await
            .expect_error(401, "unauthorized");
    }
}

api_test! {
    /// Groups: admins add, remove and rename; members may not; leaving and
    /// being removed end access; each change is a system message.
    async fn group_administration(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let cleo = app.register("cleo@example.org").await;
        let room = group_room(&app, &ana, &[&ben], "Tertulia").await;
        let got = app.get(&format!("/api/v1/chat/rooms/{room}"), &ben.access_token).await.expect(200);
        assert_eq!(got["name"], "Tertulia");
        assert_eq!(got["unread_count"], 1, "the group's first message");
        let roles: Vec<(i64, String)> = got["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["user"]["id"].as_i64().unwrap(), p["role"].as_str().unwrap().to_owned()))
            .collect();
        assert!(roles.contains(&(ana.id, "admin".into())));
        assert!(roles.contains(&(ben.id, "member".into())));

        app.post(&format!("/api/v1/chat/rooms/{room}/participants"), Some(&ben.access_token), json!({"user_id": cleo.id}))
            .await
            .expect_error(403, "forbidden");
        app.patch(&format!("/api/v1/chat/rooms/{room}"), &ben.access_token, json!({"name": "Mine"})).await.expect_error(403, "forbidden");
        let added = app
            .post(&format!("/api/v1/chat/rooms/{room}/participants"), Some(&ana.access_token), json!({"user_id": cleo.id}))
            .await
            .expect(200);
        assert_eq!(added["participants"].as_array().unwrap().len(), 3);
        let renamed = app.patch(&format!("/api/v1/chat/rooms/{room}"), &ana.access_token, json!({"name": "Club"})).await.expect(200);
        assert_eq!(renamed["name"], "Club");
        app.delete(&format!("/api/v1/chat/rooms/{room}/participants/{}", ben.id), &ana.access_token).await.expect(204);
        app.get(&format!("/api/v1/chat/rooms/{room}/messages"), &ben.access_token).await.expect_error(404, "not_found");
        // Cleo leaves by removing herself.
        app.delete(&format!("/api/v1/chat/rooms/{room}/participants/{}", cleo.id), &cleo.access_token).await.expect(204);
        let history = all_messages(&app, &ana, room).await;
        let texts: Vec<&str> = history.iter().map(|m| m["content"].as_str().unwrap()).collect();
        assert_eq!(texts, ["ana created the group “Tertulia”", "ana added cleo", "ana renamed the group to “Club”", "ana removed ben", "cleo left"]);
        assert!(history.iter().all(|m| m["message_type"] == "system"));
        // Private conversations are not left.
        let private = private_room(&app, &ana, &ben).await;
        app.delete(&format!("/api/v1/chat/rooms/{private}/participants/{}", ana.id), &ana.access_token)
            .await
            .expect_error(422, "unprocessable");
    }
}

api_test! {
    /// Blocks close private conversations both ways and keep the blocker
    /// out of reach of new ones.
    async fn blocks(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        say(&app, &ana, room, "hola").await;
        app.put(&format!("/api/v1/users/{}/block", ben.id), &ana.access_token).await.expect(200);
        for (user, text) in [(&ben, "why?"), (&ana, "bye")] {
            app.post(&format!("/api/v1/chat/rooms/{room}/messages"), Some(&user.access_token), json!({"content": text}))
                .await
                .expect_error(403, "forbidden");
        }
        // History stays readable; nothing new was stored.
        assert_eq!(all_messages(&app, &ben, room).await.len(), 1);
        let cleo = app.register("cleo@example.org").await;
        app.put(&format!("/api/v1/users/{}/block", cleo.id), &ana.access_token).await.expect(200);
        // Cleo cannot open a conversation with ana (who blocked her)...
        app.post("/api/v1/chat/rooms", Some(&cleo.access_token), json!({"room_type": "private", "participant_ids": [ana.id]}))
            .await
            .expect_error(404, "not_found");
        // ...nor add her to a group; ana must unblock cleo first.
        app.post("/api/v1/chat/rooms", Some(&cleo.access_token), json!({"room_type": "group", "name": "g", "participant_ids": [ana.id]}))
            .await
            .expect_error(404, "not_found");
        app.post("/api/v1/chat/rooms", Some(&ana.access_token), json!({"room_type": "private", "participant_ids": [cleo.id]}))
            .await
            .expect_error(422, "unprocessable");
        app.delete(&format!("/api/v1/users/{}/block", ben.id), &ana.access_token).await.expect(200);
        say(&app, &ben, room, "friends again").await;
    }
}

api_test! {
    /// Bad input is refused with the field named, and stores nothing.
    async fn validation_errors(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        let t = Some(ana.access_token.as_str());
        let rooms = "/api/v1/chat/rooms";
        for (body, field) in [
            (json!({"participant_ids": [ben.id]}), "room_type"),
            (json!({"room_type": "salon", "participant_ids": [ben.id]}), "room_type"),
            (json!({"room_type": "private", "participant_ids": []}), "participant_ids"),
            (json!({"room_type": "private", "participant_ids": [ben.id, 999]}), "participant_ids"),
            (json!({"room_type": "private", "participant_ids": [ben.id], "name": "x"}), "name"),
            (json!({"room_type": "group", "participant_ids": [ben.id]}), "name"),
            (json!({"room_type": "group", "participant_ids": [ben.id], "name": "  "}), "name"),
            (json!({"room_type": "group", "participant_ids": [ben.id, ben.id], "name": "g"}), "participant_ids[1]"),
            (json!({"room_type": "group", "participant_ids": [-4], "name": "g"}), "participant_ids[0]"),
            (json!({"room_type": "group", "participant_ids": [ben.id], "name": "g", "topic": "x"}), "topic"),
        ] {
            let err = app.post(rooms, t, body.clone()).await.expect_error(400, "validation_failed");
            assert!(err["error"]["details"]["fields"][field].is_string(), "{body}: {err}");
        }
        app.post(rooms, t, json!({"room_type": "voice_room", "participant_ids": [ben.id]})).await.expect_error(422, "unprocessable");
        app.post(rooms, t, json!({"room_type": "private", "participant_ids": [999_999]})).await.expect_error(404, "not_found");

        let send = format!("/api/v1/chat/rooms/{room}/messages");
        let mine = app
            .post("/api/v1/chat/rooms", Some(&ben.access_token), json!({"room_type": "private", "participant_ids": [app.register("cleo@example.org").await.id]}))
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
        let elsewhere = say(&app, &ben, mine, "elsewhere").await["id"].as_i64().unwrap();
        for (body, field) in [
            (json!({}), "content"),
            (json!({"content": ""}), "content"),
            (json!({"content": " \n "}), "content"),
            (json!({"content": "x".repeat(4001)}), "content"),
            (json!({"content": 5}), "content"),
            (json!({"content": "hi", "message_type": "system"}), "message_type"),
            (json!({"content": "hi", "message_type": "sticker"}), "message_type"),
            (json!({"content": "hi", "client_msg_id": ""}), "client_msg_id"),
            (json!({"content": "hi", "client_msg_id": "x".repeat(65)}), "client_msg_id"),
            (json!({"message_type": "image"}), "media_id"),
            (json!({"content": "hi", "media_id": 3}), "media_id"),
            (json!({"message_type": "image", "media_id": 424242}), "media_id"),
            (json!({"content": "hi", "sender_id": ben.id}), "sender_id"),
        ] {
            let err = app.post(&send, t, body.clone()).await.expect_error(400, "validation_failed");
            assert!(err["error"]["details"]["fields"][field].is_string(), "{body}: {err}");
        }
        app.post(&send, t, json!({"content": "re", "reply_to": elsewhere})).await.expect_error(422, "unprocessable");
        let raw = |content_type: &'static str, body: &'static str| {
            let request = app
                .client
                .post(app.url(&send))
                .bearer_auth(&ana.access_token)
                .header("content-type", content_type)
                .body(body);
            async move { TestApp::reply(request.send().await.unwrap()).await }
        };
        raw("application/json", "{\"content\": ").await.expect_error(400, "malformed_json");
        raw("text/plain", "hi").await.expect_error(415, "unsupported_media_type");
        app.get("/api/v1/chat/rooms/abc", &ana.access_token).await.expect_error(400, "bad_request");
        for query in ["before_seq=-1", "after_seq=x", "limit=0", "limit=101", "cursor=1"] {
            app.get(&format!("{send}?{query}"), &ana.access_token).await.expect_error(400, "validation_failed");
        }
        app.get("/api/v1/chat/rooms?cursor=nonsense", &ana.access_token).await.expect_error(400, "validation_failed");
        app.post(&format!("/api/v1/chat/rooms/{room}/read"), t, json!({"seq": -1})).await.expect_error(400, "validation_failed");
        app.post(&format!("/api/v1/chat/rooms/{room}/read"), t, json!({})).await.expect_error(400, "validation_failed");
        app.patch(&format!("/api/v1/chat/rooms/{room}"), &ana.access_token, json!({"name": "private rooms have no name"}))
            .await
            .expect_error(422, "unprocessable");
        assert!(all_messages(&app, &ana, room).await.is_empty(), "nothing was stored");
    }
}

api_test! {
    /// Ten senders, a hundred messages each, at once, into one room: every
    /// seq from 1 to 1000 exactly once, and no message lost or doubled.
    async fn concurrent_senders_get_every_seq_once(app) {
        let mut users = Vec::new();
        for i in 0..10 {
            users.push(app.register(&format!("s{i}@example.org")).await);
        }
        let admin = &users[0];
        let others: Vec<&TestUser> = users[1..].iter().collect();
        let room = group_room(&app, admin, &others, "load").await;
        // The group's first message takes seq 1.
        let mut tasks = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let app = app.clone();
            let user = user.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for k in 0..100 {
                    let body = json!({"client_msg_id": format!("{i}-{k}"), "content": format!("{i}:{k}")});
                    let reply = app.post(&format!("/api/v1/chat/rooms/{room}/messages"), Some(&user.access_token), body).await;
                    acked.push(reply.expect(201)["seq"].as_i64().unwrap());
                }
                acked
            }));
        }
        let mut acked = Vec::new();
        for task in tasks {
            acked.extend(task.await.unwrap());
        }
        let unique: HashSet<i64> = acked.iter().copied().collect();
        assert_eq!(unique.len(), 1000, "every ack has its own seq");
        let stored = all_messages(&app, admin, room).await;
        let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=1001).collect::<Vec<_>>());
        let contents: HashSet<&str> = stored[1..].iter().map(|m| m["content"].as_str().unwrap()).collect();
        assert_eq!(contents.len(), 1000);
        assert_eq!(unique, seqs[1..].iter().copied().collect::<HashSet<_>>(), "what was acked is what is stored");
    }
}

api_test! {
    /// The room list is ordered by last activity, pages without repeats,
    /// and costs the same number of statements whatever its length.
    async fn room_list_order_and_cost(app) {
        let ana = app.register("ana@example.org").await;
        let mut rooms = Vec::new();
        let mut others = Vec::new();
        for i in 0..6 {
            let other = app.register(&format!("u{i}@example.org")).await;
            rooms.push(private_room(&app, &ana, &other).await);
            others.push(other);
        }
        say(&app, &others[1], rooms[1], "bump 1").await;
        say(&app, &ana, rooms[3], "bump 3").await;
        let list = app.get("/api/v1/chat/rooms", &ana.access_token).await.expect(200);
        assert_eq!(room_ids(&list), vec![rooms[3], rooms[1], rooms[5], rooms[4], rooms[2], rooms[0]]);
        assert_eq!(list["items"][1]["unread_count"], 1);
        assert_eq!(list["items"][0]["unread_count"], 0);
        let mut paged = Vec::new();
        let mut url = "/api/v1/chat/rooms?limit=4".to_owned();
        loop {
            let page = app.get(&url, &ana.access_token).await.expect(200);
            paged.extend(room_ids(&page));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("/api/v1/chat/rooms?limit=4&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(paged, room_ids(&list));

        let (small, few) = app.get_counting("/api/v1/chat/rooms?limit=2", &ana.access_token).await;
        assert_eq!(small.expect(200)["items"].as_array().unwrap().len(), 2);
        let (large, many) = app.get_counting("/api/v1/chat/rooms?limit=100", &ana.access_token).await;
        assert_eq!(large.expect(200)["items"].as_array().unwrap().len(), 6);
        assert_eq!(few, many, "statements do not grow with the number of rooms");
    }
}

api_test! {
    /// A message to someone not viewing the room becomes a notification;
    /// reading the room to the end marks it read.
    async fn messages_notify_and_reading_clears(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        say(&app, &ana, room, "¿Estás?").await;
        let last = say(&app, &ana, room, "¿Hola?").await["seq"].as_i64().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let body = app.get("/api/v1/notifications", &ben.access_token).await.expect(200);
            let found = body["items"].as_array().unwrap().iter().any(|n| {
                n["notification_type"] == "message" && n["data"]["room_id"] == room && n["data"]["seq"] == last
            });
            if found {
                break;
            }
            assert!(Instant::now() < deadline, "no message notification: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let unread = |app: TestApp, user: TestUser| async move {
            app.get("/api/v1/notifications/unread_count", &user.access_token).await.expect(200)["unread_count"].as_i64().unwrap()
        };
        assert_eq!(unread(app.clone(), ben.clone()).await, 1);
        app.post(&format!("/api/v1/chat/rooms/{room}/read"), Some(&ben.access_token), json!({"seq": 1})).await.expect(200);
        assert_eq!(unread(app.clone(), ben.clone()).await, 1, "not caught up yet");
        app.post(&format!("/api/v1/chat/rooms/{room}/read"), Some(&ben.access_token), json!({"seq": last})).await.expect(200);
        assert_eq!(unread(app.clone(), ben.clone()).await, 0);
        assert_eq!(unread(app.clone(), ana.clone()).await, 0, "the sender is not notified");
    }
}

api_test! {
    /// Sharing a moment into a chat: a message carrying the moment, counted
    /// in shares_count; only public moments, only into one's own rooms.
    async fn share_moments_into_chats(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let eve = app.register("eve@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        let public = post_moment(&app, &eve, "Un día precioso en Sevilla", "public").await;
        let followers = post_moment(&app, &ana, "solo amigos", "followers").await;
        let private = post_moment(&app, &eve, "secreto", "private").await;
        let share = |id: i64, body: Value| {
            let app = app.clone();
            let token = ana.access_token.clone();
            async move { app.post(&format!("/api/v1/moments/{id}/share"), Some(&token), body).await }
        };

        let message = share(public, json!({"to": "chat", "room_id": room})).await.expect(201);
        assert_eq!(message["shared_moment_id"], public);
        assert_eq!(message["room_id"], room);
        assert_eq!(message["message_type"], "text");
        assert_eq!(message["content"], "eve: Un día precioso en Sevilla");
        let with_words = share(public, json!({"to": "chat", "room_id": room, "content": "¡Mira!"})).await.expect(201);
        assert_eq!(with_words["content"], "¡Mira!");
        // Ben sees the share in the conversation and can open the moment.
        let seen = all_messages(&app, &ben, room).await;
        assert_eq!(seen.len(), 2);
        let moment = app.get(&format!("/api/v1/moments/{public}"), &ben.access_token).await.expect(200);
        assert_eq!(moment["shares_count"], 2);
        // A repost still answers the repost.
        let repost = share(public, json!({"to": "feed"})).await.expect(201);
        assert_eq!(repost["shared_moment_id"], public);
        assert!(repost["user"].is_object());
        assert_eq!(app.get(&format!("/api/v1/moments/{public}"), &ben.access_token).await.expect(200)["shares_count"], 3);

        share(followers, json!({"to": "chat", "room_id": room})).await.expect_error(422, "unprocessable");
        share(private, json!({"to": "chat", "room_id": room})).await.expect_error(404, "not_found");
        share(public, json!({"to": "chat"})).await.expect_error(400, "validation_failed");
        share(public, json!({"to": "chat", "room_id": room, "visibility": "public"})).await.expect_error(400, "validation_failed");
        share(public, json!({"to": "feed", "room_id": room})).await.expect_error(400, "validation_failed");
        share(public, json!({"to": "chat", "room_id": 999_999})).await.expect_error(404, "not_found");
        let not_mine = private_room(&app, &ben, &eve).await;
        share(public, json!({"to": "chat", "room_id": not_mine})).await.expect_error(404, "not_found");
        assert_eq!(app.get(&format!("/api/v1/moments/{public}"), &ben.access_token).await.expect(200)["shares_count"], 3);

        // Deleting the shared message takes its share back.
        let id = with_words["id"].as_i64().unwrap();
        app.delete(&format!("/api/v1/chat/messages/{id}"), &ana.access_token).await.expect(204);
        assert_eq!(app.get(&format!("/api/v1/moments/{public}"), &ben.access_token).await.expect(200)["shares_count"], 2);
    }
}

api_test! {
    /// Reports on messages: a participant may report a message of their
    /// conversation (not their own); anyone else gets 404.
    async fn report_messages(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let eve = app.register("eve@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        let rude = say(&app, &ben, room, "something rude").await["id"].as_i64().unwrap();
        let report = app
            .post("/api/v1/reports", Some(&ana.access_token), json!({"report_type": "harassment", "reported_message": rude}))
            .await
            .expect(201);
        assert_eq!(report["reported_message"], rude);
        app.post("/api/v1/reports", Some(&eve.access_token), json!({"report_type": "spam", "reported_message": rude}))
            .await
            .expect_error(404, "not_found");
        app.post("/api/v1/reports", Some(&ben.access_token), json!({"report_type": "spam", "reported_message": rude}))
            .await
            .expect_error(422, "unprocessable");
    }
}
