//! Notifications: from domain events (published on the app's bus, as the
//! social, chat and call services do) to the API, live delivery and push
//! through stand-ins of FCM, APNs and a Web Push service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use palaver_push::live::ChannelLive;
use palaver_push::providers::VapidKey;
use palaver_push::testing::{ApnsStandIn, FcmStandIn, WebPushStandIn};
use palaver_service::DomainEvent;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, api_test, spawn_app_with};

const WAIT: Duration = Duration::from_secs(15);

fn publish(app: &TestApp, event: DomainEvent) {
    app.state.services.events.publish(event);
}

/// Polls the caller's notifications until `done` holds (or fails after
/// `WAIT`), returning the list.
async fn wait_notifications(app: &TestApp, user: &TestUser, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = app.get("/api/v1/notifications", &user.access_token).await.expect(200);
        let items = body["items"].as_array().unwrap().clone();
        if done(&items) {
            return items;
        }
        assert!(Instant::now() < deadline, "notifications never matched: {items:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn unread(app: &TestApp, user: &TestUser) -> i64 {
    app.get("/api/v1/notifications/unread_count", &user.access_token).await.expect(200)["unread_count"]
        .as_i64()
        .unwrap()
}

fn liked(moment_id: i64, author: &TestUser, actor: &TestUser) -> DomainEvent {
    DomainEvent::MomentLiked { moment_id, author_id: author.id, actor_id: actor.id }
}

/// A follow used as a marker: events for one recipient are handled in
/// order, so once it shows, everything published before it was handled.
async fn marker(app: &TestApp, to: &TestUser, from: &TestUser) {
    publish(app, DomainEvent::Followed { follower_id: from.id, followee_id: to.id });
    wait_notifications(app, to, |items| {
        items.iter().any(|n| n["notification_type"] == "follow" && n["data"]["user_id"] == from.id)
    })
    .await;
}

/// Inserts a block row directly (the block API belongs to the social
/// module); test-only.
async fn insert_block(app: &TestApp, blocker: i64, blocked: i64) {
    use sqlx::ConnectOptions as _;
    let sql = "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)";
    let at = palaver_core::time::now();
    if let Some(schema) = &app.db_options.pg_schema {
        let options: sqlx::postgres::PgConnectOptions = app.db_options.url.parse().unwrap();
        let mut conn = options.options([("search_path", schema.as_str())]).connect().await.unwrap();
        sqlx::query(sql).bind(blocker).bind(blocked).bind(at).execute(&mut conn).await.unwrap();
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = app.db_options.url.parse().unwrap();
        let mut conn = options.connect().await.unwrap();
        sqlx::query(sql).bind(blocker).bind(blocked).bind(at).execute(&mut conn).await.unwrap();
    }
}

api_test! {
    async fn likes_aggregate_and_unlikes_take_them_back(app) {
        let ana = app.register("ana@example.org").await;
        let mut likers = Vec::new();
        for name in ["ben", "cleo", "dan", "eve"] {
            likers.push(app.register(&format!("{name}@example.org")).await);
        }
        for liker in &likers {
            publish(&app, liked(7, &ana, liker));
        }
        let items = wait_notifications(&app, &ana, |items| items.first().is_some_and(|n| n["actor_count"] == 4)).await;
        assert_eq!(items.len(), 1, "one notification for four likes: {items:?}");
        assert_eq!(items[0]["notification_type"], "like");
        assert_eq!(items[0]["title"], "4 new likes");
        assert_eq!(items[0]["message"], "eve and 3 others liked your moment");
        assert_eq!(items[0]["data"]["moment_id"], 7);
        assert_eq!(unread(&app, &ana).await, 1);

        // Eve takes hers back: the notification is rewritten in place.
        publish(&app, DomainEvent::MomentUnliked { moment_id: 7, author_id: ana.id, actor_id: likers[3].id });
        let items = wait_notifications(&app, &ana, |items| items.first().is_some_and(|n| n["actor_count"] == 3)).await;
        assert_eq!(items[0]["message"], "dan and 2 others liked your moment");
        // Everyone takes theirs back: nothing stale is left.
        for liker in &likers[..3] {
            publish(&app, DomainEvent::MomentUnliked { moment_id: 7, author_id: ana.id, actor_id: liker.id });
        }
        wait_notifications(&app, &ana, <[Value]>::is_empty).await;
        assert_eq!(unread(&app, &ana).await, 0);

        // Liking one's own moment notifies nobody.
        publish(&app, liked(8, &ana, &ana));
        marker(&app, &ana, &likers[0]).await;
        let items = wait_notifications(&app, &ana, |_| true).await;
        assert!(items.iter().all(|n| n["notification_type"] != "like"), "{items:?}");
    }
}

api_test! {
    async fn blocked_users_cause_no_notifications(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let cleo = app.register("cleo@example.org").await;
        insert_block(&app, ana.id, ben.id).await;
        publish(&app, liked(1, &ana, &ben));
        publish(&app, DomainEvent::Commented {
            comment_id: 5, moment_id: 1, moment_author_id: ana.id, parent: None, actor_id: ben.id,
        });
        // Ben blocked by Ana, and Ana blocking is symmetric for Ben too.
        publish(&app, DomainEvent::Followed { follower_id: ana.id, followee_id: ben.id });
        marker(&app, &ana, &cleo).await;
        marker(&app, &ben, &cleo).await;
        let items = wait_notifications(&app, &ana, |_| true).await;
        assert_eq!(items.len(), 1, "only Cleo's follow: {items:?}");
        let items = wait_notifications(&app, &ben, |_| true).await;
        assert_eq!(items.len(), 1, "only Cleo's follow: {items:?}");
    }
}

api_test! {
    async fn comments_replies_messages_and_calls(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let cleo = app.register("cleo@example.org").await;
        // Cleo replies to Ben's comment on Ana's moment: Ben gets a reply,
        // Ana a comment.
        publish(&app, DomainEvent::Commented {
            comment_id: 11, moment_id: 3, moment_author_id: ana.id, parent: Some((10, ben.id)), actor_id: cleo.id,
        });
        let items = wait_notifications(&app, &ben, |i| !i.is_empty()).await;
        assert_eq!(items[0]["notification_type"], "comment");
        assert_eq!(items[0]["message"], "cleo replied to your comment");
        assert_eq!(items[0]["data"]["parent_comment_id"], 10);
        let items = wait_notifications(&app, &ana, |i| !i.is_empty()).await;
        assert_eq!(items[0]["message"], "cleo commented on your moment");
        assert_eq!(items[0]["data"]["comment_id"], 11);

        // Two messages in one room are one notification.
        for (seq, text) in [(1, "hola"), (2, "¿hablamos?")] {
            publish(&app, DomainEvent::MessageSent {
                room_id: 9, message_id: 100 + seq, seq, sender_id: ben.id, sender_name: "ben".into(),
                preview: text.into(), notify_user_ids: vec![cleo.id],
            });
        }
        let items = wait_notifications(&app, &cleo, |i| i.first().is_some_and(|n| n["event_count"] == 2)).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["notification_type"], "message");
        assert_eq!(items[0]["title"], "ben");
        assert_eq!(items[0]["message"], "2 new messages: ¿hablamos?");
        assert_eq!(items[0]["data"]["room_id"], 9);
        assert_eq!(items[0]["data"]["seq"], 2);

        // A call rings, then is missed: one notification, now "missed".
        publish(&app, DomainEvent::CallIncoming { call_id: 4, caller_id: ana.id, receiver_id: ben.id, call_type: "video".into() });
        let items = wait_notifications(&app, &ben, |i| i.iter().any(|n| n["notification_type"] == "call")).await;
        assert_eq!(items[0]["title"], "Incoming video call");
        publish(&app, DomainEvent::CallMissed { call_id: 4, caller_id: ana.id, receiver_id: ben.id, call_type: "video".into() });
        let items = wait_notifications(&app, &ben, |i| i.first().is_some_and(|n| n["title"] == "Missed video call")).await;
        assert_eq!(items.iter().filter(|n| n["notification_type"] == "call").count(), 1);
        assert_eq!(items[0]["message"], "ana called you");
        assert_eq!(items[0]["data"]["call_id"], 4);
    }
}

