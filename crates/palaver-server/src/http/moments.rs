//! `/moments` and `/comments`: feeds, moments, likes, shares, comments and
//! replies.

use axum::extract::State;
use axum::http::StatusCode;
use palaver_core::chat::Message;
use palaver_core::social::{Comment, Moment, Visibility};
use palaver_core::{Error, FieldErrors, Id};
use palaver_service::Page;
use palaver_service::pagination::{page_request, positive};
use palaver_service::social::{LikeState, MomentPatch};
use palaver_store::{FeedKind, LikeOp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_moments, create_moment))
        .routes(routes!(get_moment, patch_moment, delete_moment))
        .routes(routes!(toggle_moment_like, put_moment_like, delete_moment_like))
        .routes(routes!(share_moment))
        .routes(routes!(list_comments, create_comment))
        .routes(routes!(delete_comment))
        .routes(routes!(list_replies))
        .routes(routes!(toggle_comment_like, put_comment_like, delete_comment_like))
}

/// Which feed.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedName {
    /// The caller's own moments, those of people they follow, and public ones.
    #[default]
    Home,
    /// Public moments.
    Public,
    /// One user's moments (`user_id`) that the caller may see.
    User,
}

/// Feed query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// `home` (default), `public` or `user`.
    pub feed: Option<FeedName>,
    /// Whose moments, with `feed=user`.
    pub user_id: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Page query of any list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A new moment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMoment {
    /// 1 to 5000 characters.
    pub content: String,
    /// Up to 9 ids of media the caller uploaded, in display order.
    #[serde(default)]
    pub media_ids: Vec<Id>,
    /// Who may see it (default `public`).
    #[serde(default = "public")]
    pub visibility: Visibility,
}

fn public() -> Visibility {
    Visibility::Public
}

/// An edit; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMoment {
    /// New text, 1 to 5000 characters.
    pub content: Option<String>,
    /// New visibility.
    pub visibility: Option<Visibility>,
}

/// Where a share goes.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShareTo {
    /// A repost in the caller's feed.
    Feed,
    /// A message in a conversation the caller is in (`room_id`).
    Chat,
}

/// A share.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// `feed` or `chat`.
    pub to: ShareTo,
    /// With `chat`: the conversation.
    pub room_id: Option<Id>,
    /// Words of the sharer's own: above the original in a repost (0 to
    /// 5000 characters), or the message's text in a chat (up to 4000;
    /// default: the moment's author and opening words).
    pub content: Option<String>,
    /// Who may see the repost (default `public`; `feed` only).
    pub visibility: Option<Visibility>,
}

/// What a share made: the repost (`to: feed`) or the chat message
/// (`to: chat`, which carries `shared_moment_id`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ShareResult {
    /// The repost.
    Repost(Moment),
    /// The message in the conversation.
    Message(Message),
}

/// The like state after a like request.
#[derive(Debug, Serialize, ToSchema)]
pub struct LikeResponse {
    /// The caller likes it now.
    pub liked: bool,
    /// Likes now.
    pub likes_count: i64,
}

impl From<LikeState> for LikeResponse {
    fn from(s: LikeState) -> Self {
        Self { liked: s.liked, likes_count: s.likes_count }
    }
}

/// A new comment or reply.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateComment {
    /// 1 to 2000 characters.
    pub content: String,
    /// The comment replied to (of the same moment).
    pub parent_comment: Option<Id>,
}

/// A feed page, newest first. Blocks in either direction and visibility
/// rules apply to every item.
#[utoipa::path(get, path = "/moments", tag = "moments", security(("bearer" = [])), params(FeedQuery),
    responses((status = 200, body = Page<Moment>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "feed=user of a user the caller cannot see")))]
