//! Extractors that turn every bad input into the error shape: JSON bodies,
//! path and query parameters, the bearer token and the client address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use palaver_core::{Error, FieldErrors};
use palaver_service::{Principal, Services};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;

/// A JSON body. Malformed JSON is 400 `malformed_json`; a missing field, a
/// wrong type or an unknown field is 400 `validation_failed` naming the field;
/// a missing or wrong Content-Type is 415; a body over the limit is 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError(Error::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ))
            .into_response());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::PayloadTooLarge("request body is too large".into())).into_response()
            } else {
                ApiError(Error::BadRequest(format!("could not read the request body: {rejection}"))).into_response()
            }
        })?;
        parse_json(&bytes).map(ApiJson).map_err(|e| ApiError(e).into_response())
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Parses JSON with the error shape of [`ApiJson`]; shared with the
/// WebSocket gateway's frames.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            return Err(json_error(&path, &err.into_inner()));
        }
    };
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> Error {
    if err.is_syntax() || err.is_eof() {
        return Error::MalformedJson(format!("not valid JSON: {err}"));
    }
    let (field, message) = field_error(path, &err.to_string());
    let mut fields = FieldErrors::new();
    fields.add(field, message);
    Error::Validation(fields)
}

/// Names the field a serde error is about and phrases the problem without
/// the parser's line and column.
fn field_error(path: &str, message: &str) -> (String, String) {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    // serde_path_to_error ends the path of an unknown field with the field
    // itself, and that of a missing field with its parent.
    let join = |name: &str| {
        if path == "." || path.is_empty() || path == name || path.ends_with(&format!(".{name}")) {
            if path == "." || path.is_empty() { name.to_owned() } else { path.to_owned() }
        } else {
            format!("{path}.{name}")
        }
    };
    for (prefix, text) in [("missing field `", "is required"), ("unknown field `", "is not a known field")] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(name) = rest.split('`').next()
        {
            return (join(name), text.to_owned());
        }
    }
    let field = if path == "." || path.is_empty() { "body".to_owned() } else { path.to_owned() };
    (field, message.to_owned())
}

/// A path parameter; a malformed one (`/users/abc`) is 400 naming it.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError(Error::BadRequest(format!("invalid path parameter: {}", e.body_text()))).into_response())
            }
            Err(other) => Err(ApiError(Error::internal(other.body_text())).into_response()),
        }
    }
}

/// Query parameters; a malformed one is 400 `validation_failed`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let message = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
                Err(ApiError(Error::invalid("query", message)).into_response())
            }
            Err(other) => Err(ApiError(Error::BadRequest(other.body_text())).into_response()),
        }
    }
}

/// The authenticated caller, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl<S> FromRequestParts<S> for Auth
where
    S: Send + Sync,
    Services: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)
            .ok_or_else(|| Error::Unauthorized("missing Authorization: Bearer token".into()))?;
        let services = Services::from_ref(state);
        let principal = services.auth.authenticate(token).await?;
        tracing::Span::current().record("user_id", principal.id());
        Ok(Auth(principal))
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The client's address: the TCP peer, or the first X-Forwarded-For entry
/// when the proxy is trusted (`PALAVER_TRUST_FORWARDED_FOR`).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.http.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok());
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(peer.unwrap_or(IpAddr::from([0, 0, 0, 0]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_field() {
        assert_eq!(
            field_error(".", "missing field `email` at line 1 column 2"),
            ("email".into(), "is required".into())
        );
        assert_eq!(
            field_error(
                "learning_languages[0].lvl",
                "unknown field `lvl`, expected `code` or `level` at line 1 column 9"
            ),
            ("learning_languages[0].lvl".into(), "is not a known field".into())
        );
        assert_eq!(
            field_error("bogus", "unknown field `bogus`, expected one of `email`"),
            ("bogus".into(), "is not a known field".into())
        );
        assert_eq!(
            field_error("password", "invalid type: integer `5`, expected a string at line 1 column 14"),
            ("password".into(), "invalid type: integer `5`, expected a string".into())
        );
    }

    #[test]
    fn bearer_tokens() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}