api_test! {
    async fn unread_counts_paging_and_marking_read(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        for moment in 1..=3 {
            publish(&app, liked(moment, &ana, &ben));
        }
        let items = wait_notifications(&app, &ana, |i| i.len() == 3).await;
        let ids: Vec<i64> = items.iter().map(|n| n["id"].as_i64().unwrap()).collect();
        assert!(ids[0] > ids[1] && ids[1] > ids[2], "newest first");
        assert_eq!(unread(&app, &ana).await, 3);

        let page = app.get("/api/v1/notifications?limit=2", &ana.access_token).await.expect(200);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let cursor = page["next_cursor"].as_str().unwrap();
        let rest = app.get(&format!("/api/v1/notifications?limit=2&cursor={cursor}"), &ana.access_token).await.expect(200);
        assert_eq!(rest["items"][0]["id"], ids[2]);
        assert_eq!(rest["next_cursor"], Value::Null);

        let read = app.post(&format!("/api/v1/notifications/{}/read", ids[1]), Some(&ana.access_token), json!({})).await.expect(200);
        assert_eq!(read["is_read"], true);
        assert!(read["read_at"].is_string());
        assert_eq!(unread(&app, &ana).await, 2);
        let only_unread = app.get("/api/v1/notifications?unread=true", &ana.access_token).await.expect(200);
        let unread_ids: Vec<i64> = only_unread["items"].as_array().unwrap().iter().map(|n| n["id"].as_i64().unwrap()).collect();
        assert_eq!(unread_ids, vec![ids[0], ids[2]]);

        // Not Ben's to mark; bad input is refused.
        app.post(&format!("/api/v1/notifications/{}/read", ids[0]), Some(&ben.access_token), json!({}))
            .await
            .expect_error(404, "not_found");
        app.get("/api/v1/notifications?cursor=abc", &ana.access_token).await.expect_error(400, "validation_failed");
        app.get("/api/v1/notifications?limit=1000", &ana.access_token).await.expect_error(400, "validation_failed");
        app.get("/api/v1/notifications?unread=maybe", &ana.access_token).await.expect_error(400, "validation_failed");
        app.post("/api/v1/notifications/abc/read", Some(&ana.access_token), json!({})).await.expect_error(400, "bad_request");
        app.call(Method::GET, "/api/v1/notifications", None, None).await.expect_error(401, "unauthorized");

        // Mark all read up to the one shown: a newer one stays unread.
        let all = app
            .post(&format!("/api/v1/notifications/read_all?up_to_id={}", ids[2]), Some(&ana.access_token), json!({}))
            .await
            .expect(200);
        assert_eq!(all["marked"], 1);
        assert_eq!(all["unread_count"], 1);
        let all = app.post("/api/v1/notifications/read_all", Some(&ana.access_token), json!({})).await.expect(200);
        assert_eq!(all["marked"], 1);
        assert_eq!(unread(&app, &ana).await, 0);
        assert_eq!(unread(&app, &ben).await, 0);
    }
}

