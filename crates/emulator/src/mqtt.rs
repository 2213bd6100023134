//! The device side: MQTT 3.1.1 sessions as Azure IoT device SDKs speak them, on the same TLS
//! port as HTTPS (the server tells them apart by the first byte). Packets are read and written
//! with `rumqttc`'s v4 codec; admission (SAS auth, faults), topics and routing are the hub's.
//!
//! Topics served: direct methods (`$iothub/methods/POST/{name}/?$rid=` out,
//! `$iothub/methods/res/{status}/?$rid=` in), twin GET and reported PATCH
//! (`$iothub/twin/GET|PATCH/…/?$rid=` in, `$iothub/twin/res/{status}/?$rid=` out), desired
//! notifications (`$iothub/twin/PATCH/properties/desired/?$version=N` out), telemetry
//! (`devices/{id}/messages/events/…` in) and cloud-to-device messages
//! (`devices/{id}/messages/devicebound/{properties}` out at QoS 1; the PUBACK completes).
//! A module (`ModuleClient`, client id `{deviceId}/{moduleId}`) uses the same topics, with `devices/{id}/modules/{mid}/…` for its
//! own; which identity a session speaks for is the hub's business (`devices/modules.rs`).
//! Admission is `Hub::admit`; the connection's `DeviceLink` (`Hub::connect`) takes what the
//! device sends and its `Downlink` carries what the hub sends; leaving `serve` drops the link,
//! which disconnects the device.
//! The session never knows whether TLS or WebSocket frames carry it (`websocket::ByteStream`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use percent_encoding::utf8_percent_encode;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::auth::URI_COMPONENT;
use crate::clock::iso;
use crate::device_message::{from_property_bag, DeviceMessage};
use crate::devices::cloud_to_device::{Delivery, Settle};
use crate::devices::{split_client, DeviceAuthError, Outgoing};
use crate::gateway_fault::FaultKind;
use crate::hub::{
    ConnectError, ConnectOptions, DeviceLink, Hub, Incoming, SubscriptionChange, TwinOp,
};
use crate::x509::CertChain;

