//! The on-disk store: one SQLite database, `DIR/hub.db`, and a lock file, `DIR/lock`.
//!
//! Schema (documented for users in crates/emulator/README.md; `sqlite3 DIR/hub.db` opens it):
//! - `meta(key, value)`: `schema_version`, `seeded`, the hub key, the CA and server key (PEM).
//! - `devices(id, doc)`: one JSON document per device holding everything the device has.
//! - `jobs(seq, job_id, status, …, spec, targets)`: one row per job; `targets` is the JSON
//!   array of the device ids it runs on, fixed when it starts running.
//! - `device_jobs(job_seq, idx, device_id, status, …, outcome)`: a job's device row, written
//!   when it ends; a target without a row is pending.
//! - `cloud_to_device(id, doc)`: a device's cloud-to-device queue, one JSON document (its
//!   messages, their state, delivery counts and locks), while it holds messages (version 3).
//! - `file_uploads(id, doc)`: a file upload a device started and has not notified yet (its
//!   correlation id, device, blob and expiry); `file_notifications(id, doc)`: a file-upload
//!   notification not yet completed by the service (its body and delivery count), `id` its
//!   zero-padded sequence number so that the id order is the queue's (version 4).
//! - `import_export_jobs(id, doc)`: an import/export job's JSON document (version 5).
//! - `events(partition, seq, offset, enqueued_ms, body, message)`: the events endpoint's log,
//!   the body as sent and the rest of the message as JSON (version 6). The newest event of a
//!   partition stays even when it left by retention: the numbering goes on from it.
//!
//! Durability: WAL journal with `synchronous=NORMAL`. A commit is in the WAL file (the OS has
//! it) before the call returns, so a killed process (SIGKILL, a crash) loses nothing that was
//! committed; only a power cut or kernel crash can lose the last commits, never corrupting the
//! file. `synchronous=FULL` would add an fsync to every answered write (milliseconds each on
//! many disks) to guard against power loss, which a local emulator does not need.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::de::DeserializeOwned;

use super::records::{Change, Document, EventRecord, JobRecord, RowRecord, StoredJob};
use super::{StoreError, Stored};

/// The layout this emulator reads and writes. An older data dir is brought up to it by
/// [`MIGRATIONS`]; a newer one (or not a store) is refused untouched.
pub const SCHEMA_VERSION: i64 = 6;