api_test! {
    async fn live_delivery_carries_the_notification_and_the_unread_count(app) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        app.state.notifications.set_live_publisher(std::sync::Arc::new(ChannelLive(tx)));
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let cleo = app.register("cleo@example.org").await;
        let mut next = async || tokio::time::timeout(WAIT, rx.recv()).await.expect("a live event").unwrap();

        publish(&app, liked(1, &ana, &ben));
        let (user, event_type, data) = next().await;
        assert_eq!((user, event_type.as_str()), (ana.id, "notification"));
        assert_eq!(data["action"], "created");
        assert_eq!(data["unread_count"], 1);
        assert_eq!(data["notification"]["message"], "ben liked your moment");
        let id = data["notification"]["id"].as_i64().unwrap();

        publish(&app, liked(1, &ana, &cleo));
        let (_, _, data) = next().await;
        assert_eq!(data["action"], "updated");
        assert_eq!(data["notification"]["id"], id);
        assert_eq!(data["notification"]["message"], "cleo and ben liked your moment");
        assert_eq!(data["unread_count"], 1);

        app.post(&format!("/api/v1/notifications/{id}/read"), Some(&ana.access_token), json!({})).await.expect(200);
        let (user, _, data) = next().await;
        assert_eq!(user, ana.id);
        assert_eq!(data["action"], "read");
        assert_eq!(data["notification_id"], id);
        assert_eq!(data["unread_count"], 0);

        publish(&app, DomainEvent::MomentUnliked { moment_id: 1, author_id: ana.id, actor_id: ben.id });
        publish(&app, liked(2, &ana, &ben));
        let (_, _, data) = next().await;
        assert_eq!(data["action"], "created", "the read notification was left alone; a new like is new");
        assert_eq!(data["notification"]["data"]["moment_id"], 2);
    }
}

