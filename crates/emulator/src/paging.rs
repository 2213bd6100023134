//! Paging for the query endpoints: `x-ms-max-item-count` asks for a page size (capped),
//! `x-ms-continuation` carries an opaque position.
//!
//! A token names the last item a page returned (a device id, or a job's creation number and a
//! row index), never an offset: the next page starts right after that item with a seek into the
//! ordered store, so reading page k costs O(page), not O(k × page). It also carries a hash of
//! the query it was issued for, so a token replayed on another query is refused (400) instead
//! of silently resuming somewhere meaningless.
//!
//! What a sequence of pages sees while the results change: every item at most once, in the
//! store's order; an item that exists and matches from the first page to the last is seen
//! exactly once; items are evaluated (status, filters) when their page is read; items added
//! after the position already read are seen, items added before it are not.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::errors::{ApiError, ErrorCode};

/// Page size when the client asks for none (the service's default).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most a client can get in one page, whatever it asks for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Which store a token walks; a token of one kind is refused by the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `SELECT * FROM devices`: position = a device id.
    Devices,
    /// `SELECT * FROM devices.jobs`: position = `job creation number:row index`.
    DeviceJobs,
    /// `GET /jobs/v2/query`: position = a job creation number.
    Jobs,
    /// `SELECT * FROM devices.modules`: position = `{deviceId}/{moduleId}`.
    Modules,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Devices => "d",
            Kind::DeviceJobs => "r",
            Kind::Jobs => "j",
            Kind::Modules => "m",
        }
    }
}

/// What the request headers ask for.
#[derive(Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    /// The position of the last item already read (`None`: start at the beginning).
    pub after: Option<String>,
}

/// Parses `x-ms-max-item-count` and `x-ms-continuation` for a query of `kind` whose text (and
/// parameters) hash to `query_hash`.
pub fn request(
    kind: Kind,
    query_hash: u64,
    max_item_count: Option<&str>,
    continuation: Option<&str>,
) -> Result<PageRequest, ApiError> {
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
    let after = match continuation.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(t) => Some(decode_token(kind, query_hash, t)?),
    };
    Ok(PageRequest { size, after })
}

/// The token for the page after the item at `position`.
pub fn encode_token(kind: Kind, query_hash: u64, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{query_hash:016x}:{position}", kind.tag()))
}

fn invalid_token(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ArgumentInvalid,
        format!("x-ms-continuation is not a valid continuation token: {why}"),
    )
}

fn decode_token(kind: Kind, query_hash: u64, token: &str) -> Result<String, ApiError> {
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid_token("it was not issued by this hub"))?;
    let mut parts = text.splitn(3, ':');
    let (Some(tag), Some(hash), Some(position)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid_token("it was not issued by this hub"));
    };
    if tag != kind.tag() {
        return Err(invalid_token("it was issued for another kind of query"));
    }
    if u64::from_str_radix(hash, 16).ok() != Some(query_hash) {
        return Err(invalid_token("it was issued for a different query"));
    }
    Ok(position.to_string())
}

/// Where a `devices.jobs` page ended: the job's creation number and the row's index in it.
pub type RowPosition = (u64, usize);

/// A page of items and the position to resume after (`None`: it was the last page).
pub type Page<T, P> = (Vec<T>, Option<P>);

/// A `job creation number:row index` position of a `devices.jobs` token.
pub fn parse_row_position(position: &str) -> Result<RowPosition, ApiError> {
    let bad = || invalid_token("malformed position");
    let (job, row) = position.split_once(':').ok_or_else(bad)?;
    Ok((
        job.parse().map_err(|_| bad())?,
        row.parse().map_err(|_| bad())?,
    ))
}

/// A job creation number position of a `jobs/v2/query` token.
pub fn parse_job_position(position: &str) -> Result<u64, ApiError> {
    position
        .parse()
        .map_err(|_| invalid_token("malformed position"))
}

/// The error for a token naming a job the store no longer has (it was reset meanwhile).
pub fn stale_token() -> ApiError {
    invalid_token("it names a job that no longer exists (the hub was reset); start the query again")
}

