//! The hub's cloud-to-device queues: one `Queue` (queue.rs: the rules) per device that has
//! messages, the feedback waiting for the service's feedback receiver, and the glue to the
//! rest of the registry: a send checks the device and is stored before it is answered; a
//! queued message is handed to the device's session (`Outgoing::CloudToDevice`) while the
//! device listens for messages; its answer settles it; a timer applies expiries and lock
//! timeouts on the emulator's clock.

mod queue;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

pub use queue::{
    Ack, CloudMessage, Delivery, Feedback, FeedbackStatus, Queue, SendRefusal, Settle,
    DEFAULT_TTL_MS, LOCK_MS, MAX_DELIVERY_COUNT, MAX_MESSAGE_BYTES, MAX_QUEUE_DEPTH, MAX_TTL_MS,
};

use super::{not_found, split_client, Outgoing, Registry};
use crate::clock::Clock;
use crate::errors::ApiError;
use crate::locks::lock;
use crate::store::{Change, Document, StoreError};

/// Feedback records kept for a feedback receiver at most (oldest dropped first).
const FEEDBACK_KEPT: usize = 10_000;
/// How often the timer looks whether its hub is gone, whatever the emulated clock does.
const TIMER_CHECK: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct CloudToDevice {
    queues: Mutex<HashMap<String, Queue>>,
    feedback: Mutex<VecDeque<Feedback>>,
    /// Woken when feedback waits for a feedback receiver.
    pub feedback_ready: Notify,
    /// Woken when a deadline may have moved earlier (a send, a delivery).
    deadlines: Arc<Notify>,
    last_token: AtomicU64,
}

impl CloudToDevice {
    /// The queues a previous run stored.
    pub fn restore(&self, queues: Vec<Queue>) {
        let mut map = lock(&self.queues);
        map.clear();
        for q in queues {
            self.last_token.fetch_max(q.last_token(), Ordering::Relaxed);
            map.insert(q.device_id().to_string(), q);
        }
    }

    /// Every queue and feedback forgotten (a reset, a replaced device set).
    pub fn clear(&self) {
        lock(&self.queues).clear();
        lock(&self.feedback).clear();
    }

    fn forget(&self, device: &str) {
        lock(&self.queues).remove(device);
    }

    fn add_feedback(&self, records: Vec<Feedback>) {
        if records.is_empty() {
            return;
        }
        let mut kept = lock(&self.feedback);
        for r in records {
            if kept.len() >= FEEDBACK_KEPT {
                kept.pop_front();
            }
            kept.push_back(r);
        }
        drop(kept);
        self.feedback_ready.notify_waiters();
        self.feedback_ready.notify_one();
    }

    /// The feedback waiting, oldest first (one batch for a feedback receiver).
    pub fn take_feedback(&self) -> Vec<Feedback> {
        lock(&self.feedback).drain(..).collect()
    }

    /// Feedback that could not be handed over goes back in front.
    pub fn return_feedback(&self, records: Vec<Feedback>) {
        let mut kept = lock(&self.feedback);
        for r in records.into_iter().rev() {
            kept.push_front(r);
        }
    }
}

/// The change that writes a device's queue (an empty one is removed from the store).
fn put_queue(device: &str, queue: &Queue) -> Change {
    let doc = (!queue.is_empty()).then(|| Document::of(device, queue).doc);
    Change::PutQueue(device.into(), doc)
}

/// A send that did not reach the disk.
impl From<StoreError> for SendRefusal {
    fn from(e: StoreError) -> Self {
        SendRefusal::NotSaved(format!("the hub could not save the message: {e}"))
    }
}

impl Registry {
    /// Enqueues a message the service sends to `target` (a device id), stored before it is
    /// answered, then hands it to the device if it listens.
    pub fn send_cloud_to_device(
        &self,
        target: &str,
        message: CloudMessage,
        now_ms: i64,
    ) -> Result<(), SendRefusal> {
        let (device, module) = split_client(target);
        if module.is_some() {
            return Err(SendRefusal::ModuleTarget);
        }
        let generation = self
            .read()
            .get(device)
            .map(|d| d.generation_id().to_string())
            .ok_or(SendRefusal::DeviceNotFound)?;
        let c2d = &self.cloud_to_device;
        let mut feedback = Vec::new();
        let (pushed, saved) = self.store.stage(lock(&c2d.queues), |queues, changes| {
            let queue = queues
                .entry(device.to_string())
                .or_insert_with(|| Queue::new(device, &generation));
            let token = c2d.last_token.fetch_add(1, Ordering::Relaxed) + 1;
            let pushed = queue.push(token, message, now_ms, &mut feedback);
            changes.push(|| put_queue(device, queue));
            Ok::<_, StoreError>(pushed)
        })?;
        c2d.add_feedback(feedback);
        pushed?;
        saved.wait()?;
        c2d.deadlines.notify_one();
        self.deliver_cloud_to_device(device, now_ms);
        Ok(())
    }

    /// The device's session listens for messages (MQTT subscription, AMQP link) from now on:
    /// what its queue holds is delivered.
    pub fn listen_cloud_to_device(&self, client: &str, serial: u64, now_ms: i64) {
        self.sessions.set_cloud_to_device(client, serial, true);
        self.deliver_cloud_to_device(client, now_ms);
    }

