//! The hub's built-in Event Hubs-compatible endpoint (`events`): every device-to-cloud message
//! (from `Hub::device_message`) lands in one partition of an in-memory log, chosen by a stable
//! hash of its device id, and Event Hubs clients (`@azure/event-hubs`) read it over AMQP
//! (`link.rs`, `management.rs`) on the hub's AMQP listeners (`amqp/events.rs` attaches the links).
//!
//! `partition.rs` keeps a partition's events (sequence numbers, offsets, retention, the memory
//! bound); `groups.rs` the consumer groups; `owners.rs` the epoch readers; `message.rs` builds
//! the AMQP message a reader gets; `redirect.rs` where the hub's `messages/events` readers are
//! sent.
//! The log is bounded per partition (`Limits`): the oldest events leave first, as with
//! retention. With a data dir every event is stored (`stored.rs` makes its record) before
//! readers see it and before its device is answered, events that leave are deleted from the
//! store, and a restart loads the partitions back; the consumer groups are stored too.

mod error;
mod groups;
pub mod link;
pub mod management;
mod message;
mod owners;
pub mod partition;
mod redirect;
mod stored;

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::clock::Clock;
use crate::device_message::DeviceMessage;
use crate::devices::split_client;
use crate::locks::lock;
use crate::store::{Change, EventRecord, Store, StoreError};
pub use error::{EventsCondition, EventsError};
pub use groups::{ConsumerGroups, MAX_CONSUMER_GROUPS};
use partition::{Limits, Partition, PartitionInfo, Start};
pub use redirect::{EventsEndpoint, Redirect};

/// IoT Hub's default and allowed partition counts.
pub const DEFAULT_PARTITIONS: u32 = 4;
pub const PARTITIONS: std::ops::RangeInclusive<u32> = 2..=128;
/// Retention: one day by default, up to seven, as IoT Hub allows.
pub const DEFAULT_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 168;
/// The memory bound: events and bytes (bodies and properties) kept per partition.
pub const MAX_EVENTS_PER_PARTITION: usize = 100_000;
pub const MAX_BYTES_PER_PARTITION: usize = 64 * 1024 * 1024;

/// How the endpoint is set up (`--partitions`, `--retention-hours`, `--consumer-group`, the
/// seed's `consumerGroups`).
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// The Event Hub-compatible name (`EntityPath`).
    pub name: String,
    pub partitions: u32,
    pub retention_hours: u32,
    /// Consumer groups besides `$Default`.
    pub consumer_groups: Vec<String>,
    /// Where readers reach the endpoint over AMQPS (what a redirect names).
    pub endpoint: EventsEndpoint,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            name: "iothub-emulator".into(),
            partitions: DEFAULT_PARTITIONS,
            retention_hours: DEFAULT_RETENTION_HOURS,
            consumer_groups: Vec::new(),
            endpoint: EventsEndpoint::default(),
        }
    }
}

impl EventsConfig {
    /// The one-line refusal of a setting outside IoT Hub's ranges.
    pub fn check(&self) -> Result<(), EventsError> {
        let out_of_range = |text| EventsError::new(EventsCondition::ArgumentOutOfRange, text);
        if !PARTITIONS.contains(&self.partitions) {
            return Err(out_of_range(format!(
                "--partitions must be between {} and {} (IoT Hub's range), not {}",
                PARTITIONS.start(),
                PARTITIONS.end(),
                self.partitions
            )));
        }
        if !(1..=MAX_RETENTION_HOURS).contains(&self.retention_hours) {
            return Err(out_of_range(format!(
                "--retention-hours must be between 1 and {MAX_RETENTION_HOURS} (7 days, IoT Hub's most), not {}",
                self.retention_hours
            )));
        }
        Ok(())
    }
}

/// The endpoint's log.
pub struct Events {
    pub config: EventsConfig,
    /// The hub's clock: enqueued times and retention.
    pub clock: Arc<Clock>,
    /// When the endpoint was created (ms, emulator's clock): `created_at`.
    pub created_ms: i64,
    pub groups: ConsumerGroups,
    partitions: Vec<Mutex<Partition>>,
    limits: Limits,
    /// The readers of each consumer group's partitions (epochs).
    pub owners: owners::Owners,
    /// `$management`'s reply links.
    pub replies: management::Replies,
}

