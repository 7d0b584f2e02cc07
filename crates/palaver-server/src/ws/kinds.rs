//! What the server plugs into the hub for the topic kinds it owns without
//! a service: `presence:{id}`, plus the hooks and the live publisher for
//! notifications.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use palaver_core::{Error, Result, UserId};
use palaver_realtime::{Action, Hub, PresenceHooks, Replayed, Topic, TopicKind};
use palaver_service::{Principal, Realtime, RealtimeHandle};
use palaver_store::Store;
use serde_json::json;

/// `presence:{id}`: a user's online state. "Allowed" to see it: the user
/// themselves, and anyone when neither user blocked the other (a blocked
/// pair cannot see each other's presence, either way).
pub struct PresenceKind {
    /// Users and blocks.
    pub store: Arc<dyn Store>,
    /// Online state (the hub, installed after this kind is built).
    pub realtime: RealtimeHandle,
}

#[async_trait]
impl TopicKind for PresenceKind {
    async fn authorize(&self, who: &Principal, topic: &Topic, _action: Action) -> Result<()> {
        let user = who.id();
        let target = topic.numeric_id()?;
        if target == user {
            return Ok(());
        }
        if self.store.user_by_id(target).await?.is_none() {
            return Err(Error::not_found("user", target));
        }
        if self.store.blocked_either(user, target).await? {
            return Err(Error::Forbidden("you cannot see this user's presence".into()));
        }
        Ok(())
    }

    /// The current state, so a subscriber need not wait for a change.
    async fn snapshot(&self, _who: &Principal, topic: &Topic) -> Result<Vec<Replayed>> {
        let target = topic.numeric_id()?;
        let online = self.realtime.is_online(target).await;
        let last_seen = match online {
            true => None,
            false => self.store.user_by_id(target).await?.and_then(|u| u.last_seen_at),
        };
        Ok(vec![Replayed {
            event_type: "presence".into(),
            seq: None,
            data: json!({"user_id": target, "online": online, "last_seen": last_seen}),
        }])
    }

    fn tracks_viewers(&self) -> bool {
        false
    }
}

/// Records `last_seen` when a user goes offline everywhere, takes them
/// out of the matching queue (they can no longer take a match) and out of
/// every voice room (nobody is left sitting in a room they cannot hear).
pub struct StoreHooks(
    pub Arc<dyn Store>,
    pub Option<Arc<palaver_rtc::MatchService>>,
    pub Option<Arc<palaver_service::VoiceService>>,
);

#[async_trait]
impl PresenceHooks for StoreHooks {
    async fn went_offline(&self, user: UserId, at: DateTime<Utc>) {
        if let Err(e) = self.0.touch_last_seen(user, at).await {
            tracing::warn!(error = %e, user, "cannot record last seen");
        }
        if let Some(voice) = &self.2
            && let Err(e) = voice.on_disconnect(user).await
        {
            tracing::warn!(error = %e, user, "cannot take a user who went offline out of their voice rooms");
        }
        if let Some(matching) = &self.1
            && let Err(e) = matching.on_all_devices_disconnected(user).await
        {
            tracing::warn!(error = %e, user, "cannot take a user who went offline out of the matching queue");
        }
    }
}

/// Live notifications: `notification` events on `user:{id}`.
pub struct HubLive(pub Hub);

impl palaver_push::LivePublisher for HubLive {
    fn publish_to_user(&self, user_id: UserId, event_type: &str, data: serde_json::Value) {
        self.0.publish_event(&Topic::user(user_id), event_type, None, None, &data);
    }
}
