//! Pure-Rust Azure IoT Hub jobs client: the core of the `iothub-jobs` npm package.
//!
//! Everything that is not JavaScript lives here: connection strings, SAS tokens, credential
//! providers, the HTTPS pipeline (retry, timeouts, body cap), job operations and error
//! classification. The napi binding (`src/` of the root crate) is a thin layer over [`JobClient`].

#[cfg(feature = "azure-identity")]
pub mod azure_identity;
pub mod connection_string;
pub mod credential;
pub mod devices;
pub mod encoding;
pub mod error;
pub mod fleet;
pub mod http;
pub mod jobs;
pub mod log;
pub mod monitor;
pub mod options;
pub mod request;
pub mod response;
pub mod sas;
pub mod shared_access_signature;
pub mod time;

pub use credential::{AccessToken, TokenCredential, IOTHUB_TOKEN_SCOPE};
pub use devices::PageRequest;
pub use error::{CredentialError, Error, ErrorClass};
pub use jobs::JobClient;
pub use monitor::{WaitError, WaitOptions};
pub use options::{ClientOptions, Clock, RetryOptions, SystemClock};
pub use request::{json_value, CloudToDeviceMethod, JobKind, JobQuery, JobRequest, RawValue};
pub use response::Response;
