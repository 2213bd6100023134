//! Parsing a ready-made shared access signature string (`fromSharedAccessSignature`).

use std::fmt;

use crate::connection_string::create_dictionary;
use crate::error::Error;

/// A parsed SAS. `Debug` hides `sig` and the raw string.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedAccessSignature {
    /// The resource URI, verbatim; the client uses it as the host name.
    pub sr: String,
    pub sig: String,
    pub skn: String,
    /// Expiry as written (seconds since the epoch, normally).
    pub se: String,
    /// The whole string, sent verbatim as `Authorization`.
    pub raw: String,
}

impl SharedAccessSignature {
    /// Expiry in seconds since the epoch, when `se` is a number.
    pub fn expiry_seconds(&self) -> Option<f64> {
        self.se.trim().parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

impl fmt::Debug for SharedAccessSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAccessSignature")
            .field("sr", &self.sr)
            .field("sig", &"<redacted>")
            .field("skn", &self.skn)
            .field("se", &self.se)
            .finish_non_exhaustive()
    }
}

/// JavaScript's `\s`.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// Parses like azure-iothub's `SharedAccessSignature.parse`: split on every single JS whitespace
/// character into exactly two parts, the first containing `SharedAccessSignature` (else
/// `FormatError: Malformed signature`); fields split on `&`; `sr`, `sig`, `skn`, `se` required
/// in that order (`ArgumentError: The shared access signature is missing the property: <key>`).
pub fn parse(source: &str) -> Result<SharedAccessSignature, Error> {
    let parts: Vec<&str> = source.split(is_js_whitespace).collect();
    if parts.len() != 2 || !parts[0].contains("SharedAccessSignature") {
        return Err(Error::format("Malformed signature"));
    }
    let dict = create_dictionary(parts[1], '&');
    let get = |key: &str| {
        dict.get(key).map(|v| v.to_string()).ok_or_else(|| {
            Error::argument(format!(
                "The shared access signature is missing the property: {key}"
            ))
        })
    };
    Ok(SharedAccessSignature {
        sr: get("sr")?,
        sig: get("sig")?,
        skn: get("skn")?,
        se: get("se")?,
        raw: source.to_string(),
    })
}
