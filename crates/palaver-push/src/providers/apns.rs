//! APNs with token-based authentication: an ES256 JWT made from the team's
//! `.p8` key, reused for most of its one-hour life (Apple refuses tokens
//! refreshed more often than every 20 minutes), over HTTP/2.
//!
//! Written on reqwest rather than the `a2` crate: `a2` fixes the endpoint
//! to Apple's two hosts, and the base URL must be configurable for tests and
//! staging; what remains (one JWT, one POST) is small.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use palaver_store::{OutboxItem, PushPayload};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::{ProviderError, PushProvider, SendOutcome, retry_after, unix_now};

/// Apple's production endpoint.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's development (sandbox) endpoint.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// How long a provider token is reused (Apple accepts up to 60 minutes).
pub const TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);

/// How to reach APNs.
#[derive(Clone)]
pub struct ApnsConfig {
    /// The `.p8` key (PKCS#8 PEM, P-256).
    pub key_pem: Vec<u8>,
    /// The key's id (10 characters, from the developer account).
    pub key_id: String,
    /// The team id: the JWT issuer.
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// APNs base URL: production, sandbox, or a stand-in.
    pub base_url: String,
}

impl std::fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ProviderClaims<'a> {
    iss: &'a str,
    iat: i64,
}

/// The APNs provider.
pub struct Apns {
    client: reqwest::Client,
    key: EncodingKey,
    config: ApnsConfig,
    jwt: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    /// Parses the key. `client` must speak HTTP/2 (see [`Apns::client`]).
    pub fn new(config: ApnsConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        let key = EncodingKey::from_ec_pem(&config.key_pem)
            .map_err(|e| ProviderError(format!("the APNs key is not a PKCS#8 PEM P-256 key (.p8): {e}")))?;
        Ok(Self { client, key, config, jwt: Mutex::new(None) })
    }

    /// An HTTP client that speaks only HTTP/2, as APNs requires (over TLS
    /// with ALPN, or cleartext prior knowledge for a local stand-in).
    pub fn client(timeout: Duration) -> Result<reqwest::Client, ProviderError> {
        super::install_crypto_provider();
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ProviderError(format!("cannot build the APNs HTTP/2 client: {e}")))
    }

    async fn provider_token(&self) -> Result<String, SendOutcome> {
        let mut cached = self.jwt.lock().await;
        if let Some((jwt, made)) = cached.as_ref()
            && made.elapsed() < TOKEN_REUSE
        {
            return Ok(jwt.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.config.key_id.clone());
        header.typ = None;
        let claims = ProviderClaims { iss: &self.config.team_id, iat: unix_now() };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| SendOutcome::Rejected { reason: format!("cannot sign the APNs token: {e}") })?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    async fn forget_token(&self) {
        *self.jwt.lock().await = None;
    }
}

#[async_trait]
impl PushProvider for Apns {
    fn name(&self) -> &'static str {
        "apns"
    }

    async fn send(&self, item: &OutboxItem, payload: &PushPayload) -> SendOutcome {
        if item.token.is_empty() || !item.token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return SendOutcome::InvalidToken { reason: "not an APNs device token".into() };
        }
        let jwt = match self.provider_token().await {
            Ok(jwt) => jwt,
            Err(outcome) => return outcome,
        };
        let mut aps = json!({
            "alert": { "title": payload.title, "body": payload.body },
            "sound": "default",
        });
        if let Some(badge) = payload.badge {
            aps["badge"] = badge.into();
        }
        if let Some(key) = &item.collapse_key {
            aps["thread-id"] = key.clone().into();
        }
        let body = json!({
            "aps": aps,
            "type": payload.notification_type.as_str(),
            "notification_id": payload.notification_id,
            "data": payload.data,
        });
        let expiration = unix_now() + i64::from(payload.ttl_secs);
        let url = format!("{}/3/device/{}", self.config.base_url.trim_end_matches('/'), item.token);
        let mut request = self
            .client
            .post(url)
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &self.config.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", if payload.high_priority { "10" } else { "5" })
            .header("apns-expiration", expiration.to_string())
            .json(&body);
        if let Some(key) = &item.collapse_key {
            // apns-collapse-id is at most 64 bytes.
            let mut end = key.len().min(64);
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            request = request.header("apns-collapse-id", &key[..end]);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return SendOutcome::Retry { after: None, reason: format!("APNs unreachable: {e}") },
        };
        let status = response.status();
        if status.is_success() {
            return SendOutcome::Delivered;
        }
        let after = retry_after(response.headers());
        let error: serde_json::Value = response.json().await.unwrap_or_default();
        let code = error.get("reason").and_then(|r| r.as_str()).unwrap_or_default().to_owned();
        let reason = format!("APNs {} {code}", status.as_u16());
        match (status.as_u16(), code.as_str()) {
            (410, _) | (_, "Unregistered" | "BadDeviceToken" | "DeviceTokenNotForTopic") => {
                SendOutcome::InvalidToken { reason }
            }
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.forget_token().await;
                SendOutcome::Retry { after, reason }
            }
            (429 | 500..=599, _) => SendOutcome::Retry { after, reason },
            _ => SendOutcome::Rejected { reason },
        }
    }
}
