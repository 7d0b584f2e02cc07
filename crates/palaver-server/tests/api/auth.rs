//! Register, login, refresh with rotation, reuse detection, logout, and the
//! token checks every request goes through.

use chrono::Utc;
use palaver_core::time::now;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{JWT_SECRET, TestApp, api_test};

api_test! {
    async fn register_login_and_me(app) {
        let reply = app
            .post(
                "/api/v1/auth/register",
                None,
                json!({
                    "email": "  Ana@Example.ORG",
                    "password": "correct horse battery",
                    "display_name": "Ana",
                    "native_languages": ["es"],
                    "learning_languages": [{"code": "en", "level": "beginner"}, {"code": "pt-br", "level": "advanced"}]
                }),
            )
            .await;
        let body = reply.expect(201);
        assert_eq!(body["user"]["email"], "ana@example.org", "email is normalised");
        assert_eq!(body["user"]["role"], "user");
        assert_eq!(body["user"]["learning_languages"][1]["code"], "pt-BR");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["user"].get("password").is_none() && body["user"].get("password_hash").is_none());

        let login = app
            .post("/api/v1/auth/login", None, json!({"email": "ANA@example.org", "password": "correct horse battery"}))
            .await
            .expect(200);
        assert_eq!(login["user"]["id"], body["user"]["id"]);
        let token = login["access_token"].as_str().unwrap();
        let me = app.get("/api/v1/users/me", token).await.expect(200);
        assert_eq!(me["email"], "ana@example.org");
        assert_eq!(me["native_languages"], json!(["es"]));
    }
}

api_test! {
    async fn wrong_password_and_unknown_email_look_the_same(app) {
        app.register("bob@example.org").await;
        let wrong = app
            .post("/api/v1/auth/login", None, json!({"email": "bob@example.org", "password": "not-his-password"}))
            .await
            .expect_error(401, "unauthorized");
        let unknown = app
            .post("/api/v1/auth/login", None, json!({"email": "nobody@example.org", "password": "whatever-pw"}))
            .await
            .expect_error(401, "unauthorized");
        assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);
    }
}

api_test! {
    async fn duplicate_email_is_409(app) {
        app.register("dup@example.org").await;
        app.post(
            "/api/v1/auth/register",
            None,
            json!({"email": "DUP@example.org", "password": "another-password", "display_name": "Dup"}),
        )
        .await
        .expect_error(409, "conflict");
    }
}

