//! Engine lifecycle tests on the scalable clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::devices::{BehaviourPatch, Seed};
use crate::limits::DevicePacer;

const T0: f64 = 1_800_000_000_000.0;

pub(super) fn engine_with(devices: usize, limits: EngineLimits) -> Arc<Engine> {
    let clock = Arc::new(Clock::starting_at(T0));
    let registry = Arc::new(Registry::default());
    registry
        .load(Seed::generated(devices).build(T0 as i64).unwrap(), true)
        .unwrap();
    Engine::new(clock, registry, limits)
}

pub(super) fn engine(devices: usize) -> Arc<Engine> {
    engine_with(devices, EngineLimits::default())
}

pub(super) fn method_job(id: &str, condition: &str, extra: Value) -> NewJob {
    let mut body = json!({
        "jobId": id, "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"x": 1}, "responseTimeoutInSeconds": 30},
        "queryCondition": condition,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    parse_job_request(id, &body, T0 as i64).unwrap()
}

pub(super) async fn wait_status(e: &Engine, id: &str, status: &str) -> Value {
    for _ in 0..400 {
        let job = e.get(id).unwrap();
        if job["status"] == status {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job {id} never reached {status}: {}", e.get(id).unwrap());
}

#[tokio::test]
async fn method_job_on_even_devices_completes() {
    let e = engine(20);
    let created = e
        .create(method_job("j1", "tags.group = 'even'", json!({})))
        .unwrap();
    assert_eq!(created["status"], "queued");
    assert_eq!(created["type"], "scheduleDeviceMethod");
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "jobId",
            "type",
            "queryCondition",
            "createdTime",
            "startTime",
            "endTime",
            "maxExecutionTimeInSeconds",
            "cloudToDeviceMethod",
            "status",
            "failureReason",
            "statusMessage",
            "deviceJobStatistics"
        ]
    );
    assert_eq!(created["cloudToDeviceMethod"]["connectTimeoutInSeconds"], 0);
    assert_eq!(created["endTime"], model::FAR_FUTURE);
    let done = wait_status(&e, "j1", "completed").await;
    let stats = &done["deviceJobStatistics"];
    assert_eq!(stats["deviceCount"], 10);
    assert_eq!(stats["succeededCount"], 10);
    assert_eq!(stats["failedCount"], 0);
    assert_eq!(stats["pendingCount"], 0);
    assert_eq!(stats["runningCount"], 0);
    assert_ne!(done["endTime"], model::FAR_FUTURE);
    let rows = e.device_rows();
    assert_eq!(rows.len(), 10);
    assert!(rows
        .iter()
        .all(|r| r["status"] == "completed" && r["jobId"] == "j1"));
    assert_eq!(
        rows[0]["outcome"]["deviceMethodResponse"],
        json!({"status": 200, "payload": {"ok": true}})
    );
    let devices = e.devices.read();
    assert_eq!(devices["device-0000"].method_calls, 1);
    assert_eq!(
        devices["device-0001"].method_calls, 0,
        "odd devices are not part of the job"
    );
}

#[tokio::test]
async fn future_job_is_queued_then_scheduled_then_runs_when_time_advances() {
    let e = engine(4);
    e.clock.set_scale(0.0);
    let start = chrono::DateTime::from_timestamp_millis(T0 as i64 + 3_600_000)
        .unwrap()
        .to_rfc3339();
    let created = e
        .create(method_job("later", "*", json!({"startTime": start})))
        .unwrap();
    assert_eq!(created["status"], "queued");
    wait_status(&e, "later", "scheduled").await;
    // Devices added before the start are included: the condition is evaluated at start.
    e.devices
        .load(
            Seed::from_json(json!([{"deviceId": "added-before-start"}]))
                .unwrap()
                .build(0)
                .unwrap(),
            false,
        )
        .unwrap();
    e.clock.advance(3601.0);
    let done = wait_status(&e, "later", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 5);
}

#[tokio::test]
async fn cancel_before_start_touches_no_device() {
    let e = engine(4);
    let start = chrono::DateTime::from_timestamp_millis(T0 as i64 + 3_600_000)
        .unwrap()
        .to_rfc3339();
    e.create(method_job("c1", "*", json!({"startTime": start})))
        .unwrap();
    let cancelled = e.cancel("c1").unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    e.clock.advance(7200.0);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(e.get("c1").unwrap()["status"], "cancelled");
    assert!(e.devices.read().values().all(|d| d.method_calls == 0));
    assert_eq!(e.cancel("nope").unwrap_err().code, ErrorCode::JobNotFound);
    // Cancelling again returns the job unchanged.
    assert_eq!(e.cancel("c1").unwrap()["status"], "cancelled");
}

#[tokio::test]
async fn bad_condition_fails_the_job_with_the_parse_error() {
    let e = engine(2);
    e.create(method_job(
        "bad",
        "SELECT * FROM devices WHERE tags.a = 1",
        json!({}),
    ))
    .unwrap();
    let failed = wait_status(&e, "bad", "failed").await;
    let reason = failed["failureReason"].as_str().unwrap();
    assert!(reason.contains("position"), "{reason}");
    assert_eq!(failed["deviceJobStatistics"]["deviceCount"], 0);
}

#[tokio::test]
async fn twin_job_merges_tags_and_desired() {
    let e = engine(3);
    let body = json!({
        "jobId": "t1", "type": "scheduleUpdateTwin", "queryCondition": "deviceId IN ['device-0001', 'device-0002']",
        "updateTwin": {"etag": "*", "tags": {"site": "north", "group": null}, "properties": {"desired": {"rate": 5}}},
    });
    e.create(parse_job_request("t1", &body, 0).unwrap())
        .unwrap();
    let done = wait_status(&e, "t1", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 2);
    assert_eq!(done["updateTwin"]["tags"]["site"], "north");
    let twin = e.devices.twin("device-0001").unwrap();
    assert_eq!(twin["tags"], json!({"index": 1, "site": "north"}));
    assert_eq!(twin["properties"]["desired"]["rate"], 5);
    assert_eq!(twin["version"], 2);
    assert_eq!(
        e.devices.twin("device-0000").unwrap()["tags"]["group"],
        "even"
    );
}

#[tokio::test]
async fn device_failures_are_counted_and_the_job_completes() {
    let e = engine(4);
    e.clock.set_scale(1000.0);
    e.devices
        .set_behaviour(
            "device-0001",
            &BehaviourPatch {
                offline: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    e.devices
        .set_behaviour(
            "device-0002",
            &BehaviourPatch {
                delay_ms: Some(60_000),
                ..Default::default()
            },
        )
        .unwrap();
    e.devices
        .set_behaviour(
            "device-0003",
            &BehaviourPatch {
                status: Some(404),
                payload: Some(json!("nope")),
                ..Default::default()
            },
        )
        .unwrap();
    let job = method_job(
        "f1",
        "*",
        json!({"cloudToDeviceMethod": {"methodName": "m", "connectTimeoutInSeconds": 5}}),
    );
    e.create(job).unwrap();
    let done = wait_status(&e, "f1", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 2, "{done}");
    assert_eq!(done["deviceJobStatistics"]["failedCount"], 2, "{done}");
    let rows = e.device_rows();
    let row = |id: &str| rows.iter().find(|r| r["deviceId"] == id).unwrap().clone();
    assert_eq!(row("device-0001")["error"]["code"], "DeviceNotOnline");
    assert_eq!(row("device-0002")["error"]["code"], "GatewayTimeout");
    assert_eq!(
        row("device-0003")["outcome"]["deviceMethodResponse"],
        json!({"status": 404, "payload": "nope"})
    );
}

#[tokio::test]
async fn oversized_payload_fails_each_device_with_413() {
    let e = engine(2);
    let big = "x".repeat(130 * 1024);
    e.create(method_job(
        "big",
        "*",
        json!({"cloudToDeviceMethod": {"methodName": "m", "payload": big}}),
    ))
    .unwrap();
    let done = wait_status(&e, "big", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["failedCount"], 2);
    assert!(e
        .device_rows()
        .iter()
        .all(|r| r["error"]["code"] == "MessageTooLarge"));
    assert!(e.devices.read().values().all(|d| d.method_calls == 0));
}

#[tokio::test]
async fn max_execution_time_fails_devices_not_done() {
    let e = engine(3);
    e.clock.set_scale(0.0);
    slow(&e, [2]);
    e.create(method_job(
        "slow",
        "*",
        json!({"maxExecutionTimeInSeconds": 10}),
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(e.get("slow").unwrap()["status"], "running");
    e.clock.advance(11.0);
    let done = wait_status(&e, "slow", "completed").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 2);
    assert_eq!(done["deviceJobStatistics"]["failedCount"], 1);
    assert!(done["statusMessage"]
        .as_str()
        .unwrap()
        .contains("maxExecutionTimeInSeconds"));
}

#[tokio::test]
async fn cancel_while_running_leaves_unreached_devices_untouched() {
    let limits = EngineLimits {
        max_active_jobs: None,
        pacer: Some(DevicePacer::per_second(10.0)),
    };
    let e = engine_with(20, limits);
    e.clock.set_scale(0.0);
    e.create(method_job("run", "*", json!({}))).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    e.clock.advance(0.35); // slots every 100 ms: about four devices run
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cancelled = e.cancel("run").unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    e.clock.advance(60.0);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let calls: u64 = e.devices.read().values().map(|d| d.method_calls).sum();
    assert!((1..=5).contains(&calls), "{calls} devices were called");
    let rows = e.device_rows();
    let canceled = rows.iter().filter(|r| r["status"] == "canceled").count() as u64;
    assert_eq!(canceled + calls, 20);
    assert_eq!(
        e.get("run").unwrap()["deviceJobStatistics"]["succeededCount"],
        calls
    );
}

#[tokio::test]
async fn duplicates_limits_and_counters() {
    let e = engine_with(
        1,
        EngineLimits {
            max_active_jobs: Some(1),
            pacer: None,
        },
    );
    let start = chrono::DateTime::from_timestamp_millis(T0 as i64 + 3_600_000)
        .unwrap()
        .to_rfc3339();
    e.count_attempt("a");
    e.create(method_job("a", "*", json!({"startTime": start})))
        .unwrap();
    e.count_attempt("a");
    assert_eq!(
        e.create(method_job("a", "*", json!({}))).unwrap_err().code,
        ErrorCode::JobAlreadyExists
    );
    let err = e.create(method_job("b", "*", json!({}))).unwrap_err();
    assert_eq!(err.code, ErrorCode::ThrottlingMaxActiveJobCountExceeded);
    assert_eq!(err.status().as_u16(), 429);
    assert_eq!(
        e.counters("a"),
        Counters {
            creates: 1,
            attempts: 2
        }
    );
    e.cancel("a").unwrap();
    e.create(method_job("b", "*", json!({}))).unwrap();
    let view = e.control_view();
    assert_eq!(view["counters"]["b"]["creates"], 1);
    assert_eq!(view["jobs"][0]["jobId"], "a");
    assert_eq!(view["jobs"][0]["creates"], 1);
    assert_eq!(view["jobs"][0]["attempts"], 2);
}

#[tokio::test]
async fn list_filters_by_type_and_status_in_creation_order() {
    let e = engine(1);
    let start = chrono::DateTime::from_timestamp_millis(T0 as i64 + 3_600_000)
        .unwrap()
        .to_rfc3339();
    for id in ["a", "b", "c"] {
        e.create(method_job(id, "*", json!({"startTime": start})))
            .unwrap();
    }
    e.cancel("b").unwrap();
    let ids = |v: Vec<Value>| {
        v.iter()
            .map(|j| j["jobId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(e.list(None, None)), ["a", "b", "c"]);
    assert_eq!(
        ids(e.list(Some("scheduleDeviceMethod"), Some("cancelled"))),
        ["b"]
    );
    assert!(e.list(Some("scheduleUpdateTwin"), None).is_empty());
    e.reset().unwrap();
    assert!(e.is_empty());
}

/// Records what the engine tells the hub of ended device jobs.
#[derive(Clone, Default)]
struct Told(Arc<std::sync::Mutex<Vec<(String, RowStatus, Value)>>>);

impl JobListener for Told {
    fn twin_patched(&self, _client: &str, _patch: &Value) {}
    fn wants_device_jobs(&self) -> bool {
        true
    }
    fn device_job_ended(&self, ended: &EndedDeviceJob) {
        let mut told = self.0.lock().unwrap();
        told.push((ended.client.clone(), ended.status, ended.row.clone()));
    }
}

impl Told {
    /// What was told, by device.
    fn by_device(&self) -> Vec<(String, RowStatus, Value)> {
        let mut told = self.0.lock().unwrap().clone();
        told.sort_by(|a, b| a.0.cmp(&b.0));
        told
    }
}

/// Devices `device-{i:04}` answer methods after 20 s (of the emulator's clock).
fn slow(e: &Engine, devices: impl IntoIterator<Item = usize>) {
    for i in devices {
        let patch = BehaviourPatch {
            delay_ms: Some(20_000),
            ..Default::default()
        };
        e.devices
            .set_behaviour(&format!("device-{i:04}"), &patch)
            .unwrap();
    }
}

#[tokio::test]
async fn each_device_job_end_is_told_once_with_its_row_answered_or_timed_out() {
    let e = engine(4);
    let told = Told::default();
    e.set_listener(Box::new(told.clone()));
    e.clock.set_scale(0.0);
    slow(&e, [2, 3]);
    e.create(method_job(
        "mixed",
        "*",
        json!({"maxExecutionTimeInSeconds": 10}),
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    e.clock.advance(11.0);
    wait_status(&e, "mixed", "completed").await;
    let told = told.by_device();
    let statuses: Vec<(&str, RowStatus)> = told.iter().map(|(c, s, _)| (c.as_str(), *s)).collect();
    assert_eq!(
        statuses,
        [
            ("device-0000", RowStatus::Completed),
            ("device-0001", RowStatus::Completed),
            ("device-0002", RowStatus::Failed),
            ("device-0003", RowStatus::Failed),
        ]
    );
    // The row the devices.jobs query shows.
    let rows = e.device_rows();
    for (client, _, row) in &told {
        assert_eq!(rows.iter().find(|r| r["deviceId"] == *client), Some(row));
    }
    assert_eq!(told[2].2["error"]["code"], "JobTimeout");
}

#[tokio::test]
async fn a_cancel_tells_of_pending_and_running_devices_once_each() {
    let limits = EngineLimits {
        max_active_jobs: None,
        pacer: Some(DevicePacer::per_second(10.0)),
    };
    let e = engine_with(20, limits);
    let told = Told::default();
    e.set_listener(Box::new(told.clone()));
    e.clock.set_scale(0.0);
    slow(&e, 0..20);
    e.create(method_job("stop", "*", json!({}))).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    e.clock.advance(0.35); // slots every 100 ms: about four devices are called, and wait
    tokio::time::sleep(Duration::from_millis(30)).await;
    let running = e.get("stop").unwrap()["deviceJobStatistics"]["runningCount"]
        .as_u64()
        .unwrap();
    assert!((1..=5).contains(&running), "{running} devices running");
    e.cancel("stop").unwrap();
    // The cancel tells of the devices not reached; the runner, once it stops, of those it called.
    for _ in 0..400 {
        if told.0.lock().unwrap().len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let told = told.by_device();
    assert_eq!(told.len(), 20, "each device once");
    for (i, (client, status, row)) in told.iter().enumerate() {
        assert_eq!(client, &format!("device-{i:04}"));
        assert_eq!(*status, RowStatus::Canceled);
        assert_eq!(row["status"], "canceled");
    }
}

#[tokio::test]
async fn a_job_a_reset_forgot_tells_nothing() {
    let e = engine(3);
    let told = Told::default();
    e.set_listener(Box::new(told.clone()));
    e.clock.set_scale(0.0);
    slow(&e, 0..3);
    e.create(method_job("gone", "*", json!({}))).unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        e.get("gone").unwrap()["deviceJobStatistics"]["runningCount"],
        3
    );
    e.reset().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(told.by_device().is_empty(), "{:?}", told.by_device());
}
