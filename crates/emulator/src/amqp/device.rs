//! What travels on the device links: the hub's `Outgoing` encoded as AMQP messages (method
//! calls, twin answers, desired notifications), and what devices send decoded into hub calls
//! (telemetry, method answers, twin requests); cloud-to-device messages go out unsettled and
//! the device's disposition settles them (accepted: complete, rejected: reject, released or
//! modified: abandon). The message shapes are those of Microsoft's device SDKs
//! (`azure-iot-device-amqp`: `IoThub-methodname`/`IoThub-status` application properties,
//! `operation`/`resource`/`status`/`version` message annotations, correlation ids).

use std::future::Future;
use std::sync::Arc;

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody};
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, MessageAnnotations, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};
use fe2o3_amqp::{Receiver, Sender};
use tokio::sync::mpsc;

use super::message::{body_bytes, correlated, data_message, id_text};
use super::{cbs, Address, AmqpMessage, Conn, Link};
use crate::device_message::{DeviceMessage, SystemProperties};
use crate::devices::cloud_to_device::{Delivery, Settle};
use crate::devices::{Outgoing, TwinAnswer};
use crate::hub::{DeviceLink, Downlink, Incoming, SubscriptionChange, TwinOp};

fn integer(v: &SimpleValue) -> Option<i64> {
    match v {
        SimpleValue::Int(n) => Some(*n as i64),
        SimpleValue::Long(n) => Some(*n),
        SimpleValue::Short(n) => Some(*n as i64),
        SimpleValue::Uint(n) => Some(*n as i64),
        SimpleValue::Ulong(n) => i64::try_from(*n).ok(),
        SimpleValue::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn annotation<'m>(message: &'m AmqpMessage, name: &str) -> Option<&'m str> {
    let key = OwnedKey::Symbol(Symbol::from(name));
    match message.message_annotations.as_ref()?.0.get(&key)? {
        Value::String(s) => Some(s),
        Value::Symbol(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The AMQP message of a twin answer: `status` (and `version`) annotations, the correlation
/// id of the request, the body.
fn twin_answer(request_id: String, answer: TwinAnswer) -> AmqpMessage {
    let mut annotations = MessageAnnotations::builder().insert(
        OwnedKey::Symbol(Symbol::from("status")),
        Value::Int(answer.status as i32),
    );
    if let Some(v) = answer.version {
        annotations = annotations.insert(
            OwnedKey::Symbol(Symbol::from("version")),
            Value::Long(v as i64),
        );
    }
    let mut message = correlated(data_message(answer.body), MessageId::String(request_id));
    message.message_annotations = Some(annotations.build());
    message
}

/// The link and message for what the hub sends a client; `None` for `Close` and `Fault`
/// (which `deliver` carries out).
fn encode(out: Outgoing) -> Option<(Link, AmqpMessage)> {
    Some(match out {
        Outgoing::MethodCall {
            request_id,
            name,
            payload,
        } => {
            let mut message = correlated(
                data_message(payload),
                MessageId::String(request_id.to_string()),
            );
            message.application_properties = Some(
                ApplicationProperties::builder()
                    .insert("IoThub-methodname", SimpleValue::String(name))
                    .build(),
            );
            (Link::Methods, message)
        }
        // The one message on the twin link without a correlation id: the SDK reads it as a
        // desired-properties patch. The body carries `$version`, and a `version` annotation
        // says it too, as on twin answers (what clients that read annotations look at).
        Outgoing::DesiredChanged { version, patch } => {
            let mut message = data_message(patch.to_string().into_bytes());
            let annotations = MessageAnnotations::builder().insert(
                OwnedKey::Symbol(Symbol::from("version")),
                Value::Long(version as i64),
            );
            message.message_annotations = Some(annotations.build());
            (Link::Twin, message)
        }
        Outgoing::TwinAnswer { request_id, answer } => {
            (Link::Twin, twin_answer(request_id, answer))
        }
        Outgoing::CloudToDevice(delivery) => (
            Link::CloudToDevice(delivery.lock_token),
            cloud_to_device_message(delivery),
        ),
        Outgoing::Close | Outgoing::Fault(_) => return None,
    })
}

impl Conn {
    /// Carries what the hub sends a client to its links, until the hub closes the session
    /// (then the whole connection closes, as IoT Hub drops a replaced connection).
    pub(super) async fn deliver(self: Arc<Self>, client: String, mut downlink: Downlink) {
        while let Some(out) = downlink.recv().await {
            if let Outgoing::Fault(fault) = out {
                if self.carry_out(&client, fault) {
                    break;
                }
                continue;
            }
            let Some((link, message)) = encode(out) else {
                break;
            };
            self.send(&client, link, message);
        }
        self.closed.notify_one();
    }
}

/// Sends what a link's outbox holds, pre-settled (the hub never waits on a device's
/// disposition), until the outbox or the link closes, or a fault detaches it (`killed`).
pub(super) async fn pump(
    mut sender: Sender,
    mut outbox: mpsc::UnboundedReceiver<AmqpMessage>,
    killed: impl Future<Output = AmqpErrorBody>,
) {
    tokio::pin!(killed);
    loop {
        let message = tokio::select! {
            message = outbox.recv() => message,
            error = &mut killed => {
                let _ = sender.close_with_error(error).await;
                return;
            }
        };
        let Some(message) = message else { break };
        let sendable = Sendable::builder().message(message).settled(true).build();
        if sender.send(sendable).await.is_err() {
            break;
        }
    }
    let _ = sender.close().await;
}

/// A cloud-to-device message as IoT Hub delivers it: the system properties in the
/// properties section, the sender's application properties, the body as one data section.
fn cloud_to_device_message(d: Delivery) -> AmqpMessage {
    let m = d.message;
    let mut message = data_message(m.body);
    message.properties = Some(Properties {
        message_id: m.message_id.map(MessageId::String),
        user_id: m.user_id.map(|u| Binary::from(u.into_bytes())),
        to: Some(d.to),
        correlation_id: m.correlation_id.map(MessageId::String),
        content_type: m.content_type.map(Symbol::from),
        content_encoding: m.content_encoding.map(Symbol::from),
        absolute_expiry_time: m.expiry_ms.map(Timestamp::from_milliseconds),
        creation_time: Some(Timestamp::from_milliseconds(d.enqueued_ms)),
        ..Default::default()
    });
    if !m.properties.is_empty() {
        let mut props = ApplicationProperties::builder();
        for (k, v) in m.properties {
            props = props.insert(k, SimpleValue::String(v));
        }
        message.application_properties = Some(props.build());
    }
    message
}

/// Sends a device its cloud-to-device messages unsettled; each disposition settles its
/// message in the hub. The device listens while the link is attached; a message whose
/// disposition never comes stays locked until its lock times out.
pub(super) async fn pump_cloud_to_device(
    link: Arc<DeviceLink>,
    mut sender: Sender,
    mut outbox: mpsc::UnboundedReceiver<(u64, AmqpMessage)>,
    killed: impl Future<Output = AmqpErrorBody>,
) {
    tokio::pin!(killed);
    let listen = |on| {
        Incoming::Subscriptions(SubscriptionChange {
            cloud_to_device: Some(on),
            ..Default::default()
        })
    };
    link.incoming(listen(true));
    loop {
        // A device that stops listening detaches the link and stays connected.
        let next = tokio::select! {
            next = outbox.recv() => next,
            _ = sender.on_detach() => None,
            error = &mut killed => {
                link.incoming(listen(false));
                let _ = sender.close_with_error(error).await;
                return;
            }
        };
        let Some((lock_token, message)) = next else {
            break;
        };
        let sendable = Sendable::builder().message(message).settled(false).build();
        let Ok(outcome) = sender.send_batchable(sendable).await else {
            break;
        };
        let link = link.clone();
        tokio::spawn(async move {
            let how = match outcome.await {
                Ok(Outcome::Accepted(_)) => Settle::Complete,
                Ok(Outcome::Rejected(_)) => Settle::Reject,
                Ok(Outcome::Released(_) | Outcome::Modified(_)) => Settle::Abandon,
                Err(_) => return,
            };
            link.incoming(Incoming::Settled { lock_token, how });
        });
    }
    link.incoming(listen(false));
    let _ = sender.close().await;
}

/// Receives on a link the client sends on, accepting each delivery once the hub has it.
pub(super) async fn receive(
    conn: Arc<Conn>,
    mut receiver: Receiver,
    target: Address,
    address: String,
    killed: impl Future<Output = AmqpErrorBody>,
) {
    tokio::pin!(killed);
    loop {
        let received = tokio::select! {
            received = receiver.recv::<Body<Value>>() => received,
            error = &mut killed => {
                let _ = receiver.close_with_error(error).await;
                return;
            }
        };
        let delivery = match received {
            Ok(d) => d,
            Err(_) => break,
        };
        let message = delivery.message();
        match &target {
            Address::Cbs => match cbs::put_token(&conn.hub, message, &conn.client_chain) {
                Ok((grant, reply)) => {
                    if let Some(grant) = grant {
                        conn.grant(grant);
                    }
                    super::lock(&conn.cbs_replies).send(reply);
                }
                // A refused connect (control API fault): the request is rejected with a
                // transient error, which the SDKs retry (a put-token answer other than 200
                // would be an `UnauthorizedError`, which they do not).
                Err(_) => {
                    if receiver
                        .reject(&delivery, super::login::unavailable())
                        .await
                        .is_err()
                    {
                        break;
                    }
                    continue;
                }
            },
            Address::Telemetry(client) => {
                if let Some(link) = conn.link_of(client) {
                    link.incoming(Incoming::Activity);
                    let (properties, system) = telemetry_properties(message);
                    let stored = link.telemetry(DeviceMessage {
                        client: client.to_string(),
                        via: address.to_string(),
                        body: body_bytes(message).into(),
                        properties,
                        system,
                        auth: None,
                        ..Default::default()
                    });
                    // Not stored: rejected with a transient error, which the SDKs retry.
                    if let Err(e) = stored {
                        let text = format!("the hub could not save the message: {e}");
                        let error = AmqpErrorBody::new(AmqpError::InternalError, Some(text), None);
                        if receiver.reject(&delivery, error).await.is_err() {
                            break;
                        }
                        continue;
                    }
                }
            }
            Address::Methods(client) => method_answer(&conn, client, message),
            Address::Twin(client) => twin_request(&conn, client, message),
            _ => {}
        }
        if receiver.accept(&delivery).await.is_err() {
            break;
        }
    }
    let _ = receiver.close().await;
}

/// A telemetry message's properties: the properties section's system properties, the
/// application properties as text, and `dt-subject` / `dt-dataschema` from the message
/// annotations (where the device SDKs put them).
fn telemetry_properties(message: &AmqpMessage) -> (Vec<(String, String)>, SystemProperties) {
    let mut system = SystemProperties::default();
    if let Some(p) = &message.properties {
        system.message_id = p.message_id.as_ref().and_then(id_text);
        system.correlation_id = p.correlation_id.as_ref().and_then(id_text);
        system.content_type = p.content_type.as_ref().map(|s| s.as_str().to_string());
        system.content_encoding = p.content_encoding.as_ref().map(|s| s.as_str().to_string());
        system.user_id = p
            .user_id
            .as_ref()
            .map(|u| String::from_utf8_lossy(u).into_owned());
        system.creation_time = p
            .creation_time
            .as_ref()
            .map(|t| crate::clock::iso(t.milliseconds()));
    }
    for name in ["dt-subject", "dt-dataschema"] {
        if let Some(value) = annotation(message, name) {
            system.set(name, value.to_string());
        }
    }
    let properties = message
        .application_properties
        .as_ref()
        .map(|a| {
            a.0.iter()
                .filter_map(|(k, v)| Some((k.clone(), simple_text(v)?)))
                .collect()
        })
        .unwrap_or_default();
    (properties, system)
}

/// An application property's value as text (IoT Hub carries them as strings).
fn simple_text(v: &SimpleValue) -> Option<String> {
    Some(match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.as_str().to_string(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Double(d) => d.to_string(),
        SimpleValue::Float(f) => f.to_string(),
        other => integer(other)?.to_string(),
    })
}

/// The correlation id of a device's message (the request it answers) as text.
fn correlation(message: &AmqpMessage) -> Option<String> {
    message
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.as_ref())
        .and_then(id_text)
}

/// A device's answer to a method call: its correlation id is the request id.
fn method_answer(conn: &Conn, client: &str, message: &AmqpMessage) {
    let rid = correlation(message);
    let status = message
        .application_properties
        .as_ref()
        .and_then(|a| a.0.get("IoThub-status"))
        .and_then(integer);
    if let (Some(rid), Some(status), Some(link)) = (rid, status, conn.link_of(client)) {
        link.incoming(Incoming::MethodAnswer {
            request_id: &rid,
            status,
            body: body_bytes(message).into(),
        });
    }
}

/// A twin request (`operation` GET, PATCH of `/properties/reported`, PUT or DELETE of the
/// desired-notification subscription), answered on the twin link with its correlation id.
fn twin_request(conn: &Conn, client: &str, message: &AmqpMessage) {
    let (Some(request_id), Some(link)) = (correlation(message), conn.link_of(client)) else {
        return;
    };
    let body = body_bytes(message);
    let resource = annotation(message, "resource").unwrap_or("");
    let desired = resource.eq_ignore_ascii_case("/notifications/twin/properties/desired");
    let op = match annotation(message, "operation").unwrap_or("") {
        "GET" => TwinOp::Get,
        "PATCH" if resource.eq_ignore_ascii_case("/properties/reported") => TwinOp::Report(&body),
        "PUT" if desired => TwinOp::NotifyDesired(true),
        "DELETE" if desired => TwinOp::NotifyDesired(false),
        _ => TwinOp::Unsupported,
    };
    link.incoming(Incoming::Twin { request_id, op });
}
