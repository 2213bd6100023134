use serde_json::json;

use super::*;

const OUT: &str = "https://127.0.0.1:10000/devstoreaccount1/out?sv=1&sig=SECRET";

#[test]
fn requests_are_checked_without_repeating_their_sas() {
    let job = parse_request(
        &json!({"type": "export", "outputBlobContainerUri": OUT, "excludeKeysInExport": true}),
        "j1".into(),
        0,
    )
    .unwrap();
    assert!(job.exclude_keys && job.kind == Kind::Export);
    assert_eq!(job.output_blob_name, DEVICES_BLOB);
    let answer = job.to_json();
    assert_eq!(answer["status"], "enqueued");
    assert_eq!(answer["type"], "export");
    assert_eq!(answer["storageAuthenticationType"], "keyBased");

    let refused = |body: Value| parse_request(&body, "j".into(), 0).err().unwrap().message;
    assert!(
        refused(json!({"type": "import", "outputBlobContainerUri": OUT}))
            .contains("inputBlobContainerUri is required")
    );
    assert!(refused(json!({"type": "backup", "outputBlobContainerUri": OUT})).contains("backup"));
    assert!(refused(json!({"type": "export"})).contains("outputBlobContainerUri"));
    let bad = refused(json!({"type": "export", "outputBlobContainerUri": "ftp://x/y?sig=SECRET"}));
    assert!(!bad.contains("SECRET"), "{bad}");
    assert!(refused(
        json!({"type": "export", "outputBlobContainerUri": OUT, "includeConfigurations": true})
    )
    .contains("includeConfigurations"));
}

#[test]
fn one_job_is_active_at_a_time_and_cancel_ends_it() {
    let (jobs, store) = (ImportExportJobs::default(), Store::memory());
    let request = json!({"type": "export", "outputBlobContainerUri": OUT});
    let job = |id: &str| parse_request(&request, id.into(), 0).unwrap();
    jobs.create(&store, job("a")).unwrap();
    let second = jobs.create(&store, job("b")).unwrap_err();
    assert_eq!(second.code, ErrorCode::JobQuotaExceeded);
    assert_eq!(jobs.cancel(&store, "a", 5).unwrap()["status"], "cancelled");
    assert!(
        !jobs.update(&store, "a", |j| j.progress = 50),
        "a cancelled job is not updated"
    );
    jobs.create(&store, job("b")).unwrap();
    assert_eq!(jobs.list().len(), 2);
    assert_eq!(jobs.get("zz").unwrap_err().code, ErrorCode::JobNotFound);

    // A restored job that was running is enqueued again.
    let mut running = job("c");
    running.status = Status::Running;
    running.progress = 40;
    jobs.restore(vec![running]);
    assert_eq!(jobs.enqueued(), ["c"]);
    assert_eq!(jobs.get("c").unwrap()["progress"], 0);
}