/// A stable hash of a device id (FNV-1a, 64 bits): the same device lands in the same
/// partition in every run and version.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Events {
    pub fn new(config: EventsConfig, clock: Arc<Clock>) -> Result<Self, EventsError> {
        let now_ms = clock.now_ms();
        config.check()?;
        let groups = ConsumerGroups::new(&config.consumer_groups)?;
        let limits = Limits {
            retention_ms: i64::from(config.retention_hours) * 3_600_000,
            max_events: MAX_EVENTS_PER_PARTITION,
            max_bytes: MAX_BYTES_PER_PARTITION,
        };
        Ok(Events {
            partitions: (0..config.partitions).map(|_| Mutex::default()).collect(),
            created_ms: now_ms,
            clock,
            groups,
            limits,
            owners: owners::Owners::default(),
            replies: management::Replies::default(),
            config,
        })
    }

    /// Where a reader that attached at `messages/events/{rest}` on the hub is redirected.
    pub fn redirect(&self, rest: &str) -> Redirect {
        redirect::redirect(&self.config.endpoint, &self.config.name, rest)
    }

    pub fn partition_count(&self) -> u32 {
        self.config.partitions
    }

    /// The partition a client's messages land in: its device's (a module's messages go with
    /// its device's).
    pub fn partition_of(&self, client: &str) -> u32 {
        let (device, _) = split_client(client);
        (stable_hash(device) % u64::from(self.config.partitions)) as u32
    }

    /// Appends a device message to its device's partition and returns (partition, sequence
    /// number) once `store` has it (in the hub's order: queued under the partition's lock,
    /// many appends share a commit); then readers see it.
    pub fn append(
        &self,
        store: &Store,
        message: DeviceMessage,
        now_ms: i64,
    ) -> Result<(u32, i64), StoreError> {
        let partition = self.partition_of(&message.client);
        let slot = &self.partitions[partition as usize];
        let (seq, pending) = store.stage(lock(slot), |p, changes| {
            let appended = p.append(Arc::new(message), now_ms, &self.limits);
            changes.push(|| Change::PutEvent(stored::record(partition, &appended.event)));
            if let Some(before) = appended.dropped_before {
                changes.push(|| Change::DropEvents { partition, before });
            }
            Ok::<_, StoreError>(appended.event.sequence_number)
        })?;
        pending.wait()?;
        lock(slot).publish(seq);
        Ok((partition, seq))
    }

    /// Puts back the events a previous run stored (by partition and sequence number); those
    /// older than the retention leave at once.
    pub fn restore(&self, records: Vec<EventRecord>) -> Result<(), EventsError> {
        let now_ms = self.clock.now_ms();
        let mut by_partition: Vec<Vec<partition::Event>> =
            (0..self.config.partitions).map(|_| Vec::new()).collect();
        for record in records {
            let Some(events) = by_partition.get_mut(record.partition as usize) else {
                return Err(EventsError::new(
                    EventsCondition::ArgumentOutOfRange,
                    format!(
                        "the data dir holds events of partition {}, but --partitions is {}: start with the partition count it was written with, or another --data-dir",
                        record.partition, self.config.partitions
                    ),
                ));
            };
            let event = stored::event(record)
                .map_err(|e| EventsError::new(EventsCondition::ArgumentError, e))?;
            events.push(event);
        }
        for (slot, events) in self.partitions.iter().zip(by_partition) {
            *lock(slot) = Partition::restored(events, now_ms, &self.limits);
        }
        Ok(())
    }

    fn partition(&self, id: u32) -> Option<&Mutex<Partition>> {
        self.partitions.get(id as usize)
    }

    /// A partition id as a link or request names it (`"0"` … `"N-1"`).
    pub fn parse_partition(&self, text: &str) -> Option<u32> {
        text.parse::<u32>()
            .ok()
            .filter(|p| *p < self.config.partitions)
    }

    pub fn info(&self, id: u32, now_ms: i64) -> Option<PartitionInfo> {
        let mut p = lock(self.partition(id)?);
        p.expire(now_ms, &self.limits);
        Some(p.info())
    }

    /// The sequence number a reader starting at `start` reads first.
    pub fn resolve(&self, id: u32, start: &Start, now_ms: i64) -> i64 {
        self.partition(id).map_or(0, |p| {
            let mut p = lock(p);
            p.expire(now_ms, &self.limits);
            p.resolve(start)
        })
    }

    /// Up to `max` events of partition `id` from sequence number `from` on.
    pub fn read(&self, id: u32, from: i64, max: usize, now_ms: i64) -> Vec<ReadEvent> {
        let Some(p) = self.partition(id) else {
            return Vec::new();
        };
        let mut p = lock(p);
        p.expire(now_ms, &self.limits);
        p.read(from, max)
            .into_iter()
            .map(
                |(sequence_number, offset, enqueued_ms, message)| ReadEvent {
                    sequence_number,
                    offset,
                    enqueued_ms,
                    message,
                },
            )
            .collect()
    }

    /// Changes whenever partition `id` gets an event.
    pub fn watch(&self, id: u32) -> Option<watch::Receiver<i64>> {
        Some(lock(self.partition(id)?).watch())
    }

    /// Empties every partition (a hub reset), in `store` too: sequence numbers start again
    /// at 0; the consumer groups go back to the initial ones.
    pub fn clear(&self, store: &Store) -> Result<(), StoreError> {
        // Queued while every partition is locked: no append falls between the two.
        let mut partitions: Vec<_> = self.partitions.iter().map(lock).collect();
        for p in &mut partitions {
            p.clear();
        }
        let cleared = store.write(|| vec![Change::ClearEvents]);
        drop(partitions);
        cleared.wait()?;
        self.groups.reset(store)
    }

    /// The control API's view: partitions with their state, consumer groups.
    pub fn view(&self, now_ms: i64) -> serde_json::Value {
        let partitions: Vec<serde_json::Value> = (0..self.config.partitions)
            .filter_map(|id| {
                let info = self.info(id, now_ms)?;
                Some(serde_json::json!({
                    "partitionId": id.to_string(),
                    "beginSequenceNumber": info.begin_sequence_number,
                    "lastSequenceNumber": info.last_sequence_number,
                    "lastOffset": info.last_offset.to_string(),
                    "isEmpty": info.is_empty,
                }))
            })
            .collect();
        serde_json::json!({
            "name": self.config.name,
            "partitionCount": self.config.partitions,
            "retentionHours": self.config.retention_hours,
            "maxEventsPerPartition": MAX_EVENTS_PER_PARTITION,
            "maxBytesPerPartition": MAX_BYTES_PER_PARTITION,
            "consumerGroups": self.groups.list(),
            "partitions": partitions,
        })
    }
}

