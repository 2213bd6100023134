//! The device-facing HTTPS endpoints that `azure-iot-device-http` calls: telemetry
//! (`POST /devices/{id}/messages/events`, single messages and `sendEventBatch`) and
//! cloud-to-device polling (`GET /devices/{id}/messages/devicebound`: 204 when the queue has
//! nothing, else one message locked for the device, its lock token as `ETag`; settled by
//! `DELETE …/devicebound/{lockToken}` (complete, `?reject` rejects) or
//! `POST …/devicebound/{lockToken}/abandon`). They authenticate the
//! device itself: a SAS token for `{hub}/devices/{id}` signed with one of the device's keys (or
//! a policy token naming the policy), the same check as an MQTT CONNECT. Telemetry lands where
//! MQTT telemetry does (`GET /_emulator/telemetry`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::api::Reply;
use crate::clock::iso;
use crate::device_message::{DeviceMessage, SystemProperties};
use crate::devices::cloud_to_device::{Delivery, Settle};
use crate::devices::not_found;
use crate::devices::DeviceAuthError;
use crate::errors::{ApiError, ErrorCode};
use crate::hub::Hub;
use crate::x509::CertChain;

/// The content type of `sendEventBatch`: a JSON array of `{body: base64, properties}`.
const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";

/// What a device-facing path asks for.
enum Endpoint<'p> {
    Telemetry,
    CloudToDevice,
    /// A received cloud-to-device message, by lock token (complete, reject).
    Lock(&'p str),
    /// `…/{lockToken}/abandon`.
    Abandon(&'p str),
    /// `POST /devices/{id}/files`: start a file upload (`hub/files.rs`).
    FileUpload,
    /// `POST /devices/{id}/files/notifications[/{correlationId}]`: the upload's outcome.
    FileUploadDone(Option<&'p str>),
}

/// The device id and endpoint of a device-facing path, `None` for every other path.
fn classify(segments: &[String]) -> Option<(&str, Endpoint<'_>)> {
    let c2d = |messages: &str, bound: &str| messages == "messages" && bound == "devicebound";
    match segments {
        [devices, id, messages, events]
            if devices == "devices" && messages == "messages" && events == "events" =>
        {
            Some((id, Endpoint::Telemetry))
        }
        [devices, id, messages, bound]
            if devices == "devices" && messages == "messages" && bound == "devicebound" =>
        {
            Some((id, Endpoint::CloudToDevice))
        }
        [devices, id, messages, bound, token] if devices == "devices" && c2d(messages, bound) => {
            Some((id, Endpoint::Lock(token)))
        }
        [devices, id, messages, bound, token, abandon]
            if devices == "devices" && c2d(messages, bound) && abandon == "abandon" =>
        {
            Some((id, Endpoint::Abandon(token)))
        }
        [devices, id, files] if devices == "devices" && files == "files" => {
            Some((id, Endpoint::FileUpload))
        }
        [devices, id, files, notifications]
            if devices == "devices" && files == "files" && notifications == "notifications" =>
        {
            Some((id, Endpoint::FileUploadDone(None)))
        }
        [devices, id, files, notifications, correlation]
            if devices == "devices" && files == "files" && notifications == "notifications" =>
        {
            Some((id, Endpoint::FileUploadDone(Some(correlation))))
        }
        _ => None,
    }
}

/// True when the path is one of the device's own (its auth is the device's, not a policy's).
pub fn is_device_path(segments: &[String]) -> bool {
    classify(segments).is_some()
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::IotHubUnauthorizedAccess,
        format!("Unauthorized: {why}"),
    )
}

/// Serves a device-facing request (`is_device_path` was true).
pub async fn handle(
    hub: &Hub,
    method: &Method,
    segments: &[String],
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
    client_chain: &CertChain,
) -> Result<Reply, ApiError> {
    let Some((id, endpoint)) = classify(segments) else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "The requested resource does not exist on this hub",
        ));
    };
    // An x509 device is known by its TLS certificate and sends no Authorization header.
    let token = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token.is_empty() && client_chain.is_empty() {
        return Err(unauthorized("the request has no Authorization header"));
    }
    match hub.authenticate_device(id, token, client_chain) {
        Ok(()) => {}
        // Over HTTP an unknown device is reported as such (MQTT refuses the CONNECT instead).
        Err(DeviceAuthError::Unknown) => return Err(not_found(id)),
        Err(DeviceAuthError::Disabled) => return Err(unauthorized("the device is disabled")),
        Err(DeviceAuthError::Token(why) | DeviceAuthError::Certificate(why)) => {
            return Err(unauthorized(why))
        }
    }
    hub.touch(id);
    match (endpoint, method) {
        (Endpoint::Telemetry, &Method::POST) => {
            record_telemetry(hub, id, headers, body)?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::CloudToDevice, &Method::GET) => Ok(match hub.receive_cloud_to_device(id) {
            Some(delivery) => message_reply(delivery),
            None => Reply::empty(StatusCode::NO_CONTENT),
        }),
        (Endpoint::Lock(token), &Method::DELETE) => {
            let reject = query.iter().any(|(k, _)| k == "reject");
            let how = if reject {
                Settle::Reject
            } else {
                Settle::Complete
            };
            settle(hub, id, token, how)
        }
        (Endpoint::Abandon(token), &Method::POST) => settle(hub, id, token, Settle::Abandon),
        (Endpoint::FileUpload, &Method::POST) => {
            let request = json_body(body)?;
            let blob_name = request
                .get("blobName")
                .and_then(Value::as_str)
                .ok_or_else(|| bad_body("blobName"))?;
            Ok(Reply::json(&hub.start_file_upload(id, blob_name)?))
        }
        (Endpoint::FileUploadDone(in_path), &Method::POST) => {
            let request = json_body(body)?;
            let correlation_id = in_path
                .or_else(|| request.get("correlationId").and_then(Value::as_str))
                .ok_or_else(|| bad_body("correlationId"))?;
            let is_success = request
                .get("isSuccess")
                .and_then(Value::as_bool)
                .ok_or_else(|| bad_body("isSuccess"))?;
            hub.complete_file_upload(id, correlation_id, is_success)
                .await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (_, method) => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("The method {method} is not supported on this resource"),
        )),
    }
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::IotHubFormatError, "the body is not JSON"))
}

