//! The hub's cloud-to-device rules as a transport or handler calls them: the service sends
//! (AMQP `/messages/devicebound`, REST), a device polls and settles over HTTPS (a connected
//! device settles through its `DeviceLink`), and the service reads the delivery feedback.

use tokio::sync::futures::Notified;

use super::Hub;
use crate::devices::cloud_to_device::{CloudMessage, Delivery, Feedback, SendRefusal, Settle};
use crate::errors::ApiError;

impl Hub {
    /// Queues a message for `target` (stored before it returns), or why it is refused.
    pub fn send_cloud_to_device(
        &self,
        target: &str,
        message: CloudMessage,
    ) -> Result<(), SendRefusal> {
        let now = self.clock.now_ms();
        self.devices.send_cloud_to_device(target, message, now)
    }

    /// The device's next waiting message, locked for it (an HTTPS poll), if any.
    pub fn receive_cloud_to_device(&self, device: &str) -> Option<Delivery> {
        let now = self.clock.now_ms();
        self.devices.receive_cloud_to_device(device, now)
    }

    /// Settles a polled message by its lock token, stored before it returns: `Ok(false)` when
    /// the lock was lost.
    pub fn settle_cloud_to_device(
        &self,
        device: &str,
        lock_token: u64,
        how: Settle,
    ) -> Result<bool, ApiError> {
        let now = self.clock.now_ms();
        self.devices
            .settle_cloud_to_device(device, lock_token, how, now)
    }

    /// Resolves when feedback records are added; take it before `take_feedback` so none is
    /// missed in between.
    pub fn feedback_ready(&self) -> Notified<'_> {
        self.devices.cloud_to_device.feedback_ready.notified()
    }

    /// The feedback records waiting for the service, oldest first.
    pub fn take_feedback(&self) -> Vec<Feedback> {
        self.devices.cloud_to_device.take_feedback()
    }

    /// Records that could not be sent go back to wait for the next receiver.
    pub fn return_feedback(&self, records: Vec<Feedback>) {
        self.devices.cloud_to_device.return_feedback(records)
    }
}
