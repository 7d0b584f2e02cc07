//! Media over HTTP: uploads of each kind, type detection, limits, images
//! (bombs, EXIF, thumbnails), signed URLs and who may use them, Range
//! requests, encryption at rest, clean-up and key rotation.

use std::io::Read as _;
use std::time::Duration;

use palaver_crypto::{MediaUrls, Variant};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{JWT_SECRET, TestApp, TestUser, api_test, spawn_app_with};

const BOUNDARY: &str = "palaver-test-boundary-7d1f";

/// A multipart body with one `file` field.
pub fn multipart(filename: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Uploads a file as `user`; the part claims `content_type`.
pub async fn upload(
    app: &TestApp,
    user: &TestUser,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> crate::helpers::Reply {
    let resp = app
        .client
        .post(app.url("/api/v1/media"))
        .bearer_auth(&user.access_token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(multipart(filename, content_type, bytes))
        .send()
        .await
        .unwrap();
    TestApp::reply(resp).await
}

/// GET of a (relative) media URL, with extra headers; status, headers, bytes.
pub async fn fetch(
    app: &TestApp,
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.client.get(app.url(url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn signer() -> MediaUrls {
    MediaUrls::new(JWT_SECRET.as_bytes(), Duration::from_secs(3600))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---- fixtures -------------------------------------------------------------

pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 { image::Rgb([250, 10, 10]) } else { image::Rgb([10, 10, 250]) }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A JPEG carrying EXIF: orientation 6 (rotate 90° clockwise to view) and
/// a GPS position, in an APP1 segment right after SOI.
pub fn jpeg_with_gps(width: u32, height: u32) -> Vec<u8> {
    let mut tiff = Vec::new();
    let u16le = |v: u16| v.to_le_bytes();
    let u32le = |v: u32| v.to_le_bytes();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&u32le(8));
    // IFD0 at 8: Orientation, GPSInfo pointer.
    tiff.extend_from_slice(&u16le(2));
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0]);
    tiff.extend_from_slice(&u32le(1));
    tiff.extend_from_slice(&[6, 0, 0, 0]);
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0]);
    tiff.extend_from_slice(&u32le(1));
    tiff.extend_from_slice(&u32le(38));
    tiff.extend_from_slice(&u32le(0));
    // GPS IFD at 38: version, latitude ref, latitude, map datum.
    tiff.extend_from_slice(&u16le(4));
    tiff.extend_from_slice(&[0, 0, 1, 0]);
    tiff.extend_from_slice(&u32le(4));
    tiff.extend_from_slice(&[2, 3, 0, 0]);
    tiff.extend_from_slice(&[1, 0, 2, 0]);
    tiff.extend_from_slice(&u32le(2));
    tiff.extend_from_slice(b"N\0\0\0");
    tiff.extend_from_slice(&[2, 0, 5, 0]);
    tiff.extend_from_slice(&u32le(3));
    tiff.extend_from_slice(&u32le(92));
    tiff.extend_from_slice(&[0x12, 0, 2, 0]);
    tiff.extend_from_slice(&u32le(16));
    tiff.extend_from_slice(&u32le(116));
    tiff.extend_from_slice(&u32le(0));
    assert_eq!(tiff.len(), 92);
    for (num, den) in [(40u32, 1u32), (25, 1), (1234, 100)] {
        tiff.extend_from_slice(&u32le(num));
        tiff.extend_from_slice(&u32le(den));
    }
    tiff.extend_from_slice(b"GPS-DATUM-MARK\0\0");
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&u16::try_from(2 + 6 + tiff.len()).unwrap().to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let plain = jpeg(width, height);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

/// A mono 16-bit WAV of `ms` milliseconds at 8 kHz.
pub fn wav(ms: u32) -> Vec<u8> {
    let samples = 8 * ms;
    let data_len = samples * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend((0..samples).flat_map(|i| ((i % 50) as i16 * 300).to_le_bytes()));
    out
}

/// An MP4 (ISO base media) file: `ftyp` then `len` bytes of `mdat`.
pub fn mp4(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&24u32.to_be_bytes());
    out.extend_from_slice(b"ftypisom\0\0\x02\0isomiso2");
    out.extend_from_slice(&u32::try_from(len + 8).unwrap().to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend((0..len).map(|i| (i * 31 % 251) as u8));
    out
}

/// A PDF-looking document of about `len` bytes with `marker` inside.
pub fn pdf(len: usize, marker: &str) -> Vec<u8> {
    let mut out = format!("%PDF-1.7\n% {marker}\n").into_bytes();
    while out.len() < len {
        out.extend_from_slice(format!("{} 0 obj << /Marker ({marker}) >> endobj\n", out.len()).as_bytes());
    }
    out.truncate(len.max(32));
    out
}

/// A valid PNG of 20000 x 20000 pixels (400 megapixels, 1 bit each) that
/// compresses to a few tens of kilobytes: a decompression bomb.
fn bomb_png() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 20_000, 20_000);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&vec![0u8; 20_000 / 8 * 20_000]).unwrap();
        writer.finish().unwrap();
    }
    out
}

fn exif_of(bytes: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)).ok()
}

// ---- uploads --------------------------------------------------------------

