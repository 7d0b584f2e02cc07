//! Follows and blocks: `/users/{id}/follow`, `/users/{id}/block`,
//! `/users/{id}/followers`, `/users/{id}/following`, `/users/me/blocks`.

use axum::extract::State;
use palaver_core::UserId;
use palaver_service::Page;
use palaver_service::pagination::{page_request, positive};
use palaver_store::{LikeOp, UserSummary};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::http::moments::PageQuery;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(toggle_follow, put_follow, delete_follow))
        .routes(routes!(toggle_block, put_block, delete_block))
        .routes(routes!(followers))
        .routes(routes!(following))
        .routes(routes!(my_blocks))
}

/// Whether the caller follows the user now.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowResponse {
    /// The caller follows them.
    pub following: bool,
}

/// Whether the caller blocks the user now.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockResponse {
    /// The caller blocks them.
    pub blocked: bool,
}

async fn follow(state: AppState, me: Auth, id: UserId, op: LikeOp) -> ApiResult<ApiJson<FollowResponse>> {
    let following = state.services.social.follow(&me.0, positive("user", id)?, op).await?;
    Ok(ApiJson(FollowResponse { following }))
}

/// Follows the user, or unfollows them if already following.
#[utoipa::path(post, path = "/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = FollowResponse), (status = 400, body = ErrorBody, description = "oneself"),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "the caller blocks them"),
              (status = 429, body = ErrorBody)))]
async fn toggle_follow(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<ApiJson<FollowResponse>> {
    follow(state, me, id, LikeOp::Toggle).await
}

/// Follows the user (idempotent).
#[utoipa::path(put, path = "/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = FollowResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn put_follow(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<ApiJson<FollowResponse>> {
    follow(state, me, id, LikeOp::Set).await
}

/// Unfollows the user (idempotent).
#[utoipa::path(delete, path = "/users/{id}/follow", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = FollowResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn delete_follow(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<ApiJson<FollowResponse>> {
    follow(state, me, id, LikeOp::Clear).await
}

async fn block(state: AppState, me: Auth, id: UserId, op: LikeOp) -> ApiResult<ApiJson<BlockResponse>> {
    let blocked = state.services.social.block(&me.0, positive("user", id)?, op).await?;
    Ok(ApiJson(BlockResponse { blocked }))
}

/// Blocks the user, or unblocks them if already blocked. Blocking removes
/// follows both ways; blocked users cannot see, follow, like or comment on
/// the blocker's moments, and the blocker's profile is 404 to them.
#[utoipa::path(post, path = "/users/{id}/block", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = BlockResponse), (status = 400, body = ErrorBody, description = "oneself"),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn toggle_block(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<ApiJson<BlockResponse>> {
    block(state, me, id, LikeOp::Toggle).await
}

/// Blocks the user (idempotent).
#[utoipa::path(put, path = "/users/{id}/block", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = BlockResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn put_block(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<ApiJson<BlockResponse>> {
    block(state, me, id, LikeOp::Set).await
}

/// Unblocks the user (idempotent).
#[utoipa::path(delete, path = "/users/{id}/block", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = BlockResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn delete_block(
    State(state): State<AppState>,
    me: Auth,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<ApiJson<BlockResponse>> {
    block(state, me, id, LikeOp::Clear).await
}

/// Who follows the user (by descending user id).
#[utoipa::path(get, path = "/users/{id}/followers", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id"), PageQuery),
    responses((status = 200, body = Page<UserSummary>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn followers(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<UserId>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<UserSummary>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.social.followers(&me, positive("user", id)?, page).await?))
}

/// Whom the user follows (by descending user id).
#[utoipa::path(get, path = "/users/{id}/following", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id"), PageQuery),
    responses((status = 200, body = Page<UserSummary>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn following(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<UserId>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<UserSummary>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.social.following(&me, positive("user", id)?, page).await?))
}

/// Whom the caller blocks (by descending user id).
#[utoipa::path(get, path = "/users/me/blocks", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<UserSummary>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn my_blocks(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<UserSummary>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.social.blocks(&me, page).await?))
}
