//! The one error type, classified once: JS class, message, transient or not.
//!
//! Service errors follow `azure-iothub`'s `translateError` (status → class), with our allowed
//! differences: all three IoT Hub error envelopes are understood, the `iothub-errorcode` header
//! wins over the body, `JobNotFound` is a `JobNotFoundError`, and the text after
//! `ErrorCode:<Code>;` is kept whole.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::response::Response;

/// Largest response body we accept.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

macro_rules! error_classes {
    ($($variant:ident => $name:literal,)*) => {
        /// The JS error classes of `azure-iot-common` (plus plain `Error`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorClass { $($variant,)* }

        impl ErrorClass {
            /// Every class, in declaration order.
            pub const ALL: &'static [ErrorClass] = &[$(ErrorClass::$variant,)*];

            /// The JS class name (`DeviceRegistrationFailedError`'s instances are named
            /// `ProvisioningRegistrationFailedError` in the reference; that is the binding's concern).
            pub fn name(&self) -> &'static str {
                match self { $(ErrorClass::$variant => $name,)* }
            }
        }
    };
}

error_classes! {
    Error => "Error",
    ArgumentError => "ArgumentError",
    ArgumentOutOfRangeError => "ArgumentOutOfRangeError",
    DeviceMaximumQueueDepthExceededError => "DeviceMaximumQueueDepthExceededError",
    DeviceNotFoundError => "DeviceNotFoundError",
    FormatError => "FormatError",
    UnauthorizedError => "UnauthorizedError",
    NotImplementedError => "NotImplementedError",
    NotConnectedError => "NotConnectedError",
    IotHubQuotaExceededError => "IotHubQuotaExceededError",
    MessageTooLargeError => "MessageTooLargeError",
    InternalServerError => "InternalServerError",
    ServiceUnavailableError => "ServiceUnavailableError",
    IotHubNotFoundError => "IotHubNotFoundError",
    IoTHubSuspendedError => "IoTHubSuspendedError",
    JobNotFoundError => "JobNotFoundError",
    TooManyDevicesError => "TooManyDevicesError",
    ThrottlingError => "ThrottlingError",
    DeviceAlreadyExistsError => "DeviceAlreadyExistsError",
    DeviceMessageLockLostError => "DeviceMessageLockLostError",
    InvalidEtagError => "InvalidEtagError",
    InvalidOperationError => "InvalidOperationError",
    PreconditionFailedError => "PreconditionFailedError",
    TimeoutError => "TimeoutError",
    BadDeviceResponseError => "BadDeviceResponseError",
    GatewayTimeoutError => "GatewayTimeoutError",
    DeviceTimeoutError => "DeviceTimeoutError",
    CloudToDeviceDetachedError => "CloudToDeviceDetachedError",
    DeviceMethodsDetachedError => "DeviceMethodsDetachedError",
    TwinDetachedError => "TwinDetachedError",
    TwinRequestError => "TwinRequestError",
    OperationCancelledError => "OperationCancelledError",
    DeviceRegistrationFailedError => "DeviceRegistrationFailedError",
    SecurityDeviceError => "SecurityDeviceError",
}

