//! A device identity's `authentication`: how the device proves who it is, as the registry
//! API reads and returns it (`AuthenticationMechanism` of the service's swagger).
//!
//! `sas`: symmetric keys. `selfSigned`: the SHA-1 (or SHA-256) thumbprints of the device's own
//! certificates. `certificateAuthority`: any certificate chaining to a CA the hub trusts, whose
//! common name is the device id. For x509 types the service returns the keys as `null`, and for
//! `certificateAuthority` the thumbprints too.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::errors::{ApiError, ErrorCode};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Authentication {
    #[default]
    Sas,
    SelfSigned {
        primary: Option<String>,
        secondary: Option<String>,
    },
    CertificateAuthority,
}

/// What a login is checked against (`auth::Authenticator::check_device_login`), copied out of
/// the registry so its lock is not held while a signature or a chain is checked.
pub enum Credentials {
    /// SAS: a token for one of these resources (`devices/{id}`, or
    /// `devices/{id}/modules/{mid}`), signed with its keys.
    Keys(Grants),
    Thumbprints([Option<String>; 2]),
    CertificateAuthority,
}

/// Why a device-side client was not admitted (each transport maps it to its own answer).
#[derive(Debug, PartialEq)]
pub enum DeviceAuthError {
    /// No such device, or no such module on it.
    Unknown,
    Disabled,
    /// The SAS token is wrong: what is wrong with it.
    Token(&'static str),
    /// An x509 device's certificate is missing or not the device's: why.
    Certificate(&'static str),
}

/// The resources a SAS client may name in its token, each with the keys it may sign with.
pub type Grants = Vec<(String, [String; 2])>;

fn invalid(text: String) -> ApiError {
    ApiError::new(ErrorCode::ArgumentInvalid, text)
}

/// A thumbprint as the service takes it: 40 (SHA-1) or 64 (SHA-256) hex digits.
fn thumbprint(x509: Option<&Value>, name: &str) -> Result<Option<String>, ApiError> {
    match x509.and_then(|t| t.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s))
            if matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(invalid(format!(
            "x509Thumbprint.{name} must be the 40 (SHA-1) or 64 (SHA-256) hex digits of a certificate's thumbprint"
        ))),
    }
}

impl Authentication {
    /// Reads `authentication` of a device body. Without `type`, thumbprints mean `selfSigned`
    /// and anything else `sas` (azure-iothub's Registry normalizes the same way).
    pub fn from_body(device: &Map<String, Value>) -> Result<Self, ApiError> {
        let auth = device.get("authentication").filter(|a| !a.is_null());
        let x509 = auth.and_then(|a| a.get("x509Thumbprint"));
        let (primary, secondary) = (
            thumbprint(x509, "primaryThumbprint")?,
            thumbprint(x509, "secondaryThumbprint")?,
        );
        let kind = match auth.and_then(|a| a.get("type")) {
            None | Some(Value::Null) if primary.is_some() || secondary.is_some() => "selfSigned",
            None | Some(Value::Null) => "sas",
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(invalid("authentication.type must be a string".into())),
        };
        match kind {
            "sas" => Ok(Self::Sas),
            "selfSigned" if primary.is_none() && secondary.is_none() => Err(invalid(
                "a selfSigned device needs x509Thumbprint.primaryThumbprint or secondaryThumbprint"
                    .into(),
            )),
            "selfSigned" => Ok(Self::SelfSigned { primary, secondary }),
            "certificateAuthority" => Ok(Self::CertificateAuthority),
            other => Err(invalid(format!(
                "authentication.type must be sas, selfSigned or certificateAuthority, not '{other}'"
            ))),
        }
    }

    /// The service's name of the type (`authentication.type`, the twin's `authenticationType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Sas => "sas",
            Self::SelfSigned { .. } => "selfSigned",
            Self::CertificateAuthority => "certificateAuthority",
        }
    }

    /// `x509Thumbprint` as the identity and the twin show it.
    pub fn thumbprints_json(&self) -> Value {
        match self {
            Self::SelfSigned { primary, secondary } => {
                json!({"primaryThumbprint": primary, "secondaryThumbprint": secondary})
            }
            _ => json!({"primaryThumbprint": null, "secondaryThumbprint": null}),
        }
    }

    /// The identity's `authentication` object; keys only for `sas`.
    pub fn identity_json(&self, [primary_key, secondary_key]: [&str; 2]) -> Value {
        let keys = match self {
            Self::Sas => json!({"primaryKey": primary_key, "secondaryKey": secondary_key}),
            _ => json!({"primaryKey": null, "secondaryKey": null}),
        };
        json!({
            "symmetricKey": keys,
            "x509Thumbprint": self.thumbprints_json(),
            "type": self.type_name(),
        })
    }

    /// `resource` is the identity's path (`devices/{id}`); `keys` its SAS keys.
    pub fn credentials(&self, resource: String, keys: [&str; 2]) -> Credentials {
        match self {
            Self::Sas => Credentials::Keys(vec![(resource, keys.map(str::to_string))]),
            Self::SelfSigned { primary, secondary } => {
                Credentials::Thumbprints([primary.clone(), secondary.clone()])
            }
            Self::CertificateAuthority => Credentials::CertificateAuthority,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Authentication, ApiError> {
        Authentication::from_body(v.as_object().unwrap())
    }

    const SHA1: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    #[test]
    fn types_as_the_service_takes_them() {
        assert_eq!(parse(json!({})).unwrap(), Authentication::Sas);
        assert_eq!(
            parse(json!({"authentication": {"symmetricKey": {"primaryKey": "a"}}})).unwrap(),
            Authentication::Sas
        );
        // Thumbprints without a type: selfSigned, as azure-iothub normalizes.
        let self_signed =
            parse(json!({"authentication": {"x509Thumbprint": {"primaryThumbprint": SHA1}}}))
                .unwrap();
        assert_eq!(
            self_signed,
            Authentication::SelfSigned {
                primary: Some(SHA1.into()),
                secondary: None
            }
        );
        assert_eq!(
            self_signed.identity_json(["k1", "k2"]),
            json!({
                "symmetricKey": {"primaryKey": null, "secondaryKey": null},
                "x509Thumbprint": {"primaryThumbprint": SHA1, "secondaryThumbprint": null},
                "type": "selfSigned",
            })
        );
        let ca = parse(json!({"authentication": {"type": "certificateAuthority"}})).unwrap();
        assert_eq!(ca, Authentication::CertificateAuthority);
        assert_eq!(
            ca.identity_json(["k1", "k2"])["x509Thumbprint"],
            json!({"primaryThumbprint": null, "secondaryThumbprint": null})
        );
        assert_eq!(
            Authentication::Sas.identity_json(["k1", "k2"])["symmetricKey"],
            json!({"primaryKey": "k1", "secondaryKey": "k2"})
        );
    }

    #[test]
    fn bad_authentication_is_argument_invalid() {
        for bad in [
            json!({"authentication": {"type": "selfSigned"}}),
            json!({"authentication": {"type": "none"}}),
            json!({"authentication": {"type": 3}}),
            json!({"authentication": {"x509Thumbprint": {"primaryThumbprint": "xyz"}}}),
            json!({"authentication": {"type": "selfSigned", "x509Thumbprint": {"secondaryThumbprint": 7}}}),
        ] {
            assert_eq!(parse(bad).unwrap_err().code, ErrorCode::ArgumentInvalid);
        }
    }
}
