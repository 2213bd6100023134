//! One partition of the `events` log: the events it retains, oldest first, with their
//! sequence numbers and offsets, and the wake-up of readers waiting for the next one.
//!
//! Sequence numbers count from 0 and offsets from 0 (the byte position of the event in the
//! partition's stream, as Event Hubs' offsets are), both per partition and never reused, so a
//! reader's position stays valid when older events leave by retention or the memory bound.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use crate::device_message::DeviceMessage;

/// One retained event.
#[derive(Debug)]
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
    /// The newest event's sequence number (-1: none yet): readers wait on it.
    newest: watch::Sender<i64>,
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
            last_offset: -1,
            last_enqueued_ms: 0,
        }
    }
}

impl Partition {
    /// Appends an event, then drops what retention or the memory bound no longer keeps.
    pub fn append(&mut self, message: Arc<DeviceMessage>, now_ms: i64, limits: &Limits) -> i64 {
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
        let sequence_number = event.sequence_number;
        self.last_offset = event.offset;
        self.last_enqueued_ms = now_ms;
        self.events.push_back(event);
        self.expire(now_ms, limits);
        self.newest.send_replace(sequence_number);
        sequence_number
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
            Start::Latest => self.next_sequence_number,
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

    /// Up to `max` events from sequence number `from` on (from the oldest retained when
    /// `from` has left), each shared with the reader.
    pub fn read(&self, from: i64, max: usize) -> Vec<(i64, i64, i64, Arc<DeviceMessage>)> {
        let begin = self.begin_sequence_number();
        let skip = usize::try_from(from.max(begin) - begin).unwrap_or(usize::MAX);
        self.events
            .iter()
            .skip(skip)
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
            last_sequence_number: self.next_sequence_number - 1,
            last_offset: self.last_offset,
            last_enqueued_ms: self.last_enqueued_ms,
            is_empty: self.events.is_empty(),
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

    const LIMITS: Limits = Limits {
        retention_ms: 1000,
        max_events: 3,
        max_bytes: usize::MAX,
    };

    #[test]
    fn sequence_numbers_and_offsets_grow_and_starts_resolve() {
        let mut p = Partition::default();
        for (i, body) in ["aa", "bbb", "c"].iter().enumerate() {
            assert_eq!(p.append(message(body), 10 + i as i64, &LIMITS), i as i64);
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
            p.append(message("x"), 100 + i, &LIMITS);
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
        assert_eq!(p.append(message("y"), 5000, &LIMITS), 5);
    }
}
