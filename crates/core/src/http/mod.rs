//! The HTTPS pipeline: connection (TLS, trust, proxy), sending with timeouts and a body cap,
//! and the retry policy.

pub mod connector;
pub mod pipeline;
pub mod retry;

pub use pipeline::{Pipeline, RequestOutcome};
pub use retry::RetryPolicy;
