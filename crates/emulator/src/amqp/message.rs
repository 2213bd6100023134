//! Building and reading AMQP messages, for every link of the hub: a data-section message, a
//! body's bytes, a message id as text, a reply's correlation id.

use fe2o3_amqp::types::messaging::{Body, Data, Message, MessageId, Properties};
use fe2o3_amqp::types::primitives::{Binary, Value};

use super::AmqpMessage;

/// A message with `body` as one data section (how the SDKs expect JSON).
pub(super) fn data_message(body: Vec<u8>) -> AmqpMessage {
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: None,
        body: Body::Data(vec![Data(Binary::from(body))].into()),
        footer: None,
    }
}

/// The bytes of a message body: its data sections, or an amqp-value string or binary.
pub(super) fn body_bytes(message: &AmqpMessage) -> Vec<u8> {
    match &message.body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.clone().into_bytes(),
            Value::Binary(b) => b.to_vec(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// A message id or correlation id as text (the SDKs send strings, and azure-iothub a UUID
/// for an id that looks like one; numbers are accepted).
pub(super) fn id_text(id: &MessageId) -> Option<String> {
    match id {
        MessageId::String(s) => Some(s.clone()),
        MessageId::Ulong(n) => Some(n.to_string()),
        MessageId::Uuid(u) => {
            let hex: String = u.as_inner().iter().map(|b| format!("{b:02x}")).collect();
            Some(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            ))
        }
        _ => None,
    }
}

pub(super) fn correlated(mut message: AmqpMessage, id: MessageId) -> AmqpMessage {
    message.properties = Some(Properties {
        correlation_id: Some(id),
        ..Default::default()
    });
    message
}
