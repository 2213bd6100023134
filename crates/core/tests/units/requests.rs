use http::Method;
use iothub_jobs_core::request::{self, job_body, JSON_CONTENT_TYPE};
use iothub_jobs_core::{CloudToDeviceMethod, ErrorClass, JobKind, JobQuery, JobRequest};

use crate::raw;

const V: &str = "2021-04-12";

fn method_job() -> JobRequest {
    JobRequest {
        job_id: "job-1".into(),
        job_id_json: raw("\"job-1\""),
        kind: JobKind::DeviceMethod(CloudToDeviceMethod {
            method_name_json: raw("\"reboot\""),
            payload_json: Some(raw("{\"delay\":5}")),
            response_timeout_json: Some(raw("15")),
            connect_timeout_json: None,
        }),
        start_time: Some("2026-11-26T06:00:00.000Z".into()),
        max_execution_time_json: Some(raw("3600")),
        query_condition: "deviceId IN ['a', 'b']".into(),
    }
}

#[test]
fn get_and_cancel_encode_the_id() {
    let r = request::get_job("job-1", V);
    assert_eq!(
        (r.method.clone(), r.path_and_query.as_str()),
        (Method::GET, "/jobs/v2/job-1?api-version=2021-04-12")
    );
    assert!(r.body.is_empty() && r.content_type.is_none() && !r.send_content_length);
    let r = request::get_job("a b/../c?d", V);
    assert_eq!(
        r.path_and_query,
        "/jobs/v2/a%20b%2F..%2Fc%3Fd?api-version=2021-04-12"
    );
    let r = request::cancel_job("../devices/x", V);
    assert_eq!(
        (r.method.clone(), r.path_and_query.as_str()),
        (
            Method::POST,
            "/jobs/v2/..%2Fdevices%2Fx/cancel?api-version=2021-04-12"
        )
    );
    assert!(r.body.is_empty() && r.content_type.is_none() && r.send_content_length);
    assert_eq!(
        request::get_job("0", "2024-03-31").path_and_query,
        "/jobs/v2/0?api-version=2024-03-31"
    );
}

#[test]
fn method_job_body_exact_bytes() {
    let job = method_job();
    assert_eq!(
        job_body(&job),
        r#"{"jobId":"job-1","type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"reboot","payload":{"delay":5},"responseTimeoutInSeconds":15},"startTime":"2026-11-26T06:00:00.000Z","maxExecutionTimeInSeconds":3600,"queryCondition":"deviceId IN ['a', 'b']"}"#
    );
    let r = request::schedule_job(&job, V);
    assert_eq!(r.method, Method::PUT);
    assert_eq!(r.path_and_query, "/jobs/v2/job-1?api-version=2021-04-12");
    assert_eq!(r.content_type, Some(JSON_CONTENT_TYPE));
    assert_eq!(JSON_CONTENT_TYPE, "application/json; charset=utf-8");
    assert!(r.send_content_length);
    assert_eq!(&r.body[..], job_body(&job).as_bytes());
}

#[test]
fn method_job_defaults_null_and_omit_rules() {
    let mut job = method_job();
    job.job_id = "42".into();
    job.job_id_json = raw("42");
    job.kind = JobKind::DeviceMethod(CloudToDeviceMethod {
        method_name_json: raw("\"m\""),
        payload_json: None,
        response_timeout_json: None,
        connect_timeout_json: Some(raw("10")),
    });
    job.start_time = None;
    job.max_execution_time_json = None;
    job.query_condition = "tags.x = \"q\"\n".into();
    assert_eq!(
        job_body(&job),
        r#"{"jobId":42,"type":"scheduleDeviceMethod","cloudToDeviceMethod":{"methodName":"m","payload":null,"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":10},"startTime":null,"queryCondition":"tags.x = \"q\"\n"}"#
    );
    assert_eq!(
        request::schedule_job(&job, V).path_and_query,
        "/jobs/v2/42?api-version=2021-04-12"
    );
}

