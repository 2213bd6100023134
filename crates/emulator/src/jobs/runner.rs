//! One task per job: wait for the start time, evaluate the condition once, run the device
//! operations (bounded parallelism, optional tier pacing), and finish as completed, failed
//! or cancelled. `maxExecutionTimeInSeconds` is a deadline on the emulator clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::model::{DeviceOutcome, DeviceRow, Job, JobStatus};
use super::records::{ended, job_changes, job_record, row_records, EndedRow};
use super::request::{JobKind, MethodSpec};
use super::{Engine, JobEntry};
use crate::devices::{MethodCallRecord, StagedTwins};
use crate::errors::ErrorCode;
use crate::query::parse_condition;
use crate::store::Change;

/// Device operations in flight per job. Enough that slow devices overlap the way they do on
/// the service, few enough that a 100k-device job does not spawn 100k tasks at once.
const PARALLEL_DEVICE_OPS: usize = 256;

/// Twins a twin job writes in one batch: one write of the registry and one commit for all of
/// them (a commit per device would make a fleet's job wait on the disk 100,000 times).
const TWIN_BATCH: usize = 512;

/// Twin batches queued to the store and not yet waited for: the job writes the next ones while
/// the store commits these, and waits only when the writer is this far behind.
const TWIN_BATCHES_IN_FLIGHT: usize = 8;

enum Ending {
    Done,
    Deadline,
    Cancelled,
}

pub(super) async fn run(engine: Arc<Engine>, entry: Arc<JobEntry>) {
    let clock = engine.clock.clone();
    let (start_ms, condition_text, kind, max_s) = {
        let mut job = entry.lock();
        if job.spec.start_ms > clock.now_ms() && job.status == JobStatus::Queued {
            job.status = JobStatus::Scheduled;
        }
        (
            job.spec.start_ms,
            job.spec.query_condition.clone(),
            job.spec.kind.clone(),
            job.spec.max_execution_s,
        )
    };
    tokio::select! {
        _ = clock.sleep_until(start_ms) => {}
        _ = entry.cancelled() => return,
    }

    // A job read back from the store that was running goes on with the rows not done.
    let resumed = {
        let job = entry.lock();
        job.started_ms.filter(|_| job.status == JobStatus::Running)
    };
    let (started_ms, targets) = match resumed {
        Some(started_ms) => {
            let job = entry.lock();
            let open = (0..job.rows.len())
                .filter(|&i| !job.rows[i].status.is_terminal())
                .map(|i| {
                    let row = &job.rows[i];
                    (i, (row.device_id.clone(), row.module_id.clone()))
                })
                .collect();
            (started_ms, open)
        }
        None => match start(&engine, &entry, &condition_text) {
            Some(started) => started,
            None => return,
        },
    };

    let deadline = max_s.map(|s| started_ms.saturating_add((s as i64).saturating_mul(1000)));
    let progress = Arc::new(Progress::default());
    let writer = progress.writer(&engine, &entry);
    let ending = tokio::select! {
        _ = run_devices(&engine, &entry, &kind, targets, &progress) => Ending::Done,
        _ = async { clock.sleep_until(deadline.unwrap_or(i64::MAX)).await }, if deadline.is_some() => Ending::Deadline,
        _ = entry.cancelled() => Ending::Cancelled,
    };
    // Leaving the select dropped the in-flight device operations (if any).
    let now = clock.now_ms();
    let open: Vec<usize> = {
        let job = entry.lock();
        (0..job.rows.len())
            .filter(|&i| !job.rows[i].status.is_terminal())
            .collect()
    };
    let missed = open.len();
    match ending {
        Ending::Cancelled => {
            engine.end_rows(
                &entry,
                open.into_iter().map(|i| (i, DeviceOutcome::Canceled)),
                now,
            );
        }
        Ending::Deadline => {
            let description = format!(
                "The job reached maxExecutionTimeInSeconds ({}s) before this device was done",
                max_s.unwrap_or(0)
            );
            let timed_out = DeviceOutcome::Failed {
                code: "JobTimeout".into(),
                description,
            };
            engine.end_rows(
                &entry,
                open.into_iter().map(|i| (i, timed_out.clone())),
                now,
            );
        }
        Ending::Done => {}
    }
    // The cancel finished the job already.
    let completed = !matches!(ending, Ending::Cancelled);
    let mut job = entry.lock();
    if completed && !job.status.is_terminal() {
        if matches!(ending, Ending::Deadline) {
            job.status_message = Some(format!(
                "maxExecutionTimeInSeconds elapsed; {missed} device(s) not done were counted as failed"
            ));
        }
        job.finish(JobStatus::Completed, now);
    }
    drop(job);
    // Rows ended by the cancel or the deadline (and tasks dropped before they were reaped)
    // are not in the batch: at such an end every row is written again.
    let every_row = !matches!(ending, Ending::Done);
    if let Some(writer) = writer {
        writer.abort();
    }
    progress.flush(&engine, &entry, Some(every_row));
}

