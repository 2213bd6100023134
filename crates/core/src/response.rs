//! A fully read HTTP response, as the binding needs it to build Node's `IncomingMessage` view.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The reason phrase from the wire (or the canonical one when the server sent the standard
    /// phrase; HTTP/1.1 only).
    pub status_text: String,
    /// Header names lower-cased, values decoded as Latin-1 (as Node does), in wire order;
    /// repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body should be parsed as JSON: non-empty and `content-type` contains
    /// `application/json` (any case; the reference matches case-sensitively).
    pub fn is_json(&self) -> bool {
        !self.body.is_empty()
            && self.header("content-type").is_some_and(|ct| {
                // Without lower-casing a copy: this runs on the JavaScript thread per call.
                ct.as_bytes()
                    .windows(b"application/json".len())
                    .any(|w| w.eq_ignore_ascii_case(b"application/json"))
            })
    }

    /// The whole body decoded as UTF-8 (lossy), in one piece.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}
