//! The hub's store: where every write lands before the client sees it answered.
//!
//! One interface for both modes, so the hub code is the same in memory and on disk: the hub
//! keeps its in-memory structures for reads (the registry, the job index) and writes every
//! mutation through [`Store`] first. In memory (the default) every write is a no-op; with
//! `--data-dir` it is an SQLite transaction (see `sqlite.rs` for the schema and durability).
//! At start, [`Store::load`] gives back everything a previous run wrote.

mod error;
mod records;
mod sqlite;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::locks::lock;

pub use error::StoreError;
pub use records::{Change, Changes, Document, EventRecord, JobRecord, RowRecord, StoredJob};
pub use sqlite::SCHEMA_VERSION;

/// Hub-wide values kept in the `meta` table (secrets: never logged).
pub mod meta {
    /// The `iothubowner` policy key: the service connection string stays the same.
    pub const HUB_KEY: &str = "hub_key";
    /// The CA certificate and key (PEM) the server certificate is signed with.
    pub const CA_CERT: &str = "ca_cert";
    pub const CA_KEY: &str = "ca_key";
    /// The server certificate's key (PEM); the certificate itself is re-issued at each start
    /// for the addresses of that start.
    pub const SERVER_KEY: &str = "server_key";
    /// The events endpoint's consumer groups besides `$Default` (a JSON array), once one was
    /// created or deleted.
    pub const CONSUMER_GROUPS: &str = "consumer_groups";
    /// The routing set through the control API (its JSON), in force over the seed's.
    pub const ROUTING: &str = "routing";
}

/// What a previous run left: the documents of the devices (`D`), of their cloud-to-device
/// queues that hold messages (`Q`) and of the configurations (`C`), read as the caller's
/// types, the jobs' records with the rows that ended, in creation order, and the events of
/// the log's partitions, by partition and sequence number.
pub struct Stored<D, Q, C> {
    pub devices: Vec<D>,
    pub jobs: Vec<StoredJob>,
    pub queues: Vec<Q>,
    pub configurations: Vec<C>,
    pub events: Vec<EventRecord>,
}

/// In memory: nothing. With a data dir: the database, and the writer thread that applies the
/// changes in the order the hub made them. Writes a client is answered about wait for their
/// commit; a running job's progress does not. The writer takes every change queued meanwhile
/// into the same transaction (group commit), so concurrent clients share commits.
pub struct Store {
    disk: Option<Disk>,
}

struct Disk {
    db: Arc<Mutex<sqlite::Db>>,
    queue: Option<SyncSender<Batch>>,
    writer: Option<JoinHandle<()>>,
    gate: Arc<Gate>,
}

/// The writer's test hook (`PUT /_emulator/store`): while held, the writer keeps taking the
/// queued batches but commits none, so a test can see that no write is answered before it is
/// on disk; released, it commits them all in one transaction. Also counts the batches queued
/// and not yet committed.
#[derive(Default)]
struct Gate {
    held: AtomicBool,
    queued: AtomicUsize,
}

/// How often a held writer looks whether it was released (a test hook: no need for a condvar).
const HELD_POLL: Duration = Duration::from_millis(5);

/// What `GET /_emulator/store` shows of the writer.
pub struct WriterState {
    pub held: bool,
    /// Batches of changes queued and not yet committed.
    pub queued: usize,
}

fn stopped() -> StoreError {
    StoreError::new("the store's writer has stopped")
}

/// Queued changes; [`Pending::wait`] returns once they are on disk (at once in memory).
#[must_use = "a write is durable only once waited for"]
pub struct Pending(Result<Option<Receiver<Result<(), StoreError>>>, StoreError>);

impl Pending {
    pub fn wait(self) -> Result<(), StoreError> {
        match self.0? {
            Some(committed) => blocking(|| committed.recv()).map_err(|_| stopped())?,
            None => Ok(()),
        }
    }
}

/// Runs `f`, which blocks on the disk, without stalling the runtime's other tasks: on the
/// multi-threaded runtime the worker hands its tasks over first (a slow or held writer must
/// not stop other devices, or the control API that releases it).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Changes to apply together, and where to say that they are on disk.
struct Batch {
    changes: Vec<Change>,
    done: Option<SyncSender<Result<(), StoreError>>>,
}