    /// Hands every Enqueued message of the device to its session, when it listens.
    pub fn deliver_cloud_to_device(&self, device: &str, now_ms: i64) {
        if !self.sessions.listens_cloud_to_device(device) {
            return;
        }
        for d in self.lock_cloud_to_device(device, usize::MAX, now_ms) {
            self.sessions.send(device, Outgoing::CloudToDevice(d));
        }
    }

    /// The next Enqueued message of the device, locked for it (an HTTP poll), if any.
    pub fn receive_cloud_to_device(&self, device: &str, now_ms: i64) -> Option<Delivery> {
        self.lock_cloud_to_device(device, 1, now_ms).pop()
    }

    /// Locks up to `max` Enqueued messages of the device for delivery.
    fn lock_cloud_to_device(&self, device: &str, max: usize, now_ms: i64) -> Vec<Delivery> {
        let c2d = &self.cloud_to_device;
        let mut feedback = Vec::new();
        let deliveries = {
            let mut queues = lock(&c2d.queues);
            let Some(queue) = queues.get_mut(device) else {
                return Vec::new();
            };
            let deliveries = queue.deliver_up_to(max, now_ms, &mut feedback);
            // Delivery counts and locks are stored without waiting: nobody waits for them.
            let _ = self.store.write_behind(|| vec![put_queue(device, queue)]);
            deliveries
        };
        c2d.add_feedback(feedback);
        if !deliveries.is_empty() {
            c2d.deadlines.notify_one();
        }
        deliveries
    }

    /// A device settles a delivered message: `Ok(false)` when its lock was lost. Stored before
    /// it is answered (the HTTP 204) and before anything follows from it (the feedback, the
    /// redelivery of an abandoned message): a settled message never comes back after a crash.
    pub fn settle_cloud_to_device(
        &self,
        device: &str,
        lock_token: u64,
        how: Settle,
        now_ms: i64,
    ) -> Result<bool, ApiError> {
        let c2d = &self.cloud_to_device;
        let mut feedback = Vec::new();
        let settled = self.store.commit(lock(&c2d.queues), |queues, changes| {
            let Some(queue) = queues.get_mut(device) else {
                return Ok(false);
            };
            let settled = queue.settle(lock_token, how, now_ms, &mut feedback);
            changes.push(|| put_queue(device, queue));
            if queue.is_empty() {
                queues.remove(device);
            }
            Ok::<_, ApiError>(settled)
        })?;
        c2d.add_feedback(feedback);
        if settled && how == Settle::Abandon {
            self.deliver_cloud_to_device(device, now_ms);
        }
        Ok(settled)
    }

    /// Empties a device's queue (`DELETE /devices/{id}/commands`): how many were removed,
    /// once stored.
    pub fn purge_cloud_to_device(&self, device: &str) -> Result<usize, ApiError> {
        self.read().get(device).ok_or_else(|| not_found(device))?;
        let c2d = &self.cloud_to_device;
        let mut feedback = Vec::new();
        let (removed, saved) = self.store.stage(lock(&c2d.queues), |queues, changes| {
            let mut queue = queues.remove(device).unwrap_or_default();
            let removed = queue.purge(&mut feedback);
            changes.push(|| put_queue(device, &queue));
            Ok::<_, ApiError>(removed)
        })?;
        c2d.add_feedback(feedback);
        saved.wait()?;
        Ok(removed)
    }

    /// A deleted device's queue goes with it (the store drops it with the device).
    pub(super) fn forget_cloud_to_device(&self, device: &str) {
        self.cloud_to_device.forget(device);
    }

    /// Applies the clock to every queue (expiries, lock timeouts), delivers what became
    /// Enqueued again, and says when to look next.
    fn tick_cloud_to_device(&self, now_ms: i64) -> Option<i64> {
        let c2d = &self.cloud_to_device;
        let mut feedback = Vec::new();
        let mut ready = Vec::new();
        let next = {
            let mut queues = lock(&c2d.queues);
            for (device, queue) in queues.iter_mut() {
                if queue.sweep(now_ms, &mut feedback) {
                    let _ = self.store.write_behind(|| vec![put_queue(device, queue)]);
                }
                if queue.has_enqueued() {
                    ready.push(device.clone());
                }
            }
            queues.retain(|_, q| !q.is_empty());
            queues.values().filter_map(Queue::next_deadline).min()
        };
        c2d.add_feedback(feedback);
        for device in ready {
            self.deliver_cloud_to_device(&device, now_ms);
        }
        next
    }
}

/// Runs the queues' clock for as long as the registry lives: wakes at the next expiry or lock
/// timeout (emulated time, so an advance of the clock is seen at once) or when a send or a
/// delivery may have brought one closer.
pub fn spawn_timer(registry: &Arc<Registry>, clock: Arc<Clock>) {
    let weak: Weak<Registry> = Arc::downgrade(registry);
    let wake = registry.cloud_to_device.deadlines.clone();
    tokio::spawn(async move {
        loop {
            let next = {
                let Some(registry) = weak.upgrade() else {
                    break;
                };
                registry.tick_cloud_to_device(clock.now_ms())
            };
            let woken = wake.notified();
            tokio::select! {
                _ = woken => {}
                _ = clock.sleep_until(next.unwrap_or(i64::MAX)), if next.is_some() => {}
                _ = tokio::time::sleep(TIMER_CHECK) => {}
            }
        }
    });
}