api_test! {
    async fn preferences_round_trip_and_refuse_bad_input(app) {
        let ana = app.register("ana@example.org").await;
        let prefs = app.get("/api/v1/notifications/preferences", &ana.access_token).await.expect(200);
        assert_eq!(prefs["types"].as_object().unwrap().len(), 8, "every type listed: {prefs}");
        assert_eq!(prefs["types"]["like"], json!({"in_app": true, "push": true}));
        assert_eq!(prefs["quiet_hours"], Value::Null);

        let put = |body: Value| {
            let app = app.clone();
            let token = ana.access_token.clone();
            async move { app.call(Method::PUT, "/api/v1/notifications/preferences", Some(&token), Some(body)).await }
        };
        let saved = put(json!({
            "types": {"like": {"push": false}, "follow": {"in_app": false, "push": false}},
            "quiet_hours": {"start": "22:30", "end": "07:00", "timezone": "Europe/Madrid"}
        }))
        .await
        .expect(200);
        assert_eq!(saved["types"]["like"], json!({"in_app": true, "push": false}));
        assert_eq!(saved["types"]["comment"], json!({"in_app": true, "push": true}));
        assert_eq!(saved["quiet_hours"]["allow_calls"], true);
        let read = app.get("/api/v1/notifications/preferences", &ana.access_token).await.expect(200);
        assert_eq!(read, saved);

        let bad = put(json!({"quiet_hours": {"start": "25:00", "end": "07:00", "timezone": "Mars/Base"}}))
            .await
            .expect_error(400, "validation_failed");
        let fields = bad["error"]["details"]["fields"].as_object().unwrap();
        assert!(fields.contains_key("quiet_hours.start") && fields.contains_key("quiet_hours.timezone"), "{bad}");
        put(json!({"types": {"likes": {}}})).await.expect_error(400, "validation_failed");
        put(json!({"types": {"like": {"sms": true}}})).await.expect_error(400, "validation_failed");
        put(json!({"colour": "blue"})).await.expect_error(400, "validation_failed");
        let unchanged = app.get("/api/v1/notifications/preferences", &ana.access_token).await.expect(200);
        assert_eq!(unchanged, saved, "bad input changed nothing");

        // Follows are off entirely: none is stored.
        let ben = app.register("ben@example.org").await;
        publish(&app, DomainEvent::Followed { follower_id: ben.id, followee_id: ana.id });
        publish(&app, liked(1, &ana, &ben));
        let items = wait_notifications(&app, &ana, |i| !i.is_empty()).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["notification_type"], "like");
    }
}