/// Batches waiting for the writer; a job producing progress faster than the disk takes it
/// waits here.
const QUEUE: usize = 64;

/// Devices per batch when a whole fleet is written.
const SLICE: usize = 4096;

impl Default for Store {
    fn default() -> Self {
        Self::memory()
    }
}

/// The writer thread: applies batches in order, as many as are queued in one transaction.
fn write_loop(db: Arc<Mutex<sqlite::Db>>, queue: Receiver<Batch>, gate: Arc<Gate>) {
    while let Ok(first) = queue.recv() {
        let mut batches = vec![first];
        // Held: take what comes (no sender blocks on a full queue), commit nothing.
        while gate.held.load(Ordering::Acquire) {
            match queue.recv_timeout(HELD_POLL) {
                Ok(b) => batches.push(b),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        while batches.len() < QUEUE {
            match queue.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        let changes: Vec<Change> = batches
            .iter_mut()
            .flat_map(|b| std::mem::take(&mut b.changes))
            .collect();
        let result = lock(&db).apply(&changes);
        gate.queued.fetch_sub(batches.len(), Ordering::AcqRel);
        if let Err(e) = &result {
            eprintln!("iothub-emulator: a change was not saved: {e}");
        }
        for b in batches {
            if let Some(done) = b.done {
                let _ = done.send(result.clone());
            }
        }
    }
}

impl Store {
    /// No persistence: every write succeeds at once and nothing outlives the process.
    pub fn memory() -> Self {
        Self { disk: None }
    }

    /// Opens (or creates) the store in `dir`, locked for this process until dropped. A dir in
    /// use by another emulator, or written by another store version, is refused untouched.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = Arc::new(Mutex::new(sqlite::Db::open(dir)?));
        let (queue, receiver) = sync_channel(QUEUE);
        let gate = Arc::new(Gate::default());
        let writer = {
            let (db, gate) = (db.clone(), gate.clone());
            std::thread::Builder::new()
                .name("iothub-store".into())
                .spawn(move || write_loop(db, receiver, gate))
                .map_err(|e| StoreError::new(format!("cannot start the store's writer: {e}")))?
        };
        Ok(Self {
            disk: Some(Disk {
                db,
                queue: Some(queue),
                writer: Some(writer),
                gate,
            }),
        })
    }

    pub fn is_persistent(&self) -> bool {
        self.disk.is_some()
    }

    /// The writer's state, with a data dir (`None` in memory).
    pub fn writer_state(&self) -> Option<WriterState> {
        self.disk.as_ref().map(|d| WriterState {
            held: d.gate.held.load(Ordering::Acquire),
            queued: d.gate.queued.load(Ordering::Acquire),
        })
    }

    /// Holds the writer paused, or releases it (a test hook, see [`Gate`]). False in memory:
    /// there is no writer.
    pub fn hold_writer(&self, held: bool) -> bool {
        match &self.disk {
            Some(d) => {
                d.gate.held.store(held, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Queues a batch, counted until the writer commits it.
    fn send(disk: &Disk, batch: Batch) -> Result<(), StoreError> {
        let queue = disk.queue.as_ref().ok_or_else(stopped)?;
        disk.gate.queued.fetch_add(1, Ordering::AcqRel);
        queue.send(batch).map_err(|_| {
            disk.gate.queued.fetch_sub(1, Ordering::AcqRel);
            stopped()
        })
    }

    /// Queues `changes` (built only with a data dir); the answer tells when they are committed.
    /// Call it while holding the lock of what changed (the queue keeps the hub's order), and
    /// wait after letting go of it (so other writers queue meanwhile and share the commit).
    /// [`Store::commit`] is that sequence.
    pub fn write(&self, changes: impl FnOnce() -> Vec<Change>) -> Pending {
        let Some(disk) = &self.disk else {
            return Pending(Ok(None));
        };
        let (done, committed) = sync_channel(1);
        let batch = Batch {
            changes: changes(),
            done: Some(done),
        };
        Pending(Self::send(disk, batch).map(|_| Some(committed)))
    }

    /// Queues `changes` without a way to wait for them (what no client waits for: a running
    /// job's progress, a delivery count).
    pub fn write_behind(&self, changes: impl FnOnce() -> Vec<Change>) -> Result<(), StoreError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let batch = Batch {
            changes: changes(),
            done: None,
        };
        Self::send(disk, batch)
    }

    /// The first half of the hub's one write sequence: runs `mutate` on what `guard` holds
    /// locked, which says what it changed in `changes` (built only with a data dir); queues
    /// those changes as one unit while the lock is still held (the store sees the changes in
    /// the order the hub made them), then lets go of the lock. Nothing is queued when `mutate`
    /// fails. The caller waits for the commit before it answers.
    pub fn stage<G, T, E>(
        &self,
        mut guard: G,
        mutate: impl FnOnce(&mut G, &mut Changes) -> Result<T, E>,
    ) -> Result<(T, Pending), E> {
        let mut changes = Changes::new(self.is_persistent());
        let value = mutate(&mut guard, &mut changes)?;
        let pending = if changes.is_empty() {
            Pending(Ok(None))
        } else {
            self.write(|| changes.into_list())
        };
        drop(guard);
        Ok((value, pending))
    }

    /// The hub's one write sequence: lock (the caller, `guard`), mutate, queue the changes,
    /// unlock ([`Store::stage`]), then wait until they are on disk; what follows from the write
    /// (a notification, the answer) comes after, with the value `mutate` returned. A failed
    /// commit is the caller's error (`E: From<StoreError>`: a 500 for a client).
    pub fn commit<G, T, E: From<StoreError>>(
        &self,
        guard: G,
        mutate: impl FnOnce(&mut G, &mut Changes) -> Result<T, E>,
    ) -> Result<T, E> {
        let (value, pending) = self.stage(guard, mutate)?;
        pending.wait()?;
        Ok(value)
    }

    /// Everything stored, or `None` when the store is new (or in memory): then the hub
    /// starts from its seed and writes it with [`Store::replace_devices`]. The documents are
    /// read as the caller's types (devices `D`, queues `Q`, configurations `C`).
    pub fn load<D, Q, C>(&self) -> Result<Option<Stored<D, Q, C>>, StoreError>
    where
        D: DeserializeOwned,
        Q: DeserializeOwned,
        C: DeserializeOwned,
    {
        match &self.disk {
            Some(d) => lock(&d.db).load(),
            None => Ok(None),
        }
    }

    /// The pending file uploads and file-upload notifications a previous run left (none in
    /// memory).
    pub fn load_file_uploads<U, N>(&self) -> Result<(Vec<U>, Vec<N>), StoreError>
    where
        U: DeserializeOwned,
        N: DeserializeOwned,
    {
        match &self.disk {
            Some(d) => lock(&d.db).load_file_uploads(),
            None => Ok((Vec::new(), Vec::new())),
        }
    }

    /// The import/export jobs a previous run left (none in memory), read as `T`.
    pub fn import_export_jobs<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        match &self.disk {
            Some(d) => lock(&d.db).import_export_jobs(),
            None => Ok(Vec::new()),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        match &self.disk {
            Some(d) => lock(&d.db).meta(key),
            None => Ok(None),
        }
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|| vec![Change::Meta(key.into(), value.into())])
            .wait()
    }

    /// Every device replaced by `devices` (a seed, a reset, a control-API load with replace).
    /// Queued in slices, so a million devices are never serialized all at once (`devices` is
    /// taken lazily, and not at all in memory); the store counts as seeded once the last
    /// slice is in (a start interrupted before seeds again).
    pub fn replace_devices(&self, devices: impl IntoIterator<Item = Document>) -> Pending {
        if !self.is_persistent() {
            return Pending(Ok(None));
        }
        let mut devices = devices.into_iter().peekable();
        let mut changes = vec![Change::ClearDevices];
        while devices.peek().is_some() {
            let slice = devices.by_ref().take(SLICE).collect();
            changes.push(Change::PutDevices(slice));
            if let Err(e) = self.write_behind(|| std::mem::take(&mut changes)) {
                return Pending(Err(e));
            }
        }
        changes.push(Change::Seeded);
        self.write(|| changes)
    }
}

/// Stopping: the writer applies what is queued, then the database closes and the lock goes.
impl Drop for Disk {
    fn drop(&mut self) {
        self.gate.held.store(false, Ordering::Release);
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests;
