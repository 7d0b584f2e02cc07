//! Where media bytes live, sealed: an `object_store` (local files by
//! default, S3-compatible, GCS or Azure by configuration), written and read
//! as streams so memory stays flat whatever the file size.
//!
//! Objects get random names (`ab/cd/abcd…`), never anything the client
//! chose. A sealed object is the chunked format of `palaver_crypto::file`;
//! an object of a row without a key id is the plaintext (encryption off).

use std::io;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt as _};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _};
use palaver_crypto::file::{CHUNK_LEN, FileOpener, FileSealer, HEADER_LEN, Layout, TAG_LEN};
use palaver_crypto::{CryptoError, Keyring};
use tokio::io::AsyncWriteExt as _;

/// Plaintext sealed or opened per trip to the blocking pool: 16 chunks
/// (1 MiB, about a millisecond of cipher work), so the async workers never
/// run the cipher themselves and the hand-off cost stays small.
const BATCH: usize = 16 * CHUNK_LEN;
/// Buffer of the object writer: parts of this size go to multipart uploads
/// (S3's minimum part is 5 MiB).
const WRITE_BUFFER: usize = 8 * 1024 * 1024;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Writing or reading failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// Decryption failed: the object was altered, swapped, or its key is gone.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// The setting is wrong.
    #[error("{0}")]
    Config(String),
    /// A blocking task died.
    #[error("background task failed: {0}")]
    Task(String),
}

impl From<tokio::task::JoinError> for StorageError {
    fn from(e: tokio::task::JoinError) -> Self {
        StorageError::Task(e.to_string())
    }
}

impl From<StorageError> for palaver_core::Error {
    fn from(e: StorageError) -> Self {
        palaver_core::Error::internal(format!("media storage: {e}"))
    }
}

/// The media object store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    description: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("store", &self.description).finish()
    }
}

impl Storage {
    /// Opens the store a setting names: empty for `<data dir>/media`, a
    /// path or `file:///path` for a local folder, `s3://bucket[/prefix]`,
    /// `gs://bucket[/prefix]` or `az://container[/prefix]` for the cloud
    /// stores, whose credentials and endpoints come from their usual
    /// environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub fn from_setting(setting: &str, data_dir: &FsPath) -> Result<Self, StorageError> {
        let setting = setting.trim();
        if setting.is_empty() {
            return Self::local(&data_dir.join("media"));
        }
        if let Some(path) = setting.strip_prefix("file://") {
            return Self::local(FsPath::new(path));
        }
        let Some((scheme, rest)) = setting.split_once("://") else {
            return Self::local(FsPath::new(setting));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let base = format!("{scheme}://{bucket}");
        let bad = |e: object_store::Error| StorageError::Config(format!("cannot configure {base}: {e}"));
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => {
                Arc::new(object_store::aws::AmazonS3Builder::from_env().with_url(&base).build().map_err(bad)?)
            }
            "gs" => {
                Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(&base).build().map_err(bad)?)
            }
            "az" | "azure" | "abfs" | "abfss" => {
                Arc::new(object_store::azure::MicrosoftAzureBuilder::from_env().with_url(&base).build().map_err(bad)?)
            }
            other => {
                return Err(StorageError::Config(format!(
                    "unknown media store scheme `{other}` (expected file, s3, gs or az)"
                )));
            }
        };
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> =
            if prefix.is_empty() { store } else { Arc::new(object_store::prefix::PrefixStore::new(store, prefix)) };
        Ok(Self { store, description: setting.to_owned() })
    }

    /// A local folder (created if missing).
    pub fn local(dir: &FsPath) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self { store: Arc::new(store), description: dir.display().to_string() })
    }

    /// A fresh random object name, fanned out over two folder levels.
    pub fn new_key() -> String {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        format!("{}/{}/{hex}", &hex[..2], &hex[2..4])
    }

    /// Starts writing an object; sealed when `sealer` is given.
    pub async fn writer(&self, key: &str, sealer: Option<FileSealer>) -> Result<SealedWriter, StorageError> {
        let mut writer =
            BufWriter::with_capacity(self.store.clone(), Path::from(key), WRITE_BUFFER).with_max_concurrency(2);
        if let Some(sealer) = &sealer {
            writer.write_all(sealer.header()).await?;
        }
        Ok(SealedWriter { writer, sealer, pending: Vec::new(), written: 0 })
    }

    /// Writes a whole object from memory (images, already bounded).
    pub async fn put(&self, key: &str, sealer: Option<FileSealer>, data: Vec<u8>) -> Result<u64, StorageError> {
        let mut writer = self.writer(key, sealer).await?;
        match writer.write(Bytes::from(data)).await {
            Ok(()) => writer.finish().await,
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    /// Deletes an object; a missing one is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The plaintext bytes `range` of an object holding `plain_len` bytes,
    /// as a stream. Sealed objects (`keyring` given) are opened with
    /// `context`; only the chunks overlapping `range` are read.
    pub async fn read(
        &self,
        key: &str,
        sealed: Option<(&Keyring, &[u8])>,
        plain_len: u64,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let path = Path::from(key);
        if range.start >= range.end {
            return Ok(futures_util::stream::empty().boxed());
        }
        let Some((keyring, context)) = sealed else {
            let got = self.store.get_opts(&path, ranged(range)).await?;
            return Ok(got.into_stream().map(|r| r.map_err(StorageError::from)).boxed());
        };
        let header = self.store.get_range(&path, 0..HEADER_LEN as u64).await?;
        let opener = Arc::new(keyring.file_opener(&header, context)?);
        let layout = Layout { plain_len };
        let first = layout.chunk_of(range.start);
        let last = layout.chunk_of(range.end - 1);
        let sealed_range = layout.sealed_range(first, last);
        let inner = self.store.get_opts(&path, ranged(sealed_range)).await?.into_stream();
        let state = OpenState {
            inner,
            buf: BytesMut::new(),
            next: first,
            last,
            layout,
            opener,
            skip: usize::try_from(range.start - first * CHUNK_LEN as u64).unwrap_or(0),
            remaining: range.end - range.start,
        };
        Ok(futures_util::stream::try_unfold(state, OpenState::step).boxed())
    }

    /// Reads a whole object into memory (thumbnails, and small objects in
    /// tests).
    pub async fn read_all(
        &self,
        key: &str,
        sealed: Option<(&Keyring, &[u8])>,
        plain_len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let mut stream = self.read(key, sealed, plain_len, 0..plain_len).await?;
        let mut out = Vec::with_capacity(usize::try_from(plain_len).unwrap_or(0));
        while let Some(part) = stream.next().await {
            out.extend_from_slice(&part?);
        }
        Ok(out)
    }

    /// The raw object (sealed bytes as stored), for tests and tools.
    pub async fn raw(&self, key: &str) -> Result<Bytes, StorageError> {
        Ok(self.store.get(&Path::from(key)).await?.bytes().await?)
    }

    /// Replaces an object with other bytes (tests that swap ciphertexts).
    pub async fn put_raw(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.store.put(&Path::from(key), data.into()).await?;
        Ok(())
    }
}

fn ranged(range: Range<u64>) -> GetOptions {
    GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() }
}

