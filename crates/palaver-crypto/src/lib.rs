//! Palaver's cryptography for data at rest and for media links.
//!
//! - [`Keyring`]: the configured encryption keys, each with an id. New data
//!   is sealed with the newest key; data sealed with any configured key can
//!   be opened, so keys rotate without downtime. Small values (message
//!   bodies, file names) are sealed whole ([`Keyring::seal`]); files are
//!   sealed in chunks ([`file`]) so a byte range can be decrypted without
//!   reading the rest.
//! - [`MediaUrls`]: signed, expiring media URLs (HMAC over media id,
//!   variant, viewer and expiry).
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`), whose
//! 192-bit nonces can be drawn at random without counting. Every ciphertext
//! carries the id of its key, and the caller's associated data binds it to
//! its row, so a ciphertext copied into another row fails to open.
//!
//! This crate knows nothing of Palaver's domain, storage or transports and
//! depends on no other Palaver crate, so the store, the services and the
//! media pipeline can all use it without dependency cycles.

pub mod file;
mod keyring;
mod urls;

pub use keyring::{KeyId, Keyring, Sealed, generate_key_spec};
pub use urls::{MediaUrls, SignedUrlError, Variant};

/// Why something could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key setting is malformed (the message says how).
    #[error("invalid encryption key setting: {0}")]
    BadKeySpec(String),
    /// The ciphertext names a key that is not configured (it was removed
    /// before every row sealed with it was re-encrypted).
    #[error("encryption key `{0}` is not configured")]
    UnknownKey(String),
    /// The ciphertext is malformed, was altered, or belongs to another row.
    #[error("ciphertext does not authenticate")]
    Corrupt,
}