async fn list_moments(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> ApiResult<ApiJson<Page<Moment>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let kind = match (q.feed.unwrap_or_default(), q.user_id) {
        (FeedName::Home, None) => FeedKind::Home,
        (FeedName::Public, None) => FeedKind::Public,
        (FeedName::User, Some(id)) => FeedKind::User(positive("user", id)?),
        (FeedName::User, None) => return Err(Error::invalid("user_id", "is required with feed=user").into()),
        (_, Some(_)) => return Err(Error::invalid("user_id", "is only allowed with feed=user").into()),
    };
    Ok(ApiJson(state.services.social.feed(&me, kind, page).await?))
}

/// Posts a moment.
#[utoipa::path(post, path = "/moments", tag = "moments", security(("bearer" = [])), request_body = CreateMoment,
    responses((status = 201, body = Moment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn create_moment(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<CreateMoment>,
) -> ApiResult<(StatusCode, ApiJson<Moment>)> {
    let moment = state.services.social.create_moment(&me, &body.content, body.media_ids, body.visibility).await?;
    Ok((StatusCode::CREATED, ApiJson(moment)))
}

/// A moment the caller may see.
#[utoipa::path(get, path = "/moments/{id}", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Moment id")),
    responses((status = 200, body = Moment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_moment(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<Moment>> {
    Ok(ApiJson(state.services.social.moment(&me, positive("moment", id)?).await?))
}

/// Edits one's own moment; it is marked edited.
#[utoipa::path(patch, path = "/moments/{id}", tag = "moments", security(("bearer" = [])), request_body = PatchMoment,
    params(("id" = i64, Path, description = "Moment id")),
    responses((status = 200, body = Moment), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn patch_moment(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<PatchMoment>,
) -> ApiResult<ApiJson<Moment>> {
    let patch = MomentPatch { content: body.content, visibility: body.visibility };
    Ok(ApiJson(state.services.social.edit_moment(&me, positive("moment", id)?, patch).await?))
}

/// Deletes a moment (its author, or a moderator). It vanishes from every list.
#[utoipa::path(delete, path = "/moments/{id}", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Moment id")),
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_moment(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<StatusCode> {
    state.services.social.delete_moment(&me, positive("moment", id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn like_moment(state: AppState, me: Auth, id: Id, op: LikeOp) -> ApiResult<ApiJson<LikeResponse>> {
    Ok(ApiJson(state.services.social.like_moment(&me.0, positive("moment", id)?, op).await?.into()))
}

/// Likes the moment, or unlikes it if already liked.
#[utoipa::path(post, path = "/moments/{id}/like", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Moment id")),
    responses((status = 200, body = LikeResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn toggle_moment_like(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<LikeResponse>> {
    like_moment(state, me, id, LikeOp::Toggle).await
}

/// Likes the moment (idempotent).
#[utoipa::path(put, path = "/moments/{id}/like", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Moment id")),
    responses((status = 200, body = LikeResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn put_moment_like(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<LikeResponse>> {
    like_moment(state, me, id, LikeOp::Set).await
}

/// Takes back a like (idempotent).
#[utoipa::path(delete, path = "/moments/{id}/like", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Moment id")),
    responses((status = 200, body = LikeResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn delete_moment_like(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<LikeResponse>> {
    like_moment(state, me, id, LikeOp::Clear).await
}

/// Shares a public moment (sharing a repost shares its original), counted
/// in `shares_count`: `{"to":"feed"}` reposts it into the caller's feed and
/// returns the repost; `{"to":"chat","room_id":…}` sends it into a
/// conversation the caller is in as a text message carrying
/// `shared_moment_id`, and returns the message.
#[utoipa::path(post, path = "/moments/{id}/share", tag = "moments", security(("bearer" = [])), request_body = ShareRequest,
    params(("id" = i64, Path, description = "Moment id")),
    responses((status = 201, body = ShareResult), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "the moment, or the room, is not visible to the caller"),
              (status = 422, body = ErrorBody, description = "the moment is not public"), (status = 429, body = ErrorBody)))]
async fn share_moment(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<ShareRequest>,
) -> ApiResult<(StatusCode, ApiJson<ShareResult>)> {
    let id = positive("moment", id)?;
    match body.to {
        ShareTo::Feed => {
            if body.room_id.is_some() {
                return Err(Error::invalid("room_id", "is only for shares to a chat").into());
            }
            let visibility = body.visibility.unwrap_or(Visibility::Public);
            let repost = state.services.social.share_to_feed(&me, id, body.content.as_deref(), visibility).await?;
            Ok((StatusCode::CREATED, ApiJson(ShareResult::Repost(repost))))
        }
        ShareTo::Chat => {
            let mut errors = FieldErrors::new();
            if body.visibility.is_some() {
                errors.add("visibility", "is only for reposts");
            }
            if body.room_id.is_none() {
                errors.add("room_id", "is required for a share to a chat");
            }
            errors.into_result()?;
            let room = positive("chat room", body.room_id.unwrap_or_default())?;
            let message = state.services.chat.share_moment(&me, id, room, body.content.as_deref()).await?;
            Ok((StatusCode::CREATED, ApiJson(ShareResult::Message(message))))
        }
    }
}

/// Top-level comments, oldest first, each with its first replies
/// (`has_more_replies`: page the rest with `/comments/{id}/replies`).
#[utoipa::path(get, path = "/moments/{id}/comments", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Moment id"), PageQuery),
    responses((status = 200, body = Page<Comment>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_comments(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Comment>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.social.comments(&me, positive("moment", id)?, page).await?))
}

/// Comments on a moment, or replies to one of its comments.
#[utoipa::path(post, path = "/moments/{id}/comments", tag = "moments", security(("bearer" = [])),
    request_body = CreateComment, params(("id" = i64, Path, description = "Moment id")),
    responses((status = 201, body = Comment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "the parent comment is on another moment"),
              (status = 429, body = ErrorBody)))]
async fn create_comment(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<CreateComment>,
) -> ApiResult<(StatusCode, ApiJson<Comment>)> {
    let parent = body.parent_comment.map(|p| positive("comment", p)).transpose()?;
    let comment = state.services.social.comment(&me, positive("moment", id)?, &body.content, parent).await?;
    Ok((StatusCode::CREATED, ApiJson(comment)))
}

/// Deletes a comment and its replies (the comment's author, the moment's
/// author, or a moderator).
#[utoipa::path(delete, path = "/comments/{id}", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Comment id")),
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_comment(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<StatusCode> {
    state.services.social.delete_comment(&me, positive("comment", id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replies under a top-level comment, oldest first.
#[utoipa::path(get, path = "/comments/{id}/replies", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Comment id"), PageQuery),
    responses((status = 200, body = Page<Comment>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_replies(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Comment>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.social.replies(&me, positive("comment", id)?, page).await?))
}

async fn like_comment(state: AppState, me: Auth, id: Id, op: LikeOp) -> ApiResult<ApiJson<LikeResponse>> {
    Ok(ApiJson(state.services.social.like_comment(&me.0, positive("comment", id)?, op).await?.into()))
}

/// Likes the comment, or unlikes it if already liked.
#[utoipa::path(post, path = "/comments/{id}/like", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Comment id")),
    responses((status = 200, body = LikeResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn toggle_comment_like(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<LikeResponse>> {
    like_comment(state, me, id, LikeOp::Toggle).await
}

/// Likes the comment (idempotent).
#[utoipa::path(put, path = "/comments/{id}/like", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Comment id")),
    responses((status = 200, body = LikeResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn put_comment_like(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<LikeResponse>> {
    like_comment(state, me, id, LikeOp::Set).await
}

/// Takes back a like on a comment (idempotent).
#[utoipa::path(delete, path = "/comments/{id}/like", tag = "moments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Comment id")),
    responses((status = 200, body = LikeResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn delete_comment_like(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<LikeResponse>> {
    like_comment(state, me, id, LikeOp::Clear).await
}