api_test! {
    /// One upload of each kind: the type comes from the bytes, the metadata
    /// is right, and the signed URL serves the bytes back.
    async fn upload_each_kind(app) {
        let ana = app.register("ana@example.org").await;

        let image = upload(&app, &ana, "cat.png", "image/png", &png(64, 48)).await.expect(201);
        assert_eq!((image["kind"].as_str(), image["content_type"].as_str()), (Some("image"), Some("image/png")));
        assert_eq!((image["width"].as_i64(), image["height"].as_i64()), (Some(64), Some(48)));
        assert_eq!(image["filename"], "cat.png");
        assert_eq!(image["attached"], false);
        let (status, headers, bytes) = fetch(&app, image["url"].as_str().unwrap(), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(image::load_from_memory(&bytes).unwrap().to_rgb8(), image::load_from_memory(&png(64, 48)).unwrap().to_rgb8(), "lossless re-encoding");

        let audio_bytes = wav(1500);
        let audio = upload(&app, &ana, "hola.wav", "audio/wav", &audio_bytes).await.expect(201);
        assert_eq!((audio["kind"].as_str(), audio["content_type"].as_str()), (Some("audio"), Some("audio/x-wav")));
        assert_eq!(audio["duration_ms"], 1500);
        assert_eq!(audio["size"], audio_bytes.len());
        assert_eq!(audio["thumbnail_url"], Value::Null);
        let (status, _, bytes) = fetch(&app, audio["url"].as_str().unwrap(), &[]).await;
        assert_eq!((status.as_u16(), bytes == audio_bytes), (200, true), "stored as uploaded");

        let video_bytes = mp4(300_000);
        let video = upload(&app, &ana, "clip.mp4", "video/mp4", &video_bytes).await.expect(201);
        assert_eq!((video["kind"].as_str(), video["content_type"].as_str()), (Some("video"), Some("video/mp4")));
        let (status, headers, bytes) = fetch(&app, video["url"].as_str().unwrap(), &[]).await;
        assert_eq!((status.as_u16(), bytes == video_bytes), (200, true));
        assert_eq!(headers["content-disposition"], "inline; filename=\"clip.mp4\"; filename*=UTF-8''clip.mp4");

        let doc_bytes = pdf(10_000, "doc");
        let doc = upload(&app, &ana, "notes.pdf", "application/pdf", &doc_bytes).await.expect(201);
        assert_eq!((doc["kind"].as_str(), doc["content_type"].as_str()), (Some("file"), Some("application/pdf")));
        let (status, headers, bytes) = fetch(&app, doc["url"].as_str().unwrap(), &[]).await;
        assert_eq!((status.as_u16(), bytes == doc_bytes), (200, true));
        assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
        assert_eq!(headers["x-content-type-options"], "nosniff");

        // The details endpoint gives the owner fresh URLs.
        let info = app.get(&format!("/api/v1/media/{}", doc["id"]), &ana.access_token).await.expect(200);
        assert_eq!(info["id"], doc["id"]);
        assert!(info["url"].as_str().unwrap().contains("sig="));
    }
}

api_test! {
    /// The client's Content-Type and file name are ignored: a PNG sent as a
    /// PDF is an image; an executable sent as a PNG is refused with 415;
    /// so are HTML pages and requests that are not multipart.
    async fn type_comes_from_magic_bytes(app) {
        let ana = app.register("ana@example.org").await;
        let body = upload(&app, &ana, "report.pdf", "application/pdf", &png(10, 10)).await.expect(201);
        assert_eq!((body["kind"].as_str(), body["content_type"].as_str()), (Some("image"), Some("image/png")));

        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
        elf.extend_from_slice(&[0u8; 4096]);
        upload(&app, &ana, "cute.png", "image/png", &elf).await.expect_error(415, "unsupported_media_type");
        upload(&app, &ana, "page.txt", "text/plain", b"<!DOCTYPE html><html><script>alert(1)</script>").await
            .expect_error(415, "unsupported_media_type");
        app.post_raw("/api/v1/media", "application/json", "{}").await.expect_error(401, "unauthorized");
        let resp = app.client.post(app.url("/api/v1/media")).bearer_auth(&ana.access_token)
            .header("content-type", "application/json").body("{}").send().await.unwrap();
        TestApp::reply(resp).await.expect_error(415, "unsupported_media_type");
        // A multipart body without a file field.
        let resp = app.client.post(app.url("/api/v1/media")).bearer_auth(&ana.access_token)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n"))
            .send().await.unwrap();
        TestApp::reply(resp).await.expect_error(400, "validation_failed");
        // Nothing was stored by the refused uploads.
        assert_eq!(app.store.media_key_counts().await.unwrap().iter().map(|(_, n)| n).sum::<i64>(), 1);
    }
}

/// Sends an upload over a raw connection, the body chunked and endless, and
/// stops writing as soon as the server answers. Returns the status line and
/// how many body bytes had been written by then.
async fn endless_upload(app: &TestApp, token: &str, head: &[u8]) -> (String, usize) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /api/v1/media HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n",
        app.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let answer = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).lines().next().unwrap().to_owned()
    });
    let mut first =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n")
            .into_bytes();
    first.extend_from_slice(head);
    let filler = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    let limit = 512 * 1024 * 1024;
    let mut chunk = first;
    while !answer.is_finished() && sent < limit {
        let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
        if writer.write_all(&framed).await.is_err() {
            break;
        }
        sent += chunk.len();
        chunk = filler.clone();
    }
    let line = tokio::time::timeout(Duration::from_secs(30), answer).await.unwrap().unwrap();
    (line, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_uploads_are_refused_while_streaming() {
    let app = spawn_app_with(crate::helpers::Backend::Sqlite, |c| {
        c.media_max_file_bytes = 1024 * 1024;
        c.media_max_image_bytes = 1024 * 1024;
        c.media_max_video_bytes = 2 * 1024 * 1024;
        c.media_max_audio_bytes = 1024 * 1024;
    })
    .await
    .unwrap();
    let ana = app.register("ana@example.org").await;
    // An endless PDF: refused with 413 once past 1 MiB, long before the
    // client stops sending (it would send 512 MiB).
    let (line, sent) = endless_upload(&app, &ana.access_token, b"%PDF-1.7\n").await;
    assert!(line.contains(" 413 "), "{line}");
    assert!(sent < 32 * 1024 * 1024, "the server read {sent} bytes before answering");
    // A declared length above every limit is refused before reading.
    let resp = app
        .client
        .post(app.url("/api/v1/media"))
        .bearer_auth(&ana.access_token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(multipart("big.mp4", "video/mp4", &mp4(3 * 1024 * 1024)))
        .send()
        .await
        .unwrap();
    TestApp::reply(resp).await.expect_error(413, "payload_too_large");
    // Per kind: 1.5 MiB of video passes where 1.5 MiB of PDF does not.
    upload(&app, &ana, "v.mp4", "video/mp4", &mp4(1536 * 1024)).await.expect(201);
    upload(&app, &ana, "d.pdf", "application/pdf", &pdf(1536 * 1024, "x")).await.expect_error(413, "payload_too_large");
    // Nothing is left of refused uploads.
    assert_eq!(app.store.media_key_counts().await.unwrap().iter().map(|(_, n)| n).sum::<i64>(), 1);
    app.stop().await;
}

// ---- images ---------------------------------------------------------------

api_test! {
    /// A 400-megapixel PNG of a few kilobytes is refused before decoding.
    async fn decompression_bombs_are_refused(app) {
        let ana = app.register("ana@example.org").await;
        let bomb = bomb_png();
        assert!(bomb.len() < 2 * 1024 * 1024, "the bomb is small: {} bytes", bomb.len());
        let body = upload(&app, &ana, "bomb.png", "image/png", &bomb).await.expect_error(422, "unprocessable");
        assert!(body["error"]["message"].as_str().unwrap().contains("20000x20000"), "{body}");
    }
}

api_test! {
    /// The GPS position in the uploaded JPEG's EXIF is gone from what is
    /// served, and the orientation it carried was applied to the pixels.
    async fn exif_is_stripped_and_orientation_applied(app) {
        let ana = app.register("ana@example.org").await;
        let original = jpeg_with_gps(40, 20);
        let exif = exif_of(&original).expect("the fixture has EXIF");
        assert!(exif.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY).is_some(), "the fixture has a GPS position");
        assert!(original.windows(14).any(|w| w == b"GPS-DATUM-MARK"));

        let body = upload(&app, &ana, "holiday.jpg", "image/jpeg", &original).await.expect(201);
        assert_eq!((body["width"].as_i64(), body["height"].as_i64()), (Some(20), Some(40)), "turned upright");
        let (status, headers, served) = fetch(&app, body["url"].as_str().unwrap(), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "image/jpeg");
        assert!(exif_of(&served).is_none_or(|e| e.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY).is_none()), "no GPS served");
        assert!(!served.windows(14).any(|w| w == b"GPS-DATUM-MARK"));
        let img = image::load_from_memory(&served).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (20, 40));
        // The left half was red; turned 90° clockwise, red is on top.
        let top = img.get_pixel(10, 5).0;
        let bottom = img.get_pixel(10, 35).0;
        assert!(top[0] > 200 && top[2] < 60, "top is red: {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom is blue: {bottom:?}");
        // The thumbnail has no EXIF either.
        let (_, _, thumb) = fetch(&app, body["thumbnail_url"].as_str().unwrap(), &[]).await;
        assert!(exif_of(&thumb).is_none_or(|e| e.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY).is_none()));
    }
}

