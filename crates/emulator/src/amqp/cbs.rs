//! Claims-based security on `$cbs`: a `put-token` request carries a SAS token for a device or
//! module (`name` = the token's `sr`, the token as the body), or a shared access policy's token
//! for the hub itself (`sr` = the host, as azure-iothub's `Client` sends). The hub's own SAS
//! rules decide (`Hub::authenticate_device` as for MQTT, the REST API's policy check), and the
//! answer carries `status-code` 200 or 401 with a `status-description`, as IoT Hub's does (the
//! SDKs turn any other status than 200 into `UnauthorizedError`). A connection may then attach
//! the links of the clients it holds tokens for, or the service's links, until a token expires.
//! [`authorize`] is the one rule every device login path uses (put-token, SASL PLAIN, an x509
//! device's TLS certificate).

use fe2o3_amqp::types::messaging::{ApplicationProperties, MessageId};
use fe2o3_amqp::types::primitives::SimpleValue;
use percent_encoding::percent_decode_str;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::message::{body_bytes, correlated, data_message};
use super::AmqpMessage;
use crate::auth::parse_sas;
use crate::devices::DeviceAuthError;
use crate::errors::ApiError;
use crate::hub::{ConnectError, Hub};

/// The token types IoT Hub accepts on `put-token`.
const TOKEN_TYPES: [&str; 2] = [
    "servicebus.windows.net:sastoken",
    "azure-devices.net:sastoken",
];

/// An audience without its percent-encoding and its scheme: the SDKs name the hub as the
/// token's `sr` (`{host}/devices/{id}`, percent-encoded or not), and uamqp-based clients
/// (Python's azure-iot-hub) as a URL (`https://{host}`), which the service accepts alike.
fn audience_path(audience: &str) -> Option<String> {
    let audience = percent_decode_str(audience).decode_utf8().ok()?;
    Some(match audience.split_once("://") {
        Some((_, rest)) => rest.to_string(),
        None => audience.into_owned(),
    })
}

/// The client id (`{deviceId}` or `{deviceId}/{moduleId}`) a token audience names:
/// `{host}/devices/{id}` or `{host}/devices/{id}/modules/{mid}`.
pub fn audience_client(audience: &str) -> Option<String> {
    let audience = audience_path(audience)?;
    let (_, path) = audience.split_once('/')?;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["devices", d] if !d.is_empty() => Some(d.to_string()),
        ["devices", d, "modules", m] if !d.is_empty() && !m.is_empty() => Some(format!("{d}/{m}")),
        _ => None,
    }
}

/// Whom a login lets a connection act for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grantee {
    /// A device or module (`{deviceId}` or `{deviceId}/{moduleId}`): its links.
    Client(String),
    /// A shared access policy: the service's links (the emulator's one policy, `iothubowner`,
    /// holds every permission, ServiceConnect included).
    Service,
}

/// What a connection may do after a login: act for `to`, until `expires_secs` (the token's
/// `se`; none for a certificate).
#[derive(Debug, PartialEq)]
pub struct Grant {
    pub to: Grantee,
    pub expires_secs: Option<u64>,
}

/// True when a token audience names the hub itself (`{host}`, no path), or its
/// `messages/events` (where a reader is redirected to the events endpoint): a policy token.
fn names_hub(audience: &str) -> bool {
    audience_path(audience).is_some_and(|a| match a.trim_end_matches('/').split_once('/') {
        None => true,
        Some((_, path)) => path.eq_ignore_ascii_case("messages/events"),
    })
}

/// True when a token audience names the events endpoint (`{host}/{name}` and below).
fn names_events(hub: &Hub, audience: &str) -> bool {
    audience_path(audience).is_some_and(|a| {
        a.split('/')
            .nth(1)
            .is_some_and(|entity| entity.eq_ignore_ascii_case(&hub.events().config.name))
    })
}

/// True when a token's resource (`sr`) covers an audience, as Event Hubs checks it: its path
/// (after the host) is the audience's or one of its ancestors, segment by segment.
fn covers(sr: &str, audience: &str) -> bool {
    let path = |a: &str| {
        audience_path(a).map(|p| {
            p.trim_end_matches('/')
                .split('/')
                .skip(1)
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
        })
    };
    match (path(sr), path(audience)) {
        (Some(sr), Some(audience)) => audience.starts_with(&sr),
        _ => false,
    }
}

