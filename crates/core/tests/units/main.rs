//! Pure unit tests of the core crate's public pieces (no network).

mod devices;
mod encoding;
mod errors;
mod matching;
mod parsing;
mod requests;
mod retry_policy;
mod sas;

/// A JSON value for a `JobRequest` field (the tests' texts are valid JSON).
fn raw(json: &str) -> Box<iothub_jobs_core::RawValue> {
    iothub_jobs_core::json_value("test value", json.to_owned()).unwrap()
}
