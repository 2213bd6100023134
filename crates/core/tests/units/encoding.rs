use iothub_jobs_core::encoding::{encode_uri_component, encode_uri_component_strict, json_string};

#[test]
fn encode_uri_component_matches_js() {
    // Expected values produced by Node 20's encodeURIComponent.
    assert_eq!(
        encode_uri_component("a b/c?d#e&f=g+h~!*()'é😀"),
        "a%20b%2Fc%3Fd%23e%26f%3Dg%2Bh~!*()'%C3%A9%F0%9F%98%80"
    );
    assert_eq!(encode_uri_component("../devices/x"), "..%2Fdevices%2Fx");
    assert_eq!(encode_uri_component("AZaz09-_.!~*'()"), "AZaz09-_.!~*'()");
    assert_eq!(encode_uri_component("%\u{0}\r\n"), "%25%00%0D%0A");
}

#[test]
fn strict_encoding_for_sas() {
    assert_eq!(
        encode_uri_component_strict("a!b'c(d)e*f g"),
        "a%21b%27c%28d%29e%2af%20g"
    );
    assert_eq!(encode_uri_component_strict("x+/="), "x%2B%2F%3D");
}

#[test]
fn json_string_matches_json_stringify() {
    // JSON.stringify("a\"b\\c\b\f\n\r\t\u0000\u0001\u001f\u007f\u0080é\u2028\u2029😀/<>&'")
    let input = "a\"b\\c\u{8}\u{c}\n\r\t\u{0}\u{1}\u{1f}\u{7f}\u{80}é\u{2028}\u{2029}😀/<>&'";
    let expected =
        "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\u{7f}\u{80}é\u{2028}\u{2029}😀/<>&'\"";
    assert_eq!(json_string(input), expected);
    assert_eq!(json_string(""), "\"\"");
    // Every control character: \u00xx in lower case unless it has a short form.
    for c in 0u32..0x20 {
        let s = char::from_u32(c).unwrap().to_string();
        let out = json_string(&s);
        let short = matches!(c, 8 | 9 | 10 | 12 | 13);
        assert_eq!(out.len(), if short { 4 } else { 8 }, "{c:#x} -> {out}");
        if !short {
            assert_eq!(out, format!("\"\\u{c:04x}\""));
        }
    }
}
