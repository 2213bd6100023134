#![no_main]
//! Everything we decode from a response: header lookup, JSON detection, text, Retry-After forms,
//! HTTP dates, ISO-8601 times and the 409-confirm job comparison. No panic.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use iothub_jobs_core::http::retry::server_delay;
use iothub_jobs_core::time::parse_http_date;
use iothub_jobs_core::jobs::job_matches;
use iothub_jobs_core::time::parse_iso8601_millis;
use iothub_jobs_core::{json_value, CloudToDeviceMethod, JobKind, JobRequest, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let response = Response {
        status: 200,
        status_text: "OK".into(),
        headers,
        body: Bytes::from(body.to_string()),
    };
    let _ = (response.is_json(), response.text(), response.header("content-type"));
    let _ = server_delay(&response, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let _ = parse_http_date(head);
    let _ = parse_iso8601_millis(head);
    // The JSON check of job values, then the comparison with whatever of the input is JSON.
    let raw = |text: &str| json_value("fuzzed value", text.to_owned());
    let mut kinds = Vec::new();
    if let Ok(payload) = raw(head) {
        kinds.push(JobKind::DeviceMethod(CloudToDeviceMethod {
            method_name_json: raw("\"m\"").expect("constant JSON"),
            payload_json: Some(payload),
            response_timeout_json: None,
            connect_timeout_json: None,
        }));
    }
    if let Ok(patch) = raw(body) {
        kinds.push(JobKind::TwinUpdate { patch_json: patch });
    }
    for kind in kinds {
        let job = JobRequest {
            job_id: "j".into(),
            job_id_json: raw("\"j\"").expect("constant JSON"),
            kind,
            start_time: Some(head.to_string()),
            max_execution_time_json: None,
            query_condition: "*".into(),
        };
        let _ = job_matches(&job, &response);
    }
});
