use iothub_jobs_core::{connection_string, shared_access_signature, ErrorClass};

fn cs_err(s: &str) -> (ErrorClass, String) {
    let e = connection_string::parse(s).unwrap_err();
    (e.class(), e.to_string())
}

#[test]
fn connection_string_happy_path_and_rules() {
    let cs = connection_string::parse(
        "HostName=h.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5",
    )
    .unwrap();
    assert_eq!(cs.host_name, "h.azure-devices.net");
    assert_eq!(cs.shared_access_key_name, "iothubowner");
    assert_eq!(cs.shared_access_key, "a2V5");

    // Split on the first '=' only: base64 padding survives.
    let cs = connection_string::parse("HostName=h;SharedAccessKeyName=n;SharedAccessKey=a2V5eQ==")
        .unwrap();
    assert_eq!(cs.shared_access_key, "a2V5eQ==");

    // Last duplicate wins; extra keys ignored; any order; empty segments ignored.
    let cs = connection_string::parse(
        ";;SharedAccessKey=k1;HostName=a;Foo=bar;HostName=b;;SharedAccessKeyName=n;SharedAccessKey=k2;",
    )
    .unwrap();
    assert_eq!(
        (cs.host_name.as_str(), cs.shared_access_key.as_str()),
        ("b", "k2")
    );

    // Not trimmed.
    let cs =
        connection_string::parse("HostName= h ;SharedAccessKeyName=n;SharedAccessKey=k").unwrap();
    assert_eq!(cs.host_name, " h ");

    // A later empty value does not erase an earlier one (empty values are skipped).
    let cs =
        connection_string::parse("HostName=h;HostName=;SharedAccessKeyName=n;SharedAccessKey=k")
            .unwrap();
    assert_eq!(cs.host_name, "h");
}

#[test]
fn connection_string_missing_properties() {
    let missing = |key: &str| {
        (
            ErrorClass::ArgumentError,
            format!("The connection string is missing the property: {key}"),
        )
    };
    assert_eq!(
        cs_err("SharedAccessKeyName=n;SharedAccessKey=k"),
        missing("HostName")
    );
    assert_eq!(
        cs_err("HostName=h;SharedAccessKey=k"),
        missing("SharedAccessKeyName")
    );
    assert_eq!(
        cs_err("HostName=h;SharedAccessKeyName=n"),
        missing("SharedAccessKey")
    );
    // Checked in order: HostName first.
    assert_eq!(cs_err("garbage"), missing("HostName"));
    assert_eq!(cs_err(""), missing("HostName"));
    // Empty value, no '=', empty name: all "missing".
    assert_eq!(
        cs_err("HostName=;SharedAccessKeyName=n;SharedAccessKey=k"),
        missing("HostName")
    );
    assert_eq!(
        cs_err("HostName;SharedAccessKeyName=n;SharedAccessKey=k"),
        missing("HostName")
    );
    assert_eq!(
        cs_err("=h;SharedAccessKeyName=n;SharedAccessKey=k"),
        missing("HostName")
    );
    // Case-sensitive keys.
    assert_eq!(
        cs_err("hostname=h;SharedAccessKeyName=n;SharedAccessKey=k"),
        missing("HostName")
    );
    // Not trimmed keys.
    assert_eq!(
        cs_err(" HostName=h;SharedAccessKeyName=n;SharedAccessKey=k"),
        missing("HostName")
    );
}

#[test]
fn connection_string_errors_do_not_leak_the_key() {
    let e = connection_string::parse("HostName=h;SharedAccessKey=c2VjcmV0").unwrap_err();
    assert!(!e.to_string().contains("c2VjcmV0"));
    assert!(!format!("{e:?}").contains("c2VjcmV0"));
    let cs = connection_string::parse("HostName=h;SharedAccessKeyName=n;SharedAccessKey=c2VjcmV0")
        .unwrap();
    assert!(!format!("{cs:?}").contains("c2VjcmV0"));
}

const GOOD: &str =
    "SharedAccessSignature sr=h.azure-devices.net&sig=abc%3D&skn=iothubowner&se=1700000000";

#[test]
fn sas_happy_path() {
    let sas = shared_access_signature::parse(GOOD).unwrap();
    assert_eq!(sas.sr, "h.azure-devices.net");
    assert_eq!(sas.sig, "abc%3D");
    assert_eq!(sas.skn, "iothubowner");
    assert_eq!(sas.se, "1700000000");
    assert_eq!(sas.raw, GOOD);
    assert_eq!(sas.expiry_seconds(), Some(1_700_000_000.0));
    // Any field order; sr verbatim (not decoded).
    let sas =
        shared_access_signature::parse("SharedAccessSignature se=1&skn=p&sig=s&sr=a%2Fb").unwrap();
    assert_eq!(sas.sr, "a%2Fb");
    // The first part only has to contain the word.
    assert!(
        shared_access_signature::parse("xSharedAccessSignaturex sr=a&sig=s&skn=p&se=1").is_ok()
    );
    // Debug hides the signature.
    assert!(!format!("{sas:?}").contains("sig=s"));
    let sas = shared_access_signature::parse(GOOD).unwrap();
    assert!(!format!("{sas:?}").contains("abc%3D"));
}

#[test]
fn sas_format_errors() {
    let malformed = |s: &str| {
        let e = shared_access_signature::parse(s).unwrap_err();
        assert_eq!(
            (e.class(), e.to_string().as_str()),
            (ErrorClass::FormatError, "Malformed signature"),
            "{s:?}"
        );
    };
    malformed("sr=a&sig=s&skn=p&se=1");
    malformed("Bearer sr=a&sig=s&skn=p&se=1");
    malformed("SharedAccessSignature  sr=a&sig=s&skn=p&se=1"); // two spaces → three parts
    malformed("SharedAccessSignature sr=a&sig=s skn=p&se=1");
    malformed(" SharedAccessSignature sr=a");
    malformed("SharedAccessSignature");
    malformed("");
    malformed("sharedaccesssignature sr=a&sig=s&skn=p&se=1");
    // JS \s includes NBSP and U+FEFF: they split too.
    malformed("SharedAccessSignature\u{a0}sr=a&sig=s&skn=p&se=1\u{feff}x");
    // Tabs and newlines are separators like spaces.
    assert!(shared_access_signature::parse("SharedAccessSignature\tsr=a&sig=s&skn=p&se=1").is_ok());
}

#[test]
fn sas_missing_properties_in_order() {
    let missing = |s: &str, key: &str| {
        let e = shared_access_signature::parse(s).unwrap_err();
        assert_eq!(e.class(), ErrorClass::ArgumentError);
        assert_eq!(
            e.to_string(),
            format!("The shared access signature is missing the property: {key}")
        );
    };
    missing("SharedAccessSignature sig=s&skn=p&se=1", "sr");
    missing("SharedAccessSignature sr=a&skn=p&se=1", "sig");
    missing("SharedAccessSignature sr=a&sig=s&se=1", "skn");
    missing("SharedAccessSignature sr=a&sig=s&skn=p", "se");
    missing("SharedAccessSignature x", "sr");
    missing("SharedAccessSignature sr=&sig=s&skn=p&se=1", "sr");
}
