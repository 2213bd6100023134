//! Feeds arbitrary UTF-8 to `parse_condition` and `parse_select` (also wrapped in a full
//! `SELECT … WHERE`), evaluates every successful parse against fixture documents, and checks
//! that every error formats and points inside the text. Any panic, stack overflow or
//! sanitizer report is a crash.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

// The module is compiled from its source so that this crate builds without the emulator's
// server dependencies (TLS, HTTP); it is the very code `iothub_emulator::query` is built from.
#[allow(dead_code)]
#[path = "../../src/query/mod.rs"]
mod query;

static DOCS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    vec![
        json!({
            "deviceId": "d1", "etag": "AAAAAAAAAAE=", "version": 3, "status": "enabled",
            "connectionState": "Connected", "capabilities": {"iotEdge": false},
            "tags": {"group": "even", "floor": 3, "x": 1.5, "flag": true, "nil": null,
                     "location": {"region": "US"}, "list": ["a", 1, null, {"k": "v"}],
                     "big": 9223372036854775807u64, "neg": -9223372036854775807i64 - 1,
                     "huge": 18446744073709551615u64, "tiny": 1e-300, "s": "Sensor-01 é"},
            "properties": {"desired": {"temp": 21, "$version": 4, "mode": null},
                           "reported": {"temp": 22.5, "fw": "1.2.0"}}
        }),
        json!({
            "deviceId": "d2", "jobId": "job1", "jobType": "scheduleDeviceMethod",
            "status": "completed",
            "outcome": {"deviceMethodResponse": {"status": 200, "payload": {"Result": "ok"}}},
            "error": {"code": "DeviceNotOnline"}
        }),
        json!({}),
        json!(null),
        json!([1, 2, 3]),
    ]
});

fn check_error(text: &str, err: &query::QueryError) {
    let shown = err.to_string();
    assert!(!shown.is_empty());
    assert!(
        err.position() >= 1 && err.position() <= text.chars().count() + 1,
        "position {} outside {:?}",
        err.position(),
        text
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match query::parse_condition(text) {
        Ok(condition) => {
            for doc in DOCS.iter() {
                let _ = condition.matches(doc);
            }
        }
        Err(e) => check_error(text, &e),
    }
    match query::parse_select(text) {
        Ok(select) => {
            for doc in DOCS.iter() {
                let _ = select.matches(doc);
            }
        }
        Err(e) => check_error(text, &e),
    }
    for source in ["devices", "devices.jobs"] {
        let wrapped = format!("SELECT * FROM {source} WHERE {text}");
        match query::parse_select(&wrapped) {
            Ok(select) => {
                for doc in DOCS.iter() {
                    let _ = select.matches(doc);
                }
            }
            Err(e) => check_error(&wrapped, &e),
        }
    }
});
