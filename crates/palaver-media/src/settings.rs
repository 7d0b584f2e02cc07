//! What the media pipeline is configured with.

use std::sync::Arc;
use std::time::Duration;

use palaver_crypto::{Keyring, MediaUrls};
use palaver_service::RateSpec;

use crate::sniff::Kind;

/// Largest upload of each kind, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Images (before re-encoding).
    pub image: u64,
    /// Audio.
    pub audio: u64,
    /// Video.
    pub video: u64,
    /// Documents and other files.
    pub file: u64,
}

impl Default for SizeLimits {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self { image: 16 * MIB, audio: 25 * MIB, video: 100 * MIB, file: 25 * MIB }
    }
}

impl SizeLimits {
    /// The limit for a kind.
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Image => self.image,
            Kind::Audio => self.audio,
            Kind::Video => self.video,
            Kind::File => self.file,
        }
    }

    /// The largest of the limits: no upload body may be longer (plus the
    /// multipart framing).
    pub fn max(&self) -> u64 {
        self.image.max(self.audio).max(self.video).max(self.file)
    }
}

/// Everything the media service needs to know.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Per-kind size limits.
    pub limits: SizeLimits,
    /// Images with more pixels than this are refused before decoding
    /// (decompression bombs); animations count every frame.
    pub max_image_pixels: u64,
    /// Longest side of thumbnails, in pixels.
    pub thumbnail_size: u32,
    /// Uploads not attached to a moment or message within this time are
    /// deleted.
    pub gc_after: Duration,
    /// A client that sends nothing for this long is dropped mid-upload.
    pub idle_timeout: Duration,
    /// Uploads per user.
    pub rate_uploads: RateSpec,
    /// The keys bytes are sealed with and opened with.
    pub keyring: Arc<Keyring>,
    /// Seal new uploads (off only in development, to measure the cost);
    /// sealed media stays readable either way.
    pub encrypt: bool,
    /// Signs and checks media URLs.
    pub urls: MediaUrls,
}

impl MediaSettings {
    /// Defaults around a signer and an optional keyring (tests, tools).
    pub fn new(urls: MediaUrls, keyring: Arc<Keyring>) -> Self {
        Self {
            limits: SizeLimits::default(),
            max_image_pixels: 50_000_000,
            thumbnail_size: 320,
            gc_after: Duration::from_secs(24 * 3600),
            idle_timeout: Duration::from_secs(30),
            rate_uploads: RateSpec { count: 100, per: Duration::from_secs(3600) },
            keyring,
            encrypt: true,
            urls,
        }
    }
}
