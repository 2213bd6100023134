//! Claims-based security on `$cbs`: a `put-token` request carries a SAS token for a device or
//! module (`name` = the token's `sr`, the token as the body), or a shared access policy's token
//! for the hub itself (`sr` = the host, as azure-iothub's `Client` sends); the hub's own SAS
//! rules decide (`Hub::authenticate_device` as for MQTT, the REST API's policy check), and the
//! answer carries `status-code` 200 or 401 as IoT Hub's does. A connection may then attach the
//! links of the clients it holds tokens for, or the service's links.

use fe2o3_amqp::types::messaging::{ApplicationProperties, MessageId};
use fe2o3_amqp::types::primitives::SimpleValue;
use percent_encoding::percent_decode_str;

use super::device::{body_bytes, correlated, data_message, id_text};
use super::AmqpMessage;
use crate::clock::wall_secs;
use crate::devices::DeviceAuthError;
use crate::hub::Hub;

/// What an accepted token lets the connection do.
#[derive(Debug, PartialEq)]
pub enum Grant {
    /// Speak for this device or module (`{deviceId}` or `{deviceId}/{moduleId}`).
    Client(String),
    /// Use the service's links (a policy token; the emulator's one policy, `iothubowner`,
    /// holds every permission, ServiceConnect included).
    Service,
}

/// The token types IoT Hub accepts on `put-token`.
const TOKEN_TYPES: [&str; 2] = [
    "servicebus.windows.net:sastoken",
    "azure-devices.net:sastoken",
];

/// The client id (`{deviceId}` or `{deviceId}/{moduleId}`) a token audience names:
/// `{host}/devices/{id}` or `{host}/devices/{id}/modules/{mid}`, percent-encoded as the
/// token's `sr` (what the SDKs send) or not.
pub fn audience_client(audience: &str) -> Option<String> {
    let audience = percent_decode_str(audience).decode_utf8().ok()?;
    let (_, path) = audience.split_once('/')?;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["devices", d] if !d.is_empty() => Some(d.to_string()),
        ["devices", d, "modules", m] if !d.is_empty() && !m.is_empty() => Some(format!("{d}/{m}")),
        _ => None,
    }
}

/// True when a token audience names the hub itself (`{host}`, no path): a policy token.
fn names_hub(audience: &str) -> bool {
    let audience = percent_decode_str(audience).decode_utf8_lossy();
    !audience.trim_end_matches('/').contains('/')
}

/// Checks a put-token request: what it grants (when accepted) and the reply.
pub fn put_token(hub: &Hub, request: &AmqpMessage) -> (Option<Grant>, AmqpMessage) {
    let prop = |name: &str| match request.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.as_str().to_string()),
        _ => None,
    };
    let checked = || -> Result<Grant, (i32, String)> {
        if prop("operation").as_deref() != Some("put-token") {
            return Err((400, "only the put-token operation is supported".into()));
        }
        if !prop("type").is_some_and(|t| TOKEN_TYPES.contains(&t.as_str())) {
            return Err((
                400,
                "the token type must be servicebus.windows.net:sastoken".into(),
            ));
        }
        let audience = prop("name").ok_or((400, "the request names no audience".into()))?;
        let token = String::from_utf8_lossy(&body_bytes(request)).into_owned();
        if names_hub(&audience) {
            // The REST API's rule: the token names this hub, a policy of it, and is signed
            // with that policy's key (its text never names the token).
            hub.auth
                .check(Some(&token), wall_secs())
                .map_err(|e| (401, e.message))?;
            return Ok(Grant::Service);
        }
        let client = audience_client(&audience).ok_or((
            401,
            "the audience names no device or module of this hub".into(),
        ))?;
        // No client certificate counts here: x509 devices are not served over AMQP yet.
        hub.authenticate_device(&client, &token, &[])
            .map_err(|e| match e {
                DeviceAuthError::Unknown => (401, "the device or module is unknown".into()),
                DeviceAuthError::Disabled => (401, "the device is disabled".into()),
                DeviceAuthError::Token(why) | DeviceAuthError::Certificate(why) => {
                    (401, why.to_string())
                }
            })?;
        Ok(Grant::Client(client))
    };
    let (grant, status, description) = match checked() {
        Ok(grant) => (Some(grant), 200, "OK".to_string()),
        Err((status, why)) => {
            eprintln!("iothub-emulator: AMQP put-token refused: {why}");
            (None, status, why)
        }
    };
    let message_id = request
        .properties
        .as_ref()
        .and_then(|p| p.message_id.as_ref())
        .and_then(id_text)
        .unwrap_or_default();
    let mut reply = correlated(data_message(Vec::new()), MessageId::String(message_id));
    reply.application_properties = Some(
        ApplicationProperties::builder()
            .insert("status-code", SimpleValue::Int(status))
            .insert("status-description", SimpleValue::String(description))
            .build(),
    );
    (grant, reply)
}
