//! The HTTP/1.1 WebSocket handshake (RFC 6455 section 4.2), handing the
//! upgraded connection to the hub as a `tokio-tungstenite` stream.
//!
//! Written here rather than using axum's `WebSocketUpgrade` because axum
//! wraps the stream in its own types: the hub runs on `tokio-tungstenite`
//! directly (so it does not depend on axum, and shares one pre-encoded
//! text per event across receivers), and only the handshake is needed
//! from the HTTP side. The accept key comes from tungstenite.

use std::future::Future;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use palaver_realtime::BatchedWrites;
use palaver_realtime::tokio_tungstenite::WebSocketStream;
use palaver_realtime::tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use palaver_realtime::tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use serde_json::json;

use crate::error::error_response;

/// The socket a route's connection runs on (writes batched as
/// [`palaver_realtime::HubConfig::socket_config`] expects).
pub type Socket = WebSocketStream<BatchedWrites<TokioIo<Upgraded>>>;

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Refuses anything that is not a WebSocket handshake with 426.
pub fn check(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let ok = header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket")
        && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13")
        && headers.get(header::SEC_WEBSOCKET_KEY).is_some();
    if ok {
        return Ok(());
    }
    let mut response = error_response(
        StatusCode::UPGRADE_REQUIRED,
        "upgrade_required",
        "this endpoint speaks WebSocket (version 13): send an Upgrade request",
        json!({}),
    );
    response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    Err(Box::new(response))
}

/// Answers the handshake with 101 and runs `run` on the socket once the
/// connection is upgraded, as a task of its own: the task that waits for
/// the upgrade ends there, so its state (the closure, the socket's
/// construction) is not kept for the connection's whole life. Call
/// [`check`] first.
pub fn accept<F, Fut>(mut request: Request, config: WebSocketConfig, run: F) -> Response
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Err(response) = check(request.headers()) {
        return *response;
    }
    let accept = request.headers().get(header::SEC_WEBSOCKET_KEY).map(|key| derive_accept_key(key.as_bytes()));
    let Some(Ok(accept)) = accept.map(|a| HeaderValue::from_str(&a)) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = BatchedWrites::new(TokioIo::new(upgraded));
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                tokio::spawn(run(socket));
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}
