//! The store on its own, against a real data dir: its records come back as written, a data
//! dir written by an earlier build loads, and a dir in use or of another version is refused
//! untouched. (The hub's state through the store: `persistence_tests.rs`.)

use std::path::Path;

use serde_json::{json, Value};

use crate::test_dir::Dir;

use super::*;

type Plain = Stored<Value, Value, Value>;

fn load(store: &Store) -> Option<Plain> {
    store.load().unwrap()
}

fn job_record(seq: u64, targets: Option<&str>) -> JobRecord {
    JobRecord {
        seq,
        job_id: format!("job-{seq}"),
        status: "running".into(),
        created_ms: 1,
        started_ms: Some(2),
        end_ms: None,
        failure_reason: None,
        status_message: Some("going".into()),
        spec: r#"{"id":"x"}"#.into(),
        targets: targets.map(str::to_string),
    }
}

fn row(index: i64, outcome: Option<&str>) -> RowRecord {
    RowRecord {
        index,
        device_id: format!("d{index}"),
        status: "completed".into(),
        start_ms: Some(3),
        end_ms: Some(4),
        updated_ms: 4,
        outcome: outcome.map(str::to_string),
    }
}

/// Every record the store takes comes back as it was written, through a restart.
#[test]
fn records_round_trip() {
    let dir = Dir::new();
    let store = Store::open(dir.path()).unwrap();
    let devices = (0..3).map(|i| Document::of(format!("d{i}"), &json!({"id": i})));
    store.replace_devices(devices).wait().unwrap();
    let rows = vec![row(0, Some(r#"{"status":200}"#)), row(2, None)];
    store
        .write(|| {
            vec![
                Change::DeleteDevice("d1".into()),
                Change::PutJob(job_record(4, Some(r#"["d0","d1","d2/m"]"#))),
                Change::PutRows(4, rows.clone()),
                // A later write without targets keeps them.
                Change::PutJob(job_record(4, None)),
                Change::PutConfiguration(Document::of("c1", &json!({"priority": 1}))),
                Change::PutQueue("d0".into(), Some(r#"{"q":1}"#.into())),
            ]
        })
        .wait()
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let stored = load(&store).unwrap();
    assert_eq!(stored.devices, [json!({"id": 0}), json!({"id": 2})]);
    assert_eq!(stored.configurations, [json!({"priority": 1})]);
    assert_eq!(stored.queues, [json!({"q": 1})]);
    assert_eq!(stored.jobs.len(), 1);
    let job = &stored.jobs[0];
    assert_eq!(job.job, job_record(4, Some(r#"["d0","d1","d2/m"]"#)));
    let mut back = job.rows.clone();
    back.sort_by_key(|r| r.index);
    assert_eq!(back, rows);
    store
        .write(|| vec![Change::ClearJobs, Change::ClearConfigurations])
        .wait()
        .unwrap();
    let stored = load(&store).unwrap();
    assert!(stored.jobs.is_empty() && stored.configurations.is_empty());
}

fn event(partition: u32, sequence_number: i64) -> EventRecord {
    EventRecord {
        partition,
        sequence_number,
        offset: sequence_number * 3,
        enqueued_ms: 1000 + sequence_number,
        body: vec![0, 1, 255],
        message: r#"{"client":"d"}"#.into(),
    }
}

/// Events come back by partition and sequence number; those that left, or a cleared log, do
/// not; meta values can be deleted.
#[test]
fn events_round_trip_and_leave() {
    let dir = Dir::new();
    let store = Store::open(dir.path()).unwrap();
    store.replace_devices([]).wait().unwrap();
    let mut changes: Vec<Change> = [(1, 0), (0, 0), (0, 1), (0, 2), (1, 1)]
        .into_iter()
        .map(|(p, seq)| Change::PutEvent(event(p, seq)))
        .collect();
    changes.push(Change::DropEvents {
        partition: 0,
        before: 2,
    });
    changes.push(Change::Meta("k".into(), "v".into()));
    store.write(|| changes).wait().unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        load(&store).unwrap().events,
        [event(0, 2), event(1, 0), event(1, 1)]
    );
    store
        .write(|| vec![Change::ClearEvents, Change::DeleteMeta("k".into())])
        .wait()
        .unwrap();
    assert!(load(&store).unwrap().events.is_empty());
    assert_eq!(store.meta("k").unwrap(), None);
}

/// A data dir as the build before the store's own records wrote it (schema version 3, rows
/// written by that build's SQL) loads unchanged.
#[test]
fn a_data_dir_of_the_previous_build_loads() {
    let dir = Dir::new();
    drop(Store::open(dir.path()).unwrap());
    let db = rusqlite::Connection::open(dir.path().join("hub.db")).unwrap();
    db.execute_batch(
        r#"INSERT INTO meta VALUES ('seeded', '1');
        INSERT INTO devices VALUES ('pump', '{"id":"pump","etag":"x"}');
        INSERT INTO jobs (seq, job_id, status, created_ms, started_ms, end_ms, failure_reason, status_message, spec, targets)
            VALUES (1, 'j1', 'completed', 10, 11, 12, NULL, NULL, '{"id":"j1"}', '["pump"]');
        INSERT INTO device_jobs VALUES (1, 0, 'pump', 'completed', 11, 12, 12, '{"status":200,"payload":{"a":1}}');
        INSERT INTO configurations VALUES ('c', '{"id":"c"}');
        INSERT INTO cloud_to_device VALUES ('pump', '{"device_id":"pump"}');"#,
    )
    .unwrap();
    drop(db);
    let stored = load(&Store::open(dir.path()).unwrap()).unwrap();
    assert_eq!(stored.devices, [json!({"id": "pump", "etag": "x"})]);
    assert_eq!(stored.configurations, [json!({"id": "c"})]);
    assert_eq!(stored.queues, [json!({"device_id": "pump"})]);
    let job = &stored.jobs[0];
    assert_eq!(
        (
            job.job.job_id.as_str(),
            job.job.status.as_str(),
            job.job.end_ms
        ),
        ("j1", "completed", Some(12))
    );
    assert_eq!(job.job.targets.as_deref(), Some(r#"["pump"]"#));
    assert_eq!(
        job.rows[0].outcome.as_deref(),
        Some(r#"{"status":200,"payload":{"a":1}}"#)
    );
}

/// `commit` queues what `mutate` says it changed and returns once it is on disk; a failed
/// `mutate` queues nothing.
#[test]
fn commit_writes_what_the_mutation_changed_or_nothing() {
    let dir = Dir::new();
    let store = Store::open(dir.path()).unwrap();
    store.replace_devices([]).wait().unwrap();
    let state = std::sync::Mutex::new(0);
    let refused: Result<(), StoreError> = store.commit(lock(&state), |n, changes| {
        **n += 1;
        changes.push(|| Change::PutDevices(vec![Document::of("no", &json!(1))]));
        Err(StoreError::new("refused"))
    });
    assert_eq!(refused.unwrap_err().to_string(), "refused");
    let n = store
        .commit(lock(&state), |n, changes| {
            **n += 1;
            changes.push(|| Change::PutDevices(vec![Document::of("yes", &json!(**n))]));
            Ok::<_, StoreError>(**n)
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(load(&store).unwrap().devices, [json!(2)]);
    // In memory the changes are never built.
    let memory = Store::memory();
    memory
        .commit(lock(&state), |_, changes| {
            changes.push(|| unreachable!("built in memory"));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

fn one_line_error(dir: &Path) -> String {
    match Store::open(dir) {
        Ok(_) => panic!("{} was opened", dir.display()),
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains('\n'), "{e}");
            e
        }
    }
}

#[test]
fn a_dir_in_use_is_refused() {
    let dir = Dir::new();
    let store = Store::open(dir.path()).unwrap();
    let e = one_line_error(dir.path());
    assert!(e.contains("in use by another iothub-emulator"), "{e}");
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    drop(store);
    Store::open(dir.path()).unwrap();
}

#[test]
fn another_version_or_not_a_store_is_refused_untouched() {
    let dir = Dir::new();
    let store = Store::open(dir.path()).unwrap();
    store.set_meta(meta::HUB_KEY, "k").unwrap();
    store.set_meta("schema_version", "99").unwrap();
    drop(store);
    // Fold the WAL into the file, as a cleanly stopped emulator leaves it.
    let db = dir.path().join("hub.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let e = one_line_error(dir.path());
    assert!(
        e.contains("another iothub-emulator store version (99"),
        "{e}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);

    let other = Dir::new();
    std::fs::create_dir_all(other.path()).unwrap();
    let garbage = other.path().join("hub.db");
    std::fs::write(&garbage, b"not a database, but someone's file".repeat(200)).unwrap();
    let e = one_line_error(other.path());
    assert!(e.contains("is not an iothub-emulator store"), "{e}");
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        b"not a database, but someone's file".repeat(200)
    );
}

#[test]
fn memory_store_keeps_nothing() {
    let store = Store::memory();
    assert!(!store.is_persistent());
    store.set_meta(meta::HUB_KEY, "k").unwrap();
    assert_eq!(store.meta(meta::HUB_KEY).unwrap(), None);
    assert!(load(&store).is_none());
}