api_test! {
    async fn refresh_rotates_and_reuse_revokes_the_session(app) {
        let user = app.register("rot@example.org").await;
        let first = app
            .post("/api/v1/auth/refresh", None, json!({"refresh_token": user.refresh_token}))
            .await
            .expect(200);
        let second_refresh = first["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(second_refresh, user.refresh_token, "refresh tokens rotate");
        let access = first["access_token"].as_str().unwrap().to_owned();
        app.get("/api/v1/users/me", &access).await.expect(200);

        // The spent token is presented again: theft assumed, family revoked.
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": user.refresh_token}))
            .await
            .expect_error(401, "unauthorized");
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": second_refresh}))
            .await
            .expect_error(401, "unauthorized");
        app.get("/api/v1/users/me", &access).await.expect_error(401, "unauthorized");
        app.get("/api/v1/users/me", &user.access_token).await.expect_error(401, "unauthorized");

        // Other sessions of the same user are unaffected.
        let other = app
            .post("/api/v1/auth/login", None, json!({"email": user.email, "password": user.password}))
            .await
            .expect(200);
        app.get("/api/v1/users/me", other["access_token"].as_str().unwrap()).await.expect(200);
    }
}

api_test! {
    async fn logout_ends_the_session(app) {
        let user = app.register("out@example.org").await;
        let other = app
            .post("/api/v1/auth/login", None, json!({"email": user.email, "password": user.password}))
            .await
            .expect(200);
        let reply = app.call(Method::POST, "/api/v1/auth/logout", Some(&user.access_token), None).await;
        assert_eq!(reply.status.as_u16(), 204);
        app.get("/api/v1/users/me", &user.access_token).await.expect_error(401, "unauthorized");
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": user.refresh_token}))
            .await
            .expect_error(401, "unauthorized");
        app.get("/api/v1/users/me", other["access_token"].as_str().unwrap()).await.expect(200);
        app.call(Method::POST, "/api/v1/auth/logout", None, None).await.expect_error(401, "unauthorized");
    }
}

pub(crate) fn forge(sub: &str, sid: &str, exp: i64, secret: &str) -> String {
    let claims = json!({"sub": sub, "sid": sid, "iat": Utc::now().timestamp() - 3600, "exp": exp, "iss": "palaver"});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub(crate) fn session_of(token: &str) -> (String, String) {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    (claims["sub"].as_str().unwrap().to_owned(), claims["sid"].as_str().unwrap().to_owned())
}

api_test! {
    async fn expired_tampered_and_garbage_tokens_are_401(app) {
        let user = app.register("tok@example.org").await;
        let (sub, sid) = session_of(&user.access_token);

        let valid = forge(&sub, &sid, Utc::now().timestamp() + 600, JWT_SECRET);
        app.get("/api/v1/users/me", &valid).await.expect(200);

        let expired = forge(&sub, &sid, Utc::now().timestamp() - 120, JWT_SECRET);
        let body = app.get("/api/v1/users/me", &expired).await.expect_error(401, "unauthorized");
        assert!(body["error"]["message"].as_str().unwrap().contains("expired"));

        let wrong_key = forge(&sub, &sid, Utc::now().timestamp() + 600, "another-secret-another-secret-another-secret");
        app.get("/api/v1/users/me", &wrong_key).await.expect_error(401, "unauthorized");

        // Claim another user's id with the signature of this token: tampered.
        let mut parts: Vec<String> = user.access_token.split('.').map(str::to_owned).collect();
        let forged_other = forge("999999", &sid, Utc::now().timestamp() + 600, "x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x");
        parts[1] = forged_other.split('.').nth(1).unwrap().to_owned();
        app.get("/api/v1/users/me", &parts.join(".")).await.expect_error(401, "unauthorized");

        // A valid signature on an unknown session is refused too.
        let no_session = forge(&sub, "not-a-session", Utc::now().timestamp() + 600, JWT_SECRET);
        app.get("/api/v1/users/me", &no_session).await.expect_error(401, "unauthorized");

        for garbage in ["", "abc", "a.b.c", "Bearer"] {
            app.get("/api/v1/users/me", garbage).await.expect_error(401, "unauthorized");
        }
        let reply = app.call(Method::GET, "/api/v1/users/me", None, None).await;
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        reply.expect_error(401, "unauthorized");
    }
}

api_test! {
    async fn suspended_users_are_refused_everywhere(app) {
        let user = app.register("sus@example.org").await;
        app.store.set_suspended(user.id, true, now()).await.unwrap();
        app.get("/api/v1/users/me", &user.access_token).await.expect_error(403, "account_suspended");
        app.post("/api/v1/auth/login", None, json!({"email": user.email, "password": user.password}))
            .await
            .expect_error(403, "account_suspended");
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": user.refresh_token}))
            .await
            .expect_error(403, "account_suspended");
        // Reinstated: works again.
        app.store.set_suspended(user.id, false, now()).await.unwrap();
        app.post("/api/v1/auth/login", None, json!({"email": user.email, "password": user.password}))
            .await
            .expect(200);
    }
}

api_test! {
    async fn login_is_rate_limited_per_address(app) {
        let _ = &app;
        let limited = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |c| {
            c.rate_login = "3/1h".parse().unwrap();
        })
        .await
        .unwrap();
        for _ in 0..3 {
            limited
                .post("/api/v1/auth/login", None, json!({"email": "x@example.org", "password": "whatever-pw"}))
                .await
                .expect_error(401, "unauthorized");
        }
        let reply = limited
            .post("/api/v1/auth/login", None, json!({"email": "x@example.org", "password": "whatever-pw"}))
            .await;
        let retry_after: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after >= 1);
        let body = reply.expect_error(429, "rate_limited");
        assert_eq!(body["error"]["details"]["retry_after"], retry_after);
        limited.stop().await;
    }
}

/// Register and refresh never leave a session half made: many concurrent
/// refreshes of one token produce exactly one new pair, and the session is
/// revoked for the losers' reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_has_one_winner() {
    let app: TestApp = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await.unwrap();
    let user = app.register("race@example.org").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let app = app.clone();
        let token = user.refresh_token.clone();
        tasks.push(tokio::spawn(async move {
            app.post("/api/v1/auth/refresh", None, json!({"refresh_token": token})).await.status.as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
    app.stop().await;
}
