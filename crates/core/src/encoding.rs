//! JavaScript-compatible encoders: `encodeURIComponent` and `JSON.stringify` for strings.

use std::fmt::Write;

fn is_uri_component_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// JavaScript's `encodeURIComponent` (UTF-8, upper-case hex). Rust strings cannot hold lone
/// surrogates, so the `URIError` case of JS does not exist here.
pub fn encode_uri_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        if is_uri_component_unreserved(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `encodeURIComponent` plus `!'()*` as `%21 %27 %28 %29 %2a` (lower-case, as azure-iot-common's
/// SAS encoder writes them).
pub fn encode_uri_component_strict(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        match b {
            b'!' => out.push_str("%21"),
            b'\'' => out.push_str("%27"),
            b'(' => out.push_str("%28"),
            b')' => out.push_str("%29"),
            b'*' => out.push_str("%2a"),
            _ if is_uri_component_unreserved(b) => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A string as `JSON.stringify` writes it: quotes; `"` and `\` escaped; `\b \f \n \r \t`; other
/// control characters as `\u00xx` (lower-case hex); everything else (U+007F, U+2028, U+2029, all
/// non-ASCII) verbatim.
pub fn json_string(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 2);
    out.push('"');
    for c in input.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