fn bad_body(field: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ArgumentInvalid,
        format!("the body has no valid '{field}'"),
    )
}

/// A received message as IoT Hub answers the poll: the body, the system properties as
/// `iothub-*` headers, the application properties as `iothub-app-{name}`, the lock token as
/// `ETag` (what the SDK settles with).
fn message_reply(d: Delivery) -> Reply {
    let m = d.message;
    let token = d.lock_token.to_string();
    let mut reply = Reply::empty(StatusCode::OK);
    let mut headers: Vec<(std::borrow::Cow<'static, str>, String)> = vec![
        ("etag".into(), format!("\"{token}\"")),
        ("iothub-messagelocktoken".into(), token.clone()),
        ("iothub-sequencenumber".into(), token),
        ("iothub-to".into(), d.to),
        ("iothub-enqueuedtime".into(), iso(d.enqueued_ms)),
        ("iothub-deliverycount".into(), d.delivery_count.to_string()),
    ];
    let optional = [
        ("iothub-messageid", m.message_id),
        ("iothub-correlationid", m.correlation_id),
        ("iothub-userid", m.user_id),
        ("iothub-contenttype", m.content_type),
        ("iothub-contentencoding", m.content_encoding),
        ("iothub-expiry", m.expiry_ms.map(iso)),
    ];
    headers.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| Some((k.into(), v?))),
    );
    headers.extend(
        m.properties
            .into_iter()
            .map(|(k, v)| (format!("iothub-app-{}", k.to_lowercase()).into(), v)),
    );
    reply.headers = headers;
    reply.body = Some(m.body);
    reply
}

