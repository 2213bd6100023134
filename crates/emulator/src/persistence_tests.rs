//! The hub's state in a real data dir: what is written comes back, jobs go on after a
//! restart, and a data dir of an older store version is brought up to date with what it
//! held. (The store's own rules, without the domain, are tested in `store/tests.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::Clock;
use crate::devices::cloud_to_device::Queue;
use crate::devices::{BehaviourPatch, Device, Registry, Seed};
use crate::jobs::{from_stored, parse_job_request, Engine, EngineLimits};
use crate::store::{Change, Document, Store};
use crate::test_dir::Dir;

/// What a previous run left, read as the hub reads it.
type Stored = crate::store::Stored<Device, Queue, Value>;

fn load(store: &Store) -> Option<Stored> {
    store.load().unwrap()
}

/// What a hub's start does with a store: its stored state, or `devices` generated ones.
fn start(dir: &Path, devices: usize) -> Arc<Engine> {
    let store = Store::open(dir).unwrap();
    let stored = load(&store);
    let registry = Arc::new(Registry::with_store(store));
    let jobs = match stored {
        Some(s) => {
            registry.restore(s.devices);
            s.jobs
                .into_iter()
                .map(|j| from_stored(j).unwrap())
                .collect()
        }
        None => {
            registry
                .load(Seed::generated(devices).build(0).unwrap(), true)
                .unwrap();
            Vec::new()
        }
    };
    let engine = Engine::new(Arc::new(Clock::new()), registry, EngineLimits::default());
    engine.restore(jobs);
    engine
}

fn job(id: &str, body: Value) -> crate::jobs::NewJob {
    let mut body = body;
    body["jobId"] = json!(id);
    parse_job_request(id, &body, Clock::new().now_ms()).unwrap()
}

fn twin_job(id: &str) -> crate::jobs::NewJob {
    job(
        id,
        json!({"type": "scheduleUpdateTwin", "queryCondition": "*",
               "updateTwin": {"etag": "*", "tags": {"patched": true}}}),
    )
}

fn method_job(id: &str, extra: Value) -> crate::jobs::NewJob {
    let mut body = json!({"type": "scheduleDeviceMethod", "queryCondition": "*",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"x": 1}, "responseTimeoutInSeconds": 300}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    job(id, body)
}

async fn wait_for(e: &Engine, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let job = e.get(id).unwrap();
        if done(&job) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never got there: {}", e.get(id).unwrap());
}

/// One run of a hub: its own runtime, dropped at the end with every job runner in it (the
/// way a stopped process leaves them), which also lets go of the store.
fn run<T>(phase: impl std::future::Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(phase)
}

fn behaviour(v: Value) -> BehaviourPatch {
    serde_json::from_value(v).unwrap()
}

