#![no_main]
//! SAS string parsing: no panic; errors are exactly the two reference messages.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match iothub_jobs_core::shared_access_signature::parse(text) {
        Ok(sas) => {
            let _ = sas.expiry_seconds();
            let _ = format!("{sas:?}");
        }
        Err(e) => {
            let m = e.to_string();
            assert!(
                m == "Malformed signature"
                    || m.starts_with("The shared access signature is missing the property: ")
            );
        }
    }
});
