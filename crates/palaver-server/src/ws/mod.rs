//! The WebSocket gateway: `GET /ws` (the multiplexed protocol of
//! docs/API.md) and the original design's routes as adapters, all served
//! by one hub (`palaver-realtime`).
//!
//! Every route authenticates before the upgrade: a missing, bad or
//! expired token is 401 and a suspended account 403, with the usual error
//! body, so a client learns why without opening a socket. The token comes
//! from `?token=` (browsers cannot set headers on a WebSocket) or the
//! `Authorization: Bearer` header. The query string is never logged.

pub mod calls;
pub mod chat;
pub mod kinds;
pub mod legacy;
pub mod media;
pub mod upgrade;
pub mod voice;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use palaver_core::Error;
use palaver_realtime::{Backend, ConnectParams, Hub, HubConfig, NativeProtocol, NodeRpc, Protocol};
use palaver_service::{Principal, Services};

use serde::Deserialize;

use crate::app::AppState;
use crate::config::Config;
use crate::error::ApiError;
use crate::extract::{ApiQuery, bearer_token};

/// The hub's settings from the server's.
pub fn hub_config(config: &Config, node_id: &str) -> HubConfig {
    HubConfig {
        node_id: node_id.to_owned(),
        queue_capacity: config.ws_queue as usize,
        max_frame_bytes: config.ws_max_frame_bytes as usize,
        ping_interval: config.ws_ping_interval,
        idle_timeout: config.ws_idle_timeout,
        rate_count: config.ws_rate.count,
        rate_period: config.ws_rate.per,
        max_connections_per_user: config.ws_max_connections_per_user as usize,
        max_connections: config.ws_max_connections as usize,
        presence_ttl: config.presence_ttl,
        ..HubConfig::default()
    }
}

