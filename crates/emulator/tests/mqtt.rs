//! The device side over real MQTT-over-TLS with a Rust MQTT client (rumqttc): admission,
//! twin GET and reported PATCH, refused subscriptions, one session per device, QoS 2 closing.
//! Method routing to real device code is covered by `__test__/devices-mqtt.test.mjs`.

mod common;

use std::time::Duration;

use common::{start, Hub};
use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use serde_json::Value;

trait MqttClient {
    fn client(&self, device_id: &str, key: &[u8]) -> (AsyncClient, EventLoop);
    fn client_with(&self, device_id: &str, key: &[u8], clean: bool) -> (AsyncClient, EventLoop);
}

impl MqttClient for Hub {
    fn client(&self, device_id: &str, key: &[u8]) -> (AsyncClient, EventLoop) {
        self.client_with(device_id, key, true)
    }

    fn client_with(&self, device_id: &str, key: &[u8], clean: bool) -> (AsyncClient, EventLoop) {
        let mut opts = MqttOptions::new(device_id, "127.0.0.1", self.port);
        opts.set_credentials(
            format!("{}/{device_id}/?api-version=2021-04-12", self.host_name),
            self.device_token(device_id, key),
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(clean);
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            self.tls.clone(),
        )));
        AsyncClient::new(opts, 16)
    }
}

/// The next incoming packet, within a generous bound.
async fn next(events: &mut EventLoop) -> Result<Packet, String> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.poll())
            .await
            .map_err(|_| "no packet within 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        if let Event::Incoming(p) = event {
            return Ok(p);
        }
    }
}

/// Reads until the hub closes the connection; the client's description of how it ended.
async fn closed_by_hub(events: &mut EventLoop) -> String {
    loop {
        if let Err(e) = next(events).await {
            return e;
        }
    }
}

async fn connack(events: &mut EventLoop) -> ConnectReturnCode {
    connack_with_session(events).await.0
}

/// The CONNACK's return code and its "session present" flag.
async fn connack_with_session(events: &mut EventLoop) -> (ConnectReturnCode, bool) {
    match next(events).await {
        Ok(Packet::ConnAck(ConnAck {
            code,
            session_present,
        })) => (code, session_present),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn admission_twin_and_subscriptions() {
    let hub = start("2").await;
    let key = hub.policy_key.clone();

    let (_bad, mut bad_events) = hub.client("device-0000", b"not the key");
    let refused = bad_events.poll().await;
    assert!(
        format!("{refused:?}").contains("BadUserNamePassword"),
        "{refused:?}"
    );
    let (_unknown, mut unknown_events) = hub.client("nobody", &key);
    assert!(format!("{:?}", unknown_events.poll().await).contains("NotAuthorized"));

    let (client, mut events) = hub.client("device-0000", &key);
    assert_eq!(connack(&mut events).await, ConnectReturnCode::Success);
    client
        .subscribe("$iothub/twin/res/#", QoS::AtMostOnce)
        .await
        .unwrap();
    client
        .subscribe("some/other/topic", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        if let Packet::SubAck(s) = next(&mut events).await.unwrap() {
            codes.extend(s.return_codes);
        }
    }
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Failure
        ]
    );

    client
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=7",
            QoS::AtMostOnce,
            false,
            r#"{"fw":"1.2"}"#,
        )
        .await
        .unwrap();
    client
        .publish("$iothub/twin/GET/?$rid=8", QoS::AtMostOnce, false, "")
        .await
        .unwrap();
    let mut reported_version = None;
    let mut twin = None;
    while twin.is_none() {
        if let Packet::Publish(p) = next(&mut events).await.unwrap() {
            if p.topic
                .starts_with("$iothub/twin/res/204/?$rid=7&$version=")
            {
                reported_version = p.topic.rsplit('=').next().map(str::to_string);
            } else if p.topic == "$iothub/twin/res/200/?$rid=8" {
                twin = Some(serde_json::from_slice::<Value>(&p.payload).unwrap());
            }
        }
    }
    let twin = twin.unwrap();
    assert_eq!(twin["reported"]["fw"], "1.2");
    assert_eq!(
        twin["reported"]["$version"].to_string(),
        reported_version.expect("the PATCH was answered before the GET")
    );

    // A second connection with the same id takes over; the first is closed by the hub.
    let (_second, mut second_events) = hub.client("device-0000", &key);
    assert_eq!(
        connack(&mut second_events).await,
        ConnectReturnCode::Success
    );
    let dropped = closed_by_hub(&mut events).await;
    assert!(!dropped.is_empty());
    hub.stop().await;
}

