//! The media use cases: upload, describe, serve, clean up, re-encrypt.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, Stream, StreamExt as _};
use palaver_core::time::{Timestamp, now};
use palaver_core::{Error, Id, Result, UserId};
use palaver_crypto::{Keyring, Variant};
use palaver_service::{Principal, RateLimiter};
use palaver_store::{Media, MediaReseal, NewUpload, Store, UploadDone};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::image::{ImageError, ImageLimits};
use crate::range::{self, RangeAnswer};
use crate::settings::MediaSettings;
use crate::sniff::{self, Detected, Kind, SNIFF_LEN};
use crate::storage::{Storage, StorageError};

/// A media item as its viewer gets it: what it is, and URLs signed for
/// that viewer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MediaInfo {
    /// The media id (what moments and messages reference).
    pub id: Id,
    /// `image`, `audio`, `video` or `file`, decided from the bytes.
    pub kind: Kind,
    /// MIME type, decided from the bytes (images: after re-encoding).
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Pixel width (images).
    pub width: Option<i32>,
    /// Pixel height (images).
    pub height: Option<i32>,
    /// Playing time (audio and video, when the headers tell it).
    pub duration_ms: Option<i64>,
    /// The file name the uploader gave (sent as the download name).
    pub filename: Option<String>,
    /// Signed URL of the bytes, for this viewer, relative to the API origin.
    pub url: String,
    /// Signed URL of the thumbnail (images).
    pub thumbnail_url: Option<String>,
    /// Thumbnail width.
    pub thumbnail_width: Option<i32>,
    /// Thumbnail height.
    pub thumbnail_height: Option<i32>,
    /// When the URLs stop working (fetch this again for fresh ones).
    pub expires_at: DateTime<Utc>,
    /// Whether a moment or message uses it yet (unused uploads are deleted
    /// after a day).
    pub attached: bool,
    /// Upload time.
    pub created_at: DateTime<Utc>,
}

/// A request for media bytes through a signed URL.
#[derive(Debug, Clone)]
pub struct ServeRequest {
    /// The media id.
    pub id: Id,
    /// Which bytes.
    pub variant: Variant,
    /// The user the URL was issued to.
    pub viewer: UserId,
    /// The URL's expiry (unix seconds).
    pub expires: i64,
    /// The URL's signature.
    pub sig: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// The `If-Range` header.
    pub if_range: Option<String>,
    /// The `If-None-Match` header.
    pub if_none_match: Option<String>,
}

/// How the bytes are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeStatus {
    /// 200, the whole item.
    Full,
    /// 206, `start..end` of `total`.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Size of the whole item.
        total: u64,
    },
    /// 304: the client's copy (`If-None-Match`) is current.
    NotModified,
    /// 416: the range lies outside the item of `total` bytes.
    Unsatisfiable {
        /// Size of the whole item.
        total: u64,
    },
}

/// Media bytes on their way out, with what the HTTP layer needs for headers.
pub struct Served {
    /// Full, partial, not modified or unsatisfiable.
    pub status: ServeStatus,
    /// MIME type.
    pub content_type: String,
    /// Bytes in the body.
    pub length: u64,
    /// Strong validator: the bytes of a media variant never change.
    pub etag: String,
    /// Seconds the response may be cached (until the URL expires).
    pub max_age: u64,
    /// Documents are downloaded; pictures, sound and video shown inline.
    pub attachment: bool,
    /// The uploader's file name, for Content-Disposition.
    pub filename: Option<String>,
    /// The bytes (None for 304 and 416).
    pub body: Option<BoxStream<'static, io::Result<Bytes>>>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").field("status", &self.status).field("length", &self.length).finish_non_exhaustive()
    }
}

/// Progress of a re-encryption pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealProgress {
    /// Items re-encrypted under the active key.
    pub resealed: u64,
    /// Items that changed or vanished meanwhile (their new copy was dropped).
    pub skipped: u64,
    /// The last id looked at: where the next batch continues.
    pub last_id: Option<Id>,
}

/// The media use cases.
pub struct MediaService {
    store: Arc<dyn Store>,
    storage: Storage,
    settings: MediaSettings,
    limiter: Arc<dyn RateLimiter>,
    /// Image decoding holds the whole picture in memory: at most this many
    /// at once.
    image_slots: Semaphore,
}