/// FNV-1a over the parts that define a query, so that tokens are bound to their query.
pub fn query_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// One page of items with their positions, and whether more may follow. Producers collect up
/// to `size + 1` matching items: the extra one only says that a next page exists (so an exact
/// multiple of the page size ends without an empty trailing page); it is dropped here.
pub struct Collected<P, T> {
    items: Vec<(P, T)>,
    size: usize,
}

impl<P, T> Collected<P, T> {
    pub fn new(size: usize) -> Self {
        Self {
            items: Vec::with_capacity(size.min(MAX_PAGE_SIZE) + 1),
            size,
        }
    }

    /// Whether the page (plus the look-ahead item) is full: the producer stops scanning.
    pub fn is_full(&self) -> bool {
        self.items.len() > self.size
    }

    pub fn push(&mut self, position: P, item: T) {
        self.items.push((position, item));
    }

    /// The page's items and the position of its last item when a next page exists.
    pub fn finish(mut self) -> Page<T, P> {
        let more = self.items.len() > self.size;
        self.items.truncate(self.size);
        let mut next = None;
        let items = self
            .items
            .into_iter()
            .map(|(p, item)| {
                next = Some(p);
                item
            })
            .collect();
        (items, next.filter(|_| more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_errors() {
        let r = |count: Option<&str>| request(Kind::Devices, 1, count, None);
        assert_eq!(r(None).unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(r(Some("100000")).unwrap().size, MAX_PAGE_SIZE);
        assert_eq!(r(Some("")).unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(r(Some(" 7 ")).unwrap().size, 7);
        for bad in ["0", "x", "-1", "1.5"] {
            assert_eq!(r(Some(bad)).unwrap_err().code, ErrorCode::ArgumentInvalid);
        }
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_kind_and_query() {
        let token = encode_token(Kind::DeviceJobs, 42, "7:123");
        let back = request(Kind::DeviceJobs, 42, None, Some(&token)).unwrap();
        assert_eq!(back.after.as_deref(), Some("7:123"));
        assert_eq!(parse_row_position("7:123").unwrap(), (7, 123));
        // A device id may contain ':' (the position is the rest of the token).
        let token = encode_token(Kind::Devices, 1, "a:b");
        assert_eq!(
            request(Kind::Devices, 1, None, Some(&token)).unwrap().after,
            Some("a:b".into())
        );
        let cases = [
            (
                Kind::Jobs,
                42,
                encode_token(Kind::DeviceJobs, 42, "7:1"),
                "another kind",
            ),
            (
                Kind::DeviceJobs,
                43,
                encode_token(Kind::DeviceJobs, 42, "7:1"),
                "different query",
            ),
            (Kind::Devices, 1, "garbage!".into(), "not issued"),
            (
                Kind::Devices,
                1,
                URL_SAFE_NO_PAD.encode("offset:5"),
                "not issued",
            ),
            (
                Kind::Devices,
                1,
                URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
                "not issued",
            ),
        ];
        for (kind, hash, token, why) in cases {
            let err = request(kind, hash, None, Some(&token)).unwrap_err();
            assert_eq!(err.code, ErrorCode::ArgumentInvalid);
            assert!(err.message.contains(why), "{why}: {}", err.message);
        }
        for bad in ["", "7", "7:", ":1", "x:1", "1:-1", "99999999999999999999:0"] {
            assert!(parse_row_position(bad).is_err(), "{bad:?}");
        }
        assert!(parse_job_position("-3").is_err());
    }

    #[test]
    fn query_hash_separates_parts() {
        assert_ne!(query_hash(&["ab", "c"]), query_hash(&["a", "bc"]));
        assert_ne!(query_hash(&["x"]), query_hash(&["y"]));
        assert_eq!(query_hash(&["x", ""]), query_hash(&["x", ""]));
    }

    #[test]
    fn collected_drops_the_look_ahead_item() {
        let mut c = Collected::new(2);
        for i in 0..3 {
            assert!(!c.is_full());
            c.push(i * 10, i);
        }
        assert!(c.is_full());
        assert_eq!(c.finish(), (vec![0, 1], Some(10)));
        let mut c = Collected::new(2);
        c.push(0, 0);
        c.push(10, 1);
        assert_eq!(c.finish(), (vec![0, 1], None), "exact multiple: no token");
        assert_eq!(Collected::<u8, u8>::new(5).finish(), (vec![], None));
    }
}
