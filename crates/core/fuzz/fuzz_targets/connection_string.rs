#![no_main]
//! Connection-string parsing and SAS minting from whatever it yields: no panic, and a parsed
//! key never shows in Debug output.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match iothub_jobs_core::connection_string::parse(text) {
        Ok(cs) => {
            let token = iothub_jobs_core::sas::create_token(
                &cs.host_name,
                &cs.shared_access_key_name,
                &cs.shared_access_key,
                1_700_000_000,
            );
            assert!(token.starts_with("SharedAccessSignature sr="));
            let debug = format!("{cs:?}");
            assert!(cs.shared_access_key.len() < 12 || !debug.contains(&cs.shared_access_key));
        }
        Err(e) => assert!(e.to_string().starts_with("The connection string is missing the property: ")),
    }
    let _ = iothub_jobs_core::sas::decode_base64_lenient(text);
});
