//! The service's side of cloud-to-device messages, as azure-iothub's `Client` speaks it after a
//! policy token on `$cbs`: messages sent on `/messages/devicebound` (`to` names the device,
//! `iothub-ack` asks for feedback) are queued by the hub or refused with IoT Hub's AMQP error,
//! and delivery feedback goes out in batches on `/messages/serviceBound/feedback`.
//! File-upload notifications are `file_notifications.rs`.

use std::sync::Arc;

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, ErrorCondition};
use fe2o3_amqp::types::messaging::{Body, MessageId, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Value};
use fe2o3_amqp::{Receiver, Sender};
use percent_encoding::percent_decode_str;
use serde_json::Value as Json;

use super::message::{body_bytes, data_message, id_text};
use super::{parse_address, Address, AmqpMessage};
use crate::devices::cloud_to_device::{Ack, CloudMessage, SendRefusal, MAX_QUEUE_DEPTH};
use crate::hub::Hub;

/// The content type of a feedback batch.
const FEEDBACK_TYPE: &str = "application/vnd.microsoft.iothub.feedback.json";

/// An AMQP error with a condition of IoT Hub's own (`com.microsoft:…`) or of the standard.
fn error(condition: ErrorCondition, text: String) -> AmqpErrorBody {
    AmqpErrorBody::new(condition, Some(text), None)
}

fn custom(condition: &str) -> ErrorCondition {
    ErrorCondition::Custom(Symbol::from(condition))
}

/// The device a message's `to` names: `/devices/{id}/messages/devicebound` (the id
/// percent-encoded, as azure-iothub writes it), or `{device}/{module}` for a module's path;
/// read as a link address is ([`parse_address`]).
fn target(to: &str) -> Option<String> {
    let Address::CloudToDevice(client) = parse_address(to) else {
        return None;
    };
    let decoded: Option<Vec<String>> = client
        .split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })
        .collect();
    decoded.map(|parts| parts.join("/"))
}

fn text(value: &SimpleValue) -> Option<String> {
    Some(match value {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.as_str().to_string(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Double(n) => n.to_string(),
        _ => return None,
    })
}

/// The target and the message a service sent, or the refusal for a malformed one.
fn read(message: &AmqpMessage) -> Result<(String, CloudMessage), AmqpErrorBody> {
    let argument = |why: &str| error(custom("com.microsoft:argument-error"), why.to_string());
    let props = message.properties.clone().unwrap_or_default();
    let to = props
        .to
        .as_deref()
        .ok_or_else(|| argument("the message has no 'to' property naming a device"))?;
    let target = target(to)
        .ok_or_else(|| argument("'to' must be /devices/{deviceId}/messages/devicebound"))?;
    let mut out = CloudMessage {
        message_id: props.message_id.as_ref().and_then(id_text),
        correlation_id: props.correlation_id.as_ref().and_then(id_text),
        user_id: props
            .user_id
            .map(|u| String::from_utf8_lossy(&u).into_owned()),
        content_type: props.content_type.map(|s| s.as_str().to_string()),
        content_encoding: props.content_encoding.map(|s| s.as_str().to_string()),
        expiry_ms: props.absolute_expiry_time.map(|t| t.milliseconds()),
        body: body_bytes(message),
        ..Default::default()
    };
    for (key, value) in message
        .application_properties
        .iter()
        .flat_map(|a| a.0.iter())
    {
        let Some(value) = text(value) else { continue };
        if key == "iothub-ack" {
            out.ack = Ack::parse(&value)
                .ok_or_else(|| argument("iothub-ack must be none, positive, negative or full"))?;
        } else {
            out.properties.push((key.clone(), value));
        }
    }
    Ok((target, out))
}

/// IoT Hub's AMQP error for a refused send (azure-iothub turns `amqp:not-found` into
/// `DeviceNotFoundError` and `amqp:resource-limit-exceeded` into
/// `DeviceMaximumQueueDepthExceededError`).
fn refusal(target: &str, why: SendRefusal) -> AmqpErrorBody {
    match why {
        SendRefusal::DeviceNotFound => error(
            AmqpError::NotFound.into(),
            format!("DeviceNotFound: the device {target} is not registered in this hub"),
        ),
        SendRefusal::QueueFull => error(
            AmqpError::ResourceLimitExceeded.into(),
            format!(
                "DeviceMaximumQueueDepthExceeded: the cloud-to-device queue of {target} holds {MAX_QUEUE_DEPTH} messages already"
            ),
        ),
        SendRefusal::TooLarge => error(
            fe2o3_amqp::types::definitions::LinkError::MessageSizeExceeded.into(),
            "MessageTooLarge: a cloud-to-device message holds at most 64 KB".to_string(),
        ),
        SendRefusal::ModuleTarget => error(
            custom("com.microsoft:argument-error"),
            format!("cloud-to-device messages go to devices, not to modules ({target})"),
        ),
        SendRefusal::NotSaved(why) => error(AmqpError::InternalError.into(), why),
    }
}

/// Receives the service's messages: each is accepted once queued (and stored), or rejected
/// with the error IoT Hub gives.
pub(super) async fn receive(hub: Arc<Hub>, mut receiver: Receiver) {
    while let Ok(delivery) = receiver.recv::<Body<Value>>().await {
        let queued = read(delivery.message()).and_then(|(target, message)| {
            hub.send_cloud_to_device(&target, message)
                .map_err(|why| refusal(&target, why))
        });
        let answered = match queued {
            Ok(()) => receiver.accept(&delivery).await,
            Err(e) => receiver.reject(&delivery, e).await,
        };
        if answered.is_err() {
            break;
        }
    }
    let _ = receiver.close().await;
}

/// The feedback batch message: a JSON array of records.
fn feedback_message(records: &[Json]) -> AmqpMessage {
    let body = Json::Array(records.to_vec()).to_string().into_bytes();
    let mut message = data_message(body);
    message.properties = Some(Properties {
        message_id: Some(MessageId::String(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ))),
        content_type: Some(Symbol::from(FEEDBACK_TYPE)),
        ..Default::default()
    });
    message
}

/// Sends the hub's delivery feedback, one batch of whatever waits at a time, until the
/// service detaches. A batch that cannot be sent goes back to wait for the next receiver.
pub(super) async fn feedback(hub: Arc<Hub>, mut sender: Sender) {
    loop {
        let ready = hub.feedback_ready();
        let batch = hub.take_feedback();
        if batch.is_empty() {
            tokio::select! {
                _ = ready => continue,
                _ = sender.on_detach() => break,
            }
        }
        let records: Vec<Json> = batch.iter().map(|f| f.to_json()).collect();
        let sendable = Sendable::builder()
            .message(feedback_message(&records))
            .settled(false)
            .build();
        // The service completes the batch; the hub does not wait for it.
        if sender.send_batchable(sendable).await.is_err() {
            hub.return_feedback(batch);
            break;
        }
    }
    let _ = sender.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_names_a_device_or_a_module() {
        assert_eq!(
            target("/devices/d1/messages/devicebound"),
            Some("d1".into())
        );
        assert_eq!(
            target("/devices/a%20b/messages/deviceBound"),
            Some("a b".into())
        );
        assert_eq!(
            target("/devices/d1/modules/m1/messages/devicebound"),
            Some("d1/m1".into())
        );
        for bad in [
            "",
            "/devices//messages/devicebound",
            "/devices/d1",
            "/twin/d1",
        ] {
            assert_eq!(target(bad), None, "{bad}");
        }
    }
}