/// Largest packet accepted or sent (IoT Hub's message limit is 256 KB; twins are smaller).
const MAX_PACKET: usize = 512 * 1024;
/// A client must send CONNECT this soon after the TLS handshake.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Why no packet could be read; the connection ends either way.
#[derive(Debug)]
enum ReadError {
    Closed,
    Malformed(CodecError),
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed"),
            ReadError::Malformed(e) => write!(f, "bad packet: {e}"),
            ReadError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads one packet; the bytes already read stay in `buf`, so this is cancel-safe.
async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Packet, ReadError> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(p),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(e) => return Err(ReadError::Malformed(e)),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

async fn write_packet<W: AsyncWrite + Unpin>(wr: &mut W, packet: Packet) -> bool {
    let mut out = BytesMut::new();
    if packet.write(&mut out, MAX_PACKET).is_err() {
        return false;
    }
    wr.write_all(&out).await.is_ok() && wr.flush().await.is_ok()
}

/// The CONNACK code for a CONNECT: 0 admits; 4 (bad credentials) and 5 (not authorized) are
/// what the SDK turns into `UnauthorizedError`.
fn admit(hub: &Hub, connect: &Connect, client_chain: &CertChain) -> ConnectReturnCode {
    let id = connect.client_id.as_str();
    let password = connect
        .login
        .as_ref()
        .filter(|login| username_names(&login.username, id))
        .map(|login| login.password.as_str());
    match hub.admit(id, password, client_chain) {
        Ok(()) => ConnectReturnCode::Success,
        Err(ConnectError::Unavailable) => ConnectReturnCode::ServiceUnavailable,
        Err(ConnectError::NoLogin) => ConnectReturnCode::BadUserNamePassword,
        Err(ConnectError::Refused(DeviceAuthError::Unknown | DeviceAuthError::Disabled)) => {
            ConnectReturnCode::NotAuthorized
        }
        // A refused token is "bad credentials"; a refused certificate, "not authorized".
        Err(ConnectError::Refused(DeviceAuthError::Token(why))) => {
            eprintln!("iothub-emulator: device {id} refused: {why}");
            ConnectReturnCode::BadUserNamePassword
        }
        Err(ConnectError::Refused(DeviceAuthError::Certificate(why))) => {
            eprintln!("iothub-emulator: device {id} refused: {why}");
            ConnectReturnCode::NotAuthorized
        }
    }
}

/// Whether a CONNECT username, `{hostName}/{clientId}/?api-version=…`, names the client id
/// (`{deviceId}`, or `{deviceId}/{moduleId}` for a module) and nothing else.
fn username_names(username: &str, client_id: &str) -> bool {
    username
        .split_once('/')
        .and_then(|(_, rest)| rest.strip_prefix(client_id))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
}

/// Serves one MQTT connection, over TLS or WebSocket frames alike; `client_chain` is the
/// certificate chain the client sent in the TLS handshake (x509 devices log in with it).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    hub: Arc<Hub>,
    stream: S,
    client_chain: CertChain,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(1024);
    let connect = match tokio::time::timeout(CONNECT_WAIT, read_packet(&mut rd, &mut buf)).await {
        Ok(Ok(Packet::Connect(c))) => c,
        _ => return,
    };
    let code = admit(&hub, &connect, &client_chain);
    if code != ConnectReturnCode::Success {
        let _ = write_packet(&mut wr, Packet::ConnAck(ConnAck::new(code, false))).await;
        return;
    }
    let id = connect.client_id.clone();
    let options = ConnectOptions {
        clean_session: connect.clean_session,
    };
    // Dropping the link (any way out of this function) disconnects the device.
    let (link, mut downlink) = hub.connect(&id, options);
    let connack = ConnAck::new(code, link.session_present());
    if !write_packet(&mut wr, Packet::ConnAck(connack)).await {
        return;
    }
    // Cloud-to-device messages published at QoS 1 and not yet acknowledged: packet id → lock
    // token (the PUBACK completes the message; MQTT has no reject or abandon).
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut next_pkid: u16 = 0;
    let session = Session { link: &link };
    // Keep-alive: the client must send something within 1.5 × its interval (MQTT 3.1.1 §3.1.2.10).
    let keep_alive =
        (connect.keep_alive > 0).then(|| Duration::from_millis(connect.keep_alive as u64 * 1500));
    let mut last_heard = Instant::now();
    // Set by a `KillTcp` fault: the stream is dropped without a TLS close_notify or a
    // WebSocket close frame, as a severed connection ends.
    let mut cut = false;
    loop {
        let expiry = keep_alive.map(|k| last_heard + k);
        tokio::select! {
            packet = read_packet(&mut rd, &mut buf) => {
                let Ok(packet) = packet else { break };
                last_heard = Instant::now();
                link.incoming(Incoming::Activity);
                if let Packet::PubAck(ack) = &packet {
                    if let Some(lock_token) = in_flight.remove(&ack.pkid) {
                        // Stored before this device's next packet is read.
                        link.incoming(Incoming::Settled { lock_token, how: Settle::Complete });
                    }
                    continue;
                }
                match session.handle(packet) {
                    Step::Reply(p) => if !write_packet(&mut wr, p).await { break },
                    Step::Nothing => {}
                    Step::Close => break,
                }
            }
            out = downlink.recv() => match out.and_then(encode) {
                None => break,
                Some(Encoded::Cut) => {
                    cut = true;
                    break;
                }
                Some(Encoded::Nothing) => {}
                Some(Encoded::CloudToDevice(delivery)) => {
                    // Packet ids 1..=65535, skipping those still in flight (at most 50 are:
                    // the queue's depth).
                    loop {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        if !in_flight.contains_key(&next_pkid) { break }
                    }
                    in_flight.insert(next_pkid, delivery.lock_token);
                    let topic = cloud_to_device_topic(&id, &delivery);
                    let mut publish =
                        Publish::new(topic, QoS::AtLeastOnce, delivery.message.body);
                    publish.pkid = next_pkid;
                    if !write_packet(&mut wr, Packet::Publish(publish)).await { break }
                }
                Some(Encoded::Publish(topic, payload)) => {
                    let publish = Publish::new(topic, QoS::AtMostOnce, payload);
                    if !write_packet(&mut wr, Packet::Publish(publish)).await { break }
                }
            },
            _ = tokio::time::sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => break,
        }
    }
    drop(link);
    if !cut {
        let _ = wr.shutdown().await;
    }
}

