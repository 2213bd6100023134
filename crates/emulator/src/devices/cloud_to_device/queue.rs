//! Cloud-to-device messages: one queue per device, with IoT Hub's documented rules
//! (learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-c2d). Whatever transport a
//! message arrives on (the service's AMQP `/messages/devicebound`) or leaves by (MQTT, AMQP),
//! its life is decided here:
//! - at most 50 messages in a device's queue (the 51st send is refused), 64 KB each;
//! - a time to live of 1 hour unless the sender sets an expiry, at most 2 days;
//! - Enqueued → Invisible (delivered, locked for 1 minute) → Completed, Rejected (dead
//!   lettered) or Abandoned (Enqueued again); a lock that times out is an abandon;
//! - a message that went Enqueued → Invisible 10 times is dead-lettered;
//! - feedback (`iothub-ack` none/positive/negative/full): Success on complete for positive and
//!   full; Expired, DeliveryCountExceeded, Rejected (and Purged) for negative and full.
//!
//! Time is the emulator's clock, so a test can advance past a TTL or a lock.

use std::collections::VecDeque;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::clock::iso;

/// Messages a device's queue holds at most.
pub const MAX_QUEUE_DEPTH: usize = 50;
/// A message's time to live when the sender sets no expiry (the hub's default).
pub const DEFAULT_TTL_MS: i64 = 60 * 60 * 1000;
/// The longest time to live a message may have.
pub const MAX_TTL_MS: i64 = 2 * 24 * 60 * 60 * 1000;
/// How many times a message may be delivered (Enqueued → Invisible) before it is dead-lettered.
pub const MAX_DELIVERY_COUNT: u32 = 10;
/// The largest message body a device's queue takes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long a delivered message stays locked waiting for the device's answer.
pub const LOCK_MS: i64 = 60 * 1000;

/// Which outcomes the sender wants feedback about (`iothub-ack`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    #[default]
    None,
    Positive,
    Negative,
    Full,
}

impl Ack {
    pub fn parse(text: &str) -> Option<Ack> {
        match text {
            "none" => Some(Ack::None),
            "positive" => Some(Ack::Positive),
            "negative" => Some(Ack::Negative),
            "full" => Some(Ack::Full),
            _ => None,
        }
    }

    fn wants(self, status: FeedbackStatus) -> bool {
        match self {
            Ack::None => false,
            Ack::Full => true,
            Ack::Positive => status == FeedbackStatus::Success,
            Ack::Negative => status != FeedbackStatus::Success,
        }
    }
}

/// A message as the service sent it; what the device receives (transport-neutral).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudMessage {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub user_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The absolute expiry the sender asked for (epoch ms), if any.
    pub expiry_ms: Option<i64>,
    pub ack: Ack,
    /// Application properties, in the order the sender gave them.
    pub properties: Vec<(String, String)>,
    #[serde(serialize_with = "base64_out", deserialize_with = "base64_in")]
    pub body: Vec<u8>,
}

fn base64_out<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

fn base64_in<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

/// A message handed to a device: what it holds, and the lock token its answer names.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub lock_token: u64,
    /// `/devices/{id}/messages/devicebound`, as IoT Hub sets `to`.
    pub to: String,
    pub enqueued_ms: i64,
    pub expiry_ms: i64,
    pub delivery_count: u32,
    pub message: CloudMessage,
}

/// How a device settles a delivered message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Settle {
    Complete,
    Reject,
    Abandon,
}

/// Why a send is refused (IoT Hub's error for each).
#[derive(Clone, Debug, PartialEq)]
pub enum SendRefusal {
    DeviceNotFound,
    QueueFull,
    /// Over `MAX_MESSAGE_BYTES`.
    TooLarge,
    /// Modules have no cloud-to-device queue in IoT Hub.
    ModuleTarget,
    /// The store could not write the message (the text says why).
    NotSaved(String),
}

/// `statusCode` of a feedback record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FeedbackStatus {
    Success,
    Expired,
    DeliveryCountExceeded,
    Rejected,
    Purged,
}

impl FeedbackStatus {
    fn code(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Expired => "Expired",
            Self::DeliveryCountExceeded => "DeliveryCountExceeded",
            Self::Rejected => "Rejected",
            Self::Purged => "Purged",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Expired => "Message expired",
            Self::DeliveryCountExceeded => "Message delivery count exceeded",
            Self::Rejected => "Message rejected",
            Self::Purged => "Message purged",
        }
    }
}

/// One record of a feedback batch, as the service's feedback receiver reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Feedback {
    pub original_message_id: String,
    pub device_id: String,
    pub device_generation_id: String,
    pub enqueued_ms: i64,
    pub status: FeedbackStatus,
}