/// Settles a polled message by its lock token; 412 when the lock was lost (it timed out, the
/// message expired or was settled already).
fn settle(hub: &Hub, id: &str, token: &str, how: Settle) -> Result<Reply, ApiError> {
    let settled = match token.trim_matches('"').parse::<u64>() {
        Ok(t) => hub.settle_cloud_to_device(id, t, how)?,
        Err(_) => false,
    };
    if !settled {
        return Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            format!("the lock of message {token} was lost (it timed out, expired or was settled)"),
        ));
    }
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

fn record_telemetry(
    hub: &Hub,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), ApiError> {
    let topic = format!("devices/{id}/messages/events/");
    let batch = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(BATCH_CONTENT_TYPE));
    let message = |body: Bytes, named: Vec<(String, String)>| {
        let (properties, system) = message_properties(named);
        DeviceMessage {
            client: id.to_string(),
            via: topic.clone(),
            body,
            properties,
            system,
            auth: None,
            ..Default::default()
        }
    };
    if !batch {
        let named = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        hub.device_message(message(body.clone(), named))?;
        return Ok(());
    }
    let bad = || {
        ApiError::new(
            ErrorCode::IotHubFormatError,
            "a message batch must be a JSON array of {\"body\": base64, \"properties\": {…}}",
        )
    };
    let items: Vec<Value> = serde_json::from_slice(body).map_err(|_| bad())?;
    let decoded = items
        .iter()
        .map(|m| {
            let body = m
                .get("body")
                .and_then(Value::as_str)
                .and_then(|b| STANDARD.decode(b).ok())
                .ok_or_else(bad)?;
            let named = match m.get("properties") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Object(p)) => p
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), s.clone())),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(bad()),
            };
            Ok((body, named))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (b, named) in decoded {
        hub.device_message(message(b.into(), named))?;
    }
    Ok(())
}

/// A message's properties from HTTPS header names (or a batch item's `properties`):
/// `iothub-app-{name}` are application properties, `iothub-messageid` … and `dt-subject` /
/// `dt-dataschema` system properties; other headers are the request's, not the message's.
fn message_properties(named: Vec<(String, String)>) -> (Vec<(String, String)>, SystemProperties) {
    let mut properties = Vec::new();
    let mut system = SystemProperties::default();
    for (name, value) in named {
        let lower = name.to_ascii_lowercase();
        if let Some(app) = lower.strip_prefix("iothub-app-") {
            // The name as sent (headers arrive lower-cased, batch items as written).
            let app = name.get(name.len() - app.len()..).unwrap_or(app);
            properties.push((app.to_string(), value));
        } else if lower.starts_with("iothub-") || lower.starts_with("dt-") {
            // Only the message's headers: `Content-Type` and the like are the request's.
            system.set(&lower, value);
        }
    }
    (properties, system)
}

#[cfg(test)]
mod message_tests {
    use super::message_properties;

    #[test]
    fn app_headers_and_system_headers_are_told_apart() {
        let named = [
            ("iothub-app-Temp", "21"),
            ("IoTHub-MessageId", "m1"),
            ("iothub-contenttype", "application/json"),
            ("dt-subject", "s"),
            ("authorization", "not a property"),
            ("content-type", "application/octet-stream"),
        ];
        let (props, sys) =
            message_properties(named.map(|(k, v)| (k.to_string(), v.to_string())).to_vec());
        assert_eq!(props, vec![("Temp".to_string(), "21".to_string())]);
        assert_eq!(sys.message_id.as_deref(), Some("m1"));
        assert_eq!(sys.content_type.as_deref(), Some("application/json"));
        assert_eq!(sys.subject.as_deref(), Some("s"));
    }
}