/// What the hub sends a device, as MQTT.
enum Encoded {
    /// Nothing to send (a fault that names another transport's connection).
    Nothing,
    /// The connection is to be severed (`KillTcp`): no packet, no clean close.
    Cut,
    /// A topic and payload published at QoS 0.
    Publish(String, Vec<u8>),
    /// A cloud-to-device message, published at QoS 1 (its PUBACK completes it).
    CloudToDevice(Delivery),
}

/// `devices/{id}/messages/devicebound/{properties}`: the system properties (`$.mid`, `$.cid`,
/// `$.to`, …) and the application properties as a URL-encoded property bag, as IoT Hub
/// publishes them.
fn cloud_to_device_topic(device: &str, d: &Delivery) -> String {
    let m = &d.message;
    let expiry = m.expiry_ms.map(iso);
    let system = [
        ("$.mid", m.message_id.as_deref()),
        ("$.to", Some(d.to.as_str())),
        ("$.cid", m.correlation_id.as_deref()),
        ("$.uid", m.user_id.as_deref()),
        ("$.ct", m.content_type.as_deref()),
        ("$.ce", m.content_encoding.as_deref()),
        ("$.exp", expiry.as_deref()),
    ];
    let bag: Vec<String> = system
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .chain(m.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map(|(k, v)| {
            let enc = |t| utf8_percent_encode(t, URI_COMPONENT);
            format!("{}={}", enc(k), enc(v))
        })
        .collect();
    format!("devices/{device}/messages/devicebound/{}", bag.join("&"))
}

/// What the hub sends a device; `None` when the connection is to close cleanly (`Close`, or
/// `ShutDownMqtt`: no packet, as MQTT 3.1.1 has no server DISCONNECT). `KillTcp` severs it; the
/// AMQP kinds leave an MQTT connection alone.
fn encode(message: Outgoing) -> Option<Encoded> {
    let encoded = match message {
        Outgoing::MethodCall {
            request_id,
            name,
            payload,
        } => (
            format!("$iothub/methods/POST/{name}/?$rid={request_id}"),
            payload,
        ),
        Outgoing::DesiredChanged { version, patch } => (
            format!("$iothub/twin/PATCH/properties/desired/?$version={version}"),
            patch.to_string().into_bytes(),
        ),
        Outgoing::TwinAnswer { request_id, answer } => {
            let version = answer
                .version
                .map(|v| format!("&$version={v}"))
                .unwrap_or_default();
            (
                format!(
                    "$iothub/twin/res/{}/?$rid={request_id}{version}",
                    answer.status
                ),
                answer.body,
            )
        }
        Outgoing::CloudToDevice(delivery) => return Some(Encoded::CloudToDevice(delivery)),
        Outgoing::Close => return None,
        Outgoing::Fault(fault) => {
            return match fault.kind {
                FaultKind::KillTcp => Some(Encoded::Cut),
                FaultKind::ShutDownMqtt => None,
                _ => Some(Encoded::Nothing),
            }
        }
    };
    Some(Encoded::Publish(encoded.0, encoded.1))
}

enum Step {
    Reply(Packet),
    Nothing,
    Close,
}

struct Session<'a> {
    link: &'a DeviceLink,
}

/// What a subscription filter is, for the topics this hub serves.
enum Filter {
    Methods,
    TwinResponses,
    Desired,
    /// Cloud-to-device messages (a module's `inputs/#` too: routed messages are not sent).
    CloudToDevice,
}

/// The topic root of a client: `devices/{deviceId}`, or `devices/{deviceId}/modules/{moduleId}`
/// for a module (client id `{deviceId}/{moduleId}`).
fn topic_root(id: &str) -> String {
    match split_client(id) {
        (device, None) => format!("devices/{device}"),
        (device, Some(module)) => format!("devices/{device}/modules/{module}"),
    }
}

