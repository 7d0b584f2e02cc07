//! Push services: one [`PushProvider`] per device type.
//!
//! Providers turn a queued push into one HTTP request and classify the
//! answer as delivered, retry later, dead token (pruned) or rejected. They
//! never retry themselves: the outbox decides when.

pub mod apns;
pub mod fcm;
pub mod webpush;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use palaver_core::notification::DeviceType;
use palaver_store::{OutboxItem, PushPayload};

pub use apns::{Apns, ApnsConfig};
pub use fcm::{Fcm, FcmConfig, ServiceAccount};
pub use webpush::{VapidKey, WebPush, WebPushConfig};

/// How a push service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted for delivery.
    Delivered,
    /// Failed for now (overloaded, down, credentials being refreshed):
    /// retry, not before `after` if the service said so.
    Retry {
        /// The service's `Retry-After`.
        after: Option<Duration>,
        /// What happened (status and error code; never a token).
        reason: String,
    },
    /// The token or subscription is gone for good: prune it.
    InvalidToken {
        /// The service's error code.
        reason: String,
    },
    /// Refused for good (bad payload, bad configuration): drop the push.
    Rejected {
        /// What happened.
        reason: String,
    },
}

/// One push service.
#[async_trait]
pub trait PushProvider: Send + Sync {
    /// `fcm`, `apns` or `webpush`, for metrics and logs.
    fn name(&self) -> &'static str;
    /// Sends one push to one device.
    async fn send(&self, item: &OutboxItem, payload: &PushPayload) -> SendOutcome;
}

/// The configured providers. One without credentials is `None`: pushes to
/// its tokens are skipped (and counted), the tokens kept.
#[derive(Clone, Default)]
pub struct Providers {
    /// Android, through FCM HTTP v1.
    pub fcm: Option<Arc<dyn PushProvider>>,
    /// iOS, through APNs.
    pub apns: Option<Arc<dyn PushProvider>>,
    /// Browsers, through Web Push.
    pub web: Option<Arc<dyn PushProvider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("fcm", &self.fcm.is_some())
            .field("apns", &self.apns.is_some())
            .field("web", &self.web.is_some())
            .finish()
    }
}

impl Providers {
    /// The provider for a device type, if configured.
    pub fn for_device(&self, device: DeviceType) -> Option<&Arc<dyn PushProvider>> {
        match device {
            DeviceType::Android => self.fcm.as_ref(),
            DeviceType::Ios => self.apns.as_ref(),
            DeviceType::Web => self.web.as_ref(),
        }
    }
}

/// Why a provider could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

/// Makes `ring` the process's TLS crypto provider. reqwest is built with
/// rustls but without a default provider (the default, aws-lc, needs a C
/// toolchain and cmake), so every process must install one before it builds
/// any HTTP client; the server does it at start-up. Calling it again is
/// harmless: the first provider stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for the push services: rustls with the ring provider
/// (no C toolchain needed), HTTP/2 where the server offers it.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| ProviderError(format!("cannot build the HTTP client: {e}")))
}

/// The `Retry-After` of a response, in seconds (the HTTP-date form is rare
/// from push services and read as absent).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The data map FCM and the apps expect: every value a string.
pub(crate) fn string_map(payload: &PushPayload) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    if let Some(object) = payload.data.as_object() {
        for (k, v) in object {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            map.insert(k.clone(), serde_json::Value::String(text));
        }
    }
    map.insert("type".into(), payload.notification_type.as_str().into());
    if let Some(id) = payload.notification_id {
        map.insert("notification_id".into(), id.to_string().into());
    }
    map
}
