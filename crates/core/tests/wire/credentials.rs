use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iothub_jobs_core::credential::{SasKeyProvider, TokenFuture};
use iothub_jobs_core::sas::create_token;
use iothub_jobs_core::{
    AccessToken, ClientOptions, CredentialError, Error, ErrorClass, JobClient, TokenCredential,
    IOTHUB_TOKEN_SCOPE,
};

use crate::support::{self, ok_json, Action, FakeClock, Recorded};

const START_MS: u64 = 1_800_000_000_000;

fn se_of(auth: &str) -> u64 {
    auth.rsplit("&se=").next().unwrap().parse().unwrap()
}

#[test]
fn sas_renewal_over_24_simulated_hours() {
    let clock = FakeClock::at_millis(START_MS);
    let provider = SasKeyProvider::new("h", "p", "a2V5", clock.clone());
    let mut mints = std::collections::HashSet::new();
    // A call every 7 s for 24 h: every token used has ≥ 45 min left, none is ever expired.
    let end = START_MS + 24 * 3600 * 1000;
    while clock.millis() < end {
        let token = provider.token();
        let left_ms = se_of(&token) as i64 * 1000 - clock.millis() as i64;
        assert!(left_ms > 45 * 60 * 1000, "only {left_ms} ms left");
        assert!(left_ms <= 3601 * 1000);
        mints.insert(token);
        clock.advance(Duration::from_secs(7));
    }
    // Re-minted every 15 minutes, not per call (12,343 calls).
    assert!((95..=98).contains(&mints.len()), "{} tokens", mints.len());
}

#[tokio::test]
async fn sas_renewal_on_the_wire_with_a_controllable_clock() {
    let clock = FakeClock::at_millis(START_MS);
    let server_clock = clock.clone();
    let server = support::start(Arc::new(move |r: &Recorded, _| {
        let auth = r.header("authorization").unwrap();
        // The server checks expiry against the same fake time, and the signature.
        let se = se_of(auth);
        let expected = create_token(
            r.header("host").unwrap(),
            "iothubowner",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            se,
        );
        if se * 1000 <= server_clock.millis() || auth != expected {
            Action::Respond(support::json(
                401,
                "Unauthorized",
                r#"{"Message":"ErrorCode:IotHubUnauthorizedAccess;expired"}"#,
            ))
        } else {
            ok_json("{}")
        }
    }))
    .await;
    let options = ClientOptions {
        clock: clock.clone(),
        ..server.options(None)
    };
    let client = JobClient::from_connection_string(&server.connection_string(), options).unwrap();
    // 24 simulated hours, a call every 10 simulated minutes: never a 401.
    for _ in 0..(24 * 6) {
        client.get_job("j").await.unwrap();
        clock.advance(Duration::from_secs(600));
    }
    let tokens: std::collections::HashSet<String> = server
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    // 144 calls, 10 minutes apart, tokens re-minted once 15 minutes old: every other call.
    assert!((70..=75).contains(&tokens.len()), "{}", tokens.len());
}

#[tokio::test]
async fn expired_shared_access_signature_fails_fast() {
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let clock = FakeClock::at_millis(START_MS);
    let se = START_MS / 1000 + 60;
    let sas = format!(
        "SharedAccessSignature sr={}&sig=c2lnbmF0dXJl&skn=p&se={se}",
        server.host()
    );
    let options = ClientOptions {
        clock: clock.clone(),
        ..server.options(None)
    };
    let client = JobClient::from_shared_access_signature(&sas, options).unwrap();
    // Valid: sent verbatim.
    client.get_job("j").await.unwrap();
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(sas.as_str())
    );
    // Expired: UnauthorizedError, nothing sent, no secret in the message.
    clock.advance(Duration::from_secs(61));
    let err = client.get_job("j").await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::UnauthorizedError);
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(!err.to_string().contains("c2lnbmF0dXJl"));
    assert_eq!(server.requests().len(), 1);
}

/// A credential whose tokens live `lifetime` of fake time; counts calls; optional delay.
struct FakeCredential {
    clock: Arc<FakeClock>,
    lifetime: Option<Duration>,
    calls: AtomicUsize,
    delay: Duration,
    fail: bool,
    none: bool,
    scopes: Mutex<Vec<String>>,
}

impl FakeCredential {
    fn new(clock: Arc<FakeClock>, lifetime: Option<Duration>) -> FakeCredential {
        FakeCredential {
            clock,
            lifetime,
            calls: AtomicUsize::new(0),
            delay: Duration::ZERO,
            fail: false,
            none: false,
            scopes: Mutex::new(Vec::new()),
        }
    }
}

#[derive(Debug)]
struct JsLikeError(&'static str);
impl std::fmt::Display for JsLikeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for JsLikeError {}

impl TokenCredential for FakeCredential {
    fn get_token<'a>(&'a self, scopes: &'a [&'a str]) -> TokenFuture<'a> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            self.scopes
                .lock()
                .unwrap()
                .extend(scopes.iter().map(|s| s.to_string()));
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            if self.fail {
                return Err(CredentialError::new(JsLikeError("credential exploded")));
            }
            if self.none {
                return Ok(None);
            }
            let now = self.clock.now_ms();
            Ok(Some(AccessToken {
                token: format!("tok-{n}-{now}"),
                expires_on: self
                    .lifetime
                    .map(|l| UNIX_EPOCH + Duration::from_millis(now) + l),
            }))
        })
    }
}

trait NowMs {
    fn now_ms(&self) -> u64;
}
impl NowMs for FakeClock {
    fn now_ms(&self) -> u64 {
        self.millis()
    }
}