#[test]
fn devices_twins_and_keys_come_back() {
    let dir = Dir::new();
    let (created, twins, method, module, module_twin) = run(async {
        let e = start(dir.path(), 3);
        let d = &e.devices;
        let created = d
            .put_identity("pump", &json!({"deviceId": "pump"}), None, 5)
            .unwrap();
        let desired = json!({"tags": {"site": "a"}, "properties": {"desired": {"speed": 3}}});
        d.update_twin("pump", &desired, None, false, 6).unwrap();
        let reported = json!({"fw": "1.2"});
        d.report("pump", reported.as_object().unwrap(), 7)
            .unwrap()
            .unwrap();
        d.set_behaviour("device-0001", &behaviour(json!({"status": 500})))
            .unwrap();
        d.delete("device-0002", None).unwrap();
        // A module lives in its device's document.
        d.put_module(
            "pump",
            "edge-agent",
            &json!({"managedBy": "IotEdge"}),
            None,
            8,
        )
        .unwrap();
        let module_twin = json!({"properties": {"desired": {"mode": "on"}}});
        d.update_module_twin("pump", "edge-agent", &module_twin, None, false, 9)
            .unwrap();
        let twins: Vec<Value> = ["pump", "device-0000", "device-0001"]
            .iter()
            .map(|id| d.twin(id).unwrap())
            .collect();
        let method = d.read()["device-0001"].control_view()["method"].clone();
        let module = d.module_identity("pump", "edge-agent").unwrap();
        let module_twin = d.module_twin("pump", "edge-agent").unwrap();
        (created, twins, method, module, module_twin)
    });
    run(async {
        let e = start(dir.path(), 99);
        let d = &e.devices;
        assert_eq!(d.len(), 3, "the stored devices, not a new seed");
        assert_eq!(
            d.identity("pump").unwrap()["authentication"],
            created["authentication"]
        );
        for twin in &twins {
            assert_eq!(&d.twin(twin["deviceId"].as_str().unwrap()).unwrap(), twin);
        }
        let pump = d.twin("pump").unwrap();
        assert_eq!(pump["properties"]["reported"]["fw"], "1.2");
        assert_eq!(pump["properties"]["desired"]["$version"], 2);
        assert_eq!(pump["tags"]["site"], "a");
        assert_eq!(d.read()["device-0001"].control_view()["method"], method);
        assert!(d.identity("device-0002").is_err());
        assert_eq!(d.module_identity("pump", "edge-agent").unwrap(), module);
        assert_eq!(d.module_twin("pump", "edge-agent").unwrap(), module_twin);
        assert_eq!(module_twin["properties"]["desired"]["mode"], "on");
    });
}

#[test]
fn finished_jobs_and_every_row_come_back() {
    let dir = Dir::new();
    let (jobs, rows, twin) = run(async {
        let e = start(dir.path(), 50);
        e.create(twin_job("twin")).unwrap();
        e.create(method_job("method", json!({}))).unwrap();
        let done = |j: &Value| j["status"] == "completed";
        wait_for(&e, "twin", done).await;
        wait_for(&e, "method", done).await;
        let twin = e.devices.twin("device-0007").unwrap();
        (e.list(None, None), e.device_rows(), twin)
    });
    assert_eq!(rows.len(), 100);
    assert_eq!(twin["tags"]["patched"], true);
    run(async {
        let e = start(dir.path(), 0);
        assert_eq!(e.list(None, None), jobs);
        assert_eq!(e.device_rows(), rows);
        assert_eq!(e.devices.twin("device-0007").unwrap(), twin);
        // New jobs number on after the stored ones.
        e.create(twin_job("after")).unwrap();
        let listed: Vec<Value> = e
            .list(None, None)
            .iter()
            .map(|j| j["jobId"].clone())
            .collect();
        assert_eq!(listed, [json!("twin"), json!("method"), json!("after")]);
    });
}

