//! File upload as IoT Hub does it, on the linked storage account (`storage/`): a device asks
//! for a blob SAS (`POST /devices/{id}/files`), uploads to storage itself, and tells the hub how
//! it went (`POST /devices/{id}/files/notifications`); with `--file-notifications` a successful
//! upload becomes a file-upload notification for the service
//! (`/messages/serviceBound/filenotifications`). The rules: at most 10 active uploads per
//! device (403006), a correlation id lives as long as its SAS (the hub's clock), notifications
//! wait at most their TTL and are delivered at most `max_delivery_count` times. With a data dir,
//! pending uploads and notifications are stored (`Store::commit`) before the device or the
//! service is answered about them, so they outlive a restart or a SIGKILL: a correlation id
//! issued before still accepts its notification, and a notification not yet completed is
//! delivered again (a delivered one with its delivery count).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::Hub;
use crate::clock::{iso, wall_secs};
use crate::errors::{ApiError, ErrorCode};
use crate::locks::lock;
use crate::storage::{sas, LinkedStorage, FILE_UPLOAD_CONTAINER};
use crate::store::{Change, Document, StoreError};

/// Active uploads a device may hold (every tier).
pub const MAX_ACTIVE_UPLOADS: usize = 10;

/// The hub's file-upload settings (the portal's "File upload" blade; the service's defaults).
#[derive(Clone, Copy, Debug)]
pub struct FileUploadSettings {
    /// How long a SAS (and its correlation id) is valid: 1 hour.
    pub sas_ttl_secs: u64,
    /// Whether a successful upload notifies the service (off, as on a new hub).
    pub notifications: bool,
    /// How long a notification waits for the service: 1 hour.
    pub notification_ttl_secs: u64,
    /// Deliveries of a notification before it is dropped: 10.
    pub max_delivery_count: u32,
}

impl Default for FileUploadSettings {
    fn default() -> Self {
        Self {
            sas_ttl_secs: 3600,
            notifications: false,
            notification_ttl_secs: 3600,
            max_delivery_count: 10,
        }
    }
}

/// An upload a device started and has not notified yet (stored under its correlation id).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Upload {
    correlation_id: String,
    device: String,
    blob_name: String,
    expires_ms: i64,
}

fn put_upload(upload: &Upload) -> Change {
    let doc = Document::of(&upload.correlation_id, upload);
    Change::PutFileUpload(doc.id, Some(doc.doc))
}

/// A file-upload notification as the service sends it, with its place in the queue and how
/// often it was delivered.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileNotification {
    /// Its place in the queue (the store's id, zero-padded so that ids sort as the queue).
    seq: u64,
    pub device_id: String,
    pub blob_uri: String,
    pub blob_name: String,
    pub last_updated_time: String,
    pub blob_size: u64,
    pub enqueued_ms: i64,
    pub delivery_count: u32,
}

impl FileNotification {
    fn store_id(&self) -> String {
        format!("{:020}", self.seq)
    }

    fn put(&self) -> Change {
        Change::PutFileNotification(
            self.store_id(),
            Some(serde_json::to_string(self).unwrap_or_default()),
        )
    }

    fn delete(&self) -> Change {
        Change::PutFileNotification(self.store_id(), None)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "deviceId": self.device_id,
            "blobUri": self.blob_uri,
            "blobName": self.blob_name,
            "lastUpdatedTime": self.last_updated_time,
            "blobSizeInBytes": self.blob_size,
            "enqueuedTimeUtc": iso(self.enqueued_ms),
        })
    }
}

/// The linked account and the settings, set once at start-up.
struct Linked {
    storage: Arc<LinkedStorage>,
    settings: FileUploadSettings,
}

/// The notifications waiting for the service (a delivered one is held by the service's link
/// until it is settled, and stays in the store until completed).
#[derive(Default)]
struct Notifications {
    waiting: VecDeque<FileNotification>,
    next_seq: u64,
}

#[derive(Default)]
pub struct FileUploads {
    linked: OnceLock<Linked>,
    active: Mutex<HashMap<String, Upload>>,
    notifications: Mutex<Notifications>,
    ready: Notify,
}

impl FileUploads {
    /// The linked storage account, which import/export jobs use too.
    pub(super) fn storage(&self) -> Option<&Arc<LinkedStorage>> {
        self.linked.get().map(|l| &l.storage)
    }