#[tokio::test]
async fn qos2_publish_closes_the_connection() {
    let hub = start("1").await;
    let (client, mut events) = hub.client("device-0000", &hub.policy_key.clone());
    assert_eq!(connack(&mut events).await, ConnectReturnCode::Success);
    client
        .publish(
            "devices/device-0000/messages/events/",
            QoS::ExactlyOnce,
            false,
            "x",
        )
        .await
        .unwrap();
    let closed = closed_by_hub(&mut events).await;
    assert!(!closed.is_empty());
    hub.stop().await;
}

#[tokio::test]
async fn a_port_of_its_own_and_a_hostname_alias() {
    let hub = common::start_with(&[
        "--devices",
        "1",
        "--mqtt-port",
        "0",
        "--hostname",
        "myhub.local",
    ])
    .await;
    let mqtt_port = hub.line["mqttPort"].as_u64().unwrap() as u16;
    assert_ne!(mqtt_port, hub.port);

    // The server certificate names the alias.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", mqtt_port))
        .await
        .unwrap();
    let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from("myhub.local").unwrap();
    tokio_rustls::TlsConnector::from(hub.tls.clone())
        .connect(server_name, tcp)
        .await
        .expect("the certificate names --hostname");

    // MQTT on its own port, with a token whose sr names the hub by its alias.
    let mut alias_hub = hub;
    alias_hub.host_name = "myhub.local".into();
    let mut opts = MqttOptions::new("device-0000", "127.0.0.1", mqtt_port);
    opts.set_credentials(
        "myhub.local/device-0000/?api-version=2021-04-12",
        alias_hub.device_token("device-0000", &alias_hub.policy_key),
    );
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        alias_hub.tls.clone(),
    )));
    let (_client, mut events) = AsyncClient::new(opts, 16);
    assert_eq!(connack(&mut events).await, ConnectReturnCode::Success);
    alias_hub.stop().await;
}

/// Clean session 0 keeps the subscriptions for the next connection of the same client id
/// (the device SDKs reconnect after a SAS renewal without subscribing again); clean session 1
/// discards them. "Session present" in the CONNACK says which happened.
#[tokio::test]
async fn persistent_sessions_keep_their_subscriptions() {
    let hub = start("1").await;
    let key = hub.policy_key.clone();
    let connect = |clean: bool| {
        let (client, mut events) = hub.client_with("device-0000", &key, clean);
        async move {
            let (code, present) = connack_with_session(&mut events).await;
            assert_eq!(code, ConnectReturnCode::Success);
            (client, events, present)
        }
    };

    let (client, mut events, present) = connect(false).await;
    assert!(!present, "nothing to resume on the first connection");
    client
        .subscribe("$iothub/methods/POST/#", QoS::AtMostOnce)
        .await
        .unwrap();
    assert!(matches!(next(&mut events).await, Ok(Packet::SubAck(_))));
    client.disconnect().await.unwrap();
    closed_by_hub(&mut events).await;

    let (client, mut events, present) = connect(false).await;
    assert!(present, "the persistent session is resumed");
    client.disconnect().await.unwrap();
    closed_by_hub(&mut events).await;

    let (client, mut events, present) = connect(true).await;
    assert!(!present, "a clean session starts empty");
    client.disconnect().await.unwrap();
    closed_by_hub(&mut events).await;

    let (_client, _events, present) = connect(false).await;
    assert!(!present, "the clean session discarded what was kept");
    hub.stop().await;
}
