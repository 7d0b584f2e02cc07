//! `/notifications` and `/push-tokens`: the caller's notifications, their
//! preferences and devices; and `/admin/notifications` for the rest of the
//! platform (lesson_complete, achievement, system).

use axum::extract::State;
use axum::http::StatusCode;
use palaver_core::notification::{DeviceType, Notification, NotificationType, PushToken, WebPushSubscription};
use palaver_core::{Id, UserId};
use palaver_push::service::{AdminNotification, TokenRegistration};
use palaver_push::{NotificationsPage, Preferences};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(unread_count))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(push_config))
        .routes(routes!(register_token, list_tokens))
        .routes(routes!(unregister_token))
        .routes(routes!(admin_send))
}

/// Which notifications to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only unread ones.
    pub unread: Option<bool>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of notifications, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub items: Vec<Notification>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

impl From<NotificationsPage> for NotificationList {
    fn from(p: NotificationsPage) -> Self {
        Self { items: p.items, next_cursor: p.next_cursor }
    }
}

/// The caller's unread count.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub unread_count: i64,
}

/// Which notifications `read_all` marks.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadAllQuery {
    /// Only those with an id up to this one (the newest the client has
    /// shown), so one arriving meanwhile stays unread.
    pub up_to_id: Option<Id>,
}

/// What `read_all` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadAll {
    /// How many were marked read.
    pub marked: u64,
    /// Unread left (newer than `up_to_id`).
    pub unread_count: i64,
}

/// What a client needs to set up push.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushConfig {
    /// The VAPID public key for `pushManager.subscribe`
    /// (`applicationServerKey`), null when Web Push is off.
    pub vapid_public_key: Option<String>,
    /// Device types this server can push to.
    pub device_types: Vec<DeviceType>,
}

/// A device to push to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterTokenRequest {
    /// APNs device token (hex) or FCM registration token; for web, optional
    /// (the subscription endpoint identifies it).
    pub token: Option<String>,
    pub device_type: DeviceType,
    /// The browser's `PushSubscription` (web only).
    pub web_push: Option<WebPushSubscriptionRequest>,
}

/// `PushSubscription.toJSON()`, as browsers give it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebPushSubscriptionRequest {
    pub endpoint: String,
    pub keys: palaver_core::notification::WebPushKeys,
    /// Sent by browsers; ignored.
    #[serde(default, rename = "expirationTime")]
    #[schema(value_type = Option<i64>)]
    pub expiration_time: Option<serde_json::Value>,
}

/// The caller's devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushTokenList {
    pub items: Vec<PushToken>,
}

/// A notification from an operator or another part of the platform.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminNotificationRequest {
    /// Recipients (1 to 1000).
    pub user_ids: Vec<UserId>,
    /// `lesson_complete`, `achievement` or `system`.
    pub notification_type: NotificationType,
    /// Headline, 1 to 200 characters.
    pub title: String,
    /// Detail line, up to 2000 characters.
    #[serde(default)]
    pub message: String,
    /// Ids for the client to navigate with (an object, at most 4 KiB).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// The notifications sent (recipients who turned the type off get none).
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminNotificationResponse {
    pub items: Vec<Notification>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/notifications", tag = "notifications", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = NotificationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<ApiJson<NotificationList>> {
    let page = state.notifications.list(&me, q.unread.unwrap_or(false), q.cursor.as_deref(), q.limit).await?;
    Ok(ApiJson(page.into()))
}

