//! The `log` module: level selection from `AZURE_LOG_LEVEL` / `DEBUG` and redaction.

use iothub_jobs_core::log::{debug_enables, format_line, redact, LogLevel, Logger};

#[test]
fn levels_from_settings() {
    use LogLevel::*;
    let cases: &[(Option<&str>, Option<&str>, LogLevel)] = &[
        (None, None, Off),
        (Some("info"), None, Info),
        (Some(" INFO "), None, Info),
        (Some("verbose"), None, Verbose),
        (Some("warning"), None, Warning),
        (Some("error"), None, Error),
        (Some("loud"), None, Off),
        (None, Some("iothub-jobs*"), Verbose),
        (None, Some("iothub-jobs"), Verbose),
        (None, Some("*"), Verbose),
        (None, Some("express:*, iothub-*"), Verbose),
        (None, Some("*,-iothub-jobs*"), Off),
        (None, Some("iothub-jobs:extra"), Off),
        (None, Some("express:*"), Off),
        (Some("warning"), Some("iothub-jobs*"), Verbose),
        (Some("info"), Some("other"), Info),
    ];
    for (azure, debug, expected) in cases {
        assert_eq!(
            LogLevel::from_settings(*azure, *debug),
            *expected,
            "AZURE_LOG_LEVEL={azure:?} DEBUG={debug:?}"
        );
    }
}

#[test]
fn debug_globs() {
    assert!(debug_enables("iothub*jobs", "iothub-jobs"));
    assert!(debug_enables("a,iothub-jobs", "iothub-jobs"));
    assert!(!debug_enables("iothub-jobs-x*", "iothub-jobs"));
    assert!(!debug_enables("", "iothub-jobs"));
}

#[test]
fn logger_levels() {
    let info = Logger::new(LogLevel::Info);
    assert!(info.enabled(LogLevel::Error));
    assert!(info.enabled(LogLevel::Warning));
    assert!(info.enabled(LogLevel::Info));
    assert!(!info.enabled(LogLevel::Verbose));
    assert!(!info.enabled(LogLevel::Off));
    let off = Logger::default();
    assert!(!off.enabled(LogLevel::Error));
}

#[test]
fn redacts_sas_signatures_anywhere() {
    let sas = "SharedAccessSignature sr=hub.azure-devices.net&sig=abc%2Bdef%3D&se=1700000000&skn=iothubowner";
    let out = redact(sas);
    assert_eq!(
        out,
        "SharedAccessSignature sr=hub.azure-devices.net&sig=REDACTED&se=1700000000&skn=iothubowner"
    );
    assert_eq!(redact("x SIG=Zm9v/+= y"), "x SIG=REDACTED y");
    assert_eq!(
        redact("/jobs/v2/id-with-sig%3Dsecret?api-version=1"),
        "/jobs/v2/id-with-sig%3DREDACTED?api-version=1"
    );
    assert_eq!(redact("sig=&se=1"), "sig=&se=1");
}

#[test]
fn redacts_keys_tokens_and_oauth_secrets() {
    assert_eq!(
        redact("HostName=h;SharedAccessKeyName=owner;SharedAccessKey=a2V5a2V5=;x"),
        "HostName=h;SharedAccessKeyName=owner;SharedAccessKey=REDACTED;x"
    );
    assert_eq!(
        redact("Authorization: Bearer eyJ0.eyJ1.sig rest"),
        "Authorization: Bearer REDACTED rest"
    );
    assert_eq!(redact("bearer abc"), "bearer REDACTED");
    assert_eq!(
        redact("client_id=app&client_secret=p%40ss&scope=s"),
        "client_id=app&client_secret=REDACTED&scope=s"
    );
    assert_eq!(
        redact(r#"{"token_type":"Bearer","access_token" : "eyJ\"x","expires_in":1}"#),
        r#"{"token_type":"Bearer","access_token" : "REDACTED","expires_in":1}"#
    );
    assert_eq!(
        redact(r#"{"accessToken":"abc","token":"def"}"#),
        r#"{"accessToken":"REDACTED","token":"REDACTED"}"#
    );
    assert_eq!(redact("nothing secret here"), "nothing secret here");
    assert_eq!(redact("ünïcödé sig=ß€ end"), "ünïcödé sig=REDACTED end");
}

#[test]
fn lines_are_prefixed_single_and_redacted() {
    let line = format_line(LogLevel::Info, "GET /x?sig=abc\nsecond");
    assert_eq!(line, "iothub-jobs:info GET /x?sig=REDACTED\\nsecond\n");
}
