//! IoT Hub error codes and the classic error envelope the service puts on the wire.
//!
//! Every error answer carries the `iothub-errorcode` header and the classic body
//! `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:…-TimeStamp:…"}`,
//! because that is the envelope every released SDK understands.

use std::fmt;

use chrono::{DateTime, Utc};
use hyper::StatusCode;

/// The IoT Hub error codes the emulator can answer with (names and numbers from the service).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidProtocolVersion,
    ArgumentInvalid,
    IotHubFormatError,
    DeviceDefinedMultipleTimes,
    InvalidDeviceScope,
    IotHubUnauthorizedAccess,
    IotHubQuotaExceeded,
    JobQuotaExceeded,
    DeviceMaximumActiveFileUploadLimitExceeded,
    DeviceNotFound,
    JobNotFound,
    DeviceNotOnline,
    DeviceAlreadyExists,
    JobAlreadyExists,
    ModuleNotFound,
    ModuleAlreadyExistsOnDevice,
    PreconditionFailed,
    MessageTooLarge,
    ThrottlingException,
    ThrottlingMaxActiveJobCountExceeded,
    ServerError,
    ServiceUnavailable,
    GatewayTimeout,
    InvalidConfigurationTargetCondition,
    InvalidConfigurationContent,
    CannotModifyImmutableConfigurationContent,
    InvalidConfigurationCustomMetricsQuery,
    ConfigurationNotFound,
    ConfigurationAlreadyExists,
    ConfigurationCountLimitExceeded,
    /// Not an IoT Hub code: a path the hub does not serve.
    NotFound,
    /// Not an IoT Hub code: a method the resource does not support.
    MethodNotAllowed,
}

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidProtocolVersion => "InvalidProtocolVersion",
            Self::ArgumentInvalid => "ArgumentInvalid",
            Self::IotHubFormatError => "IotHubFormatError",
            Self::DeviceDefinedMultipleTimes => "DeviceDefinedMultipleTimes",
            Self::InvalidDeviceScope => "InvalidDeviceScope",
            Self::IotHubUnauthorizedAccess => "IotHubUnauthorizedAccess",
            Self::IotHubQuotaExceeded => "IotHubQuotaExceeded",
            Self::JobQuotaExceeded => "JobQuotaExceeded",
            Self::DeviceMaximumActiveFileUploadLimitExceeded => {
                "DeviceMaximumActiveFileUploadLimitExceeded"
            }
            Self::DeviceNotFound => "DeviceNotFound",
            Self::JobNotFound => "JobNotFound",
            Self::DeviceNotOnline => "DeviceNotOnline",
            Self::DeviceAlreadyExists => "DeviceAlreadyExists",
            Self::JobAlreadyExists => "JobAlreadyExists",
            Self::ModuleNotFound => "ModuleNotFound",
            Self::ModuleAlreadyExistsOnDevice => "ModuleAlreadyExistsOnDevice",
            Self::PreconditionFailed => "PreconditionFailed",
            Self::MessageTooLarge => "MessageTooLarge",
            Self::ThrottlingException => "ThrottlingException",
            Self::ThrottlingMaxActiveJobCountExceeded => "ThrottlingMaxActiveJobCountExceeded",
            Self::ServerError => "ServerError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::GatewayTimeout => "GatewayTimeout",
            Self::InvalidConfigurationTargetCondition => "InvalidConfigurationTargetCondition",
            Self::InvalidConfigurationContent => "InvalidConfigurationContent",
            Self::CannotModifyImmutableConfigurationContent => {
                "CannotModifyImmutableConfigurationContent"
            }
            Self::InvalidConfigurationCustomMetricsQuery => {
                "InvalidConfigurationCustomMetricsQuery"
            }
            Self::ConfigurationNotFound => "ConfigurationNotFound",
            Self::ConfigurationAlreadyExists => "ConfigurationAlreadyExists",
            Self::ConfigurationCountLimitExceeded => "ConfigurationCountLimitExceeded",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
        }
    }

    /// The six-digit code used by the newer envelopes and by device-job error rows.
    pub fn number(self) -> u32 {
        match self {
            Self::InvalidProtocolVersion => 400001,
            Self::ArgumentInvalid => 400004,
            Self::IotHubFormatError => 400006,
            // Numbered in the order of the service swagger's error-code enum (400000 upwards).
            Self::DeviceDefinedMultipleTimes => 400011,
            Self::InvalidDeviceScope => 400028,
            Self::IotHubUnauthorizedAccess => 401002,
            Self::IotHubQuotaExceeded => 403002,
            Self::JobQuotaExceeded => 403003,
            Self::DeviceMaximumActiveFileUploadLimitExceeded => 403006,
            Self::DeviceNotFound => 404001,
            Self::JobNotFound => 404002,
            Self::DeviceNotOnline => 404103,
            Self::DeviceAlreadyExists => 409001,
            Self::JobAlreadyExists => 409004,
            Self::ModuleNotFound => 404010,
            Self::ModuleAlreadyExistsOnDevice => 409301,
            Self::PreconditionFailed => 412001,
            Self::MessageTooLarge => 413001,
            Self::ThrottlingException => 429001,
            Self::ThrottlingMaxActiveJobCountExceeded => 429004,
            Self::ServerError => 500001,
            Self::ServiceUnavailable => 503001,
            Self::GatewayTimeout => 504101,
            // The configuration codes are numbered the same way: by their place in the swagger's
            // enum, counted from the first code of their status (the service publishes none).
            Self::InvalidConfigurationTargetCondition => 400048,
            Self::InvalidConfigurationContent => 400049,
            Self::CannotModifyImmutableConfigurationContent => 400050,
            Self::InvalidConfigurationCustomMetricsQuery => 400051,
            Self::ConfigurationNotFound => 404028,
            Self::ConfigurationAlreadyExists => 409019,
            Self::ConfigurationCountLimitExceeded => 413004,
            Self::NotFound => 404000,
            Self::MethodNotAllowed => 405000,
        }
    }

    pub fn status(self) -> StatusCode {
        StatusCode::from_u16((self.number() / 1000) as u16)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// An error answer: the status comes from the code, the text is for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The classic envelope body, stamped with `now` and a fresh tracking id.
    pub fn envelope(&self, now: DateTime<Utc>) -> String {
        let body = serde_json::json!({
            "Message": format!("ErrorCode:{};{}", self.code.name(), self.message),
            "ExceptionMessage": format!(
                "Tracking ID:{}-G:0-TimeStamp:{}",
                tracking_id(),
                now.format("%m/%d/%Y %H:%M:%S")
            ),
        });
        body.to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.name(),
            self.code.number(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// 32 hex digits, like the service's tracking ids; only needs to be unique-ish, not secret.
pub fn tracking_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn status_follows_the_code() {
        assert_eq!(ErrorCode::JobNotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorCode::DeviceNotOnline.status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorCode::JobAlreadyExists.status(), StatusCode::CONFLICT);
        assert_eq!(
            ErrorCode::ThrottlingMaxActiveJobCountExceeded.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            ErrorCode::IotHubUnauthorizedAccess.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ErrorCode::InvalidProtocolVersion.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ErrorCode::MessageTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ErrorCode::ServiceUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn classic_envelope_shape() {
        let now = Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap();
        let err = ApiError::new(ErrorCode::JobNotFound, "Job 'j1' not found; really");
        let body: serde_json::Value = serde_json::from_str(&err.envelope(now)).unwrap();
        assert_eq!(
            body["Message"],
            "ErrorCode:JobNotFound;Job 'j1' not found; really"
        );
        let exc = body["ExceptionMessage"].as_str().unwrap();
        assert!(exc.starts_with("Tracking ID:"), "{exc}");
        assert!(exc.ends_with("-G:0-TimeStamp:03/05/2024 07:08:09"), "{exc}");
        let id = &exc["Tracking ID:".len()..exc.find("-G:").unwrap()];
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(body.as_object().unwrap().len(), 2);
    }
}

/// Why the emulator cannot start, or cannot rebuild its hub (a reset): bad configuration or
/// arguments, a file that cannot be read, a port in use, a data dir that cannot be opened.
/// One line that says what and why, never a secret (a key, a token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartError(String);

impl StartError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A message built where it happens (`format!`).
impl From<String> for StartError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> Self {
        Self(message.to_string())
    }
}

/// Its text, for an answer that carries one (the control API's 400).
impl From<StartError> for String {
    fn from(e: StartError) -> Self {
        e.0
    }
}