impl ErrorClass {
    /// The class for a status alone (404 without a known code is plain `Error`).
    pub fn for_status(status: u16) -> ErrorClass {
        match status {
            400 => ErrorClass::ArgumentError,
            401 => ErrorClass::UnauthorizedError,
            403 => ErrorClass::TooManyDevicesError,
            408 => ErrorClass::DeviceTimeoutError,
            409 => ErrorClass::DeviceAlreadyExistsError,
            412 => ErrorClass::InvalidEtagError,
            429 => ErrorClass::ThrottlingError,
            500 => ErrorClass::InternalServerError,
            502 => ErrorClass::BadDeviceResponseError,
            503 => ErrorClass::ServiceUnavailableError,
            504 => ErrorClass::GatewayTimeoutError,
            _ => ErrorClass::Error,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An opaque failure of a token credential (`TokenCredential::get_token`), handed back to the
/// caller unchanged (the binding stores the original JS error inside and downcasts it back).
/// It lives here, beside [`Error::Credential`] that carries it, so that the error module needs
/// nothing from the credential providers.
#[derive(Clone)]
pub struct CredentialError(pub Arc<dyn std::error::Error + Send + Sync>);

impl CredentialError {
    pub fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        CredentialError(Arc::new(err))
    }
}

impl fmt::Debug for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CredentialError").field(&self.0).finish()
    }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for CredentialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Everything a call can fail with. `Display` is the JS `message`; it never contains a secret.
#[derive(Debug, Clone)]
pub enum Error {
    /// Bad input detected before sending (connection string, SAS, header-bound values).
    Argument { class: ErrorClass, message: String },
    /// A response with status ≥ 300, translated.
    Service {
        class: ErrorClass,
        message: String,
        /// Boxed to keep `Result<_, Error>` small.
        response: Box<Response>,
        /// IoT Hub error code name (`JobNotFound`, `ThrottlingException`, …) from the
        /// `iothub-errorcode` header or the body; numeric codes are mapped to names when known.
        code: Option<String>,
    },
    /// A per-attempt or per-call timeout expired.
    Timeout { message: String },
    /// The connection failed (refused, reset, TLS, DNS, proxy…).
    Transport { message: String },
    /// The token credential failed: the original error, unchanged.
    Credential(CredentialError),
    /// The token credential resolved without a token.
    TokenCreationFailed,
    /// Detected locally, e.g. an expired shared access signature.
    Unauthorized { message: String },
    /// The response body exceeded the limit.
    ResponseTooLarge { limit: usize },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Argument { class, .. } | Error::Service { class, .. } => *class,
            Error::Timeout { .. } => ErrorClass::TimeoutError,
            Error::Unauthorized { .. } => ErrorClass::UnauthorizedError,
            Error::Transport { .. }
            | Error::Credential(_)
            | Error::TokenCreationFailed
            | Error::ResponseTooLarge { .. } => ErrorClass::Error,
        }
    }

    /// Worth another attempt: 408, 429, 500, 503, 504, connection errors, attempt timeouts.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Service { response, .. } => is_transient_status(response.status),
            Error::Transport { .. } | Error::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The HTTP response behind a service error.
    pub fn response(&self) -> Option<&Response> {
        match self {
            Error::Service { response, .. } => Some(response),
            _ => None,
        }
    }

    /// The IoT Hub error code of a service error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Service { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn argument(message: impl Into<String>) -> Self {
        Error::Argument {
            class: ErrorClass::ArgumentError,
            message: message.into(),
        }
    }

    pub(crate) fn format(message: impl Into<String>) -> Self {
        Error::Argument {
            class: ErrorClass::FormatError,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Argument { message, .. }
            | Error::Service { message, .. }
            | Error::Timeout { message }
            | Error::Transport { message }
            | Error::Unauthorized { message } => f.write_str(message),
            Error::Credential(err) => fmt::Display::fmt(err, f),
            Error::TokenCreationFailed => f.write_str("AccessToken creation failed"),
            Error::ResponseTooLarge { limit } => write!(
                f,
                "The response body is larger than the limit of {limit} bytes; it was not read"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Credential(err) => Some(err),
            _ => None,
        }
    }
}

/// Statuses a retry may cure.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 503 | 504)
}

/// "outer: inner: innermost", skipping messages already contained in their parent's.
pub(crate) fn error_chain_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let mut text = e.to_string();
        // rustls appends a documentation link to some messages; it is noise in an error.
        if let Some(pos) = text.find(": https://docs.rs/") {
            text.truncate(pos);
        }
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    if parts.is_empty() {
        "connection error".to_string()
    } else {
        parts.join(": ")
    }
}