/// Writes an object as a stream, sealing it chunk by chunk.
pub struct SealedWriter {
    writer: BufWriter,
    sealer: Option<FileSealer>,
    /// Plaintext not sealed yet: always keeps the final chunk back, which is
    /// sealed with the last-chunk flag by [`SealedWriter::finish`].
    pending: Vec<u8>,
    written: u64,
}

impl std::fmt::Debug for SealedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedWriter").field("written", &self.written).finish_non_exhaustive()
    }
}

impl SealedWriter {
    /// Plaintext bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The key sealing this object, if sealed.
    pub fn key_id(&self) -> Option<&str> {
        self.sealer.as_ref().map(|s| s.key_id().as_str())
    }

    /// Appends plaintext.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.written += data.len() as u64;
        if self.sealer.is_none() {
            self.writer.write_all(&data).await?;
            return Ok(());
        }
        self.pending.extend_from_slice(&data);
        // Seal whole chunks, a batch at a time, keeping at least one byte
        // (so the final chunk is never sealed as an inner one).
        while self.pending.len() > BATCH {
            let take = ((self.pending.len() - 1) / CHUNK_LEN * CHUNK_LEN).min(BATCH);
            let rest = self.pending.split_off(take);
            let batch = std::mem::replace(&mut self.pending, rest);
            self.seal_and_write(batch, false).await?;
        }
        Ok(())
    }

    async fn seal_and_write(&mut self, plain: Vec<u8>, finish: bool) -> Result<(), StorageError> {
        let Some(mut sealer) = self.sealer.take() else {
            return Ok(());
        };
        let (sealer, out) = tokio::task::spawn_blocking(move || {
            let chunks: Vec<&[u8]> = if plain.is_empty() { vec![&[]] } else { plain.chunks(CHUNK_LEN).collect() };
            let mut out = Vec::with_capacity(plain.len() + chunks.len() * TAG_LEN);
            let count = chunks.len();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let mut buf = Vec::with_capacity(chunk.len() + TAG_LEN);
                buf.extend_from_slice(chunk);
                sealer.seal_chunk(&mut buf, finish && i + 1 == count)?;
                out.extend_from_slice(&buf);
            }
            Ok::<_, CryptoError>((sealer, out))
        })
        .await??;
        self.sealer = Some(sealer);
        self.writer.write_all(&out).await?;
        Ok(())
    }

    /// Seals what is left, completes the object, and returns the plaintext
    /// length.
    pub async fn finish(mut self) -> Result<u64, StorageError> {
        let result = async {
            if self.sealer.is_some() {
                let rest = std::mem::take(&mut self.pending);
                self.seal_and_write(rest, true).await?;
            }
            self.writer.shutdown().await?;
            Ok::<_, StorageError>(())
        }
        .await;
        match result {
            Ok(()) => Ok(self.written),
            Err(e) => {
                let _ = self.writer.abort().await;
                Err(e)
            }
        }
    }

    /// Abandons the object (a multipart upload is aborted; nothing was
    /// written under the final name).
    pub async fn abort(mut self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(error = %e, "could not abort a media upload");
        }
    }
}