    /// What a previous run stored (`Store::load_file_uploads`).
    fn restore(&self, uploads: Vec<Upload>, notifications: Vec<FileNotification>) {
        let mut active = lock(&self.active);
        active.extend(uploads.into_iter().map(|u| (u.correlation_id.clone(), u)));
        let mut queue = lock(&self.notifications);
        queue.next_seq = notifications.last().map_or(0, |n| n.seq + 1);
        queue.waiting = notifications.into();
    }
}

impl Hub {
    /// Links the storage account file uploads go to (once, at start-up).
    pub fn link_storage(&self, storage: Arc<LinkedStorage>, settings: FileUploadSettings) {
        let _ = self.files.linked.set(Linked { storage, settings });
    }

    /// `POST /devices/{id}/files`: a SAS for `{device}/{blobName}` and its correlation id,
    /// stored before it is answered.
    pub fn start_file_upload(&self, device: &str, blob_name: &str) -> Result<Value, ApiError> {
        let Some(linked) = self.files.linked.get() else {
            return Err(ApiError::new(
                ErrorCode::ArgumentInvalid,
                "the hub has no storage account for file upload (start it with --storage azurite or --storage-connection-string)",
            ));
        };
        if blob_name.is_empty() {
            return Err(ApiError::new(
                ErrorCode::ArgumentInvalid,
                "blobName must not be empty",
            ));
        }
        let now = self.clock.now_ms();
        let ttl = linked.settings.sas_ttl_secs;
        let store = &self.devices.store;
        let correlation_id = store.commit(lock(&self.files.active), |active, changes| {
            active.retain(|id, u| {
                let live = u.expires_ms > now;
                if !live {
                    changes.push(|| Change::PutFileUpload(id.clone(), None));
                }
                live
            });
            if active.values().filter(|u| u.device == device).count() >= MAX_ACTIVE_UPLOADS {
                return Err(ApiError::new(
                    ErrorCode::DeviceMaximumActiveFileUploadLimitExceeded,
                    format!(
                        "Number of active file upload requests cannot exceed {MAX_ACTIVE_UPLOADS}"
                    ),
                ));
            }
            let upload = Upload {
                correlation_id: crate::errors::tracking_id(),
                device: device.to_string(),
                blob_name: blob_name.to_string(),
                expires_ms: now + ttl as i64 * 1000,
            };
            changes.push(|| put_upload(&upload));
            let id = upload.correlation_id.clone();
            active.insert(id.clone(), upload);
            Ok::<_, ApiError>(id)
        })?;
        let account = &linked.storage.account;
        let blob = format!("{device}/{blob_name}");
        // Storage checks the SAS against its own (wall) clock.
        let sas_token = sas::blob_sas(
            account,
            FILE_UPLOAD_CONTAINER,
            &blob,
            "rcw",
            wall_secs() + ttl,
        );
        // Clients build `https://{hostName}/{containerName}/{blobName}{sasToken}`: on Azurite the
        // account's path (`/devstoreaccount1`) goes with the host.
        let (host, base_path) = account.host_and_base_path();
        Ok(json!({
            "correlationId": correlation_id,
            "hostName": format!("{host}{base_path}"),
            "containerName": FILE_UPLOAD_CONTAINER,
            "blobName": blob,
            "sasToken": sas_token,
        }))
    }

