//! Reports, the moderation queue, actions and the audit log.

use palaver_core::user::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, api_test};
use crate::moments::post_moment;

async fn moderator(app: &TestApp, email: &str, role: Role) -> TestUser {
    let user = app.register(email).await;
    app.store.set_role(user.id, role, palaver_core::time::now()).await.unwrap();
    user
}

api_test! {
    async fn reports_and_review(app) {
        let ana = app.register("r-ana@example.org").await;
        let bob = app.register("r-bob@example.org").await;
        let moder = moderator(&app, "r-mod@example.org", Role::Moderator).await;
        let moment = post_moment(&app, &bob, "spam spam spam", "public").await;

        let report = app
            .post("/api/v1/reports", Some(&ana.access_token),
                  json!({"report_type": "spam", "description": "ads", "reported_moment": moment}))
            .await
            .expect(201);
        assert_eq!(report["status"], "pending");
        assert_eq!(report["reported_moment"], moment);
        assert_eq!(report["target"], json!({"kind": "moment", "id": moment}));
        let report_id = report["id"].as_i64().unwrap();
        // One pending report per reporter and target.
        app.post("/api/v1/reports", Some(&ana.access_token), json!({"report_type": "other", "reported_moment": moment}))
            .await
            .expect_error(409, "conflict");
        // Bad reports.
        for body in [
            json!({"report_type": "spam"}),
            json!({"report_type": "spam", "reported_user": bob.id, "reported_moment": moment}),
            json!({"report_type": "rude", "reported_user": bob.id}),
            json!({"report_type": "spam", "reported_user": bob.id, "description": "x".repeat(2001)}),
        ] {
            app.post("/api/v1/reports", Some(&ana.access_token), body).await.expect_error(400, "validation_failed");
        }
        app.post("/api/v1/reports", Some(&ana.access_token), json!({"report_type": "spam", "reported_comment": 999999}))
            .await
            .expect_error(404, "not_found");
        app.post("/api/v1/reports", Some(&ana.access_token), json!({"report_type": "spam", "reported_message": 999999}))
            .await
            .expect_error(404, "not_found");
        app.post("/api/v1/reports", Some(&ana.access_token), json!({"report_type": "fake", "reported_user": ana.id}))
            .await
            .expect_error(422, "unprocessable");
        let private = post_moment(&app, &bob, "not for ana", "private").await;
        app.post("/api/v1/reports", Some(&ana.access_token), json!({"report_type": "spam", "reported_moment": private}))
            .await
            .expect_error(404, "not_found");

        // Non-moderators get 403 from the moderation API and change nothing.
        app.get("/api/v1/moderation/reports", &ana.access_token).await.expect_error(403, "forbidden");
        app.patch(&format!("/api/v1/moderation/reports/{report_id}"), &ana.access_token,
                  json!({"status": "dismissed"}))
            .await
            .expect_error(403, "forbidden");
        app.get("/api/v1/moderation/actions", &bob.access_token).await.expect_error(403, "forbidden");

        let queue = app.get("/api/v1/moderation/reports?status=pending", &moder.access_token).await.expect(200);
        let items = queue["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], report_id);
        assert_eq!(items[0]["target_user_id"], bob.id);
        assert_eq!(items[0]["target_excerpt"], "spam spam spam");
        app.get("/api/v1/moderation/reports?status=open", &moder.access_token).await.expect_error(400, "validation_failed");
        app.patch(&format!("/api/v1/moderation/reports/{report_id}"), &moder.access_token, json!({"action": "ban"}))
            .await
            .expect_error(400, "validation_failed");

        // Hide the content: it vanishes for everyone, the report is resolved.
        let reviewed = app
            .patch(&format!("/api/v1/moderation/reports/{report_id}"), &moder.access_token,
                   json!({"action": "hide_content", "admin_notes": "clear spam"}))
            .await
            .expect(200);
        assert_eq!(reviewed["status"], "resolved");
        assert_eq!(reviewed["admin_notes"], "clear spam");
        assert_eq!(reviewed["reviewed_by"], moder.id);
        for who in [&ana, &bob] {
            app.get(&format!("/api/v1/moments/{moment}"), &who.access_token).await.expect_error(404, "not_found");
        }
        let pending = app.get("/api/v1/moderation/reports?status=pending", &moder.access_token).await.expect(200);
        assert_eq!(pending["items"], json!([]));

        // Reports on users; suspension ends the user's sessions.
        let user_report = app
            .post("/api/v1/reports", Some(&ana.access_token), json!({"report_type": "harassment", "reported_user": bob.id}))
            .await
            .expect(201);
        let user_report_id = user_report["id"].as_i64().unwrap();
        app.patch(&format!("/api/v1/moderation/reports/{user_report_id}"), &moder.access_token,
                  json!({"action": "hide_content"}))
            .await
            .expect_error(422, "unprocessable");
        let suspended = app
            .patch(&format!("/api/v1/moderation/reports/{user_report_id}"), &moder.access_token,
                   json!({"action": "suspend_user", "status": "resolved"}))
            .await
            .expect(200);
        assert_eq!(suspended["status"], "resolved");
        let refused = app.get("/api/v1/users/me", &bob.access_token).await;
        assert!(matches!(refused.status.as_u16(), 401 | 403), "suspended: {}", refused.body);
        let login = app
            .post("/api/v1/auth/refresh", None, json!({"refresh_token": bob.refresh_token}))
            .await;
        assert!(matches!(login.status.as_u16(), 401 | 403), "sessions revoked: {}", login.body);
        app.get(&format!("/api/v1/users/{}", bob.id), &ana.access_token).await.expect_error(404, "not_found");

        // Every moderator action is in the audit log, newest first.
        let log = app.get("/api/v1/moderation/actions", &moder.access_token).await.expect(200);
        let actions: Vec<(&str, &str, i64)> = log["items"].as_array().unwrap().iter()
            .map(|e| (e["action"].as_str().unwrap(), e["target_kind"].as_str().unwrap(), e["target_id"].as_i64().unwrap()))
            .collect();
        assert_eq!(actions, vec![("suspend_user", "user", bob.id), ("hide_content", "moment", moment)]);
        assert!(log["items"].as_array().unwrap().iter().all(|e| e["moderator_id"] == moder.id));
    }
}

api_test! {
    /// Content reported by three distinct users is hidden pending review.
    async fn auto_hide_after_distinct_reports(app) {
        let author = app.register("ah-author@example.org").await;
        let moment = post_moment(&app, &author, "controversial", "public").await;
        let comment = app
            .post(&format!("/api/v1/moments/{moment}/comments"), Some(&author.access_token), json!({"content": "c"}))
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
        let mut reporters = Vec::new();
        for i in 0..3 {
            reporters.push(app.register(&format!("ah-{i}@example.org")).await);
        }
        for (i, reporter) in reporters.iter().enumerate() {
            app.get(&format!("/api/v1/moments/{moment}"), &reporter.access_token).await.expect(200);
            app.post("/api/v1/reports", Some(&reporter.access_token),
                     json!({"report_type": "inappropriate", "reported_comment": comment}))
                .await
                .expect(201);
            let m = app.get(&format!("/api/v1/moments/{moment}"), &author.access_token).await.expect(200);
            assert_eq!(m["comments_count"], if i < 2 { 1 } else { 0 }, "after {} reports", i + 1);
        }
        let listed = app.get(&format!("/api/v1/moments/{moment}/comments"), &author.access_token).await.expect(200);
        assert_eq!(listed["items"], json!([]), "hidden comment left the listing");
        let admin = moderator(&app, "ah-admin@example.org", Role::Admin).await;
        let log = app.get("/api/v1/moderation/actions", &admin.access_token).await.expect(200);
        assert_eq!(log["items"][0]["action"], "auto_hide");
        assert_eq!(log["items"][0]["moderator_id"], Value::Null);
        assert_eq!(log["items"][0]["target_id"], comment);
        let queue = app.get("/api/v1/moderation/reports?status=pending", &admin.access_token).await.expect(200);
        assert_eq!(queue["items"].as_array().unwrap().len(), 3, "the reports wait for review");
    }
}

api_test! {
    /// Moderators delete others' moments and comments; it is logged.
    async fn moderators_delete_content(app) {
        let author = app.register("md-author@example.org").await;
        let moder = moderator(&app, "md-mod@example.org", Role::Moderator).await;
        let moment = post_moment(&app, &author, "rule breaking", "public").await;
        app.delete(&format!("/api/v1/moments/{moment}"), &moder.access_token).await.expect(204);
        app.get(&format!("/api/v1/moments/{moment}"), &author.access_token).await.expect_error(404, "not_found");
        let log = app.get("/api/v1/moderation/actions", &moder.access_token).await.expect(200);
        assert_eq!(log["items"][0]["action"], "delete_moment");
        assert_eq!(log["items"][0]["target_id"], moment);
    }
}

api_test! {
    /// Only admins suspend moderators and admins; nobody suspends themselves.
    async fn suspension_rules(app) {
        let user = app.register("sr-user@example.org").await;
        let moder = moderator(&app, "sr-mod@example.org", Role::Moderator).await;
        let admin = moderator(&app, "sr-admin@example.org", Role::Admin).await;
        let report_on = |target: i64, reporter: TestUser| {
            let app = app.clone();
            async move {
                app.post("/api/v1/reports", Some(&reporter.access_token), json!({"report_type": "fake", "reported_user": target}))
                    .await
                    .expect(201)["id"]
                    .as_i64()
                    .unwrap()
            }
        };
        let on_admin = report_on(admin.id, user.clone()).await;
        app.patch(&format!("/api/v1/moderation/reports/{on_admin}"), &moder.access_token, json!({"action": "suspend_user"}))
            .await
            .expect_error(403, "forbidden");
        let on_moder = report_on(moder.id, user.clone()).await;
        app.patch(&format!("/api/v1/moderation/reports/{on_moder}"), &moder.access_token, json!({"action": "suspend_user"}))
            .await
            .expect_error(422, "unprocessable");
        // Refused decisions changed nothing.
        app.get("/api/v1/users/me", &admin.access_token).await.expect(200);
        let queue = app.get("/api/v1/moderation/reports?status=pending", &moder.access_token).await.expect(200);
        assert_eq!(queue["items"].as_array().unwrap().len(), 2);
        assert_eq!(app.get("/api/v1/moderation/actions", &moder.access_token).await.expect(200)["items"], json!([]));
        // An admin may suspend a moderator.
        app.patch(&format!("/api/v1/moderation/reports/{on_moder}"), &admin.access_token, json!({"action": "suspend_user"}))
            .await
            .expect(200);
        let refused = app.get("/api/v1/moderation/reports", &moder.access_token).await;
        assert!(matches!(refused.status.as_u16(), 401 | 403), "{}", refused.body);
    }
}