api_test! {
    /// Thumbnails are at most 320 px on the longer side, aspect kept.
    async fn thumbnail_dimensions(app) {
        let ana = app.register("ana@example.org").await;
        let body = upload(&app, &ana, "wide.png", "image/png", &png(1000, 500)).await.expect(201);
        assert_eq!((body["thumbnail_width"].as_i64(), body["thumbnail_height"].as_i64()), (Some(320), Some(160)));
        let (status, headers, thumb) = fetch(&app, body["thumbnail_url"].as_str().unwrap(), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "image/jpeg");
        let img = image::load_from_memory(&thumb).unwrap();
        assert_eq!((img.width(), img.height()), (320, 160));
        let body = upload(&app, &ana, "tall.jpg", "image/jpeg", &jpeg(300, 900)).await.expect(201);
        assert_eq!((body["thumbnail_width"].as_i64(), body["thumbnail_height"].as_i64()), (Some(107), Some(320)));
    }
}

// ---- signed URLs ------------------------------------------------------------

api_test! {
    /// Expired, tampered and wrong-viewer URLs are refused; a viewer who
    /// may not see the media gets 404 even with a valid signature.
    async fn signed_urls_are_checked(app) {
        let ana = app.register("ana@example.org").await;
        let bob = app.register("bob@example.org").await;
        let media = upload(&app, &ana, "a.pdf", "application/pdf", &pdf(5000, "a")).await.expect(201);
        let id = media["id"].as_i64().unwrap();
        let url = media["url"].as_str().unwrap().to_owned();
        assert_eq!(fetch(&app, &url, &[]).await.0, 200);

        // Expired (signed by the server's key, an expiry in the past).
        let old = signer().url(id, Variant::File, ana.id, now() - 3 * 3600);
        let (status, _, body) = fetch(&app, &old, &[]).await;
        assert_eq!(status, 403);
        assert!(String::from_utf8_lossy(&body).contains("expired"));

        // Tampered: another viewer, another id, another expiry, another signature.
        for tampered in [
            url.replace(&format!("viewer={}", ana.id), &format!("viewer={}", bob.id)),
            url.replace(&format!("/media/{id}/"), &format!("/media/{}/", id + 1)),
            url.replace("expires=", "expires=9"),
            format!("{}A", url),
            url.replace("/file?", "/thumbnail?"),
        ] {
            let (status, _, body) = fetch(&app, &tampered, &[]).await;
            assert_eq!(status, 403, "{tampered}: {}", String::from_utf8_lossy(&body));
        }
        let (status, _, _) = fetch(&app, &format!("/api/v1/media/{id}/file"), &[]).await;
        assert_eq!(status, 400, "no signature at all");

        // A valid signature for a viewer who may not see it: Bob.
        let bobs = signer().url(id, Variant::File, bob.id, now());
        assert_eq!(fetch(&app, &bobs, &[]).await.0, 404);
        app.get(&format!("/api/v1/media/{id}"), &bob.access_token).await.expect_error(404, "not_found");

        // A suspended viewer's links stop working.
        app.store.set_suspended(ana.id, true, palaver_core::time::now()).await.unwrap();
        assert_eq!(fetch(&app, &url, &[]).await.0, 403);
    }
}

