//! Moments, feeds, likes, comments and shares over HTTP.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestUser, api_test, spawn_app_with};

pub async fn post_moment(app: &TestApp, user: &TestUser, content: &str, visibility: &str) -> i64 {
    let body = app
        .post("/api/v1/moments", Some(&user.access_token), json!({"content": content, "visibility": visibility}))
        .await
        .expect(201);
    body["id"].as_i64().unwrap()
}

/// Every id of a feed, walking all pages.
pub async fn feed_ids(app: &TestApp, user: &TestUser, query: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/moments?{query}&limit=7&cursor={c}"),
            None => format!("/api/v1/moments?{query}&limit=7"),
        };
        let body = app.get(&path, &user.access_token).await.expect(200);
        ids.extend(body["items"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

api_test! {
    /// (public|followers|private) x (author|follower|stranger|blocked|blocker)
    /// x (home|public|user feed|GET by id).
    async fn visibility_matrix(app) {
        let author = app.register("author@example.org").await;
        let follower = app.register("follower@example.org").await;
        let stranger = app.register("stranger@example.org").await;
        let blocked = app.register("blocked@example.org").await;
        let blocker = app.register("blocker@example.org").await;
        for fan in [&follower, &blocked, &blocker] {
            let r = app.post(&format!("/api/v1/users/{}/follow", author.id), Some(&fan.access_token), json!({})).await;
            assert_eq!(r.expect(200)["following"], true);
        }
        // The author blocks one follower; another follower blocks the author.
        app.put(&format!("/api/v1/users/{}/block", blocked.id), &author.access_token).await.expect(200);
        app.put(&format!("/api/v1/users/{}/block", author.id), &blocker.access_token).await.expect(200);

        let public = post_moment(&app, &author, "for everyone", "public").await;
        let followers = post_moment(&app, &author, "for my followers", "followers").await;
        let private = post_moment(&app, &author, "for me", "private").await;

        // expected[visibility][viewer] = (home, public feed, user feed, GET)
        let all = (true, true, true, true);
        let none = (false, false, false, false);
        let not_public_feed = (true, false, true, true);
        let viewers = [("author", &author), ("follower", &follower), ("stranger", &stranger), ("blocked", &blocked), ("blocker", &blocker)];
        let expected = |moment: i64, viewer: &str| match (moment, viewer) {
            (m, "author") if m == public => all,
            (m, "author") if m == followers || m == private => not_public_feed,
            (m, "follower") if m == public => all,
            (m, "follower") if m == followers => not_public_feed,
            (m, "stranger") if m == public => all,
            _ => none,
        };
        for (name, viewer) in viewers {
            let home: HashSet<i64> = feed_ids(&app, viewer, "feed=home").await.into_iter().collect();
            let public_feed: HashSet<i64> = feed_ids(&app, viewer, "feed=public").await.into_iter().collect();
            let user_reply = app.get(&format!("/api/v1/moments?feed=user&user_id={}", author.id), &viewer.access_token).await;
            let user_feed: HashSet<i64> = if name == "blocked" {
                // The blocker's profile does not exist for the blocked user.
                user_reply.expect_error(404, "not_found");
                HashSet::new()
            } else {
                user_reply.expect(200)["items"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect()
            };
            for moment in [public, followers, private] {
                let get = app.get(&format!("/api/v1/moments/{moment}"), &viewer.access_token).await;
                let got = get.status.as_u16();
                let seen = (home.contains(&moment), public_feed.contains(&moment), user_feed.contains(&moment), got == 200);
                assert_eq!(seen, expected(moment, name), "moment {moment} as seen by {name}");
                if got != 200 {
                    assert_eq!(got, 404, "hidden moments are 404, not 403");
                }
            }
        }
        // Blocking removed both follows, on the counts too.
        let profile = app.get(&format!("/api/v1/users/{}", author.id), &follower.access_token).await.expect(200);
        assert_eq!(profile["followers_count"], 1, "{profile}");
        let item = app.get(&format!("/api/v1/moments/{followers}"), &follower.access_token).await.expect(200);
        assert_eq!(item["is_following_author"], true);
        assert_eq!(item["user"]["id"], author.id);
        assert_eq!(item["user"]["display_name"], "author");
    }
}

api_test! {
    /// New moments arriving between pages neither repeat nor push out items.
    async fn pagination_is_stable_under_inserts(app) {
        let ana = app.register("pager@example.org").await;
        let bob = app.register("reader@example.org").await;
        let mut posted = Vec::new();
        for i in 0..23 {
            posted.push(post_moment(&app, &ana, &format!("moment {i}"), "public").await);
        }
        for feed in ["feed=public", "feed=home", &format!("feed=user&user_id={}", ana.id)] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            let mut inserted = Vec::new();
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/moments?{feed}&limit=5&cursor={c}"),
                    None => format!("/api/v1/moments?{feed}&limit=5"),
                };
                let body = app.get(&path, &bob.access_token).await.expect(200);
                seen.extend(body["items"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()));
                // Someone posts between every two pages.
                inserted.push(post_moment(&app, &ana, "late arrival", "public").await);
                match body["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            let unique: HashSet<i64> = seen.iter().copied().collect();
            assert_eq!(unique.len(), seen.len(), "no item repeated in {feed}: {seen:?}");
            for id in &posted {
                assert!(unique.contains(id), "{id} not skipped in {feed}");
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(sorted, seen, "newest first");
            posted.extend(inserted);
        }
        app.get("/api/v1/moments?limit=0", &bob.access_token).await.expect_error(400, "validation_failed");
        app.get("/api/v1/moments?limit=101", &bob.access_token).await.expect_error(400, "validation_failed");
        app.get("/api/v1/moments?cursor=abc", &bob.access_token).await.expect_error(400, "validation_failed");
        app.get("/api/v1/moments?feed=user", &bob.access_token).await.expect_error(400, "validation_failed");
        app.get("/api/v1/moments?feed=everything", &bob.access_token).await.expect_error(400, "validation_failed");
    }
}

api_test! {
    /// A feed page takes the same number of SQL statements whether it holds
    /// 2 or 40 moments, with likes, follows, media and reposts in it: no
    /// query per item.
    async fn feed_queries_do_not_grow_with_page_size(app) {
        let viewer = app.register("counter@example.org").await;
        let mut authors = Vec::new();
        for i in 0..8 {
            authors.push(app.register(&format!("author{i}@example.org")).await);
        }
        let mut ids = Vec::new();
        for (i, author) in authors.iter().enumerate() {
            app.put(&format!("/api/v1/users/{}/follow", author.id), &viewer.access_token).await.expect(200);
            for j in 0..5 {
                let visibility = if j % 2 == 0 { "public" } else { "followers" };
                let media = app
                    .store
                    .create_media(&palaver_store::NewMedia {
                        owner_id: author.id,
                        kind: "image".into(),
                        content_type: "image/png".into(),
                        size_bytes: 10,
                        width: Some(4),
                        height: Some(3),
                        storage_key: format!("k-{i}-{j}"),
                        now: palaver_core::time::now(),
                    })
                    .await
                    .unwrap();
                let body = app
                    .post("/api/v1/moments", Some(&author.access_token),
                          json!({"content": format!("m{i}-{j}"), "visibility": visibility, "media_ids": [media.id]}))
                    .await
                    .expect(201);
                ids.push(body["id"].as_i64().unwrap());
                assert_eq!(body["media"][0]["id"], media.id);
                assert!(app.store.media_by_id(media.id).await.unwrap().unwrap().attached_at.is_some(), "attached");
            }
        }
        for id in ids.iter().step_by(3) {
            app.put(&format!("/api/v1/moments/{id}/like"), &viewer.access_token).await.expect(200);
        }
        for id in ids.iter().step_by(7) {
            app.post(&format!("/api/v1/moments/{id}/share"), Some(&authors[0].access_token), json!({"to": "feed"}))
                .await;
        }
        for feed in ["home", "public"] {
            // The least of three runs: the pool may open a connection (and
            // run its set-up statements) during any one request.
            let mut small = None;
            let mut large = None;
            let (mut small_count, mut large_count) = (usize::MAX, usize::MAX);
            for _ in 0..3 {
                let (reply, n) = app.get_counting(&format!("/api/v1/moments?feed={feed}&limit=2"), &viewer.access_token).await;
                small_count = small_count.min(n);
                small = Some(reply);
                let (reply, n) = app.get_counting(&format!("/api/v1/moments?feed={feed}&limit=40"), &viewer.access_token).await;
                large_count = large_count.min(n);
                large = Some(reply);
            }
            let (small, large) = (small.unwrap(), large.unwrap());
            let small = small.expect(200);
            let large = large.expect(200);
            assert_eq!(small["items"].as_array().unwrap().len(), 2);
            let items = large["items"].as_array().unwrap();
            assert!(items.len() >= 20, "{feed}: {}", items.len());
            assert!(items.iter().any(|m| m["is_liked"] == true) && items.iter().any(|m| m["is_liked"] == false));
            assert!(items.iter().all(|m| m["is_following_author"] == true || m["user"]["id"] == viewer.id));
            assert!(items.iter().any(|m| !m["shared_moment"].is_null()), "reposts carry their original");
            assert!(items.iter().any(|m| m["media"].as_array().is_some_and(|a| !a.is_empty())));
            assert!(small_count > 0, "statements were counted");
            assert_eq!(small_count, large_count, "{feed}: statements for 2 vs {} items", items.len());
            assert!(large_count <= 6, "{feed}: {large_count} statements for one page");
        }
    }
}

api_test! {
    async fn create_edit_delete(app) {
        let ana = app.register("writer@example.org").await;
        let bob = app.register("other-writer@example.org").await;
        let body = app
            .post("/api/v1/moments", Some(&ana.access_token), json!({"content": "  Hola  ", "visibility": "followers"}))
            .await
            .expect(201);
        let id = body["id"].as_i64().unwrap();
        assert_eq!(body["content"], "Hola");
        assert_eq!(body["visibility"], "followers");
        assert_eq!(body["is_edited"], false);
        assert_eq!(body["likes_count"], 0);
        assert_eq!(body["media"], json!([]));
        let me = app.get("/api/v1/users/me", &ana.access_token).await.expect(200);
        assert_eq!(me["moments_count"], 1);

        app.patch(&format!("/api/v1/moments/{id}"), &bob.access_token, json!({"content": "hacked"}))
            .await
            .expect_error(404, "not_found");
        app.patch(&format!("/api/v1/moments/{id}"), &ana.access_token, json!({"visibility": "public"})).await.expect(200);
        app.patch(&format!("/api/v1/moments/{id}"), &bob.access_token, json!({"content": "hacked"}))
            .await
            .expect_error(403, "forbidden");
        app.call(Method::DELETE, &format!("/api/v1/moments/{id}"), Some(&bob.access_token), None)
            .await
            .expect_error(403, "forbidden");
        let edited = app
            .patch(&format!("/api/v1/moments/{id}"), &ana.access_token, json!({"content": "Hola, mundo"}))
            .await
            .expect(200);
        assert_eq!(edited["content"], "Hola, mundo");
        assert_eq!(edited["is_edited"], true);
        assert_ne!(edited["updated_at"], body["updated_at"]);

        app.delete(&format!("/api/v1/moments/{id}"), &ana.access_token).await.expect(204);
        for who in [&ana, &bob] {
            app.get(&format!("/api/v1/moments/{id}"), &who.access_token).await.expect_error(404, "not_found");
            assert!(!feed_ids(&app, who, "feed=home").await.contains(&id));
        }
        app.delete(&format!("/api/v1/moments/{id}"), &ana.access_token).await.expect_error(404, "not_found");
        app.put(&format!("/api/v1/moments/{id}/like"), &bob.access_token).await.expect_error(404, "not_found");
        let me = app.get("/api/v1/users/me", &ana.access_token).await.expect(200);
        assert_eq!(me["moments_count"], 0);
    }
}

api_test! {
    /// Each bad input is a clear error, and changes nothing.
    async fn bad_input_changes_nothing(app) {
        let ana = app.register("bad-input@example.org").await;
        let bob = app.register("bad-input-2@example.org").await;
        let t = &ana.access_token;
        let cases = [
            json!({"content": ""}),
            json!({"content": "   "}),
            json!({"content": "x".repeat(5001)}),
            json!({"content": "ok", "visibility": "friends"}),
            json!({"content": "ok", "media_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}),
            json!({"content": "ok", "media_ids": "1"}),
            json!({"content": "ok", "unknown": 1}),
            json!({"visibility": "public"}),
        ];
        for body in cases {
            app.post("/api/v1/moments", Some(t), body.clone()).await.expect_error(400, "validation_failed");
        }
        // Someone else's media, and media that does not exist.
        let bobs = app
            .store
            .create_media(&palaver_store::NewMedia {
                owner_id: bob.id,
                kind: "image".into(),
                content_type: "image/png".into(),
                size_bytes: 1,
                width: None,
                height: None,
                storage_key: "bob-key".into(),
                now: palaver_core::time::now(),
            })
            .await
            .unwrap();
        let body = app
            .post("/api/v1/moments", Some(t), json!({"content": "mine?", "media_ids": [bobs.id, 999999]}))
            .await
            .expect_error(400, "validation_failed");
        let fields = body["error"]["details"]["fields"].as_object().unwrap();
        assert!(fields.contains_key("media_ids[0]") && fields.contains_key("media_ids[1]"), "{body}");
        assert!(app.store.media_by_id(bobs.id).await.unwrap().unwrap().attached_at.is_none(), "not attached");
        let me = app.get("/api/v1/users/me", t).await.expect(200);
        assert_eq!(me["moments_count"], 0, "nothing was posted");
        assert!(feed_ids(&app, &ana, "feed=home").await.is_empty());

        // Unknown ids and malformed ids.
        app.get("/api/v1/moments/424242", t).await.expect_error(404, "not_found");
        app.get("/api/v1/moments/0", t).await.expect_error(404, "not_found");
        app.get("/api/v1/moments/abc", t).await.expect_error(400, "bad_request");
        app.post("/api/v1/moments/424242/like", Some(t), json!({})).await.expect_error(404, "not_found");
        app.post("/api/v1/moments/424242/comments", Some(t), json!({"content": "hi"})).await.expect_error(404, "not_found");
        app.post("/api/v1/comments/424242/like", Some(t), json!({})).await.expect_error(404, "not_found");
        app.delete("/api/v1/comments/424242", t).await.expect_error(404, "not_found");

        // Comments: empty, too long, reply to a comment of another moment.
        let m1 = post_moment(&app, &ana, "first", "public").await;
        let m2 = post_moment(&app, &ana, "second", "public").await;
        let c1 = app
            .post(&format!("/api/v1/moments/{m1}/comments"), Some(&bob.access_token), json!({"content": "nice"}))
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
        for body in [json!({"content": ""}), json!({"content": "x".repeat(2001)}), json!({"text": "hi"})] {
            app.post(&format!("/api/v1/moments/{m2}/comments"), Some(t), body).await.expect_error(400, "validation_failed");
        }
        app.post(&format!("/api/v1/moments/{m2}/comments"), Some(t), json!({"content": "reply", "parent_comment": c1}))
            .await
            .expect_error(422, "unprocessable");
        app.post(&format!("/api/v1/moments/{m2}/comments"), Some(t), json!({"content": "reply", "parent_comment": 999999}))
            .await
            .expect_error(404, "not_found");
        let second = app.get(&format!("/api/v1/moments/{m2}"), t).await.expect(200);
        assert_eq!(second["comments_count"], 0);
        let comments = app.get(&format!("/api/v1/moments/{m2}/comments"), t).await.expect(200);
        assert_eq!(comments["items"], json!([]));

        // Liking a hidden (deleted) moment.
        app.delete(&format!("/api/v1/moments/{m1}"), t).await.expect(204);
        app.post(&format!("/api/v1/moments/{m1}/like"), Some(&bob.access_token), json!({})).await.expect_error(404, "not_found");
        app.post(&format!("/api/v1/comments/{c1}/like"), Some(&bob.access_token), json!({})).await.expect_error(404, "not_found");

        // Shares: only public moments; into chats only of one's own rooms.
        let hidden = post_moment(&app, &ana, "followers only", "followers").await;
        app.post(&format!("/api/v1/moments/{m2}/share"), Some(&bob.access_token), json!({"to": "chat", "room_id": 999_999}))
            .await
            .expect_error(404, "not_found");
        app.post(&format!("/api/v1/moments/{m2}/share"), Some(&bob.access_token), json!({}))
            .await
            .expect_error(400, "validation_failed");
        app.put(&format!("/api/v1/users/{}/follow", ana.id), &bob.access_token).await.expect(200);
        app.post(&format!("/api/v1/moments/{hidden}/share"), Some(&bob.access_token), json!({"to": "feed"}))
            .await
            .expect_error(422, "unprocessable");
        let after = app.get(&format!("/api/v1/moments/{hidden}"), t).await.expect(200);
        assert_eq!(after["shares_count"], 0);
    }
}

api_test! {
    /// 200 concurrent like toggles from 100 users: the counter equals the
    /// likes that exist; likewise comments_count under concurrent comments
    /// and deletions.
    async fn counters_stay_exact_under_concurrency(app) {
        let author = app.register("popular@example.org").await;
        let moment = post_moment(&app, &author, "like me", "public").await;
        let mut users = Vec::new();
        for i in 0..100 {
            users.push(app.register(&format!("fan{i}@example.org")).await);
        }
        let mut tasks = Vec::new();
        for (i, user) in users.iter().enumerate() {
            // Every user toggles twice at once; a third of them also sets.
            for _ in 0..2 {
                let (app, token) = (app.clone(), user.access_token.clone());
                tasks.push(tokio::spawn(async move {
                    app.post(&format!("/api/v1/moments/{moment}/like"), Some(&token), json!({})).await.expect(200);
                }));
            }
            if i % 3 == 0 {
                let (app, token) = (app.clone(), user.access_token.clone());
                tasks.push(tokio::spawn(async move {
                    app.put(&format!("/api/v1/moments/{moment}/like"), &token).await.expect(200);
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut liked = 0;
        for user in &users {
            let m = app.get(&format!("/api/v1/moments/{moment}"), &user.access_token).await.expect(200);
            if m["is_liked"] == true {
                liked += 1;
            }
        }
        let m = app.get(&format!("/api/v1/moments/{moment}"), &author.access_token).await.expect(200);
        assert_eq!(m["likes_count"], liked, "likes_count equals the like rows");

        // Comments: 100 users comment twice concurrently, and half delete
        // their first comment while the others are still writing.
        let mut tasks = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let (app, token) = (app.clone(), user.access_token.clone());
            tasks.push(tokio::spawn(async move {
                let first = app
                    .post(&format!("/api/v1/moments/{moment}/comments"), Some(&token), json!({"content": "one"}))
                    .await
                    .expect(201)["id"]
                    .as_i64()
                    .unwrap();
                let reply = app
                    .post(&format!("/api/v1/moments/{moment}/comments"), Some(&token),
                          json!({"content": "two", "parent_comment": first}))
                    .await;
                if i % 2 == 0 {
                    app.delete(&format!("/api/v1/comments/{first}"), &token).await.expect(204);
                } else {
                    reply.expect(201);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut visible = 0;
        let mut cursor = String::new();
        loop {
            let body = app
                .get(&format!("/api/v1/moments/{moment}/comments?limit=30{cursor}"), &author.access_token)
                .await
                .expect(200);
            for c in body["items"].as_array().unwrap() {
                visible += 1 + c["replies"].as_array().unwrap().len();
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(visible, 100, "50 comments with a reply each survive");
        let m = app.get(&format!("/api/v1/moments/{moment}"), &author.access_token).await.expect(200);
        assert_eq!(m["comments_count"], visible, "comments_count equals the visible comments");
    }
}

api_test! {
    async fn likes_toggle_and_are_idempotent(app) {
        let ana = app.register("liker-a@example.org").await;
        let bob = app.register("liker-b@example.org").await;
        let moment = post_moment(&app, &ana, "like", "public").await;
        let path = format!("/api/v1/moments/{moment}/like");
        let like = |v: Value| (v["liked"].as_bool().unwrap(), v["likes_count"].as_i64().unwrap());
        assert_eq!(like(app.post(&path, Some(&bob.access_token), json!({})).await.expect(200)), (true, 1));
        assert_eq!(like(app.post(&path, Some(&bob.access_token), json!({})).await.expect(200)), (false, 0));
        assert_eq!(like(app.put(&path, &bob.access_token).await.expect(200)), (true, 1));
        assert_eq!(like(app.put(&path, &bob.access_token).await.expect(200)), (true, 1));
        assert_eq!(like(app.put(&path, &ana.access_token).await.expect(200)), (true, 2));
        assert_eq!(like(app.delete(&path, &bob.access_token).await.expect(200)), (false, 1));
        assert_eq!(like(app.delete(&path, &bob.access_token).await.expect(200)), (false, 1));

        let c = app
            .post(&format!("/api/v1/moments/{moment}/comments"), Some(&ana.access_token), json!({"content": "c"}))
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
        let path = format!("/api/v1/comments/{c}/like");
        assert_eq!(like(app.post(&path, Some(&bob.access_token), json!({})).await.expect(200)), (true, 1));
        assert_eq!(like(app.put(&path, &bob.access_token).await.expect(200)), (true, 1));
        let listed = app.get(&format!("/api/v1/moments/{moment}/comments"), &bob.access_token).await.expect(200);
        assert_eq!(listed["items"][0]["likes_count"], 1);
        assert_eq!(listed["items"][0]["is_liked"], true);
        assert_eq!(like(app.delete(&path, &bob.access_token).await.expect(200)), (false, 0));
    }
}

api_test! {
    async fn comments_and_replies(app) {
        let ana = app.register("thread-a@example.org").await;
        let bob = app.register("thread-b@example.org").await;
        let cat = app.register("thread-c@example.org").await;
        let moment = post_moment(&app, &ana, "discuss", "public").await;
        let comments = format!("/api/v1/moments/{moment}/comments");
        let top = app.post(&comments, Some(&bob.access_token), json!({"content": "first!"})).await.expect(201);
        assert_eq!(top["parent_comment"], Value::Null);
        assert_eq!(top["user"]["id"], bob.id);
        let top = top["id"].as_i64().unwrap();
        let reply = app
            .post(&comments, Some(&cat.access_token), json!({"content": "reply", "parent_comment": top}))
            .await
            .expect(201);
        assert_eq!(reply["parent_comment"], top);
        let reply = reply["id"].as_i64().unwrap();
        // A reply to a reply lands under the same top-level comment.
        let nested = app
            .post(&comments, Some(&ana.access_token), json!({"content": "re: reply", "parent_comment": reply}))
            .await
            .expect(201);
        assert_eq!(nested["parent_comment"], top);
        let second = app.post(&comments, Some(&cat.access_token), json!({"content": "second"})).await.expect(201);
        let second = second["id"].as_i64().unwrap();

        let page = app.get(&format!("{comments}?limit=1"), &bob.access_token).await.expect(200);
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert_eq!(page["items"][0]["id"], top);
        let replies: Vec<i64> = page["items"][0]["replies"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(replies, vec![reply, nested["id"].as_i64().unwrap()]);
        assert_eq!(page["items"][0]["has_more_replies"], false);
        let cursor = page["next_cursor"].as_str().unwrap();
        let page2 = app.get(&format!("{comments}?limit=1&cursor={cursor}"), &bob.access_token).await.expect(200);
        assert_eq!(page2["items"][0]["id"], second);
        let listed = app.get(&format!("/api/v1/comments/{top}/replies"), &bob.access_token).await.expect(200);
        assert_eq!(listed["items"].as_array().unwrap().len(), 2);

        let m = app.get(&format!("/api/v1/moments/{moment}"), &ana.access_token).await.expect(200);
        assert_eq!(m["comments_count"], 4);
        // Only the comment's author, the moment's author or a moderator delete.
        app.delete(&format!("/api/v1/comments/{second}"), &bob.access_token).await.expect_error(403, "forbidden");
        app.delete(&format!("/api/v1/comments/{second}"), &ana.access_token).await.expect(204);
        // Deleting a top-level comment takes its replies with it.
        app.delete(&format!("/api/v1/comments/{top}"), &bob.access_token).await.expect(204);
        let m = app.get(&format!("/api/v1/moments/{moment}"), &ana.access_token).await.expect(200);
        assert_eq!(m["comments_count"], 0);
        let listed = app.get(&comments, &ana.access_token).await.expect(200);
        assert_eq!(listed["items"], json!([]));
        app.delete(&format!("/api/v1/comments/{reply}"), &cat.access_token).await.expect_error(404, "not_found");

        // Blocked users cannot comment on the blocker's moments.
        app.put(&format!("/api/v1/users/{}/block", cat.id), &ana.access_token).await.expect(200);
        app.post(&comments, Some(&cat.access_token), json!({"content": "let me in"})).await.expect_error(404, "not_found");
    }
}

api_test! {
    async fn reposts(app) {
        let ana = app.register("original@example.org").await;
        let bob = app.register("reposter@example.org").await;
        let cat = app.register("reader2@example.org").await;
        let original = post_moment(&app, &ana, "worth sharing", "public").await;
        let repost = app
            .post(&format!("/api/v1/moments/{original}/share"), Some(&bob.access_token),
                  json!({"to": "feed", "content": "look at this"}))
            .await
            .expect(201);
        assert_eq!(repost["user"]["id"], bob.id);
        assert_eq!(repost["content"], "look at this");
        assert_eq!(repost["shared_moment_id"], original);
        assert_eq!(repost["shared_moment"]["id"], original);
        assert_eq!(repost["shared_moment"]["shares_count"], 1);
        let repost_id = repost["id"].as_i64().unwrap();
        // Reposting the repost reposts the original.
        let again = app
            .post(&format!("/api/v1/moments/{repost_id}/share"), Some(&cat.access_token), json!({"to": "feed"}))
            .await
            .expect(201);
        assert_eq!(again["shared_moment_id"], original);
        let m = app.get(&format!("/api/v1/moments/{original}"), &ana.access_token).await.expect(200);
        assert_eq!(m["shares_count"], 2);
        assert!(feed_ids(&app, &cat, &format!("feed=user&user_id={}", bob.id)).await.contains(&repost_id));
        // Deleting a repost takes back its share.
        app.delete(&format!("/api/v1/moments/{repost_id}"), &bob.access_token).await.expect(204);
        let m = app.get(&format!("/api/v1/moments/{original}"), &ana.access_token).await.expect(200);
        assert_eq!(m["shares_count"], 1);
        // When the original stops being visible, reposts show it as null.
        app.patch(&format!("/api/v1/moments/{original}"), &ana.access_token, json!({"visibility": "private"}))
            .await
            .expect(200);
        let seen = app.get(&format!("/api/v1/moments/{}", again["id"]), &bob.access_token).await.expect(200);
        assert_eq!(seen["shared_moment"], Value::Null);
        assert_eq!(seen["shared_moment_id"], original);
    }
}

/// Per-user budgets: over budget is 429 with Retry-After; on PostgreSQL
/// the budget lives in Redis (shared by every node).
async fn rate_limits_case(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| {
        c.rate_moments = "2/10m".parse().unwrap();
        c.rate_likes = "3/1m".parse().unwrap();
    })
    .await
    else {
        return;
    };
    let ana = app.register("limited@example.org").await;
    let moment = post_moment(&app, &ana, "one", "public").await;
    post_moment(&app, &ana, "two", "public").await;
    let reply = app.post("/api/v1/moments", Some(&ana.access_token), json!({"content": "three"})).await;
    assert!(reply.headers.get("retry-after").is_some(), "Retry-After is sent");
    let body = reply.expect_error(429, "rate_limited");
    assert!(body["error"]["details"]["retry_after"].as_u64().unwrap() >= 1);
    for _ in 0..3 {
        app.post(&format!("/api/v1/moments/{moment}/like"), Some(&ana.access_token), json!({})).await.expect(200);
    }
    app.post(&format!("/api/v1/moments/{moment}/like"), Some(&ana.access_token), json!({}))
        .await
        .expect_error(429, "rate_limited");
    // Other users have their own budget.
    let bob = app.register("unlimited@example.org").await;
    app.post(&format!("/api/v1/moments/{moment}/like"), Some(&bob.access_token), json!({})).await.expect(200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_rate_limits_sqlite() {
    rate_limits_case(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_rate_limits_postgres_redis() {
    rate_limits_case(Backend::Postgres).await;
}