impl std::fmt::Debug for MediaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaService").field("storage", &self.storage).finish_non_exhaustive()
    }
}

/// Bound to every sealed object: which media item and which of its bytes.
fn object_context(id: Id, variant: Variant) -> Vec<u8> {
    format!("palaver media {id} {}", variant.as_str()).into_bytes()
}

/// Bound to a sealed file name.
fn filename_context(id: Id) -> Vec<u8> {
    format!("palaver media {id} filename").into_bytes()
}

fn human(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) { format!("{} MiB", bytes / MIB) } else { format!("{bytes} bytes") }
}

/// The last path component, without control characters, at most 200
/// characters; None when nothing is left.
fn clean_filename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let cleaned = cleaned.trim().to_owned();
    (!cleaned.is_empty() && cleaned != "." && cleaned != "..").then_some(cleaned)
}

impl MediaService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        storage: Storage,
        settings: MediaSettings,
        limiter: Arc<dyn RateLimiter>,
    ) -> Self {
        let slots = std::thread::available_parallelism().map(usize::from).unwrap_or(2).max(1);
        Self { store, storage, settings, limiter, image_slots: Semaphore::new(slots) }
    }

    /// The object store (tests and tools look at what is stored).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The settings in force.
    pub fn settings(&self) -> &MediaSettings {
        &self.settings
    }

    fn keyring(&self) -> &Keyring {
        &self.settings.keyring
    }

    /// Stores an upload. `body` is the file's bytes as they arrive; they
    /// are checked and sealed on the way to storage, never held whole in
    /// memory (images excepted: decoding needs the whole picture, and
    /// images are the smallest kind). The type comes from the bytes.
    pub async fn upload<S>(&self, who: &Principal, filename: Option<&str>, body: S) -> Result<MediaInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send + Unpin,
    {
        self.limiter.check(&format!("uploads:user:{}", who.id()), self.settings.rate_uploads).await?;
        let mut body = Body { inner: body, idle: self.settings.idle_timeout, finished: false };
        let mut head = BytesMut::new();
        while head.len() < SNIFF_LEN {
            match body.next().await? {
                Some(part) => head.extend_from_slice(&part),
                None => break,
            }
        }
        if head.is_empty() {
            return Err(Error::invalid("file", "is empty"));
        }
        let detected = sniff::detect(&head[..head.len().min(SNIFF_LEN)]).map_err(|found| {
            Error::UnsupportedMediaType(format!(
                "files of this type ({found}) are not accepted; images (JPEG, PNG, GIF, WebP), audio, video, \
                 PDF, Office documents, zip archives and plain text are"
            ))
        })?;
        let limit = self.settings.limits.of(detected.kind);
        if head.len() as u64 > limit {
            return Err(too_large(detected.kind, limit));
        }
        let filename = filename.and_then(clean_filename);
        let media = match detected.kind {
            Kind::Image => self.upload_image(who, detected, filename, head, body, limit).await?,
            _ => self.upload_stream(who, detected, filename, head.freeze(), body, limit).await?,
        };
        tracing::info!(media_id = media.id, kind = %media.kind, size = media.size_bytes, "media uploaded");
        Ok(self.describe(&media, who.id()))
    }

    async fn upload_image<S>(
        &self,
        who: &Principal,
        detected: Detected,
        filename: Option<String>,
        head: BytesMut,
        mut body: Body<S>,
        limit: u64,
    ) -> Result<Media>
    where
        S: Stream<Item = Result<Bytes>> + Send + Unpin,
    {
        let mut data = head.to_vec();
        while let Some(part) = body.next().await? {
            if (data.len() + part.len()) as u64 > limit {
                return Err(too_large(Kind::Image, limit));
            }
            data.extend_from_slice(&part);
        }
        let limits =
            ImageLimits { max_pixels: self.settings.max_image_pixels, thumbnail_size: self.settings.thumbnail_size };
        let processed = {
            let _slot = self.image_slots.acquire().await.map_err(Error::internal)?;
            let content_type = detected.content_type;
            tokio::task::spawn_blocking(move || crate::image::process(&data, content_type, limits))
                .await
                .map_err(Error::internal)?
                .map_err(|e| match e {
                    ImageError::TooManyPixels { .. } | ImageError::Undecodable(_) => {
                        Error::Unprocessable(e.to_string())
                    }
                })?
        };
        let storage_key = Storage::new_key();
        let thumbnail_key = Storage::new_key();
        let id = self.begin(who, Kind::Image, processed.content_type, &storage_key).await?;
        let stored = async {
            let len = self
                .storage
                .put(&storage_key, self.sealer(id, Variant::File), processed.bytes)
                .await
                .map_err(Error::from)?;
            let thumb_len = self
                .storage
                .put(&thumbnail_key, self.sealer(id, Variant::Thumbnail), processed.thumbnail)
                .await
                .map_err(Error::from)?;
            let done = UploadDone {
                size_bytes: i64::try_from(len).unwrap_or(i64::MAX),
                width: i32::try_from(processed.width).ok(),
                height: i32::try_from(processed.height).ok(),
                duration_ms: None,
                thumbnail_key: Some(thumbnail_key.clone()),
                thumbnail_width: i32::try_from(processed.thumbnail_width).ok(),
                thumbnail_height: i32::try_from(processed.thumbnail_height).ok(),
                thumbnail_size_bytes: i64::try_from(thumb_len).ok(),
                filename: self.seal_filename(id, filename.as_deref())?,
            };
            Ok::<_, Error>(self.store.finish_upload(id, &done, now()).await?)
        }
        .await;
        match stored {
            Ok(media) => Ok(media),
            Err(e) => {
                self.discard(id, &[&storage_key, &thumbnail_key]).await;
                Err(e)
            }
        }
    }

    async fn upload_stream<S>(
        &self,
        who: &Principal,
        detected: Detected,
        filename: Option<String>,
        head: Bytes,
        mut body: Body<S>,
        limit: u64,
    ) -> Result<Media>
    where
        S: Stream<Item = Result<Bytes>> + Send + Unpin,
    {
        let storage_key = Storage::new_key();
        let id = self.begin(who, detected.kind, detected.content_type, &storage_key).await?;
        let stored = async {
            let mut writer =
                self.storage.writer(&storage_key, self.sealer(id, Variant::File)).await.map_err(Error::from)?;
            let written = async {
                writer.write(head).await.map_err(Error::from)?;
                while let Some(part) = body.next().await? {
                    if writer.written() + part.len() as u64 > limit {
                        return Err(too_large(detected.kind, limit));
                    }
                    writer.write(part).await.map_err(Error::from)?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = written {
                writer.abort().await;
                return Err(e);
            }
            let size = writer.finish().await.map_err(Error::from)?;
            let duration_ms = match detected.kind {
                Kind::Audio | Kind::Video => self.read_duration(id, &storage_key, size).await,
                _ => None,
            };
            let done = UploadDone {
                size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
                duration_ms,
                filename: self.seal_filename(id, filename.as_deref())?,
                ..UploadDone::default()
            };
            Ok::<_, Error>(self.store.finish_upload(id, &done, now()).await?)
        }
        .await;
        match stored {
            Ok(media) => Ok(media),
            Err(e) => {
                self.discard(id, &[&storage_key]).await;
                Err(e)
            }
        }
    }

    async fn begin(&self, who: &Principal, kind: Kind, content_type: &str, storage_key: &str) -> Result<Id> {
        let upload = NewUpload {
            owner_id: who.id(),
            kind: kind.as_str().to_owned(),
            content_type: content_type.to_owned(),
            storage_key: storage_key.to_owned(),
            key_id: self.settings.encrypt.then(|| self.keyring().active().as_str().to_owned()),
            now: now(),
        };
        Ok(self.store.begin_upload(&upload).await?)
    }

    fn sealer(&self, id: Id, variant: Variant) -> Option<palaver_crypto::file::FileSealer> {
        self.settings.encrypt.then(|| self.keyring().file_sealer(&object_context(id, variant)))
    }

    fn seal_filename(&self, id: Id, filename: Option<&str>) -> Result<Option<Vec<u8>>> {
        let Some(name) = filename else { return Ok(None) };
        if !self.settings.encrypt {
            return Ok(Some(name.as_bytes().to_vec()));
        }
        let sealed = self.keyring().seal(&filename_context(id), name.as_bytes()).map_err(Error::internal)?;
        Ok(Some(sealed.bytes))
    }

    fn open_filename(&self, media: &Media) -> Option<String> {
        let bytes = media.filename.as_deref()?;
        let plain = match &media.key_id {
            None => bytes.to_vec(),
            Some(_) => match self.keyring().open(&filename_context(media.id), bytes) {
                Ok(plain) => plain,
                Err(e) => {
                    tracing::warn!(media_id = media.id, error = %e, "cannot open a media file name");
                    return None;
                }
            },
        };
        String::from_utf8(plain).ok()
    }

    /// The sealing of a stored object, for reading it.
    fn sealed<'a>(&'a self, media: &Media, context: &'a [u8]) -> Option<(&'a Keyring, &'a [u8])> {
        media.key_id.as_ref().map(|_| (self.keyring(), context))
    }

    async fn read_duration(&self, id: Id, key: &str, size: u64) -> Option<i64> {
        let context = object_context(id, Variant::File);
        let sealed = self.settings.encrypt.then(|| (self.keyring(), context.as_slice()));
        let reader = match self.storage.blocking_reader(key, sealed, size).await {
            Ok(reader) => reader,
            Err(e) => {
                tracing::warn!(media_id = id, error = %e, "cannot read back an upload for its duration");
                return None;
            }
        };
        tokio::task::spawn_blocking(move || crate::duration::duration_ms(reader)).await.ok().flatten()
    }

    /// Deletes a failed upload's objects and row.
    async fn discard(&self, id: Id, keys: &[&str]) {
        for key in keys {
            if let Err(e) = self.storage.delete(key).await {
                tracing::warn!(media_id = id, error = %e, "cannot delete the object of a failed upload");
            }
        }
        if let Err(e) = self.store.delete_media(id).await {
            tracing::warn!(media_id = id, error = %e, "cannot delete the row of a failed upload");
        }
    }

    /// What `viewer` gets to know about a media item (URLs signed for them).
    pub fn describe(&self, media: &Media, viewer: UserId) -> MediaInfo {
        let at = Utc::now().timestamp();
        let urls = &self.settings.urls;
        MediaInfo {
            id: media.id,
            kind: Kind::parse(&media.kind).unwrap_or(Kind::File),
            content_type: media.content_type.clone(),
            size: media.size_bytes,
            width: media.width,
            height: media.height,
            duration_ms: media.duration_ms,
            filename: self.open_filename(media),
            url: urls.url(media.id, Variant::File, viewer, at),
            thumbnail_url: media.thumbnail_key.as_ref().map(|_| urls.url(media.id, Variant::Thumbnail, viewer, at)),
            thumbnail_width: media.thumbnail_width,
            thumbnail_height: media.thumbnail_height,
            expires_at: DateTime::from_timestamp(urls.expiry(at), 0).unwrap_or_default(),
            attached: media.attached_at.is_some(),
            created_at: media.created_at,
        }
    }

    /// A media item `who` may see, with fresh URLs; 404 otherwise.
    pub async fn info(&self, who: &Principal, id: Id) -> Result<MediaInfo> {
        let media = self.visible(who.id(), id).await?;
        Ok(self.describe(&media, who.id()))
    }

    async fn visible(&self, viewer: UserId, id: Id) -> Result<Media> {
        let not_found = || Error::not_found("media", id);
        if !self.store.media_visible_to(viewer, id).await? {
            return Err(not_found());
        }
        self.store.media_by_id(id).await?.filter(|m| m.ready_at.is_some()).ok_or_else(not_found)
    }

    /// Answers a signed URL: checks the signature and expiry, that the
    /// viewer it was issued to may (still) see the item, then streams the
    /// asked range, decrypting only the chunks that hold it.
    pub async fn serve(&self, req: ServeRequest) -> Result<Served> {
        let at = Utc::now().timestamp();
        self.settings
            .urls
            .verify(req.id, req.variant, req.viewer, req.expires, &req.sig, at)
            .map_err(|e| Error::Forbidden(e.to_string()))?;
        match self.store.user_by_id(req.viewer).await? {
            Some(user) if !user.is_suspended => {}
            _ => return Err(Error::Forbidden("the media link's viewer cannot see media".into())),
        }
        let media = self.visible(req.viewer, req.id).await?;
        let (key, len) = match req.variant {
            Variant::File => (media.storage_key.clone(), media.size_bytes),
            Variant::Thumbnail => match (&media.thumbnail_key, media.thumbnail_size_bytes) {
                (Some(key), Some(len)) => (key.clone(), len),
                _ => return Err(Error::NotFound(format!("media {} has no thumbnail", media.id))),
            },
        };
        let total = u64::try_from(len).unwrap_or(0);
        let etag = format!("\"m{}-{}\"", media.id, req.variant.as_str());
        let content_type = match req.variant {
            Variant::File if media.content_type == "text/plain" => "text/plain; charset=utf-8".to_owned(),
            Variant::File => media.content_type.clone(),
            Variant::Thumbnail => "image/jpeg".to_owned(),
        };
        let mut served = Served {
            status: ServeStatus::Full,
            content_type,
            length: 0,
            etag: etag.clone(),
            max_age: u64::try_from(req.expires - at).unwrap_or(0),
            attachment: media.kind == "file",
            filename: self.open_filename(&media),
            body: None,
        };
        if req.if_none_match.as_deref().is_some_and(|v| range::etag_matches(v, &etag)) {
            served.status = ServeStatus::NotModified;
            return Ok(served);
        }
        let honour_range = req.if_range.as_deref().is_none_or(|v| v.trim() == etag);
        let range: Range<u64> = match req.range.as_deref().filter(|_| honour_range).map(|r| range::parse(r, total)) {
            None | Some(RangeAnswer::Whole) => 0..total,
            Some(RangeAnswer::Part(r)) => {
                served.status = ServeStatus::Partial { start: r.start, end: r.end, total };
                r
            }
            Some(RangeAnswer::Unsatisfiable) => {
                served.status = ServeStatus::Unsatisfiable { total };
                return Ok(served);
            }
        };
        let context = object_context(media.id, req.variant);
        let mut stream = self.storage.read(&key, self.sealed(&media, &context), total, range.clone()).await?;
        // The first batch is opened before answering, so an object that does
        // not authenticate (altered, swapped, key gone) is a 500, not a 200
        // with a cut body.
        let first = match stream.next().await {
            Some(Ok(first)) => Some(first),
            Some(Err(e)) => return Err(Error::internal(format!("media {}: {e}", media.id))),
            None => None,
        };
        let stream = futures_util::stream::iter(first.map(Ok)).chain(stream);
        let media_id = media.id;
        served.length = range.end - range.start;
        served.body = Some(
            stream
                .map(move |part| {
                    part.map_err(|e| {
                        tracing::error!(media_id, error = %e, "media read failed");
                        io::Error::other(e.to_string())
                    })
                })
                .boxed(),
        );
        Ok(served)
    }

    /// Deletes uploads nobody attached within `gc_after` of `now` (and
    /// uploads abandoned half-way), objects and rows. Returns how many.
    pub async fn collect_garbage(&self, at: Timestamp) -> Result<u64> {
        let before = at - chrono::Duration::from_std(self.settings.gc_after).map_err(Error::internal)?;
        let mut removed = 0;
        loop {
            let stale = self.store.stale_media(before, 100).await?;
            let mut progressed = false;
            for media in stale {
                // The row goes first, and only if still unattached: a
                // moment posted meanwhile keeps its media.
                if !self.store.delete_stale_media(media.id).await? {
                    continue;
                }
                progressed = true;
                removed += 1;
                for key in std::iter::once(&media.storage_key).chain(media.thumbnail_key.as_ref()) {
                    if let Err(e) = self.storage.delete(key).await {
                        tracing::warn!(media_id = media.id, error = %e, "cannot delete a collected media object");
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "collected unattached media");
        }
        Ok(removed)
    }

    /// Runs [`MediaService::collect_garbage`] every `every` until shutdown.
    pub fn spawn_collector(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = service.collect_garbage(now()).await {
                            tracing::warn!(error = %e, "media clean-up failed; will retry");
                        }
                    }
                    () = shutdown.cancelled() => break,
                }
            }
        });
    }

    /// Re-encrypts up to `limit` media items with id above `after` that are
    /// not sealed with the active key: new objects under new names, the row
    /// switched only if unchanged meanwhile, then the old objects deleted.
    /// Safe to run while serving, and to stop and resume at any point.
    pub async fn reseal_batch(&self, after: Id, limit: i64) -> Result<ResealProgress> {
        let active = self.keyring().active().as_str().to_owned();
        let mut progress = ResealProgress::default();
        for media in self.store.media_to_reseal(&active, after, limit).await? {
            progress.last_id = Some(media.id);
            if self.reseal_one(&media, &active).await? {
                progress.resealed += 1;
            } else {
                progress.skipped += 1;
            }
        }
        Ok(progress)
    }

    async fn reseal_one(&self, media: &Media, active: &str) -> Result<bool> {
        let keyring = self.keyring();
        let new_key = Storage::new_key();
        let new_thumb = media.thumbnail_key.as_ref().map(|_| Storage::new_key());
        let copied = async {
            let context = object_context(media.id, Variant::File);
            let len = u64::try_from(media.size_bytes).unwrap_or(0);
            let mut source = self.storage.read(&media.storage_key, self.sealed(media, &context), len, 0..len).await?;
            let mut writer = self.storage.writer(&new_key, Some(keyring.file_sealer(&context))).await?;
            while let Some(part) = source.next().await {
                match part {
                    Ok(part) => writer.write(part).await?,
                    Err(e) => {
                        writer.abort().await;
                        return Err(e);
                    }
                }
            }
            writer.finish().await?;
            if let (Some(old), Some(new), Some(len)) = (&media.thumbnail_key, &new_thumb, media.thumbnail_size_bytes) {
                let context = object_context(media.id, Variant::Thumbnail);
                let len = u64::try_from(len).unwrap_or(0);
                let bytes = self.storage.read_all(old, self.sealed(media, &context), len).await?;
                self.storage.put(new, Some(keyring.file_sealer(&context)), bytes).await?;
            }
            Ok::<_, StorageError>(())
        }
        .await;
        let new_objects: Vec<&str> = std::iter::once(new_key.as_str()).chain(new_thumb.as_deref()).collect();
        if let Err(e) = copied {
            self.delete_objects(media.id, &new_objects).await;
            return Err(e.into());
        }
        let filename = match self.open_filename(media) {
            Some(name) => {
                Some(keyring.seal(&filename_context(media.id), name.as_bytes()).map_err(Error::internal)?.bytes)
            }
            None => None,
        };
        let reseal = MediaReseal {
            id: media.id,
            old_storage_key: media.storage_key.clone(),
            storage_key: new_key.clone(),
            thumbnail_key: new_thumb.clone(),
            filename,
            key_id: active.to_owned(),
        };
        if self.store.reseal_media(&reseal).await? {
            let old: Vec<&str> =
                std::iter::once(media.storage_key.as_str()).chain(media.thumbnail_key.as_deref()).collect();
            self.delete_objects(media.id, &old).await;
            Ok(true)
        } else {
            self.delete_objects(media.id, &new_objects).await;
            Ok(false)
        }
    }

    async fn delete_objects(&self, id: Id, keys: &[&str]) {
        for key in keys {
            if let Err(e) = self.storage.delete(key).await {
                tracing::warn!(media_id = id, error = %e, "cannot delete a media object");
            }
        }
    }
}

