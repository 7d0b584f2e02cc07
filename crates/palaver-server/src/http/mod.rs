//! The REST API under `/api/v1`, one module per area. Handlers are thin:
//! extract, call a service, shape the response.

pub mod auth;
pub mod calls;
pub mod chat;
pub mod media;
pub mod moderation;
pub mod moments;
pub mod notifications;
pub mod ops;
pub mod relations;
pub mod users;
pub mod voice;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// The OpenAPI document's frame; paths are collected from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palaver API",
        description = "The social and real-time server for language exchange. Errors always have the shape \
                       {\"error\":{\"code\",\"message\",\"details\"}}; lists are cursor-paginated.",
        license(name = "AGPL-3.0-only")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration, login and tokens"),
        (name = "users", description = "Profiles, follows and blocks"),
        (name = "moments", description = "Moments, feeds, likes, comments and shares"),
        (name = "moderation", description = "Reports and the moderation queue"),
        (name = "chat", description = "Conversations: rooms, participants, messages, threads and read receipts"),
        (name = "notifications", description = "Notifications, preferences and push devices"),
        (name = "media", description = "Uploads and signed media URLs"),
        (name = "voice", description = "Public voice rooms and their media signaling"),
        (name = "calls", description = "1-on-1 calls, random matching and ICE servers"),
        (name = "ops", description = "Health, readiness, metrics")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Every `/api/v1` route with its OpenAPI description.
pub fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::routes())
        .merge(users::routes())
        .merge(relations::routes())
        .merge(moments::routes())
        .merge(moderation::routes())
        .merge(chat::routes())
        .merge(notifications::routes())
        .merge(media::routes())
        .merge(voice::routes())
        .merge(calls::routes())
}

/// The whole documented API: `/api/v1/...` plus the operational endpoints.
pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", api_v1()).merge(ops::routes())
}
