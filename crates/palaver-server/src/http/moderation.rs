//! `/reports` and `/moderation`: reporting, the moderation queue and the
//! audit log.

use axum::extract::State;
use axum::http::StatusCode;
use palaver_core::social::{ModerationAction, Report, ReportStatus, ReportTarget, ReportType};
use palaver_core::{Error, FieldErrors, Id};
use palaver_service::Page;
use palaver_service::moderation::Decision;
use palaver_service::pagination::{page_request, positive};
use palaver_store::ModerationLogEntry;
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
        .routes(routes!(create_report))
        .routes(routes!(list_reports))
        .routes(routes!(review_report))
        .routes(routes!(reported_message))
        .routes(routes!(list_actions))
}

/// A report on exactly one of a user, a moment, a comment or a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReport {
    /// Why.
    pub report_type: ReportType,
    /// What happened, up to 2000 characters.
    #[serde(default)]
    pub description: String,
    /// A user.
    pub reported_user: Option<Id>,
    /// A moment the reporter can see.
    pub reported_moment: Option<Id>,
    /// A comment the reporter can see.
    pub reported_comment: Option<Id>,
    /// A message in a conversation the reporter takes part in.
    pub reported_message: Option<Id>,
}

/// Queue query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Only reports with this status (default: all).
    pub status: Option<ReportStatus>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A moderator's decision; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewReport {
    /// New status (default: `resolved` when an action is taken).
    pub status: Option<ReportStatus>,
    /// Notes for other moderators, up to 5000 characters.
    pub admin_notes: Option<String>,
    /// `none` (default), `hide_content` (moments and comments) or
    /// `suspend_user` (the reported user, or the content's author; ends
    /// their sessions).
    pub action: Option<ModerationAction>,
}

/// Reports a user, moment, comment or message. One pending report per
/// reporter and target.
#[utoipa::path(post, path = "/reports", tag = "moderation", security(("bearer" = [])), request_body = CreateReport,
    responses((status = 201, body = Report), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "already reported, pending"),
              (status = 422, body = ErrorBody, description = "one's own content"), (status = 429, body = ErrorBody)))]
async fn create_report(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<CreateReport>,
) -> ApiResult<(StatusCode, ApiJson<Report>)> {
    let targets = [
        body.reported_user.map(ReportTarget::User),
        body.reported_moment.map(ReportTarget::Moment),
        body.reported_comment.map(ReportTarget::Comment),
        body.reported_message.map(ReportTarget::Message),
    ];
    let mut given = targets.into_iter().flatten();
    let (Some(target), None) = (given.next(), given.next()) else {
        let mut errors = FieldErrors::new();
        errors.add(
            "reported_user",
            "give exactly one of reported_user, reported_moment, reported_comment, reported_message",
        );
        return Err(Error::Validation(errors).into());
    };
    positive(target.kind(), target.id())?;
    let report = state.services.moderation.report(&me, target, body.report_type, &body.description).await?;
    Ok((StatusCode::CREATED, ApiJson(report)))
}

/// The moderation queue, oldest first (moderators and admins).
#[utoipa::path(get, path = "/moderation/reports", tag = "moderation", security(("bearer" = [])), params(QueueQuery),
    responses((status = 200, body = Page<Report>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_reports(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> ApiResult<ApiJson<Page<Report>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.moderation.reports(&me, q.status, page).await?))
}

/// The message a report is about, decrypted for the moderation view
/// (moderators and admins; the only way anyone outside a room reads it).
#[utoipa::path(get, path = "/moderation/reports/{id}/message", tag = "moderation", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, body = palaver_core::chat::Message), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "not a report on a message")))]
async fn reported_message(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<palaver_core::chat::Message>> {
    Ok(ApiJson(state.services.chat.reported_message(&me, positive("report", id)?).await?))
}

/// Reviews a report: status, notes and an action, recorded in the audit log
/// (moderators and admins).
#[utoipa::path(patch, path = "/moderation/reports/{id}", tag = "moderation", security(("bearer" = [])),
    request_body = ReviewReport, params(("id" = i64, Path, description = "Report id")),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "the action does not fit the target")))]
async fn review_report(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
    ApiJson(body): ApiJson<ReviewReport>,
) -> ApiResult<ApiJson<Report>> {
    let decision = Decision { status: body.status, admin_notes: body.admin_notes, action: body.action };
    Ok(ApiJson(state.services.moderation.review(&me, positive("report", id)?, decision).await?))
}

/// The audit log of moderator actions, newest first (moderators and admins).
#[utoipa::path(get, path = "/moderation/actions", tag = "moderation", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<ModerationLogEntry>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_actions(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<ModerationLogEntry>>> {
    let page = page_request(q.limit, q.cursor.as_deref())?;
    Ok(ApiJson(state.services.moderation.log(&me, page).await?))
}
