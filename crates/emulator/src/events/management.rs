//! `$management` on the endpoint: the request/response node Event Hubs clients read the hub's
//! and a partition's runtime information from (`READ` of `com.microsoft:eventhub`, answered
//! with name, created_at, partition_count, partition_ids; of `com.microsoft:partition`, with
//! begin/last sequence numbers, last offset, last enqueued time, is_partition_empty). A reply
//! goes to the link the client attached on the same connection at its request's `reply-to`
//! address (`@azure/event-hubs`), or, for a request with none, at the request link's own
//! address (pyamqp, under Python's `azure-eventhub`, pairs its two `$management` links so).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message, MessageId, Properties,
};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Timestamp, Value};
use fe2o3_amqp::{Receiver, Sender};
use tokio::sync::mpsc;

use super::message::EventMessage;
use super::Events;
use crate::locks::lock;

/// The reply links attached, by their connection (`Replies::connection`) and address.
#[derive(Default)]
pub struct Replies {
    links: Mutex<HashMap<(u64, String), mpsc::UnboundedSender<EventMessage>>>,
    connections: AtomicU64,
}

/// How long a request waits for its reply link to attach (the clients attach it first).
const REPLY_LINK_WAIT: Duration = Duration::from_secs(2);

impl Replies {
    /// A new connection's number: its reply links are its own.
    pub fn connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed)
    }

    fn sender(&self, key: &(u64, String)) -> Option<mpsc::UnboundedSender<EventMessage>> {
        lock(&self.links).get(key).cloned()
    }
}

fn address_of(terminus: Option<&String>) -> String {
    terminus.cloned().unwrap_or_default()
}

/// Serves a reply link (the client receives on it) until it detaches.
pub async fn serve_replies(events: &Events, mut sender: Sender, connection: u64) {
    let address = address_of(sender.target().as_ref().and_then(|t| t.address.as_ref()));
    let key = (connection, address);
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&events.replies.links).insert(key.clone(), tx);
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = sender.on_detach() => None,
        };
        let Some(reply) = next else { break };
        let sendable = Sendable::builder().message(reply).settled(true).build();
        if sender.send(sendable).await.is_err() {
            break;
        }
    }
    lock(&events.replies.links).remove(&key);
    let _ = sender.close().await;
}

/// Serves the request link: each request is answered on its `reply-to` link; `authorized`
/// says whether the connection holds a policy token for the endpoint (checked per request: the
/// clients may put it just before asking).
pub async fn serve_requests(
    events: &Events,
    mut receiver: Receiver,
    connection: u64,
    authorized: impl Fn() -> bool,
) {
    let own = address_of(receiver.target().as_ref().and_then(|t| t.address.as_ref()));
    while let Ok(delivery) = receiver.recv::<Body<Value>>().await {
        let request = delivery.message();
        let reply_to = request.properties.as_ref().and_then(|p| p.reply_to.clone());
        let reply_to = (connection, reply_to.unwrap_or_else(|| own.clone()));
        let reply = answer(events, request, authorized());
        let deadline = tokio::time::Instant::now() + REPLY_LINK_WAIT;
        let link = loop {
            match events.replies.sender(&reply_to) {
                Some(link) => break Some(link),
                None if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                None => break None,
            }
        };
        if let Some(link) = link {
            let _ = link.send(reply);
        }
        if receiver.accept(&delivery).await.is_err() {
            break;
        }
    }
    let _ = receiver.close().await;
}

fn property(request: &Message<Body<Value>>, name: &str) -> Option<String> {
    match request.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = OrderedMap::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Map(m)
}

/// The reply to one request: status 200 with the information, or the status Event Hubs
/// gives (401 without a policy token, 404 for another entity or an unknown partition, 400
/// for an operation it does not serve).
fn answer(events: &Events, request: &Message<Body<Value>>, authorized: bool) -> EventMessage {
    let now = events.clock.now_ms();
    let name = &events.config.name;
    let result: Result<Value, (i32, String)> = (|| {
        if !authorized {
            return Err((401, "Unauthorized: the connection holds no valid token for the endpoint (put one on $cbs for sb://{host}/{name})".into()));
        }
        if property(request, "operation").as_deref() != Some("READ") {
            return Err((400, "only the READ operation is supported".into()));
        }
        if !property(request, "name").is_some_and(|n| n.eq_ignore_ascii_case(name)) {
            return Err((404, format!("the messaging entity is not '{name}'")));
        }
        match property(request, "type").as_deref() {
            Some("com.microsoft:eventhub") => {
                let ids: Vec<String> = (0..events.partition_count())
                    .map(|p| p.to_string())
                    .collect();
                Ok(map(vec![
                    ("name", Value::String(name.clone())),
                    ("type", Value::String("com.microsoft:eventhub".into())),
                    (
                        "created_at",
                        Value::Timestamp(Timestamp::from_milliseconds(events.created_ms)),
                    ),
                    (
                        "partition_count",
                        Value::Int(events.partition_count() as i32),
                    ),
                    (
                        "partition_ids",
                        Value::Array(Array::from(
                            ids.into_iter().map(Value::String).collect::<Vec<_>>(),
                        )),
                    ),
                ]))
            }
            Some("com.microsoft:partition") => {
                let id = property(request, "partition").unwrap_or_default();
                let info = events
                    .parse_partition(&id)
                    .and_then(|p| events.info(p, now))
                    .ok_or((404, format!("the partition '{id}' does not exist")))?;
                Ok(map(vec![
                    ("name", Value::String(name.clone())),
                    ("type", Value::String("com.microsoft:partition".into())),
                    ("partition", Value::String(id)),
                    (
                        "begin_sequence_number",
                        Value::Long(info.begin_sequence_number),
                    ),
                    (
                        "last_enqueued_sequence_number",
                        Value::Long(info.last_sequence_number),
                    ),
                    (
                        "last_enqueued_offset",
                        Value::String(info.last_offset.to_string()),
                    ),
                    (
                        "last_enqueued_time_utc",
                        Value::Timestamp(Timestamp::from_milliseconds(info.last_enqueued_ms)),
                    ),
                    ("is_partition_empty", Value::Bool(info.is_empty)),
                ]))
            }
            _ => Err((
                400,
                "the type must be com.microsoft:eventhub or com.microsoft:partition".into(),
            )),
        }
    })();
    let (status, description, body) = match result {
        Ok(body) => (200, "OK".to_string(), body),
        Err((status, why)) => (status, why, Value::Null),
    };
    let correlation = request
        .properties
        .as_ref()
        .and_then(|p| p.message_id.clone())
        .unwrap_or(MessageId::String(String::new()));
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            correlation_id: Some(correlation),
            ..Default::default()
        }),
        application_properties: Some(
            ApplicationProperties::builder()
                .insert("status-code", SimpleValue::Int(status))
                .insert("status-description", SimpleValue::String(description))
                .build(),
        ),
        body: Body::Value(AmqpValue(body)),
        footer: None,
    }
}
