//! `NODE_EXTRA_CA_CERTS` is read when a client is built (its own process: it sets env vars).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use iothub_jobs_core::{ClientOptions, JobClient};

use support::ok_json;

#[tokio::test]
async fn node_extra_ca_certs_is_trusted() {
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let path = std::env::temp_dir().join(format!("iothub-jobs-core-ca-{}.pem", server.port));
    std::fs::write(&path, &server.ca_pem).unwrap();
    // Env is process-wide: this test has a test binary (a process) of its own.
    std::env::set_var("NODE_EXTRA_CA_CERTS", &path);
    let options = ClientOptions {
        ca_pem: None,
        ..server.options(None)
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options);
    std::env::remove_var("NODE_EXTRA_CA_CERTS");
    let _ = std::fs::remove_file(&path);
    client.unwrap().get_job("j").await.unwrap();
}
