//! The emulator over real HTTPS: ready line, auth, api-version, jobs, queries and paging,
//! twins and devices, faults and tiers. Each test starts its own hub on port 0.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

mod common;

/// The in-process hub of `common`, with a TLS connector for raw HTTPS requests.
struct TestHub {
    hub: common::Hub,
    connector: TlsConnector,
}

impl std::ops::Deref for TestHub {
    type Target = common::Hub;
    fn deref(&self) -> &common::Hub {
        &self.hub
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn error_code(&self) -> Option<&str> {
        self.header("iothub-errorcode")
    }
}

async fn start(extra: &[&str]) -> TestHub {
    let hub = common::start_with(extra).await;
    let connector = TlsConnector::from(hub.tls.clone());
    TestHub { hub, connector }
}

impl TestHub {
    /// A token the way azure-iothub makes one: sr not encoded, sig url-encoded.
    fn token_with(&self, key: &[u8], skn: &str, se: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{}\n{se}", self.host_name).as_bytes());
        let sig = STANDARD
            .encode(mac.finalize().into_bytes())
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        format!(
            "SharedAccessSignature sr={}&sig={sig}&skn={skn}&se={se}",
            self.host_name
        )
    }

    fn token(&self) -> String {
        let se = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        self.token_with(&self.policy_key, "iothubowner", se)
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Resp> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = self.connector.connect(name, tcp).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host_name,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        tls.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(resp) = parse_response(&buf) {
                return Ok(resp);
            }
            let n = tls.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a full response",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let token = self.token();
        let mut headers = vec![("Authorization", token.as_str())];
        headers.extend_from_slice(extra);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json; charset=utf-8"));
        }
        self.raw(method, path, &headers, &body).await.unwrap()
    }

    async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = self
            .raw(method, &format!("/_emulator/{path}"), &[], &body)
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.json()
    }

    async fn stop(self) {
        self.hub.stop().await;
    }
}

fn parse_response(buf: &[u8]) -> Option<Resp> {
    let text = std::str::from_utf8(buf).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    (rest.len() >= len).then(|| Resp {
        status,
        headers,
        body: rest[..len].to_string(),
    })
}

fn method_job(id: &str, condition: &str) -> Value {
    json!({
        "jobId": id, "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "reboot", "payload": null, "responseTimeoutInSeconds": 30},
        "startTime": null, "queryCondition": condition,
    })
}

const V: &str = "api-version=2021-04-12";

async fn wait_completed(hub: &TestHub, id: &str) -> Value {
    for _ in 0..200 {
        let job = hub
            .call("GET", &format!("/jobs/v2/{id}?{V}"), None, &[])
            .await
            .json();
        if job["status"] == "completed" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} did not complete");
}

#[tokio::test]
async fn ready_line_follows_the_contract() {
    let hub = start(&["--devices", "2"]).await;
    let keys: Vec<&String> = hub.line.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "host",
            "port",
            "hostName",
            "connectionString",
            "eventHubConnectionString",
            "caPath",
            "mqttPort",
            "amqpPort",
            "eventsPort",
            "websocketPath",
            "deviceConnectionString"
        ]
    );
    // MQTT rides on the HTTPS port unless a port of its own is asked for.
    assert_eq!(hub.line["mqttPort"], hub.line["port"]);
    assert_eq!(hub.line["amqpPort"], hub.line["port"], "AMQP likewise");
    assert_eq!(hub.line["websocketPath"], "/$iothub/websocket");
    assert_eq!(
        hub.line["deviceConnectionString"],
        format!(
            "HostName=127.0.0.1:{};DeviceId={{deviceId}};SharedAccessKey={{deviceKey}}",
            hub.port
        )
    );
    assert_eq!(hub.line["host"], "127.0.0.1");
    assert_ne!(hub.port, 0);
    assert_eq!(hub.host_name, format!("127.0.0.1:{}", hub.port));
    let cs = hub.line["connectionString"].as_str().unwrap();
    assert!(cs.starts_with(&format!(
        "HostName=127.0.0.1:{};SharedAccessKeyName=iothubowner;SharedAccessKey=",
        hub.port
    )));
    assert_eq!(hub.policy_key.len(), 32);
    // The events endpoint's: the same policy and key, the events endpoint's plain AMQP port
    // (a port of its own), which Event Hubs clients keep with UseDevelopmentEmulator=true.
    let key = cs.split("SharedAccessKey=").nth(1).unwrap();
    let events_port = hub.line["eventsPort"].as_u64().unwrap();
    assert!(events_port > 0 && events_port != u64::from(hub.port));
    assert_eq!(
        hub.line["eventHubConnectionString"],
        format!(
            "Endpoint=sb://127.0.0.1:{events_port}/;SharedAccessKeyName=iothubowner;SharedAccessKey={key};EntityPath=iothub-emulator;UseDevelopmentEmulator=true"
        )
    );
    let ca_path = std::path::PathBuf::from(hub.line["caPath"].as_str().unwrap());
    assert!(ca_path.is_absolute() && ca_path.exists());
    hub.stop().await;
    assert!(!ca_path.exists(), "the CA directory is removed on shutdown");
}