api_test! {
    async fn push_tokens_register_move_and_unregister(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let token = "fcm:APA91b-test_token.1";
        let created = app
            .post("/api/v1/push-tokens", Some(&ana.access_token), json!({"token": token, "device_type": "android"}))
            .await
            .expect(201);
        assert_eq!(created["device_type"], "android");
        assert_eq!(created["user_id"], ana.id);
        let mine = app.get("/api/v1/push-tokens", &ana.access_token).await.expect(200);
        assert_eq!(mine["items"].as_array().unwrap().len(), 1);

        // Ben signs in on the same phone: the token moves to him.
        app.post("/api/v1/push-tokens", Some(&ben.access_token), json!({"token": token, "device_type": "android"}))
            .await
            .expect(201);
        assert!(app.get("/api/v1/push-tokens", &ana.access_token).await.expect(200)["items"].as_array().unwrap().is_empty());
        let path = format!("/api/v1/push-tokens/{}", token.replace(':', "%3A"));
        app.call(Method::DELETE, &path, Some(&ana.access_token), None).await.expect_error(404, "not_found");
        app.call(Method::DELETE, &path, Some(&ben.access_token), None).await.expect(204);
        assert!(app.get("/api/v1/push-tokens", &ben.access_token).await.expect(200)["items"].as_array().unwrap().is_empty());

        let bad = |body: Value, field: &'static str| {
            let app = app.clone();
            let t = ana.access_token.clone();
            async move {
                let body = app.post("/api/v1/push-tokens", Some(&t), body).await.expect_error(400, "validation_failed");
                assert!(body["error"]["details"]["fields"].get(field).is_some(), "{field} named: {body}");
            }
        };
        bad(json!({"token": "not-hex", "device_type": "ios"}), "token").await;
        bad(json!({"device_type": "android"}), "token").await;
        bad(json!({"token": "x", "device_type": "windows"}), "device_type").await;
        bad(json!({"device_type": "web"}), "web_push").await;
        bad(json!({"device_type": "web", "web_push": {"endpoint": "https://169.254.169.254/x",
            "keys": {"p256dh": "BP", "auth": "YQ"}}}), "web_push.endpoint").await;
        bad(json!({"device_type": "web", "web_push": {"endpoint": "https://fcm.googleapis.com/fcm/send/x",
            "keys": {"p256dh": "not-a-key", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}}), "web_push.keys.p256dh").await;
        bad(json!({"token": "abc", "device_type": "android", "web_push": {"endpoint": "https://fcm.googleapis.com/x",
            "keys": {"p256dh": "x", "auth": "y"}}}), "web_push").await;
        assert!(app.get("/api/v1/push-tokens", &ana.access_token).await.expect(200)["items"].as_array().unwrap().is_empty());

        // A browser subscription from an allowed push service.
        let ua = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        use base64::Engine as _;
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let endpoint = "https://fcm.googleapis.com/fcm/send/abc:def";
        let web = app
            .post("/api/v1/push-tokens", Some(&ana.access_token), json!({"device_type": "web", "web_push": {
                "endpoint": endpoint, "expirationTime": null,
                "keys": {"p256dh": b64.encode(ua.public_key().to_encoded_point(false).as_bytes()), "auth": b64.encode([7u8; 16])}}}))
            .await
            .expect(201);
        assert_eq!(web["token"], endpoint);
        assert_eq!(web["web_push"]["endpoint"], endpoint);
        let encoded: String = endpoint.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        app.call(Method::DELETE, &format!("/api/v1/push-tokens/{encoded}"), Some(&ana.access_token), None).await.expect(204);
    }
}

