//! Pure unit tests of the core crate's public pieces (no network).

mod devices;
mod encoding;
mod errors;
mod matching;
mod parsing;
mod requests;
mod retry_policy;
mod sas;
