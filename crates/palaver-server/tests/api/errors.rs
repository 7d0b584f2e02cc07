//! Bad input gets the error shape with the right status and changes nothing.

use serde_json::json;

use crate::helpers::api_test;

const REGISTER: &str = "/api/v1/auth/register";

api_test! {
    async fn malformed_bodies_are_refused_and_change_nothing(app) {
        app.post_raw(REGISTER, "application/json", "{\"email\": \"a@b.co\",").await.expect_error(400, "malformed_json");
        app.post_raw(REGISTER, "application/json", "not json at all").await.expect_error(400, "malformed_json");
        app.post_raw(REGISTER, "application/json", "").await.expect_error(400, "malformed_json");
        app.post_raw(REGISTER, "application/json", r#"{"email":"a@b.co","password":"long-enough","display_name":"A"} {}"#).await.expect_error(400, "malformed_json");
        app.post_raw(REGISTER, "text/plain", "{}").await.expect_error(415, "unsupported_media_type");
        app.post_raw(REGISTER, "application/x-www-form-urlencoded", "email=a").await.expect_error(415, "unsupported_media_type");

        let body = app.post(REGISTER, None, json!({"email": "a@b.co", "display_name": "A"})).await.expect_error(400, "validation_failed");
        assert_eq!(body["error"]["details"]["fields"]["password"], "is required");

        let body = app
            .post(REGISTER, None, json!({"email": "a@b.co", "password": 12345678, "display_name": "A"}))
            .await
            .expect_error(400, "validation_failed");
        assert!(body["error"]["details"]["fields"]["password"].as_str().unwrap().contains("invalid type"));

        let body = app
            .post(REGISTER, None, json!({"email": "a@b.co", "password": "long-enough", "display_name": "A", "role": "admin"}))
            .await
            .expect_error(400, "validation_failed");
        assert_eq!(body["error"]["details"]["fields"]["role"], "is not a known field", "unknown fields are refused, not ignored");

        let body = app
            .post(REGISTER, None, json!({"email": "a@b.co", "password": "long-enough", "display_name": "A",
                                         "learning_languages": [{"code": "en", "level": "fluent"}]}))
            .await
            .expect_error(400, "validation_failed");
        assert!(body["error"]["details"]["fields"].as_object().unwrap().contains_key("learning_languages[0].level"), "{body}");

        let body = app
            .post(REGISTER, None, json!({"email": "not-an-email", "password": "short", "display_name": "  "}))
            .await
            .expect_error(400, "validation_failed");
        let fields = body["error"]["details"]["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 3, "every bad field is reported at once: {body}");

        // None of that created an account.
        app.post("/api/v1/auth/login", None, json!({"email": "a@b.co", "password": "long-enough"}))
            .await
            .expect_error(401, "unauthorized");
    }
}

api_test! {
    async fn oversized_bodies_are_413(app) {
        let huge = format!(
            "{{\"email\":\"big@example.org\",\"password\":\"long-enough\",\"display_name\":\"{}\"}}",
            "x".repeat(2 * 1024 * 1024)
        );
        app.post_raw(REGISTER, "application/json", huge).await.expect_error(413, "payload_too_large");
        app.post("/api/v1/auth/login", None, json!({"email": "big@example.org", "password": "long-enough"}))
            .await
            .expect_error(401, "unauthorized");
    }
}

api_test! {
    async fn unknown_routes_and_methods_use_the_error_shape(app) {
        let reply = app.call(reqwest::Method::GET, "/api/v1/nope", None, None).await;
        reply.expect_error(404, "not_found");
        let reply = app.call(reqwest::Method::DELETE, "/api/v1/auth/login", None, None).await;
        reply.expect_error(405, "method_not_allowed");
    }
}
