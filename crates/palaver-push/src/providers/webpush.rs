//! Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload
//! encryption (RFC 8291).
//!
//! The encryption is `web-push-native`'s (pure Rust). The VAPID JWT is made
//! here with `jsonwebtoken`: that crate's own VAPID helper leaves the port
//! out of the audience, which RFC 8292 defines as the endpoint's origin.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use palaver_store::{OutboxItem, PushPayload};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{ProviderError, PushProvider, SendOutcome, retry_after, unix_now};

/// How long a VAPID JWT is valid (RFC 8292 allows at most 24 hours).
pub const VAPID_LIFETIME_SECS: i64 = 12 * 3600;

/// The application server's VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    secret: p256::SecretKey,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").field("public_key", &self.public_key_base64()).finish_non_exhaustive()
    }
}

impl VapidKey {
    /// Reads a key given as base64url of the 32-byte private scalar (what
    /// `web-push generate-vapid-keys` prints) or as PEM (PKCS#8 or SEC1).
    pub fn parse(text: &str) -> Result<Self, ProviderError> {
        let text = text.trim();
        let secret = if text.starts_with("-----BEGIN") {
            p256::SecretKey::from_pkcs8_pem(text)
                .or_else(|_| p256::SecretKey::from_sec1_pem(text))
                .map_err(|e| ProviderError(format!("the VAPID private key PEM is not a P-256 key: {e}")))?
        } else {
            let bytes = URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| ProviderError("the VAPID private key must be base64url or PEM".into()))?;
            p256::SecretKey::from_slice(&bytes)
                .map_err(|_| ProviderError("the VAPID private key must be a 32-byte P-256 scalar".into()))?
        };
        Ok(Self { secret })
    }

    /// Wraps a key (tests generate one).
    pub fn from_secret(secret: p256::SecretKey) -> Self {
        Self { secret }
    }

    /// The private scalar, base64url: the form `PALAVER_VAPID_PRIVATE_KEY`
    /// takes.
    pub fn private_key_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.to_bytes())
    }

    /// The public key, base64url of the uncompressed point: what browsers
    /// take as `applicationServerKey` and what goes into `k=`.
    pub fn public_key_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }
}

/// How to send Web Push.
#[derive(Debug, Clone)]
pub struct WebPushConfig {
    /// The VAPID key.
    pub vapid: VapidKey,
    /// Contact for push services: `mailto:` or `https:` URL.
    pub subject: String,
}

#[derive(Serialize)]
struct VapidClaims<'a> {
    aud: &'a str,
    exp: i64,
    sub: &'a str,
}

/// The Web Push provider.
pub struct WebPush {
    client: reqwest::Client,
    key: EncodingKey,
    public_key: String,
    subject: String,
}

impl WebPush {
    /// Prepares the signing key.
    pub fn new(config: WebPushConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        let der = config
            .vapid
            .secret
            .to_pkcs8_der()
            .map_err(|e| ProviderError(format!("cannot encode the VAPID key: {e}")))?;
        Ok(Self {
            client,
            key: EncodingKey::from_ec_der(der.as_bytes()),
            public_key: config.vapid.public_key_base64(),
            subject: config.subject,
        })
    }

    fn vapid_header(&self, origin: &str) -> Result<String, SendOutcome> {
        let claims = VapidClaims { aud: origin, exp: unix_now() + VAPID_LIFETIME_SECS, sub: &self.subject };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)
            .map_err(|e| SendOutcome::Rejected { reason: format!("cannot sign the VAPID token: {e}") })?;
        Ok(format!("vapid t={jwt}, k={}", self.public_key))
    }
}

/// A `Topic` header from a collapse key: at most 32 characters of the URL-
/// and filename-safe base64 alphabet (RFC 8030 section 5.4).
pub fn topic(collapse_key: &str) -> String {
    let digest = Sha256::digest(collapse_key.as_bytes());
    URL_SAFE_NO_PAD.encode(digest).chars().take(32).collect()
}

#[async_trait]
impl PushProvider for WebPush {
    fn name(&self) -> &'static str {
        "webpush"
    }

    async fn send(&self, item: &OutboxItem, payload: &PushPayload) -> SendOutcome {
        let Some(subscription) = &item.web_push else {
            return SendOutcome::InvalidToken { reason: "web token without a subscription".into() };
        };
        let Ok(endpoint) = reqwest::Url::parse(&subscription.endpoint) else {
            return SendOutcome::InvalidToken { reason: "subscription endpoint is not a URL".into() };
        };
        let origin = endpoint.origin().ascii_serialization();
        let keys = URL_SAFE_NO_PAD
            .decode(subscription.keys.p256dh.trim_end_matches('='))
            .ok()
            .and_then(|b| p256::PublicKey::from_sec1_bytes(&b).ok());
        let auth = URL_SAFE_NO_PAD
            .decode(subscription.keys.auth.trim_end_matches('='))
            .ok()
            .and_then(|a| <[u8; 16]>::try_from(a).ok());
        let (Some(ua_public), Some(auth)) = (keys, auth) else {
            return SendOutcome::InvalidToken { reason: "subscription keys are not valid".into() };
        };
        let message = json!({
            "notification_id": payload.notification_id,
            "type": payload.notification_type.as_str(),
            "title": payload.title,
            "body": payload.body,
            "data": payload.data,
            "badge": payload.badge,
        });
        let plaintext = message.to_string().into_bytes();
        let auth = web_push_native::Auth::from(auth);
        let body = match web_push_native::encrypt(plaintext, &ua_public, &auth) {
            Ok(body) => body,
            Err(e) => return SendOutcome::Rejected { reason: format!("cannot encrypt the payload: {e}") },
        };
        let authorization = match self.vapid_header(&origin) {
            Ok(h) => h,
            Err(outcome) => return outcome,
        };
        let mut request = self
            .client
            .post(endpoint)
            .header("authorization", authorization)
            .header("ttl", payload.ttl_secs.to_string())
            .header("urgency", if payload.high_priority { "high" } else { "normal" })
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .body(body);
        if let Some(key) = &item.collapse_key {
            request = request.header("topic", topic(key));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return SendOutcome::Retry { after: None, reason: format!("push service unreachable: {e}") },
        };
        let status = response.status();
        if status.is_success() {
            return SendOutcome::Delivered;
        }
        let reason = format!("Web Push {}", status.as_u16());
        match status.as_u16() {
            404 | 410 => SendOutcome::InvalidToken { reason },
            429 | 500..=599 => SendOutcome::Retry { after: retry_after(response.headers()), reason },
            _ => SendOutcome::Rejected { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_short_and_url_safe() {
        let t = topic("message:room:12345678901234567890");
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(t, topic("message:room:12345678901234567890"));
    }

    #[test]
    fn vapid_keys_parse_from_base64url_and_pem() {
        let raw = "RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw";
        let key = VapidKey::parse(raw).unwrap();
        let pem = key.secret.to_pkcs8_pem(Default::default()).unwrap();
        assert_eq!(VapidKey::parse(&pem).unwrap().public_key_base64(), key.public_key_base64());
        assert_eq!(key.public_key_base64().len(), 87, "65 bytes uncompressed");
        assert!(VapidKey::parse("not a key!").is_err());
    }
}
