//! `/media`: uploads, media details with fresh signed URLs, and the signed
//! URLs that serve the bytes (with Range support).

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest as _, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::StreamExt as _;
use palaver_core::{Error, Id};
use palaver_crypto::Variant;
use palaver_media::{MediaInfo, ServeRequest, ServeStatus, Served};
use palaver_service::pagination::positive;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody, error_response};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};

/// The upload route (it has its own time limit, see `app::timeout`).
pub const UPLOAD_PATH: &str = "/api/v1/media";
/// Room for the multipart framing around the largest file.
pub const MULTIPART_SLACK: u64 = 64 * 1024;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    // The JSON body limit does not apply to uploads: the handler bounds the
    // body by the largest upload, and the service each file by its kind.
    OpenApiRouter::new()
        .routes(routes!(upload).layer(DefaultBodyLimit::disable()))
        .routes(routes!(get_media))
        .routes(routes!(media_file))
        .routes(routes!(media_thumbnail))
}

/// The upload form: one file.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file. Its type is decided from its bytes, not from the part's
    /// Content-Type or name; the name is kept for downloads.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Uploads one file (multipart/form-data, field `file`). The type comes
/// from the bytes: images (JPEG, PNG, GIF, WebP) are re-encoded without
/// metadata (EXIF, GPS) and get a thumbnail; audio, video and documents are
/// stored as uploaded. Everything is encrypted at rest. Size limits are per
/// kind (`PALAVER_MEDIA_MAX_*_BYTES`). Attach the returned id to a moment
/// or message within a day, or it is deleted.
#[utoipa::path(post, path = "/media", tag = "media", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = MediaInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody, description = "larger than the limit of its kind"),
              (status = 415, body = ErrorBody, description = "a type that is not accepted, or not multipart"),
              (status = 422, body = ErrorBody, description = "an image that cannot be decoded or has too many pixels"),
              (status = 429, body = ErrorBody)))]
async fn upload(State(state): State<AppState>, Auth(me): Auth, request: Request) -> ApiResult<Response> {
    let max = state.http.max_upload_bytes;
    if let Some(length) = content_length(request.headers())
        && length > max
    {
        return Err(Error::PayloadTooLarge(format!("uploads are limited to {max} bytes")).into());
    }
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let request = Request::from_parts(parts, Body::new(http_body_util::Limited::new(body, limit)));
    let mut multipart = axum::extract::Multipart::from_request(request, &state).await.map_err(|rejection| {
        ApiError(Error::UnsupportedMediaType(format!("expected a multipart/form-data body: {rejection}")))
    })?;
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else {
            return Err(Error::invalid("file", "is required (a multipart field named `file`)").into());
        };
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().map(str::to_owned);
        let body = futures_util::stream::unfold(Some(field), |field| async move {
            let mut field = field?;
            match field.chunk().await {
                Ok(Some(bytes)) => Some((Ok::<Bytes, Error>(bytes), Some(field))),
                Ok(None) => None,
                Err(e) => Some((Err(multipart_error(e).0), None)),
            }
        })
        .fuse()
        .boxed();
        let media = state.media.upload(&me, filename.as_deref(), body).await?;
        return Ok((StatusCode::CREATED, ApiJson(media)).into_response());
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(Error::PayloadTooLarge("the upload is larger than any accepted file".into()))
    } else {
        ApiError(Error::BadRequest(format!("malformed multipart body: {}", e.body_text())))
    }
}

