//! The keyring and sealed values.

use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use crate::CryptoError;

/// Length of an XChaCha20-Poly1305 key.
pub(crate) const KEY_LEN: usize = 32;
/// Length of an XChaCha20 nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Longest key id: ids are short labels (`2025-01`, `k2`), stored beside
/// every ciphertext.
pub const MAX_KEY_ID_LEN: usize = 32;
/// Version byte of a sealed value.
const SEALED_V1: u8 = 1;

/// A key's name: 1 to 32 of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Checks and wraps a key id.
    pub fn new(id: &str) -> Result<Self, CryptoError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(CryptoError::BadKeySpec(format!(
                "key id `{id}` must be 1 to {MAX_KEY_ID_LEN} letters, digits, dots, dashes or underscores"
            )))
        }
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct Entry {
    id: KeyId,
    /// The cipher keyed with this key (it zeroizes the key when dropped).
    cipher: XChaCha20Poly1305,
    /// The raw key, for the file streams, which key their own cipher.
    key: chacha20poly1305::Key,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The cipher zeroizes itself; wipe the raw copy too.
        self.key.iter_mut().for_each(|b| *b = 0);
    }
}

/// The configured encryption keys, newest last. Debug never prints keys.
pub struct Keyring {
    entries: Vec<Entry>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids().map(KeyId::as_str).collect::<Vec<_>>()).finish()
    }
}

/// A sealed value and the id of the key that sealed it (also inside the
/// value; the copy lets SQL find rows sealed with a given key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The key that sealed it.
    pub key_id: KeyId,
    /// `version || key id length || key id || nonce || ciphertext || tag`.
    pub bytes: Vec<u8>,
}

/// A fresh key setting for one key, `id:base64(32 random bytes)`, for
/// development start-up and for operators (`palaver admin generate-key`).
pub fn generate_key_spec(id: &KeyId) -> String {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    let spec = format!("{id}:{}", base64::engine::general_purpose::STANDARD.encode(key));
    key.iter_mut().for_each(|b| *b = 0);
    spec
}

impl Keyring {
    /// Parses `id:base64key` entries separated by commas, spaces or new
    /// lines; the last entry is the newest (new data is sealed with it).
    /// Keys are 32 bytes, in standard or URL-safe base64.
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let mut entries: Vec<Entry> = Vec::new();
        for item in spec.split([',', '\n', ' ', '\t', '\r']).filter(|s| !s.is_empty()) {
            let (id, key) = item
                .split_once(':')
                .ok_or_else(|| CryptoError::BadKeySpec("each key must be written `id:base64key`".into()))?;
            let id = KeyId::new(id)?;
            let bytes = decode_key(key)
                .ok_or_else(|| CryptoError::BadKeySpec(format!("key `{id}` must be {KEY_LEN} bytes in base64")))?;
            if entries.iter().any(|e| e.id == id) {
                return Err(CryptoError::BadKeySpec(format!("key id `{id}` appears twice")));
            }
            entries.push(Entry::new(id, &bytes));
        }
        if entries.is_empty() {
            return Err(CryptoError::BadKeySpec("no key given".into()));
        }
        Ok(Self { entries })
    }

    /// Adds the keys of `older` that this ring lacks, as older keys: they
    /// open data but never seal it (a development key kept readable after
    /// keys were configured).
    pub fn with_older(mut self, older: Keyring) -> Self {
        let mut older = older;
        let mut front = Vec::new();
        for entry in older.entries.drain(..) {
            if !self.entries.iter().any(|e| e.id == entry.id) {
                front.push(entry);
            }
        }
        front.append(&mut self.entries);
        self.entries = front;
        self
    }

    /// The key new data is sealed with.
    pub fn active(&self) -> &KeyId {
        // Never empty: `parse` refuses an empty ring.
        &self.entries[self.entries.len() - 1].id
    }

    /// Every configured key id, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.entries.iter().map(|e| &e.id)
    }

    /// Whether a key with this id is configured.
    pub fn contains(&self, id: &str) -> bool {
        self.entries.iter().any(|e| e.id.as_str() == id)
    }

    fn entry(&self, id: &str) -> Result<&Entry, CryptoError> {
        self.entries.iter().find(|e| e.id.as_str() == id).ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))
    }

    pub(crate) fn active_entry(&self) -> (&KeyId, &chacha20poly1305::Key) {
        let e = &self.entries[self.entries.len() - 1];
        (&e.id, &e.key)
    }

    pub(crate) fn key(&self, id: &str) -> Result<&chacha20poly1305::Key, CryptoError> {
        Ok(&self.entry(id)?.key)
    }

    /// Seals `plaintext` with the newest key. `context` is authenticated but
    /// not stored: it must name the row the value belongs to (`message 7 in
    /// room 3`), so the value opens only with the same context.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let entry = &self.entries[self.entries.len() - 1];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let header = sealed_header(&entry.id);
        let aad = [header.as_slice(), context].concat();
        // Fails only past the AEAD's length limit (256 GiB).
        let ciphertext = entry
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| CryptoError::Corrupt)?;
        let mut bytes = Vec::with_capacity(header.len() + NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Ok(Sealed { key_id: entry.id.clone(), bytes })
    }

    /// Opens a value sealed by [`Keyring::seal`] with the same `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (id, rest) = parse_sealed_header(sealed)?;
        let entry = self.entry(id)?;
        if rest.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Corrupt);
        }
        let header_len = sealed.len() - rest.len();
        let aad = [&sealed[..header_len], context].concat();
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| CryptoError::Corrupt)?;
        entry
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Corrupt)
    }

    /// The id of the key a sealed value names (without opening it).
    pub fn sealed_key_id(sealed: &[u8]) -> Result<&str, CryptoError> {
        parse_sealed_header(sealed).map(|(id, _)| id)
    }
}

