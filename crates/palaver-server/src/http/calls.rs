//! `/calls`, `/match/queue` and `/rtc/ice-servers`: 1-on-1 calls, random
//! matching and the ICE servers clients connect through.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use palaver_core::Id;
use palaver_core::call::CallType;
use palaver_core::user::Level;
use palaver_rtc::{Call, IceConfig, QualityInput, QueueRequest, QueueStatus};
use palaver_service::Page;
use palaver_service::pagination::{page_request, positive};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, parse_json};
use crate::http::moments::PageQuery;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calls, place_call))
        .routes(routes!(get_call))
        .routes(routes!(accept_call))
        .routes(routes!(decline_call))
        .routes(routes!(end_call))
        .routes(routes!(media_connected))
        .routes(routes!(report_quality))
        .routes(routes!(join_queue, leave_queue))
        .routes(routes!(ice_servers))
}

/// A call to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    /// Who to call.
    pub receiver_id: Id,
    /// `voice` or `video`.
    pub call_type: CallType,
}

/// Optional body of an accept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptCall {
    /// The accepting device's real-time connection (the `device` the
    /// WebSocket acks of call ops carry). Without it, the call binds to the
    /// first device that signals after the accept.
    pub connection_id: Option<String>,
}

/// A request to be matched.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinQueue {
    /// `voice` or `video`.
    pub call_type: CallType,
    /// The language to practise (a code such as `es`).
    pub language: String,
    /// Your level in it.
    pub level: Level,
}

/// Whether the caller was in the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeftQueue {
    /// True when a ticket was removed.
    pub removed: bool,
}

/// Places a call. The receiver's devices ring (`call_incoming` on their
/// `user:` topic) when one is connected; otherwise the call is `missed` at
/// once and they get a push. A receiver in an active call makes it `busy`.
#[utoipa::path(post, path = "/calls", tag = "calls", security(("bearer" = [])), request_body = PlaceCall,
    responses((status = 201, body = Call), (status = 400, body = ErrorBody, description = "oneself or bad input"),
              (status = 403, body = ErrorBody, description = "a block between the two, or a suspended caller"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the caller is in a call"),
              (status = 429, body = ErrorBody)))]
async fn place_call(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<PlaceCall>,
) -> ApiResult<(StatusCode, ApiJson<Call>)> {
    let receiver = positive("user", body.receiver_id)?;
    let call = state.rtc.calls.place_call(&me, receiver, body.call_type).await?;
    Ok((StatusCode::CREATED, ApiJson(call)))
}

/// The caller's calls, placed and received, newest first, with the latest
/// quality report of each party.
#[utoipa::path(get, path = "/calls", tag = "calls", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Call>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_calls(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Call>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.rtc.calls.history(&me, page).await?))
}

/// A call the caller takes part in.
#[utoipa::path(get, path = "/calls/{id}", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Call id")),
    responses((status = 200, body = Call), (status = 404, body = ErrorBody)))]
async fn get_call(State(state): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<Id>) -> ApiResult<ApiJson<Call>> {
    Ok(ApiJson(state.rtc.calls.call(&me, positive("call", id)?).await?))
}

/// Accepts a ringing call (the receiver only). Of two devices accepting
/// at once, one wins and the other gets 409.
#[utoipa::path(post, path = "/calls/{id}/accept", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Call id")), request_body(content = AcceptCall, description = "optional"),
    responses((status = 200, body = Call), (status = 403, body = ErrorBody, description = "the caller"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "not ringing, or in another call")))]
async fn accept_call(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    body: Bytes,
) -> ApiResult<ApiJson<Call>> {
    let body: AcceptCall =
        if body.iter().all(u8::is_ascii_whitespace) { AcceptCall::default() } else { parse_json(&body)? };
    let call = state.rtc.calls.accept(&me, positive("call", id)?, body.connection_id.as_deref()).await?;
    Ok(ApiJson(call))
}

/// Declines a ringing call (the receiver only).
#[utoipa::path(post, path = "/calls/{id}/decline", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Call id")),
    responses((status = 200, body = Call), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn decline_call(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<Call>> {
    Ok(ApiJson(state.rtc.calls.decline(&me, positive("call", id)?).await?))
}

/// Ends a call: hangs up an active call, cancels a ringing one (the
/// caller) or declines it (the receiver). The duration is computed by the
/// server from the accept.
#[utoipa::path(post, path = "/calls/{id}/end", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Call id")),
    responses((status = 200, body = Call), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn end_call(State(state): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<Id>) -> ApiResult<ApiJson<Call>> {
    Ok(ApiJson(state.rtc.calls.end(&me, positive("call", id)?).await?))
}

/// Reports that media flows (the ICE connection is up): the call no longer
/// fails at the media timeout.
#[utoipa::path(post, path = "/calls/{id}/connected", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Call id")),
    responses((status = 200, body = Call), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn media_connected(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<Call>> {
    Ok(ApiJson(state.rtc.calls.media_connected(&me, positive("call", id)?).await?))
}

/// Reports call quality (from `getStats`): stored per call, shown in the
/// history, and counted in the Prometheus histograms.
#[utoipa::path(post, path = "/calls/{id}/quality", tag = "calls", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Call id")), request_body = QualityInput,
    responses((status = 200, body = Call), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the call never connected"), (status = 429, body = ErrorBody)))]
async fn report_quality(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<QualityInput>,
) -> ApiResult<ApiJson<Call>> {
    Ok(ApiJson(state.rtc.calls.report_quality(&me, positive("call", id)?, body).await?))
}

/// Joins the random-matching queue (replacing an earlier ticket). When a
/// partner waits the answer is `matched` with the call; otherwise
/// `waiting`, and `match_found` arrives on the `user:` topic.
#[utoipa::path(post, path = "/match/queue", tag = "calls", security(("bearer" = [])), request_body = JoinQueue,
    responses((status = 200, body = QueueStatus), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "in a call"), (status = 429, body = ErrorBody)))]
async fn join_queue(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<JoinQueue>,
) -> ApiResult<ApiJson<QueueStatus>> {
    let request = QueueRequest { call_type: body.call_type, language: body.language, level: body.level };
    Ok(ApiJson(state.rtc.matching.enqueue(&me, request).await?))
}

/// Leaves the matching queue.
#[utoipa::path(delete, path = "/match/queue", tag = "calls", security(("bearer" = [])),
    responses((status = 200, body = LeftQueue), (status = 429, body = ErrorBody)))]
async fn leave_queue(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<ApiJson<LeftQueue>> {
    Ok(ApiJson(LeftQueue { removed: state.rtc.matching.leave(&me).await? }))
}

/// STUN and TURN servers for `RTCPeerConnection`, TURN with credentials
/// valid for `ttl` seconds (coturn REST API scheme).
#[utoipa::path(get, path = "/rtc/ice-servers", tag = "calls", security(("bearer" = [])),
    responses((status = 200, body = IceConfig), (status = 401, body = ErrorBody)))]
async fn ice_servers(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<ApiJson<IceConfig>> {
    Ok(ApiJson(state.rtc.ice.for_user(me.id(), palaver_core::time::now())))
}
