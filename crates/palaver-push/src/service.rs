//! The notifications service: domain events in, notifications out (stored,
//! live, queued for push), and the use cases of the notifications API.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use palaver_core::notification::{DeviceType, Notification, NotificationType, PushToken, WebPushSubscription};
use palaver_core::time::{Timestamp, now};
use palaver_core::{Error, FieldErrors, Id, Result, UserId};
use palaver_service::{DomainEvent, Principal};
use palaver_store::{NewNotification, NewPushToken, PushPlan, RecordedNotification, Rendered, Retracted, Store};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::live::{LivePublisher, NoLive};
use crate::prefs::{Preferences, QuietHoursMode};
use crate::render;

/// Which Web Push endpoints the server will POST to. Subscriptions name a
/// URL chosen by the client, so without a list the server could be made to
/// send requests anywhere (SSRF).
#[derive(Debug, Clone)]
pub struct WebPushPolicy {
    /// Allowed hosts; `example.com` also allows its subdomains.
    pub allowed_hosts: Vec<String>,
    /// Accept `http://` endpoints (local stand-ins only).
    pub allow_http: bool,
}

impl WebPushPolicy {
    /// The push services of the major browsers.
    pub fn browsers() -> Self {
        Self {
            allowed_hosts: [
                "fcm.googleapis.com",
                "android.googleapis.com",
                "push.services.mozilla.com",
                "notify.windows.com",
                "push.apple.com",
            ]
            .map(str::to_owned)
            .to_vec(),
            allow_http: false,
        }
    }

    fn check(&self, endpoint: &str) -> std::result::Result<(), String> {
        if endpoint.len() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        let url = reqwest::Url::parse(endpoint).map_err(|_| "must be a URL".to_owned())?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err("must be an https URL".into()),
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let allowed = self.allowed_hosts.iter().any(|h| {
            let h = h.trim().trim_start_matches('.').to_ascii_lowercase();
            !h.is_empty() && (host == h || host.ends_with(&format!(".{h}")))
        });
        if allowed { Ok(()) } else { Err(format!("push service `{host}` is not allowed")) }
    }
}

/// Settings of the notifications service.
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// Events with the same key within this window merge into one.
    pub aggregation_window: Duration,
    /// What quiet hours do to a push.
    pub quiet_hours_mode: QuietHoursMode,
    /// A push not sent within this time is dropped; also its TTL at the
    /// push service.
    pub push_max_age: Duration,
    /// TTL of an incoming-call push (ringing is over after this).
    pub call_push_ttl: Duration,
    /// Most push tokens per user; the oldest go first.
    pub max_tokens_per_user: u32,
    /// Allowed Web Push endpoints.
    pub web_push: WebPushPolicy,
    /// The VAPID public key browsers subscribe with, when Web Push is set up.
    pub vapid_public_key: Option<String>,
    /// Parallel fan-out lanes; events for one recipient stay in order.
    pub fanout_lanes: usize,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            aggregation_window: Duration::from_secs(3600),
            quiet_hours_mode: QuietHoursMode::Drop,
            push_max_age: Duration::from_secs(24 * 3600),
            call_push_ttl: Duration::from_secs(60),
            max_tokens_per_user: 20,
            web_push: WebPushPolicy::browsers(),
            vapid_public_key: None,
            fanout_lanes: 8,
        }
    }
}

/// A page of notifications.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationsPage {
    /// Newest first.
    pub items: Vec<Notification>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// A push token registration, validated by [`NotificationService::register_token`].
#[derive(Debug, Clone)]
pub struct TokenRegistration {
    /// The device token (required for ios and android; for web the
    /// endpoint is used when absent).
    pub token: Option<String>,
    /// Which push service.
    pub device_type: DeviceType,
    /// The browser subscription (web only).
    pub web_push: Option<WebPushSubscription>,
}

/// A notification sent by an operator or another part of the platform.
#[derive(Debug, Clone)]
pub struct AdminNotification {
    /// Recipients.
    pub user_ids: Vec<UserId>,
    /// `lesson_complete`, `achievement` or `system`.
    pub notification_type: NotificationType,
    /// Headline.
    pub title: String,
    /// Detail line.
    pub message: String,
    /// Ids for navigation.
    pub data: Value,
}

/// Most recipients of one admin notification.
pub const ADMIN_MAX_RECIPIENTS: usize = 1000;

