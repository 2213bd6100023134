//! Runs one import/export job on a blocking thread (registry writes wait for the store):
//! export writes the registry's `devices.txt` (`Registry::export_devices`) to the output
//! container; import first writes an empty `importErrors.log` to the output container (so a
//! container it cannot write fails the job before anything is imported), reads the input blob,
//! applies it through the registry's bulk rules (device lines in batches of 512, each batch one
//! registry lock and one commit, `Registry::import_batch`; a module line on its own,
//! `Registry::import_item`), and writes every failed line to `importErrors.log`. Storage
//! failures fail the job with a `failureReason` naming the container, never its SAS.
//!
//! After a crash (SIGKILL) a job that was enqueued or running runs again from its start when
//! the hub starts: an export is written again; an import applies every line again, so with the
//! default `createOrUpdate` the result is the one of an uninterrupted run, and a `create` line
//! the interrupted run already applied is listed in `importErrors.log` (DeviceAlreadyExists).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::runtime::Handle;

use super::{ImportExportJobs, Job, Kind, Status, IMPORT_ERRORS_BLOB};
use crate::clock::Clock;
use crate::devices::Registry;
use crate::errors::ApiError;
use crate::storage::LinkedStorage;

/// The error code of a line that is not an `ExportImportDevice` JSON object (the service's).
const INVALID_LINE_CODE: u32 = 400012;
/// Device lines applied under one registry lock and stored as one commit; the job's progress
/// (and whether it was cancelled) is looked at between two batches.
const BATCH: usize = 512;

/// What a job runs with: the hub's registry, clock and jobs, and the linked storage account
/// (`None`: the hub has none, and a job fails saying so).
#[derive(Clone)]
pub struct Runner {
    pub registry: Arc<Registry>,
    pub clock: Arc<Clock>,
    pub jobs: Arc<ImportExportJobs>,
    pub storage: Option<Arc<LinkedStorage>>,
}

/// Runs the job `id` to its end (spawned by the hub when the job is created or restored).
pub async fn run(runner: Runner, id: String) {
    let Some(job) = runner.jobs.snapshot(&id) else {
        return;
    };
    let store = &runner.registry.store;
    if !runner
        .jobs
        .update(store, &id, |j| j.status = Status::Running)
    {
        return;
    }
    let outcome = match &runner.storage {
        None => Err("the hub has no storage account (start it with --storage azurite or --storage-connection-string)".to_string()),
        Some(storage) => match job.kind {
            Kind::Export => export(&runner, storage, &job).await,
            Kind::Import => import(&runner, storage, &job).await,
        },
    };
    let now = runner.clock.now_ms();
    runner.jobs.update(store, &id, |j| {
        j.end_ms = Some(now);
        match outcome {
            Ok(()) => {
                j.status = Status::Completed;
                j.progress = 100;
            }
            Err(reason) => {
                j.status = Status::Failed;
                j.failure_reason = Some(reason);
            }
        }
    });
}

async fn export(runner: &Runner, storage: &LinkedStorage, job: &Job) -> Result<(), String> {
    let (_, output) = job.containers()?;
    let registry = runner.registry.clone();
    let exclude_keys = job.exclude_keys;
    let (text, _) = tokio::task::spawn_blocking(move || registry.export_devices(exclude_keys))
        .await
        .map_err(|e| format!("the export stopped: {e}"))?;
    if !runner
        .jobs
        .update(&runner.registry.store, &job.job_id, |j| j.progress = 50)
    {
        return Ok(());
    }
    storage
        .write_blob(&output, &job.output_blob_name, Bytes::from(text))
        .await
        .map_err(|e| {
            format!(
                "Cannot write {} to the output container: {e}",
                job.output_blob_name
            )
        })
}

