//! One partition of the `events` log: the events it retains, oldest first, with their
//! sequence numbers and offsets, and the wake-up of readers waiting for the next one.
//!
//! Sequence numbers count from 0 and offsets from 0 (the byte position of the event in the
//! partition's stream, as Event Hubs' offsets are), both per partition and never reused, so a
//! reader's position stays valid when older events leave by retention or the memory bound.
//!
//! An appended event is seen by readers once it is published (`publish`), which `Events`
//! does once the store has it: a reader never gets an event a crash could take back, so after
//! a restart on the same data dir its position is still right.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use crate::device_message::DeviceMessage;

/// One retained event.
#[derive(Clone, Debug)]
pub struct Event {
    pub sequence_number: i64,
    pub offset: i64,
    /// On the emulator's clock.
    pub enqueued_ms: i64,
    pub message: Arc<DeviceMessage>,
}

impl Event {
    /// What one event counts against the memory bound: its body and properties, plus a fixed
    /// share for the rest.
    fn size(&self) -> usize {
        let m = &self.message;
        let props: usize = m.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        m.body.len() + props + 256
    }
}

/// Where a reader starts (from the link's selector filter).
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// The next event after the newest at attach time (`@latest`).
    Latest,
    Offset {
        offset: i64,
        inclusive: bool,
    },
    SequenceNumber {
        sequence_number: i64,
        inclusive: bool,
    },
    /// Events enqueued after this time (ms since the epoch, emulator's clock).
    EnqueuedAfter(i64),
}

/// What `$management` says of a partition.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionInfo {
    pub begin_sequence_number: i64,
    pub last_sequence_number: i64,
    pub last_offset: i64,
    pub last_enqueued_ms: i64,
    pub is_empty: bool,
}

#[derive(Debug)]
pub struct Partition {
    events: VecDeque<Event>,
    bytes: usize,
    next_sequence_number: i64,
    next_offset: i64,
    /// The newest published event's sequence number (-1: none yet): readers read up to it and
    /// wait on it.
    newest: watch::Sender<i64>,
    /// The store was told that the events before this sequence number left.
    dropped_before: i64,
    /// The newest event's offset and enqueued time, kept when it leaves (as Event Hubs reports
    /// them for an emptied partition).
    last_offset: i64,
    last_enqueued_ms: i64,
}

impl Default for Partition {
    fn default() -> Self {
        Partition {
            events: VecDeque::new(),
            bytes: 0,
            next_sequence_number: 0,
            next_offset: 0,
            newest: watch::Sender::new(-1),
            dropped_before: 0,
            last_offset: -1,
            last_enqueued_ms: 0,
        }
    }
}

/// What an append did: the event, and the sequence number before which events left since the
/// previous append (for the store), if any did.
pub struct Appended {
    pub event: Event,
    pub dropped_before: Option<i64>,
}

impl Partition {
    /// A partition holding `events` (oldest first, as a previous run stored them), published;
    /// its numbering goes on after the newest.
    pub fn restored(events: Vec<Event>, now_ms: i64, limits: &Limits) -> Self {
        let mut p = Partition::default();
        if let Some(newest) = events.last() {
            p.next_sequence_number = newest.sequence_number + 1;
            p.next_offset = newest.offset + newest.message.body.len().max(1) as i64;
            p.last_offset = newest.offset;
            p.last_enqueued_ms = newest.enqueued_ms;
            p.newest.send_replace(newest.sequence_number);
        }
        p.dropped_before = events.first().map_or(0, |e| e.sequence_number);
        p.bytes = events.iter().map(Event::size).sum();
        p.events = events.into();
        p.expire(now_ms, limits);
        p
    }

    /// Appends an event (seen by readers once published), then drops what retention or the
    /// memory bound no longer keeps.
    pub fn append(
        &mut self,
        message: Arc<DeviceMessage>,
        now_ms: i64,
        limits: &Limits,
    ) -> Appended {
        let event = Event {
            sequence_number: self.next_sequence_number,
            offset: self.next_offset,
            enqueued_ms: now_ms,
            message,
        };
        self.next_sequence_number += 1;
        // The next offset follows this event's bytes, as in Event Hubs' streams.
        self.next_offset += event.message.body.len().max(1) as i64;
        self.bytes += event.size();
        self.events.push_back(event.clone());
        self.expire(now_ms, limits);
        let begin = self.begin_sequence_number();
        let dropped_before = (begin > self.dropped_before).then(|| {
            self.dropped_before = begin;
            begin
        });
        Appended {
            event,
            dropped_before,
        }
    }

