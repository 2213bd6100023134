//! The endpoint's AMQP links: what an address under the Event Hub-compatible name names
//! (`{name}/ConsumerGroups/{group}/Partitions/{n}`, `$management`), the start position
//! a reader's selector filter asks for, and the receive link itself: events sent as the
//! client's credit allows (fe2o3's `send` waits for credit), new events pushed as they arrive,
//! until the client detaches or a higher epoch takes the partition over.

use std::sync::Arc;

use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, LinkError};
use fe2o3_amqp::types::messaging::FilterSet;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::Sender;
use percent_encoding::percent_decode_str;

use super::message::{event_message, runtime_metric};
use super::partition::Start;
use super::{Events, EventsCondition, EventsError};

/// What an address under the endpoint's name names.
#[derive(Debug, PartialEq)]
pub enum Node {
    Management,
    /// A partition of a consumer group (the group's name as created).
    Partition {
        group: String,
        partition: u32,
    },
}

/// What `address` names on the endpoint: `None` when it is not under the endpoint's name
/// (the device links' addresses), the refusal Event Hubs gives for an unknown consumer
/// group, partition or node.
pub fn node(events: &Events, host: &str, address: &str) -> Option<Result<Node, AmqpErrorBody>> {
    let path = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => address.trim_start_matches('/'),
    };
    let path = percent_decode_str(path).decode_utf8_lossy();
    // `@azure/event-hubs` addresses the management node bare.
    if path.eq_ignore_ascii_case("$management") {
        return Some(Ok(Node::Management));
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let name = &events.config.name;
    let (first, rest) = segments.split_first()?;
    if !first.eq_ignore_ascii_case(name) {
        return None;
    }
    let is = |s: &str, n: &str| s.eq_ignore_ascii_case(n);
    let not_found = |what: String| {
        AmqpErrorBody::new(
            AmqpError::NotFound,
            Some(format!(
                "The messaging entity 'sb://{host}/{what}' could not be found."
            )),
            None,
        )
    };
    Some(match rest {
        [m] if is(m, "$management") => Ok(Node::Management),
        [cg, group, p, partition] if is(cg, "ConsumerGroups") && is(p, "Partitions") => {
            let Some(group) = events.groups.find(group) else {
                return Some(Err(not_found(format!(
                    "{name}/consumergroups/{}",
                    group.to_ascii_lowercase()
                ))));
            };
            match events.parse_partition(partition) {
                Some(partition) => Ok(Node::Partition { group, partition }),
                None => Err(EventsError::new(
                    EventsCondition::ArgumentOutOfRange,
                    format!(
                        "The specified partition is invalid for an EventHub partition sender or receiver. It should be between 0 and {}.",
                        events.partition_count() - 1
                    ),
                )
                .amqp()),
            }
        }
        [p, _] if is(p, "Partitions") => Err(AmqpErrorBody::new(
            AmqpError::NotImplemented,
            Some("the emulator's events endpoint is read-only: devices send telemetry to the IoT hub".into()),
            None,
        )),
        _ => Err(not_found(path.to_string())),
    })
}

/// The start position a selector filter asks for (`amqp.annotation.x-opt-offset > '-1'`,
/// `… x-opt-sequence-number >= '5'`, `… x-opt-enqueued-time > '1700000000000'`,
/// `… x-opt-offset > '@latest'`); a link without a filter reads from the oldest event.
pub fn start_position(filter: Option<&FilterSet>) -> Result<Start, EventsError> {
    let Some(expression) = filter.and_then(|f| f.values().find_map(filter_text)) else {
        return Ok(Start::Offset {
            offset: -1,
            inclusive: false,
        });
    };
    parse_selector(&expression)
}