struct Spec {
    user_id: UserId,
    notification_type: NotificationType,
    data: Value,
    key: Option<String>,
    actor: Option<UserId>,
    high_priority: bool,
    ttl: Option<Duration>,
    /// Rings through quiet hours when the user allows calls.
    is_ringing_call: bool,
}

/// Notifications: from events to the list, the live socket and the outbox.
pub struct NotificationService {
    store: Arc<dyn Store>,
    settings: NotificationSettings,
    live: RwLock<Arc<dyn LivePublisher>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for NotificationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationService").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl NotificationService {
    /// A service without live delivery (see [`Self::set_live_publisher`]).
    pub fn new(store: Arc<dyn Store>, settings: NotificationSettings) -> Self {
        Self { store, settings, live: RwLock::new(Arc::new(NoLive)), wake: Arc::new(Notify::new()) }
    }

    /// Where live notifications go: the server wires the real-time hub's
    /// `user:{id}` topic here.
    pub fn set_live_publisher(&self, live: Arc<dyn LivePublisher>) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live;
    }

    /// Notified whenever a push is queued on this node: outbox workers
    /// wait on it between polls.
    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The settings in force.
    pub fn settings(&self) -> &NotificationSettings {
        &self.settings
    }

    fn publish(&self, user_id: UserId, data: Value) {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner()).clone();
        live.publish_to_user(user_id, "notification", data);
    }

    /// Reacts to every event `events` receives until `shutdown`. Take the
    /// receiver from `EventBus::subscribe` when the app is built, before
    /// anything can publish, so nothing is missed. Events are spread
    /// over lanes by recipient, so one user's events stay in order (a like
    /// and its unlike) while different users' proceed in parallel.
    ///
    /// The bus is in memory: events published while the process dies, or
    /// missed because the fan-out fell more than the bus buffer behind
    /// (`Lagged`, logged and counted in `notification_events_lagged_total`),
    /// produce no notification. That is accepted here: the facts themselves
    /// (likes, comments, messages) are durable and visible in the app, and
    /// once a notification is recorded its pushes are durable in the outbox.
    pub fn spawn_fanout(
        self: &Arc<Self>,
        mut rx: broadcast::Receiver<DomainEvent>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let lanes = self.settings.fanout_lanes.max(1);
        let mut senders = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (tx, mut lane) = mpsc::channel::<DomainEvent>(1024);
            senders.push(tx);
            let service = self.clone();
            tokio::spawn(async move {
                while let Some(event) = lane.recv().await {
                    if let Err(e) = service.handle(event).await {
                        tracing::warn!(error = %e, "notification fan-out failed for an event");
                    }
                }
            });
        }
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    received = rx.recv() => received,
                    () = shutdown.cancelled() => break,
                };
                match event {
                    Ok(event) => {
                        let lane = usize::try_from(lane_key(&event).unsigned_abs() % lanes as u64).unwrap_or(0);
                        if let Some(tx) = senders.get(lane)
                            && tx.send(event).await.is_err()
                        {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "notification fan-out fell behind the event bus; events were missed");
                        metrics::counter!("notification_events_lagged_total").increment(missed);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    /// Reacts to one domain event.
    pub async fn handle(&self, event: DomainEvent) -> Result<()> {
        match event {
            DomainEvent::MomentLiked { moment_id, author_id, actor_id } => {
                self.notify(Spec {
                    user_id: author_id,
                    notification_type: NotificationType::Like,
                    data: json!({"kind": "like_moment", "moment_id": moment_id, "actor_id": actor_id}),
                    key: Some(format!("like:moment:{moment_id}")),
                    actor: Some(actor_id),
                    high_priority: false,
                    ttl: None,
                    is_ringing_call: false,
                })
                .await
            }
            DomainEvent::MomentUnliked { moment_id, author_id, actor_id } => {
                self.retract(author_id, &format!("like:moment:{moment_id}"), actor_id).await
            }
            DomainEvent::CommentLiked { comment_id, moment_id, author_id, actor_id } => {
                self.notify(Spec {
                    user_id: author_id,
                    notification_type: NotificationType::Like,
                    data: json!({"kind": "like_comment", "moment_id": moment_id, "comment_id": comment_id,
                                 "actor_id": actor_id}),
                    key: Some(format!("like:comment:{comment_id}")),
                    actor: Some(actor_id),
                    high_priority: false,
                    ttl: None,
                    is_ringing_call: false,
                })
                .await
            }
            DomainEvent::CommentUnliked { comment_id, author_id, actor_id, .. } => {
                self.retract(author_id, &format!("like:comment:{comment_id}"), actor_id).await
            }
            DomainEvent::Commented { comment_id, moment_id, moment_author_id, parent, actor_id } => {
                if let Some((parent_id, parent_author)) = parent {
                    self.notify(Spec {
                        user_id: parent_author,
                        notification_type: NotificationType::Comment,
                        data: json!({"kind": "reply", "moment_id": moment_id, "comment_id": comment_id,
                                     "parent_comment_id": parent_id, "actor_id": actor_id}),
                        key: Some(format!("reply:comment:{parent_id}")),
                        actor: Some(actor_id),
                        high_priority: false,
                        ttl: None,
                        is_ringing_call: false,
                    })
                    .await?;
                }
                // The moment's author hears of it too, unless the reply
                // notification already told them.
                if parent.is_none_or(|(_, parent_author)| parent_author != moment_author_id) {
                    self.notify(Spec {
                        user_id: moment_author_id,
                        notification_type: NotificationType::Comment,
                        data: json!({"kind": "comment", "moment_id": moment_id, "comment_id": comment_id,
                                     "actor_id": actor_id}),
                        key: Some(format!("comment:moment:{moment_id}")),
                        actor: Some(actor_id),
                        high_priority: false,
                        ttl: None,
                        is_ringing_call: false,
                    })
                    .await?;
                }
                Ok(())
            }
            DomainEvent::Followed { follower_id, followee_id } => {
                self.notify(Spec {
                    user_id: followee_id,
                    notification_type: NotificationType::Follow,
                    data: json!({"kind": "follow", "user_id": follower_id, "actor_id": follower_id}),
                    key: Some("follow".into()),
                    actor: Some(follower_id),
                    high_priority: false,
                    ttl: None,
                    is_ringing_call: false,
                })
                .await
            }
            DomainEvent::MessageSent { room_id, message_id, seq, sender_id, preview, notify_user_ids, .. } => {
                for user_id in notify_user_ids {
                    self.notify(Spec {
                        user_id,
                        notification_type: NotificationType::Message,
                        data: json!({"kind": "message", "room_id": room_id, "message_id": message_id, "seq": seq,
                                     "sender_id": sender_id, "preview": preview}),
                        key: Some(palaver_core::chat::message_notification_key(room_id)),
                        actor: Some(sender_id),
                        high_priority: true,
                        ttl: None,
                        is_ringing_call: false,
                    })
                    .await?;
                }
                Ok(())
            }
            DomainEvent::CallIncoming { call_id, caller_id, receiver_id, call_type } => {
                self.notify(Spec {
                    user_id: receiver_id,
                    notification_type: NotificationType::Call,
                    data: json!({"kind": "call_incoming", "call_id": call_id, "caller_id": caller_id,
                                 "call_type": call_type}),
                    key: Some(format!("call:{call_id}")),
                    actor: Some(caller_id),
                    high_priority: true,
                    ttl: Some(self.settings.call_push_ttl),
                    is_ringing_call: true,
                })
                .await
            }
            DomainEvent::CallMissed { call_id, caller_id, receiver_id, call_type } => {
                // Same key as the ringing notification: it becomes "missed"
                // in place, and the push replaces the ringing one.
                self.notify(Spec {
                    user_id: receiver_id,
                    notification_type: NotificationType::Call,
                    data: json!({"kind": "call_missed", "call_id": call_id, "caller_id": caller_id,
                                 "call_type": call_type}),
                    key: Some(format!("call:{call_id}")),
                    actor: Some(caller_id),
                    high_priority: false,
                    ttl: None,
                    is_ringing_call: false,
                })
                .await
            }
            other => {
                tracing::debug!(?other, "domain event without notifications");
                Ok(())
            }
        }
    }

    async fn preferences_of(&self, user_id: UserId) -> Result<Preferences> {
        let stored = self.store.notification_preferences(user_id).await?;
        Ok(stored.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default())
    }

    fn push_plan(&self, prefs: &Preferences, spec: &Spec, at: Timestamp) -> Option<PushPlan> {
        let ttl = spec.ttl.unwrap_or(self.settings.push_max_age).min(self.settings.push_max_age);
        let mut not_before = at;
        let rings_through = spec.is_ringing_call && prefs.quiet_hours.as_ref().is_some_and(|q| q.allow_calls);
        if let Some(until) = prefs.quiet_until(at)
            && !rings_through
        {
            match self.settings.quiet_hours_mode {
                QuietHoursMode::Drop => {
                    metrics::counter!("notifications_push_suppressed_total", "reason" => "quiet_hours").increment(1);
                    return None;
                }
                QuietHoursMode::Defer => not_before = until,
            }
        }
        Some(PushPlan {
            collapse_key: spec.key.clone(),
            high_priority: spec.high_priority,
            ttl_secs: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX),
            not_before,
            expires_at: not_before + delta(ttl),
        })
    }

    async fn notify(&self, spec: Spec) -> Result<()> {
        if let Some(actor) = spec.actor {
            if actor == spec.user_id {
                return Ok(());
            }
            if self.store.blocked_either(actor, spec.user_id).await? {
                metrics::counter!("notifications_suppressed_total", "reason" => "blocked").increment(1);
                return Ok(());
            }
        }
        let prefs = self.preferences_of(spec.user_id).await?;
        let channels = prefs.channels(spec.notification_type);
        if !channels.in_app && !channels.push {
            return Ok(());
        }
        let at = now();
        let push = if channels.push { self.push_plan(&prefs, &spec, at) } else { None };
        let new = NewNotification {
            user_id: spec.user_id,
            notification_type: spec.notification_type,
            data: spec.data,
            aggregation_key: spec.key,
            actor_id: spec.actor,
            aggregate_since: at - delta(self.settings.aggregation_window),
            in_app: channels.in_app,
            push,
            now: at,
        };
        let recorded = self.store.record_notification(&new, &render::render).await?;
        self.after_record(spec.user_id, &recorded);
        Ok(())
    }

    fn after_record(&self, user_id: UserId, recorded: &RecordedNotification) {
        if let Some(n) = &recorded.notification {
            metrics::counter!("notifications_recorded_total", "type" => n.notification_type.as_str()).increment(1);
            self.publish(
                user_id,
                json!({
                    "action": if recorded.created { "created" } else { "updated" },
                    "notification": n,
                    "unread_count": recorded.unread_count,
                }),
            );
        }
        if recorded.pushes_queued > 0 {
            self.wake.notify_one();
        }
    }

    async fn retract(&self, user_id: UserId, key: &str, actor: UserId) -> Result<()> {
        match self.store.retract_notification(user_id, key, actor, &render::render, now()).await? {
            Retracted::Unchanged => {}
            Retracted::Updated { notification, unread_count } => self.publish(
                user_id,
                json!({"action": "updated", "notification": notification, "unread_count": unread_count}),
            ),
            Retracted::Deleted { id, unread_count } => {
                self.publish(user_id, json!({"action": "deleted", "notification_id": id, "unread_count": unread_count}))
            }
        }
        Ok(())
    }

    /// The caller's notifications, newest first; `cursor` from the previous
    /// page; `limit` 1 to 100 (default 20).
    pub async fn list(
        &self,
        who: &Principal,
        unread_only: bool,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<NotificationsPage> {
        let limit = limit.unwrap_or(20);
        let mut errors = FieldErrors::new();
        if !(1..=100).contains(&limit) {
            errors.add("limit", "must be between 1 and 100");
        }
        let before = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => match c.parse::<Id>() {
                Ok(id) if id > 0 => Some(id),
                _ => {
                    errors.add("cursor", "is not a cursor this API returned");
                    None
                }
            },
        };
        errors.into_result()?;
        let mut items = self.store.list_notifications(who.id(), unread_only, before, limit + 1).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(|n| n.id.to_string()) } else { None };
        Ok(NotificationsPage { items, next_cursor })
    }

    /// The caller's unread count.
    pub async fn unread_count(&self, who: &Principal) -> Result<i64> {
        Ok(self.store.unread_notification_count(who.id()).await?)
    }

    /// Marks one notification read.
    pub async fn mark_read(&self, who: &Principal, id: Id) -> Result<Notification> {
        let n = self
            .store
            .mark_notification_read(who.id(), id, now())
            .await?
            .ok_or_else(|| Error::not_found("notification", id))?;
        let unread = self.store.unread_notification_count(who.id()).await?;
        self.publish(who.id(), json!({"action": "read", "notification_id": id, "unread_count": unread}));
        Ok(n)
    }

    /// Marks every notification (up to `up_to`, if given) read; returns how
    /// many changed and the unread count left.
    pub async fn mark_all_read(&self, who: &Principal, up_to: Option<Id>) -> Result<(u64, i64)> {
        let marked = self.store.mark_all_notifications_read(who.id(), up_to, now()).await?;
        let unread = self.store.unread_notification_count(who.id()).await?;
        self.publish(who.id(), json!({"action": "read_all", "unread_count": unread}));
        Ok((marked, unread))
    }

    /// The caller's preferences, every type listed.
    pub async fn preferences(&self, who: &Principal) -> Result<Preferences> {
        Ok(self.preferences_of(who.id()).await?.complete())
    }

    /// Replaces the caller's preferences.
    pub async fn set_preferences(&self, who: &Principal, prefs: Preferences) -> Result<Preferences> {
        prefs.validate()?;
        let value = serde_json::to_value(&prefs).map_err(Error::internal)?;
        self.store.set_notification_preferences(who.id(), &value, now()).await?;
        Ok(prefs.complete())
    }

    /// Registers a device for push; a token registered by another user moves
    /// to the caller.
    pub async fn register_token(&self, who: &Principal, reg: TokenRegistration) -> Result<PushToken> {
        let mut errors = FieldErrors::new();
        let token = match reg.device_type {
            DeviceType::Ios | DeviceType::Android => {
                if reg.web_push.is_some() {
                    errors.add("web_push", "is only for device_type web");
                }
                let token = reg.token.clone().unwrap_or_default();
                let ok = if reg.device_type == DeviceType::Ios {
                    (64..=200).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit())
                } else {
                    (1..=4096).contains(&token.len())
                        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
                };
                if reg.token.is_none() {
                    errors.add("token", "is required");
                } else if !ok {
                    errors.add(
                        "token",
                        if reg.device_type == DeviceType::Ios {
                            "must be an APNs device token (64 or more hex digits)"
                        } else {
                            "must be an FCM registration token"
                        },
                    );
                }
                token
            }
            DeviceType::Web => match &reg.web_push {
                None => {
                    errors.add("web_push", "is required for device_type web");
                    String::new()
                }
                Some(sub) => {
                    if let Err(m) = self.settings.web_push.check(&sub.endpoint) {
                        errors.add("web_push.endpoint", m);
                    }
                    let point = URL_SAFE_NO_PAD
                        .decode(sub.keys.p256dh.trim_end_matches('='))
                        .ok()
                        .filter(|b| p256::PublicKey::from_sec1_bytes(b).is_ok());
                    if point.is_none() {
                        errors.add("web_push.keys.p256dh", "must be a base64url P-256 public key");
                    }
                    let auth = URL_SAFE_NO_PAD.decode(sub.keys.auth.trim_end_matches('=')).ok();
                    if auth.is_none_or(|a| a.len() != 16) {
                        errors.add("web_push.keys.auth", "must be 16 bytes, base64url");
                    }
                    let token = reg.token.clone().unwrap_or_else(|| sub.endpoint.clone());
                    if token.is_empty() || token.len() > 2048 {
                        errors.add("token", "must be 1 to 2048 characters");
                    }
                    token
                }
            },
        };
        errors.into_result()?;
        let new = NewPushToken { token, device_type: reg.device_type, web_push: reg.web_push };
        Ok(self.store.register_push_token(who.id(), &new, self.settings.max_tokens_per_user, now()).await?)
    }

    /// Unregisters one of the caller's tokens.
    pub async fn unregister_token(&self, who: &Principal, token: &str) -> Result<()> {
        if self.store.delete_push_token(who.id(), token).await? {
            Ok(())
        } else {
            Err(Error::NotFound("push token not found".into()))
        }
    }

    /// The caller's registered devices.
    pub async fn tokens(&self, who: &Principal) -> Result<Vec<PushToken>> {
        Ok(self.store.push_tokens(who.id()).await?)
    }

    /// Sends a `lesson_complete`, `achievement` or `system` notification to
    /// users (admins only). Preferences, quiet hours and push apply as for
    /// any notification; the text is the caller's.
    pub async fn send_admin(&self, who: &Principal, req: AdminNotification) -> Result<Vec<Notification>> {
        if who.user.role != palaver_core::user::Role::Admin {
            return Err(Error::Forbidden("only administrators send notifications".into()));
        }
        let mut errors = FieldErrors::new();
        if !matches!(
            req.notification_type,
            NotificationType::LessonComplete | NotificationType::Achievement | NotificationType::System
        ) {
            errors.add("notification_type", "must be lesson_complete, achievement or system");
        }
        if let Err(m) = palaver_core::validate::text(req.title.trim(), 1, 200) {
            errors.add("title", m);
        }
        if let Err(m) = palaver_core::validate::text(&req.message, 0, 2000) {
            errors.add("message", m);
        }
        if req.user_ids.is_empty() || req.user_ids.len() > ADMIN_MAX_RECIPIENTS {
            errors.add("user_ids", format!("must name 1 to {ADMIN_MAX_RECIPIENTS} users"));
        }
        if !req.data.is_object() {
            errors.add("data", "must be an object");
        } else if req.data.to_string().len() > 4096 {
            errors.add("data", "must be at most 4096 bytes as JSON");
        }
        errors.into_result()?;
        let mut ids = req.user_ids.clone();
        ids.sort_unstable();
        ids.dedup();
        for id in &ids {
            if self.store.user_by_id(*id).await?.is_none() {
                return Err(Error::not_found("user", id));
            }
        }
        let text = Rendered { title: req.title.trim().to_owned(), message: req.message.clone() };
        let render = move |_: &palaver_store::RenderInput<'_>| text.clone();
        let mut out = Vec::new();
        for user_id in ids {
            let prefs = self.preferences_of(user_id).await?;
            let channels = prefs.channels(req.notification_type);
            if !channels.in_app && !channels.push {
                continue;
            }
            let at = now();
            let spec = Spec {
                user_id,
                notification_type: req.notification_type,
                data: req.data.clone(),
                key: None,
                actor: None,
                high_priority: false,
                ttl: None,
                is_ringing_call: false,
            };
            let push = if channels.push { self.push_plan(&prefs, &spec, at) } else { None };
            let new = NewNotification {
                user_id,
                notification_type: req.notification_type,
                data: req.data.clone(),
                aggregation_key: None,
                actor_id: None,
                aggregate_since: at,
                in_app: channels.in_app,
                push,
                now: at,
            };
            let recorded = self.store.record_notification(&new, &render).await?;
            self.after_record(user_id, &recorded);
            out.extend(recorded.notification);
        }
        Ok(out)
    }
}

