//! `/voice-rooms`: public voice rooms, their participants and roles, and
//! media signaling with the room's SFU (also over the WebSocket `signal` op).

use axum::extract::State;
use axum::http::StatusCode;
use palaver_core::user::Level;
use palaver_core::voice::{VoiceParticipant, VoiceRole, VoiceRoom};
use palaver_core::{Error, Id};
use palaver_service::Page;
use palaver_service::pagination::{page_request, positive};
use palaver_service::voice::{JoinedRoom, RoomRequest, SignalKind, SignalReply};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, close_room))
        .routes(routes!(list_participants))
        .routes(routes!(join_room))
        .routes(routes!(leave_room))
        .routes(routes!(heartbeat))
        .routes(routes!(raise_hand))
        .routes(routes!(set_role))
        .routes(routes!(set_mute))
        .routes(routes!(remove_participant))
        .routes(routes!(signal))
}

/// Room filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RoomQuery {
    /// Only rooms on this topic (case-insensitive, exact).
    pub topic: Option<String>,
    /// Only rooms for this level.
    pub difficulty_level: Option<Level>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A hand up or down.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandRequest {
    /// Up (ask to speak) or down.
    pub raised: bool,
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// `speaker` (invite to speak) or `listener` (demote, or step down).
    pub role: VoiceRole,
}

/// A mute.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    /// Muted or not.
    pub muted: bool,
}

/// A media signal to the room's SFU.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// `offer`, `answer` or `ice_candidate`.
    pub kind: SignalKind,
    /// `{type, sdp}` for offers and answers, `{candidate}` for candidates.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

fn room_id(id: Id) -> Result<Id, Error> {
    positive("voice room", id)
}

/// Open rooms, newest first, with live participant counts.
#[utoipa::path(get, path = "/voice-rooms", tag = "voice", security(("bearer" = [])), params(RoomQuery),
    responses((status = 200, body = Page<VoiceRoom>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_rooms(
    State(state): State<AppState>,
    Auth(_me): Auth,
    ApiQuery(q): ApiQuery<RoomQuery>,
) -> ApiResult<ApiJson<Page<VoiceRoom>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.voice.list(q.topic.as_deref(), q.difficulty_level, page).await?))
}

