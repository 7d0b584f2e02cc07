//! The browser client: the files of `web/`, embedded in the binary at build
//! time and served at `/`.
//!
//! Every route the API does not match ends here. Paths under the server's
//! own prefixes (`/api`, `/ws`, `/healthz`, `/readyz`, `/metrics`) keep the
//! JSON 404 of the API, so the client never shadows an endpoint. A file of
//! the client is served with its content type and an ETag (browsers
//! revalidate and get 304); any other path without a file extension is a
//! client route (`/u/42`, `/chat/7`) and gets `index.html`, whose router
//! draws the screen.
//!
//! The files are not fingerprinted (there is no build step), so they are
//! served `Cache-Control: no-cache`: a browser keeps them and revalidates
//! each with its ETag, which costs a 304 and always shows the current
//! version after an upgrade.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use serde_json::json;

use crate::error::error_response;

/// The client's files. `debug-embed` makes debug builds embed them too, so
/// tests exercise exactly what a release serves.
#[derive(RustEmbed)]
#[folder = "../../web/"]
#[exclude = ".*"]
#[exclude = "*/.*"]
struct Assets;

/// Path prefixes that belong to the server, never to the client.
const SERVER_PREFIXES: [&str; 5] = ["/api", "/ws", "/healthz", "/readyz", "/metrics"];

/// The policy for the client's HTML: scripts, styles and workers only from
/// this origin (the client uses no inline script or style); media and
/// images also from `blob:`/`data:` (previews, camera) and https (signed
/// media URLs may point at object storage).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob: https:; media-src 'self' blob: https:; connect-src 'self'; \
     worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

/// Whether `path` is one of the server's own (a whole segment must match:
/// `/apis` is a client path, `/api/x` is not).
fn is_server_path(path: &str) -> bool {
    SERVER_PREFIXES.iter().any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// The fallback of the whole router: a client file, the client's page for
/// a client route, or the API's 404.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if is_server_path(path) || (method != Method::GET && method != Method::HEAD) {
        return error_response(StatusCode::NOT_FOUND, "not_found", format!("no route for {method} {path}"), json!({}));
    }
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        name => name,
    };
    if let Some(file) = Assets::get(name) {
        return file_response(name, &file, &headers);
    }
    // A client route: no file extension in its last segment.
    let last = name.rsplit('/').next().unwrap_or(name);
    if !last.contains('.')
        && let Some(index) = Assets::get("index.html")
    {
        return file_response("index.html", &index, &headers);
    }
    error_response(StatusCode::NOT_FOUND, "not_found", format!("no file {path}"), json!({}))
}

fn file_response(name: &str, file: &rust_embed::EmbeddedFile, request: &HeaderMap) -> Response {
    let etag = etag(&file.metadata.sha256_hash());
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if name.ends_with(".html") {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        headers.insert(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
        );
    }
    if request.get_all(header::IF_NONE_MATCH).iter().any(|v| v.to_str().is_ok_and(|v| etag_matches(v, &etag))) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, content_type(name, file.metadata.mimetype()));
    (StatusCode::OK, headers, file.data.clone().into_owned()).into_response()
}

/// A strong ETag from the file's SHA-256 (the first 16 bytes are plenty to
/// tell versions of one file apart).
fn etag(hash: &[u8; 32]) -> String {
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &hash[..16] {
        tag.push_str(&format!("{byte:02x}"));
    }
    tag.push('"');
    tag
}

/// `If-None-Match` matching (RFC 9110 §13.1.2): a list of tags, weak
/// comparison, or `*`.
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The content type: the types the client ships, with a charset for
/// text; otherwise what the embedder guessed from the extension.
fn content_type(name: &str, guessed: &str) -> HeaderValue {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    let known = match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        _ => return HeaderValue::from_str(guessed).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    };
    HeaderValue::from_static(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_prefixes_match_whole_segments() {
        for p in ["/api", "/api/v1/x", "/ws", "/ws/chat/1/", "/healthz", "/metrics", "/readyz"] {
            assert!(is_server_path(p), "{p}");
        }
        for p in ["/", "/apis", "/wsx", "/u/1", "/metrics.html"] {
            assert!(!is_server_path(p), "{p}");
        }
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = "\"abc\"";
        assert!(etag_matches("\"abc\"", tag));
        assert!(etag_matches("\"x\", W/\"abc\"", tag));
        assert!(etag_matches("*", tag));
        assert!(!etag_matches("\"abd\"", tag));
    }

    #[test]
    fn the_client_is_embedded() {
        assert!(Assets::get("index.html").is_some());
        assert!(Assets::get("sw.js").is_some());
    }
}
