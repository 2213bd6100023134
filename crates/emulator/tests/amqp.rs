//! The AMQP front door over real TLS and over WebSockets: protocol-header routing (plain AMQP
//! and SASL are served; the AMQP-TLS header is answered with the plain header and closed), the
//! SASL mechanisms (ANONYMOUS and the C SDK's MSSBCBS then CBS, PLAIN with a device token) and
//! CBS put-token with a Rust AMQP client (fe2o3-amqp's own client side): a device token
//! accepted, a wrong one refused with 401, and device links only for a client the connection
//! holds a token for; a policy token for the service's links (cloud-to-device sends queued or
//! refused); the events endpoint's plain port serves no device link. Real device code over AMQP
//! is covered by `__test__/devices-amqp.test.mjs`.

use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message, MessageAnnotations, Properties,
};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use iothub_emulator::websocket::ByteStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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
async fn protocol_headers_are_routed_plain_and_sasl_served_tls_refused() {
    let hub = start("2").await;
    let plain = *b"AMQP\x00\x01\x00\x00";
    let sasl = *b"AMQP\x03\x01\x00\x00";
    // Plain AMQP: the hub answers with the same header and waits for the client's Open.
    assert_eq!(answer_to(&hub, &plain).await, (plain, false));
    // SASL (Java's ANONYMOUS, the C SDK's MSSBCBS): the same header, then the mechanisms.
    assert_eq!(answer_to(&hub, &sasl).await, (sasl, false));
    // AMQP-TLS (IoT Hub clients start with TLS itself): the hub answers with the header it
    // speaks and closes (AMQP 1.0 §2.2).
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

/// The two `$cbs` links of a connection.
struct Cbs {
    requests: Sender,
    replies: Receiver,
}

impl Cbs {
    async fn attach(session: &mut fe2o3_amqp::session::SessionHandle<()>) -> Cbs {
        Cbs {
            requests: Sender::attach(session, "cbs-out", "$cbs").await.unwrap(),
            replies: Receiver::attach(session, "cbs-in", "$cbs").await.unwrap(),
        }
    }

    /// Puts `token` for device `id`'s audience; the status of the answer.
    async fn put(&mut self, hub: &Hub, id: &str, token: String) -> i32 {
        let audience = format!("{}/devices/{id}", hub.host_name);
        self.put_for(&audience, id, token).await
    }

    /// Puts `token` for `audience` as request `id`; the status of the answer.
    async fn put_for(&mut self, audience: &str, id: &str, token: String) -> i32 {
        self.requests
            .send(put_token(audience, &token, id))
            .await
            .unwrap()
            .accepted_or("put-token not accepted")
            .unwrap();
        let reply =
            tokio::time::timeout(Duration::from_secs(10), self.replies.recv::<Body<Value>>())
                .await
                .unwrap()
                .unwrap();
        self.replies.accept(&reply).await.unwrap();
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
}

/// Whether a telemetry link of `id` attaches and its first message is accepted.
async fn telemetry_accepted(
    session: &mut fe2o3_amqp::session::SessionHandle<()>,
    id: &str,
) -> bool {
    let address = format!("/devices/{id}/messages/events");
    let Ok(mut events) = Sender::attach(session, format!("events-{id}"), address).await else {
        return false;
    };
    let accepted = match events.send(Message::from("hello".to_string())).await {
        Ok(outcome) => outcome.is_accepted(),
        Err(_) => false,
    };
    let _ = events.close().await;
    accepted
}

/// CBS on an open connection: wrong and unknown tokens 401, a good one 200; then the device's
/// telemetry is accepted and another device's link refused.
async fn cbs_round(mut connection: ConnectionHandle<()>, hub: &Hub) {
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut cbs = Cbs::attach(&mut session).await;
    let wrong = hub.device_token("device-0000", &[7u8; 32]);
    assert_eq!(cbs.put(hub, "device-0000", wrong).await, 401);
    let unknown = hub.device_token("nobody", &hub.policy_key);
    assert_eq!(cbs.put(hub, "nobody", unknown).await, 401);
    let good = hub.device_token("device-0000", &hub.policy_key);
    assert_eq!(cbs.put(hub, "device-0000", good).await, 200);
    assert!(telemetry_accepted(&mut session, "device-0000").await);
    assert!(
        !telemetry_accepted(&mut session, "device-0001").await,
        "a link for a device without a token is refused"
    );
    let _ = session.end().await;
    let _ = connection.close().await;
}

async fn open<Io>(stream: Io, sasl: Option<SaslProfile>) -> ConnectionHandle<()>
where
    Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let builder = Connection::builder().container_id("front-door-test");
    match sasl {
        Some(profile) => builder.sasl_profile(profile).open_with_stream(stream).await,
        None => builder.open_with_stream(stream).await,
    }
    .unwrap()
}

#[tokio::test]
async fn cbs_put_token_accepts_a_valid_device_token_and_refuses_a_wrong_one() {
    let hub = start("2").await;
    cbs_round(open(tls(&hub).await, None).await, &hub).await;
    hub.stop().await;
}

#[tokio::test]
async fn sasl_anonymous_then_cbs() {
    let hub = start("2").await;
    let connection = open(tls(&hub).await, Some(SaslProfile::Anonymous)).await;
    cbs_round(connection, &hub).await;
    hub.stop().await;
}

/// One SASL frame (AMQP 1.0 §5.3.1: type 1, channel 0) around an encoded performative.
fn sasl_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    frame.extend([2, 1, 0, 0]);
    frame.extend(body);
    frame
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(size) as usize - 4];
    stream.read_exact(&mut rest).await.unwrap();
    rest
}