api_test! {
    /// Moment media come with URLs signed for each viewer; they stop
    /// working for others when the moment is hidden by moderation.
    async fn moment_media_follow_the_moment(app) {
        let ana = app.register("ana@example.org").await;
        let bob = app.register("bob@example.org").await;
        let modr = app.register("mod@example.org").await;
        app.store.set_role(modr.id, palaver_core::user::Role::Moderator, palaver_core::time::now()).await.unwrap();
        let media = upload(&app, &ana, "p.png", "image/png", &png(50, 50)).await.expect(201);
        let id = media["id"].as_i64().unwrap();
        let moment = app.post("/api/v1/moments", Some(&ana.access_token),
            json!({"content": "look", "media_ids": [id], "visibility": "public"})).await.expect(201);
        let bobs_view = app.get(&format!("/api/v1/moments/{}", moment["id"]), &bob.access_token).await.expect(200);
        let item = &bobs_view["media"][0];
        assert_eq!(item["id"], id);
        let url = item["url"].as_str().unwrap().to_owned();
        assert!(url.contains(&format!("viewer={}", bob.id)), "signed for Bob: {url}");
        assert_eq!(fetch(&app, &url, &[]).await.0, 200);
        assert_eq!(fetch(&app, item["thumbnail_url"].as_str().unwrap(), &[]).await.0, 200);
        // In the feed too.
        let feed = app.get("/api/v1/moments?feed=public", &bob.access_token).await.expect(200);
        assert!(feed["items"][0]["media"][0]["url"].as_str().unwrap().contains(&format!("viewer={}", bob.id)));
        // Attached: no longer collectable.
        assert_eq!(app.get(&format!("/api/v1/media/{id}"), &ana.access_token).await.expect(200)["attached"], true);

        // A moderator hides the moment: Bob's link stops working, Ana's not.
        let report = app.post("/api/v1/reports", Some(&bob.access_token),
            json!({"report_type": "spam", "reported_moment": moment["id"]})).await.expect(201);
        app.patch(&format!("/api/v1/moderation/reports/{}", report["id"]), &modr.access_token,
            json!({"status": "resolved", "action": "hide_content"})).await.expect(200);
        assert_eq!(fetch(&app, &url, &[]).await.0, 404);
        assert_eq!(fetch(&app, media["url"].as_str().unwrap(), &[]).await.0, 200, "the owner still sees it");

        // A deleted moment's media are gone for others too.
        let shown = upload(&app, &ana, "s.png", "image/png", &png(20, 20)).await.expect(201);
        let doomed = app.post("/api/v1/moments", Some(&ana.access_token),
            json!({"content": "soon gone", "media_ids": [shown["id"]], "visibility": "public"})).await.expect(201);
        let bobs = signer().url(shown["id"].as_i64().unwrap(), Variant::File, bob.id, now());
        assert_eq!(fetch(&app, &bobs, &[]).await.0, 200);
        app.delete(&format!("/api/v1/moments/{}", doomed["id"]), &ana.access_token).await.expect(204);
        assert_eq!(fetch(&app, &bobs, &[]).await.0, 404);

        // A private moment's media are the author's alone.
        let other = upload(&app, &ana, "q.png", "image/png", &png(20, 20)).await.expect(201);
        app.post("/api/v1/moments", Some(&ana.access_token),
            json!({"content": "me", "media_ids": [other["id"]], "visibility": "private"})).await.expect(201);
        let bobs = signer().url(other["id"].as_i64().unwrap(), Variant::File, bob.id, now());
        assert_eq!(fetch(&app, &bobs, &[]).await.0, 404);
    }
}