/// How many notifications the caller has not read.
#[utoipa::path(get, path = "/notifications/unread_count", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = UnreadCount), (status = 401, body = ErrorBody)))]
async fn unread_count(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<ApiJson<UnreadCount>> {
    Ok(ApiJson(UnreadCount { unread_count: state.notifications.unread_count(&me).await? }))
}

/// Marks one notification read (idempotent).
#[utoipa::path(post, path = "/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Notification id")),
    responses((status = 200, body = Notification), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn mark_read(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<Notification>> {
    Ok(ApiJson(state.notifications.mark_read(&me, id).await?))
}

/// Marks every notification read (up to `up_to_id`, if given).
#[utoipa::path(post, path = "/notifications/read_all", tag = "notifications", security(("bearer" = [])),
    params(ReadAllQuery),
    responses((status = 200, body = ReadAll), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn mark_all_read(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<ReadAllQuery>,
) -> ApiResult<ApiJson<ReadAll>> {
    let (marked, unread_count) = state.notifications.mark_all_read(&me, q.up_to_id).await?;
    Ok(ApiJson(ReadAll { marked, unread_count }))
}

/// The caller's preferences: per type and channel, and quiet hours.
#[utoipa::path(get, path = "/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Preferences), (status = 401, body = ErrorBody)))]
async fn get_preferences(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<ApiJson<Preferences>> {
    Ok(ApiJson(state.notifications.preferences(&me).await?))
}

/// Replaces the caller's preferences. Types left out are wanted in every
/// channel; a channel left out of a type is on.
#[utoipa::path(put, path = "/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    request_body = Preferences,
    responses((status = 200, body = Preferences), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn put_preferences(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(prefs): ApiJson<Preferences>,
) -> ApiResult<ApiJson<Preferences>> {
    Ok(ApiJson(state.notifications.set_preferences(&me, prefs).await?))
}

/// What a client needs to register for push.
#[utoipa::path(get, path = "/notifications/push-config", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = PushConfig), (status = 401, body = ErrorBody)))]
async fn push_config(State(state): State<AppState>, Auth(_me): Auth) -> ApiResult<ApiJson<PushConfig>> {
    let providers = &state.push_providers;
    let device_types = DeviceType::ALL.into_iter().filter(|d| providers.for_device(*d).is_some()).collect();
    Ok(ApiJson(PushConfig { vapid_public_key: state.notifications.settings().vapid_public_key.clone(), device_types }))
}

/// Registers a device for push. A token registered by another account
/// moves to the caller (and nothing queued for the other account reaches
/// it).
#[utoipa::path(post, path = "/push-tokens", tag = "notifications", security(("bearer" = [])),
    request_body = RegisterTokenRequest,
    responses((status = 201, body = PushToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn register_token(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<RegisterTokenRequest>,
) -> ApiResult<(StatusCode, ApiJson<PushToken>)> {
    let reg = TokenRegistration {
        token: body.token,
        device_type: body.device_type,
        web_push: body.web_push.map(|w| WebPushSubscription { endpoint: w.endpoint, keys: w.keys }),
    };
    let token = state.notifications.register_token(&me, reg).await?;
    Ok((StatusCode::CREATED, ApiJson(token)))
}

/// The caller's registered devices.
#[utoipa::path(get, path = "/push-tokens", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = PushTokenList), (status = 401, body = ErrorBody)))]
async fn list_tokens(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<ApiJson<PushTokenList>> {
    Ok(ApiJson(PushTokenList { items: state.notifications.tokens(&me).await? }))
}

/// Unregisters one of the caller's devices (URL-encode web endpoints).
#[utoipa::path(delete, path = "/push-tokens/{token}", tag = "notifications", security(("bearer" = [])),
    params(("token" = String, Path, description = "The token as registered")),
    responses((status = 204, description = "unregistered"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn unregister_token(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.notifications.unregister_token(&me, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a `lesson_complete`, `achievement` or `system` notification to
/// users (role admin). Preferences, quiet hours and push apply as usual.
#[utoipa::path(post, path = "/admin/notifications", tag = "notifications", security(("bearer" = [])),
    request_body = AdminNotificationRequest,
    responses((status = 201, body = AdminNotificationResponse), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn admin_send(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<AdminNotificationRequest>,
) -> ApiResult<(StatusCode, ApiJson<AdminNotificationResponse>)> {
    let req = AdminNotification {
        user_ids: body.user_ids,
        notification_type: body.notification_type,
        title: body.title,
        message: body.message,
        data: body.data,
    };
    let items = state.notifications.send_admin(&me, req).await?;
    Ok((StatusCode::CREATED, ApiJson(AdminNotificationResponse { items })))
}
