//! `Range` and `If-None-Match` headers (RFC 9110), as far as media needs:
//! one byte range per request; a request for several ranges is answered
//! with the whole item, which the RFC allows.

use std::ops::Range;

/// What a `Range` header asks of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole item (no usable range: another unit, several ranges, or
    /// a malformed header, which the RFC says to ignore).
    Whole,
    /// These bytes.
    Part(Range<u64>),
    /// The range lies outside the item: 416.
    Unsatisfiable,
}

/// Reads a `Range` header against an item of `total` bytes.
pub fn parse(header: &str, total: u64) -> RangeAnswer {
    let Some((unit, spec)) = header.trim().split_once('=') else { return RangeAnswer::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeAnswer::Whole };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || total == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part(total.saturating_sub(n)..total)
            }
        }
        // bytes=a- or bytes=a-b.
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return RangeAnswer::Whole;
            }
            if start >= total {
                return RangeAnswer::Unsatisfiable;
            }
            let end = end.map_or(total, |e| e.saturating_add(1).min(total));
            RangeAnswer::Part(start..end)
        }
        _ => RangeAnswer::Whole,
    }
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison).
pub fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(parse("bytes=0-99", 1000), Part(0..100));
        assert_eq!(parse("bytes=900-", 1000), Part(900..1000));
        assert_eq!(parse("bytes=-100", 1000), Part(900..1000));
        assert_eq!(parse("bytes=-5000", 1000), Part(0..1000));
        assert_eq!(parse("bytes=990-2000", 1000), Part(990..1000));
        assert_eq!(parse("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse("bytes=5-1", 1000), Whole);
        assert_eq!(parse("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse("items=0-1", 1000), Whole);
        assert_eq!(parse("bytes=a-b", 1000), Whole);
        assert_eq!(parse("bytes=", 1000), Whole);
        assert_eq!(parse("bytes=-", 1000), Whole);
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"m1-file\"", "\"m1-file\""));
        assert!(etag_matches("W/\"m1-file\", \"x\"", "\"m1-file\""));
        assert!(etag_matches("*", "\"m1-file\""));
        assert!(!etag_matches("\"m2-file\"", "\"m1-file\""));
    }
}