/// State of a decrypting read.
struct OpenState {
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    buf: BytesMut,
    next: u64,
    last: u64,
    layout: Layout,
    opener: Arc<FileOpener>,
    /// Plaintext bytes to drop from the first chunk.
    skip: usize,
    /// Plaintext bytes still to yield.
    remaining: u64,
}

impl OpenState {
    /// Opens the next batch of chunks; `None` when the range is done.
    async fn step(mut self) -> Result<Option<(Bytes, Self)>, StorageError> {
        if self.remaining == 0 || self.next > self.last {
            return Ok(None);
        }
        // Collect up to a batch of whole sealed chunks.
        let mut sizes = Vec::new();
        let mut need = 0usize;
        let mut index = self.next;
        while index <= self.last && need < BATCH {
            let size = self.layout.chunk_plain_len(index) + TAG_LEN;
            sizes.push((index, size));
            need += size;
            index += 1;
        }
        while self.buf.len() < need {
            match self.inner.next().await {
                Some(part) => self.buf.extend_from_slice(&part?),
                None => return Err(StorageError::Crypto(CryptoError::Corrupt)),
            }
        }
        let sealed = self.buf.split_to(need).freeze();
        let opener = self.opener.clone();
        let layout = self.layout;
        let mut plain = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(need);
            let mut at = 0;
            for (index, size) in sizes {
                let mut chunk = sealed[at..at + size].to_vec();
                at += size;
                opener.open_chunk(index, layout.is_last(index), &mut chunk)?;
                out.extend_from_slice(&chunk);
            }
            Ok::<_, CryptoError>(out)
        })
        .await??;
        self.next = index;
        if self.skip > 0 {
            plain.drain(..self.skip.min(plain.len()));
            self.skip = 0;
        }
        let keep = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(plain.len());
        plain.truncate(keep);
        self.remaining -= keep as u64;
        Ok(Some((Bytes::from(plain), self)))
    }
}

impl Storage {
    /// A blocking `Read + Seek` view of an object's plaintext, for parsers
    /// that jump around (duration from headers). Use it on the blocking
    /// pool only: each miss fetches one chunk through the async store.
    pub async fn blocking_reader(
        &self,
        key: &str,
        sealed: Option<(&Keyring, &[u8])>,
        plain_len: u64,
    ) -> Result<BlockingReader, StorageError> {
        let path = Path::from(key);
        let opener = match sealed {
            Some((keyring, context)) => {
                let header = self.store.get_range(&path, 0..HEADER_LEN as u64).await?;
                Some(Arc::new(keyring.file_opener(&header, context)?))
            }
            None => None,
        };
        Ok(BlockingReader {
            store: self.store.clone(),
            path,
            opener,
            layout: Layout { plain_len },
            handle: tokio::runtime::Handle::current(),
            position: 0,
            cached: None,
        })
    }
}

/// See [`Storage::blocking_reader`].
pub struct BlockingReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    opener: Option<Arc<FileOpener>>,
    layout: Layout,
    handle: tokio::runtime::Handle,
    position: u64,
    cached: Option<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for BlockingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingReader").field("path", &self.path).field("position", &self.position).finish()
    }
}

impl BlockingReader {
    fn chunk(&mut self, index: u64) -> io::Result<&[u8]> {
        if self.cached.as_ref().map(|(i, _)| *i) != Some(index) {
            let range = match &self.opener {
                Some(_) => self.layout.sealed_range(index, index),
                None => {
                    let start = index * CHUNK_LEN as u64;
                    start..(start + CHUNK_LEN as u64).min(self.layout.plain_len)
                }
            };
            let bytes = self
                .handle
                .block_on(self.store.get_range(&self.path, range))
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut data = bytes.to_vec();
            if let Some(opener) = &self.opener {
                opener
                    .open_chunk(index, self.layout.is_last(index), &mut data)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            self.cached = Some((index, data));
        }
        Ok(self.cached.as_ref().map(|(_, d)| d.as_slice()).unwrap_or_default())
    }
}

impl io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.layout.plain_len || buf.is_empty() {
            return Ok(0);
        }
        let index = self.position / CHUNK_LEN as u64;
        let offset = usize::try_from(self.position % CHUNK_LEN as u64).unwrap_or(0);
        let chunk = self.chunk(index)?;
        let n = chunk.len().saturating_sub(offset).min(buf.len());
        buf[..n].copy_from_slice(&chunk[offset..offset + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl io::Seek for BlockingReader {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let target = match to {
            io::SeekFrom::Start(at) => Some(at),
            io::SeekFrom::End(delta) => self.layout.plain_len.checked_add_signed(delta),
            io::SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.position)
    }
}
