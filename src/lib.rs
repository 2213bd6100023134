//! napi-rs bindings for iothub-jobs: argument shapes, callbacks/promises and JS errors only.
//!
//! Everything that is not JavaScript (HTTP, SAS, connection strings, retries, error
//! classification) lives in the `iothub-jobs-core` crate.

// Raw Node-API calls live in two modules only, each `unsafe` block there with its safety
// argument: `js` (values, references, promises, async context, per-environment state) and
// `completion` (the per-environment completion queue). Everything else is safe code.
#![deny(unsafe_code)]
// In the lib test target napi-rs does not register exported free functions, so they look unused.
#![cfg_attr(test, allow(dead_code))]

mod abort;
mod args;
mod callback;
mod credential;
// Test-only exports (`__panicSync`, `__panicAsync`), never in the production addon.
#[cfg(feature = "test-exports")]
mod diagnostics;
mod errors;
mod job_request;
#[allow(unsafe_code)]
mod js;
mod query;
mod recycle;
mod response;
mod runtime;

mod client;
#[allow(unsafe_code)]
mod completion;
mod fleet;
mod identity;
mod modern;

pub use client::JobClient;
pub use query::Query;