/// Evaluates the condition (once, at start: devices added later are not part of the job),
/// fixes the rows and writes the running job. `None` when the job ended instead.
fn start(engine: &Engine, entry: &JobEntry, condition_text: &str) -> Option<(i64, Targets)> {
    let clock = &engine.clock;
    let condition = match parse_condition(condition_text) {
        Ok(c) => c,
        Err(e) => {
            let mut job = entry.lock();
            if !job.status.is_terminal() {
                job.failure_reason = Some(format!(
                    "The query condition '{condition_text}' is invalid: {e}"
                ));
                job.finish(JobStatus::Failed, clock.now_ms());
                save(engine, entry, &job, false, &[]);
            }
            return None;
        }
    };
    let targets: Vec<Target> = engine.devices.targets(&condition);
    let started_ms = clock.now_ms();
    let mut job = entry.lock();
    if job.status.is_terminal() {
        return None;
    }
    job.status = JobStatus::Running;
    job.started_ms = Some(started_ms);
    job.rows = targets
        .iter()
        .map(|(id, module)| DeviceRow::pending(id.clone(), module.clone(), started_ms))
        .collect();
    job.stats.device_count = targets.len() as u64;
    job.stats.pending = targets.len() as u64;
    save(engine, entry, &job, true, &[]);
    Some((started_ms, targets.into_iter().enumerate().collect()))
}

/// The devices (or modules) a job still has to reach, with their row index.
type Targets = Vec<(usize, Target)>;

