//! The AMQP front door over real TLS: protocol-header routing (plain AMQP is served; SASL and
//! AMQP-TLS headers are answered with the plain header and closed) and CBS put-token with a
//! Rust AMQP client (fe2o3-amqp's own client side): a device token accepted, a wrong one
//! refused with 401, and device links only for a client the connection holds a token for; a
//! policy token for the service's links (cloud-to-device sends queued or refused).
//! Real device code over AMQP is covered by `__test__/devices-amqp.test.mjs`.

use std::time::Duration;

use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

mod common;

use common::{start, Hub};

async fn tls(hub: &Hub) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(hub.tls.clone())
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Sends `header` after TLS; what the hub answers (8 bytes) and whether it then closed.
async fn answer_to(hub: &Hub, header: &[u8; 8]) -> ([u8; 8], bool) {
    let mut tls = tls(hub).await;
    tls.write_all(header).await.unwrap();
    let mut answer = [0u8; 8];
    tls.read_exact(&mut answer).await.unwrap();
    let mut rest = [0u8; 1];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(2), tls.read(&mut rest)).await,
        Ok(Ok(0) | Err(_))
    );
    (answer, closed)
}

#[tokio::test]
async fn protocol_headers_are_routed_plain_served_sasl_and_tls_refused() {
    let hub = start("2").await;
    let plain = *b"AMQP\x00\x01\x00\x00";
    // Plain AMQP: the hub answers with the same header and waits for the client's Open.
    assert_eq!(answer_to(&hub, &plain).await, (plain, false));
    // SASL (Java's ANONYMOUS, the C SDK's MSSBCBS) and AMQP-TLS are not served yet: the hub
    // answers with the header it speaks and closes (AMQP 1.0 §2.2).
    assert_eq!(
        answer_to(&hub, b"AMQP\x03\x01\x00\x00").await,
        (plain, true)
    );
    assert_eq!(
        answer_to(&hub, b"AMQP\x02\x01\x00\x00").await,
        (plain, true)
    );
    hub.stop().await;
}

/// A put-token request as the device SDKs send it.
fn put_token(audience: &str, token: &str, id: &str) -> Message<AmqpValue<String>> {
    Message::builder()
        .properties(
            Properties::builder()
                .message_id(id.to_string())
                .reply_to("cbs")
                .build(),
        )
        .application_properties(
            ApplicationProperties::builder()
                .insert("operation", "put-token")
                .insert("type", "servicebus.windows.net:sastoken")
                .insert("name", audience)
                .build(),
        )
        .value(token.to_string())
        .build()
}

/// A connection with its session and the `$cbs` links.
struct Cbs {
    connection: fe2o3_amqp::connection::ConnectionHandle<()>,
    session: fe2o3_amqp::session::SessionHandle<()>,
    cbs: Sender,
    replies: Receiver,
}

impl Cbs {
    async fn open(hub: &Hub) -> Self {
        let mut connection = Connection::builder()
            .container_id("front-door-test")
            .open_with_stream(tls(hub).await)
            .await
            .unwrap();
        let mut session = Session::begin(&mut connection).await.unwrap();
        let cbs = Sender::attach(&mut session, "cbs-out", "$cbs")
            .await
            .unwrap();
        let replies = Receiver::attach(&mut session, "cbs-in", "$cbs")
            .await
            .unwrap();
        Cbs {
            connection,
            session,
            cbs,
            replies,
        }
    }
}

/// Sends a put-token on `$cbs` and waits for its answer: the status code.
async fn put(
    cbs: &mut Sender,
    replies: &mut Receiver,
    audience: &str,
    token: String,
    id: &str,
) -> i32 {
    cbs.send(put_token(audience, &token, id))
        .await
        .unwrap()
        .accepted_or("put-token not accepted")
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.recv::<Body<Value>>())
        .await
        .unwrap()
        .unwrap();
    replies.accept(&reply).await.unwrap();
    let correlation = reply
        .message()
        .properties
        .as_ref()
        .unwrap()
        .correlation_id
        .clone();
    assert_eq!(
        correlation,
        Some(id.to_string().into()),
        "the reply names the request"
    );
    status_of(reply.message())
}

fn status_of(reply: &Message<Body<Value>>) -> i32 {
    match reply
        .application_properties
        .as_ref()
        .unwrap()
        .0
        .get("status-code")
    {
        Some(SimpleValue::Int(n)) => *n,
        other => panic!("no status-code: {other:?}"),
    }
}