/// The C SDK's SASL exchange, byte for byte as its `saslclientio` sends it: the SASL header,
/// `sasl-init` with mechanism MSSBCBS and no credentials; the outcome code.
async fn mssbcbs<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> u8 {
    stream.write_all(b"AMQP\x03\x01\x00\x00").await.unwrap();
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, b"AMQP\x03\x01\x00\x00");
    let mechanisms = read_frame(stream).await;
    let offered = String::from_utf8_lossy(&mechanisms);
    for name in ["MSSBCBS", "ANONYMOUS", "PLAIN"] {
        assert!(offered.contains(name), "{name} offered: {offered:?}");
    }
    assert!(!offered.contains("EXTERNAL"));
    // sasl-init (descriptor 0x41): a list of one symbol, the mechanism.
    let mut init = vec![0x00, 0x53, 0x41, 0xc0, 10, 1, 0xa3, 7];
    init.extend(b"MSSBCBS");
    stream.write_all(&sasl_frame(&init)).await.unwrap();
    let outcome = read_frame(stream).await;
    // type/channel, then sasl-outcome (descriptor 0x44) whose first field is the code (ubyte).
    assert_eq!(&outcome[4..7], [0x00, 0x53, 0x44], "{outcome:?}");
    let code = outcome.windows(2).skip(7).find(|w| w[0] == 0x50).unwrap()[1];
    code
}

#[tokio::test]
async fn sasl_mssbcbs_then_cbs() {
    let hub = start("2").await;
    let mut stream = tls(&hub).await;
    assert_eq!(mssbcbs(&mut stream).await, 0, "the outcome is ok");
    // After SASL, the client's AMQP header and Open: fe2o3 sends them on the same stream.
    cbs_round(open(stream, None).await, &hub).await;
    hub.stop().await;
}

#[tokio::test]
async fn the_events_port_is_plain_amqp_for_the_endpoint_only() {
    let hub = start("1").await;
    let events_port = hub.line["eventsPort"].as_u64().unwrap() as u16;
    let tcp = TcpStream::connect(("127.0.0.1", events_port))
        .await
        .unwrap();
    let mut connection = open(tcp, None).await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut cbs = Cbs::attach(&mut session).await;
    let good = hub.device_token("device-0000", &hub.policy_key);
    assert_eq!(cbs.put(&hub, "device-0000", good).await, 200);
    assert!(
        !telemetry_accepted(&mut session, "device-0000").await,
        "a device link is not served on the events port"
    );
    let _ = session.end().await;
    let _ = connection.close().await;
    hub.stop().await;
}

#[tokio::test]
async fn sasl_plain_with_a_device_token_admits_its_links_without_cbs() {
    let hub = start("2").await;
    let user = format!("device-0000@sas.{}", hub.host_name);
    let good = hub.device_token("device-0000", &hub.policy_key);
    let mut connection = open(tls(&hub).await, Some((user.clone(), good).into())).await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    assert!(telemetry_accepted(&mut session, "device-0000").await);
    assert!(!telemetry_accepted(&mut session, "device-0001").await);
    let _ = session.end().await;
    let _ = connection.close().await;

    // A wrong token, or a policy's username with a device's token, fails the SASL outcome:
    // no connection.
    let wrong = hub.device_token("device-0000", &[7u8; 32]);
    for profile in [
        (user, wrong),
        (
            format!("iothubowner@sas.root.{}", hub.host_name),
            hub.device_token("device-0000", &hub.policy_key),
        ),
    ] {
        let refused = Connection::builder()
            .container_id("front-door-test")
            .sasl_profile(profile)
            .open_with_stream(tls(&hub).await)
            .await;
        assert!(refused.is_err(), "PLAIN refused");
    }
    hub.stop().await;
}

