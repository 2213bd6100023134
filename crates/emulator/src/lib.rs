//! iothub-emulator: a local Azure IoT Hub for jobs, twins, devices and queries.
//! It shares no code with the client crates, so it cannot inherit the client's bugs.

pub mod amqp;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod configurations;
pub mod control;
pub mod device_http;
pub mod device_message;
pub mod devices;
pub mod errors;
pub mod events;
pub mod faults;
pub mod gateway_fault;
pub mod hub;
pub mod import_export;
pub mod jobs;
pub mod limits;
pub mod listeners;
pub mod locks;
pub mod mqtt;
pub mod paging;
pub mod query;
pub mod record;
pub mod response;
pub mod routing;
mod run;
pub mod server;
pub mod storage;
pub mod store;
pub mod tls;
pub mod twin;
pub mod websocket;
pub mod x509;

pub use run::{run, run_until, Ready};

#[cfg(test)]
mod persistence_tests;
#[cfg(test)]
mod test_dir;