/// Why a login was not granted.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The credentials do not admit the client: the text says why (never the token).
    Unauthorized(&'static str),
    /// The control API's `refuseConnects` fault: the login is refused as if the hub were
    /// unavailable, so the SDK retries.
    Unavailable,
}

/// The hub's rule for an AMQP login of `client` with a SAS `token` (empty for an x509 device)
/// and the TLS client certificate chain, counting a `refuseConnects` fault like an MQTT CONNECT.
pub fn authorize(
    hub: &Hub,
    client: &str,
    token: &str,
    chain: &[CertificateDer<'_>],
) -> Result<Grant, Refusal> {
    hub.admit(client, Some(token), chain).map_err(|e| match e {
        ConnectError::Unavailable => Refusal::Unavailable,
        ConnectError::NoLogin => Refusal::Unauthorized("no token for this device"),
        ConnectError::Refused(e) => Refusal::Unauthorized(match e {
            DeviceAuthError::Unknown => "the device or module is unknown",
            DeviceAuthError::Disabled => "the device is disabled",
            DeviceAuthError::Token(why) | DeviceAuthError::Certificate(why) => why,
        }),
    })?;
    Ok(Grant {
        to: Grantee::Client(client.to_string()),
        expires_secs: parse_sas(token).ok().map(|t| t.se),
    })
}

/// The REST API's rule for a policy token: it names this hub and one of its policies, and is
/// signed with that policy's key (the refusal never names the token).
fn authorize_service(hub: &Hub, token: &str) -> Result<Grant, ApiError> {
    hub.authorize_service(Some(token))?;
    Ok(Grant {
        to: Grantee::Service,
        expires_secs: parse_sas(token).ok().map(|t| t.se),
    })
}

/// A shared access policy's own login (SASL PLAIN `{policy}@sas.root.{hubName}`): a token of
/// that policy (`skn`) for the hub (`sr` as a policy audience names it, not a device's), checked
/// as the REST API checks one; the refusal never names the token.
pub fn authorize_policy(hub: &Hub, policy: &str, token: &str) -> Result<Grant, String> {
    let Ok(parsed) = parse_sas(token) else {
        return Err("the password is not a SAS token".into());
    };
    if parsed.skn.as_deref() != Some(policy) {
        return Err("the password is not a SAS token of the policy the username names".into());
    }
    if !names_hub(&parsed.sr) {
        return Err("the token's resource (sr) is not the hub or its messages/events".into());
    }
    authorize_service(hub, token).map_err(|e| e.message)
}

/// Checks a put-token request: what it grants (when accepted) and the reply, or
/// `Refusal::Unavailable` when the request is refused without a reply (a `refuseConnects`
/// fault).
pub fn put_token(
    hub: &Hub,
    request: &AmqpMessage,
    chain: &[CertificateDer<'_>],
) -> Result<(Option<Grant>, AmqpMessage), Refusal> {
    let prop = |name: &str| match request.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.as_str().to_string()),
        _ => None,
    };
    let parsed = || -> Result<(String, String), (i32, &'static str)> {
        if prop("operation").as_deref() != Some("put-token") {
            return Err((400, "only the put-token operation is supported"));
        }
        if !prop("type").is_some_and(|t| TOKEN_TYPES.contains(&t.as_str())) {
            return Err((
                400,
                "the token type must be servicebus.windows.net:sastoken",
            ));
        }
        let audience = prop("name").ok_or((400, "the request names no audience"))?;
        Ok((
            audience,
            String::from_utf8_lossy(&body_bytes(request)).into_owned(),
        ))
    };
    let checked: Result<Grant, (i32, String)> = match parsed() {
        Err((status, why)) => Err((status, why.into())),
        Ok((audience, token)) if names_hub(&audience) => {
            authorize_service(hub, &token).map_err(|e| (401, e.message))
        }
        // A policy token for the events endpoint (`sb://{host}/{name}…`), signed as Event
        // Hubs clients sign.
        Ok((audience, token)) if names_events(hub, &audience) => hub
            .authorize_events(&token)
            // CBS answers with a status and text (401), not an AMQP condition.
            .map_err(|e| e.message)
            .and_then(|_| {
                let sr = parse_sas(&token).map(|t| t.sr).unwrap_or_default();
                if covers(&sr, &audience) {
                    Ok(Grant {
                        to: Grantee::Service,
                        expires_secs: parse_sas(&token).ok().map(|t| t.se),
                    })
                } else {
                    Err(
                        "Unauthorized: the token's resource (sr) does not cover the audience"
                            .into(),
                    )
                }
            })
            .map_err(|why| (401, why)),
        Ok((audience, token)) => match audience_client(&audience) {
            None => Err((
                401,
                "the audience names no device or module of this hub".into(),
            )),
            Some(client) => match authorize(hub, &client, &token, chain) {
                Ok(grant) => Ok(grant),
                Err(Refusal::Unauthorized(why)) => Err((401, why.into())),
                Err(Refusal::Unavailable) => return Err(Refusal::Unavailable),
            },
        },
    };
    let (grant, status, description) = match checked {
        Ok(grant) => (Some(grant), 200, "OK".to_string()),
        Err((status, why)) => {
            eprintln!("iothub-emulator: AMQP put-token refused: {why}");
            (None, status, why)
        }
    };
    // The reply correlates with the request's message id as it was sent: uamqp (the C library
    // under Python's SDKs) sends a ulong and matches only a ulong back.
    let message_id = request
        .properties
        .as_ref()
        .and_then(|p| p.message_id.clone())
        .unwrap_or(MessageId::String(String::new()));
    let mut reply = correlated(data_message(Vec::new()), message_id);
    reply.application_properties = Some(
        ApplicationProperties::builder()
            .insert("status-code", SimpleValue::Int(status))
            .insert("status-description", SimpleValue::String(description))
            .build(),
    );
    Ok((grant, reply))
}