    /// Lets readers see the events up to `sequence_number` (appended, and stored with a data
    /// dir), waking those waiting.
    pub fn publish(&mut self, sequence_number: i64) {
        if sequence_number <= *self.newest.borrow() {
            return;
        }
        if let Some(e) = self
            .events
            .iter()
            .rev()
            .find(|e| e.sequence_number == sequence_number)
        {
            self.last_offset = e.offset;
            self.last_enqueued_ms = e.enqueued_ms;
        }
        self.newest.send_replace(sequence_number);
    }

    /// The newest published event's sequence number (-1: none).
    fn published(&self) -> i64 {
        *self.newest.borrow()
    }

    /// Drops events older than the retention period, and the oldest while the partition holds
    /// more than the memory bound allows (its newest event always stays).
    pub fn expire(&mut self, now_ms: i64, limits: &Limits) {
        while let Some(front) = self.events.front() {
            let too_old = front.enqueued_ms <= now_ms - limits.retention_ms;
            let too_many = self.events.len() > limits.max_events || self.bytes > limits.max_bytes;
            // The newest event stays unless it is too old itself.
            let keep = !too_old && (!too_many || self.events.len() == 1);
            if keep {
                break;
            }
            if let Some(e) = self.events.pop_front() {
                self.bytes -= e.size();
            }
        }
    }

    /// Empties the partition (a hub reset): numbering starts again, waiting readers wake.
    pub fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
        self.next_sequence_number = 0;
        self.next_offset = 0;
        self.dropped_before = 0;
        self.last_offset = -1;
        self.last_enqueued_ms = 0;
        self.newest.send_replace(-1);
    }

    /// The sequence number a reader starting at `start` reads first.
    pub fn resolve(&self, start: &Start) -> i64 {
        let first_at_or_after = |keep: &dyn Fn(&Event) -> bool| {
            self.events
                .iter()
                .find(|e| keep(e))
                .map_or(self.next_sequence_number, |e| e.sequence_number)
        };
        match *start {
            Start::Latest => self.published() + 1,
            Start::SequenceNumber {
                sequence_number,
                inclusive,
            } => {
                let first = if inclusive {
                    sequence_number
                } else {
                    sequence_number + 1
                };
                first.max(self.begin_sequence_number())
            }
            Start::Offset { offset, inclusive } => {
                first_at_or_after(&|e| e.offset > offset || (inclusive && e.offset == offset))
            }
            Start::EnqueuedAfter(ms) => first_at_or_after(&|e| e.enqueued_ms > ms),
        }
    }

    fn begin_sequence_number(&self) -> i64 {
        self.events
            .front()
            .map_or(self.next_sequence_number, |e| e.sequence_number)
    }

    /// Up to `max` published events from sequence number `from` on (from the oldest retained
    /// when `from` has left), each shared with the reader.
    pub fn read(&self, from: i64, max: usize) -> Vec<(i64, i64, i64, Arc<DeviceMessage>)> {
        let begin = self.begin_sequence_number();
        let skip = usize::try_from(from.max(begin) - begin).unwrap_or(usize::MAX);
        let published = self.published();
        self.events
            .iter()
            .skip(skip)
            .take_while(|e| e.sequence_number <= published)
            .take(max)
            .map(|e| {
                (
                    e.sequence_number,
                    e.offset,
                    e.enqueued_ms,
                    e.message.clone(),
                )
            })
            .collect()
    }

    /// The newest event's sequence number (-1: none), changing with every append.
    pub fn watch(&self) -> watch::Receiver<i64> {
        self.newest.subscribe()
    }

    pub fn info(&self) -> PartitionInfo {
        PartitionInfo {
            begin_sequence_number: self.begin_sequence_number(),
            last_sequence_number: self.published(),
            last_offset: self.last_offset,
            last_enqueued_ms: self.last_enqueued_ms,
            is_empty: self
                .events
                .front()
                .is_none_or(|e| e.sequence_number > self.published()),
        }
    }
}

