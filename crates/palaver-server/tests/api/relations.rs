//! Follows and blocks over HTTP.

use serde_json::json;

use crate::helpers::{TestApp, TestUser, api_test};
use crate::moments::{feed_ids, post_moment};

async fn counts(app: &TestApp, viewer: &TestUser, user: &TestUser) -> (i64, i64) {
    let p = app.get(&format!("/api/v1/users/{}", user.id), &viewer.access_token).await.expect(200);
    (p["followers_count"].as_i64().unwrap(), p["following_count"].as_i64().unwrap())
}

api_test! {
    async fn follow_toggle_idempotent_and_counted(app) {
        let ana = app.register("f-ana@example.org").await;
        let bob = app.register("f-bob@example.org").await;
        let path = format!("/api/v1/users/{}/follow", bob.id);
        assert_eq!(app.post(&path, Some(&ana.access_token), json!({})).await.expect(200)["following"], true);
        assert_eq!(counts(&app, &ana, &bob).await, (1, 0));
        assert_eq!(counts(&app, &bob, &ana).await, (0, 1));
        let profile = app.get(&format!("/api/v1/users/{}", bob.id), &ana.access_token).await.expect(200);
        assert_eq!(profile["is_following"], true);
        assert_eq!(app.put(&path, &ana.access_token).await.expect(200)["following"], true);
        assert_eq!(counts(&app, &ana, &bob).await, (1, 0), "PUT twice counts once");
        assert_eq!(app.post(&path, Some(&ana.access_token), json!({})).await.expect(200)["following"], false);
        assert_eq!(app.delete(&path, &ana.access_token).await.expect(200)["following"], false);
        assert_eq!(counts(&app, &ana, &bob).await, (0, 0));

        // No self-follow; unknown users.
        app.post(&format!("/api/v1/users/{}/follow", ana.id), Some(&ana.access_token), json!({}))
            .await
            .expect_error(400, "bad_request");
        app.put("/api/v1/users/999999/follow", &ana.access_token).await.expect_error(404, "not_found");
        assert_eq!(counts(&app, &ana, &ana).await, (0, 0));

        // Lists, paginated by user id, newest account first.
        let mut fans = Vec::new();
        for i in 0..5 {
            let fan = app.register(&format!("fan-{i}@example.org")).await;
            app.put(&path, &fan.access_token).await.expect(200);
            fans.push(fan.id);
        }
        app.put(&path, &ana.access_token).await.expect(200);
        fans.push(ana.id);
        fans.sort_unstable_by(|a, b| b.cmp(a));
        let first = app.get(&format!("/api/v1/users/{}/followers?limit=4", bob.id), &ana.access_token).await.expect(200);
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let second = app
            .get(&format!("/api/v1/users/{}/followers?limit=4&cursor={cursor}", bob.id), &ana.access_token)
            .await
            .expect(200);
        assert_eq!(second["next_cursor"], serde_json::Value::Null);
        let listed: Vec<i64> = first["items"].as_array().unwrap().iter().chain(second["items"].as_array().unwrap())
            .map(|u| u["id"].as_i64().unwrap()).collect();
        assert_eq!(listed, fans);
        let following = app.get(&format!("/api/v1/users/{}/following", ana.id), &bob.access_token).await.expect(200);
        assert_eq!(following["items"][0]["id"], bob.id);
        assert_eq!(following["items"][0]["display_name"], "f-bob");
        assert_eq!(counts(&app, &ana, &bob).await, (6, 0));
    }
}

api_test! {
    async fn blocks(app) {
        let ana = app.register("b-ana@example.org").await;
        let bob = app.register("b-bob@example.org").await;
        let cat = app.register("b-cat@example.org").await;
        app.put(&format!("/api/v1/users/{}/follow", bob.id), &ana.access_token).await.expect(200);
        app.put(&format!("/api/v1/users/{}/follow", ana.id), &bob.access_token).await.expect(200);
        app.put(&format!("/api/v1/users/{}/follow", ana.id), &cat.access_token).await.expect(200);
        let moment = post_moment(&app, &ana, "before the block", "public").await;
        let comment = app
            .post(&format!("/api/v1/moments/{moment}/comments"), Some(&ana.access_token), json!({"content": "mine"}))
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();

        let path = format!("/api/v1/users/{}/block", bob.id);
        assert_eq!(app.post(&path, Some(&ana.access_token), json!({})).await.expect(200)["blocked"], true);
        // Follows are gone both ways, and so are their counts.
        assert_eq!(counts(&app, &ana, &ana).await, (1, 0));
        let bob_me = app.get("/api/v1/users/me", &bob.access_token).await.expect(200);
        assert_eq!((bob_me["followers_count"].as_i64(), bob_me["following_count"].as_i64()), (Some(0), Some(0)));
        let profile = app.get(&format!("/api/v1/users/{}", bob.id), &ana.access_token).await.expect(200);
        assert_eq!(profile["is_blocked"], true);

        // The blocked user: the blocker's profile is 404; cannot follow,
        // like, comment on or see the blocker's moments, nor like their comments.
        app.get(&format!("/api/v1/users/{}", ana.id), &bob.access_token).await.expect_error(404, "not_found");
        app.put(&format!("/api/v1/users/{}/follow", ana.id), &bob.access_token).await.expect_error(404, "not_found");
        app.put(&format!("/api/v1/moments/{moment}/like"), &bob.access_token).await.expect_error(404, "not_found");
        app.post(&format!("/api/v1/moments/{moment}/comments"), Some(&bob.access_token), json!({"content": "hi"}))
            .await
            .expect_error(404, "not_found");
        app.put(&format!("/api/v1/comments/{comment}/like"), &bob.access_token).await.expect_error(404, "not_found");
        app.get(&format!("/api/v1/moments/{moment}"), &bob.access_token).await.expect_error(404, "not_found");
        assert!(!feed_ids(&app, &bob, "feed=public").await.contains(&moment));
        // The blocker cannot follow without unblocking first.
        app.put(&format!("/api/v1/users/{}/follow", bob.id), &ana.access_token).await.expect_error(422, "unprocessable");

        // PUT is idempotent; the list shows the block; unblocking restores access.
        assert_eq!(app.put(&path, &ana.access_token).await.expect(200)["blocked"], true);
        let list = app.get("/api/v1/users/me/blocks", &ana.access_token).await.expect(200);
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        assert_eq!(list["items"][0]["id"], bob.id);
        assert_eq!(app.delete(&path, &ana.access_token).await.expect(200)["blocked"], false);
        assert_eq!(app.delete(&path, &ana.access_token).await.expect(200)["blocked"], false);
        assert_eq!(app.get("/api/v1/users/me/blocks", &ana.access_token).await.expect(200)["items"], json!([]));
        app.get(&format!("/api/v1/moments/{moment}"), &bob.access_token).await.expect(200);
        assert_eq!(counts(&app, &bob, &ana).await, (1, 0), "unblocking does not restore follows");

        app.put(&format!("/api/v1/users/{}/block", ana.id), &ana.access_token).await.expect_error(400, "bad_request");
        app.put("/api/v1/users/999999/block", &ana.access_token).await.expect_error(404, "not_found");
    }
}
