//! End-to-end tests of `JobClient` against loopback HTTPS servers (no mocks of the client).

#[path = "../support/mod.rs"]
mod support;

mod credentials;
mod devices;
mod idempotent;
mod limits;
mod monitor;
mod requests;
mod retry;
mod secrets;
mod timeouts;
mod transport;

/// A JSON value for a `JobRequest` field (the tests' texts are valid JSON).
fn raw(json: &str) -> Box<iothub_jobs_core::RawValue> {
    iothub_jobs_core::json_value("test value", json.to_owned()).unwrap()
}