/// Opens a room. The creator is its host once they join.
#[utoipa::path(post, path = "/voice-rooms", tag = "voice", security(("bearer" = [])), request_body = RoomRequest,
    responses((status = 201, body = VoiceRoom), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_room(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<RoomRequest>,
) -> ApiResult<(StatusCode, ApiJson<VoiceRoom>)> {
    let room = state.services.voice.create(&me, &body).await?;
    Ok((StatusCode::CREATED, ApiJson(room)))
}

/// A room, open or closed.
#[utoipa::path(get, path = "/voice-rooms/{id}", tag = "voice", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = VoiceRoom), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_room(
    State(state): State<AppState>,
    Auth(_me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<VoiceRoom>> {
    Ok(ApiJson(state.services.voice.room(room_id(id)?).await?))
}

/// Closes a room (its creator or a moderator); everyone in it is removed.
#[utoipa::path(delete, path = "/voice-rooms/{id}", tag = "voice", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 204, description = "closed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn close_room(State(state): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<Id>) -> ApiResult<StatusCode> {
    state.services.voice.close(&me, room_id(id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everyone in a room: host, speakers, listeners.
#[utoipa::path(get, path = "/voice-rooms/{id}/participants", tag = "voice", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = Vec<VoiceParticipant>), (status = 404, body = ErrorBody)))]
async fn list_participants(
    State(state): State<AppState>,
    Auth(_me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<Vec<VoiceParticipant>>> {
    Ok(ApiJson(state.services.voice.participants(room_id(id)?).await?))
}

/// Takes a seat: a speaker's while speaker seats are free (the creator is
/// the host), else a listener's. Idempotent. Returns the room, everyone in
/// it and what the client needs to connect media to the SFU (its UDP
/// address, ICE servers with TURN credentials, the audio policy). Keep the
/// WebSocket open (or `POST .../heartbeat` every few seconds): a participant
/// without a heartbeat is removed.
#[utoipa::path(post, path = "/voice-rooms/{id}/join", tag = "voice", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = JoinedRoom), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the room is full")))]
async fn join_room(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<JoinedRoom>> {
    let mut joined = state.services.voice.join(&me, room_id(id)?).await?;
    // STUN, and TURN with short-lived credentials, as `GET /rtc/ice-servers`.
    let ice = state.rtc.ice.for_user(me.id(), palaver_core::time::now());
    joined.media.ice_servers = ice.ice_servers.iter().filter_map(|s| serde_json::to_value(s).ok()).collect();
    Ok(ApiJson(joined))
}

/// Leaves a room (idempotent); the media session ends.
#[utoipa::path(post, path = "/voice-rooms/{id}/leave", tag = "voice", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 204, description = "left"), (status = 404, body = ErrorBody)))]
async fn leave_room(State(state): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<Id>) -> ApiResult<StatusCode> {
    state.services.voice.leave(&me, room_id(id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Keeps the caller's seat alive without a WebSocket.
#[utoipa::path(post, path = "/voice-rooms/{id}/heartbeat", tag = "voice", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 204, description = "alive"), (status = 404, body = ErrorBody, description = "not in the room")))]
async fn heartbeat(State(state): State<AppState>, Auth(me): Auth, ApiPath(id): ApiPath<Id>) -> ApiResult<StatusCode> {
    state.services.voice.heartbeat(&me, room_id(id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Raises or lowers the caller's hand (listeners ask to speak).
#[utoipa::path(post, path = "/voice-rooms/{id}/hand", tag = "voice", security(("bearer" = [])), request_body = HandRequest,
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = VoiceParticipant), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn raise_hand(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<HandRequest>,
) -> ApiResult<ApiJson<VoiceParticipant>> {
    Ok(ApiJson(state.services.voice.raise_hand(&me, room_id(id)?, body.raised).await?))
}

/// Invites a listener to speak or demotes a speaker (the host or a
/// moderator); anyone may step down to listener themselves.
#[utoipa::path(post, path = "/voice-rooms/{id}/participants/{user_id}/role", tag = "voice", security(("bearer" = [])),
    request_body = RoleRequest,
    params(("id" = i64, Path, description = "Room id"), ("user_id" = i64, Path, description = "Participant")),
    responses((status = 200, body = VoiceParticipant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "every speaker seat is taken")))]
async fn set_role(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath((id, user)): ApiPath<(Id, Id)>,
    ApiJson(body): ApiJson<RoleRequest>,
) -> ApiResult<ApiJson<VoiceParticipant>> {
    let user = positive("user", user)?;
    Ok(ApiJson(state.services.voice.set_role(&me, room_id(id)?, user, body.role).await?))
}

/// Mutes or unmutes: oneself either way; the host (or a moderator) may
/// mute others. A muted participant's audio is not forwarded by the SFU.
#[utoipa::path(post, path = "/voice-rooms/{id}/participants/{user_id}/mute", tag = "voice", security(("bearer" = [])),
    request_body = MuteRequest,
    params(("id" = i64, Path, description = "Room id"), ("user_id" = i64, Path, description = "Participant")),
    responses((status = 200, body = VoiceParticipant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_mute(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath((id, user)): ApiPath<(Id, Id)>,
    ApiJson(body): ApiJson<MuteRequest>,
) -> ApiResult<ApiJson<VoiceParticipant>> {
    let user = positive("user", user)?;
    Ok(ApiJson(state.services.voice.set_muted(&me, room_id(id)?, user, body.muted).await?))
}

/// Removes a participant (the host or a moderator).
#[utoipa::path(delete, path = "/voice-rooms/{id}/participants/{user_id}", tag = "voice", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id"), ("user_id" = i64, Path, description = "Participant")),
    responses((status = 204, description = "removed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_participant(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath((id, user)): ApiPath<(Id, Id)>,
) -> ApiResult<StatusCode> {
    let user = positive("user", user)?;
    state.services.voice.remove(&me, room_id(id)?, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Media signaling with the room's SFU (the REST twin of the WebSocket
/// `signal` op with `room_id`), on whichever node hosts the room: another
/// node's SFU is reached through this one. An offer is answered in the response, with
/// the SFU's follow-up offer (the other participants' tracks) when there is
/// one; later SFU offers arrive as `signal` events on `user:{id}`.
#[utoipa::path(post, path = "/voice-rooms/{id}/signal", tag = "voice", security(("bearer" = [])),
    request_body = SignalRequest, params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = SignalReply), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "not a participant"), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the node hosting the room's media did not answer (it may be down; its rooms move to a live node within PALAVER_VOICE_HOST_TTL)")))]
async fn signal(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<SignalRequest>,
) -> ApiResult<ApiJson<SignalReply>> {
    Ok(ApiJson(state.services.voice.signal(&me, room_id(id)?, body.kind, &body.payload).await?))
}