api_test! {
    async fn admins_send_platform_notifications(app) {
        let ana = app.register("ana@example.org").await;
        let root = app.register("root@example.org").await;
        app.store.set_role(root.id, palaver_core::user::Role::Admin, palaver_core::time::now()).await.unwrap();
        let body = json!({"user_ids": [ana.id], "notification_type": "lesson_complete", "title": "Lesson 3 done",
                          "message": "You finished Greetings", "data": {"lesson_id": 3}});
        app.post("/api/v1/admin/notifications", Some(&ana.access_token), body.clone()).await.expect_error(403, "forbidden");
        let sent = app.post("/api/v1/admin/notifications", Some(&root.access_token), body).await.expect(201);
        assert_eq!(sent["items"].as_array().unwrap().len(), 1);
        let items = wait_notifications(&app, &ana, |i| !i.is_empty()).await;
        assert_eq!(items[0]["notification_type"], "lesson_complete");
        assert_eq!(items[0]["title"], "Lesson 3 done");
        assert_eq!(items[0]["message"], "You finished Greetings");
        assert_eq!(items[0]["data"]["lesson_id"], 3);

        let refuse = |body: Value, status: u16, code: &'static str| {
            let app = app.clone();
            let t = root.access_token.clone();
            async move { app.post("/api/v1/admin/notifications", Some(&t), body).await.expect_error(status, code) }
        };
        refuse(json!({"user_ids": [ana.id], "notification_type": "like", "title": "x"}), 400, "validation_failed").await;
        refuse(json!({"user_ids": [], "notification_type": "system", "title": "x"}), 400, "validation_failed").await;
        refuse(json!({"user_ids": [ana.id], "notification_type": "system", "title": ""}), 400, "validation_failed").await;
        refuse(json!({"user_ids": [ana.id], "notification_type": "system", "title": "x", "data": [1]}), 400, "validation_failed").await;
        refuse(json!({"user_ids": [ana.id + 999], "notification_type": "system", "title": "x"}), 404, "not_found").await;
        assert_eq!(unread(&app, &ana).await, 1, "refused requests sent nothing");
    }
}

/// Credential files for the stand-ins, kept for the app's lifetime.
struct PushFixtures {
    fcm: FcmStandIn,
    apns: ApnsStandIn,
    web: WebPushStandIn,
    vapid: VapidKey,
    dir: tempfile::TempDir,
}

impl PushFixtures {
    async fn start() -> Self {
        let vapid = VapidKey::from_secret(p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng));
        let fixtures = Self {
            fcm: FcmStandIn::start().await,
            apns: ApnsStandIn::start().await,
            web: WebPushStandIn::start(&vapid).await,
            vapid,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(fixtures.fcm_file(), fixtures.fcm.service_account_json().to_string()).unwrap();
        std::fs::write(fixtures.apns_file(), &fixtures.apns.config().key_pem).unwrap();
        fixtures
    }

    fn fcm_file(&self) -> PathBuf {
        self.dir.path().join("fcm.json")
    }

    fn apns_file(&self) -> PathBuf {
        self.dir.path().join("apns.p8")
    }

    fn configure(&self, config: &mut palaver_server::Config) {
        let apns = self.apns.config();
        config.fcm_service_account_file = Some(self.fcm_file());
        config.fcm_base_url = format!("http://{}", self.fcm.addr);
        config.apns_key_file = Some(self.apns_file());
        config.apns_key_id = Some(apns.key_id);
        config.apns_team_id = Some(apns.team_id);
        config.apns_topic = Some(apns.topic);
        config.apns_base_url = Some(apns.base_url);
        config.vapid_private_key = Some(secrecy::SecretString::from(self.vapid.private_key_base64()));
        config.vapid_subject = Some("mailto:ops@palaver.example".into());
        config.webpush_allowed_hosts = vec!["127.0.0.1".into()];
        config.webpush_allow_http = true;
    }
}

async fn register_devices(app: &TestApp, user: &TestUser, fixtures: &PushFixtures) -> (String, String, String) {
    let android = format!("android-{}", user.id);
    let ios = format!("{:064x}", user.id);
    app.post("/api/v1/push-tokens", Some(&user.access_token), json!({"token": android, "device_type": "android"}))
        .await
        .expect(201);
    app.post("/api/v1/push-tokens", Some(&user.access_token), json!({"token": ios, "device_type": "ios"}))
        .await
        .expect(201);
    let sub = fixtures.web.subscribe();
    app.post("/api/v1/push-tokens", Some(&user.access_token), json!({"device_type": "web", "web_push": sub}))
        .await
        .expect(201);
    let id = sub.endpoint.rsplit('/').next().unwrap().to_owned();
    (android, ios, id)
}