impl Entry {
    fn new(id: KeyId, bytes: &[u8; KEY_LEN]) -> Self {
        let key = chacha20poly1305::Key::from(*bytes);
        Self { id, cipher: XChaCha20Poly1305::new(&key), key }
    }
}

fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let mut bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()?;
    let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).ok();
    bytes.iter_mut().for_each(|b| *b = 0);
    key
}

fn sealed_header(id: &KeyId) -> Vec<u8> {
    let mut header = Vec::with_capacity(2 + id.as_str().len());
    header.push(SEALED_V1);
    // At most MAX_KEY_ID_LEN (32), so it fits a byte.
    header.push(id.as_str().len() as u8);
    header.extend_from_slice(id.as_str().as_bytes());
    header
}

fn parse_sealed_header(sealed: &[u8]) -> Result<(&str, &[u8]), CryptoError> {
    match sealed {
        [SEALED_V1, len, rest @ ..] if usize::from(*len) <= rest.len() => {
            let (id, rest) = rest.split_at(usize::from(*len));
            let id = std::str::from_utf8(id).map_err(|_| CryptoError::Corrupt)?;
            Ok((id, rest))
        }
        _ => Err(CryptoError::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ring(spec: &str) -> Keyring {
        Keyring::parse(spec).unwrap()
    }

    fn spec(id: &str) -> String {
        generate_key_spec(&KeyId::new(id).unwrap())
    }

    #[test]
    fn seals_and_opens_with_context() {
        let k = ring(&spec("k1"));
        let sealed = k.seal(b"message 1 room 2", b"hola").unwrap();
        assert_eq!(sealed.key_id.as_str(), "k1");
        assert_eq!(Keyring::sealed_key_id(&sealed.bytes).unwrap(), "k1");
        assert_eq!(k.open(b"message 1 room 2", &sealed.bytes).unwrap(), b"hola");
        // Another row's context: refused.
        assert_eq!(k.open(b"message 2 room 2", &sealed.bytes), Err(CryptoError::Corrupt));
        // Any flipped byte: refused.
        for i in 0..sealed.bytes.len() {
            let mut bad = sealed.bytes.clone();
            bad[i] ^= 1;
            assert!(k.open(b"message 1 room 2", &bad).is_err(), "byte {i}");
        }
        assert!(!String::from_utf8_lossy(&sealed.bytes).contains("hola"));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old_spec = spec("old");
        let old = ring(&old_spec);
        let sealed = old.seal(b"c", b"secret").unwrap();
        let both = ring(&format!("{old_spec},{}", spec("new")));
        assert_eq!(both.active().as_str(), "new");
        assert_eq!(both.open(b"c", &sealed.bytes).unwrap(), b"secret");
        assert_eq!(both.seal(b"c", b"x").unwrap().key_id.as_str(), "new");
        let only_new = ring(&spec("new"));
        assert_eq!(only_new.open(b"c", &sealed.bytes), Err(CryptoError::UnknownKey("old".into())));
    }

    #[test]
    fn bad_specs_are_explained() {
        for (spec, needle) in
            [("", "no key"), ("k1", "id:base64key"), ("bad/id:AAAA", "key id"), ("k1:AAAA", "32 bytes")]
        {
            let err = Keyring::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
        let one = spec("k1");
        assert!(Keyring::parse(&format!("{one},{one}")).unwrap_err().to_string().contains("twice"));
        // Debug shows ids only.
        let k = ring(&one);
        let shown = format!("{k:?}");
        assert!(shown.contains("k1") && !shown.contains(one.split(':').nth(1).unwrap()));
    }

    #[test]
    fn older_keys_open_but_never_seal() {
        let dev = spec("dev");
        let sealed = ring(&dev).seal(b"c", b"v").unwrap();
        let k = ring(&spec("prod")).with_older(ring(&dev));
        assert_eq!(k.active().as_str(), "prod");
        assert_eq!(k.open(b"c", &sealed.bytes).unwrap(), b"v");
        assert_eq!(k.ids().map(KeyId::as_str).collect::<Vec<_>>(), ["dev", "prod"]);
    }
}
