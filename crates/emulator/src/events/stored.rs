//! The log's events as the store keeps them (`EventRecord`: the body as sent, the rest of the
//! message as a JSON document) and back, so a restart on the same data dir gives readers the
//! same events at the same positions.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::partition::Event;
use crate::device_message::{ClientAuth, DeviceMessage, MessageSource, SystemProperties};
use crate::store::EventRecord;

/// Everything of a message but its body.
#[derive(Serialize, Deserialize)]
struct StoredMessage {
    client: String,
    via: String,
    properties: Vec<(String, String)>,
    system: SystemProperties,
    /// `iothub-message-source`.
    source: String,
    auth: Option<StoredAuth>,
}

#[derive(Serialize, Deserialize)]
struct StoredAuth {
    method: String,
    issuer: String,
    scope: String,
    generation_id: String,
}

/// The record of `event` in `partition`.
pub fn record(partition: u32, event: &Event) -> EventRecord {
    let m = &event.message;
    let stored = StoredMessage {
        client: m.client.clone(),
        via: m.via.clone(),
        properties: m.properties.clone(),
        system: m.system.clone(),
        source: m.source.annotation().to_string(),
        auth: m.auth.as_ref().map(|a| StoredAuth {
            method: a.method.to_string(),
            issuer: a.issuer.to_string(),
            scope: a.scope.to_string(),
            generation_id: a.generation_id.clone(),
        }),
    };
    EventRecord {
        partition,
        sequence_number: event.sequence_number,
        offset: event.offset,
        enqueued_ms: event.enqueued_ms,
        body: m.body.to_vec(),
        // A derived `Serialize` of strings cannot fail.
        message: serde_json::to_string(&stored).unwrap_or_default(),
    }
}

/// `text` as one of the `known` values `ClientAuth` takes (the first when unknown).
fn one_of(text: &str, known: &[&'static str]) -> &'static str {
    known.iter().find(|k| **k == text).unwrap_or(&known[0])
}

/// The event a record holds; the error says which event cannot be read.
pub fn event(record: EventRecord) -> Result<Event, String> {
    let stored: StoredMessage = serde_json::from_str(&record.message).map_err(|e| {
        format!(
            "event {} of partition {} in the store cannot be read ({e})",
            record.sequence_number, record.partition
        )
    })?;
    let source = MessageSource::ALL
        .into_iter()
        .find(|s| s.annotation() == stored.source)
        .unwrap_or_default();
    let auth = stored.auth.map(|a| ClientAuth {
        method: one_of(&a.method, &["sas", "x509Certificate"]),
        issuer: one_of(&a.issuer, &["iothub", "external"]),
        scope: one_of(&a.scope, &["device", "module"]),
        generation_id: a.generation_id,
    });
    Ok(Event {
        sequence_number: record.sequence_number,
        offset: record.offset,
        enqueued_ms: record.enqueued_ms,
        message: Arc::new(DeviceMessage {
            client: stored.client,
            via: stored.via,
            body: record.body.into(),
            properties: stored.properties,
            system: stored.system,
            auth,
            source,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_comes_back_from_its_record_as_it_was() {
        let message = DeviceMessage {
            client: "dev-1/mod-a".into(),
            via: "devices/dev-1/modules/mod-a/messages/events/".into(),
            body: vec![0, 159, 146, 150].into(),
            properties: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
            system: SystemProperties {
                message_id: Some("m-1".into()),
                content_type: Some("application/json".into()),
                ..Default::default()
            },
            auth: Some(ClientAuth {
                method: "x509Certificate",
                issuer: "external",
                scope: "module",
                generation_id: "637".into(),
            }),
            source: MessageSource::TwinChangeEvents,
        };
        let event = Event {
            sequence_number: 41,
            offset: 1234,
            enqueued_ms: 1_700_000_000_000,
            message: Arc::new(message),
        };
        let record = record(3, &event);
        assert_eq!((record.partition, record.body.len()), (3, 4));
        let back = super::event(record).unwrap();
        assert_eq!(
            (back.sequence_number, back.offset, back.enqueued_ms),
            (41, 1234, 1_700_000_000_000)
        );
        let (a, b) = (&*back.message, &*event.message);
        assert_eq!(
            (&a.client, &a.via, &a.body, &a.properties),
            (&b.client, &b.via, &b.body, &b.properties)
        );
        assert_eq!(
            (&a.system, &a.auth, a.source),
            (&b.system, &b.auth, b.source)
        );
    }

    #[test]
    fn an_unreadable_record_is_named_not_shown() {
        let record = EventRecord {
            partition: 1,
            sequence_number: 7,
            offset: 0,
            enqueued_ms: 0,
            body: Vec::new(),
            message: "{not json".into(),
        };
        let err = event(record).err().unwrap();
        assert!(
            err.starts_with("event 7 of partition 1 in the store cannot be read"),
            "{err}"
        );
    }
}
