//! What an upload is, decided from its first bytes (magic numbers, via the
//! `infer` crate), never from the client's Content-Type or file name.
//!
//! Only listed types are accepted: media that browsers and phones play, and
//! common documents. Anything else (executables, HTML, SVG, archives of
//! unknown kinds) is refused with 415. Plain text has no magic number; it is
//! accepted when the first bytes are UTF-8 without control characters.

use serde::Serialize;

/// Bytes looked at to decide the type (some Office formats need the zip
/// directory near the start).
pub const SNIFF_LEN: usize = 64 * 1024;

/// The four kinds of media, each with its own size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Pictures: re-encoded without metadata, with a thumbnail.
    Image,
    /// Sound, stored as uploaded.
    Audio,
    /// Video, stored as uploaded.
    Video,
    /// Documents, stored as uploaded, served as attachments.
    File,
}

impl Kind {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Audio => "audio",
            Kind::Video => "video",
            Kind::File => "file",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "image" => Some(Kind::Image),
            "audio" => Some(Kind::Audio),
            "video" => Some(Kind::Video),
            "file" => Some(Kind::File),
            _ => None,
        }
    }
}

/// The accepted types, by kind.
const IMAGES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];
const AUDIO: &[&str] = &[
    "audio/mpeg",
    "audio/ogg",
    "audio/opus",
    "audio/x-wav",
    "audio/x-flac",
    "audio/m4a",
    "audio/aac",
    "audio/amr",
    "audio/x-aiff",
];
const VIDEO: &[&str] = &["video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-m4v", "video/mpeg"];
const FILES: &[&str] = &[
    "application/pdf",
    "application/zip",
    "application/epub+zip",
    "application/rtf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
];

/// The type of an upload as detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// Its kind.
    pub kind: Kind,
    /// Its MIME type.
    pub content_type: &'static str,
}

/// Decides the type of an upload from its first bytes (all of it, if it is
/// shorter than [`SNIFF_LEN`]). `Err` carries the detected type, or
/// "unknown", for the 415 message.
pub fn detect(head: &[u8]) -> Result<Detected, String> {
    if let Some(t) = infer::get(head) {
        let mime = t.mime_type();
        for (kind, list) in [(Kind::Image, IMAGES), (Kind::Audio, AUDIO), (Kind::Video, VIDEO), (Kind::File, FILES)] {
            if let Some(found) = list.iter().find(|m| **m == mime) {
                return Ok(Detected { kind, content_type: found });
            }
        }
        return Err(mime.to_owned());
    }
    if is_plain_text(head) {
        return Ok(Detected { kind: Kind::File, content_type: "text/plain" });
    }
    Err("unknown".to_owned())
}

/// UTF-8 (a character cut at the end of `head` is fine) with no control
/// characters but tab, line feed, form feed and carriage return.
fn is_plain_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() && head.len() - e.valid_up_to() < 4 => {
            // Only an incomplete character at the very end.
            match std::str::from_utf8(&head[..e.valid_up_to()]) {
                Ok(text) => text,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn types_come_from_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect(png).unwrap(), Detected { kind: Kind::Image, content_type: "image/png" });
        assert_eq!(detect(b"%PDF-1.7\n").unwrap().kind, Kind::File);
        assert_eq!(detect(b"ID3\x04\0\0\0\0\0\0").unwrap().content_type, "audio/mpeg");
        assert_eq!(detect("hola, ¿qué tal?\n".as_bytes()).unwrap().content_type, "text/plain");
        // Executables, HTML and binary junk: refused.
        let padded = |head: &[u8]| [head, &[0u8; 128][..]].concat();
        assert_eq!(detect(&padded(b"\x7fELF\x02\x01\x01")).unwrap_err(), "application/x-executable");
        assert!(detect(&padded(b"MZ\x90\0")).is_err());
        assert!(detect(b"<!DOCTYPE html><html><script>").is_err());
        assert!(detect(b"\0\x01\x02binary").is_err());
        assert!(detect(b"").is_err());
        // A character cut by the sniff window is still text.
        let mut text = "a".repeat(10).into_bytes();
        text.extend_from_slice(&"é".as_bytes()[..1]);
        assert!(detect(&text).is_ok());
    }
}
