//! Opt-in diagnostics on stderr, configured like the Azure SDKs: `AZURE_LOG_LEVEL=verbose|info|
//! warning|error`, or `DEBUG=iothub-jobs*` (the `debug` package convention) for `verbose`.
//! The level is read once, when a client is built.
//!
//! What is written: one line per HTTP attempt (method, path and query, status or failure,
//! duration, attempt number, request id) at `info`, retry decisions at `warning`, and the start of
//! each attempt at `verbose`. Headers are never written (so neither is `Authorization`), and every
//! line goes through [`redact`], which blanks `sig=`, `SharedAccessKey=`, `Bearer …`, client
//! secrets and assertions and token fields wherever they occur (a job id could carry one).

use std::fmt;
use std::io::Write;
use std::time::Duration;

/// How much is written; each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    #[default]
    Off,
    Error,
    Warning,
    Info,
    Verbose,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warning => "warning",
            LogLevel::Info => "info",
            LogLevel::Verbose => "verbose",
        }
    }

    /// From the values of `AZURE_LOG_LEVEL` and `DEBUG`; the more verbose of the two wins.
    /// Unknown `AZURE_LOG_LEVEL` values are ignored (as `@azure/logger` does, minus its warning).
    pub fn from_settings(azure_log_level: Option<&str>, debug: Option<&str>) -> LogLevel {
        let azure = match azure_log_level.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "verbose" || v == "debug" => LogLevel::Verbose,
            Some(v) if v == "info" => LogLevel::Info,
            Some(v) if v == "warning" || v == "warn" => LogLevel::Warning,
            Some(v) if v == "error" => LogLevel::Error,
            _ => LogLevel::Off,
        };
        let debug = if debug.is_some_and(|d| debug_enables(d, NAMESPACE)) {
            LogLevel::Verbose
        } else {
            LogLevel::Off
        };
        azure.max(debug)
    }

    /// From the process environment.
    pub fn from_env() -> LogLevel {
        let azure = std::env::var("AZURE_LOG_LEVEL").ok();
        let debug = std::env::var("DEBUG").ok();
        LogLevel::from_settings(azure.as_deref(), debug.as_deref())
    }
}

/// The namespace `DEBUG` patterns are matched against, and the prefix of every line.
pub const NAMESPACE: &str = "iothub-jobs";

