//! FCM HTTP v1: `POST {base}/v1/projects/{project}/messages:send` with an
//! OAuth2 access token obtained from a service account key by the JWT bearer
//! grant (RFC 7523), cached until shortly before it expires.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use palaver_store::{OutboxItem, PushPayload};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use super::{ProviderError, PushProvider, SendOutcome, retry_after, string_map, unix_now};

/// The OAuth2 scope for sending with FCM.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Google's token endpoint, used when the key names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// FCM's API.
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";

/// The fields of a Google service account key file that matter here.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// The account's email: the JWT issuer.
    pub client_email: String,
    /// PEM private key (RSA).
    pub private_key: String,
    /// The key's id, sent as the JWT `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// The Firebase project, when not configured separately.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Where to exchange the JWT for an access token.
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

/// How to reach FCM.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The service account key.
    pub service_account: ServiceAccount,
    /// The Firebase project id.
    pub project_id: String,
    /// FCM's base URL (tests and staging point elsewhere).
    pub base_url: String,
    /// The token endpoint; default: the key's `token_uri`, else Google's.
    pub token_url: Option<String>,
}

struct CachedToken {
    token: String,
    refresh_at: Instant,
}

/// The FCM HTTP v1 provider.
pub struct Fcm {
    client: reqwest::Client,
    key: EncodingKey,
    key_id: Option<String>,
    issuer: String,
    token_url: String,
    send_url: String,
    token: Mutex<Option<CachedToken>>,
}

#[derive(Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl Fcm {
    /// Parses the key and prepares the URLs; no request yet.
    pub fn new(config: FcmConfig, client: reqwest::Client) -> Result<Self, ProviderError> {
        let key = EncodingKey::from_rsa_pem(config.service_account.private_key.as_bytes())
            .map_err(|e| ProviderError(format!("the FCM service account private key is not an RSA PEM key: {e}")))?;
        let token_url = config
            .token_url
            .clone()
            .or_else(|| config.service_account.token_uri.clone())
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let base = config.base_url.trim_end_matches('/');
        Ok(Self {
            client,
            key,
            key_id: config.service_account.private_key_id.clone(),
            issuer: config.service_account.client_email.clone(),
            send_url: format!("{base}/v1/projects/{}/messages:send", config.project_id),
            token_url,
            token: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a fresh one from the token
    /// endpoint (one request at a time; others wait for it).
    async fn access_token(&self) -> Result<String, SendOutcome> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.token.clone());
        }
        let iat = unix_now();
        let claims = GrantClaims { iss: &self.issuer, scope: FCM_SCOPE, aud: &self.token_url, iat, exp: iat + 3600 };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| SendOutcome::Rejected { reason: format!("cannot sign the OAuth2 grant: {e}") })?;
        let response = self
            .client
            .post(&self.token_url)
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)])
            .send()
            .await
            .map_err(|e| SendOutcome::Retry { after: None, reason: format!("OAuth2 token endpoint: {e}") })?;
        let status = response.status();
        if !status.is_success() {
            let after = retry_after(response.headers());
            let body = response.text().await.unwrap_or_default();
            tracing::warn!(%status, body = %truncate(&body), "FCM OAuth2 token request failed");
            return Err(SendOutcome::Retry { after, reason: format!("OAuth2 token endpoint answered {status}") });
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| SendOutcome::Retry { after: None, reason: format!("OAuth2 token response: {e}") })?;
        // Refresh a minute early (or halfway, for very short lifetimes).
        let lifetime = Duration::from_secs(token.expires_in);
        let margin = Duration::from_secs(60).min(lifetime / 2);
        *cached =
            Some(CachedToken { token: token.access_token.clone(), refresh_at: Instant::now() + lifetime - margin });
        Ok(token.access_token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(300) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The FCM error code of an error body (`UNREGISTERED`, ...), from the
/// `google.firebase.fcm.v1.FcmError` detail, else the status name.
fn fcm_error_code(body: &serde_json::Value) -> Option<String> {
    let error = body.get("error")?;
    let details = error.get("details").and_then(|d| d.as_array());
    let code = details.into_iter().flatten().find_map(|d| d.get("errorCode").and_then(|c| c.as_str()));
    code.or_else(|| error.get("status").and_then(|s| s.as_str())).map(str::to_owned)
}

#[async_trait]
impl PushProvider for Fcm {
    fn name(&self) -> &'static str {
        "fcm"
    }

    async fn send(&self, item: &OutboxItem, payload: &PushPayload) -> SendOutcome {
        let token = match self.access_token().await {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let mut android = json!({
            "priority": if payload.high_priority { "HIGH" } else { "NORMAL" },
            "ttl": format!("{}s", payload.ttl_secs),
        });
        if let Some(key) = &item.collapse_key {
            android["collapse_key"] = key.clone().into();
            android["notification"] = json!({ "tag": key });
        }
        let body = json!({
            "message": {
                "token": item.token,
                "notification": { "title": payload.title, "body": payload.body },
                "data": string_map(payload),
                "android": android,
            }
        });
        let response = match self.client.post(&self.send_url).bearer_auth(&token).json(&body).send().await {
            Ok(r) => r,
            Err(e) => return SendOutcome::Retry { after: None, reason: format!("FCM unreachable: {e}") },
        };
        let status = response.status();
        if status.is_success() {
            return SendOutcome::Delivered;
        }
        let after = retry_after(response.headers());
        let error: serde_json::Value = response.json().await.unwrap_or_default();
        let code = fcm_error_code(&error).unwrap_or_default();
        let reason = format!("FCM {} {code}", status.as_u16());
        match (status.as_u16(), code.as_str()) {
            (_, "UNREGISTERED" | "SENDER_ID_MISMATCH") | (404, _) => SendOutcome::InvalidToken { reason },
            (401, _) | (_, "UNAUTHENTICATED") => {
                // The access token was revoked or expired early: fetch another.
                self.forget_token().await;
                SendOutcome::Retry { after, reason }
            }
            (429 | 500..=599, _) | (_, "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => {
                SendOutcome::Retry { after, reason }
            }
            _ => SendOutcome::Rejected { reason },
        }
    }
}