impl Feedback {
    pub fn to_json(&self) -> Value {
        json!({
            "originalMessageId": self.original_message_id,
            "description": self.status.description(),
            "deviceGenerationId": self.device_generation_id,
            "deviceId": self.device_id,
            "enqueuedTimeUtc": iso(self.enqueued_ms),
            "statusCode": self.status.code(),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Queued {
    lock_token: u64,
    enqueued_ms: i64,
    expiry_ms: i64,
    delivery_count: u32,
    /// Set while the message is Invisible (delivered, waiting for the device's answer).
    locked_until_ms: Option<i64>,
    message: CloudMessage,
}

/// One device's queue: the messages Enqueued or Invisible, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    device_id: String,
    generation_id: String,
    messages: VecDeque<Queued>,
}

impl Queue {
    pub fn new(device_id: &str, generation_id: &str) -> Self {
        Queue {
            device_id: device_id.to_string(),
            generation_id: generation_id.to_string(),
            messages: VecDeque::new(),
        }
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// The highest lock token in the queue (tokens are never reused after a restart).
    pub fn last_token(&self) -> u64 {
        self.messages
            .iter()
            .map(|m| m.lock_token)
            .max()
            .unwrap_or(0)
    }

    fn feedback(&self, m: &Queued, status: FeedbackStatus) -> Option<Feedback> {
        m.message.ack.wants(status).then(|| Feedback {
            original_message_id: m.message.message_id.clone().unwrap_or_default(),
            device_id: self.device_id.clone(),
            device_generation_id: self.generation_id.clone(),
            enqueued_ms: m.enqueued_ms,
            status,
        })
    }

    /// Enqueues a message (after dropping the expired ones, whose feedback is returned).
    pub fn push(
        &mut self,
        lock_token: u64,
        message: CloudMessage,
        now_ms: i64,
        feedback: &mut Vec<Feedback>,
    ) -> Result<(), SendRefusal> {
        if message.body.len() > MAX_MESSAGE_BYTES {
            return Err(SendRefusal::TooLarge);
        }
        self.sweep(now_ms, feedback);
        if self.messages.len() >= MAX_QUEUE_DEPTH {
            return Err(SendRefusal::QueueFull);
        }
        let longest = now_ms.saturating_add(MAX_TTL_MS);
        let expiry_ms = message
            .expiry_ms
            .unwrap_or(now_ms.saturating_add(DEFAULT_TTL_MS))
            .min(longest);
        self.messages.push_back(Queued {
            lock_token,
            enqueued_ms: now_ms,
            expiry_ms,
            delivery_count: 0,
            locked_until_ms: None,
            message,
        });
        Ok(())
    }

    /// Applies time: expired messages leave (Expired feedback), timed-out locks are
    /// abandoned. True when something changed.
    pub fn sweep(&mut self, now_ms: i64, feedback: &mut Vec<Feedback>) -> bool {
        let before = self.messages.len();
        let mut changed = false;
        let mut kept = VecDeque::with_capacity(before);
        for mut m in std::mem::take(&mut self.messages) {
            if m.expiry_ms <= now_ms {
                feedback.extend(self.feedback(&m, FeedbackStatus::Expired));
                continue;
            }
            if m.locked_until_ms.is_some_and(|until| until <= now_ms) {
                m.locked_until_ms = None;
                changed = true;
            }
            kept.push_back(m);
        }
        self.messages = kept;
        changed || self.messages.len() != before
    }

    /// Delivers every Enqueued message (`deliver_up_to` without a bound).
    #[cfg(test)]
    pub fn deliver(&mut self, now_ms: i64, feedback: &mut Vec<Feedback>) -> Vec<Delivery> {
        self.deliver_up_to(usize::MAX, now_ms, feedback)
    }

    /// Delivers up to `max` Enqueued messages (an HTTP poll takes one): each is locked and its
    /// delivery counted; one that was delivered `MAX_DELIVERY_COUNT` times already is
    /// dead-lettered instead.
    pub fn deliver_up_to(
        &mut self,
        max: usize,
        now_ms: i64,
        feedback: &mut Vec<Feedback>,
    ) -> Vec<Delivery> {
        self.sweep(now_ms, feedback);
        let to = format!("/devices/{}/messages/devicebound", self.device_id);
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.messages.len());
        for mut m in std::mem::take(&mut self.messages) {
            if m.locked_until_ms.is_none() && out.len() < max {
                if m.delivery_count >= MAX_DELIVERY_COUNT {
                    feedback.extend(self.feedback(&m, FeedbackStatus::DeliveryCountExceeded));
                    continue;
                }
                m.delivery_count += 1;
                m.locked_until_ms = Some(now_ms.saturating_add(LOCK_MS));
                out.push(Delivery {
                    lock_token: m.lock_token,
                    to: to.clone(),
                    enqueued_ms: m.enqueued_ms,
                    expiry_ms: m.expiry_ms,
                    delivery_count: m.delivery_count,
                    message: m.message.clone(),
                });
            }
            kept.push_back(m);
        }
        self.messages = kept;
        out
    }

    /// Settles a delivered (locked) message; false when the token names none (its lock was
    /// lost: it expired, timed out or was settled already).
    pub fn settle(
        &mut self,
        lock_token: u64,
        how: Settle,
        now_ms: i64,
        feedback: &mut Vec<Feedback>,
    ) -> bool {
        self.sweep(now_ms, feedback);
        let Some(at) = self
            .messages
            .iter()
            .position(|m| m.lock_token == lock_token && m.locked_until_ms.is_some())
        else {
            return false;
        };
        match how {
            Settle::Abandon => self.messages[at].locked_until_ms = None,
            Settle::Complete | Settle::Reject => {
                let m = self.messages.remove(at).expect("position is in the queue");
                let status = if how == Settle::Complete {
                    FeedbackStatus::Success
                } else {
                    FeedbackStatus::Rejected
                };
                feedback.extend(self.feedback(&m, status));
            }
        }
        true
    }

    /// Empties the queue (Purged feedback for those that asked); how many were removed.
    pub fn purge(&mut self, feedback: &mut Vec<Feedback>) -> usize {
        let removed = std::mem::take(&mut self.messages);
        for m in &removed {
            feedback.extend(self.feedback(m, FeedbackStatus::Purged));
        }
        removed.len()
    }

    /// The next instant (emulator ms) at which time changes the queue: an expiry or a lock end.
    pub fn next_deadline(&self) -> Option<i64> {
        self.messages
            .iter()
            .flat_map(|m| [Some(m.expiry_ms), m.locked_until_ms])
            .flatten()
            .min()
    }

    /// True when a message waits for delivery.
    pub fn has_enqueued(&self) -> bool {
        self.messages.iter().any(|m| m.locked_until_ms.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, ack: Ack) -> CloudMessage {
        CloudMessage {
            message_id: Some(id.into()),
            ack,
            body: b"hi".to_vec(),
            ..Default::default()
        }
    }

    fn statuses(feedback: &[Feedback]) -> Vec<(&str, FeedbackStatus)> {
        feedback
            .iter()
            .map(|f| (f.original_message_id.as_str(), f.status))
            .collect()
    }

    #[test]
    fn the_fifty_first_message_is_refused() {
        let mut q = Queue::new("d1", "1");
        let mut fb = Vec::new();
        for i in 0..MAX_QUEUE_DEPTH as u64 {
            q.push(i, message("m", Ack::None), 0, &mut fb).unwrap();
        }
        assert_eq!(
            q.push(99, message("m", Ack::None), 0, &mut fb),
            Err(SendRefusal::QueueFull)
        );
        // Delivered (Invisible) messages still count.
        assert_eq!(q.deliver(0, &mut fb).len(), MAX_QUEUE_DEPTH);
        assert_eq!(
            q.push(99, message("m", Ack::None), 0, &mut fb),
            Err(SendRefusal::QueueFull)
        );
        assert!(q.settle(0, Settle::Complete, 1, &mut fb));
        assert!(q.push(99, message("m", Ack::None), 1, &mut fb).is_ok());
    }

    #[test]
    fn complete_reject_and_abandon() {
        let mut q = Queue::new("d1", "7");
        let mut fb = Vec::new();
        q.push(1, message("a", Ack::Full), 0, &mut fb).unwrap();
        q.push(2, message("b", Ack::Full), 0, &mut fb).unwrap();
        q.push(3, message("c", Ack::Positive), 0, &mut fb).unwrap();
        let delivered = q.deliver(10, &mut fb);
        assert_eq!(delivered.len(), 3);
        assert_eq!(delivered[0].to, "/devices/d1/messages/devicebound");
        assert_eq!(delivered[0].delivery_count, 1);
        // Nothing is delivered twice while locked.
        assert!(q.deliver(11, &mut fb).is_empty());
        assert!(q.settle(1, Settle::Complete, 12, &mut fb));
        assert!(q.settle(2, Settle::Reject, 12, &mut fb));
        assert!(
            !q.settle(2, Settle::Complete, 12, &mut fb),
            "settled already"
        );
        assert!(q.settle(3, Settle::Abandon, 12, &mut fb));
        assert_eq!(
            statuses(&fb),
            [
                ("a", FeedbackStatus::Success),
                ("b", FeedbackStatus::Rejected)
            ]
        );
        assert_eq!(fb[0].device_generation_id, "7");
        let again = q.deliver(13, &mut fb);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].lock_token, again[0].delivery_count), (3, 2));
    }

    #[test]
    fn a_poll_takes_one_message_at_a_time() {
        let mut q = Queue::new("d1", "1");
        let mut fb = Vec::new();
        q.push(1, message("a", Ack::None), 0, &mut fb).unwrap();
        q.push(2, message("b", Ack::None), 0, &mut fb).unwrap();
        let first = q.deliver_up_to(1, 0, &mut fb);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].lock_token, 1);
        assert_eq!(q.deliver_up_to(1, 0, &mut fb)[0].lock_token, 2);
        assert!(q.deliver_up_to(1, 0, &mut fb).is_empty());
    }

    #[test]
    fn a_lock_times_out_and_the_tenth_delivery_is_the_last() {
        let mut q = Queue::new("d1", "1");
        let mut fb = Vec::new();
        q.push(1, message("a", Ack::Negative), 0, &mut fb).unwrap();
        let mut now = 0;
        for count in 1..=MAX_DELIVERY_COUNT {
            let d = q.deliver(now, &mut fb);
            assert_eq!(d[0].delivery_count, count);
            assert_eq!(q.next_deadline(), Some(now + LOCK_MS));
            now += LOCK_MS - 1;
            assert!(!q.sweep(now, &mut fb), "still locked");
            now += 1;
            assert!(q.sweep(now, &mut fb), "the lock timed out");
        }
        assert!(q.deliver(now, &mut fb).is_empty());
        assert!(q.is_empty());
        assert_eq!(
            statuses(&fb),
            [("a", FeedbackStatus::DeliveryCountExceeded)]
        );
    }

    #[test]
    fn messages_expire_after_their_ttl_or_expiry() {
        let mut q = Queue::new("d1", "1");
        let mut fb = Vec::new();
        q.push(1, message("default", Ack::Full), 0, &mut fb)
            .unwrap();
        let mut short = message("short", Ack::Negative);
        short.expiry_ms = Some(1000);
        q.push(2, short, 0, &mut fb).unwrap();
        let mut long = message("long", Ack::Positive);
        long.expiry_ms = Some(i64::MAX);
        q.push(3, long, 0, &mut fb).unwrap();
        assert_eq!(q.next_deadline(), Some(1000));
        q.sweep(1000, &mut fb);
        q.sweep(DEFAULT_TTL_MS, &mut fb);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(MAX_TTL_MS), "capped at 2 days");
        q.sweep(MAX_TTL_MS, &mut fb);
        assert!(q.is_empty());
        // Positive-only feedback says nothing about an expiry.
        assert_eq!(
            statuses(&fb),
            [
                ("short", FeedbackStatus::Expired),
                ("default", FeedbackStatus::Expired)
            ]
        );
    }

    #[test]
    fn ack_decides_which_feedback_is_sent() {
        use FeedbackStatus::*;
        assert!(!Ack::None.wants(Success) && !Ack::None.wants(Rejected));
        assert!(Ack::Positive.wants(Success) && !Ack::Positive.wants(Expired));
        assert!(!Ack::Negative.wants(Success) && Ack::Negative.wants(Purged));
        assert!(Ack::Full.wants(Success) && Ack::Full.wants(DeliveryCountExceeded));
        assert_eq!(Ack::parse("full"), Some(Ack::Full));
        assert_eq!(Ack::parse("Full"), None);
    }

    #[test]
    fn purge_and_the_stored_form() {
        let mut q = Queue::new("d1", "1");
        let mut fb = Vec::new();
        let mut m = message("a", Ack::Full);
        m.properties = vec![("k".into(), "v".into())];
        m.body = vec![0, 255, 10];
        q.push(5, m.clone(), 0, &mut fb).unwrap();
        q.deliver(0, &mut fb);
        let text = serde_json::to_string(&q).unwrap();
        let mut back: Queue = serde_json::from_str(&text).unwrap();
        assert_eq!(back.last_token(), 5);
        assert!(!back.has_enqueued(), "the lock survives");
        assert!(back.settle(5, Settle::Abandon, 1, &mut fb));
        assert_eq!(back.deliver(1, &mut fb)[0].message, m);
        assert_eq!(back.purge(&mut fb), 1);
        assert_eq!(statuses(&fb), [("a", FeedbackStatus::Purged)]);
    }
}