/// Queues the job's state (and, with `targets`, its device list) with rows that ended. A job
/// runner has no client to answer: it does not wait for the commit (the store's writer logs a
/// failed one), and the job goes on in memory.
fn save(engine: &Engine, entry: &JobEntry, job: &Job, targets: bool, rows: &[EndedRow<'_>]) {
    if entry.stored() {
        let _queued = engine.write_behind(|| job_changes(entry.seq, job, targets, rows));
    }
}

/// Rows ended since the last write. A job's progress is written in batches (one transaction
/// per `BATCH_ROWS` rows, and every `BATCH_INTERVAL` for the rest), not row by row: a
/// million-device job would spend most of its time committing otherwise. Rows not written yet
/// when the process dies run again when the job resumes.
#[derive(Default)]
struct Progress {
    ended: Mutex<Vec<usize>>,
}

const BATCH_ROWS: usize = 4096;
/// Real time, not the emulator clock: it bounds what a killed process makes a job redo.
const BATCH_INTERVAL: Duration = Duration::from_millis(200);

impl Progress {
    /// With a data dir, a task writing the rows ended so far every `BATCH_INTERVAL`.
    fn writer(
        self: &Arc<Self>,
        engine: &Arc<Engine>,
        entry: &Arc<JobEntry>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !engine.is_persistent() {
            return None;
        }
        let (progress, engine, entry) = (self.clone(), engine.clone(), entry.clone());
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(BATCH_INTERVAL).await;
                progress.flush(&engine, &entry, None);
            }
        }))
    }

    fn row_ended(&self, engine: &Engine, entry: &JobEntry, i: usize) {
        if !engine.is_persistent() {
            return;
        }
        let due = {
            let mut ended = crate::locks::lock(&self.ended);
            ended.push(i);
            ended.len() >= BATCH_ROWS
        };
        if due {
            self.flush(engine, entry, None);
        }
    }

    /// Writes the ended rows (what they did to devices is already stored: a twin job's
    /// writes are committed before their rows end). At the job's end (`end` is
    /// `Some(every_row)`) the job's state too, and with `every_row` all its rows.
    fn flush(&self, engine: &Engine, entry: &JobEntry, end: Option<bool>) {
        if !engine.is_persistent() {
            return;
        }
        let indices = std::mem::take(&mut *crate::locks::lock(&self.ended));
        if indices.is_empty() && end.is_none() {
            return;
        }
        let job = entry.lock();
        if !entry.stored() {
            return;
        }
        let every_row: Vec<usize>;
        let indices = if end == Some(true) {
            every_row = (0..job.rows.len())
                .filter(|&i| job.rows[i].status.is_terminal())
                .collect();
            &every_row
        } else {
            &indices
        };
        let rows: Vec<EndedRow<'_>> = ended(&job, indices.iter().copied());
        let state = end.is_some().then_some(&*job);
        let result = engine.write_behind(|| {
            let mut changes = vec![Change::PutRows(entry.seq, row_records(&rows))];
            if let Some(job) = state {
                changes.push(Change::PutJob(job_record(entry.seq, job, false)));
            }
            changes
        });
        if let Err(e) = result {
            eprintln!(
                "iothub-emulator: progress of job {} was not saved: {e}",
                job.spec.id
            );
        }
    }
}

/// What a job works on: a device, or one module of a device.
type Target = (String, Option<String>);

async fn run_devices(
    engine: &Arc<Engine>,
    entry: &Arc<JobEntry>,
    kind: &JobKind,
    targets: Targets,
    progress: &Arc<Progress>,
) {
    match kind {
        JobKind::Method(m) => run_methods(engine, entry, m, targets, progress).await,
        JobKind::Twin(patch) => run_twins(engine, entry, patch, targets, progress).await,
    }
}