/// What takes a store of version `n + 1` to `n + 2`, each applied in one transaction.
const MIGRATIONS: [&str; 5] = [
    // 2: automatic device management configurations.
    "CREATE TABLE configurations (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;",
    // 3: cloud-to-device queues.
    "CREATE TABLE cloud_to_device (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;",
    // 4: pending file uploads and file-upload notifications.
    "CREATE TABLE file_uploads (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID; CREATE TABLE file_notifications (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;",
    // 5: import/export jobs.
    "CREATE TABLE import_export_jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;",
    // 6: the events endpoint's log.
    "CREATE TABLE events (partition INTEGER NOT NULL, seq INTEGER NOT NULL, offset INTEGER NOT NULL, enqueued_ms INTEGER NOT NULL, body BLOB NOT NULL, message TEXT NOT NULL, PRIMARY KEY (partition, seq)) WITHOUT ROWID;",
];

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE devices (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    end_ms INTEGER,
    failure_reason TEXT,
    status_message TEXT,
    spec TEXT NOT NULL,
    targets TEXT
);
CREATE TABLE device_jobs (
    job_seq INTEGER NOT NULL REFERENCES jobs(seq) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_ms INTEGER,
    end_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    outcome TEXT,
    PRIMARY KEY (job_seq, idx)
) WITHOUT ROWID;
CREATE TABLE configurations (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE cloud_to_device (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE file_uploads (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE file_notifications (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE import_export_jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE events (
    partition INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (partition, seq)
) WITHOUT ROWID;
";

pub struct Db {
    conn: Connection,
    dir: PathBuf,
    /// Held (locked) for the life of the store: a second emulator on the dir is refused.
    _lock: File,
}

fn sql_error(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::new(format!("{what}: {e}"))
}

/// Takes `DIR/lock` for this process, or says who has it.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::new(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            return Err(StoreError::new(format!(
                "the data dir {} is in use by another iothub-emulator{who}",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::new(format!(
                "cannot lock {}: {e}",
                path.display()
            )))
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

impl Db {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::new(format!("cannot create the data dir {}: {e}", dir.display()))
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join("hub.db");
        let conn = Connection::open(&path)
            .map_err(|e| StoreError::new(format!("cannot open {}: {e}", path.display())))?;
        let not_ours = |e: rusqlite::Error| {
            StoreError::new(format!(
                "{} is not an iothub-emulator store ({e}); use another --data-dir",
                path.display()
            ))
        };
        // Read before anything is written: a file of another version stays untouched.
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(not_ours)?;
        if tables == 0 {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sql_error("cannot set up the store"))?;
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            ))
            .map_err(sql_error("cannot create the store"))?;
        } else {
            let version: Option<String> = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(not_ours)?;
            let version = version.unwrap_or_default();
            let known = version
                .parse::<i64>()
                .ok()
                .filter(|v| (1..=SCHEMA_VERSION).contains(v));
            let Some(version) = known else {
                return Err(StoreError::new(format!(
                    "the data dir {} was written by another iothub-emulator store version ({version}; this emulator reads 1 to {SCHEMA_VERSION}); use the emulator that wrote it or another --data-dir",
                    dir.display()
                )));
            };
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sql_error("cannot open the store"))?;
            for (to, migration) in MIGRATIONS.iter().enumerate().skip(version as usize - 1) {
                let to = to + 2;
                conn.execute_batch(&format!(
                    "BEGIN; {migration} UPDATE meta SET value = '{to}' WHERE key = 'schema_version'; COMMIT;"
                ))
                .map_err(sql_error("cannot bring the store up to date"))?;
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql_error("cannot open the store"))?;
        // 64 MiB of page cache (the default is 2 MiB): a job rewriting 100,000 twins finds
        // their pages in memory instead of reading them back from the file.
        conn.pragma_update(None, "cache_size", -65536)
            .map_err(sql_error("cannot open the store"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql_error("cannot open the store"))?;
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn error(&self, e: rusqlite::Error) -> StoreError {
        StoreError::new(format!("{}: {e}", self.dir.join("hub.db").display()))
    }

    /// The import/export jobs' documents, read as `T`.
    pub fn import_export_jobs<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.load_docs("import_export_jobs", "import/export job")
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Applies changes in one transaction, in their order. After a whole fleet was written,
    /// the WAL is folded into the database file rather than kept as big as the fleet.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let run = |conn: &mut Connection| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for change in changes {
                apply(&tx, change)?;
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| self.error(e))?;
        if changes.iter().any(|c| matches!(c, Change::Seeded)) {
            self.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    pub fn load<D, Q, C>(&self) -> Result<Option<Stored<D, Q, C>>, StoreError>
    where
        D: DeserializeOwned,
        Q: DeserializeOwned,
        C: DeserializeOwned,
    {
        if self.meta("seeded")?.is_none() {
            return Ok(None);
        }
        let devices = self.load_docs("devices", "device")?;
        let jobs = self.load_jobs()?;
        let configurations = self.load_docs("configurations", "configuration")?;
        let queues = self.load_docs("cloud_to_device", "cloud-to-device queue")?;
        let events = self.load_events()?;
        Ok(Some(Stored {
            devices,
            jobs,
            configurations,
            queues,
            events,
        }))
    }

    /// The pending file uploads (`U`) and the file-upload notifications (`N`, in queue order),
    /// whether or not the store is seeded.
    pub fn load_file_uploads<U, N>(&self) -> Result<(Vec<U>, Vec<N>), StoreError>
    where
        U: DeserializeOwned,
        N: DeserializeOwned,
    {
        Ok((
            self.load_docs("file_uploads", "file upload")?,
            self.load_docs("file_notifications", "file-upload notification")?,
        ))
    }

    /// Every `(id, doc)` row of `table` (`devices`, `configurations`, `cloud_to_device`), its
    /// JSON document read as `T` (one at a time: a million devices are never all held as
    /// text); `what` names one in errors.
    fn load_docs<T: DeserializeOwned>(
        &self,
        table: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT id, doc FROM {table} ORDER BY id"))
            .map_err(|e| self.error(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let id: String = row.get(0).map_err(|e| self.error(e))?;
            let doc = row.get_ref(1).map_err(|e| self.error(e))?;
            let doc = doc.as_str().map_err(|e| self.error(e.into()))?;
            let doc = serde_json::from_str(doc).map_err(|e| {
                // Where, not what: a device's document holds its keys.
                StoreError::new(format!(
                    "{what} {id} in the store cannot be read ({:?} error at column {})",
                    e.classify(),
                    e.column()
                ))
            })?;
            out.push(doc);
        }
        Ok(out)
    }

    fn load_jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, job_id, status, created_ms, started_ms, end_ms, failure_reason, status_message, spec, targets
                 FROM jobs ORDER BY seq",
            )
            .map_err(|e| self.error(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.error(e))? {
            let get = |e| self.error(e);
            let seq: i64 = r.get(0).map_err(get)?;
            let job = JobRecord {
                seq: seq as u64,
                job_id: r.get(1).map_err(get)?,
                status: r.get(2).map_err(get)?,
                created_ms: r.get(3).map_err(get)?,
                started_ms: r.get(4).map_err(get)?,
                end_ms: r.get(5).map_err(get)?,
                failure_reason: r.get(6).map_err(get)?,
                status_message: r.get(7).map_err(get)?,
                spec: r.get(8).map_err(get)?,
                targets: r.get(9).map_err(get)?,
            };
            let rows = self.load_rows(seq)?;
            out.push(StoredJob { job, rows });
        }
        Ok(out)
    }

    /// The log's events, by partition and sequence number.
    fn load_events(&self) -> Result<Vec<EventRecord>, StoreError> {
        self.all(
            "SELECT partition, seq, offset, enqueued_ms, body, message FROM events ORDER BY partition, seq",
            [],
            |r| {
                Ok(EventRecord {
                    partition: r.get(0)?,
                    sequence_number: r.get(1)?,
                    offset: r.get(2)?,
                    enqueued_ms: r.get(3)?,
                    body: r.get(4)?,
                    message: r.get(5)?,
                })
            },
        )
    }

    /// The rows of job `seq` that ended.
    fn load_rows(&self, seq: i64) -> Result<Vec<RowRecord>, StoreError> {
        self.all(
            "SELECT idx, device_id, status, start_ms, end_ms, updated_ms, outcome FROM device_jobs WHERE job_seq = ?1",
            [seq],
            |r| {
                Ok(RowRecord {
                    index: r.get(0)?,
                    device_id: r.get(1)?,
                    status: r.get(2)?,
                    start_ms: r.get(3)?,
                    end_ms: r.get(4)?,
                    updated_ms: r.get(5)?,
                    outcome: r.get(6)?,
                })
            },
        )
    }

    /// Every row `sql` selects, each made a `T` by `row`.
    fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.error(e))?;
        let rows = stmt.query_map(params, row).map_err(|e| self.error(e))?;
        rows.collect::<rusqlite::Result<Vec<T>>>()
            .map_err(|e| self.error(e))
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::PutDevices(docs) => insert_devices(tx, docs),
        Change::DeleteDevice(id) => tx
            .execute("DELETE FROM devices WHERE id = ?1", [id])
            .and_then(|_| tx.execute("DELETE FROM cloud_to_device WHERE id = ?1", [id]))
            .map(drop),
        // Not seeded until the new set is complete: a start after a crash midway seeds again.
        Change::ClearDevices => {
            tx.execute_batch("DELETE FROM devices; DELETE FROM cloud_to_device; DELETE FROM meta WHERE key = 'seeded';")
        }
        Change::Seeded => tx
            .execute("INSERT OR REPLACE INTO meta VALUES ('seeded', '1')", [])
            .map(drop),
        Change::PutJob(job) => upsert_job(tx, job),
        Change::PutRows(seq, rows) => insert_rows(tx, *seq, rows),
        Change::ClearJobs => tx.execute_batch("DELETE FROM device_jobs; DELETE FROM jobs;"),
        Change::PutQueue(id, Some(doc)) => tx
            .prepare_cached("INSERT OR REPLACE INTO cloud_to_device (id, doc) VALUES (?1, ?2)")?
            .execute([id, doc])
            .map(drop),
        Change::PutQueue(id, None) => tx
            .execute("DELETE FROM cloud_to_device WHERE id = ?1", [id])
            .map(drop),
        Change::PutFileUpload(id, doc) => put_doc(tx, "file_uploads", id, doc.as_deref()),
        Change::PutFileNotification(id, doc) => {
            put_doc(tx, "file_notifications", id, doc.as_deref())
        }
        Change::ClearFileUploads => {
            tx.execute_batch("DELETE FROM file_uploads; DELETE FROM file_notifications;")
        }
        Change::PutConfiguration(d) => tx
            .execute(
                "INSERT OR REPLACE INTO configurations (id, doc) VALUES (?1, ?2)",
                [&d.id, &d.doc],
            )
            .map(drop),
        Change::DeleteConfiguration(id) => tx
            .execute("DELETE FROM configurations WHERE id = ?1", [id])
            .map(drop),
        Change::ClearConfigurations => tx.execute_batch("DELETE FROM configurations;"),
        Change::PutImportExportJob(d) => tx
            .execute(
                "INSERT OR REPLACE INTO import_export_jobs (id, doc) VALUES (?1, ?2)",
                [&d.id, &d.doc],
            )
            .map(drop),
        Change::ClearImportExportJobs => tx.execute_batch("DELETE FROM import_export_jobs;"),
        Change::Meta(key, value) => tx
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                [key, value],
            )
            .map(drop),
        Change::DeleteMeta(key) => tx
            .execute("DELETE FROM meta WHERE key = ?1", [key])
            .map(drop),
        Change::PutEvent(e) => tx
            .prepare_cached(
                "INSERT OR REPLACE INTO events (partition, seq, offset, enqueued_ms, body, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                e.partition,
                e.sequence_number,
                e.offset,
                e.enqueued_ms,
                e.body,
                e.message
            ])
            .map(drop),
        Change::DropEvents { partition, before } => tx
            .prepare_cached("DELETE FROM events WHERE partition = ?1 AND seq < ?2")?
            .execute(params![partition, before])
            .map(drop),
        Change::ClearEvents => tx.execute_batch("DELETE FROM events;"),
    }
}