fn too_large(kind: Kind, limit: u64) -> Error {
    Error::PayloadTooLarge(format!("{} uploads are limited to {}", kind.as_str(), human(limit)))
}

/// The upload body with an idle timeout per part; once it ended it stays
/// ended (the inner stream is not polled again).
struct Body<S> {
    inner: S,
    idle: Duration,
    finished: bool,
}

impl<S> Body<S>
where
    S: Stream<Item = Result<Bytes>> + Send + Unpin,
{
    async fn next(&mut self) -> Result<Option<Bytes>> {
        if self.finished {
            return Ok(None);
        }
        match tokio::time::timeout(self.idle, self.inner.next()).await {
            Ok(Some(Ok(part))) => Ok(Some(part)),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => {
                self.finished = true;
                Ok(None)
            }
            Err(_) => {
                Err(Error::BadRequest(format!("the upload stalled: nothing arrived for {} s", self.idle.as_secs())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_controls() {
        assert_eq!(clean_filename("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_filename("C:\\Users\\ana\\foto.jpg").as_deref(), Some("foto.jpg"));
        assert_eq!(clean_filename("a\u{0}b\nc.txt").as_deref(), Some("abc.txt"));
        assert_eq!(clean_filename("  "), None);
        assert_eq!(clean_filename(".."), None);
        assert_eq!(clean_filename(&"x".repeat(500)).map(|n| n.len()), Some(200));
    }
}
