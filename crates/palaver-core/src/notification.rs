//! Notifications and push tokens: what a user is told about, and the devices
//! it may be pushed to.

// `DateTime<Utc>` spelled out (not the `Timestamp` alias) so utoipa
// recognises the fields as date-times.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Id, UserId};

/// What a notification is about. Users choose per type whether they want it
/// in the app and on their devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationType {
    /// Someone liked a moment or a comment.
    Like,
    /// Someone commented on a moment or replied to a comment.
    Comment,
    /// Someone started following the user.
    Follow,
    /// A chat message arrived while the user was not viewing the room.
    Message,
    /// An incoming or missed call.
    Call,
    /// A lesson was completed (from the learning platform).
    LessonComplete,
    /// An achievement was earned (from the learning platform).
    Achievement,
    /// An announcement from the operators.
    System,
}

impl NotificationType {
    /// Every type, in a stable order.
    pub const ALL: [NotificationType; 8] = [
        NotificationType::Like,
        NotificationType::Comment,
        NotificationType::Follow,
        NotificationType::Message,
        NotificationType::Call,
        NotificationType::LessonComplete,
        NotificationType::Achievement,
        NotificationType::System,
    ];

    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::Like => "like",
            NotificationType::Comment => "comment",
            NotificationType::Follow => "follow",
            NotificationType::Message => "message",
            NotificationType::Call => "call",
            NotificationType::LessonComplete => "lesson_complete",
            NotificationType::Achievement => "achievement",
            NotificationType::System => "system",
        }
    }
}

impl std::fmt::Display for NotificationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotificationType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotificationType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            format!(
                "unknown notification type `{s}` (expected like, comment, follow, message, call, lesson_complete, \
                 achievement or system)"
            )
        })
    }
}

/// A notification as its owner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// The notification's id.
    pub id: Id,
    /// Whose it is.
    pub user_id: UserId,
    /// What it is about.
    pub notification_type: NotificationType,
    /// Rendered by the server ("Ana and 3 others liked your moment").
    pub title: String,
    /// Rendered by the server: the detail line.
    pub message: String,
    /// Ids a client needs to navigate (`moment_id`, `comment_id`, `room_id`,
    /// `call_id`, `user_id`, ...), depending on the type.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// How many different people this notification stands for (aggregation).
    pub actor_count: i64,
    /// How many events were merged into it (several messages in one room).
    pub event_count: i64,
    /// The user has seen it.
    pub is_read: bool,
    /// At least one push for it reached a push service.
    pub is_sent: bool,
    /// When it was first created.
    pub created_at: DateTime<Utc>,
    /// When it last changed (aggregation updates it in place).
    pub updated_at: DateTime<Utc>,
    /// When it was marked read.
    pub read_at: Option<DateTime<Utc>>,
}

/// The kind of device a push token belongs to, which decides the push
/// service: APNs for `ios`, FCM for `android`, Web Push for `web`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    /// An Apple device, through APNs.
    Ios,
    /// An Android device, through FCM HTTP v1.
    Android,
    /// A browser, through Web Push (RFC 8030) with VAPID.
    Web,
}

impl DeviceType {
    /// Every device type.
    pub const ALL: [DeviceType; 3] = [DeviceType::Ios, DeviceType::Android, DeviceType::Web];

    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Ios => "ios",
            DeviceType::Android => "android",
            DeviceType::Web => "web",
        }
    }
}

impl std::fmt::Display for DeviceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeviceType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown device type `{s}` (expected ios, android or web)"))
    }
}

/// A browser's Web Push subscription (`PushSubscription.toJSON()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebPushSubscription {
    /// The push service URL to POST to.
    pub endpoint: String,
    /// The subscription's keys.
    pub keys: WebPushKeys,
}

/// The keys of a Web Push subscription, base64url as browsers give them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebPushKeys {
    /// The browser's P-256 public key (65 bytes, uncompressed point).
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

/// A device registered for push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushToken {
    /// The token's id.
    pub id: Id,
    /// Its owner; one token belongs to one user.
    pub user_id: UserId,
    /// The device token (APNs, FCM) or, for the web, the subscription's
    /// identity (its endpoint unless the client names it).
    pub token: String,
    /// Which push service reaches it.
    pub device_type: DeviceType,
    /// For the web: where and how to encrypt.
    pub web_push: Option<WebPushSubscription>,
    /// When it was first registered.
    pub created_at: DateTime<Utc>,
    /// When it was last registered or moved.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in NotificationType::ALL {
            assert_eq!(t.as_str().parse::<NotificationType>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for d in DeviceType::ALL {
            assert_eq!(d.as_str().parse::<DeviceType>().unwrap(), d);
        }
        assert!("likes".parse::<NotificationType>().is_err());
        assert!("windows".parse::<DeviceType>().is_err());
    }
}