fn classify(filter: &str, id: &str) -> Option<Filter> {
    if filter.starts_with("$iothub/methods/POST/") {
        Some(Filter::Methods)
    } else if filter.starts_with("$iothub/twin/res/") {
        Some(Filter::TwinResponses)
    } else if filter.starts_with("$iothub/twin/PATCH/properties/desired/") {
        Some(Filter::Desired)
    } else if is_cloud_to_device(filter, id) {
        Some(Filter::CloudToDevice)
    } else {
        None
    }
}

/// `devices/{id}/messages/devicebound/#`, where IoT Hub also takes `+` for the device id (the
/// Embedded C SDK subscribes to `devices/+/messages/devicebound/#`); it reaches this device
/// only.
fn is_cloud_to_device(filter: &str, id: &str) -> bool {
    let root = topic_root(id);
    // Modules receive routed messages on their inputs (none are sent either).
    filter == format!("{root}/inputs/#")
        || filter
            .strip_prefix("devices/")
            .and_then(|rest| rest.strip_suffix("/messages/devicebound/#"))
            .is_some_and(|target| target == "+" || format!("devices/{target}") == root)
}

/// The `$rid` (and other properties) of a topic's `?a=b&c=d` tail.
fn topic_param<'t>(topic: &'t str, name: &str) -> Option<&'t str> {
    let (_, query) = topic.split_once('?')?;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Session<'_> {
    fn id(&self) -> &str {
        self.link.client()
    }

    fn handle(&self, packet: Packet) -> Step {
        match packet {
            Packet::PingReq => Step::Reply(Packet::PingResp),
            Packet::Subscribe(s) => Step::Reply(Packet::SubAck(self.subscribe(s))),
            Packet::Unsubscribe(u) => {
                let off = |f: fn(&Filter) -> bool| {
                    u.topics
                        .iter()
                        .any(|t| classify(t, self.id()).as_ref().is_some_and(f))
                        .then_some(false)
                };
                self.link
                    .incoming(Incoming::Subscriptions(SubscriptionChange {
                        methods: off(|f| matches!(f, Filter::Methods)),
                        desired: off(|f| matches!(f, Filter::Desired)),
                        cloud_to_device: off(|f| matches!(f, Filter::CloudToDevice)),
                    }));
                Step::Reply(Packet::UnsubAck(UnsubAck::new(u.pkid)))
            }
            Packet::Publish(p) => self.publish(p),
            // Cloud-to-device acknowledgements are the serving loop's; anything else ends it.
            Packet::PubAck(_) => Step::Nothing,
            _ => Step::Close,
        }
    }

    fn subscribe(&self, s: Subscribe) -> SubAck {
        let (mut methods, mut desired, mut messages) = (None, None, false);
        let codes = s
            .filters
            .iter()
            .map(|f| match classify(&f.path, self.id()) {
                Some(kind) => {
                    match kind {
                        Filter::Methods => methods = Some(true),
                        Filter::Desired => desired = Some(true),
                        Filter::CloudToDevice => messages = true,
                        Filter::TwinResponses => {}
                    }
                    // The hub delivers at most QoS 1.
                    let qos = if f.qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    SubscribeReasonCode::Success(qos)
                }
                None => SubscribeReasonCode::Failure,
            })
            .collect();
        // Queued cloud-to-device messages follow the SUBACK (they are published from the
        // downlink).
        self.link
            .incoming(Incoming::Subscriptions(SubscriptionChange {
                methods,
                desired,
                cloud_to_device: messages.then_some(true),
            }));
        SubAck::new(s.pkid, codes)
    }

    fn publish(&self, p: Publish) -> Step {
        // IoT Hub does not support QoS 2: such a publish ends the connection.
        if p.qos == QoS::ExactlyOnce {
            return Step::Close;
        }
        let topic = p.topic.as_str();
        let handled = if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
            let status = rest.split('/').next().and_then(|s| s.parse::<i64>().ok());
            match (status, topic_param(topic, "$rid")) {
                (Some(status), Some(request_id)) => {
                    self.link.incoming(Incoming::MethodAnswer {
                        request_id,
                        status,
                        body: p.payload.clone(),
                    });
                    true
                }
                _ => false,
            }
        } else if topic.starts_with("$iothub/twin/GET/") {
            self.twin(topic_param(topic, "$rid"), TwinOp::Get)
        } else if topic.starts_with("$iothub/twin/PATCH/properties/reported/") {
            self.twin(topic_param(topic, "$rid"), TwinOp::Report(&p.payload))
        } else if let Some(bag) =
            topic.strip_prefix(&format!("{}/messages/events/", topic_root(self.id())))
        {
            let (properties, system) = from_property_bag(bag);
            let stored = self.link.telemetry(DeviceMessage {
                client: self.id().to_string(),
                via: topic.to_string(),
                body: p.payload.clone(),
                properties,
                system,
                auth: None,
                ..Default::default()
            });
            // Not stored: no PUBACK; the connection closes and the device sends it again.
            if let Err(e) = stored {
                eprintln!(
                    "iothub-emulator: a message of {} was not saved: {e}",
                    self.id()
                );
                return Step::Close;
            }
            true
        } else {
            false
        };
        if !handled {
            // The hub disconnects a device that publishes where it may not.
            return Step::Close;
        }
        if p.qos == QoS::AtLeastOnce {
            Step::Reply(Packet::PubAck(PubAck::new(p.pkid)))
        } else {
            Step::Nothing
        }
    }

    /// Answers a twin request (`$rid` required) on the downlink, after its PUBACK.
    fn twin(&self, rid: Option<&str>, op: TwinOp) -> bool {
        let Some(rid) = rid else { return false };
        self.link.incoming(Incoming::Twin {
            request_id: rid.to_string(),
            op,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_name_the_device_or_module_of_the_client_id() {
        let v = "?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4";
        assert!(username_names(&format!("h:1/d1/{v}"), "d1"));
        assert!(username_names(&format!("h:1/d1/m1/{v}"), "d1/m1"));
        assert!(username_names("h/d1/", "d1"));
        // A module's username for the device's client id, and the other way round.
        assert!(!username_names(&format!("h/d1/m1/{v}"), "d1"));
        assert!(!username_names(&format!("h/d1/{v}"), "d1/m1"));
        assert!(!username_names(&format!("h/d1/m2/{v}"), "d1/m1"));
        assert!(!username_names(&format!("h/d10/{v}"), "d1"));
        assert!(!username_names("d1", "d1"));
    }

    #[test]
    fn module_topics_live_below_the_module() {
        assert_eq!(topic_root("d1"), "devices/d1");
        assert_eq!(topic_root("d1/m1"), "devices/d1/modules/m1");
        assert!(matches!(
            classify("devices/d1/modules/m1/inputs/#", "d1/m1"),
            Some(Filter::CloudToDevice)
        ));
        assert!(classify("devices/d1/modules/m2/inputs/#", "d1/m1").is_none());
        assert!(matches!(
            classify("devices/d1/messages/devicebound/#", "d1"),
            Some(Filter::CloudToDevice)
        ));
    }

    #[test]
    fn wildcard_subscriptions_where_iot_hub_takes_them() {
        let kind = |f: &str| classify(f, "d1").map(|k| std::mem::discriminant(&k));
        let c2d = Some(std::mem::discriminant(&Filter::CloudToDevice));
        assert_eq!(kind("devices/d1/messages/devicebound/#"), c2d);
        assert_eq!(kind("devices/+/messages/devicebound/#"), c2d);
        for refused in [
            "devices/d2/messages/devicebound/#",
            "devices/#",
            "#",
            "+/d1/messages/devicebound/#",
            "devices/+/messages/events/#",
            "devices/d1/messages/devicebound/+",
        ] {
            assert!(kind(refused).is_none(), "{refused}");
        }
        assert!(matches!(
            classify("$iothub/methods/POST/#", "d1"),
            Some(Filter::Methods)
        ));
        assert!(matches!(
            classify("$iothub/twin/PATCH/properties/desired/#", "d1"),
            Some(Filter::Desired)
        ));
    }
}
