//! An event as an Event Hubs reader gets it from IoT Hub's built-in endpoint: the body as sent
//! (one data section), the device's system properties in the properties section, its
//! application properties, and IoT Hub's annotations (`iothub-connection-device-id`, …,
//! `x-opt-sequence-number`, `x-opt-offset`, `x-opt-enqueued-time`).

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, DeliveryAnnotations, Message, MessageAnnotations, MessageId,
    Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};

use super::partition::PartitionInfo;
use super::ReadEvent;
use crate::devices::split_client;

pub type EventMessage = Message<Body<Value>>;

fn key(name: &str) -> OwnedKey {
    OwnedKey::Symbol(Symbol::from(name))
}

pub fn event_message(event: &ReadEvent) -> EventMessage {
    let m = &event.message;
    let s = &m.system;
    let enqueued = Timestamp::from_milliseconds(event.enqueued_ms);
    let (device, module) = split_client(&m.client);
    let mut annotations = MessageAnnotations::builder()
        .insert(key("iothub-connection-device-id"), Value::from(device))
        .insert(
            key("iothub-enqueuedtime"),
            Value::Timestamp(enqueued.clone()),
        )
        .insert(
            key("iothub-message-source"),
            Value::from(m.source.annotation()),
        )
        .insert(
            key("x-opt-sequence-number"),
            Value::Long(event.sequence_number),
        )
        .insert(key("x-opt-offset"), Value::String(event.offset.to_string()))
        .insert(key("x-opt-enqueued-time"), Value::Timestamp(enqueued));
    if let Some(module) = module {
        annotations = annotations.insert(key("iothub-connection-module-id"), Value::from(module));
    }
    if let Some(auth) = &m.auth {
        annotations = annotations
            .insert(
                key("iothub-connection-auth-method"),
                Value::String(auth.method_json()),
            )
            .insert(
                key("iothub-connection-auth-generation-id"),
                Value::String(auth.generation_id.clone()),
            );
    }
    for (name, value) in [
        ("dt-dataschema", &s.data_schema),
        ("dt-subject", &s.subject),
    ] {
        if let Some(v) = value {
            annotations = annotations.insert(key(name), Value::String(v.clone()));
        }
    }
    let mut app = ApplicationProperties::builder();
    for (k, v) in &m.properties {
        app = app.insert(k.clone(), SimpleValue::String(v.clone()));
    }
    if let Some(t) = &s.creation_time {
        app = app.insert("iothub-creation-time-utc", SimpleValue::String(t.clone()));
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(annotations.build()),
        properties: Some(Properties {
            message_id: s.message_id.clone().map(MessageId::String),
            correlation_id: s.correlation_id.clone().map(MessageId::String),
            content_type: s.content_type.clone().map(Symbol::from),
            content_encoding: s.content_encoding.clone().map(Symbol::from),
            user_id: s.user_id.clone().map(|u| Binary::from(u.into_bytes())),
            ..Default::default()
        }),
        application_properties: Some(app.build()),
        body: Body::Data(vec![Data(Binary::from(m.body.to_vec()))].into()),
        footer: None,
    }
}

/// The receiver runtime metric (`com.microsoft:enable-receiver-runtime-metric`): the
/// partition's last enqueued event, in the delivery annotations.
pub fn runtime_metric(info: &PartitionInfo, now_ms: i64) -> DeliveryAnnotations {
    DeliveryAnnotations::builder()
        .insert(
            key("last_enqueued_sequence_number"),
            Value::Long(info.last_sequence_number),
        )
        .insert(
            key("last_enqueued_offset"),
            Value::String(info.last_offset.to_string()),
        )
        .insert(
            key("last_enqueued_time_utc"),
            Value::Timestamp(Timestamp::from_milliseconds(info.last_enqueued_ms)),
        )
        .insert(
            key("runtime_info_retrieval_time_utc"),
            Value::Timestamp(Timestamp::from_milliseconds(now_ms)),
        )
        .build()
}
