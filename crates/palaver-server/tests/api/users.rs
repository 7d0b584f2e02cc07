//! `/users/me` and `/users/{id}`.

use serde_json::json;

use crate::helpers::api_test;

api_test! {
    async fn patch_me_changes_only_what_is_sent(app) {
        let ana = app.register("ana@example.org").await;
        let body = app
            .patch(
                "/api/v1/users/me",
                &ana.access_token,
                json!({"bio": "Hola, aprendo inglés", "avatar": "https://cdn.example.org/ana.png",
                       "learning_languages": [{"code": "FR", "level": "beginner"}]}),
            )
            .await
            .expect(200);
        assert_eq!(body["bio"], "Hola, aprendo inglés");
        assert_eq!(body["display_name"], "ana");
        assert_eq!(body["avatar"], "https://cdn.example.org/ana.png");
        assert_eq!(body["learning_languages"], json!([{"code": "fr", "level": "beginner"}]));
        assert_eq!(body["native_languages"], json!(["es"]));

        let cleared = app.patch("/api/v1/users/me", &ana.access_token, json!({"avatar": null})).await.expect(200);
        assert_eq!(cleared["avatar"], serde_json::Value::Null);
        assert_eq!(cleared["bio"], "Hola, aprendo inglés");
        let me = app.get("/api/v1/users/me", &ana.access_token).await.expect(200);
        assert_eq!(me["avatar"], serde_json::Value::Null);
    }
}

api_test! {
    async fn bad_profile_changes_are_refused_and_change_nothing(app) {
        let ana = app.register("bad@example.org").await;
        let body = app
            .patch(
                "/api/v1/users/me",
                &ana.access_token,
                json!({"display_name": "", "avatar": "javascript:alert(1)", "bio": "x".repeat(501),
                       "native_languages": ["english"]}),
            )
            .await
            .expect_error(400, "validation_failed");
        let fields = body["error"]["details"]["fields"].as_object().unwrap();
        for f in ["display_name", "avatar", "bio", "native_languages[0]"] {
            assert!(fields.contains_key(f), "{f} reported: {body}");
        }
        app.patch("/api/v1/users/me", &ana.access_token, json!({"role": "admin"}))
            .await
            .expect_error(400, "validation_failed");
        let me = app.get("/api/v1/users/me", &ana.access_token).await.expect(200);
        assert_eq!(me["display_name"], "bad");
        assert_eq!(me["role"], "user");
        assert_eq!(me["bio"], "");
    }
}

api_test! {
    async fn other_users_profiles(app) {
        let ana = app.register("ana2@example.org").await;
        let bob = app.register("bob2@example.org").await;
        let body = app.get(&format!("/api/v1/users/{}", bob.id), &ana.access_token).await.expect(200);
        assert_eq!(body["id"], bob.id);
        assert_eq!(body["display_name"], "bob2");
        assert!(body.get("email").is_none(), "email is private: {body}");
        for flag in ["is_following", "follows_you", "is_blocked"] {
            assert_eq!(body[flag], false);
        }
        assert_eq!(body["followers_count"], 0);
        app.get("/api/v1/users/999999", &ana.access_token).await.expect_error(404, "not_found");
        app.get("/api/v1/users/0", &ana.access_token).await.expect_error(404, "not_found");
        app.get("/api/v1/users/abc", &ana.access_token).await.expect_error(400, "bad_request");

        // Suspended users are hidden from everyone but moderators.
        app.store.set_suspended(bob.id, true, palaver_core::time::now()).await.unwrap();
        app.get(&format!("/api/v1/users/{}", bob.id), &ana.access_token).await.expect_error(404, "not_found");
        app.store.set_role(ana.id, palaver_core::user::Role::Moderator, palaver_core::time::now()).await.unwrap();
        app.get(&format!("/api/v1/users/{}", bob.id), &ana.access_token).await.expect(200);
    }
}
