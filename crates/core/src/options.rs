//! Client configuration: trust, retry, timeouts, identity strings, proxy, and the clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The API version every official SDK sends.
pub const DEFAULT_API_VERSION: &str = "2021-04-12";

/// Our User-Agent (an allowed difference from `azure-iothub/1.16.6`).
pub const DEFAULT_USER_AGENT: &str = concat!("iothub-jobs/", env!("CARGO_PKG_VERSION"));

/// Source of wall-clock time. Injectable so token renewal can be tested with a fake clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Retry settings. Delays use exponential backoff with full jitter:
/// attempt `n` (0-based) waits a uniform random time in `[0, min(max_delay, base * 2^n)]`, where
/// `base` is `throttle_initial_delay` after a 429 and `initial_delay` otherwise. A server-given
/// `Retry-After` / `retry-after-ms` replaces the computed delay (capped at `max_delay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOptions {
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Base delay after a 429 (IoT Hub often throttles without `Retry-After`).
    pub throttle_initial_delay: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            // Enough for a hub that fails a third of the attempts (0.3^11 ≈ 2e-6 per call);
            // the call timeout bounds the total wait.
            max_retries: 10,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            throttle_initial_delay: Duration::from_secs(2),
        }
    }
}

/// Options for all three factories.
#[derive(Clone)]
pub struct ClientOptions {
    /// Extra trusted CA certificate(s), PEM. Added to Mozilla's roots (what Node trusts) and to the certificates in
    /// the file named by `NODE_EXTRA_CA_CERTS` (read when the client is built, as Node does).
    pub ca_pem: Option<String>,
    /// `None` never retries: exactly the reference's behaviour.
    pub retry: Option<RetryOptions>,
    /// Bound on one attempt (connect + send + whole response). `None`: unbounded.
    pub attempt_timeout: Option<Duration>,
    /// Bound on the whole call, retries and backoff included. `None`: unbounded.
    pub call_timeout: Option<Duration>,
    pub user_agent: String,
    pub api_version: String,
    /// Explicit proxy URL (`http://[user:pass@]host:port`). When `None`, `HTTPS_PROXY` /
    /// `https_proxy` / `ALL_PROXY` and `NO_PROXY` from the environment apply.
    pub proxy: Option<String>,
    /// Wall clock used for SAS expiry and token refresh decisions.
    pub clock: Arc<dyn Clock>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_pem: None,
            retry: Some(RetryOptions::default()),
            attempt_timeout: Some(Duration::from_secs(60)),
            call_timeout: Some(Duration::from_secs(300)),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            api_version: DEFAULT_API_VERSION.to_string(),
            proxy: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("retry", &self.retry)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("user_agent", &self.user_agent)
            .field("api_version", &self.api_version)
            // A proxy URL may carry credentials.
            .field("proxy", &self.proxy.as_ref().map(|_| "<proxy>"))
            .finish_non_exhaustive()
    }
}