/// Whether a `DEBUG` value (comma/space separated globs, `-` excludes) enables `namespace`.
pub fn debug_enables(debug: &str, namespace: &str) -> bool {
    let mut enabled = false;
    for pattern in debug.split([',', ' ']).filter(|p| !p.is_empty()) {
        if let Some(excluded) = pattern.strip_prefix('-') {
            if glob_matches(excluded, namespace) {
                return false;
            }
        } else if glob_matches(pattern, namespace) {
            enabled = true;
        }
    }
    enabled
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Writes diagnostics to stderr at or below its level. `Copy`; `Logger::default()` is silent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Logger {
    level: LogLevel,
}

impl Logger {
    pub fn new(level: LogLevel) -> Logger {
        Logger { level }
    }

    /// The level from `AZURE_LOG_LEVEL` / `DEBUG`, read now.
    pub fn from_env() -> Logger {
        Logger::new(LogLevel::from_env())
    }

    pub fn level(&self) -> LogLevel {
        self.level
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level != LogLevel::Off && level <= self.level
    }

    /// Writes `iothub-jobs:<level> <message>` (redacted) as one line to stderr.
    pub fn log(&self, level: LogLevel, message: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        let line = format_line(level, &message.to_string());
        // One write per line so concurrent clients do not interleave within a line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// The line written when an attempt starts (`verbose`).
    pub fn attempt_started(&self, method: &str, path: &str, attempt: u32, request_id: &str) {
        self.log(
            LogLevel::Verbose,
            format_args!("{method} {path} sending (attempt {attempt}, request-id {request_id})"),
        );
    }

    /// The line written when an attempt ends (`info`): `outcome` is the status or the failure.
    pub fn attempt_finished(
        &self,
        method: &str,
        path: &str,
        outcome: &dyn fmt::Display,
        elapsed: Duration,
        attempt: u32,
        request_id: &str,
    ) {
        self.log(
            LogLevel::Info,
            format_args!(
                "{method} {path} -> {outcome} in {} ms (attempt {attempt}, request-id {request_id})",
                elapsed.as_millis()
            ),
        );
    }

    /// A retry decision (`warning`): `delay` is `None` when the call gives up.
    pub fn retry_decision(
        &self,
        method: &str,
        path: &str,
        delay: Option<Duration>,
        retry: u32,
        max_retries: u32,
        reason: &str,
    ) {
        match delay {
            Some(delay) => self.log(
                LogLevel::Warning,
                format_args!(
                    "{method} {path}: retry {} of {max_retries} in {} ms after: {reason}",
                    retry + 1,
                    delay.as_millis()
                ),
            ),
            None => self.log(
                LogLevel::Warning,
                format_args!("{method} {path}: not retried ({reason})"),
            ),
        }
    }
}

/// `iothub-jobs:<level> <redacted message>\n`, one line (newlines in the message are escaped).
pub fn format_line(level: LogLevel, message: &str) -> String {
    let message = redact(message).replace('\r', "\\r").replace('\n', "\\n");
    format!("{NAMESPACE}:{} {message}\n", level.name())
}

/// What replaces a secret.
pub const REDACTED: &str = "REDACTED";

/// `key=value` forms (matched case-insensitively, value ends at `&`, `;`, `,`, quotes or space);
/// `sig%3D` catches a signature inside a URL-encoded path segment.
const SECRET_PARAMS: &[&str] = &[
    "sig=",
    "sig%3d",
    "sharedaccesskey=",
    "client_secret=",
    "client_assertion=",
    "access_token=",
    "refresh_token=",
    "password=",
];

/// JSON `"key":"value"` forms.
const SECRET_FIELDS: &[&str] = &[
    "\"access_token\"",
    "\"refresh_token\"",
    "\"accesstoken\"",
    "\"token\"",
    "\"client_secret\"",
    "\"sharedaccesskey\"",
];

fn ends_param(c: char) -> bool {
    matches!(c, '&' | ';' | ',' | '"' | '\'' | '<' | '>' | ')') || c.is_whitespace()
}

/// Blanks secrets anywhere in `text`: SAS signatures (`sig=`), connection-string keys,
/// `Bearer` / `SharedAccessSignature` credentials, OAuth secrets and token fields.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for key in SECRET_PARAMS {
        if key.contains('%') {
            // URL-encoded: a raw `?` or `/` cannot be part of the value.
            out = redact_after(&out, key, |c| ends_param(c) || c == '?' || c == '/');
        } else {
            out = redact_after(&out, key, ends_param);
        }
    }
    out = redact_after(&out, "bearer ", |c| {
        c.is_whitespace() || matches!(c, '"' | '\'' | ',')
    });
    for field in SECRET_FIELDS {
        out = redact_json_field(&out, field);
    }
    out
}

/// Replaces the value after every case-insensitive occurrence of `key` up to `end`.
fn redact_after(text: &str, key: &str, end: impl Fn(char) -> bool) -> String {
    // ASCII lower-casing keeps byte offsets.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(key) {
        let value_start = pos + found + key.len();
        let value_end = text[value_start..]
            .find(&end)
            .map_or(text.len(), |i| value_start + i);
        out.push_str(&text[pos..value_start]);
        if value_end > value_start {
            out.push_str(REDACTED);
        }
        pos = value_end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Replaces the string value of every `"field": "…"` (case-insensitive name).
fn redact_json_field(text: &str, field: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(field) {
        let after_name = pos + found + field.len();
        let rest = &text[after_name..];
        let trimmed = rest.trim_start();
        let Some(after_colon) = trimmed.strip_prefix(':') else {
            out.push_str(&text[pos..after_name]);
            pos = after_name;
            continue;
        };
        let value = after_colon.trim_start();
        let Some(inner) = value.strip_prefix('"') else {
            out.push_str(&text[pos..after_name]);
            pos = after_name;
            continue;
        };
        let value_start = text.len() - inner.len();
        // The closing quote, skipping escaped characters.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(value_start + i);
                    break;
                }
                _ => {}
            }
        }
        let value_end = end.unwrap_or(text.len());
        out.push_str(&text[pos..value_start]);
        out.push_str(REDACTED);
        pos = value_end;
    }
    out.push_str(&text[pos..]);
    out
}
