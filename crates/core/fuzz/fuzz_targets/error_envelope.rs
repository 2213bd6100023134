#![no_main]
//! Error-envelope parsing and status translation: no panic for any body, status or header.

use bytes::Bytes;
use iothub_jobs_core::error::{parse_error_body, translate_response};
use iothub_jobs_core::Response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_error_body(data);
    if data.len() < 3 {
        return;
    }
    let status = 300 + u16::from_le_bytes([data[0], data[1]]) % 300;
    let split = (data[2] as usize).min(data.len() - 3);
    let (code, body) = data[3..].split_at(split);
    let response = Response {
        status,
        status_text: String::new(),
        headers: vec![("iothub-errorcode".into(), String::from_utf8_lossy(code).into_owned())],
        body: Bytes::copy_from_slice(body),
    };
    let e = translate_response(response);
    let _ = (e.to_string(), e.class().name(), e.is_transient(), e.code());
});