api_test! {
    /// Range requests return exactly the asked bytes; validators and cache
    /// headers are right.
    async fn range_requests(app) {
        let ana = app.register("ana@example.org").await;
        let data = pdf(300_000, "range");
        let media = upload(&app, &ana, "r.pdf", "application/pdf", &data).await.expect(201);
        let url = media["url"].as_str().unwrap();

        let (status, headers, body) = fetch(&app, url, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-length"], "300000");
        assert_eq!(headers["accept-ranges"], "bytes");
        assert_eq!(headers["content-type"], "application/pdf");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let cache = headers["cache-control"].to_str().unwrap();
        assert!(cache.starts_with("private, max-age="), "{cache}");
        let max_age: u64 = cache.trim_start_matches("private, max-age=").parse().unwrap();
        assert!((3000..=3600 + 900).contains(&max_age), "{max_age}");
        assert_eq!(body, data);

        // Across chunk boundaries (64 KiB), in the middle, at the end.
        for (range, expect) in [
            ("bytes=70000-140000", 70000..140001),
            ("bytes=0-0", 0..1),
            ("bytes=65535-65536", 65535..65537),
            ("bytes=299990-", 299990..300000),
            ("bytes=-10", 299990..300000),
            ("bytes=200000-999999", 200000..300000),
        ] {
            let (status, headers, body) = fetch(&app, url, &[("range", range)]).await;
            assert_eq!(status, 206, "{range}");
            assert_eq!(body, &data[expect.clone()], "{range}");
            assert_eq!(headers["content-length"], (expect.end - expect.start).to_string().as_str());
            assert_eq!(headers["content-range"], format!("bytes {}-{}/300000", expect.start, expect.end - 1).as_str());
        }
        let (status, headers, _) = fetch(&app, url, &[("range", "bytes=300000-")]).await;
        assert_eq!(status, 416);
        assert_eq!(headers["content-range"], "bytes */300000");
        // Several ranges: the whole item.
        assert_eq!(fetch(&app, url, &[("range", "bytes=0-1,5-6")]).await.0, 200);
        // Conditional requests.
        assert_eq!(fetch(&app, url, &[("if-none-match", &etag)]).await.0, 304);
        assert_eq!(fetch(&app, url, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")]).await.0, 200);
        assert_eq!(fetch(&app, url, &[("range", "bytes=0-9"), ("if-range", &etag)]).await.0, 206);
        // HEAD answers the headers.
        let head = app.client.head(app.url(url)).send().await.unwrap();
        assert_eq!((head.status().as_u16(), head.headers()["content-length"].to_str().unwrap()), (200, "300000"));
    }
}

// ---- encryption at rest ---------------------------------------------------

/// Every file under `dir`, recursively, concatenated with its name.
fn all_bytes_under(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut bytes = Vec::new();
                std::fs::File::open(&path).unwrap().read_to_end(&mut bytes).unwrap();
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where the database holds `needle`: on SQLite, which of its files (the
/// WAL too) contain the bytes; on PostgreSQL, which tables of the test's
/// schema have a row whose text form contains it (bytea columns print as
/// hex, so the hex of the needle is looked for as well).
async fn database_holds(app: &TestApp, needle: &str) -> Vec<String> {
    if app.store.backend() == palaver_store::Backend::Sqlite {
        let path = app.db_options.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_owned();
        let dir = std::path::Path::new(&path).parent().unwrap();
        let files = all_bytes_under(dir);
        assert!(!files.is_empty(), "no database files under {}", dir.display());
        return files
            .into_iter()
            .filter(|(_, bytes)| contains(bytes, needle.as_bytes()))
            .map(|(name, _)| name)
            .collect();
    }
    use sqlx::Connection as _;
    let schema = app.db_options.pg_schema.clone().expect("tests use a schema of their own");
    let mut conn = sqlx::PgConnection::connect(&app.db_options.url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
    )
    .bind(&schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.len() > 10, "tables of {schema}: {tables:?}");
    let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let mut found = Vec::new();
    for table in tables {
        let sql = format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
        );
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(needle).bind(&hex).fetch_one(&mut conn).await.unwrap();
        if rows > 0 {
            found.push(format!("{table} ({rows} rows)"));
        }
    }
    let _ = conn.close().await;
    found
}

api_test! {
    /// Neither the storage folder nor the database holds the plaintext of
    /// an upload or its file name; the server still serves them.
    async fn no_plaintext_at_rest(app) {
        let ana = app.register("ana@example.org").await;
        let marker = "ZEBRA-MARKER-4f1c";
        let text = format!("confidential notes {marker}\n").repeat(5000);
        let media = upload(&app, &ana, &format!("{marker}.txt"), "text/plain", text.as_bytes()).await.expect(201);
        assert_eq!(media["content_type"], "text/plain");
        let image = upload(&app, &ana, "img.png", "image/png", &png(300, 200)).await.expect(201);

        let storage_dir = app.config.data_dir.join("media");
        let files = all_bytes_under(&storage_dir);
        assert!(files.len() >= 3, "objects stored under {}: {}", storage_dir.display(), files.len());
        for (name, bytes) in &files {
            assert!(!contains(bytes, marker.as_bytes()), "{name} holds the marker");
            assert!(!contains(bytes, b"confidential"), "{name} holds plaintext");
            assert!(!contains(bytes, b"IHDR"), "{name} holds a PNG header");
            assert!(!name.contains(marker), "{name} is named after the file");
        }
        // The database: the SQLite files (with the WAL), or every table.
        assert_eq!(database_holds(&app, marker).await, Vec::<String>::new(), "the database holds the marker");
        let row = app.store.media_by_id(media["id"].as_i64().unwrap()).await.unwrap().unwrap();
        assert!(!contains(row.filename.as_deref().unwrap(), marker.as_bytes()));
        assert!(row.key_id.is_some());

        let (status, headers, body) = fetch(&app, media["url"].as_str().unwrap(), &[]).await;
        assert_eq!((status.as_u16(), body == text.as_bytes()), (200, true));
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert!(headers["content-disposition"].to_str().unwrap().contains(marker));
        assert_eq!(fetch(&app, image["url"].as_str().unwrap(), &[]).await.0, 200);
    }
}

api_test! {
    /// A stored ciphertext moved to another media row does not decrypt there.
    async fn swapped_ciphertexts_fail(app) {
        let ana = app.register("ana@example.org").await;
        let a = upload(&app, &ana, "a.pdf", "application/pdf", &pdf(70_000, "first")).await.expect(201);
        let b = upload(&app, &ana, "b.pdf", "application/pdf", &pdf(70_000, "second")).await.expect(201);
        let row_a = app.store.media_by_id(a["id"].as_i64().unwrap()).await.unwrap().unwrap();
        let row_b = app.store.media_by_id(b["id"].as_i64().unwrap()).await.unwrap().unwrap();
        let storage = app.state.media.storage();
        let sealed_b = storage.raw(&row_b.storage_key).await.unwrap();
        storage.put_raw(&row_a.storage_key, sealed_b).await.unwrap();
        let (status, _, body) = fetch(&app, a["url"].as_str().unwrap(), &[]).await;
        assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
        assert!(!contains(&body, b"second"));
        assert_eq!(fetch(&app, b["url"].as_str().unwrap(), &[]).await.0, 200);
    }
}

api_test! {
    /// Unattached uploads older than a day are deleted with their objects;
    /// attached ones stay.
    async fn unattached_uploads_are_collected(app) {
        let ana = app.register("ana@example.org").await;
        let lone = upload(&app, &ana, "lone.png", "image/png", &png(30, 30)).await.expect(201);
        let used = upload(&app, &ana, "used.png", "image/png", &png(30, 30)).await.expect(201);
        app.post("/api/v1/moments", Some(&ana.access_token),
            json!({"content": "x", "media_ids": [used["id"]]})).await.expect(201);
        let lone_row = app.store.media_by_id(lone["id"].as_i64().unwrap()).await.unwrap().unwrap();
        let media = &app.state.media;
        assert_eq!(media.collect_garbage(palaver_core::time::now()).await.unwrap(), 0, "nothing is a day old yet");
        let later = palaver_core::time::now() + chrono::Duration::hours(25);
        assert_eq!(media.collect_garbage(later).await.unwrap(), 1);
        assert!(app.store.media_by_id(lone_row.id).await.unwrap().is_none());
        assert!(media.storage().raw(&lone_row.storage_key).await.is_err(), "object deleted");
        assert!(media.storage().raw(lone_row.thumbnail_key.as_deref().unwrap()).await.is_err(), "thumbnail deleted");
        assert_eq!(fetch(&app, lone["url"].as_str().unwrap(), &[]).await.0, 404);
        assert_eq!(fetch(&app, used["url"].as_str().unwrap(), &[]).await.0, 200);
        // A collected id can no longer be attached.
        app.post("/api/v1/moments", Some(&ana.access_token),
            json!({"content": "x", "media_ids": [lone["id"]]})).await.expect_error(400, "validation_failed");
    }
}

api_test! {
    /// The server collects on its own schedule: with a short age limit, an
    /// unattached upload disappears, one sent in a message stays.
    async fn the_collector_runs_by_itself(app) {
        let app = app
            .restart_with(|c| {
                c.media_gc_after = Duration::from_secs(5);
                c.media_gc_interval = Duration::from_millis(200);
            })
            .await;
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        let sent = upload(&app, &ana, "sent.png", "image/png", &png(30, 30)).await.expect(201);
        app.post(&format!("/api/v1/chat/rooms/{room}/messages"), Some(&ana.access_token),
            json!({"message_type": "image", "media_id": sent["id"]})).await.expect(201);
        let lone = upload(&app, &ana, "lone.png", "image/png", &png(30, 30)).await.expect(201);
        let lone_id = lone["id"].as_i64().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while app.store.media_by_id(lone_id).await.unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "upload {lone_id} was never collected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(fetch(&app, lone["url"].as_str().unwrap(), &[]).await.0, 404);
        assert!(app.store.media_by_id(sent["id"].as_i64().unwrap()).await.unwrap().is_some());
        assert_eq!(fetch(&app, sent["url"].as_str().unwrap(), &[]).await.0, 200);
        app.stop().await;
    }
}

api_test! {
    /// Rotation: with a second key configured, old media stay readable and
    /// new uploads use the new key; `rotate-keys` re-encrypts everything
    /// under it (in batches), after which the old key can be removed.
    async fn key_rotation_reencrypts_media(app) {
        use crate::helpers::{TEST_KEY_1, TEST_KEY_2};
        use secrecy::SecretString;
        let store_dir = tempfile::tempdir().unwrap();
        let media_store = store_dir.path().display().to_string();
        let app = app.restart_with(|c| c.media_store = Some(media_store.clone())).await;
        let ana = app.register("ana@example.org").await;
        let doc = pdf(200_000, "rotate");
        let mut uploaded = Vec::new();
        for i in 0..3 {
            let body = upload(&app, &ana, &format!("doc{i}.pdf"), "application/pdf", &doc).await.expect(201);
            uploaded.push(body);
        }
        let img = upload(&app, &ana, "pic.png", "image/png", &png(400, 100)).await.expect(201);
        assert_eq!(app.store.media_key_counts().await.unwrap(), vec![(Some("test1".to_owned()), 4)]);
        let ben = app.register("ben@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        for i in 0..5 {
            say(&app, &ana, room, &format!("before rotation {i}")).await;
        }

        let both = format!("{TEST_KEY_1},{TEST_KEY_2}");
        let app = app.restart_with(|c| c.encryption_keys = Some(SecretString::from(both))).await;
        assert_eq!(fetch(&app, uploaded[0]["url"].as_str().unwrap(), &[]).await.2, doc, "old key still reads");
        let newer = upload(&app, &ana, "new.pdf", "application/pdf", &doc).await.expect(201);
        let counts = app.store.media_key_counts().await.unwrap();
        assert_eq!(counts, vec![(Some("test1".to_owned()), 4), (Some("test2".to_owned()), 1)]);

        say(&app, &ben, room, "after the new key").await;
        palaver_server::rotate::rotate_all(&app.state, 2).await.unwrap();
        assert_eq!(app.store.media_key_counts().await.unwrap(), vec![(Some("test2".to_owned()), 5)]);
        assert_eq!(app.store.message_key_counts().await.unwrap(), vec![(Some("test2".to_owned()), 6)]);
        // Old objects are gone: 3 documents, the image and its thumbnail, the new one.
        assert_eq!(all_bytes_under(store_dir.path()).len(), 6);

        let app = app.restart_with(|c| c.encryption_keys = Some(SecretString::from(TEST_KEY_2.to_owned()))).await;
        for body in uploaded.iter().chain([&newer]) {
            let (status, headers, bytes) = fetch(&app, body["url"].as_str().unwrap(), &[]).await;
            assert_eq!((status.as_u16(), bytes == doc), (200, true));
            assert!(headers["content-disposition"].to_str().unwrap().contains(".pdf"), "file name re-sealed too");
        }
        assert_eq!(fetch(&app, img["thumbnail_url"].as_str().unwrap(), &[]).await.0, 200);
        let (_, _, range) = fetch(&app, img["url"].as_str().unwrap(), &[("range", "bytes=0-7")]).await;
        assert_eq!(range, b"\x89PNG\r\n\x1a\n");
        let history = app.get(&format!("/api/v1/chat/rooms/{room}/messages"), &ben.access_token).await.expect(200);
        let texts: Vec<&str> = history["items"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
        assert!(texts.contains(&"before rotation 0") && texts.contains(&"after the new key"), "{texts:?}");
        app.stop().await;
    }
}

/// A private room of two users; its id.
async fn private_room(app: &TestApp, a: &TestUser, b: &TestUser) -> i64 {
    let body = app
        .post("/api/v1/chat/rooms", Some(&a.access_token), json!({"room_type": "private", "participant_ids": [b.id]}))
        .await;
    assert!(body.status.is_success(), "{}", body.body);
    body.body["id"].as_i64().unwrap()
}

async fn say(app: &TestApp, who: &TestUser, room: i64, text: &str) -> Value {
    app.post(
        &format!("/api/v1/chat/rooms/{room}/messages"),
        Some(&who.access_token),
        json!({"content": text, "message_type": "text"}),
    )
    .await
    .expect(201)
}

api_test! {
    /// Message bodies are sealed at rest: no trace of them in the database
    /// (SQLite files with their WAL, or the rows), while members read them;
    /// a body moved into another message does not open there.
    async fn message_bodies_are_encrypted_at_rest(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let room = private_room(&app, &ana, &ben).await;
        let marker = "OKAPI-MARKER-9b2e";
        let first = say(&app, &ana, room, &format!("the code is {marker}")).await;
        let second = say(&app, &ana, room, "second message").await;
        let edited = app.patch(&format!("/api/v1/chat/messages/{}", second["id"]), &ana.access_token,
            json!({"content": format!("edited {marker}")})).await.expect(200);
        assert_eq!(edited["content"], format!("edited {marker}"));
        let history = app.get(&format!("/api/v1/chat/rooms/{room}/messages"), &ben.access_token).await.expect(200);
        let contents: Vec<&str> = history["items"].as_array().unwrap().iter().filter_map(|m| m["content"].as_str()).collect();
        assert!(contents.contains(&format!("the code is {marker}").as_str()), "{history}");

        // Ben was away: the messages became a notification, stored too.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let body = app.get("/api/v1/notifications", &ben.access_token).await.expect(200);
            let found = body["items"].as_array().unwrap().iter().find(|n| n["notification_type"] == "message" && n["data"]["seq"] == second["seq"]).cloned();
            if let Some(n) = found {
                assert!(!n.to_string().contains(marker), "no plaintext in the notification: {n}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no message notification: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let bodies = app.store.bodies_to_reseal("no-such-key", 0, 100).await.unwrap();
        assert!(bodies.len() >= 2);
        for b in &bodies {
            assert_eq!(b.body_key_id.as_deref(), Some("test1"));
            assert!(!contains(&b.body, marker.as_bytes()) && !contains(&b.body, b"second"), "row {} holds plaintext", b.id);
        }
        // Nowhere in the database (files, or every table): not the body, not
        // the edit, not a preview. What is not sealed is found there: a
        // public moment's text, which shows the search can see plaintext.
        let public = "PUBLIC-MOMENT-MARKER-51c0";
        app.post("/api/v1/moments", Some(&ana.access_token), json!({"content": public, "visibility": "public"})).await.expect(201);
        assert!(!database_holds(&app, public).await.is_empty(), "the search finds unsealed text");
        assert_eq!(database_holds(&app, marker).await, Vec::<String>::new(), "the database holds the marker");
        assert_eq!(database_holds(&app, "second message").await, Vec::<String>::new());

        // Swap: the first message's ciphertext stored in the second's row.
        let a = bodies.iter().find(|b| b.id == first["id"].as_i64().unwrap()).unwrap();
        let b = bodies.iter().find(|b| b.id == second["id"].as_i64().unwrap()).unwrap();
        assert!(app.store.reseal_body(b.id, &b.body, &a.body, "test1").await.unwrap());
        app.get(&format!("/api/v1/chat/rooms/{room}/messages"), &ben.access_token).await.expect_error(500, "internal");
    }
}

api_test! {
    /// Media messages: only one's own, ready upload of the right kind;
    /// every member gets URLs signed for themselves, over REST and live on
    /// the socket; outsiders and members who left are refused; moderators
    /// read a reported message (and its media) through the moderation view.
    async fn chat_media_and_the_moderation_view(app) {
        let ana = app.register("ana@example.org").await;
        let ben = app.register("ben@example.org").await;
        let eve = app.register("eve@example.org").await;
        let modr = app.register("mod@example.org").await;
        app.store.set_role(modr.id, palaver_core::user::Role::Moderator, palaver_core::time::now()).await.unwrap();
        let group = app.post("/api/v1/chat/rooms", Some(&ana.access_token),
            json!({"room_type": "group", "participant_ids": [ben.id], "name": "study"})).await.expect(201);
        let room = group["id"].as_i64().unwrap();
        let photo = upload(&app, &ana, "p.png", "image/png", &png(64, 64)).await.expect(201);
        let voice = upload(&app, &ana, "v.webm", "audio/webm", &mp4(2000)).await.expect(201);
        let bens_photo = upload(&app, &ben, "b.png", "image/png", &png(8, 8)).await.expect(201);
        let send = |who: &TestUser, body: Value| {
            let path = format!("/api/v1/chat/rooms/{room}/messages");
            let token = who.access_token.clone();
            let app = app.clone();
            async move { app.post(&path, Some(&token), body).await }
        };
        // Wrong kind, someone else's upload, a missing one: refused.
        send(&ana, json!({"message_type": "video", "media_id": photo["id"]})).await.expect_error(400, "validation_failed");
        send(&ana, json!({"message_type": "image", "media_id": bens_photo["id"]})).await.expect_error(400, "validation_failed");
        send(&ana, json!({"message_type": "image", "media_id": 999999})).await.expect_error(400, "validation_failed");
        // A voice note in a video container is an audio message.
        send(&ana, json!({"message_type": "audio", "media_id": voice["id"]})).await.expect(201);

        let mut ws = crate::ws::Ws::connect(&app, "/ws", &ben.access_token).await;
        ws.subscribe(&format!("chat:{room}"), None).await;
        let mut legacy = crate::ws::Ws::connect(&app, &format!("/ws/chat/{room}/"), &ben.access_token).await;
        let sent = send(&ana, json!({"message_type": "image", "media_id": photo["id"], "content": "look"})).await.expect(201);
        assert!(sent["media"]["url"].as_str().unwrap().contains(&format!("viewer={}", ana.id)), "{sent}");
        let live = ws.event(&format!("chat:{room}"), "message").await;
        let live_url = live["data"]["media"]["url"].as_str().unwrap().to_owned();
        assert!(live_url.contains(&format!("viewer={}", ben.id)), "re-signed for Ben: {live}");
        assert_eq!(fetch(&app, &live_url, &[]).await.0, 200);
        assert_eq!(fetch(&app, live["data"]["media"]["thumbnail_url"].as_str().unwrap(), &[]).await.0, 200);
        // The original design's socket: `media_file` is Ben's URL.
        let frame = legacy.recv_where(|f| f["type"] == "chat_message" && f["id"] == sent["id"]).await;
        let media_file = frame["media_file"].as_str().unwrap();
        assert!(media_file.contains(&format!("viewer={}", ben.id)), "{frame}");
        assert_eq!(fetch(&app, media_file, &[]).await.0, 200);
        // Sending on that socket: `media_file` names Ben's own upload by the
        // url the upload returned; without a type it is a `file` message.
        legacy.send(json!({"type": "chat_message", "message": "mine", "message_type": "image",
            "media_file": bens_photo["url"]})).await;
        let mine = legacy.recv_where(|f| f["type"] == "chat_message" && f["content"] == "mine").await;
        assert_eq!(mine["message_type"], "image");
        assert!(mine["media_file"].as_str().unwrap().starts_with(&format!("/api/v1/media/{}/file?viewer={}", bens_photo["id"], ben.id)), "{mine}");
        assert_eq!(fetch(&app, mine["media_file"].as_str().unwrap(), &[]).await.2, png(8, 8));
        let native_mine = ws.event(&format!("chat:{room}"), "message").await;
        assert_eq!((native_mine["data"]["id"].clone(), native_mine["data"]["media"]["id"].clone()), (mine["id"].clone(), bens_photo["id"].clone()));
        legacy.send(json!({"type": "chat_message", "media_file": bens_photo["id"]})).await;
        let untyped = legacy.recv_where(|f| f["type"] == "chat_message" && f["id"] != mine["id"]).await;
        assert_eq!((untyped["message_type"].as_str(), untyped["content"].as_str()), (Some("file"), Some("")), "{untyped}");
        ws.event(&format!("chat:{room}"), "message").await;
        // Someone else's upload, or a name that is no upload: an error frame, nothing sent.
        legacy.send(json!({"type": "chat_message", "message": "theirs", "message_type": "image", "media_file": photo["url"]})).await;
        let refused = legacy.recv().await;
        assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("validation_failed")), "{refused}");
        legacy.send(json!({"type": "chat_message", "message": "x", "media_file": "cat.png"})).await;
        let refused = legacy.recv().await;
        assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("validation_failed")), "{refused}");

        let history = app.get(&format!("/api/v1/chat/rooms/{room}/messages"), &ben.access_token).await.expect(200);
        let item = history["items"].as_array().unwrap().iter().find(|m| m["id"] == sent["id"]).unwrap().clone();
        assert_eq!(item["media"]["kind"], "image");
        let bens_url = item["media"]["url"].as_str().unwrap().to_owned();
        assert!(bens_url.contains(&format!("viewer={}", ben.id)));
        assert_eq!(fetch(&app, &bens_url, &[]).await.0, 200);
        // An outsider with a URL signed for them: not a member.
        let eves = signer().url(photo["id"].as_i64().unwrap(), Variant::File, eve.id, now());
        assert_eq!(fetch(&app, &eves, &[]).await.0, 404);

        // Reported: the moderator reads it, Ben may not use the view.
        let report = app.post("/api/v1/reports", Some(&ben.access_token),
            json!({"report_type": "harassment", "reported_message": sent["id"]})).await.expect(201);
        let path = format!("/api/v1/moderation/reports/{}/message", report["id"]);
        app.get(&path, &ben.access_token).await.expect_error(403, "forbidden");
        let seen = app.get(&path, &modr.access_token).await.expect(200);
        assert_eq!(seen["content"], "look");
        let mod_url = seen["media"]["url"].as_str().unwrap();
        assert!(mod_url.contains(&format!("viewer={}", modr.id)));
        assert_eq!(fetch(&app, mod_url, &[]).await.0, 200, "moderators see reported media");
        // Nobody else outside the room reads it, and the moderator reads
        // only what was reported: not the room, not its other media.
        app.get(&path, &eve.access_token).await.expect_error(403, "forbidden");
        for who in [&modr, &eve] {
            app.get(&format!("/api/v1/chat/rooms/{room}/messages"), &who.access_token).await.expect_error(404, "not_found");
        }
        let mods_voice = signer().url(voice["id"].as_i64().unwrap(), Variant::File, modr.id, now());
        assert_eq!(fetch(&app, &mods_voice, &[]).await.0, 404, "an unreported voice note");

        // Ben leaves: his links stop working.
        app.delete(&format!("/api/v1/chat/rooms/{room}/participants/{}", ben.id), &ben.access_token).await.expect(204);
        assert_eq!(fetch(&app, &bens_url, &[]).await.0, 404);
    }
}