/// A method job: each device called in its own task, at most `PARALLEL_DEVICE_OPS` at once.
async fn run_methods(
    engine: &Arc<Engine>,
    entry: &Arc<JobEntry>,
    m: &MethodSpec,
    targets: Targets,
    progress: &Arc<Progress>,
) {
    let permits = Arc::new(Semaphore::new(PARALLEL_DEVICE_OPS));
    let mut tasks = JoinSet::new();
    // One record of the call for the whole job: every device keeps a pointer to it.
    let op = Arc::new((m.clone(), method_record(m)));
    for (i, (device_id, module_id)) in targets {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        pace(engine, 1).await;
        let (engine, entry, op, progress) =
            (engine.clone(), entry.clone(), op.clone(), progress.clone());
        tasks.spawn(async move {
            entry.lock().start_row(i, engine.clock.now_ms());
            let (m, record) = &*op;
            let outcome = invoke_method(&engine, &device_id, module_id.as_deref(), m, record).await;
            engine.end_rows(&entry, [(i, outcome)], engine.clock.now_ms());
            progress.row_ended(&engine, &entry, i);
            drop(permit);
        });
        // Reap finished tasks as we go so the set stays small on big jobs.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits for the tier's pace (`--tier`) to allow `devices` more device operations.
async fn pace(engine: &Engine, devices: usize) {
    if let Some(pacer) = &engine.limits.pacer {
        for _ in 0..devices {
            let slot = pacer.reserve(engine.clock.now_ms());
            engine.clock.sleep_until(slot).await;
        }
    }
}

/// A twin job: its targets patched in batches through the registry's twin write (the one the
/// REST handlers use), each batch committed before its rows end. The next batches are written
/// while the store commits the ones before. Paced (`--tier`), a batch is one device, so each
/// waits for its own slot as a method job's devices do.
async fn run_twins(
    engine: &Arc<Engine>,
    entry: &Arc<JobEntry>,
    patch: &Value,
    targets: Targets,
    progress: &Arc<Progress>,
) {
    let batch = if engine.limits.pacer.is_some() {
        1
    } else {
        TWIN_BATCH
    };
    let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::new();
    for chunk in targets.chunks(batch) {
        pace(engine, chunk.len()).await;
        let now = engine.clock.now_ms();
        {
            let mut job = entry.lock();
            for (i, _) in chunk {
                job.start_row(*i, now);
            }
        }
        let writes: Vec<(&str, Option<&str>)> = chunk
            .iter()
            .map(|(_, (device, module))| (device.as_str(), module.as_deref()))
            .collect();
        let staged = engine.devices.stage_twin_patches(&writes, patch, now);
        in_flight.push_back(InFlight {
            engine,
            entry,
            progress,
            rows: chunk.iter().map(|(i, _)| *i).collect(),
            clients: chunk
                .iter()
                .map(|(_, (device, module))| match module {
                    Some(m) => format!("{device}/{m}"),
                    None => device.clone(),
                })
                .collect(),
            patch,
            staged: Some(staged),
        });
        // The oldest batches end (once committed) while the newer ones are queued behind.
        while in_flight.len() > TWIN_BATCHES_IN_FLIGHT {
            drop(in_flight.pop_front());
        }
        // A cancel or the deadline is seen between batches.
        tokio::task::yield_now().await;
    }
}

/// A twin job's batch written and queued to the store: its rows end once it is committed,
/// when the next batch is queued, at the job's end, or when a cancel or the deadline drops the
/// job's loop meanwhile (its twins are written: their rows say so).
struct InFlight<'a> {
    engine: &'a Engine,
    entry: &'a JobEntry,
    progress: &'a Progress,
    rows: Vec<usize>,
    /// The rows' devices or modules (`{deviceId}[/{moduleId}]`), for the engine's listener.
    clients: Vec<String>,
    patch: &'a Value,
    staged: Option<StagedTwins>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let Some(staged) = self.staged.take() else {
            return;
        };
        let results = staged.commit(&self.engine.devices);
        let now = self.engine.clock.now_ms();
        let written = self
            .clients
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|(client, _)| client);
        // The twin changes before the rows' ends: a row that ended tells of a twin written.
        self.engine.twins_patched(written, self.patch);
        let outcomes = self.rows.iter().zip(results).map(|(&i, result)| {
            let outcome = match result {
                Ok(()) => DeviceOutcome::Succeeded {
                    status: 200,
                    payload: None,
                },
                Err(e) => failed(e.code, e.message),
            };
            (i, outcome)
        });
        self.engine.end_rows(self.entry, outcomes, now);
        for &i in &self.rows {
            self.progress.row_ended(self.engine, self.entry, i);
        }
    }
}

fn failed(code: ErrorCode, description: impl Into<String>) -> DeviceOutcome {
    DeviceOutcome::Failed {
        code: code.name().to_string(),
        description: description.into(),
    }
}

async fn invoke_method(
    engine: &Engine,
    device_id: &str,
    module: Option<&str>,
    m: &MethodSpec,
    record: &MethodCallRecord,
) -> DeviceOutcome {
    let call = m.call(record);
    let answer = engine
        .devices
        .invoke_method(&engine.clock, device_id, module, &call)
        .await;
    match answer {
        Ok((status, payload)) => DeviceOutcome::Succeeded {
            status,
            payload: Some(payload),
        },
        Err((code, description)) => failed(code, description),
    }
}

/// What a device remembers of a call of `m` (its control-API `lastMethod`).
pub fn method_record(m: &MethodSpec) -> MethodCallRecord {
    (
        Arc::from(m.method_name.as_str()),
        Arc::new(m.payload.clone()),
    )
}