/// Writes the document `id` of `table`, or deletes it (`None`).
fn put_doc(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    id: &str,
    doc: Option<&str>,
) -> rusqlite::Result<()> {
    match doc {
        Some(doc) => tx
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO {table} (id, doc) VALUES (?1, ?2)"
            ))?
            .execute([id, doc])
            .map(drop),
        None => tx
            .prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?
            .execute([id])
            .map(drop),
    }
}

/// Inserts or updates a job; its device list only when the record carries one (it is fixed
/// once the job runs).
fn upsert_job(tx: &rusqlite::Transaction<'_>, job: &JobRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO jobs (seq, job_id, status, created_ms, started_ms, end_ms, failure_reason, status_message, spec, targets)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (seq) DO UPDATE SET status = excluded.status, started_ms = excluded.started_ms,
           end_ms = excluded.end_ms, failure_reason = excluded.failure_reason,
           status_message = excluded.status_message, targets = coalesce(excluded.targets, targets)",
    )?
    .execute(params![
        job.seq as i64,
        job.job_id,
        job.status,
        job.created_ms,
        job.started_ms,
        job.end_ms,
        job.failure_reason,
        job.status_message,
        job.spec,
        job.targets,
    ])
    .map(drop)
}

fn insert_devices(tx: &rusqlite::Transaction<'_>, docs: &[Document]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO devices (id, doc) VALUES (?1, ?2)")?;
    for d in docs {
        stmt.execute(params![d.id, d.doc])?;
    }
    Ok(())
}

fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    seq: u64,
    rows: &[RowRecord],
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO device_jobs (job_seq, idx, device_id, status, start_ms, end_ms, updated_ms, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for r in rows {
        stmt.execute(params![
            seq as i64,
            r.index,
            r.device_id,
            r.status,
            r.start_ms,
            r.end_ms,
            r.updated_ms,
            r.outcome,
        ])?;
    }
    Ok(())
}