#[tokio::test]
async fn api_version_and_authorization_are_required() {
    let hub = start(&["--bearer-token", "let-me-in"]).await;
    let r = hub.call("GET", "/jobs/v2/nope", None, &[]).await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, Some("InvalidProtocolVersion"))
    );
    assert!(r.json()["Message"]
        .as_str()
        .unwrap()
        .starts_with("ErrorCode:InvalidProtocolVersion;"));
    assert!(r.json()["ExceptionMessage"]
        .as_str()
        .unwrap()
        .starts_with("Tracking ID:"));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    let r = hub
        .raw("GET", &format!("/jobs/v2/nope?{V}"), &[], "")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (401, Some("IotHubUnauthorizedAccess"))
    );
    let wrong = hub.token_with(&[7u8; 32], "iothubowner", 4_000_000_000);
    let r = hub
        .raw(
            "GET",
            &format!("/jobs/v2/nope?{V}"),
            &[("Authorization", &wrong)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(!r.body.contains("sig="), "the token is never echoed");
    let expired = hub.token_with(&hub.policy_key, "iothubowner", 1_000_000);
    let r = hub
        .raw(
            "GET",
            &format!("/jobs/v2/nope?{V}"),
            &[("Authorization", &expired)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let unknown = hub.token_with(&hub.policy_key, "registryRead", 4_000_000_000);
    let r = hub
        .raw(
            "GET",
            &format!("/jobs/v2/nope?{V}"),
            &[("Authorization", &unknown)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);

    // Any api-version value is accepted; a valid token gets through to the resource.
    let r = hub
        .call("GET", "/jobs/v2/nope?api-version=1999-01-01", None, &[])
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("JobNotFound")));
    let r = hub
        .raw(
            "GET",
            &format!("/jobs/v2/nope?{V}"),
            &[("Authorization", "Bearer let-me-in")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = hub
        .raw(
            "GET",
            &format!("/jobs/v2/nope?{V}"),
            &[("Authorization", "Bearer other")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    hub.stop().await;
}

#[tokio::test]
async fn jobs_lifecycle_errors_and_paging() {
    let hub = start(&["--devices", "20"]).await;
    // Percent-encoded ids are decoded.
    let r = hub
        .call(
            "PUT",
            &format!("/jobs/v2/job%2D1?{V}"),
            Some(method_job("job-1", "tags.group = 'even'")),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["jobId"], "job-1");
    assert_eq!(r.json()["status"], "queued");
    let done = wait_completed(&hub, "job-1").await;
    assert_eq!(done["deviceJobStatistics"]["succeededCount"], 10);

    let r = hub
        .call(
            "PUT",
            &format!("/jobs/v2/job-1?{V}"),
            Some(method_job("job-1", "*")),
            &[],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (409, Some("JobAlreadyExists")));
    let r = hub
        .call(
            "PUT",
            &format!("/jobs/v2/a_b?{V}"),
            Some(method_job("a_b", "*")),
            &[],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, Some("ArgumentInvalid")));
    let r = hub
        .call("POST", &format!("/jobs/v2/missing/cancel?{V}"), None, &[])
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("JobNotFound")));

    for i in 2..=5 {
        let r = hub
            .call(
                "PUT",
                &format!("/jobs/v2/job-{i}?{V}"),
                Some(method_job(&format!("job-{i}"), "*")),
                &[],
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut headers = vec![("x-ms-max-item-count", "2")];
        if let Some(t) = &token {
            headers.push(("x-ms-continuation", t.as_str()));
        }
        let r = hub
            .call(
                "GET",
                &format!("/jobs/v2/query?{V}&jobType=scheduleDeviceMethod"),
                None,
                &headers,
            )
            .await;
        assert_eq!(r.header("x-ms-item-type"), Some("jobResponse"));
        ids.extend(
            r.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["jobId"].as_str().unwrap().to_string()),
        );
        pages += 1;
        token = r.header("x-ms-continuation").map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, ["job-1", "job-2", "job-3", "job-4", "job-5"]);
    // A token is bound to its query: the same position with other parameters is refused.
    let r = hub
        .call(
            "GET",
            &format!("/jobs/v2/query?{V}&jobType=scheduleDeviceMethod"),
            None,
            &[("x-ms-max-item-count", "2")],
        )
        .await;
    let token = r.header("x-ms-continuation").unwrap().to_string();
    let r = hub
        .call(
            "GET",
            &format!("/jobs/v2/query?{V}"),
            None,
            &[("x-ms-continuation", token.as_str())],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, Some("ArgumentInvalid")));
    assert!(r.body.contains("different query"), "{}", r.body);
    let r = hub
        .call(
            "GET",
            &format!("/jobs/v2/query?{V}&jobType=scheduleUpdateTwin"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.json(), json!([]));

    // devices.jobs rows for one job, and twins by condition.
    let q = json!({"query": "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job-1'"});
    let r = hub
        .call("POST", &format!("/devices/query?{V}"), Some(q), &[])
        .await;
    assert_eq!(r.header("x-ms-item-type"), Some("deviceJob"));
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 10);
    assert_eq!(
        rows[0]["outcome"]["deviceMethodResponse"]["payload"],
        json!({"ok": true})
    );
    let q = json!({"query": "SELECT * FROM devices WHERE tags.index < 3"});
    let r = hub
        .call(
            "POST",
            &format!("/devices/query?{V}"),
            Some(q),
            &[("x-ms-max-item-count", "2")],
        )
        .await;
    assert_eq!(r.header("x-ms-item-type"), Some("twin"));
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert!(r.header("x-ms-continuation").is_some());
    let r = hub
        .call(
            "POST",
            &format!("/devices/query?{V}"),
            Some(json!({"query": "SELECT FROM"})),
            &[],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, Some("ArgumentInvalid")));

    // A job whose condition does not parse fails with the parse error.
    let r = hub
        .call(
            "PUT",
            &format!("/jobs/v2/bad?{V}"),
            Some(method_job("bad", "tags.x = ")),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bad = hub
        .call("GET", &format!("/jobs/v2/bad?{V}"), None, &[])
        .await
        .json();
    assert_eq!(bad["status"], "failed");
    assert!(bad["failureReason"].as_str().unwrap().contains("position"));

    let counters = hub.control("GET", "jobs", None).await;
    assert_eq!(
        counters["counters"]["job-1"],
        json!({"creates": 1, "attempts": 2})
    );
    hub.stop().await;
}

#[tokio::test]
async fn unknown_job_can_answer_200() {
    let hub = start(&["--unknown-job", "200"]).await;
    let r = hub
        .call("GET", &format!("/jobs/v2/ghost?{V}"), None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "unknown");
    let r = hub
        .call("POST", &format!("/jobs/v2/ghost/cancel?{V}"), None, &[])
        .await;
    assert_eq!(r.status, 404, "cancel of an unknown job is always 404");
    hub.stop().await;
}

#[tokio::test]
async fn twins_and_devices_rest() {
    let hub = start(&["--devices", "1"]).await;
    let r = hub
        .call(
            "PUT",
            &format!("/devices/new-dev?{V}"),
            Some(json!({"deviceId": "new-dev"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["authentication"]["type"], "sas");
    let twin = hub
        .call("GET", &format!("/twins/new-dev?{V}"), None, &[])
        .await
        .json();
    assert_eq!(twin["deviceId"], "new-dev");
    let etag = twin["etag"].as_str().unwrap().to_string();
    let patch = json!({"tags": {"site": "x"}, "properties": {"desired": {"a": 1}}});
    let r = hub
        .call(
            "PATCH",
            &format!("/twins/new-dev?{V}"),
            Some(patch.clone()),
            &[("If-Match", "\"nope\"")],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (412, Some("PreconditionFailed"))
    );
    let r = hub
        .call(
            "PATCH",
            &format!("/twins/new-dev?{V}"),
            Some(patch),
            &[("If-Match", &format!("\"{etag}\""))],
        )
        .await;
    assert_eq!(r.json()["tags"]["site"], "x");
    assert_ne!(r.json()["etag"], etag.as_str());
    let r = hub
        .call(
            "PUT",
            &format!("/twins/new-dev?{V}"),
            Some(json!({"tags": {"only": true}})),
            &[],
        )
        .await;
    assert_eq!(r.json()["tags"], json!({"only": true}));
    assert_eq!(
        r.json()["properties"]["desired"]["a"],
        Value::Null,
        "PUT replaces desired too"
    );
    let r = hub
        .call(
            "DELETE",
            &format!("/devices/new-dev?{V}"),
            None,
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = hub
        .call("GET", &format!("/devices/new-dev?{V}"), None, &[])
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("DeviceNotFound")));
    let r = hub
        .call("GET", &format!("/nothing/here?{V}"), None, &[])
        .await;
    assert_eq!(r.status, 404);
    hub.stop().await;
}

#[tokio::test]
async fn faults_reset_drop_and_status() {
    let hub = start(&["--devices", "1", "--faults", "reset:1"]).await;
    assert!(
        hub.raw("GET", &format!("/jobs/v2/x?{V}"), &[], "")
            .await
            .is_err(),
        "reset answers nothing"
    );
    assert_eq!(
        hub.control("GET", "health", None).await["status"],
        "ok",
        "the control API is never faulted"
    );

    hub.control("PUT", "faults", Some(json!({"spec": "drop:1"})))
        .await;
    let token = hub.token();
    let body = method_job("dropped", "*").to_string();
    let sent = hub
        .raw(
            "PUT",
            &format!("/jobs/v2/dropped?{V}"),
            &[
                ("Authorization", &token),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await;
    assert!(sent.is_err(), "drop loses the answer");
    let jobs = hub.control("GET", "jobs", None).await;
    assert_eq!(
        jobs["jobs"][0]["jobId"], "dropped",
        "but the job was created"
    );
    assert_eq!(jobs["jobs"][0]["creates"], 1);

    for (spec, status, code) in [
        ("429:1", 429, "ThrottlingException"),
        ("503:1", 503, "ServiceUnavailable"),
        ("500:1", 500, "ServerError"),
    ] {
        hub.control("PUT", "faults", Some(json!({"spec": spec})))
            .await;
        let r = hub
            .call("GET", &format!("/jobs/v2/dropped?{V}"), None, &[])
            .await;
        assert_eq!((r.status, r.error_code()), (status, Some(code)));
    }
    let recorded = hub.control("GET", "requests?clear=true", None).await;
    let faults: Vec<&str> = recorded["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fault"].as_str().unwrap())
        .collect();
    assert_eq!(faults, ["reset", "drop", "429", "503", "500"]);
    assert!(hub.control("GET", "requests", None).await["requests"]
        .as_array()
        .unwrap()
        .is_empty());

    // Latency applies to every request, on top of the answer.
    hub.control("PUT", "faults", Some(json!({"spec": "latency:60-60ms"})))
        .await;
    let started = std::time::Instant::now();
    let r = hub
        .call("GET", &format!("/jobs/v2/dropped?{V}"), None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(60));
    let recorded = hub.control("GET", "requests", None).await;
    let last = recorded["requests"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["path"], "/jobs/v2/dropped");
    assert_eq!(last["query"], V);
    assert!(last["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("SharedAccessSignature sr="));
    assert_eq!(last["fault"], Value::Null);
    hub.control("DELETE", "faults", None).await;

    // Control API errors are plain JSON.
    let r = hub.raw("GET", "/_emulator/nope", &[], "").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    let r = hub
        .raw("PUT", "/_emulator/time", &[], r#"{"scale": -1}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 400);

    let r = hub
        .raw("PUT", "/_emulator/faults", &[], r#"{"spec": "bogus:1"}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    hub.stop().await;
}

#[tokio::test]
async fn tier_s1_allows_one_active_job() {
    let hub = start(&["--devices", "1", "--tier", "S1"]).await;
    let mut later = method_job("first", "*");
    later["startTime"] = json!("2099-01-01T00:00:00Z");
    assert_eq!(
        hub.call("PUT", &format!("/jobs/v2/first?{V}"), Some(later), &[])
            .await
            .status,
        200
    );
    let r = hub
        .call(
            "PUT",
            &format!("/jobs/v2/second?{V}"),
            Some(method_job("second", "*")),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (429, Some("ThrottlingMaxActiveJobCountExceeded"))
    );
    hub.call("POST", &format!("/jobs/v2/first/cancel?{V}"), None, &[])
        .await;
    let r = hub
        .call(
            "PUT",
            &format!("/jobs/v2/second?{V}"),
            Some(method_job("second", "*")),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    hub.stop().await;
}

#[tokio::test]
async fn modules_rest() {
    let hub = start(&["--devices", "0"]).await;
    let module_path = |d: &str, m: &str| format!("/devices/{d}/modules/{m}?{V}");
    let r = hub
        .call("PUT", &module_path("edge", "filter"), Some(json!({})), &[])
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("DeviceNotFound")));
    hub.call("PUT", &format!("/devices/edge?{V}"), Some(json!({})), &[])
        .await;
    let body = json!({"deviceId": "edge", "moduleId": "filter"});
    let created = hub
        .call(
            "PUT",
            &module_path("edge", "filter"),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let created = created.json();
    assert_eq!(created["moduleId"], "filter");
    assert_eq!(created["connectionState"], "Disconnected");
    let keys = &created["authentication"]["symmetricKey"];
    assert_eq!(
        STANDARD
            .decode(keys["primaryKey"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_ne!(keys["primaryKey"], keys["secondaryKey"]);
    let etag = created["etag"].as_str().unwrap().to_string();

    // Create once; update only with If-Match (`*` or the etag); ids in the body must match.
    let r = hub
        .call(
            "PUT",
            &module_path("edge", "filter"),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (409, Some("ModuleAlreadyExistsOnDevice"))
    );
    let r = hub
        .call(
            "PUT",
            &module_path("edge", "filter"),
            Some(body.clone()),
            &[("If-Match", "\"stale\"")],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (412, Some("PreconditionFailed"))
    );
    let r = hub
        .call(
            "PUT",
            &module_path("edge", "other"),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, Some("ArgumentInvalid")));
    assert!(
        r.body
            .contains("moduleId 'filter' in the body does not match 'other'"),
        "{}",
        r.body
    );
    let x509 = json!({"authentication": {"type": "selfSigned"}});
    let r = hub
        .call("PUT", &module_path("edge", "cert"), Some(x509), &[])
        .await;
    assert_eq!((r.status, r.error_code()), (400, Some("ArgumentInvalid")));
    let r = hub
        .call(
            "PUT",
            &module_path("edge", "bad%20id"),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, Some("ArgumentInvalid")));
    let managed = json!({"moduleId": "filter", "managedBy": "IotEdge", "authentication": {"symmetricKey": {"primaryKey": "", "secondaryKey": ""}}});
    let updated = hub
        .call(
            "PUT",
            &module_path("edge", "filter"),
            Some(managed),
            &[("If-Match", &format!("\"{etag}\""))],
        )
        .await
        .json();
    assert_eq!(updated["managedBy"], "IotEdge");
    assert_eq!(
        updated["authentication"]["symmetricKey"], *keys,
        "empty keys keep the old ones"
    );
    assert_ne!(updated["etag"], etag.as_str());
    hub.call(
        "PUT",
        &module_path("edge", "agg"),
        Some(json!({})),
        &[("If-Match", "*")],
    )
    .await;
    let list = hub
        .call("GET", &format!("/devices/edge/modules?{V}"), None, &[])
        .await
        .json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["moduleId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["agg", "filter"]);
    let r = hub
        .call("POST", &format!("/devices/edge/modules?{V}"), None, &[])
        .await;
    assert_eq!(r.status, 405);

    // Module twins: the device twin rules.
    let twin_path = format!("/twins/edge/modules/filter?{V}");
    let twin = hub.call("GET", &twin_path, None, &[]).await.json();
    assert_eq!(
        (twin["deviceId"].as_str(), twin["moduleId"].as_str()),
        (Some("edge"), Some("filter"))
    );
    let patch = json!({"tags": {"site": "a"}, "properties": {"desired": {"rate": 2}}});
    let r = hub
        .call(
            "PATCH",
            &twin_path,
            Some(patch.clone()),
            &[("If-Match", "\"nope\"")],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (412, Some("PreconditionFailed"))
    );
    let twin_etag = twin["etag"].as_str().unwrap().to_string();
    let patched = hub
        .call(
            "PATCH",
            &twin_path,
            Some(patch),
            &[("If-Match", &format!("\"{twin_etag}\""))],
        )
        .await
        .json();
    assert_eq!(patched["properties"]["desired"]["rate"], 2);
    assert_eq!(patched["properties"]["desired"]["$version"], 2);
    let replaced = hub
        .call("PUT", &twin_path, Some(json!({"tags": {"only": 1}})), &[])
        .await
        .json();
    assert_eq!(replaced["tags"], json!({"only": 1}));
    assert_eq!(replaced["properties"]["desired"]["rate"], Value::Null);
    let r = hub
        .call("GET", &format!("/twins/edge/modules/nope?{V}"), None, &[])
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("ModuleNotFound")));

    // Module methods: a module without a session is not online; an unknown module is not found.
    let call = json!({"methodName": "ping", "payload": {}, "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 0});
    let r = hub
        .call(
            "POST",
            &format!("/twins/edge/modules/filter/methods?{V}"),
            Some(call.clone()),
            &[],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("DeviceNotOnline")));
    let r = hub
        .call(
            "POST",
            &format!("/twins/edge/modules/nope/methods?{V}"),
            Some(call),
            &[],
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("ModuleNotFound")));

    // devices.modules queries page with continuation tokens like devices queries.
    hub.call("PUT", &format!("/devices/edge2?{V}"), Some(json!({})), &[])
        .await;
    hub.call("PUT", &module_path("edge2", "filter"), Some(json!({})), &[])
        .await;
    let query = json!({"query": "SELECT * FROM devices.modules WHERE moduleId = 'filter' OR tags.only = 1"});
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut headers = vec![("x-ms-max-item-count", "1")];
        if let Some(t) = &token {
            headers.push(("x-ms-continuation", t));
        }
        let r = hub
            .call(
                "POST",
                &format!("/devices/query?{V}"),
                Some(query.clone()),
                &headers,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        for t in r.json().as_array().unwrap() {
            seen.push(format!(
                "{}/{}",
                t["deviceId"].as_str().unwrap(),
                t["moduleId"].as_str().unwrap()
            ));
        }
        match r.header("x-ms-continuation") {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["edge/filter", "edge2/filter"]);

    // Deleting: If-Match on the module; the device takes its modules with it.
    let r = hub
        .call(
            "DELETE",
            &module_path("edge", "agg"),
            None,
            &[("If-Match", "\"stale\"")],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (412, Some("PreconditionFailed"))
    );
    let r = hub
        .call(
            "DELETE",
            &module_path("edge", "agg"),
            None,
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = hub
        .call("GET", &module_path("edge", "agg"), None, &[])
        .await;
    assert_eq!((r.status, r.error_code()), (404, Some("ModuleNotFound")));
    hub.call(
        "DELETE",
        &format!("/devices/edge?{V}"),
        None,
        &[("If-Match", "*")],
    )
    .await;
    hub.call("PUT", &format!("/devices/edge?{V}"), Some(json!({})), &[])
        .await;
    let r = hub
        .call("GET", &format!("/devices/edge/modules?{V}"), None, &[])
        .await;
    assert_eq!(r.json(), json!([]));
    hub.stop().await;
}
