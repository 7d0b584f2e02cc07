//! Signed, expiring media URLs.
//!
//! Media bytes are fetched by browsers and players (`<img src>`, `<video>`)
//! that cannot send an `Authorization` header, so the URL itself carries the
//! proof: `…/media/{id}/{variant}?viewer={user}&expires={unix}&sig={hmac}`,
//! where the HMAC-SHA256 covers the media id, the variant, the viewer and
//! the expiry. The server that serves it checks the signature, the expiry,
//! and that the viewer may still see what the media belongs to; a leaked URL
//! names the user it was issued to and stops working when it expires or when
//! that user loses access.
//!
//! Expiry times are rounded up to a quarter of the lifetime, so the same
//! viewer gets the same URL for a while and browsers can cache the bytes.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Which bytes of a media item a URL serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The stored file (re-encoded for images).
    File,
    /// The image thumbnail.
    Thumbnail,
}

impl Variant {
    /// The path segment and signed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::File => "file",
            Variant::Thumbnail => "thumbnail",
        }
    }
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignedUrlError {
    /// The signature does not match (tampered, or made with another secret).
    #[error("the media link's signature is not valid")]
    BadSignature,
    /// The expiry has passed.
    #[error("the media link has expired")]
    Expired,
}

/// Makes and checks signed media URLs.
#[derive(Clone)]
pub struct MediaUrls {
    key: [u8; 32],
    ttl: Duration,
}

impl std::fmt::Debug for MediaUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaUrls").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Path under which media is served.
pub const MEDIA_PATH: &str = "/api/v1/media";

impl MediaUrls {
    /// A signer whose key is derived from `secret` (the server's token
    /// secret, shared by every node) for this purpose only, so a media
    /// signature can never pass as anything else. URLs live at least `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut mac = hmac_with(secret);
        mac.update(b"palaver media url signing key v1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Self { key, ttl: ttl.max(Duration::from_secs(4)) }
    }

    /// The lifetime URLs get.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The expiry a URL made at `now` (unix seconds) gets: at least `ttl`
    /// away, rounded up to a quarter of `ttl`.
    pub fn expiry(&self, now: i64) -> i64 {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 4);
        let step = (ttl / 4).max(1);
        (now.saturating_add(ttl) / step + 1).saturating_mul(step)
    }

    /// The relative URL that serves `variant` of media `media_id` to
    /// `viewer`, made at `now` (unix seconds).
    pub fn url(&self, media_id: i64, variant: Variant, viewer: i64, now: i64) -> String {
        let expires = self.expiry(now);
        let sig = self.signature(media_id, variant, viewer, expires);
        format!("{MEDIA_PATH}/{media_id}/{}?viewer={viewer}&expires={expires}&sig={sig}", variant.as_str())
    }

    /// Checks a URL's signature, then its expiry against `now`.
    pub fn verify(
        &self,
        media_id: i64,
        variant: Variant,
        viewer: i64,
        expires: i64,
        sig: &str,
        now: i64,
    ) -> Result<(), SignedUrlError> {
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| SignedUrlError::BadSignature)?;
        self.mac(media_id, variant, viewer, expires).verify_slice(&sig).map_err(|_| SignedUrlError::BadSignature)?;
        if now >= expires {
            return Err(SignedUrlError::Expired);
        }
        Ok(())
    }

    fn mac(&self, media_id: i64, variant: Variant, viewer: i64, expires: i64) -> HmacSha256 {
        let mut mac = hmac_with(&self.key);
        mac.update(format!("media\n{media_id}\n{}\n{viewer}\n{expires}", variant.as_str()).as_bytes());
        mac
    }

    fn signature(&self, media_id: i64, variant: Variant, viewer: i64, expires: i64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(media_id, variant, viewer, expires).finalize().into_bytes())
    }
}

/// HMAC-SHA256 keyed with `key` of any length, through the infallible
/// block-sized constructor: HMAC pads short keys with zeros to the block and
/// hashes long ones first, which is exactly what this does (`new_from_slice`
/// would do the same behind a `Result` that is never an error).
fn hmac_with(key: &[u8]) -> HmacSha256 {
    use hmac::digest::KeyInit;
    use sha2::Digest as _;
    let mut block = [0u8; 64];
    if key.len() <= block.len() {
        block[..key.len()].copy_from_slice(key);
    } else {
        block[..32].copy_from_slice(&Sha256::digest(key));
    }
    <HmacSha256 as KeyInit>::new(&block.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(url: &str) -> (i64, i64, String) {
        let query = url.split_once('?').unwrap().1;
        let get = |k: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).unwrap().to_owned();
        (get("viewer").parse().unwrap(), get("expires").parse().unwrap(), get("sig"))
    }

    #[test]
    fn hmac_keying_matches_the_standard_one() {
        for len in [0usize, 1, 32, 64, 65, 200] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ours = hmac_with(&key);
            let mut theirs = <HmacSha256 as hmac::Mac>::new_from_slice(&key).unwrap();
            ours.update(b"x");
            theirs.update(b"x");
            assert_eq!(ours.finalize().into_bytes(), theirs.finalize().into_bytes(), "key length {len}");
        }
    }

    #[test]
    fn urls_verify_only_as_issued() {
        let urls = MediaUrls::new(b"secret-secret-secret-secret-secret", Duration::from_secs(3600));
        let now = 1_700_000_000;
        let url = urls.url(42, Variant::File, 7, now);
        assert!(url.starts_with("/api/v1/media/42/file?viewer=7&expires="), "{url}");
        let (viewer, expires, sig) = parts(&url);
        assert!(expires >= now + 3600 && expires <= now + 3600 + 900);
        assert_eq!(urls.verify(42, Variant::File, viewer, expires, &sig, now), Ok(()));
        // Anything changed: refused.
        assert_eq!(urls.verify(43, Variant::File, 7, expires, &sig, now), Err(SignedUrlError::BadSignature));
        assert_eq!(urls.verify(42, Variant::Thumbnail, 7, expires, &sig, now), Err(SignedUrlError::BadSignature));
        assert_eq!(urls.verify(42, Variant::File, 8, expires, &sig, now), Err(SignedUrlError::BadSignature));
        assert_eq!(urls.verify(42, Variant::File, 7, expires + 1, &sig, now), Err(SignedUrlError::BadSignature));
        assert_eq!(urls.verify(42, Variant::File, 7, expires, "AAAA", now), Err(SignedUrlError::BadSignature));
        assert_eq!(urls.verify(42, Variant::File, 7, expires, &sig, expires), Err(SignedUrlError::Expired));
        // Another secret: refused.
        let other = MediaUrls::new(b"another-secret-another-secret-xx", Duration::from_secs(3600));
        assert_eq!(other.verify(42, Variant::File, 7, expires, &sig, now), Err(SignedUrlError::BadSignature));
        // Stable within a quarter of the lifetime, so caches work.
        assert_eq!(urls.url(42, Variant::File, 7, now + 1), url);
    }
}