/// Starts the hub on the configured backend and plugs in what the server
/// owns: the `presence` kind, last-seen updates, and the hub as the
/// services' [`palaver_service::Realtime`]. Also returns the link for
/// requests between nodes, on the same backend (stopped by `shutdown`).
pub async fn start_hub(
    config: HubConfig,
    services: &Services,
    redis: Option<(redis::Client, redis::aio::ConnectionManager, String)>,
    matching: Option<Arc<palaver_rtc::MatchService>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(Hub, NodeRpc)> {
    let backend = match redis {
        Some((client, conn, prefix)) => Backend::Redis { client, conn, prefix },
        None => Backend::memory(),
    };
    let nodes = NodeRpc::start(&backend, &config.node_id, palaver_realtime::nodes::DEFAULT_TIMEOUT, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the link between nodes: {e}"))?;
    let hooks = Arc::new(kinds::StoreHooks(services.store.clone(), matching, Some(services.voice.clone())));
    let hub =
        Hub::start(config, backend, hooks).await.map_err(|e| anyhow::anyhow!("cannot start the real-time hub: {e}"))?;
    hub.register_kind(
        "presence",
        Arc::new(kinds::PresenceKind { store: services.store.clone(), realtime: services.realtime.clone() }),
    );
    services.realtime.set(Arc::new(hub.clone()));
    Ok((hub, nodes))
}

/// The WebSocket routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ws", get(native))
        .route("/ws/notifications/", get(notifications))
        .route("/ws/call/{call_id}/", get(call))
        .route("/ws/chat/{room_id}/", get(chat_room))
        .route("/ws/voice-room/{room_id}/", get(voice_room))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

fn token(headers: &HeaderMap, query: &TokenQuery) -> Result<String, ApiError> {
    let token = query
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .or_else(|| bearer_token(headers))
        .ok_or_else(|| Error::Unauthorized("missing access token: pass ?token= or Authorization: Bearer".into()))?;
    Ok(token.to_owned())
}

/// Checks the handshake and the token: the caller, or the response that
/// refuses the request before any upgrade.
async fn handshake(state: &AppState, query: &TokenQuery, headers: &HeaderMap) -> Result<Principal, Response> {
    upgrade::check(headers).map_err(|response| *response)?;
    let token = token(headers, query).map_err(IntoResponse::into_response)?;
    state.services.auth.authenticate(&token).await.map_err(|e| ApiError(e).into_response())
}

/// Hands the socket of a request that passed [`handshake`] to the hub.
fn open(state: &AppState, request: Request, params: ConnectParams) -> Response {
    let hub = state.hub.clone();
    let socket_config = hub.config().socket_config();
    upgrade::accept(request, socket_config, move |socket| hub.serve(socket, params))
}

fn params(principal: Principal, protocol: Arc<dyn Protocol>) -> ConnectParams {
    ConnectParams { principal, protocol, user_topic: true, topics: Vec::new() }
}

/// `GET /ws`: the multiplexed socket.
async fn native(State(state): State<AppState>, ApiQuery(query): ApiQuery<TokenQuery>, request: Request) -> Response {
    let urls = state.media.settings().urls.clone();
    let principal = match handshake(&state, &query, request.headers()).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let viewer = principal.id();
    open(&state, request, params(principal, Arc::new(media::SignedMedia::new(NativeProtocol, viewer, urls))))
}

/// `GET /ws/call/{call_id}/`: the original design's call socket, for the
/// call's two parties only (others get 404 before the upgrade).
async fn call(
    State(state): State<AppState>,
    crate::extract::ApiPath(call_id): crate::extract::ApiPath<i64>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    request: Request,
) -> Response {
    let principal = match handshake(&state, &query, request.headers()).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let topic = palaver_realtime::Topic::new("call", call_id);
    let allowed = match state.hub.kind("call") {
        Some(kind) => kind.authorize(&principal, &topic, palaver_realtime::Action::Subscribe).await,
        None => Err(Error::Unavailable("calls are not available".into())),
    };
    if let Err(e) = allowed {
        return ApiError(e).into_response();
    }
    open(
        &state,
        request,
        ConnectParams {
            principal,
            protocol: Arc::new(calls::LegacyCallProtocol::new(call_id)),
            // Signals for a call bound to this socket arrive through the
            // user's channel; the protocol shows only call events.
            user_topic: true,
            topics: vec![(topic, None)],
        },
    )
}

/// `GET /ws/chat/{room_id}/`: the original design's chat socket, for the
/// room's participants only (others get 404 before the upgrade); the last
/// 50 messages are sent on connect.
async fn chat_room(
    State(state): State<AppState>,
    crate::extract::ApiPath(room_id): crate::extract::ApiPath<i64>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    request: Request,
) -> Response {
    let principal = match handshake(&state, &query, request.headers()).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let chat = state.services.chat.clone();
    let room = match chat.room_of(&principal, room_id).await {
        Ok(room) => room,
        Err(e) => return ApiError(e).into_response(),
    };
    let protocol = match chat::ChatProtocol::new(&state.services.store, &chat, &principal, room_id).await {
        Ok(protocol) => protocol,
        Err(e) => return ApiError(e).into_response(),
    };
    let since = (room.last_seq - chat::LEGACY_RECENT).max(0);
    let topic = palaver_realtime::Topic::new("chat", room_id);
    let protocol = media::SignedMedia::new(protocol, principal.id(), state.media.settings().urls.clone());
    open(
        &state,
        request,
        ConnectParams {
            principal,
            protocol: Arc::new(protocol),
            user_topic: false,
            topics: vec![(topic, Some(since))],
        },
    )
}

/// `GET /ws/notifications/`: the original design's notification socket.
async fn notifications(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    request: Request,
) -> Response {
    match handshake(&state, &query, request.headers()).await {
        Ok(principal) => open(&state, request, params(principal, Arc::new(legacy::NotificationsProtocol))),
        Err(response) => response,
    }
}

/// `GET /ws/voice-room/{room_id}/`: the original design's voice-room
/// socket. Opening it takes a seat in the room (refused before the upgrade
/// when the room is full, closed or unknown); the socket is subscribed to
/// the room's events.
async fn voice_room(
    State(state): State<AppState>,
    crate::extract::ApiPath(room_id): crate::extract::ApiPath<i64>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    request: Request,
) -> Response {
    let principal = match handshake(&state, &query, request.headers()).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    if let Err(e) = state.services.voice.join(&principal, room_id).await {
        return ApiError(e).into_response();
    }
    let topic = palaver_realtime::Topic::new("voice", room_id);
    open(
        &state,
        request,
        ConnectParams {
            principal,
            protocol: Arc::new(voice::LegacyVoiceProtocol::new(room_id)),
            user_topic: false,
            topics: vec![(topic, None)],
        },
    )
}
