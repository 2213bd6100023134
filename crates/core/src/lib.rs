//! Azure IoT Hub jobs client core: connection strings, SAS, credentials, HTTP pipeline, jobs.
