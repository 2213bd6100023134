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