/// What an error body says, from whichever envelope it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Parses the three IoT Hub error envelopes:
/// 1. `{"Message":"ErrorCode:<Name>;<text>", …}` (text kept whole, `;` included);
/// 2. `{"Message":"{\"errorCode\":404001,…,\"message\":\"…\"}", …}`;
/// 3. `{"errorCode":400004,"message":"…", …}`.
pub fn parse_error_body(body: &[u8]) -> Option<ErrorBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    if let Some(Value::String(message)) = obj.get("Message") {
        if let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(message) {
            if let Some(found) = bare_envelope(&inner) {
                return Some(found);
            }
        }
        // Like the reference: the part before the first ';' is "<anything>:<Code>[:…]".
        if let Some((head, text)) = message.split_once(';') {
            let code = head.split(':').nth(1).unwrap_or("");
            if !code.is_empty() && !text.is_empty() {
                return Some(ErrorBody {
                    code: Some(code.to_string()),
                    message: Some(text.to_string()),
                });
            }
        }
        return None;
    }
    bare_envelope(obj)
}

fn bare_envelope(obj: &serde_json::Map<String, Value>) -> Option<ErrorBody> {
    let code = match obj.get("errorCode").or_else(|| obj.get("ErrorCode"))? {
        Value::Number(n) => Some(code_name(&n.to_string())),
        Value::String(s) if !s.is_empty() => Some(code_name(s)),
        _ => None,
    };
    let message = match obj.get("message").or_else(|| obj.get("Message")) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    if code.is_none() && message.is_none() {
        return None;
    }
    Some(ErrorBody { code, message })
}

/// Maps a numeric IoT Hub error code to its name; names and unknown numbers pass through.
pub fn code_name(code: &str) -> String {
    let name = match code {
        "400001" => "InvalidProtocolVersion",
        "400004" => "ArgumentInvalid",
        "400006" => "IotHubFormatError",
        "401002" => "IotHubUnauthorizedAccess",
        "403002" => "IotHubQuotaExceeded",
        "403003" => "JobQuotaExceeded",
        "404001" => "DeviceNotFound",
        "404002" => "JobNotFound",
        "404103" => "DeviceNotOnline",
        "409001" => "DeviceAlreadyExists",
        "412001" => "PreconditionFailed",
        "413001" => "MessageTooLarge",
        "429001" => "ThrottlingException",
        "429002" => "ThrottleBacklogLimitExceeded",
        "429003" => "ThrottlingBacklogTimeout",
        "429004" => "ThrottlingMaxActiveJobCountExceeded",
        "500001" => "ServerError",
        "503001" => "ServiceUnavailable",
        other => other,
    };
    name.to_string()
}

/// Turns a response with status ≥ 300 into an [`Error::Service`].
pub fn translate_response(response: Response) -> Error {
    let parsed = parse_error_body(&response.body);
    let header_code = response
        .header("iothub-errorcode")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(code_name);
    let code = header_code.or_else(|| parsed.as_ref().and_then(|p| p.code.clone()));
    // A hub or proxy may quote the request's credentials back in its error text: the message is
    // scrubbed (the raw body stays available as `responseBody`, as the server sent it).
    let message = crate::log::redact(&match parsed.as_ref().and_then(|p| p.message.clone()) {
        Some(m) => m,
        None => format!("Error: {}", response.text()),
    });
    let (class, message) = match response.status {
        404 => {
            // The reference says "Not found" for every 404: that text rather than a bare
            // "Error: " when the class comes from the `iothub-errorcode` header of an empty body.
            let message = if response.body.trim_ascii().is_empty() {
                "Not found".to_string()
            } else {
                message
            };
            match code.as_deref() {
                Some("DeviceNotFound") => (ErrorClass::DeviceNotFoundError, message),
                Some("IotHubNotFound") => (ErrorClass::IotHubNotFoundError, message),
                Some("JobNotFound") => (ErrorClass::JobNotFoundError, message),
                _ => (ErrorClass::Error, "Not found".to_string()),
            }
        }
        status => (ErrorClass::for_status(status), message),
    };
    Error::Service {
        class,
        message,
        response: Box::new(response),
        code,
    }
}
