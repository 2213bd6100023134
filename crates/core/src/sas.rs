//! Shared access signature tokens, byte-identical to `azure-iot-common`'s.

use base64::Engine as _;
use ring::hmac;

use crate::encoding::encode_uri_component_strict;

/// Decodes base64 the way Node's `Buffer.from(s, 'base64')` does: both the standard and the
/// URL-safe alphabet, characters outside them skipped, decoding stops at the first `=`, and a
/// trailing partial group yields only its complete bytes. Never fails.
pub fn decode_base64_lenient(input: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in input.as_bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// `base64(HMAC-SHA256(key, sr + "\n" + se))`.
pub fn sign(sr: &str, se: &str, key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, format!("{sr}\n{se}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The token string from already-decoded key bytes.
pub fn create_token_with_key(sr: &str, skn: &str, key: &[u8], se: u64) -> String {
    let se = se.to_string();
    let sig = encode_uri_component_strict(&sign(sr, &se, key));
    let mut token = format!("SharedAccessSignature sr={sr}&sig={sig}");
    if !skn.is_empty() {
        token.push_str("&skn=");
        token.push_str(&encode_uri_component_strict(skn));
    }
    token.push_str("&se=");
    token.push_str(&se);
    token
}

/// `SharedAccessSignature sr=<sr>&sig=<sig>[&skn=<skn>]&se=<se>`, as
/// `SharedAccessSignature.create(sr, skn, key, se)` of azure-iot-common writes it: `sr` verbatim,
/// `sig` and `skn` encoded with `encodeURIComponent` plus `!'()*`, `skn` omitted when empty.
/// `key_b64` is decoded leniently, as Node does.
pub fn create_token(sr: &str, skn: &str, key_b64: &str, se: u64) -> String {
    create_token_with_key(sr, skn, &decode_base64_lenient(key_b64), se)
}
