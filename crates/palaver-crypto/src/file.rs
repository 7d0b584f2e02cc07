//! Files sealed in chunks, so any byte range can be decrypted by reading
//! only the chunks that hold it, and memory stays flat whatever the size.
//!
//! The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár 2015) as
//! the `aead` crate's `stream` module implements it (`StreamBE32`): the file
//! gets a random 19-byte nonce prefix, and chunk `i` is sealed with
//! XChaCha20-Poly1305 under the nonce `prefix || i (32-bit BE) || last`,
//! where `last` flags the final chunk. Reordering, dropping or truncating
//! chunks therefore fails authentication. The random-access use of the
//! stateless `StreamPrimitive` (rather than the sequential `Decryptor`) is
//! what allows Range requests.
//!
//! Layout: a 64-byte header, then each chunk's ciphertext followed by its
//! 16-byte tag. Every chunk holds [`CHUNK_LEN`] plaintext bytes except the
//! last, which holds 0 to [`CHUNK_LEN`] (an empty file is one empty chunk).
//! The plaintext length is not in the file: the caller keeps it (the media
//! row's size) and the last-chunk flag proves it right.
//!
//! Header: `"PLVM"`, version 1, log2 of the chunk length, key id length, a
//! zero byte, the key id padded to 32 bytes, the nonce prefix, five zero
//! bytes. The whole header is authenticated with every chunk, together with
//! the caller's context (which names the row, so a file cannot be swapped
//! for another).

use std::ops::Range;

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit as _;
use chacha20poly1305::aead::stream::{NewStream as _, StreamBE32, StreamPrimitive as _};
use rand::RngCore as _;

use crate::keyring::MAX_KEY_ID_LEN;
use crate::{CryptoError, KeyId, Keyring};

/// Plaintext bytes per chunk (64 KiB): small enough that a Range request
/// decrypts little more than it sends, large enough that the 16-byte tags
/// cost 0.02 %.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Authentication tag per chunk.
pub const TAG_LEN: usize = 16;
/// Sealed bytes per full chunk.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Length of the file header.
pub const HEADER_LEN: usize = 64;

const MAGIC: &[u8; 4] = b"PLVM";
const VERSION: u8 = 1;
const CHUNK_LOG2: u8 = 16;
const PREFIX_LEN: usize = 19;
const PREFIX_AT: usize = 8 + MAX_KEY_ID_LEN;

/// Where the chunks of a sealed file of `plain_len` bytes lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext length.
    pub plain_len: u64,
}

impl Layout {
    /// Number of chunks (at least one).
    pub fn chunks(&self) -> u64 {
        self.plain_len.div_ceil(CHUNK_LEN as u64).max(1)
    }

    /// Length of the sealed file.
    pub fn sealed_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plain_len + self.chunks() * TAG_LEN as u64
    }

    /// The chunk holding plaintext offset `offset`.
    pub fn chunk_of(&self, offset: u64) -> u64 {
        (offset / CHUNK_LEN as u64).min(self.chunks() - 1)
    }

    /// Plaintext bytes in chunk `index`.
    pub fn chunk_plain_len(&self, index: u64) -> usize {
        let start = index * CHUNK_LEN as u64;
        // At most CHUNK_LEN, so the cast cannot truncate.
        self.plain_len.saturating_sub(start).min(CHUNK_LEN as u64) as usize
    }

    /// Whether `index` is the last chunk.
    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunks()
    }

    /// The sealed bytes of chunks `first..=last`.
    pub fn sealed_range(&self, first: u64, last: u64) -> Range<u64> {
        let start = HEADER_LEN as u64 + first * SEALED_CHUNK_LEN as u64;
        let end_plain = ((last + 1) * CHUNK_LEN as u64).min(self.plain_len);
        let end = HEADER_LEN as u64 + end_plain + (last + 1) * TAG_LEN as u64;
        start..end
    }
}

/// Seals a file chunk by chunk, in order.
pub struct FileSealer {
    stream: StreamBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
    header: [u8; HEADER_LEN],
    key_id: KeyId,
    next: u64,
    finished: bool,
}

impl std::fmt::Debug for FileSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSealer").field("key_id", &self.key_id).field("next", &self.next).finish()
    }
}

/// Opens any chunk of a sealed file.
pub struct FileOpener {
    stream: StreamBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
}

impl std::fmt::Debug for FileOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOpener").finish_non_exhaustive()
    }
}

impl Keyring {
    /// Starts sealing a file with the newest key. `context` names what the
    /// file belongs to (`media 42 original`).
    pub fn file_sealer(&self, context: &[u8]) -> FileSealer {
        let (id, key) = self.active_entry();
        let mut prefix = [0u8; PREFIX_LEN];
        rand::rng().fill_bytes(&mut prefix);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[5] = CHUNK_LOG2;
        // Key ids are at most 32 bytes.
        header[6] = id.as_str().len() as u8;
        header[8..8 + id.as_str().len()].copy_from_slice(id.as_str().as_bytes());
        header[PREFIX_AT..PREFIX_AT + PREFIX_LEN].copy_from_slice(&prefix);
        let stream = StreamBE32::from_aead(XChaCha20Poly1305::new(key), prefix.as_slice().into());
        FileSealer { stream, aad: aad(&header, context), header, key_id: id.clone(), next: 0, finished: false }
    }

    /// Prepares to open a file sealed by [`Keyring::file_sealer`] with the
    /// same `context`, from its header.
    pub fn file_opener(&self, header: &[u8], context: &[u8]) -> Result<FileOpener, CryptoError> {
        let id = header_key_id(header)?;
        let key = self.key(id)?;
        let prefix = &header[PREFIX_AT..PREFIX_AT + PREFIX_LEN];
        let stream = StreamBE32::from_aead(XChaCha20Poly1305::new(key), prefix.into());
        Ok(FileOpener { stream, aad: aad(&header[..HEADER_LEN], context) })
    }
}

