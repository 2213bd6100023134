//! When to retry and how long to wait.

use std::time::{Duration, SystemTime};

use crate::error::Error;
use crate::options::RetryOptions;
use crate::time::parse_http_date;

/// The longest server-requested delay we honour (a guard against absurd `Retry-After`s).
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(300);

/// Exponential backoff with full jitter; `Retry-After` / `retry-after-ms` /
/// `x-ms-retry-after-ms` honoured; a larger base after 429.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    options: Option<RetryOptions>,
}

impl RetryPolicy {
    pub fn new(options: Option<RetryOptions>) -> Self {
        RetryPolicy { options }
    }

    pub fn max_retries(&self) -> u32 {
        self.options.as_ref().map_or(0, |o| o.max_retries)
    }

    /// The delay before retry number `retry` (0-based) after `error`, or `None` when the error
    /// is final (not transient, or retries exhausted). `random` is uniform in `[0, 1)`.
    pub fn delay(
        &self,
        retry: u32,
        error: &Error,
        now: SystemTime,
        random: f64,
    ) -> Option<Duration> {
        let options = self.options.as_ref()?;
        if retry >= options.max_retries || !error.is_transient() {
            return None;
        }
        if let Some(server) = error.response().and_then(|r| server_delay(r, now)) {
            return Some(server.min(MAX_SERVER_DELAY));
        }
        let throttled = error.response().is_some_and(|r| r.status == 429);
        let base = if throttled {
            options.throttle_initial_delay
        } else {
            options.initial_delay
        };
        Some(backoff_ceiling(base, options.max_delay, retry).mul_f64(random.clamp(0.0, 1.0)))
    }
}

/// `min(max, base * 2^retry)`.
pub fn backoff_ceiling(base: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.min(31));
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// A delay the server asked for: `retry-after-ms` / `x-ms-retry-after-ms` (milliseconds), or
/// `Retry-After` as seconds or an HTTP date.
pub fn server_delay(response: &crate::response::Response, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = response
            .header(name)
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_secs_f64((ms / 1000.0).min(1e9)));
            }
        }
    }
    let value = response.header("retry-after")?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(1e9)));
        }
        return None;
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
