//! iothub-emulator: a local Azure IoT Hub for jobs, twins, devices and queries.
//! It shares no code with the client crates, so it cannot inherit the client's bugs.

pub mod query;