/// Server that accepts `Bearer tok-<n>-<issued_ms>` while issued + lifetime > fake now.
fn bearer_server(clock: Arc<FakeClock>, lifetime: Duration) -> support::Handler {
    Arc::new(move |r: &Recorded, _| {
        let auth = r.header("authorization").unwrap_or("");
        let ok = auth
            .strip_prefix("Bearer tok-")
            .and_then(|rest| rest.split('-').nth(1))
            .and_then(|issued| issued.parse::<u64>().ok())
            .is_some_and(|issued| issued + lifetime.as_millis() as u64 > clock.millis());
        if ok {
            ok_json("{}")
        } else {
            Action::Respond(support::json(401, "Unauthorized", ""))
        }
    })
}

#[tokio::test]
async fn bearer_token_cached_and_refreshed_over_24_simulated_hours() {
    let clock = FakeClock::at_millis(START_MS);
    let lifetime = Duration::from_secs(3600);
    let server = support::start(bearer_server(clock.clone(), lifetime)).await;
    let credential = Arc::new(FakeCredential::new(clock.clone(), Some(lifetime)));
    let options = ClientOptions {
        clock: clock.clone(),
        ..server.options(None)
    };
    let client =
        JobClient::from_token_credential(&server.host(), credential.clone(), options).unwrap();
    for _ in 0..(24 * 12) {
        client.get_job("j").await.unwrap();
        clock.advance(Duration::from_secs(300));
    }
    let calls = credential.calls.load(Ordering::SeqCst);
    // Refreshed when ≤ 9 min are left: about every 50-55 minutes, never per call.
    assert!((24..=32).contains(&calls), "{calls} get_token calls");
    assert!(credential
        .scopes
        .lock()
        .unwrap()
        .iter()
        .all(|s| s == IOTHUB_TOKEN_SCOPE));
    assert_eq!(IOTHUB_TOKEN_SCOPE, "https://iothubs.azure.net/.default");
    assert!(server.requests().iter().all(|r| r
        .header("authorization")
        .unwrap()
        .starts_with("Bearer tok-")));
}

#[tokio::test]
async fn token_fetch_is_single_flight() {
    let clock = FakeClock::at_millis(START_MS);
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let mut credential = FakeCredential::new(clock.clone(), Some(Duration::from_secs(3600)));
    credential.delay = Duration::from_millis(200);
    let credential = Arc::new(credential);
    let options = ClientOptions {
        clock: clock.clone(),
        ..server.options(None)
    };
    let client =
        JobClient::from_token_credential(&server.host(), credential.clone(), options).unwrap();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get_job("j").await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
    let requests = server.requests();
    assert_eq!(requests.len(), 32);
    assert!(requests
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer tok-0-1800000000000")));
}

#[tokio::test]
async fn a_token_without_expiry_is_fetched_per_call() {
    let clock = FakeClock::at_millis(START_MS);
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let credential = Arc::new(FakeCredential::new(clock.clone(), None));
    let client = JobClient::from_token_credential(
        &server.host(),
        credential.clone(),
        ClientOptions {
            clock,
            ..server.options(None)
        },
    )
    .unwrap();
    for _ in 0..3 {
        client.get_job("j").await.unwrap();
    }
    assert_eq!(credential.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn credential_failures_pass_through_unchanged() {
    let clock = FakeClock::at_millis(START_MS);
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let mut credential = FakeCredential::new(clock.clone(), Some(Duration::from_secs(3600)));
    credential.fail = true;
    let credential = Arc::new(credential);
    let client = JobClient::from_token_credential(
        &server.host(),
        credential.clone(),
        ClientOptions {
            clock: clock.clone(),
            ..server.options(Some(support::fast_retry(3)))
        },
    )
    .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    let Error::Credential(inner) = &err else {
        panic!("{err:?}")
    };
    assert!(inner.0.downcast_ref::<JsLikeError>().is_some());
    assert_eq!(err.to_string(), "credential exploded");
    assert_eq!(credential.calls.load(Ordering::SeqCst), 1, "not retried");
    assert!(server.requests().is_empty());

    // getToken resolving null.
    let mut credential = FakeCredential::new(clock.clone(), None);
    credential.none = true;
    let client = JobClient::from_token_credential(
        &server.host(),
        Arc::new(credential),
        ClientOptions {
            clock,
            ..server.options(None)
        },
    )
    .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert!(matches!(err, Error::TokenCreationFailed));
    assert_eq!(err.to_string(), "AccessToken creation failed");
}

#[tokio::test]
async fn bearer_tokens_with_cr_lf_are_refused_and_never_shown() {
    struct Evil;
    impl TokenCredential for Evil {
        fn get_token<'a>(&'a self, _: &'a [&'a str]) -> TokenFuture<'a> {
            Box::pin(async {
                Ok(Some(AccessToken {
                    token: "secret-token\r\nX-Injected: 1".into(),
                    expires_on: Some(SystemTime::now() + Duration::from_secs(3600)),
                }))
            })
        }
    }
    let server = support::start(Arc::new(|_, _| ok_json("{}"))).await;
    let client =
        JobClient::from_token_credential(&server.host(), Arc::new(Evil), server.options(None))
            .unwrap();
    let err = client.get_job("j").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ArgumentError);
    assert!(
        !err.to_string().contains("secret-token") && !format!("{err:?}").contains("secret-token")
    );
    assert!(server.requests().is_empty());
    let token = AccessToken {
        token: "secret-token".into(),
        expires_on: None,
    };
    assert!(!format!("{token:?}").contains("secret-token"));
}

#[test]
fn empty_host_for_token_credential() {
    let clock = FakeClock::at_millis(START_MS);
    let err = JobClient::from_token_credential(
        "",
        Arc::new(FakeCredential::new(clock, None)),
        ClientOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        (err.class(), err.to_string().as_str()),
        (ErrorClass::ArgumentError, "config.host cannot be ''")
    );
}
