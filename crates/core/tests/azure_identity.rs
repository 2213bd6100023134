//! The `azure-identity` feature: the adapter from `azure_core` credentials to ours, and the
//! identity HTTP client on our TLS stack (a loopback HTTPS server is both the authority and the
//! hub; trust comes from the `ca` option only).

#![cfg(feature = "azure-identity")]

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use azure_core::credentials::{TokenCredential as AzureCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::OffsetDateTime;
use iothub_jobs_core::azure_identity::{client_secret_credential, AzureTokenCredential};
use iothub_jobs_core::{Error, JobClient, TokenCredential, IOTHUB_TOKEN_SCOPE};

use support::{json, ok_json, Action};

#[derive(Debug)]
struct Fake {
    calls: AtomicUsize,
    fail_with: Option<String>,
}

#[async_trait::async_trait]
impl AzureCredential for Fake {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        assert_eq!(scopes, &[IOTHUB_TOKEN_SCOPE]);
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(message) = &self.fail_with {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                message.clone(),
            ));
        }
        Ok(azure_core::credentials::AccessToken::new(
            format!("fake-token-{n}"),
            OffsetDateTime::from_unix_timestamp(4_000_000_000).unwrap(),
        ))
    }
}

fn fake(fail_with: Option<&str>) -> Arc<Fake> {
    Arc::new(Fake {
        calls: AtomicUsize::new(0),
        fail_with: fail_with.map(str::to_string),
    })
}

#[tokio::test]
async fn adapter_converts_token_and_expiry() {
    let adapter = AzureTokenCredential::new(fake(None));
    let token = adapter
        .get_token(&[IOTHUB_TOKEN_SCOPE])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.token, "fake-token-1");
    assert_eq!(
        token.expires_on,
        Some(UNIX_EPOCH + Duration::from_secs(4_000_000_000))
    );
    assert!(!format!("{token:?}").contains("fake-token"));
}

#[tokio::test]
async fn adapter_errors_are_redacted_messages() {
    let adapter = AzureTokenCredential::new(fake(Some(
        "failed for https://h/x?sig=SECRETSIG&se=1 with Bearer SECRETTOKEN and \"access_token\":\"SECRETJSON\"",
    )));
    let err = adapter.get_token(&[IOTHUB_TOKEN_SCOPE]).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    for secret in ["SECRETSIG", "SECRETTOKEN", "SECRETJSON"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("sig=REDACTED&se=1"), "{shown}");
}

#[tokio::test]
async fn cached_and_single_flight_through_the_core_provider() {
    let server = support::start(Arc::new(|_, _| ok_json(r#"{"jobId":"j"}"#))).await;
    let credential = fake(None);
    let client = JobClient::from_token_credential(
        &server.host(),
        Arc::new(AzureTokenCredential::new(credential.clone())),
        server.options(None),
    )
    .unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get_job("j").await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    client.get_job("j").await.unwrap();
    assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
    for request in server.requests() {
        assert_eq!(request.header("Authorization"), Some("Bearer fake-token-1"));
    }
}

#[tokio::test]
async fn client_secret_over_our_tls_stack() {
    let server = support::start(Arc::new(|r, _| {
        if r.target == "/my-tenant/oauth2/v2.0/token" {
            let body = String::from_utf8_lossy(&r.body);
            if body.contains("client_secret=s3cret") && body.contains("client_id=app") {
                return Action::Respond(json(
                    200,
                    "OK",
                    r#"{"token_type":"Bearer","expires_in":3600,"access_token":"entra-token"}"#,
                ));
            }
            return Action::Respond(json(
                401,
                "Unauthorized",
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: bad secret","error_codes":[7000215]}"#,
            ));
        }
        ok_json(r#"{"jobId":"j"}"#)
    }))
    .await;
    let authority = format!("https://{}", server.host());
    let options = server.options(None);
    let client = JobClient::from_client_secret(
        &server.host(),
        "my-tenant",
        "app",
        "s3cret",
        Some(&authority),
        options.clone(),
    )
    .unwrap();
    client.get_job("j").await.unwrap();
    client.get_job("j").await.unwrap();
    let requests = server.requests();
    let token_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.target.ends_with("/token"))
        .collect();
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0].method, "POST");
    let form = String::from_utf8_lossy(&token_requests[0].body).into_owned();
    assert!(
        form.contains("scope=https%3A%2F%2Fiothubs.azure.net%2F.default"),
        "{form}"
    );
    let hub: Vec<_> = requests
        .iter()
        .filter(|r| r.target.starts_with("/jobs/"))
        .collect();
    assert_eq!(hub.len(), 2);
    assert!(hub
        .iter()
        .all(|r| r.header("Authorization") == Some("Bearer entra-token")));

    // A rejected secret: the authority's message, never the secret.
    let bad = client_secret_credential(
        "my-tenant",
        "app",
        "wrong-s3cret",
        Some(&authority),
        &options,
    )
    .unwrap();
    let err = bad.get_token(&[IOTHUB_TOKEN_SCOPE]).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("AADSTS7000215"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[tokio::test]
async fn untrusted_authority_is_refused() {
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let other = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    // Trust only `other`'s CA: the authority's certificate must be rejected.
    let options = other.options(None);
    let credential = client_secret_credential(
        "t",
        "app",
        "s",
        Some(&format!("https://{}", server.host())),
        &options,
    )
    .unwrap();
    let err = credential
        .get_token(&[IOTHUB_TOKEN_SCOPE])
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate")
            || err.to_string().contains("UnknownIssuer"),
        "{err}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn construction_errors_are_credential_errors() {
    let options = iothub_jobs_core::ClientOptions::default();
    let err = client_secret_credential("bad tenant!", "app", "s", None, &options)
        .err()
        .expect("an error");
    assert!(matches!(err, Error::Credential(_)));
    assert!(err.to_string().contains("invalid tenant ID"));
    let err = client_secret_credential("t", "app", "s", Some("http://127.0.0.1:1"), &options)
        .err()
        .expect("an error");
    assert!(err.to_string().contains("HTTPS"), "{err}");
}