/// A media item the caller may see (they uploaded it, or it is on a moment
/// they may see or in one of their conversations), with fresh signed URLs.
#[utoipa::path(get, path = "/media/{id}", tag = "media", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Media id")),
    responses((status = 200, body = MediaInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_media(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<Id>,
) -> ApiResult<ApiJson<MediaInfo>> {
    Ok(ApiJson(state.media.info(&me, positive("media", id)?).await?))
}

/// The query of a signed media URL (as returned in `url` and
/// `thumbnail_url`; never built by clients).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// The user the URL was issued to.
    pub viewer: i64,
    /// Expiry, unix seconds.
    pub expires: i64,
    /// HMAC signature.
    pub sig: String,
}

/// The bytes of a media item, through a signed URL (no Authorization
/// header: the URL is the credential). Supports `Range` (one range),
/// `If-Range` and `If-None-Match`.
#[utoipa::path(get, path = "/media/{id}/file", tag = "media", params(("id" = i64, Path, description = "Media id"), SignedQuery),
    responses((status = 200, description = "the bytes", content_type = "application/octet-stream"),
              (status = 206, description = "the asked range", content_type = "application/octet-stream"),
              (status = 304, description = "the client's copy is current"),
              (status = 403, body = ErrorBody, description = "bad signature, expired link, or viewer cannot see media"),
              (status = 404, body = ErrorBody, description = "the viewer may not see this media"),
              (status = 416, body = ErrorBody)))]
async fn media_file(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Id>,
    ApiQuery(q): ApiQuery<SignedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(state, id, Variant::File, q, &headers).await
}

/// The JPEG thumbnail of an image, through a signed URL.
#[utoipa::path(get, path = "/media/{id}/thumbnail", tag = "media", params(("id" = i64, Path, description = "Media id"), SignedQuery),
    responses((status = 200, description = "the thumbnail", content_type = "image/jpeg"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn media_thumbnail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Id>,
    ApiQuery(q): ApiQuery<SignedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(state, id, Variant::Thumbnail, q, &headers).await
}

async fn serve(state: AppState, id: Id, variant: Variant, q: SignedQuery, headers: &HeaderMap) -> ApiResult<Response> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let served = state
        .media
        .serve(ServeRequest {
            id,
            variant,
            viewer: q.viewer,
            expires: q.expires,
            sig: q.sig,
            range: text(header::RANGE),
            if_range: text(header::IF_RANGE),
            if_none_match: text(header::IF_NONE_MATCH),
        })
        .await?;
    Ok(response(served))
}

fn response(served: Served) -> Response {
    let Served { status, content_type, length, etag, max_age, attachment, filename, body } = served;
    let mut response = match status {
        ServeStatus::Unsatisfiable { total } => {
            let mut r = error_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the range lies outside the {total} bytes of this media"),
                json!({}),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        ServeStatus::NotModified => StatusCode::NOT_MODIFIED.into_response(),
        ServeStatus::Full | ServeStatus::Partial { .. } => {
            let body = body.map(Body::from_stream).unwrap_or_else(Body::empty);
            let mut r = Response::new(body);
            if let ServeStatus::Partial { start, end, total } = status {
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                insert(&mut r, header::CONTENT_RANGE, &format!("bytes {start}-{}/{total}", end.saturating_sub(1)));
            }
            insert(&mut r, header::CONTENT_TYPE, &content_type);
            insert(&mut r, header::CONTENT_LENGTH, &length.to_string());
            insert(&mut r, header::ACCEPT_RANGES, "bytes");
            insert(&mut r, header::CONTENT_DISPOSITION, &disposition(attachment, filename.as_deref()));
            // Served bytes are never interpreted as a page: no sniffing, no
            // scripts, even if a file is HTML in disguise.
            insert(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
            insert(&mut r, header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox");
            r
        }
    };
    insert(&mut response, header::ETAG, &etag);
    // Private: the URL is for one viewer. Cacheable until it expires.
    insert(&mut response, header::CACHE_CONTROL, &format!("private, max-age={max_age}"));
    response
}

fn insert(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// `inline` or `attachment`, with the file name as ASCII fallback and
/// RFC 5987 UTF-8.
fn disposition(attachment: bool, filename: Option<&str>) -> String {
    let kind = if attachment { "attachment" } else { "inline" };
    let Some(name) = filename else { return kind.to_owned() };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_safe_headers() {
        assert_eq!(disposition(false, None), "inline");
        assert_eq!(
            disposition(true, Some("año \"2024\".pdf")),
            "attachment; filename=\"a_o _2024_.pdf\"; filename*=UTF-8''a%C3%B1o%20%222024%22.pdf"
        );
        assert!(HeaderValue::from_str(&disposition(true, Some("x\r\ny.txt"))).is_ok());
    }
}