/// One event as a reader gets it.
pub struct ReadEvent {
    pub sequence_number: i64,
    pub offset: i64,
    pub enqueued_ms: i64,
    pub message: Arc<DeviceMessage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(partitions: u32) -> Events {
        Events::new(
            EventsConfig {
                partitions,
                ..Default::default()
            },
            Arc::new(Clock::new()),
        )
        .unwrap()
    }

    #[test]
    fn a_device_and_its_modules_always_land_in_one_partition() {
        let e = events(4);
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        let p = e.partition_of("dev-1");
        assert_eq!(e.partition_of("dev-1/mod-a"), p);
        let used: std::collections::BTreeSet<u32> =
            (0..64).map(|i| e.partition_of(&format!("d{i}"))).collect();
        assert_eq!(used.len(), 4, "devices spread over every partition");
        let m = DeviceMessage {
            client: "dev-1".into(),
            ..Default::default()
        };
        let store = Store::memory();
        assert_eq!(e.append(&store, m.clone(), 5), Ok((p, 0)));
        assert_eq!(e.append(&store, m, 6), Ok((p, 1)));
        assert_eq!(e.read(p, 0, 10, 7).len(), 2);
    }

    #[test]
    fn partitions_and_retention_outside_iot_hubs_ranges_are_refused_in_one_line() {
        for n in [0, 1, 129] {
            let err = Events::new(
                EventsConfig {
                    partitions: n,
                    ..Default::default()
                },
                Arc::new(Clock::new()),
            )
            .err()
            .unwrap();
            assert!(
                err.message
                    .starts_with("--partitions must be between 2 and 128")
                    && err.condition == EventsCondition::ArgumentOutOfRange,
                "{err}"
            );
        }
        let err = EventsConfig {
            retention_hours: 169,
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(err.message.contains("--retention-hours"), "{err}");
    }
}
