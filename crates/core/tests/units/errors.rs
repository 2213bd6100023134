use bytes::Bytes;
use iothub_jobs_core::error::{parse_error_body, translate_response, ErrorBody};
use iothub_jobs_core::{Error, ErrorClass, Response};

fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    Response {
        status,
        status_text: "X".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Bytes::from(body.to_string()),
    }
}

fn translate(
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> (ErrorClass, String, Option<String>) {
    match translate_response(resp(status, headers, body)) {
        e @ Error::Service { .. } => (e.class(), e.to_string(), e.code().map(str::to_string)),
        other => panic!("not a service error: {other:?}"),
    }
}

const ENV1: &str = r#"{"Message":"ErrorCode:JobNotFound;Job 'abc' not found; see docs","ExceptionMessage":"Tracking ID:1234-G:5-TimeStamp:11/26/2026 06:00:00"}"#;
const ENV2: &str = r#"{"Message":"{\"errorCode\":404001,\"trackingId\":\"t\",\"message\":\"Device x not found\",\"timestampUtc\":\"2026-11-26T06:00:00Z\"}","ExceptionMessage":""}"#;
const ENV3: &str = r#"{"errorCode":400004,"trackingId":"t","message":"Bad argument","timestampUtc":"2026-11-26T06:00:00Z"}"#;

#[test]
fn three_envelopes() {
    assert_eq!(
        parse_error_body(ENV1.as_bytes()),
        Some(ErrorBody {
            code: Some("JobNotFound".into()),
            message: Some("Job 'abc' not found; see docs".into())
        })
    );
    assert_eq!(
        parse_error_body(ENV2.as_bytes()),
        Some(ErrorBody {
            code: Some("DeviceNotFound".into()),
            message: Some("Device x not found".into())
        })
    );
    assert_eq!(
        parse_error_body(ENV3.as_bytes()),
        Some(ErrorBody {
            code: Some("ArgumentInvalid".into()),
            message: Some("Bad argument".into())
        })
    );
    // Unknown numeric codes stay numbers (as text).
    assert_eq!(
        parse_error_body(br#"{"errorCode":499999,"message":"m"}"#)
            .unwrap()
            .code
            .as_deref(),
        Some("499999")
    );
    // Not envelopes.
    for body in [
        "",
        "not json",
        "[]",
        "42",
        r#"{"Message":"no code here"}"#,
        r#"{"Message":"ErrorCode:X;"}"#,
        r#"{"Message":";text"}"#,
        r#"{"other":1}"#,
    ] {
        assert_eq!(parse_error_body(body.as_bytes()), None, "{body}");
    }
    // Envelope 1 nested inside the text: the text is kept whole.
    let nested =
        r#"{"Message":"ErrorCode:ArgumentInvalid;outer;{\"Message\":\"ErrorCode:X;inner\"}"}"#;
    assert_eq!(
        parse_error_body(nested.as_bytes())
            .unwrap()
            .message
            .as_deref(),
        Some(r#"outer;{"Message":"ErrorCode:X;inner"}"#)
    );
}

#[test]
fn class_for_every_status() {
    let body = r#"{"Message":"ErrorCode:Something;the text"}"#;
    let cases = [
        (300, ErrorClass::Error),
        (304, ErrorClass::Error),
        (400, ErrorClass::ArgumentError),
        (401, ErrorClass::UnauthorizedError),
        (403, ErrorClass::TooManyDevicesError),
        (405, ErrorClass::Error),
        (408, ErrorClass::DeviceTimeoutError),
        (409, ErrorClass::DeviceAlreadyExistsError),
        (412, ErrorClass::InvalidEtagError),
        (413, ErrorClass::Error),
        (429, ErrorClass::ThrottlingError),
        (500, ErrorClass::InternalServerError),
        (501, ErrorClass::Error),
        (502, ErrorClass::BadDeviceResponseError),
        (503, ErrorClass::ServiceUnavailableError),
        (504, ErrorClass::GatewayTimeoutError),
        (599, ErrorClass::Error),
    ];
    for (status, class) in cases {
        let (c, m, code) = translate(status, &[], body);
        assert_eq!(c, class, "status {status}");
        assert_eq!(m, "the text", "status {status}");
        assert_eq!(code.as_deref(), Some("Something"));
    }
}

#[test]
fn not_found_rules() {
    let env1 = |code: &str| format!(r#"{{"Message":"ErrorCode:{code};gone"}}"#);
    assert_eq!(
        translate(404, &[], &env1("DeviceNotFound")).0,
        ErrorClass::DeviceNotFoundError
    );
    assert_eq!(
        translate(404, &[], &env1("IotHubNotFound")).0,
        ErrorClass::IotHubNotFoundError
    );
    // Ours: JobNotFound gets its own class (the reference says Error('Not found')).
    assert_eq!(
        translate(404, &[], &env1("JobNotFound")),
        (
            ErrorClass::JobNotFoundError,
            "gone".into(),
            Some("JobNotFound".into())
        )
    );
    // The class from the header alone (empty body): the reference's "Not found", not "Error: ".
    for (code, class) in [
        ("JobNotFound", ErrorClass::JobNotFoundError),
        ("DeviceNotFound", ErrorClass::DeviceNotFoundError),
        ("IotHubNotFound", ErrorClass::IotHubNotFoundError),
    ] {
        assert_eq!(
            translate(404, &[("iothub-errorcode", code)], ""),
            (class, "Not found".into(), Some(code.into()))
        );
    }
    // Anything else on 404: plain Error, message 'Not found', as the reference.
    assert_eq!(
        translate(404, &[], &env1("DeviceNotOnline")).0,
        ErrorClass::Error
    );
    assert_eq!(translate(404, &[], &env1("DeviceNotOnline")).1, "Not found");
    assert_eq!(translate(404, &[], "").1, "Not found");
    assert_eq!(translate(404, &[], "<html>").1, "Not found");
    // Numeric codes of the newer envelopes.
    assert_eq!(
        translate(404, &[], ENV2),
        (
            ErrorClass::DeviceNotFoundError,
            "Device x not found".into(),
            Some("DeviceNotFound".into())
        )
    );
    assert_eq!(
        translate(404, &[], r#"{"errorCode":404002,"message":"no job"}"#).0,
        ErrorClass::JobNotFoundError
    );
}

#[test]
fn header_code_wins_over_body() {
    let (class, message, code) = translate(
        404,
        &[("iothub-errorcode", "JobNotFound")],
        r#"{"Message":"ErrorCode:DeviceNotFound;body text"}"#,
    );
    assert_eq!(
        (class, message.as_str(), code.as_deref()),
        (
            ErrorClass::JobNotFoundError,
            "body text",
            Some("JobNotFound")
        )
    );
    // Header alone, body not an envelope: message falls back to 'Error: ' + body.
    let (class, message, _) = translate(404, &[("IoTHub-ErrorCode", "DeviceNotFound")], "plain");
    assert_eq!(
        (class, message.as_str()),
        (ErrorClass::DeviceNotFoundError, "Error: plain")
    );
    // A numeric header is mapped to a name.
    assert_eq!(
        translate(404, &[("iothub-errorcode", "404002")], "").0,
        ErrorClass::JobNotFoundError
    );
}

#[test]
fn fallback_message_is_error_colon_body() {
    assert_eq!(translate(500, &[], "boom").1, "Error: boom");
    assert_eq!(translate(400, &[], "").1, "Error: ");
    assert_eq!(
        translate(429, &[], r#"{"Message":"no code"}"#).1,
        r#"Error: {"Message":"no code"}"#
    );
    // Whole-body UTF-8 decoding.
    assert_eq!(translate(500, &[], "é😀").1, "Error: é😀");
}

#[test]
fn transient_classification() {
    for status in [408, 429, 500, 503, 504] {
        assert!(
            translate_response(resp(status, &[], "")).is_transient(),
            "{status}"
        );
    }
    for status in [300, 400, 401, 403, 404, 409, 412, 413, 501, 502] {
        assert!(
            !translate_response(resp(status, &[], "")).is_transient(),
            "{status}"
        );
    }
    assert!(Error::Transport {
        message: "reset".into()
    }
    .is_transient());
    assert!(Error::Timeout {
        message: "t".into()
    }
    .is_transient());
    assert!(!Error::TokenCreationFailed.is_transient());
    assert!(!Error::Unauthorized {
        message: "x".into()
    }
    .is_transient());
}

#[test]
fn class_names() {
    assert_eq!(ErrorClass::ALL.len(), 34);
    for class in ErrorClass::ALL {
        assert!(class.name().ends_with("Error"), "{class}");
    }
    assert_eq!(
        Error::Timeout {
            message: "x".into()
        }
        .class()
        .name(),
        "TimeoutError"
    );
    assert_eq!(
        Error::TokenCreationFailed.to_string(),
        "AccessToken creation failed"
    );
    assert_eq!(Error::TokenCreationFailed.class(), ErrorClass::Error);
    assert_eq!(
        Error::Unauthorized {
            message: "x".into()
        }
        .class(),
        ErrorClass::UnauthorizedError
    );
    assert_eq!(
        Error::ResponseTooLarge { limit: 1 }.class(),
        ErrorClass::Error
    );
    assert_eq!(
        Error::Transport {
            message: "x".into()
        }
        .class(),
        ErrorClass::Error
    );
}
