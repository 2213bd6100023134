//! File upload as IoT Hub does it, on the linked storage account (`storage/`): a device asks
//! for a blob SAS (`POST /devices/{id}/files`), uploads to storage itself, and tells the hub how
//! it went (`POST /devices/{id}/files/notifications`); with `--file-notifications` a successful
//! upload becomes a file-upload notification for the service
//! (`/messages/serviceBound/filenotifications`). The rules: at most 10 active uploads per
//! device (403006), a correlation id lives as long as its SAS (the hub's clock), notifications
//! wait at most their TTL and are delivered at most `max_delivery_count` times. Pending uploads
//! and notifications live in memory (not in the data dir).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::Hub;
use crate::clock::{iso, wall_secs};
use crate::errors::{ApiError, ErrorCode};
use crate::storage::{sas, LinkedStorage, FILE_UPLOAD_CONTAINER};

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

struct Upload {
    device: String,
    blob_name: String,
    expires_ms: i64,
}

/// A file-upload notification as the service sends it.
#[derive(Clone, Debug)]
pub struct FileNotification {
    pub device_id: String,
    pub blob_uri: String,
    pub blob_name: String,
    pub last_updated_time: String,
    pub blob_size: u64,
    pub enqueued_ms: i64,
    pub delivery_count: u32,
}

impl FileNotification {
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

#[derive(Default)]
pub struct FileUploads {
    linked: OnceLock<Linked>,
    active: Mutex<HashMap<String, Upload>>,
    notifications: Mutex<VecDeque<FileNotification>>,
    ready: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FileUploads {
    /// The linked storage account, which import/export jobs use too.
    pub(super) fn storage(&self) -> Option<&Arc<LinkedStorage>> {
        self.linked.get().map(|l| &l.storage)
    }

    fn push(&self, notification: FileNotification) {
        lock(&self.notifications).push_back(notification);
        self.ready.notify_waiters();
    }
}

impl Hub {
    /// Links the storage account file uploads go to (once, at start-up).
    pub fn link_storage(&self, storage: Arc<LinkedStorage>, settings: FileUploadSettings) {
        let _ = self.files.linked.set(Linked { storage, settings });
    }

    /// `POST /devices/{id}/files`: a SAS for `{device}/{blobName}` and its correlation id.
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
        let correlation_id = {
            let mut active = lock(&self.files.active);
            active.retain(|_, u| u.expires_ms > now);
            if active.values().filter(|u| u.device == device).count() >= MAX_ACTIVE_UPLOADS {
                return Err(ApiError::new(
                    ErrorCode::DeviceMaximumActiveFileUploadLimitExceeded,
                    format!(
                        "Number of active file upload requests cannot exceed {MAX_ACTIVE_UPLOADS}"
                    ),
                ));
            }
            let id = crate::errors::tracking_id();
            active.insert(
                id.clone(),
                Upload {
                    device: device.to_string(),
                    blob_name: blob_name.to_string(),
                    expires_ms: now + ttl as i64 * 1000,
                },
            );
            id
        };
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
    pub fn complete_file_upload(
        &self,
        device: &str,
        correlation_id: &str,
        is_success: bool,
    ) -> Result<(), ApiError> {
        let now = self.clock.now_ms();
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
        let Some(linked) = self.files.linked.get() else {
            return Ok(());
        };
        if !is_success || !linked.settings.notifications {
            return Ok(());
        }
        let storage = linked.storage.clone();
        let files = self.files_handle();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let blob = format!("{}/{}", upload.device, upload.blob_name);
            match storage.blob_properties(FILE_UPLOAD_CONTAINER, &blob).await {
                Ok(Some((size, last_modified))) => files.push(FileNotification {
                    device_id: upload.device,
                    blob_uri: storage.account.url(FILE_UPLOAD_CONTAINER, Some(&blob)),
                    blob_name: blob,
                    last_updated_time: last_modified,
                    blob_size: size,
                    enqueued_ms: clock.now_ms(),
                    delivery_count: 0,
                }),
                Ok(None) => eprintln!(
                    "iothub-emulator: no file-upload notification for {blob}: the blob is not in storage"
                ),
                Err(e) => eprintln!(
                    "iothub-emulator: no file-upload notification for {blob}: {e}"
                ),
            }
        });
        Ok(())
    }

    fn files_handle(&self) -> Arc<FileUploads> {
        self.files.clone()
    }

    /// Resolves when a notification is added; take it before `take_file_notification`.
    pub fn file_notification_ready(&self) -> Notified<'_> {
        self.files.ready.notified()
    }

    /// The oldest notification still within its TTL, if any.
    pub fn take_file_notification(&self) -> Option<FileNotification> {
        let ttl_ms = self
            .files
            .linked
            .get()
            .map_or(0, |l| l.settings.notification_ttl_secs as i64 * 1000);
        let now = self.clock.now_ms();
        let mut queue = lock(&self.files.notifications);
        while let Some(n) = queue.pop_front() {
            if n.enqueued_ms + ttl_ms > now {
                return Some(n);
            }
        }
        None
    }

    /// A notification the service abandoned (or could not get) waits again, until its
    /// deliveries reach the maximum.
    pub fn return_file_notification(&self, mut notification: FileNotification) {
        let max = self
            .files
            .linked
            .get()
            .map_or(0, |l| l.settings.max_delivery_count);
        notification.delivery_count += 1;
        if notification.delivery_count < max {
            lock(&self.files.notifications).push_front(notification);
            self.files.ready.notify_waiters();
        }
    }
}
