//! Palaver's notifications and push.
//!
//! - [`NotificationService`]: turns domain events (likes, comments, follows,
//!   messages, calls) into in-app notifications, aggregated so users are not
//!   flooded, filtered by blocks and preferences, published live through a
//!   [`LivePublisher`], and queued for push in the durable outbox; plus the
//!   use cases behind the notifications API.
//! - [`outbox`]: workers that drain the outbox with leases (several per node,
//!   on many nodes, on PostgreSQL), with retries, backoff and a maximum age.
//! - [`providers`]: FCM HTTP v1 (OAuth2 service account), APNs (token auth
//!   over HTTP/2) and Web Push (VAPID, aes128gcm).
//!
//! Depends on `palaver-core`, `palaver-store` and `palaver-service` (for the
//! event bus). It must not depend on the server, axum (outside the test
//! stand-ins) or the real-time hub: live delivery goes through the
//! [`LivePublisher`] trait the server implements.

pub mod live;
pub mod outbox;
pub mod prefs;
pub mod providers;
pub mod render;
pub mod service;
#[cfg(feature = "test-util")]
pub mod testing;

pub use live::{LivePublisher, NoLive};
pub use outbox::{OutboxSettings, OutboxWorker};
pub use prefs::{ChannelPrefs, Preferences, QuietHours, QuietHoursMode};
pub use providers::{Providers, PushProvider, SendOutcome};
pub use service::{
    AdminNotification, NotificationService, NotificationSettings, NotificationsPage, TokenRegistration, WebPushPolicy,
};
