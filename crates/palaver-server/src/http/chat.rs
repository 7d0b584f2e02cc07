//! `/chat`: rooms, participants, messages, threads and read receipts. Every
//! handler is a thin adapter over `ChatService`, which the WebSocket hub
//! calls too, so a message sent here has the same effect as one sent over
//! the socket. To anyone not in a room, the room and its messages do not
//! exist: 404 on every path.

use axum::extract::State;
use axum::http::StatusCode;
use palaver_core::chat::{ChatRoom, Message, MessageType, RoomType};
use palaver_core::{Id, UserId};
use palaver_service::Page;
use palaver_service::chat::{HistoryQuery, NewRoom, ReadBy, ReadState, SendMessage, Thread};
use palaver_service::pagination::positive;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::http::moments::PageQuery;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, patch_room))
        .routes(routes!(add_participant))
        .routes(routes!(remove_participant))
        .routes(routes!(list_messages, send_message))
        .routes(routes!(edit_message, delete_message))
        .routes(routes!(thread))
        .routes(routes!(read_by))
        .routes(routes!(read_room))
}

/// A room to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// `private` (with exactly one other user) or `group`.
    pub room_type: RoomType,
    /// The other participants (listing the caller too is fine).
    #[serde(default)]
    pub participant_ids: Vec<UserId>,
    /// The group's name, 1 to 100 characters (groups only).
    pub name: Option<String>,
}

/// A group's new name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRoom {
    /// 1 to 100 characters.
    pub name: String,
}

/// Someone to add to a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddParticipant {
    /// The user.
    pub user_id: UserId,
}

/// Which part of the history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Older messages: those before this seq (the newest of them).
    pub before_seq: Option<i64>,
    /// Newer messages: those after this seq (the oldest of them); with
    /// `before_seq` too, the range between (to fill a gap).
    pub after_seq: Option<i64>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<u32>,
}

/// Which replies of a thread.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThreadParams {
    /// Replies after this seq (`next_cursor` of the previous page).
    pub after_seq: Option<i64>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<u32>,
}

fn text() -> MessageType {
    MessageType::Text
}

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    /// Idempotency key (a UUID, 1 to 64 printable characters): a retry
    /// with the same key answers the original message with 200.
    pub client_msg_id: Option<String>,
    /// The text (1 to 4000 characters), or a media message's caption.
    pub content: Option<String>,
    /// `text` (default), `image`, `video`, `audio` or `file`.
    #[serde(default = "text")]
    pub message_type: MessageType,
    /// An upload of the caller's, for media messages.
    pub media_id: Option<Id>,
    /// A message of this room replied to.
    pub reply_to: Option<Id>,
}

/// New text for a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// 1 to 4000 characters (a caption may be empty).
    pub content: String,
}

/// How far the caller has read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Everything up to this seq is read (the watermark never moves back).
    pub seq: i64,
}

/// The caller's rooms, most recently active first, each with its newest
/// message and the caller's unread count.
#[utoipa::path(get, path = "/chat/rooms", tag = "chat", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<ChatRoom>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_rooms(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<ChatRoom>>> {
    Ok(ApiJson(state.services.chat.rooms(&me, q.limit, q.cursor.as_deref()).await?))
}

/// Creates a room: 201 with the new room, or 200 with the existing private
/// room of the pair.
#[utoipa::path(post, path = "/chat/rooms", tag = "chat", security(("bearer" = [])), request_body = CreateRoom,
    responses((status = 201, body = ChatRoom), (status = 200, body = ChatRoom, description = "the pair's existing private room"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "a participant does not exist (or blocked the caller, or is suspended)"),
              (status = 422, body = ErrorBody, description = "the caller blocks a participant; voice_room"),
              (status = 429, body = ErrorBody)))]
async fn create_room(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<CreateRoom>,
) -> ApiResult<(StatusCode, ApiJson<ChatRoom>)> {
    let new = NewRoom { room_type: body.room_type, participant_ids: body.participant_ids, name: body.name };
    let (room, created) = state.services.chat.create_room(&me, new).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, ApiJson(room)))
}

/// A room the caller is in.
#[utoipa::path(get, path = "/chat/rooms/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = ChatRoom), (status = 404, body = ErrorBody)))]
async fn get_room(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<ChatRoom>> {
    Ok(ApiJson(state.services.chat.room_of(&me, positive("chat room", id)?).await?))
}

/// Renames a group (its admins).
#[utoipa::path(patch, path = "/chat/rooms/{id}", tag = "chat", security(("bearer" = [])), request_body = PatchRoom,
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = ChatRoom), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "not a group")))]
async fn patch_room(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<PatchRoom>,
) -> ApiResult<ApiJson<ChatRoom>> {
    Ok(ApiJson(state.services.chat.rename(&me, positive("chat room", id)?, &body.name).await?))
}