    /// `POST /devices/{id}/files/notifications[/{correlationId}]`: ends the upload; a
    /// successful one becomes a notification (when enabled) once its size is read from storage.
    /// The upload's end and its notification are stored together before the device is
    /// answered.
    pub async fn complete_file_upload(
        &self,
        device: &str,
        correlation_id: &str,
        is_success: bool,
    ) -> Result<(), ApiError> {
        let now = self.clock.now_ms();
        // Taken out at once, so that a second notification of the same id is refused; stored
        // as ended only below, with the notification it gives.
        let upload = {
            let mut active = lock(&self.files.active);
            match active.get(correlation_id) {
                Some(u) if u.device == device && u.expires_ms > now => {
                    active.remove(correlation_id)
                }
                _ => None,
            }
        };
        let Some(upload) = upload else {
            return Err(ApiError::new(
                ErrorCode::ArgumentInvalid,
                format!("the correlation id {correlation_id} is unknown or expired for {device}"),
            ));
        };
        let blob = format!("{}/{}", upload.device, upload.blob_name);
        let notified = match self.files.linked.get() {
            Some(linked) if is_success && linked.settings.notifications => {
                let storage = &linked.storage;
                match storage.blob_properties(FILE_UPLOAD_CONTAINER, &blob).await {
                    Ok(Some((size, last_modified))) => Some(FileNotification {
                        seq: 0,
                        device_id: upload.device.clone(),
                        blob_uri: storage.account.url(FILE_UPLOAD_CONTAINER, Some(&blob)),
                        blob_name: blob,
                        last_updated_time: last_modified,
                        blob_size: size,
                        enqueued_ms: self.clock.now_ms(),
                        delivery_count: 0,
                    }),
                    Ok(None) => {
                        eprintln!("iothub-emulator: no file-upload notification for {blob}: the blob is not in storage");
                        None
                    }
                    Err(e) => {
                        eprintln!("iothub-emulator: no file-upload notification for {blob}: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        let store = &self.devices.store;
        store.commit(lock(&self.files.notifications), |queue, changes| {
            changes.push(|| Change::PutFileUpload(upload.correlation_id.clone(), None));
            if let Some(mut notification) = notified {
                notification.seq = queue.next_seq;
                queue.next_seq += 1;
                changes.push(|| notification.put());
                queue.waiting.push_back(notification);
            }
            Ok::<_, StoreError>(())
        })?;
        self.files.ready.notify_waiters();
        Ok(())
    }

    /// Resolves when a notification is added; take it before `take_file_notification`.
    pub fn file_notification_ready(&self) -> Notified<'_> {
        self.files.ready.notified()
    }

    /// The oldest notification still within its TTL, if any, counted as delivered once more
    /// (stored without waiting: nobody waits for a delivery count). Expired ones are dropped.
    pub fn take_file_notification(&self) -> Option<FileNotification> {
        let ttl_ms = self
            .files
            .linked
            .get()
            .map_or(0, |l| l.settings.notification_ttl_secs as i64 * 1000);
        let now = self.clock.now_ms();
        let mut queue = lock(&self.files.notifications);
        let mut changes = Vec::new();
        let mut taken = None;
        while let Some(mut n) = queue.waiting.pop_front() {
            if n.enqueued_ms + ttl_ms > now {
                n.delivery_count += 1;
                changes.push(n.put());
                taken = Some(n);
                break;
            }
            changes.push(n.delete());
        }
        if !changes.is_empty() {
            let _ = self.devices.store.write_behind(|| changes);
        }
        taken
    }

    /// The service completed (or rejected) a notification: it is gone for good.
    pub fn settle_file_notification(&self, notification: &FileNotification) {
        let store = &self.devices.store;
        let removed = store.commit(lock(&self.files.notifications), |_, changes| {
            changes.push(|| notification.delete());
            Ok::<_, StoreError>(())
        });
        if let Err(e) = removed {
            eprintln!("iothub-emulator: a completed file-upload notification was not removed from the store: {e}");
        }
    }

    /// A notification the service abandoned (or could not get) waits again, until its
    /// deliveries reach the maximum; then it is dropped.
    pub fn return_file_notification(&self, notification: FileNotification) {
        let max = self
            .files
            .linked
            .get()
            .map_or(0, |l| l.settings.max_delivery_count);
        if notification.delivery_count >= max {
            self.settle_file_notification(&notification);
            return;
        }
        lock(&self.files.notifications)
            .waiting
            .push_front(notification);
        self.files.ready.notify_waiters();
    }

    /// What a previous run stored, and what a reset empties.
    pub(super) fn restore_file_uploads(&self) -> Result<(), StoreError> {
        let (uploads, notifications) = self.devices.store.load_file_uploads()?;
        self.files.restore(uploads, notifications);
        Ok(())
    }

    pub(super) fn clear_file_uploads(&self) -> Result<(), StoreError> {
        self.devices
            .store
            .commit(lock(&self.files.active), |active, changes| {
                active.clear();
                lock(&self.files.notifications).waiting.clear();
                changes.push(|| Change::ClearFileUploads);
                Ok::<_, StoreError>(())
            })
    }
}