#[cfg(test)]
mod tests {
    use super::{audience_client, names_hub};

    #[test]
    fn a_policy_audience_names_the_hub_with_or_without_a_scheme() {
        assert!(names_hub("hub.example.net"));
        assert!(names_hub("hub.example.net/"));
        // uamqp (Python's azure-iot-hub) names the hub as a URL.
        assert!(names_hub("https://hub.example.net"));
        assert!(names_hub("amqps%3A%2F%2Fhub.example.net"));
        assert!(!names_hub("hub.example.net/devices/d1"));
        assert!(!names_hub("https://hub.example.net/devices/d1"));
        // Where the hub redirects readers to the events endpoint.
        assert!(names_hub("hub.example.net/messages/events"));
        assert!(names_hub("sb://hub.example.net/Messages/Events/"));
        assert!(!names_hub("hub.example.net/messages/devicebound"));
    }

    #[test]
    fn an_events_token_covers_its_entity_and_below() {
        use super::covers;
        let audience = "sb://h:1/hub/ConsumerGroups/$default/Partitions/0";
        assert!(covers("sb://h:1/hub", audience));
        assert!(covers("sb://h:1/HUB/consumergroups", audience));
        assert!(covers("h:1", audience), "a token for the whole namespace");
        assert!(!covers("sb://h:1/other", audience));
        assert!(!covers("sb://h:1/hub/ConsumerGroups/x", audience));
        assert!(!covers("sb://h:1/hu", audience), "whole segments only");
    }

    #[test]
    fn a_client_audience_names_its_device_or_module() {
        assert_eq!(audience_client("hub/devices/d1").as_deref(), Some("d1"));
        assert_eq!(
            audience_client("hub%2Fdevices%2Fd1%2Fmodules%2Fm1").as_deref(),
            Some("d1/m1")
        );
        assert_eq!(
            audience_client("https://hub/devices/d1").as_deref(),
            Some("d1")
        );
        assert_eq!(audience_client("hub"), None);
        assert_eq!(audience_client("https://hub"), None);
        assert_eq!(audience_client("hub/devices/"), None);
    }
}