#[tokio::test]
async fn amqp_over_websockets_reaches_the_same_front_door() {
    let hub = start("2").await;
    let mut req = format!("wss://127.0.0.1:{}/$iothub/websocket", hub.port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "AMQPWSB10".parse().unwrap());
    let (ws, res) = tokio_tungstenite::client_async(req, tls(&hub).await)
        .await
        .unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "AMQPWSB10");
    // The emulator's own adapter serves as the client's byte stream too.
    cbs_round(open(ByteStream::new(ws), None).await, &hub).await;
    hub.stop().await;
}

/// The bytes of a message body (data sections).
fn body_of(message: &Message<Body<Value>>) -> Vec<u8> {
    match &message.body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.to_vec()).collect(),
        other => panic!("expected data sections, got {other:?}"),
    }
}

#[tokio::test]
async fn desired_notifications_carry_the_version_in_body_and_annotation() {
    let hub = start("1").await;
    let mut connection = open(tls(&hub).await, None).await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let token = hub.device_token("device-0000", &hub.policy_key);
    assert_eq!(
        Cbs::attach(&mut session)
            .await
            .put(&hub, "device-0000", token)
            .await,
        200
    );
    let twin = "/devices/device-0000/twin";
    let mut requests = Sender::attach(&mut session, "twin-out", twin)
        .await
        .unwrap();
    let mut answers = Receiver::attach(&mut session, "twin-in", twin)
        .await
        .unwrap();
    // Subscribe as azure-iot-device-amqp does: PUT on the desired-notification resource.
    let subscribe = Message::builder()
        .properties(
            Properties::builder()
                .correlation_id("sub-1".to_string())
                .build(),
        )
        .message_annotations(
            MessageAnnotations::builder()
                .insert("operation", Value::String("PUT".into()))
                .insert(
                    "resource",
                    Value::String("/notifications/twin/properties/desired".into()),
                )
                .build(),
        )
        .data(fe2o3_amqp::types::primitives::Binary::from(b" ".to_vec()))
        .build();
    requests.send(subscribe).await.unwrap();
    let next = async |answers: &mut Receiver| {
        let d = tokio::time::timeout(Duration::from_secs(10), answers.recv::<Body<Value>>())
            .await
            .unwrap()
            .unwrap();
        answers.accept(&d).await.unwrap();
        d.into_message()
    };
    let subscribed = next(&mut answers).await;
    let correlation = subscribed
        .properties
        .as_ref()
        .unwrap()
        .correlation_id
        .clone();
    assert_eq!(correlation, Some("sub-1".to_string().into()));

    // The service changes the desired properties (PATCH /twins/{id}).
    let body = r#"{"properties":{"desired":{"color":"red"}}}"#;
    let request = format!(
        "PATCH /twins/device-0000?api-version=2021-04-12 HTTP/1.1\r\nHost: {}\r\n\
         Authorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        hub.host_name,
        hub.hub_token(),
        body.len()
    );
    let mut http = tls(&hub).await;
    http.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let note = next(&mut answers).await;
    assert!(
        note.properties
            .as_ref()
            .and_then(|p| p.correlation_id.as_ref())
            .is_none(),
        "a notification answers no request"
    );
    let patch: serde_json::Value = serde_json::from_slice(&body_of(&note)).unwrap();
    assert_eq!(patch["color"], "red");
    let version = note
        .message_annotations
        .as_ref()
        .and_then(|a| a.0.get(&OwnedKey::from("version")))
        .cloned();
    assert_eq!(
        version,
        Some(Value::Long(patch["$version"].as_i64().unwrap()))
    );
    let _ = session.end().await;
    let _ = connection.close().await;
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
    let mut connection = open(tls(&hub).await, None).await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut cbs = Cbs::attach(&mut session).await;
    let host = hub.host_name.clone();
    let wrong = hub.service_token(&[7u8; 32]);
    assert_eq!(cbs.put_for(&host, "1", wrong).await, 401);
    let refused = match Sender::attach(&mut session, "early", "/messages/devicebound").await {
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
    assert_eq!(cbs.put_for(&host, "2", hub.hub_token()).await, 200);

    let mut sends = Sender::attach(&mut session, "c2d", "/messages/devicebound")
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
    let mut feedback = Receiver::attach(&mut session, "fb", "/messages/serviceBound/feedback")
        .await
        .unwrap();
    let nothing =
        tokio::time::timeout(Duration::from_millis(200), feedback.recv::<Body<Value>>()).await;
    assert!(nothing.is_err(), "no feedback before a device settles");
    let _ = connection.close().await;
    hub.stop().await;
}
