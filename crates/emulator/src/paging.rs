//! Paging for the query endpoints: `x-ms-max-item-count` asks for a page size (capped),
//! `x-ms-continuation` carries an opaque position. The token encodes an offset into the
//! result list; results are ordered stably, so an offset is enough for an emulator.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::errors::{ApiError, ErrorCode};

/// Page size when the client asks for none (the service's default).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most a client can get in one page, whatever it asks for.
pub const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub start: usize,
    pub end: usize,
    /// The token for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

pub fn encode_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_token(token: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

/// Picks the page of `total` items that the request headers ask for.
pub fn page(
    total: usize,
    max_item_count: Option<&str>,
    continuation: Option<&str>,
) -> Result<Page, ApiError> {
    let size = match max_item_count.map(str::trim).filter(|s| !s.is_empty()) {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::ArgumentInvalid,
                    format!("x-ms-max-item-count must be a positive integer, got '{v}'"),
                ))
            }
            Ok(n) => n.min(MAX_PAGE_SIZE),
        },
    };
    let start = match continuation.map(str::trim).filter(|s| !s.is_empty()) {
        None => 0,
        Some(t) => decode_token(t).ok_or_else(|| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                "x-ms-continuation is not a valid continuation token",
            )
        })?,
    }
    .min(total);
    let end = start.saturating_add(size).min(total);
    let continuation = (end < total).then(|| encode_token(end));
    Ok(Page {
        start,
        end,
        continuation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_items_two_at_a_time() {
        let p1 = page(5, Some("2"), None).unwrap();
        assert_eq!((p1.start, p1.end), (0, 2));
        let p2 = page(5, Some("2"), p1.continuation.as_deref()).unwrap();
        assert_eq!((p2.start, p2.end), (2, 4));
        let p3 = page(5, Some("2"), p2.continuation.as_deref()).unwrap();
        assert_eq!((p3.start, p3.end), (4, 5));
        assert_eq!(p3.continuation, None, "no token on the last page");
    }

    #[test]
    fn exact_multiple_has_no_empty_trailing_page() {
        let p1 = page(4, Some("2"), None).unwrap();
        let p2 = page(4, Some("2"), p1.continuation.as_deref()).unwrap();
        assert_eq!((p2.start, p2.end, p2.continuation), (2, 4, None));
    }

    #[test]
    fn defaults_caps_and_errors() {
        assert_eq!(page(250, None, None).unwrap().end, DEFAULT_PAGE_SIZE);
        assert_eq!(page(5000, Some("100000"), None).unwrap().end, MAX_PAGE_SIZE);
        assert_eq!(
            page(0, None, None).unwrap(),
            Page {
                start: 0,
                end: 0,
                continuation: None
            }
        );
        assert_eq!(page(3, Some(""), None).unwrap().end, 3);
        assert_eq!(
            page(3, Some("0"), None).unwrap_err().code,
            ErrorCode::ArgumentInvalid
        );
        assert_eq!(
            page(3, Some("x"), None).unwrap_err().code,
            ErrorCode::ArgumentInvalid
        );
        assert_eq!(
            page(3, None, Some("garbage!")).unwrap_err().code,
            ErrorCode::ArgumentInvalid
        );
        // A token past the end (results shrank) gives an empty last page rather than an error.
        assert_eq!(
            page(3, None, Some(&encode_token(10))).unwrap(),
            Page {
                start: 3,
                end: 3,
                continuation: None
            }
        );
    }
}
