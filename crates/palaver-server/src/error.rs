//! The one place where errors become HTTP responses.
//!
//! Every handler returns `Result<_, ApiError>`. [`ApiError`] wraps the domain
//! [`Error`] and renders it as `{"error":{"code","message","details"}}` with
//! the status documented on each variant. Internal errors are logged here,
//! with their detail, and reach the client as a generic 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palaver_core::Error;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// A domain error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

/// The error body every failing endpoint returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: validation_failed, bad_request,
    /// malformed_json, unauthorized, forbidden, account_suspended, not_found,
    /// method_not_allowed, conflict, payload_too_large,
    /// unsupported_media_type, unprocessable, rate_limited, timeout,
    /// unavailable, internal.
    #[schema(example = "not_found")]
    pub code: String,
    /// Human-readable explanation.
    #[schema(example = "moment 42 not found")]
    pub message: String,
    /// Extra structure; for validation_failed, `fields` maps each invalid
    /// field to its problem.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The HTTP status of a domain error.
pub fn status_of(err: &Error) -> StatusCode {
    match err {
        Error::Validation(_) | Error::MalformedJson(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) | Error::Suspended => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Builds an error response from parts (for errors that are not domain
/// errors, such as malformed JSON or an unknown route).
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>, details: Value) -> Response {
    let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into(), details } };
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status = status_of(&err);
        if let Error::Internal(detail) = &err {
            tracing::error!(error = %detail, "internal error");
        }
        let details = match &err {
            Error::Validation(fields) => json!({ "fields": fields }),
            Error::RateLimited { retry_after_secs } => json!({ "retry_after": retry_after_secs }),
            _ => json!({}),
        };
        let mut response = error_response(status, err.code(), err.public_message(), details);
        match &err {
            Error::RateLimited { retry_after_secs } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            Error::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of the oversized body was not read, so the connection
            // cannot carry another request; say so, or the client may reuse
            // it and see its next request fail.
            Error::PayloadTooLarge(_) => {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