/// What orders an event with others: its recipient (or room).
fn lane_key(event: &DomainEvent) -> i64 {
    match event {
        DomainEvent::MomentLiked { author_id, .. }
        | DomainEvent::MomentUnliked { author_id, .. }
        | DomainEvent::CommentLiked { author_id, .. }
        | DomainEvent::CommentUnliked { author_id, .. } => *author_id,
        DomainEvent::Commented { moment_author_id, .. } => *moment_author_id,
        DomainEvent::Followed { followee_id, .. } => *followee_id,
        DomainEvent::MessageSent { room_id, .. } => *room_id,
        DomainEvent::CallIncoming { receiver_id, .. } | DomainEvent::CallMissed { receiver_id, .. } => *receiver_id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_push_endpoints_must_be_allowed() {
        let policy = WebPushPolicy::browsers();
        assert!(policy.check("https://fcm.googleapis.com/fcm/send/abc").is_ok());
        assert!(policy.check("https://updates.push.services.mozilla.com/wpush/v2/x").is_ok());
        assert!(policy.check("https://wns2-par02p.notify.windows.com/w/?token=x").is_ok());
        assert!(policy.check("http://fcm.googleapis.com/fcm/send/abc").is_err(), "https only");
        assert!(policy.check("https://169.254.169.254/latest/meta-data").is_err());
        assert!(policy.check("https://evil-fcm.googleapis.com.attacker.org/").is_err());
        assert!(policy.check("https://notfcm.googleapis.com.evil/").is_err());
        let local = WebPushPolicy { allowed_hosts: vec!["127.0.0.1".into()], allow_http: true };
        assert!(local.check("http://127.0.0.1:4000/push/1").is_ok());
    }
}
