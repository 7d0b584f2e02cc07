//! ICE servers for clients: STUN urls as configured, and TURN urls with
//! short-lived credentials in the coturn REST API scheme
//! (`use-auth-secret`): the username is `expiry:user_id` (expiry in Unix
//! seconds) and the password is base64(HMAC-SHA1(shared secret, username)).
//! coturn recomputes the same HMAC with the same secret, so Palaver and
//! coturn share a secret and nothing else: no user database in coturn, and
//! a leaked credential stops working at its expiry.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use palaver_core::UserId;
use palaver_core::time::Timestamp;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

/// Where clients find STUN and TURN, from configuration.
#[derive(Debug, Clone, Default)]
pub struct IceSettings {
    /// `stun:` urls, given to every client without credentials.
    pub stun_urls: Vec<String>,
    /// `turn:` / `turns:` urls; offered only with a secret.
    pub turn_urls: Vec<String>,
    /// The secret shared with coturn (`static-auth-secret`).
    pub turn_secret: Option<SecretString>,
    /// How long a TURN credential stays valid.
    pub turn_ttl: Duration,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IceServer {
    /// STUN or TURN urls.
    pub urls: Vec<String>,
    /// TURN username (`expiry:user_id`); absent for STUN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password; absent for STUN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What `GET /rtc/ice-servers` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IceConfig {
    /// Pass as `iceServers` to `RTCPeerConnection`.
    pub ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials stay valid; fetch again before then.
    pub ttl: u64,
}

/// The coturn REST API credential for `user` valid until `expiry` (Unix
/// seconds): `(username, password)`.
pub fn turn_credential(secret: &str, user: UserId, expiry: i64) -> (String, String) {
    let username = format!("{expiry}:{user}");
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let password = match Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, password)
}

impl IceSettings {
    /// The ICE servers for `user` at `now`.
    pub fn for_user(&self, user: UserId, now: Timestamp) -> IceConfig {
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer { urls: self.stun_urls.clone(), username: None, credential: None });
        }
        let ttl = self.turn_ttl.as_secs();
        if let Some(secret) = &self.turn_secret
            && !self.turn_urls.is_empty()
        {
            let expiry = now.timestamp().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
            let (username, password) = turn_credential(secret.expose_secret(), user, expiry);
            ice_servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(password),
            });
        }
        IceConfig { ice_servers, ttl }
    }
}
