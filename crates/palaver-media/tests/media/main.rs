//! The media service and storage without HTTP: sealed objects on a real
//! local store, ranges, the blocking reader, and encryption switched off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Seek as _, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use palaver_core::time::now;
use palaver_core::user::Role;
use palaver_crypto::{KeyId, Keyring, MediaUrls, Variant, generate_key_spec};
use palaver_media::{MediaService, MediaSettings, ServeRequest, ServeStatus, Storage};
use palaver_service::{MemoryRateLimiter, Principal};
use palaver_store::{NewUserRecord, Store};

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::parse(&generate_key_spec(&KeyId::new("k1").unwrap())).unwrap())
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn collect(
    mut s: futures_util::stream::BoxStream<'static, Result<Bytes, palaver_media::StorageError>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(part) = s.next().await {
        out.extend_from_slice(&part.unwrap());
    }
    out
}

#[tokio::test]
async fn sealed_objects_read_back_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let keys = keyring();
    let content = data(1_500_000);
    let mut writer = storage.writer("a/b/obj", Some(keys.file_sealer(b"ctx"))).await.unwrap();
    // Odd-sized writes, as a network delivers them.
    for part in content.chunks(70_001) {
        writer.write(Bytes::copy_from_slice(part)).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), content.len() as u64);
    let raw = storage.raw("a/b/obj").await.unwrap();
    assert_eq!(raw.len() as u64, palaver_crypto::file::Layout { plain_len: content.len() as u64 }.sealed_len());

    let len = content.len() as u64;
    for range in [0..len, 0..1, 65_535..65_537, 1_000_000..1_400_000, len - 3..len] {
        let got = collect(storage.read("a/b/obj", Some((&keys, b"ctx")), len, range.clone()).await.unwrap()).await;
        assert_eq!(got, &content[range.start as usize..range.end as usize], "{range:?}");
    }
    // Another context does not open it.
    let read = storage.read("a/b/obj", Some((&keys, b"other")), len, 0..10).await.unwrap();
    let first = read.into_future().await.0.unwrap();
    assert!(first.is_err());

    // The blocking reader seeks and reads across chunks.
    let mut reader = storage.blocking_reader("a/b/obj", Some((&keys, b"ctx")), len).await.unwrap();
    let expected = content.clone();
    tokio::task::spawn_blocking(move || {
        reader.seek(SeekFrom::Start(131_000)).unwrap();
        let mut buf = vec![0u8; 5000];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(buf, &expected[131_000..136_000]);
        reader.seek(SeekFrom::End(-10)).unwrap();
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &expected[expected.len() - 10..]);
    })
    .await
    .unwrap();
}

async fn service(
    encrypt: bool,
    dir: &std::path::Path,
) -> (MediaService, Principal, Arc<dyn Store>, palaver_store::testing::TestDb) {
    let db = palaver_store::testing::sqlite().await.unwrap();
    let store = db.store.clone();
    let user = store
        .create_user(&NewUserRecord {
            email: "ana@example.org".into(),
            password_hash: "x".into(),
            display_name: "Ana".into(),
            native_languages: vec![],
            learning_languages: vec![],
            role: Role::User,
            now: now(),
        })
        .await
        .unwrap();
    let urls = MediaUrls::new(b"secret", Duration::from_secs(3600));
    let mut settings = MediaSettings::new(urls, keyring());
    settings.encrypt = encrypt;
    settings.idle_timeout = Duration::from_secs(1);
    let media =
        MediaService::new(store.clone(), Storage::local(dir).unwrap(), settings, Arc::new(MemoryRateLimiter::new()));
    (media, Principal { user, session_id: "s".into() }, store, db)
}

fn body(parts: Vec<&'static [u8]>) -> impl futures_util::Stream<Item = palaver_core::Result<Bytes>> + Send + Unpin {
    futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
}

#[tokio::test]
async fn with_encryption_off_new_uploads_are_plaintext_and_old_ones_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (media, ana, store, db) = service(false, dir.path()).await;
    let info = media.upload(&ana, Some("notes.txt"), body(vec![b"plain ", b"words\n"])).await.unwrap();
    let row = store.media_by_id(info.id).await.unwrap().unwrap();
    assert_eq!(row.key_id, None);
    assert_eq!(row.filename.as_deref(), Some(&b"notes.txt"[..]));
    assert_eq!(&media.storage().raw(&row.storage_key).await.unwrap()[..], b"plain words\n");
    assert_eq!(info.content_type, "text/plain");

    // Served through a signed URL, with the first batch opened before the answer.
    let url = info.url.clone();
    let query: std::collections::HashMap<_, _> =
        url.split_once('?').unwrap().1.split('&').filter_map(|kv| kv.split_once('=')).collect();
    let served = media
        .serve(ServeRequest {
            id: info.id,
            variant: Variant::File,
            viewer: ana.id(),
            expires: query["expires"].parse().unwrap(),
            sig: query["sig"].to_owned(),
            range: Some("bytes=6-".into()),
            if_range: None,
            if_none_match: None,
        })
        .await
        .unwrap();
    assert_eq!(served.status, ServeStatus::Partial { start: 6, end: 12, total: 12 });
    let mut bytes = Vec::new();
    let mut stream = served.body.unwrap();
    while let Some(part) = stream.next().await {
        bytes.extend_from_slice(&part.unwrap());
    }
    assert_eq!(bytes, b"words\n");

    // Re-encryption seals it.
    let progress = media.reseal_batch(0, 10).await.unwrap();
    assert_eq!(progress.resealed, 1);
    let row = store.media_by_id(info.id).await.unwrap().unwrap();
    assert_eq!(row.key_id.as_deref(), Some("k1"));
    assert!(!String::from_utf8_lossy(&media.storage().raw(&row.storage_key).await.unwrap()).contains("words"));
    assert_eq!(media.info(&ana, info.id).await.unwrap().filename.as_deref(), Some("notes.txt"));
    db.cleanup().await;
}

#[tokio::test]
async fn empty_and_stalled_uploads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (media, ana, store, db) = service(true, dir.path()).await;
    let err = media.upload(&ana, None, body(vec![])).await.unwrap_err();
    assert!(matches!(err, palaver_core::Error::Validation(_)), "{err:?}");
    let stalled =
        futures_util::stream::iter([Ok(Bytes::from_static(b"%PDF-1.7\n"))]).chain(futures_util::stream::pending());
    let err = tokio::time::timeout(Duration::from_secs(60), media.upload(&ana, None, Box::pin(stalled)))
        .await
        .expect("the idle timeout ends the upload")
        .unwrap_err();
    assert!(err.to_string().contains("stalled"), "{err}");
    assert!(store.media_key_counts().await.unwrap().is_empty(), "nothing kept");
    db.cleanup().await;
}