#[test]
fn twin_job_body_exact_bytes() {
    let job = JobRequest {
        job_id: "tw in".into(),
        job_id_json: raw("\"tw in\""),
        kind: JobKind::TwinUpdate {
            patch_json: raw(r#"{"etag":"*","tags":{"a":null},"properties":{"desired":{"b":1}}}"#),
        },
        start_time: Some("2026-01-01T00:00:00.000Z".into()),
        max_execution_time_json: Some(raw("10")),
        query_condition: "*".into(),
    };
    assert_eq!(
        job_body(&job),
        r#"{"jobId":"tw in","type":"scheduleUpdateTwin","updateTwin":{"etag":"*","tags":{"a":null},"properties":{"desired":{"b":1}}},"startTime":"2026-01-01T00:00:00.000Z","maxExecutionTimeInSeconds":10,"queryCondition":"*"}"#
    );
    assert_eq!(
        request::schedule_job(&job, V).path_and_query,
        "/jobs/v2/tw%20in?api-version=2021-04-12"
    );
}

#[test]
fn json_values_are_checked_and_kept_byte_for_byte() {
    // What `JSON.stringify` writes stays exactly as written: escapes, a lone surrogate, number
    // spelling, key order.
    for text in [
        r#""\ud800 \u00e9 \n""#,
        "1e+21",
        "-0",
        r#"{"b":1,"a":[true,null,{"":"x"}]}"#,
    ] {
        assert_eq!(
            iothub_jobs_core::json_value("v", text.to_owned())
                .unwrap()
                .get(),
            text
        );
    }
    for bad in ["", "{", "undefined", "1 2", r#"{"a":1}x"#, "'s'", "NaN"] {
        let err = iothub_jobs_core::json_value("The payload", bad.to_owned()).unwrap_err();
        assert_eq!(err.class(), ErrorClass::ArgumentError, "{bad:?}");
        assert!(
            err.to_string()
                .starts_with("The payload is not a JSON value: "),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn query_path_and_headers() {
    let q = |t: Option<&str>, s: Option<&str>, p: Option<&str>, c: Option<&str>| JobQuery {
        job_type: t.map(Into::into),
        job_status: s.map(Into::into),
        page_size: p.map(Into::into),
        continuation_token: c.map(Into::into),
    };
    let r = request::query_jobs(&q(None, None, None, None), V).unwrap();
    assert_eq!(r.path_and_query, "/jobs/v2/query?api-version=2021-04-12");
    assert!(r.extra_headers.is_empty());
    // jobStatus before jobType, both encoded; empty values not sent.
    let r = request::query_jobs(
        &q(
            Some("scheduleDeviceMethod"),
            Some("com pleted"),
            Some("5"),
            Some("tok/en="),
        ),
        V,
    )
    .unwrap();
    assert_eq!(
        r.path_and_query,
        "/jobs/v2/query?api-version=2021-04-12&jobStatus=com%20pleted&jobType=scheduleDeviceMethod"
    );
    assert_eq!(
        r.extra_headers,
        vec![
            ("x-ms-max-item-count", "5".to_string()),
            ("x-ms-continuation", "tok/en=".to_string())
        ]
    );
    let r = request::query_jobs(&q(Some(""), Some(""), Some(""), Some("")), V).unwrap();
    assert_eq!(r.path_and_query, "/jobs/v2/query?api-version=2021-04-12");
    assert!(r.extra_headers.is_empty());
    assert_eq!(r.method, Method::GET);
}

#[test]
fn header_bound_inputs_with_cr_lf_nul_are_rejected() {
    for bad in ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b"] {
        let e = request::query_jobs(
            &JobQuery {
                continuation_token: Some(bad.into()),
                ..Default::default()
            },
            V,
        )
        .unwrap_err();
        assert_eq!(e.class(), ErrorClass::ArgumentError);
        assert!(e.to_string().contains("continuation token"), "{e}");
        let e = request::query_jobs(
            &JobQuery {
                page_size: Some(bad.into()),
                ..Default::default()
            },
            V,
        )
        .unwrap_err();
        assert_eq!(e.class(), ErrorClass::ArgumentError);
    }
}
