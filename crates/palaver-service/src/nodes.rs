//! The seam between services and the other nodes of a cluster: a request
//! to one named node, and its answer.
//!
//! Most cross-node work is fan-out (the hub's topics). Some is not: a voice
//! room's media lives in one node's SFU, and a participant connected to
//! another node must still signal with it. Services ask [`NodeLink`] to
//! carry such a request to the node that owns the resource and wait for the
//! answer; the hub's broker implements it (`palaver-realtime`), and a node
//! answers through the [`NodeService`] registered under the request's
//! service name. Errors cross nodes as [`WireError`], so the caller gets the
//! same [`Error`] (status, code, message) the owning node produced.

use std::collections::BTreeMap;

use async_trait::async_trait;
use palaver_core::error::FieldErrors;
use palaver_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Requests to other nodes.
#[async_trait]
pub trait NodeLink: Send + Sync {
    /// This node's name.
    fn node_id(&self) -> &str;

    /// Sends `body` to `service` on `node` and waits for its answer. An
    /// unknown, dead or overloaded node gives [`Error::Unavailable`] naming
    /// the node once the link's timeout passes.
    async fn request(&self, node: &str, service: &str, body: Value) -> Result<Value>;
}

/// What a node runs for requests from other nodes.
#[async_trait]
pub trait NodeService: Send + Sync {
    /// Answers one request.
    async fn handle(&self, body: Value) -> Result<Value>;
}

/// An [`Error`] on its way between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// [`Error::code`].
    pub code: String,
    /// The message a client may read (never an internal error's text).
    pub message: String,
    /// Per-field messages of a validation error.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// Seconds until a rate-limited request may be retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl From<&Error> for WireError {
    fn from(err: &Error) -> Self {
        let (fields, retry_after_secs) = match err {
            Error::Validation(fields) => (fields.fields().clone(), None),
            Error::RateLimited { retry_after_secs } => (BTreeMap::new(), Some(*retry_after_secs)),
            _ => (BTreeMap::new(), None),
        };
        // An internal error's text stays in the log of the node it happened on.
        let message = match err {
            Error::Internal(_) => "internal error on another node".to_owned(),
            other => other.to_string(),
        };
        Self { code: err.code().to_owned(), message, fields, retry_after_secs }
    }
}

impl From<WireError> for Error {
    fn from(wire: WireError) -> Self {
        let WireError { code, message, fields, retry_after_secs } = wire;
        match code.as_str() {
            "validation_failed" => {
                let mut errors = FieldErrors::new();
                for (field, msg) in fields {
                    errors.add(field, msg);
                }
                if errors.is_empty() {
                    errors.add("request", message);
                }
                Error::Validation(errors)
            }
            "malformed_json" => Error::MalformedJson(message),
            "bad_request" => Error::BadRequest(message),
            "unauthorized" => Error::Unauthorized(message),
            "forbidden" => Error::Forbidden(message),
            "account_suspended" => Error::Suspended,
            "not_found" => Error::NotFound(message),
            "conflict" => Error::Conflict(message),
            "payload_too_large" => Error::PayloadTooLarge(message),
            "unsupported_media_type" => Error::UnsupportedMediaType(message),
            "unprocessable" => Error::Unprocessable(message),
            "rate_limited" => Error::RateLimited { retry_after_secs: retry_after_secs.unwrap_or(1) },
            "unavailable" => Error::Unavailable(message),
            _ => Error::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_nodes_unchanged_except_internal_text() {
        let cases = [
            Error::invalid("payload.sdp", "is required"),
            Error::Forbidden("join the room first".into()),
            Error::Suspended,
            Error::not_found("voice room", 3),
            Error::Conflict("taken".into()),
            Error::Unprocessable("no".into()),
            Error::RateLimited { retry_after_secs: 7 },
            Error::Unavailable("node-2 is full".into()),
        ];
        for err in cases {
            let wire: WireError = serde_json::from_value(serde_json::to_value(WireError::from(&err)).unwrap()).unwrap();
            let back = Error::from(wire);
            assert_eq!((back.code(), back.to_string()), (err.code(), err.to_string()));
            if let (Error::Validation(a), Error::Validation(b)) = (&back, &err) {
                assert_eq!(a, b);
            }
        }
        let wire = WireError::from(&Error::Internal("SELECT secret FROM x".into()));
        assert!(!wire.message.contains("secret"), "internal details stay on their node");
        assert_eq!(Error::from(wire).code(), "internal");
    }
}