#[test]
fn a_running_job_resumes_and_a_scheduled_one_keeps_its_start() {
    let dir = Dir::new();
    run(async {
        let e = start(dir.path(), 10);
        // Odd devices take an hour to answer: the job is running with 5 rows done when the
        // hub stops.
        let d = &e.devices;
        d.set_behaviour("*", &behaviour(json!({"delayMs": 3_600_000})))
            .unwrap();
        for i in (0..10).step_by(2) {
            d.set_behaviour(&format!("device-{i:04}"), &behaviour(json!({"delayMs": 0})))
                .unwrap();
        }
        e.create(method_job("slow", json!({}))).unwrap();
        let start_time = "2099-01-01T00:00:00Z";
        e.create(method_job("later", json!({"startTime": start_time})))
            .unwrap();
        wait_for(&e, "slow", |j| {
            j["deviceJobStatistics"]["succeededCount"] == 5
        })
        .await;
        // The progress writer runs every 200 ms: wait until the 5 rows are in the database.
        let db = rusqlite::Connection::open(dir.path().join("hub.db")).unwrap();
        let stored = || -> i64 {
            db.query_row("SELECT count(*) FROM device_jobs", [], |r| r.get(0))
                .unwrap()
        };
        for _ in 0..500 {
            if stored() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stored(), 5);
    });
    run(async {
        let e = start(dir.path(), 0);
        let slow = e.get("slow").unwrap();
        assert_eq!(slow["status"], "running");
        assert_eq!(slow["deviceJobStatistics"]["succeededCount"], 5);
        // Back to pending, and already running again (the runner resumed at start).
        let stats = &slow["deviceJobStatistics"];
        let open =
            stats["pendingCount"].as_u64().unwrap() + stats["runningCount"].as_u64().unwrap();
        assert_eq!(open, 5);
        let later = wait_for(&e, "later", |j| j["status"] == "scheduled").await;
        assert_eq!(later["startTime"], "2099-01-01T00:00:00.000Z");
        // The slow devices answer at once from now on.
        e.devices
            .set_behaviour("*", &behaviour(json!({"delayMs": 0})))
            .unwrap();
    });
    run(async {
        let e = start(dir.path(), 0);
        let slow = wait_for(&e, "slow", |j| j["status"] == "completed").await;
        assert_eq!(slow["deviceJobStatistics"]["succeededCount"], 10);
        // The even devices answered before the restarts and are not asked again: a method
        // job does not store the simulated devices' call counters, so a call since this start
        // is the only way to a count above 0. (The odd ones are asked again in the second run
        // or in this one, depending on when the second run's resumed calls read the behaviour.)
        for d in e.devices.read().values() {
            let index: u32 = d.id["device-".len()..].parse().unwrap();
            if index.is_multiple_of(2) {
                assert_eq!(d.method_calls, 0, "{} was asked again", d.id);
            }
        }
    });
}

#[test]
fn cancel_and_reset_are_stored() {
    let dir = Dir::new();
    let later = json!({"startTime": "2099-01-01T00:00:00Z"});
    run(async {
        let e = start(dir.path(), 4);
        e.create(method_job("later", later.clone())).unwrap();
        e.create(method_job("gone", later.clone())).unwrap();
        e.cancel("later").unwrap();
    });
    run(async {
        let e = start(dir.path(), 0);
        assert_eq!(e.get("later").unwrap()["status"], "cancelled");
        assert_eq!(e.len(), 2);
        e.reset().unwrap();
        e.devices
            .load(Seed::generated(1).build(0).unwrap(), true)
            .unwrap();
    });
    run(async {
        let e = start(dir.path(), 0);
        assert!(e.is_empty());
        assert_eq!(e.devices.len(), 1);
    });
}