/// The id of the key a sealed file's header names.
pub fn header_key_id(header: &[u8]) -> Result<&str, CryptoError> {
    if header.len() < HEADER_LEN || &header[..4] != MAGIC || header[4] != VERSION || header[5] != CHUNK_LOG2 {
        return Err(CryptoError::Corrupt);
    }
    let len = usize::from(header[6]);
    if len == 0 || len > MAX_KEY_ID_LEN {
        return Err(CryptoError::Corrupt);
    }
    std::str::from_utf8(&header[8..8 + len]).map_err(|_| CryptoError::Corrupt)
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    [header, context].concat()
}

fn position(index: u64) -> Result<u32, CryptoError> {
    u32::try_from(index).map_err(|_| CryptoError::Corrupt)
}

impl FileSealer {
    /// The header, to be written before the first chunk.
    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    /// The key sealing this file.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Seals the next chunk in place (appending its tag). Every chunk but
    /// the last must hold exactly [`CHUNK_LEN`] bytes.
    pub fn seal_chunk(&mut self, buf: &mut Vec<u8>, last: bool) -> Result<(), CryptoError> {
        if self.finished || buf.len() > CHUNK_LEN || (!last && buf.len() != CHUNK_LEN) {
            return Err(CryptoError::Corrupt);
        }
        self.stream.encrypt_in_place(position(self.next)?, last, &self.aad, buf).map_err(|_| CryptoError::Corrupt)?;
        self.next += 1;
        self.finished = last;
        Ok(())
    }
}

impl FileOpener {
    /// Opens chunk `index` in place (removing its tag).
    pub fn open_chunk(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.stream.decrypt_in_place(position(index)?, last, &self.aad, buf).map_err(|_| CryptoError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::generate_key_spec;

    fn keyring() -> Keyring {
        Keyring::parse(&generate_key_spec(&KeyId::new("k1").unwrap())).unwrap()
    }

    fn seal(k: &Keyring, context: &[u8], data: &[u8]) -> Vec<u8> {
        let mut sealer = k.file_sealer(context);
        let mut out = sealer.header().to_vec();
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(CHUNK_LEN).collect() };
        for (i, chunk) in chunks.iter().enumerate() {
            let mut buf = chunk.to_vec();
            sealer.seal_chunk(&mut buf, i + 1 == chunks.len()).unwrap();
            out.extend_from_slice(&buf);
        }
        out
    }

    fn open_range(k: &Keyring, context: &[u8], sealed: &[u8], len: u64, range: Range<u64>) -> Vec<u8> {
        let layout = Layout { plain_len: len };
        let opener = k.file_opener(&sealed[..HEADER_LEN], context).unwrap();
        let (first, last) = (layout.chunk_of(range.start), layout.chunk_of(range.end.saturating_sub(1)));
        let bytes = layout.sealed_range(first, last);
        let mut out = Vec::new();
        let mut at = bytes.start as usize;
        for i in first..=last {
            let n = layout.chunk_plain_len(i) + TAG_LEN;
            let mut buf = sealed[at..at + n].to_vec();
            at += n;
            opener.open_chunk(i, layout.is_last(i), &mut buf).unwrap();
            out.extend_from_slice(&buf);
        }
        assert_eq!(at as u64, bytes.end);
        let skip = (range.start - first * CHUNK_LEN as u64) as usize;
        out[skip..skip + (range.end - range.start) as usize].to_vec()
    }

    #[test]
    fn any_range_decrypts_from_its_chunks() {
        let k = keyring();
        for len in [0usize, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = seal(&k, b"media 1", &data);
            let layout = Layout { plain_len: len as u64 };
            assert_eq!(sealed.len() as u64, layout.sealed_len(), "len {len}");
            if len == 0 {
                continue;
            }
            let l = len as u64;
            for range in [0..l, 0..1, l - 1..l, l / 2..l, (CHUNK_LEN as u64).min(l - 1)..l] {
                assert_eq!(
                    open_range(&k, b"media 1", &sealed, l, range.clone()),
                    &data[range.start as usize..range.end as usize]
                );
            }
        }
    }

    #[test]
    fn swapped_truncated_or_altered_files_fail() {
        let k = keyring();
        let data = vec![7u8; 2 * CHUNK_LEN + 5];
        let sealed = seal(&k, b"media 1", &data);
        let layout = Layout { plain_len: data.len() as u64 };
        // Another row's context.
        let other = k.file_opener(&sealed[..HEADER_LEN], b"media 2").unwrap();
        let r = layout.sealed_range(0, 0);
        let mut buf = sealed[r.start as usize..r.end as usize].to_vec();
        assert!(other.open_chunk(0, false, &mut buf).is_err());
        // A chunk opened at another position, or claimed to be the last.
        let opener = k.file_opener(&sealed[..HEADER_LEN], b"media 1").unwrap();
        let mut buf = sealed[r.start as usize..r.end as usize].to_vec();
        assert!(opener.open_chunk(1, false, &mut buf).is_err());
        let mut buf = sealed[r.start as usize..r.end as usize].to_vec();
        assert!(opener.open_chunk(0, true, &mut buf).is_err());
        // A tampered header.
        let mut header = sealed[..HEADER_LEN].to_vec();
        header[60] ^= 1;
        let tampered = k.file_opener(&header, b"media 1").unwrap();
        let mut buf = sealed[r.start as usize..r.end as usize].to_vec();
        assert!(tampered.open_chunk(0, false, &mut buf).is_err());
        // The plaintext is nowhere in the file.
        assert!(!sealed.windows(64).any(|w| w.iter().all(|b| *b == 7)));
    }
}