fn filter_text(value: &Value) -> Option<String> {
    match value {
        Value::Described(d) => filter_text(&d.value),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn parse_selector(expression: &str) -> Result<Start, EventsError> {
    let bad = || {
        EventsError::new(
            EventsCondition::ArgumentError,
            format!("the selector filter {expression:?} is not one the endpoint supports"),
        )
    };
    let rest = expression
        .trim()
        .strip_prefix("amqp.annotation.")
        .ok_or_else(bad)?;
    let (name, rest) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (inclusive, value) = if let Some(v) = rest.strip_prefix(">=") {
        (true, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (false, v)
    } else {
        return Err(bad());
    };
    let value = value.trim().trim_matches('\'');
    let number = || value.parse::<i64>().map_err(|_| bad());
    match name {
        "x-opt-offset" if value == "@latest" => Ok(Start::Latest),
        "x-opt-offset" => Ok(Start::Offset {
            offset: number()?,
            inclusive,
        }),
        "x-opt-sequence-number" => Ok(Start::SequenceNumber {
            sequence_number: number()?,
            inclusive,
        }),
        "x-opt-enqueued-time" => Ok(Start::EnqueuedAfter(number()? - i64::from(inclusive))),
        _ => Err(bad()),
    }
}

/// The epoch a receive link asks for (`com.microsoft:epoch` link property).
pub fn epoch(properties: Option<&fe2o3_amqp::types::definitions::Fields>) -> Option<i64> {
    match properties?.get(&Symbol::from("com.microsoft:epoch"))? {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        Value::Uint(n) => Some(i64::from(*n)),
        Value::Ulong(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// How many events a reader takes from the log at once (then sends them one by one as its
/// credit allows).
const READ_BATCH: usize = 64;

/// Serves one receive link on a partition of a consumer group until the client detaches it or
/// a higher epoch takes the partition over (then it is detached with `amqp:link:stolen`, which
/// the clients surface as `ReceiverDisconnectedError`).
pub async fn serve_partition(
    events: Arc<Events>,
    mut sender: Sender,
    group: String,
    partition: u32,
    epoch: Option<i64>,
) {
    let start = match start_position(sender.source().as_ref().and_then(|s| s.filter.as_ref())) {
        Ok(start) => start,
        Err(why) => {
            let _ = sender.close_with_error(why.amqp()).await;
            return;
        }
    };
    let mut claim = match events.owners.claim(&group, partition, epoch) {
        Ok(claim) => claim,
        Err(why) => {
            let _ = sender.close_with_error(why.amqp()).await;
            return;
        }
    };
    let Some(mut newest) = events.watch(partition) else {
        return;
    };
    let mut next = events.resolve(partition, &start, events.clock.now_ms());
    let kicked = 'serve: loop {
        // A hub reset empties the log and numbers from 0 again: a reader ahead of it starts over.
        if *newest.borrow_and_update() + 1 < next {
            next = 0;
        }
        let batch = events.read(partition, next, READ_BATCH, events.clock.now_ms());
        if batch.is_empty() {
            tokio::select! {
                changed = newest.changed() => if changed.is_err() { break 'serve None },
                why = &mut claim.kicked => break 'serve why.ok(),
                _ = sender.on_detach() => break 'serve None,
            }
            continue;
        }
        for event in batch {
            let now = events.clock.now_ms();
            let mut message = event_message(&event);
            if let Some(info) = events.info(partition, now) {
                message.delivery_annotations = Some(runtime_metric(&info, now));
            }
            let sendable = Sendable::builder().message(message).settled(true).build();
            tokio::select! {
                sent = sender.send(sendable) => if sent.is_err() { break 'serve None },
                why = &mut claim.kicked => break 'serve why.ok(),
            }
            next = event.sequence_number + 1;
        }
    };
    events.owners.release(&claim);
    let _ = match kicked {
        Some(why) => {
            let error = AmqpErrorBody::new(LinkError::Stolen, Some(why), None);
            sender.close_with_error(error).await
        }
        None => sender.close().await,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventsConfig;

    #[test]
    fn selector_filters_give_start_positions() {
        let p = |s: &str| parse_selector(s).unwrap();
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '-1'"),
            Start::Offset {
                offset: -1,
                inclusive: false
            }
        );
        assert_eq!(p("amqp.annotation.x-opt-offset > '@latest'"), Start::Latest);
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number >= '7'"),
            Start::SequenceNumber {
                sequence_number: 7,
                inclusive: true
            }
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            Start::EnqueuedAfter(1_700_000_000_000)
        );
        assert!(parse_selector("amqp.annotation.x-opt-offset = '1'").is_err());
        assert!(parse_selector("name = 'x'").is_err());
    }

    #[test]
    fn addresses_under_the_endpoint_name_its_nodes() {
        let clock = Arc::new(crate::clock::Clock::new());
        let events = Events::new(EventsConfig::default(), clock).unwrap();
        let n = |a: &str| node(&events, "h", a);
        assert_eq!(
            n("iothub-emulator/ConsumerGroups/$default/Partitions/3"),
            Some(Ok(Node::Partition {
                group: "$Default".into(),
                partition: 3
            }))
        );
        assert_eq!(
            n("amqps://h:1/IOTHUB-EMULATOR/$management"),
            Some(Ok(Node::Management))
        );
        assert_eq!(n("$management"), Some(Ok(Node::Management)));
        assert_eq!(n("/devices/d1/messages/events"), None);
        let refused = |a: &str| format!("{:?}", n(a).unwrap().unwrap_err().condition);
        assert_eq!(
            refused("iothub-emulator/ConsumerGroups/nope/Partitions/0"),
            "AmqpError(NotFound)"
        );
        assert_eq!(
            refused("iothub-emulator/ConsumerGroups/$Default/Partitions/4"),
            r#"Custom(Symbol("com.microsoft:argument-out-of-range"))"#
        );
    }
}