/// A data dir of the first store version (before configurations): opened, brought up to date
/// in place, its devices kept, and configurations written from then on come back.
#[test]
fn a_first_version_store_is_brought_up_to_date() {
    let dir = Dir::new();
    run(async {
        let e = start(dir.path(), 3);
        drop(e);
    });
    {
        let db = rusqlite::Connection::open(dir.path().join("hub.db")).unwrap();
        db.execute_batch(
            "DROP TABLE configurations; DROP TABLE cloud_to_device; DROP TABLE file_uploads; DROP TABLE file_notifications; DROP TABLE import_export_jobs; DROP TABLE events; UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.meta("schema_version").unwrap(),
        Some(crate::store::SCHEMA_VERSION.to_string())
    );
    let doc = json!({"id": "c1", "priority": 3});
    store
        .write(|| vec![Change::PutConfiguration(Document::of("c1", &doc))])
        .wait()
        .unwrap();
    drop(store);
    let stored = load(&Store::open(dir.path()).unwrap()).unwrap();
    assert_eq!(stored.devices.len(), 3);
    assert_eq!(stored.configurations, [doc]);
}

/// A seeded, empty store as an older emulator left it in `dir`: without `tables`, of `version`.
fn older_store(dir: &Path, version: u32, tables: &[&str]) {
    let store = Store::open(dir).unwrap();
    store.replace_devices([]).wait().unwrap();
    drop(store);
    let drops: String = tables.iter().map(|t| format!("DROP TABLE {t}; ")).collect();
    rusqlite::Connection::open(dir.join("hub.db"))
        .unwrap()
        .execute_batch(&format!(
            "{drops}UPDATE meta SET value = '{version}' WHERE key = 'schema_version';"
        ))
        .unwrap();
}

#[test]
fn cloud_to_device_queues_are_stored_and_a_version_2_store_gains_them() {
    use crate::devices::cloud_to_device::CloudMessage;
    let put_queue = |store: &Store, device: &str, queue: &Queue| {
        let doc = (!queue.is_empty()).then(|| Document::of(device, queue).doc);
        store
            .write(|| vec![Change::PutQueue(device.into(), doc)])
            .wait()
    };
    let dir = Dir::new();
    // What a version-2 emulator left: no queue table.
    older_store(
        dir.path(),
        2,
        &[
            "cloud_to_device",
            "file_uploads",
            "file_notifications",
            "import_export_jobs",
            "events",
        ],
    );

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.meta("schema_version").unwrap(),
        Some(crate::store::SCHEMA_VERSION.to_string())
    );
    let mut queue = Queue::new("d1", "42");
    let message = CloudMessage {
        message_id: Some("m1".into()),
        body: b"on".to_vec(),
        ..Default::default()
    };
    queue.push(7, message, 0, &mut Vec::new()).unwrap();
    put_queue(&store, "d1", &queue).unwrap();
    put_queue(&store, "d2", &queue).unwrap();
    // An empty queue is removed, and so is a deleted device's.
    put_queue(&store, "d2", &Queue::new("d2", "1")).unwrap();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let queues = load(&store).unwrap().queues;
    assert_eq!(queues.len(), 1);
    assert_eq!((queues[0].device_id(), queues[0].last_token()), ("d1", 7));
    store
        .write(|| vec![Change::DeleteDevice("d1".into())])
        .wait()
        .unwrap();
    assert!(load(&store).unwrap().queues.is_empty());
}