async fn import(runner: &Runner, storage: &LinkedStorage, job: &Job) -> Result<(), String> {
    let (input, output) = job.containers()?;
    let input = input.ok_or("the import job has no input container")?;
    storage
        .write_blob(&output, IMPORT_ERRORS_BLOB, Bytes::new())
        .await
        .map_err(|e| format!("Cannot write {IMPORT_ERRORS_BLOB} to the output container: {e}"))?;
    let text = storage
        .read_blob(&input, &job.input_blob_name)
        .await
        .map_err(|e| {
            format!(
                "Cannot read {} from the input container: {e}",
                job.input_blob_name
            )
        })?
        .ok_or_else(|| {
            format!(
                "The input container {} holds no blob {}",
                input.address(),
                job.input_blob_name
            )
        })?;
    let (runner2, id, handle) = (runner.clone(), job.job_id.clone(), Handle::current());
    let errors = tokio::task::spawn_blocking(move || {
        let _runtime = handle.enter();
        apply_lines(&runner2, &id, &text)
    })
    .await
    .map_err(|e| format!("the import stopped: {e}"))?;
    storage
        .write_blob(&output, IMPORT_ERRORS_BLOB, Bytes::from(errors))
        .await
        .map_err(|e| format!("Cannot write {IMPORT_ERRORS_BLOB} to the output container: {e}"))
}

/// Applies every line of `devices.txt` (until the job is cancelled), device lines in batches
/// of [`BATCH`] (one registry lock and one commit each), a module line on its own: the error
/// log's text, its entries in line order.
fn apply_lines(runner: &Runner, id: &str, text: &[u8]) -> Vec<u8> {
    // Each line with its number in the blob (from 1), blank lines left out.
    let lines: Vec<(usize, &[u8])> = text
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| (i + 1, l))
        .collect();
    let mut log = Vec::new();
    let mut write = |entry: Value| {
        let _ = serde_json::to_writer(&mut log, &entry);
        log.push(b'\n');
    };
    for (n, chunk) in lines.chunks(BATCH).enumerate() {
        let progress = (n * BATCH * 100 / lines.len()) as u32;
        if !runner
            .jobs
            .update(&runner.registry.store, id, |j| j.progress = progress)
        {
            break;
        }
        let mut devices: Vec<Map<String, Value>> = Vec::new();
        let flush = |devices: &mut Vec<Map<String, Value>>, write: &mut dyn FnMut(Value)| {
            let items: Vec<&Map<String, Value>> = devices.iter().collect();
            let results = runner.registry.import_batch(&items, runner.clock.now_ms());
            for (item, result) in items.iter().zip(results) {
                if let Err(e) = result {
                    write(error_entry(item, &e));
                }
            }
            devices.clear();
        };
        for &(number, line) in chunk {
            match serde_json::from_slice::<Map<String, Value>>(line) {
                Ok(item) if !item.contains_key("moduleId") => devices.push(item),
                Ok(item) => {
                    flush(&mut devices, &mut write);
                    let now = runner.clock.now_ms();
                    if let Err(e) = runner.registry.import_item(&item, now) {
                        write(error_entry(&item, &e));
                    }
                }
                Err(e) => {
                    flush(&mut devices, &mut write);
                    // Where, not what: the line may hold a device's keys.
                    write(json!({
                        "errorCode": INVALID_LINE_CODE,
                        "errorStatus": format!(
                            "Invalid device format in line {number}: not an ExportImportDevice JSON object ({:?} error at column {})",
                            e.classify(),
                            e.column()
                        ),
                    }));
                }
            }
        }
        flush(&mut devices, &mut write);
    }
    log
}

/// A failed line's entry: the device (and module), the error's number and its status text.
fn error_entry(item: &Map<String, Value>, error: &ApiError) -> Value {
    let mut entry = json!({
        "deviceId": item.get("id"),
        "errorCode": error.code.number(),
        "errorStatus": format!("ErrorCode:{};{}", error.code.name(), error.message),
    });
    if let Some(module) = item.get("moduleId") {
        entry["moduleId"] = module.clone();
    }
    entry
}
