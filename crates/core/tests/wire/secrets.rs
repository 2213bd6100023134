//! No secret (key, signature, bearer token, whole SAS) in any Display or Debug output.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use iothub_jobs_core::credential::TokenFuture;
use iothub_jobs_core::{AccessToken, ClientOptions, JobClient, TokenCredential};

use crate::support::{self, fast_retry, json, Action};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn assert_clean(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} leaked in: {text}");
    }
}

#[tokio::test]
async fn nothing_secret_in_errors_or_debug() {
    // Every response is an error, in various shapes, plus dropped connections.
    let server = support::start(Arc::new(|_, i| match i % 4 {
        0 => Action::Respond(json(
            401,
            "Unauthorized",
            r#"{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}"#,
        )),
        1 => Action::Respond(json(503, "Service Unavailable", "")),
        2 => Action::Close,
        _ => Action::Respond(json(404, "Not Found", "")),
    }))
    .await;
    let mut outputs = Vec::new();

    let client = JobClient::from_connection_string(
        &server.connection_string(),
        server.options(Some(fast_retry(1))),
    )
    .unwrap();
    outputs.push(format!("{client:?}"));
    for _ in 0..4 {
        let e = client.get_job("j").await.unwrap_err();
        outputs.push(format!("{e} {e:?}"));
    }
    // The signatures actually sent.
    let sigs: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            let auth = r.header("authorization").unwrap();
            auth.split("sig=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();

    let sas = format!(
        "SharedAccessSignature sr={}&sig=U0lHTkFUVVJF&skn=p&se=99999999999",
        server.host()
    );
    let client = JobClient::from_shared_access_signature(&sas, server.options(None)).unwrap();
    outputs.push(format!("{client:?}"));
    let e = client.get_job("j").await.unwrap_err();
    outputs.push(format!("{e} {e:?}"));

    struct Cred;
    impl TokenCredential for Cred {
        fn get_token<'a>(&'a self, _: &'a [&'a str]) -> TokenFuture<'a> {
            Box::pin(async {
                Ok(Some(AccessToken {
                    token: "BEARER-SECRET".into(),
                    expires_on: Some(SystemTime::now() + Duration::from_secs(3600)),
                }))
            })
        }
    }
    let client =
        JobClient::from_token_credential(&server.host(), Arc::new(Cred), server.options(None))
            .unwrap();
    outputs.push(format!("{client:?}"));
    for _ in 0..2 {
        if let Err(e) = client.get_job("j").await {
            outputs.push(format!("{e} {e:?}"));
        }
    }
    let options = ClientOptions {
        proxy: Some("http://user:PROXYPASS@127.0.0.1:1".into()),
        ..ClientOptions::default()
    };
    outputs.push(format!("{options:?}"));

    let mut secrets: Vec<&str> = vec![KEY, "U0lHTkFUVVJF", "BEARER-SECRET", &sas, "PROXYPASS"];
    secrets.extend(sigs.iter().map(String::as_str));
    for text in &outputs {
        assert_clean(text, &secrets);
    }
    assert!(outputs.len() >= 9);
}