/// A version-3 store (before file uploads) gains their tables; pending uploads and
/// notifications are stored, read back in queue order, removed one by one and all at a reset.
#[test]
fn file_uploads_are_stored_and_a_version_3_store_gains_them() {
    let dir = Dir::new();
    older_store(
        dir.path(),
        3,
        &[
            "file_uploads",
            "file_notifications",
            "import_export_jobs",
            "events",
        ],
    );

    let put = |store: &Store, change: Change| store.write(|| vec![change]).wait().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put(
        &store,
        Change::PutFileUpload("c1".into(), Some(r#"{"n":1}"#.into())),
    );
    put(
        &store,
        Change::PutFileUpload("c2".into(), Some(r#"{"n":2}"#.into())),
    );
    put(&store, Change::PutFileUpload("c1".into(), None));
    for seq in [10, 9, 2] {
        let doc = format!(r#"{{"seq":{seq}}}"#);
        put(
            &store,
            Change::PutFileNotification(format!("{seq:020}"), Some(doc)),
        );
    }
    put(
        &store,
        Change::PutFileNotification(format!("{:020}", 9), None),
    );
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let (uploads, notifications) = store.load_file_uploads::<Value, Value>().unwrap();
    assert_eq!(uploads, [json!({"n": 2})]);
    assert_eq!(notifications, [json!({"seq": 2}), json!({"seq": 10})]);
    put(&store, Change::ClearFileUploads);
    let (uploads, notifications) = store.load_file_uploads::<Value, Value>().unwrap();
    assert!(uploads.is_empty() && notifications.is_empty());
}

/// A twin job writes its devices through the registry's twin write: a batch's twins are
/// committed before its rows count as done, so with the writer held no row ends; released,
/// every twin is on disk by the time the job completes.
#[test]
fn a_twin_jobs_rows_end_only_once_its_twins_are_committed() {
    let dir = Dir::new();
    run(async {
        let e = start(dir.path(), 20);
        let start_time = crate::clock::iso(e.clock.now_ms() + 500);
        let mut body = json!({"type": "scheduleUpdateTwin", "queryCondition": "*", "startTime": start_time,
               "updateTwin": {"etag": "*", "tags": {"patched": true}}});
        body["jobId"] = json!("twin");
        e.create(parse_job_request("twin", &body, e.clock.now_ms()).unwrap())
            .unwrap();
        assert!(e.devices.store.hold_writer(true));
        let running = wait_for(&e, "twin", |j| j["status"] == "running").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = e.get("twin").unwrap();
        assert_eq!(
            held["deviceJobStatistics"]["succeededCount"], 0,
            "{running}"
        );
        e.devices.store.hold_writer(false);
        wait_for(&e, "twin", |j| j["status"] == "completed").await;
        let db = rusqlite::Connection::open(dir.path().join("hub.db")).unwrap();
        let patched: i64 = db
            .query_row(
                "SELECT count(*) FROM devices WHERE json_extract(doc, '$.tags.patched') = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(patched, 20);
    });
}

fn event_message(client: &str, body: &str) -> crate::device_message::DeviceMessage {
    crate::device_message::DeviceMessage {
        client: client.into(),
        body: body.as_bytes().to_vec().into(),
        properties: vec![("n".into(), body.into())],
        ..Default::default()
    }
}

/// The events endpoint's log and its consumer groups come back after a restart: the same
/// events at the same positions, numbering going on; a reset empties the stored log.
#[test]
fn the_events_log_and_consumer_groups_come_back() {
    use crate::events::{Events, EventsConfig};
    let dir = Dir::new();
    let config = EventsConfig {
        partitions: 2,
        ..Default::default()
    };
    let clock = Arc::new(Clock::new());
    let open = || {
        let store = Store::open(dir.path()).unwrap();
        let events = Events::new(config.clone(), clock.clone()).unwrap();
        if let Some(stored) = load(&store) {
            events.restore(stored.events).unwrap();
            events.groups.restore(&store).unwrap();
        }
        (store, events)
    };
    let (store, events) = open();
    store.replace_devices([]).wait().unwrap();
    for i in 0..5 {
        let m = event_message("dev-1", &format!("m{i}"));
        events.append(&store, m, clock.now_ms()).unwrap();
    }
    events.groups.create(&store, "readers").unwrap();
    drop((store, events));

    let (store, events) = open();
    let p = events.partition_of("dev-1");
    let read = events.read(p, 0, 10, clock.now_ms());
    let positions: Vec<(i64, i64)> = read.iter().map(|e| (e.sequence_number, e.offset)).collect();
    assert_eq!(positions, [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8)]);
    assert_eq!(&read[4].message.body[..], b"m4");
    assert_eq!(
        read[4].message.properties,
        [("n".to_string(), "m4".to_string())]
    );
    assert_eq!(events.read(1 - p, 0, 10, clock.now_ms()).len(), 0);
    let next = events.append(&store, event_message("dev-1", "m5"), clock.now_ms());
    assert_eq!(next, Ok((p, 5)), "sequence numbers go on");
    assert_eq!(events.groups.list(), ["$Default", "readers"]);

    events.clear(&store).unwrap();
    drop((store, events));
    let (store, events) = open();
    assert_eq!(events.read(p, 0, 10, clock.now_ms()).len(), 0);
    assert_eq!(events.groups.list(), ["$Default"]);
    assert_eq!(
        events.append(&store, event_message("dev-1", "x"), clock.now_ms()),
        Ok((p, 0))
    );
    drop((store, events));

    // A data dir written with more partitions than this start has is refused in one line.
    let store = Store::open(dir.path()).unwrap();
    let two = Events::new(config.clone(), clock.clone()).unwrap();
    let mut records = load(&store).unwrap().events;
    records[0].partition = 5;
    let err = two.restore(records).unwrap_err();
    assert!(
        err.message
            .starts_with("the data dir holds events of partition 5, but --partitions is 2"),
        "{err}"
    );
}
