//! What the store writes and reads back: its own records of text and numbers, made by the
//! domain modules from their structures (while their locks are held) and turned back into
//! them at start, so the database work itself happens later, on the writer thread, and the
//! store knows nothing of devices, jobs or queues.

/// One change, in the order the hub made it.
pub enum Change {
    PutDevices(Vec<Document>),
    DeleteDevice(String),
    /// Every device removed: the start of a replacement (a seed, a reset, a control-API load
    /// with replace), which ends with `Seeded`.
    ClearDevices,
    /// A whole device set is written: the store holds a hub from now on.
    Seeded,
    PutJob(JobRecord),
    /// A job's rows (by its creation number) that ended.
    PutRows(u64, Vec<RowRecord>),
    ClearJobs,
    PutConfiguration(Document),
    DeleteConfiguration(String),
    ClearConfigurations,
    PutImportExportJob(Document),
    ClearImportExportJobs,
    Meta(String, String),
    /// A device's cloud-to-device queue (its document), or, with `None`, that it is empty.
    PutQueue(String, Option<String>),
    /// A pending file upload (its document, under its correlation id), or, with `None`, that it
    /// ended.
    PutFileUpload(String, Option<String>),
    /// A file-upload notification (under its queue position), or, with `None`, that it is gone.
    PutFileNotification(String, Option<String>),
    /// Every pending file upload and file-upload notification removed (a reset).
    ClearFileUploads,
    DeleteMeta(String),
    /// An event appended to a partition of the log.
    PutEvent(EventRecord),
    /// A partition's events before a sequence number left (retention, the memory bound).
    DropEvents {
        partition: u32,
        before: i64,
    },
    ClearEvents,
}

/// One event of a partition of the log: its place (sequence number, offset, when it was
/// enqueued), its body as sent and the rest of the message as a JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub partition: u32,
    pub sequence_number: i64,
    pub offset: i64,
    pub enqueued_ms: i64,
    pub body: Vec<u8>,
    pub message: String,
}

/// One JSON document and the id it is kept under: a device (everything it has, its modules
/// too), a configuration, a cloud-to-device queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub doc: String,
}

impl Document {
    /// `value` serialized. A derived `Serialize` of maps, strings and numbers cannot fail.
    pub fn of(id: impl Into<String>, value: &impl serde::Serialize) -> Self {
        Self {
            id: id.into(),
            doc: serde_json::to_string(value).unwrap_or_default(),
        }
    }
}

/// A job: its spec as a JSON document and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// Creation number.
    pub seq: u64,
    pub job_id: String,
    pub status: String,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub failure_reason: Option<String>,
    pub status_message: Option<String>,
    pub spec: String,
    /// The JSON array of the job's targets, once fixed (when it starts running); written only
    /// when present (a write without it keeps the stored one).
    pub targets: Option<String>,
}

/// A job's row that ended: its index among the job's targets, and how it ended (`outcome`, a
/// JSON document; `None` for a cancelled row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowRecord {
    pub index: i64,
    pub device_id: String,
    pub status: String,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub updated_ms: i64,
    pub outcome: Option<String>,
}

/// A job read back: its record and the rows that ended (a target without a row is pending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJob {
    pub job: JobRecord,
    pub rows: Vec<RowRecord>,
}

/// What one hub operation changed, collected while its locks are held and queued as one unit
/// ([`super::Store::stage`]). In memory nothing is built: `push` does not call its argument.
pub struct Changes {
    persistent: bool,
    list: Vec<Change>,
}

impl Changes {
    pub(super) fn new(persistent: bool) -> Self {
        Self {
            persistent,
            list: Vec::new(),
        }
    }

    /// Adds the change `make` builds (only with a data dir).
    pub fn push(&mut self, make: impl FnOnce() -> Change) {
        if self.persistent {
            self.list.push(make());
        }
    }

    /// Adds the changes `make` builds (only with a data dir).
    pub fn extend(&mut self, make: impl FnOnce() -> Vec<Change>) {
        if self.persistent {
            self.list.extend(make());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(super) fn into_list(self) -> Vec<Change> {
        self.list
    }
}
