use bytes::Bytes;
use iothub_jobs_core::jobs::job_matches;
use iothub_jobs_core::time::parse_iso8601_millis;
use iothub_jobs_core::{CloudToDeviceMethod, JobKind, JobRequest, Response};

use crate::raw;

fn ok(body: &str) -> Response {
    Response {
        status: 200,
        status_text: "OK".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(body.to_string()),
    }
}

fn method_job(payload: Option<&str>, start: Option<&str>) -> JobRequest {
    JobRequest {
        job_id: "j".into(),
        job_id_json: raw("\"j\""),
        kind: JobKind::DeviceMethod(CloudToDeviceMethod {
            method_name_json: raw("\"reboot\""),
            payload_json: payload.map(raw),
            response_timeout_json: None,
            connect_timeout_json: None,
        }),
        start_time: start.map(Into::into),
        max_execution_time_json: Some(raw("3600")),
        query_condition: "deviceId = 'a'".into(),
    }
}

#[test]
fn method_job_matching() {
    let job = method_job(
        Some(r#"{"a":1,"b":[1,2]}"#),
        Some("2026-11-26T06:00:00.000Z"),
    );
    let found = r#"{"jobId":"j","type":"scheduleDeviceMethod","queryCondition":"deviceId = 'a'","cloudToDeviceMethod":{"methodName":"reboot","payload":{"b":[1,2.0],"a":1},"responseTimeoutInSeconds":30},"startTime":"2026-11-26T06:00:00Z","status":"queued"}"#;
    assert!(job_matches(&job, &ok(found)));
    // Each differing field breaks the match.
    for (from, to) in [
        ("scheduleDeviceMethod", "scheduleUpdateTwin"),
        ("deviceId = 'a'", "deviceId = 'b'"),
        ("\"reboot\"", "\"restart\""),
        ("\"a\":1}", "\"a\":2}"),
        ("06:00:00Z", "06:00:01Z"),
    ] {
        assert!(
            !job_matches(&job, &ok(&found.replace(from, to))),
            "{from} -> {to}"
        );
    }
    // jobType / startTimeUtc spellings are accepted.
    let alt = found
        .replace("\"type\"", "\"jobType\"")
        .replace("\"startTime\"", "\"startTimeUtc\"");
    assert!(job_matches(&job, &ok(&alt)));
    // Not JSON, not 2xx: no match.
    assert!(!job_matches(&job, &ok("nope")));
    let mut not_ok = ok(found);
    not_ok.status = 404;
    assert!(!job_matches(&job, &not_ok));
    // null payload; no start time asked (service picks it).
    let job = method_job(None, None);
    let found = r#"{"type":"scheduleDeviceMethod","queryCondition":"deviceId = 'a'","cloudToDeviceMethod":{"methodName":"reboot","payload":null},"startTime":"2030-01-01T00:00:00Z"}"#;
    assert!(job_matches(&job, &ok(found)));
    assert!(job_matches(
        &job,
        &ok(&found.replace(",\"payload\":null", ""))
    ));
    assert!(!job_matches(
        &job,
        &ok(&found.replace("\"payload\":null", "\"payload\":{}"))
    ));
}

#[test]
fn twin_job_matching_allows_service_added_fields() {
    let job = JobRequest {
        kind: JobKind::TwinUpdate {
            patch_json: raw(r#"{"tags":{"g":"x"},"properties":{"desired":{"v":1}}}"#),
        },
        ..method_job(None, None)
    };
    let found = r#"{"type":"scheduleUpdateTwin","queryCondition":"deviceId = 'a'","updateTwin":{"deviceId":null,"etag":"*","tags":{"g":"x"},"properties":{"desired":{"v":1}}}}"#;
    assert!(job_matches(&job, &ok(found)));
    assert!(!job_matches(
        &job,
        &ok(&found.replace("\"v\":1", "\"v\":2"))
    ));
    assert!(!job_matches(
        &job,
        &ok(&found.replace("\"scheduleUpdateTwin\"", "\"scheduleDeviceMethod\""))
    ));
}

#[test]
fn iso8601() {
    assert_eq!(parse_iso8601_millis("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_iso8601_millis("2023-11-14T22:13:20.123Z"),
        Some(1_700_000_000_123)
    );
    assert_eq!(
        parse_iso8601_millis("2023-11-14T22:13:20.1234567Z"),
        Some(1_700_000_000_123)
    );
    assert_eq!(
        parse_iso8601_millis("2023-11-15T00:13:20.123+02:00"),
        Some(1_700_000_000_123)
    );
    assert_eq!(
        parse_iso8601_millis("2023-11-14T22:13:20.123"),
        Some(1_700_000_000_123)
    );
    assert_eq!(parse_iso8601_millis("2023-13-14T22:13:20Z"), None);
    assert_eq!(parse_iso8601_millis("garbage"), None);
}

#[test]
fn iso8601_formatting_matches_javascript_to_iso_string() {
    use iothub_jobs_core::time::format_iso8601_millis;
    // Values of `new Date(ms).toISOString()`.
    for (ms, iso) in [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ] {
        assert_eq!(format_iso8601_millis(ms), iso);
        assert_eq!(parse_iso8601_millis(iso), Some(ms), "round trip of {iso}");
    }
}
