//! The domain error: what went wrong in terms a client can act on.
//!
//! Every service returns [`Error`]. The HTTP layer maps each variant to one
//! status code and the `{"error":{"code","message","details"}}` shape, in one
//! place; the WebSocket gateway maps them to `error` frames. Internal details
//! (SQL, paths) never travel in the variants a client sees: `Internal` keeps
//! its message for the log only.

use std::collections::BTreeMap;

use serde::Serialize;

/// Result alias for domain operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Per-field validation messages, keyed by the field's path (`email`,
/// `learning_languages[0].level`). Sorted so responses are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    /// An empty set of errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field`. The first message for a field wins, so
    /// the most basic problem (missing, too long) is the one reported.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_insert_with(|| message.into());
    }

    /// True when no field has a problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages, keyed by field path.
    pub fn fields(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// `Ok(())` when empty, otherwise the errors as [`Error::Validation`].
    pub fn into_result(self) -> Result<()> {
        if self.is_empty() { Ok(()) } else { Err(Error::Validation(self)) }
    }
}

/// What went wrong, as a client should learn it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more fields are invalid. HTTP 400, code `validation_failed`,
    /// `details.fields` maps each field to its message.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// The body or frame is not valid JSON. HTTP 400, code `malformed_json`.
    #[error("{0}")]
    MalformedJson(String),
    /// The request is malformed in a way that is not about one field. HTTP 400,
    /// code `bad_request`.
    #[error("{0}")]
    BadRequest(String),
    /// Missing, expired or invalid credentials. HTTP 401, code `unauthorized`.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed (including suspended accounts). HTTP 403,
    /// code `forbidden` (or `suspended` for suspended accounts).
    #[error("{0}")]
    Forbidden(String),
    /// The account is suspended. HTTP 403, code `account_suspended`.
    #[error("this account is suspended")]
    Suspended,
    /// The thing does not exist, or the caller may not know that it exists.
    /// HTTP 404, code `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with current state (a taken email, a duplicate
    /// report). HTTP 409, code `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// The body or upload is larger than allowed. HTTP 413, code
    /// `payload_too_large`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The content type is not accepted. HTTP 415, code
    /// `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but breaks a rule of the domain (reply to a comment of
    /// another moment, repost of a non-public moment). HTTP 422, code
    /// `unprocessable`.
    #[error("{0}")]
    Unprocessable(String),
    /// Too many requests; retry after the given number of seconds. HTTP 429,
    /// code `rate_limited`, with a `Retry-After` header.
    #[error("too many requests, retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// A dependency is not available (database down, Redis down). HTTP 503,
    /// code `unavailable`.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an infrastructure failure. HTTP 500, code `internal`; the
    /// message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A [`Error::NotFound`] naming the kind of thing and its id, such as
    /// `moment 42 not found`.
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} {id} not found"))
    }

    /// A single-field [`Error::Validation`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.add(field, message);
        Self::Validation(errors)
    }

    /// An [`Error::Internal`] from any error, keeping its text for the log.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::Internal(err.to_string())
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::MalformedJson(_) => "malformed_json",
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Suspended => "account_suspended",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unprocessable(_) => "unprocessable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The message a client may see. Internal errors are never described.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let err = Error::internal("relation \"users\" does not exist at /srv/db");
        assert_eq!(err.public_message(), "internal server error");
        assert_eq!(err.code(), "internal");
    }

    #[test]
    fn first_message_for_a_field_wins() {
        let mut errors = FieldErrors::new();
        errors.add("email", "is required");
        errors.add("email", "is not an email address");
        assert_eq!(errors.fields()["email"], "is required");
        assert!(matches!(errors.into_result(), Err(Error::Validation(_))));
        assert!(FieldErrors::new().into_result().is_ok());
    }
}