/// Adds a user to a group (its admins). Adding someone already in it
/// changes nothing.
#[utoipa::path(post, path = "/chat/rooms/{id}/participants", tag = "chat", security(("bearer" = [])),
    request_body = AddParticipant, params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = ChatRoom), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "not a group, full, or the caller blocks the user")))]
async fn add_participant(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<AddParticipant>,
) -> ApiResult<ApiJson<ChatRoom>> {
    Ok(ApiJson(state.services.chat.add_participant(&me, positive("chat room", id)?, body.user_id).await?))
}

/// Removes a user from a group (its admins), or leaves it (one's own id).
#[utoipa::path(delete, path = "/chat/rooms/{id}/participants/{user_id}", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id"), ("user_id" = i64, Path, description = "User id")),
    responses((status = 204, description = "removed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "private rooms cannot be left")))]
async fn remove_participant(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath((id, user_id)): ApiPath<(Id, UserId)>,
) -> ApiResult<StatusCode> {
    state.services.chat.remove_participant(&me, positive("chat room", id)?, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of history in seq order, deleted messages included as tombstones
/// (`content: null`). Without parameters: the newest messages.
/// `next_cursor` is the seq to pass as `before_seq` (or, when paging with
/// `after_seq`, as `after_seq`) for the next page.
#[utoipa::path(get, path = "/chat/rooms/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Room id"), HistoryParams),
    responses((status = 200, body = Page<Message>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_messages(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiQuery(q): ApiQuery<HistoryParams>,
) -> ApiResult<ApiJson<Page<Message>>> {
    let query = HistoryQuery { before_seq: q.before_seq, after_seq: q.after_seq, limit: q.limit };
    Ok(ApiJson(state.services.chat.history(&me, positive("chat room", id)?, query).await?))
}

/// Sends a message (as the WebSocket `send` op does): 201 with the stored
/// message and its seq; 200 with the original for a retry with the same
/// `client_msg_id`.
#[utoipa::path(post, path = "/chat/rooms/{id}/messages", tag = "chat", security(("bearer" = [])),
    request_body = CreateMessage, params(("id" = i64, Path, description = "Room id")),
    responses((status = 201, body = Message), (status = 200, body = Message, description = "a retry: the original"),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "a block closes the private room"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "reply_to is not in this room"),
              (status = 429, body = ErrorBody)))]
async fn send_message(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<CreateMessage>,
) -> ApiResult<(StatusCode, ApiJson<Message>)> {
    let m = SendMessage {
        client_msg_id: body.client_msg_id,
        content: body.content,
        message_type: body.message_type,
        media_id: body.media_id,
        reply_to: body.reply_to,
    };
    let sent = state.services.chat.send(&me, positive("chat room", id)?, m).await?;
    Ok((if sent.duplicate { StatusCode::OK } else { StatusCode::CREATED }, ApiJson(sent.message)))
}

/// Edits one's own message (marked edited).
#[utoipa::path(patch, path = "/chat/messages/{id}", tag = "chat", security(("bearer" = [])), request_body = EditMessage,
    params(("id" = i64, Path, description = "Message id")),
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "deleted or system message")))]
async fn edit_message(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<EditMessage>,
) -> ApiResult<ApiJson<Message>> {
    Ok(ApiJson(state.services.chat.edit(&me, positive("message", id)?, &body.content).await?))
}

/// Deletes one's own message: its content goes, its seq stays. Idempotent.
#[utoipa::path(delete, path = "/chat/messages/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Message id")),
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_message(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<StatusCode> {
    state.services.chat.delete(&me, positive("message", id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A message and its direct replies, in seq order.
#[utoipa::path(get, path = "/chat/messages/{id}/thread", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Message id"), ThreadParams),
    responses((status = 200, body = Thread), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn thread(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiQuery(q): ApiQuery<ThreadParams>,
) -> ApiResult<ApiJson<Thread>> {
    Ok(ApiJson(state.services.chat.thread(&me, positive("message", id)?, q.after_seq, q.limit).await?))
}

/// Who has read a message: the participants (other than its sender) whose
/// read watermark reached it.
#[utoipa::path(get, path = "/chat/messages/{id}/read_by", tag = "chat", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Message id")),
    responses((status = 200, body = ReadBy), (status = 404, body = ErrorBody)))]
async fn read_by(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<ReadBy>> {
    Ok(ApiJson(state.services.chat.read_by(&me, positive("message", id)?).await?))
}

/// Marks the room read up to `seq` (the watermark only moves forward, and
/// not past the newest message). Once everything is read, the room's
/// message notifications are read too.
#[utoipa::path(post, path = "/chat/rooms/{id}/read", tag = "chat", security(("bearer" = [])), request_body = ReadRequest,
    params(("id" = i64, Path, description = "Room id")),
    responses((status = 200, body = ReadState), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn read_room(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<ReadRequest>,
) -> ApiResult<ApiJson<ReadState>> {
    Ok(ApiJson(state.services.chat.read(&me, positive("chat room", id)?, body.seq).await?))
}