/// What a partition keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub retention_ms: i64,
    pub max_events: usize,
    pub max_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Arc<DeviceMessage> {
        Arc::new(DeviceMessage {
            client: "d".into(),
            body: body.as_bytes().to_vec().into(),
            ..Default::default()
        })
    }

    /// Appends and publishes (as `Events` does once the store has the event).
    fn append(p: &mut Partition, body: &str, now_ms: i64, limits: &Limits) -> i64 {
        let seq = p
            .append(message(body), now_ms, limits)
            .event
            .sequence_number;
        p.publish(seq);
        seq
    }

    const LIMITS: Limits = Limits {
        retention_ms: 1000,
        max_events: 3,
        max_bytes: usize::MAX,
    };

    #[test]
    fn sequence_numbers_and_offsets_grow_and_starts_resolve() {
        let mut p = Partition::default();
        for (i, body) in ["aa", "bbb", "c"].iter().enumerate() {
            assert_eq!(append(&mut p, body, 10 + i as i64, &LIMITS), i as i64);
        }
        let offsets: Vec<i64> = p.read(0, 10).iter().map(|e| e.1).collect();
        assert_eq!(offsets, vec![0, 2, 5]);
        assert_eq!(p.resolve(&Start::Latest), 3);
        let seq = |n, inclusive| Start::SequenceNumber {
            sequence_number: n,
            inclusive,
        };
        assert_eq!(p.resolve(&seq(1, true)), 1);
        assert_eq!(p.resolve(&seq(1, false)), 2);
        let off = |offset, inclusive| Start::Offset { offset, inclusive };
        assert_eq!(p.resolve(&off(-1, false)), 0);
        assert_eq!(p.resolve(&off(2, true)), 1);
        assert_eq!(p.resolve(&off(2, false)), 2);
        assert_eq!(p.resolve(&Start::EnqueuedAfter(10)), 1);
        let info = p.info();
        assert_eq!(
            (info.begin_sequence_number, info.last_sequence_number),
            (0, 2)
        );
        assert_eq!(info.last_offset, 5);
        assert!(!info.is_empty);
    }

    #[test]
    fn the_oldest_leave_by_count_and_by_retention_and_positions_stay() {
        let mut p = Partition::default();
        for i in 0..5 {
            append(&mut p, "x", 100 + i, &LIMITS);
        }
        assert_eq!(p.info().begin_sequence_number, 2, "three kept at most");
        assert_eq!(
            p.read(0, 10)[0].0,
            2,
            "a gone position reads from the oldest kept"
        );
        p.expire(100 + 4 + 1000, &LIMITS);
        assert!(p.info().is_empty, "all older than the retention");
        assert_eq!(p.info().last_sequence_number, 4);
        assert_eq!(p.info().last_offset, 4, "the last offset stays");
        assert_eq!(append(&mut p, "y", 5000, &LIMITS), 5);
    }

    #[test]
    fn readers_see_an_event_once_it_is_published() {
        let mut p = Partition::default();
        append(&mut p, "a", 10, &LIMITS);
        let pending = p.append(message("b"), 11, &LIMITS).event.sequence_number;
        assert_eq!(p.read(0, 10).len(), 1, "the unpublished event is not read");
        assert_eq!(p.info().last_sequence_number, 0);
        assert_eq!(p.resolve(&Start::Latest), 1, "latest waits for it");
        let watch = p.watch();
        p.publish(pending);
        assert!(watch.has_changed().unwrap());
        assert_eq!(p.read(0, 10).len(), 2);
        assert_eq!(p.info().last_offset, 1);
    }

    #[test]
    fn the_store_is_told_once_what_left() {
        let mut p = Partition::default();
        let dropped: Vec<Option<i64>> = (0..5)
            .map(|i| p.append(message("x"), 100 + i, &LIMITS).dropped_before)
            .collect();
        assert_eq!(dropped, [None, None, None, Some(1), Some(2)]);
        // Retention empties it between appends: the next append says so, the newest stays.
        p.expire(100 + 4 + 1000, &LIMITS);
        let next = p.append(message("x"), 5000, &LIMITS);
        assert_eq!(
            (next.event.sequence_number, next.dropped_before),
            (5, Some(5))
        );
    }

    #[test]
    fn a_restored_partition_numbers_on_and_applies_retention() {
        let events: Vec<Event> = (0..3)
            .map(|i| Event {
                sequence_number: 7 + i,
                offset: 20 + 2 * i,
                enqueued_ms: 100 + i,
                message: message("ab"),
            })
            .collect();
        let mut p = Partition::restored(events.clone(), 102, &LIMITS);
        assert_eq!(p.read(0, 10).len(), 3, "stored events are published");
        let info = p.info();
        assert_eq!(
            (info.begin_sequence_number, info.last_sequence_number),
            (7, 9)
        );
        assert_eq!((info.last_offset, info.last_enqueued_ms), (24, 102));
        assert_eq!(append(&mut p, "c", 103, &LIMITS), 10);
        assert_eq!(p.read(10, 1)[0].1, 26, "the offset follows the last body");
        // Restarted after the retention: empty, numbering goes on.
        let mut late = Partition::restored(events, 102 + 1000, &LIMITS);
        assert!(late.info().is_empty);
        assert_eq!(late.info().last_sequence_number, 9);
        assert_eq!(append(&mut late, "d", 2000, &LIMITS), 10);
    }
}