#[tokio::test]
async fn cbs_put_token_accepts_a_valid_device_token_and_refuses_a_wrong_one() {
    let hub = start("2").await;
    let mut c = Cbs::open(&hub).await;
    let audience = |id: &str| format!("{}/devices/{id}", hub.host_name);
    let mut ask = async |id: &str, token: String| {
        put(&mut c.cbs, &mut c.replies, &audience(id), token, id).await
    };
    let wrong = hub.device_token("device-0000", &[7u8; 32]);
    assert_eq!(ask("device-0000", wrong).await, 401);
    let unknown = hub.device_token("nobody", &hub.policy_key);
    assert_eq!(ask("nobody", unknown).await, 401);
    let good = hub.device_token("device-0000", &hub.policy_key);
    assert_eq!(ask("device-0000", good).await, 200);

    // Telemetry for the device the connection holds a token for is accepted; another
    // device's link is refused.
    let mut events = Sender::attach(
        &mut c.session,
        "events",
        "/devices/device-0000/messages/events",
    )
    .await
    .unwrap();
    let outcome = events
        .send(Message::from("hello".to_string()))
        .await
        .unwrap();
    assert!(outcome.is_accepted(), "{outcome:?}");
    let other = Sender::attach(
        &mut c.session,
        "other",
        "/devices/device-0001/messages/events",
    )
    .await;
    let refused = match other {
        Err(_) => true,
        Ok(mut link) => link.send(Message::from("x".to_string())).await.is_err(),
    };
    assert!(refused, "a link for a device without a token is refused");
    drop(events);
    let _ = c.connection.close().await;
    hub.stop().await;
}

/// A cloud-to-device message as azure-iothub's `Client.send` makes one.
fn cloud_message(to: &str, id: &str) -> Message<AmqpValue<String>> {
    Message::builder()
        .properties(
            Properties::builder()
                .message_id(id.to_string())
                .to(to)
                .build(),
        )
        .application_properties(
            ApplicationProperties::builder()
                .insert("iothub-ack", "full")
                .build(),
        )
        .value("hi".to_string())
        .build()
}

#[tokio::test]
async fn the_service_links_need_a_policy_token_and_sends_are_queued_or_refused() {
    let hub = start("2").await;
    let mut c = Cbs::open(&hub).await;
    let host = hub.host_name.clone();
    let wrong = hub.service_token(&[7u8; 32]);
    assert_eq!(
        put(&mut c.cbs, &mut c.replies, &host, wrong, "1").await,
        401
    );
    let refused = match Sender::attach(&mut c.session, "early", "/messages/devicebound").await {
        Err(_) => true,
        Ok(mut link) => link
            .send(cloud_message(
                "/devices/device-0000/messages/devicebound",
                "x",
            ))
            .await
            .is_err(),
    };
    assert!(refused, "no service link without a policy token");
    let good = hub.service_token(&hub.policy_key);
    assert_eq!(put(&mut c.cbs, &mut c.replies, &host, good, "2").await, 200);

    let mut sends = Sender::attach(&mut c.session, "c2d", "/messages/devicebound")
        .await
        .unwrap();
    let queued = sends
        .send(cloud_message(
            "/devices/device-0001/messages/devicebound",
            "m1",
        ))
        .await
        .unwrap();
    assert!(queued.is_accepted(), "{queued:?}");
    let unknown = sends
        .send(cloud_message("/devices/nobody/messages/devicebound", "m2"))
        .await
        .unwrap();
    assert!(format!("{unknown:?}").contains("NotFound"), "{unknown:?}");
    let module = sends
        .send(cloud_message(
            "/devices/device-0001/modules/m/messages/devicebound",
            "m3",
        ))
        .await
        .unwrap();
    assert!(
        format!("{module:?}").contains("argument-error"),
        "{module:?}"
    );
    // The feedback receiver attaches (and waits: nothing was settled yet).
    let mut feedback = Receiver::attach(&mut c.session, "fb", "/messages/serviceBound/feedback")
        .await
        .unwrap();
    let nothing =
        tokio::time::timeout(Duration::from_millis(200), feedback.recv::<Body<Value>>()).await;
    assert!(nothing.is_err(), "no feedback before a device settles");
    let _ = c.connection.close().await;
    hub.stop().await;
}