async fn spawn_with_push(
    backend: Backend,
    fixtures: &PushFixtures,
    tweak: impl FnOnce(&mut palaver_server::Config),
) -> Option<TestApp> {
    spawn_app_with(backend, |c| {
        fixtures.configure(c);
        tweak(c);
    })
    .await
}

async fn messages_reach_every_device(backend: Backend) {
    let fixtures = PushFixtures::start().await;
    let Some(app) = spawn_with_push(backend, &fixtures, |_| {}).await else { return };
    let ana = app.register("ana@example.org").await;
    let ben = app.register("ben@example.org").await;
    let config = app.get("/api/v1/notifications/push-config", &ana.access_token).await.expect(200);
    assert_eq!(config["vapid_public_key"], fixtures.vapid.public_key_base64());
    assert_eq!(config["device_types"], json!(["ios", "android", "web"]));
    let (android, ios, web) = register_devices(&app, &ana, &fixtures).await;

    publish(
        &app,
        DomainEvent::MessageSent {
            room_id: 5,
            message_id: 50,
            seq: 1,
            sender_id: ben.id,
            sender_name: "ben".into(),
            preview: "¿Practicamos?".into(),
            notify_user_ids: vec![ana.id],
        },
    );
    let f = fixtures.fcm.stand_in.wait_for_deliveries(1, WAIT).await;
    let a = fixtures.apns.stand_in.wait_for_deliveries(1, WAIT).await;
    let w = fixtures.web.stand_in.wait_for_deliveries(1, WAIT).await;
    assert_eq!(f[0].token, android);
    assert_eq!(a[0].token, ios);
    assert_eq!(w[0].token, web);
    for d in [&f[0], &a[0], &w[0]] {
        assert_eq!(d.title, "ben");
        assert_eq!(d.body, "¿Practicamos?");
        assert!(d.high_priority, "messages wake the device");
        assert!(d.collapse_key.is_some(), "a burst collapses");
    }
    assert_eq!(f[0].payload["data"]["room_id"], "5");
    assert_eq!(a[0].payload["data"]["room_id"], 5);
    assert_eq!(a[0].payload["aps"]["badge"], 1);
    assert_eq!(w[0].payload["data"]["room_id"], 5);
    for s in [&fixtures.fcm.stand_in, &fixtures.apns.stand_in, &fixtures.web.stand_in] {
        assert!(s.violations().is_empty(), "{:?}", s.violations());
    }
    let items = wait_notifications(&app, &ana, |i| i.first().is_some_and(|n| n["is_sent"] == true)).await;
    assert_eq!(items[0]["notification_type"], "message");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for provider in ["fcm", "apns", "webpush"] {
        assert!(metrics.contains(&format!("push_sent_total{{provider=\"{provider}\"}}")), "{provider} counted");
    }

    // Unregistered on the device: pruned after the first failure.
    fixtures.fcm.stand_in.kill_token(&android);
    publish(&app, liked(1, &ana, &ben));
    fixtures.apns.stand_in.wait_for_deliveries(2, WAIT).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let tokens = app.get("/api/v1/push-tokens", &ana.access_token).await.expect(200);
        if tokens["items"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the dead token was not pruned: {tokens}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_every_device_sqlite() {
    messages_reach_every_device(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_every_device_postgres() {
    messages_reach_every_device(Backend::Postgres).await;
}

async fn quiet_hours(backend: Backend, defer: bool) {
    let fixtures = PushFixtures::start().await;
    let Some(app) = spawn_with_push(backend, &fixtures, |c| {
        c.quiet_hours_mode =
            if defer { palaver_push::QuietHoursMode::Defer } else { palaver_push::QuietHoursMode::Drop };
    })
    .await
    else {
        return;
    };
    let ana = app.register("ana@example.org").await;
    let ben = app.register("ben@example.org").await;
    let android = format!("android-{}", ana.id);
    app.post("/api/v1/push-tokens", Some(&ana.access_token), json!({"token": android, "device_type": "android"}))
        .await
        .expect(201);
    // Quiet from an hour ago to an hour from now, in UTC.
    let now = chrono::Utc::now();
    let hm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    app.call(Method::PUT, "/api/v1/notifications/preferences", Some(&ana.access_token), Some(json!({
        "quiet_hours": {"start": hm(now - chrono::TimeDelta::hours(1)), "end": hm(now + chrono::TimeDelta::hours(1)), "timezone": "UTC"}
    })))
    .await
    .expect(200);
    publish(&app, liked(1, &ana, &ben));
    wait_notifications(&app, &ana, |i| !i.is_empty()).await;
    // A ringing call still gets through (allow_calls defaults to true).
    publish(
        &app,
        DomainEvent::CallIncoming { call_id: 1, caller_id: ben.id, receiver_id: ana.id, call_type: "voice".into() },
    );
    let got = fixtures.fcm.stand_in.wait_for_deliveries(1, WAIT).await;
    assert_eq!(got[0].title, "Incoming voice call");
    assert_eq!(got[0].ttl_secs, Some(60), "a ringing push is useless after the ring");
    // The like is in the list but was not pushed: dropped, or waiting for
    // the end of the quiet hours.
    let deadline = Instant::now() + WAIT;
    while app.store.pending_push_count().await.unwrap() != i64::from(defer) {
        assert!(Instant::now() < deadline, "deferred: {defer}: {}", app.store.pending_push_count().await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fixtures.fcm.stand_in.deliveries().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_drop_pushes_but_not_calls_sqlite() {
    quiet_hours(Backend::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_defer_pushes_postgres() {
    quiet_hours(Backend::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_defer_pushes_sqlite() {
    quiet_hours(Backend::Sqlite, true).await;
}

/// The outbox is durable: pushes queued while the push service is down
/// survive a restart of the server and are delivered once each.
async fn outbox_survives_a_restart(backend: Backend) {
    let fixtures = PushFixtures::start().await;
    fixtures.fcm.stand_in.set_down(true);
    let Some(app) = spawn_with_push(backend, &fixtures, |_| {}).await else { return };
    let fan = app.register("fan@example.org").await;
    let mut users = Vec::new();
    for i in 0..5 {
        let u = app.register(&format!("u{i}@example.org")).await;
        app.post(
            "/api/v1/push-tokens",
            Some(&u.access_token),
            json!({"token": format!("android-{}", u.id), "device_type": "android"}),
        )
        .await
        .expect(201);
        publish(&app, DomainEvent::Followed { follower_id: fan.id, followee_id: u.id });
        users.push(u);
    }
    fixtures.fcm.stand_in.wait_for_requests(10, WAIT).await;
    assert!(fixtures.fcm.stand_in.deliveries().is_empty());
    let app = app.restart().await;
    assert_eq!(app.store.pending_push_count().await.unwrap(), 5, "nothing lost in the restart");
    fixtures.fcm.stand_in.set_down(false);
    let got = fixtures.fcm.stand_in.wait_for_deliveries(5, WAIT).await;
    let deadline = Instant::now() + WAIT;
    while app.store.pending_push_count().await.unwrap() > 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut per_id: HashMap<i64, usize> = HashMap::new();
    for d in fixtures.fcm.stand_in.deliveries() {
        *per_id.entry(d.notification_id.unwrap()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 5, "{got:?}");
    assert!(per_id.values().all(|c| *c == 1), "exactly once: {per_id:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_a_restart_sqlite() {
    outbox_survives_a_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_a_restart_postgres() {
    outbox_survives_a_restart(Backend::Postgres).await;
}
