//! The hub's store: where every write lands before the client sees it answered.
//!
//! One interface for both modes, so the hub code is the same in memory and on disk: the hub
//! keeps its in-memory structures for reads (the registry, the job index) and writes every
//! mutation through [`Store`] first. In memory (the default) every write is a no-op; with
//! `--data-dir` it is an SQLite transaction (see `sqlite.rs` for the schema and durability).
//! At start, [`Store::load`] gives back everything a previous run wrote.

mod sqlite;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::devices::Device;
use crate::errors::{ApiError, ErrorCode};
use crate::jobs::model::{DeviceRow, Job};

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
}

/// What a previous run left: devices, and jobs with their creation number and rows.
pub struct Stored {
    pub devices: Vec<Device>,
    pub jobs: Vec<(u64, Job)>,
}

/// A job's row that reached its end, to be written (rows are stored once they end: a row not
/// in the store is pending, and runs again when a job resumes).
pub struct EndedRow<'a> {
    pub index: usize,
    pub row: &'a DeviceRow,
}

pub struct Store {
    db: Option<Mutex<sqlite::Db>>,
}

/// A write that did not reach the disk: the client gets a 500, never a false 200.
pub fn store_error(e: String) -> ApiError {
    ApiError::new(
        ErrorCode::ServerError,
        format!("the hub could not save the change: {e}"),
    )
}

impl Default for Store {
    fn default() -> Self {
        Self::memory()
    }
}

impl Store {
    /// No persistence: every write succeeds at once and nothing outlives the process.
    pub fn memory() -> Self {
        Self { db: None }
    }

    /// Opens (or creates) the store in `dir`, locked for this process until dropped. A dir in
    /// use by another emulator, or written by another store version, is refused untouched.
    pub fn open(dir: &Path) -> Result<Self, String> {
        Ok(Self {
            db: Some(Mutex::new(sqlite::Db::open(dir)?)),
        })
    }

    pub fn is_persistent(&self) -> bool {
        self.db.is_some()
    }

    fn db(&self) -> Option<MutexGuard<'_, sqlite::Db>> {
        self.db
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Everything stored, or `None` when the store is new (or in memory): then the hub
    /// starts from its seed and writes it with [`Store::replace_devices`].
    pub fn load(&self) -> Result<Option<Stored>, String> {
        match self.db() {
            Some(db) => db.load(),
            None => Ok(None),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, String> {
        match self.db() {
            Some(db) => db.meta(key),
            None => Ok(None),
        }
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), String> {
        self.db().map_or(Ok(()), |db| db.set_meta(key, value))
    }

    /// Writes (inserts or replaces) devices, in one transaction.
    pub fn put_devices<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a Device>,
    ) -> Result<(), String> {
        self.db().map_or(Ok(()), |mut db| db.put_devices(devices))
    }

    pub fn put_device(&self, device: &Device) -> Result<(), String> {
        self.put_devices([device])
    }

    pub fn delete_device(&self, id: &str) -> Result<(), String> {
        self.db().map_or(Ok(()), |db| db.delete_device(id))
    }

    /// Every device replaced by `devices` (a reset, a control-API load with replace).
    pub fn replace_devices<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a Device>,
    ) -> Result<(), String> {
        self.db()
            .map_or(Ok(()), |mut db| db.replace_devices(devices))
    }

    /// Writes a job (its spec and state; with `targets`, the devices it runs on) and the rows
    /// that ended, in one transaction.
    pub fn put_job(
        &self,
        seq: u64,
        job: &Job,
        targets: bool,
        rows: &[EndedRow<'_>],
    ) -> Result<(), String> {
        self.db()
            .map_or(Ok(()), |mut db| db.put_job(seq, job, targets, rows))
    }

    /// Rows that ended and the current documents of the devices they changed (and, at the
    /// job's end, its state), in one transaction: how a running job writes its progress.
    pub fn put_progress<'a>(
        &self,
        seq: u64,
        state: Option<&Job>,
        rows: &[EndedRow<'_>],
        devices: impl IntoIterator<Item = &'a Device>,
    ) -> Result<(), String> {
        self.db()
            .map_or(Ok(()), |mut db| db.put_progress(seq, state, rows, devices))
    }

    /// Forgets every job and row (a reset).
    pub fn clear_jobs(&self) -> Result<(), String> {
        self.db().map_or(Ok(()), |db| db.clear_jobs())
    }
}

#[cfg(test)]
mod tests;
