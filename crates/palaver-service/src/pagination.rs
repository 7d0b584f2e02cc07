//! Cursor pagination shared by every list: `?limit=` (default 20, at most
//! 100) and `?cursor=` (opaque to clients; the last id of the previous
//! page), answered as `{"items": [...], "next_cursor": "…" | null}`.

use palaver_core::{Error, FieldErrors, Id, Result};
use palaver_store::PageRequest;
use serde::Serialize;
use utoipa::ToSchema;

/// Page size when the client names none.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 100;

/// A page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page whose next cursor is the id of its last item when it is full.
    pub fn new(items: Vec<T>, request: PageRequest, id: impl Fn(&T) -> Id) -> Self {
        let full = i64::try_from(items.len()).unwrap_or(i64::MAX) >= request.limit;
        let next_cursor = if full { items.last().map(|last| id(last).to_string()) } else { None };
        Self { items, next_cursor }
    }
}

/// Checks `limit` and `cursor` from a query string.
pub fn page_request(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest> {
    let mut errors = FieldErrors::new();
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.add("limit", format!("must be between 1 and {MAX_LIMIT}"));
    }
    let cursor = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => match raw.parse::<Id>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                errors.add("cursor", "is not a cursor this list returned");
                None
            }
        },
    };
    errors.into_result()?;
    Ok(PageRequest { cursor, limit: i64::from(limit) })
}

/// A positive id from a request, or not found (ids are never zero or negative).
pub fn positive(what: &str, id: Id) -> Result<Id> {
    if id > 0 { Ok(id) } else { Err(Error::not_found(what, id)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors() {
        assert_eq!(page_request(None, None).unwrap(), PageRequest { cursor: None, limit: 20 });
        assert_eq!(page_request(Some(5), Some("42")).unwrap().cursor, Some(42));
        for (limit, cursor) in [(Some(0), None), (Some(101), None), (None, Some("abc")), (None, Some("-1"))] {
            assert!(page_request(limit, cursor).is_err());
        }
        let page = Page::new(vec![3, 2], PageRequest { cursor: None, limit: 2 }, |i| *i);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let page = Page::new(vec![3], PageRequest { cursor: None, limit: 2 }, |i| *i);
        assert_eq!(page.next_cursor, None);
    }
}
