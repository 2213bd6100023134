//! MQTT over WebSockets on the HTTPS port (`/$iothub/websocket`): the upgrade's subprotocol
//! negotiation, what a plain GET on that path gets, an MQTT session carried in binary frames,
//! a socket closed in the middle of a frame, and the test gateway's faults on such a session.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{start, Hub};
use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Login, Packet, Publish};
use rumqttc::mqttbytes::QoS;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

async fn tls(hub: &Hub) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", hub.port)).await.unwrap();
    TlsConnector::from(hub.tls.clone())
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends one HTTP/1.1 request and reads the whole answer (the hub closes after it).
async fn http(hub: &Hub, request: &str) -> String {
    let mut stream = tls(hub).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn handshake(
    hub: &Hub,
    subprotocol: Option<&str>,
) -> Result<(WebSocketStream<TlsStream<TcpStream>>, Option<String>), WsError> {
    let mut req = format!("wss://127.0.0.1:{}/$iothub/websocket", hub.port)
        .into_client_request()
        .unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let (ws, res) = tokio_tungstenite::client_async(req, tls(hub).await).await?;
    let chosen = res
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    Ok((ws, chosen))
}

fn encode(packet: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.write(&mut out, 1 << 20).unwrap();
    out.to_vec()
}

/// CONNECT as `device-0000` in one binary message; the CONNACK code that comes back.
async fn connect(hub: &Hub, ws: &mut WebSocketStream<TlsStream<TcpStream>>) -> ConnectReturnCode {
    let mut connect = Connect::new("device-0000");
    connect.login = Some(Login::new(
        format!("{}/device-0000/?api-version=2021-04-12", hub.host_name),
        hub.device_token("device-0000", &hub.policy_key),
    ));
    ws.send(Message::Binary(encode(Packet::Connect(connect)).into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut bytes = BytesMut::from(&reply.into_data()[..]);
    match Packet::read(&mut bytes, 1 << 20).unwrap() {
        Packet::ConnAck(ConnAck { code, .. }) => code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn connected_devices(hub: &Hub) -> u64 {
    let res = http(
        hub,
        "GET /_emulator/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body: Value = serde_json::from_str(res.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    body["connectedDevices"].as_u64().unwrap()
}

#[tokio::test]
async fn upgrade_negotiates_the_mqtt_subprotocol() {
    let hub = start("1").await;
    assert_eq!(hub.line["websocketPath"], "/$iothub/websocket");

    // Offered among others, in the C SDK's spelling too: the hub picks it as the client wrote it.
    for (offer, chosen) in [("mqtt", "mqtt"), ("chat, MQTT", "MQTT")] {
        let (mut ws, picked) = handshake(&hub, Some(offer)).await.unwrap();
        assert_eq!(picked.as_deref(), Some(chosen));
        assert_eq!(connect(&hub, &mut ws).await, ConnectReturnCode::Success);
        // A ping is answered by the codec, then MQTT PINGREQ by the session.
        ws.send(Message::Binary(encode(Packet::PingReq).into()))
            .await
            .unwrap();
        let pong = ws.next().await.unwrap().unwrap();
        assert_eq!(pong.into_data().as_ref(), [0xd0, 0x00]);
        ws.close(None).await.unwrap();
    }

    // Without the subprotocol (or with only another one) the hub refuses with 400. (AMQPWSB10
    // is served too: see tests/amqp.rs.)
    for offer in [None, Some("chat")] {
        match handshake(&hub, offer).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), 400, "{offer:?}"),
            other => panic!("{offer:?}: expected a 400, got {:?}", other.map(|r| r.1)),
        }
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_plain_get_on_the_websocket_path_is_a_bad_request() {
    let hub = start("0").await;
    let res = http(
        &hub,
        "GET /$iothub/websocket HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    assert!(res.contains("WebSocket upgrade"), "{res}");
    // No api-version or Authorization is needed to reach it, and it is not a REST path.
    let res = http(
        &hub,
        "POST /$iothub/websocket HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 400"), "{res}");
    hub.stop().await;
}

#[tokio::test]
async fn a_socket_closed_mid_frame_ends_the_session() {
    let hub = start("1").await;
    let (mut ws, _) = handshake(&hub, Some("mqtt")).await.unwrap();
    assert_eq!(connect(&hub, &mut ws).await, ConnectReturnCode::Success);
    assert_eq!(connected_devices(&hub).await, 1);

    // The header of a masked binary frame announcing 300 bytes, 10 of them, then the socket
    // goes away without a close frame.
    let raw = ws.get_mut();
    raw.write_all(&[0x82, 0xfe, 0x01, 0x2c, 1, 2, 3, 4])
        .await
        .unwrap();
    raw.write_all(&[0u8; 10]).await.unwrap();
    raw.shutdown().await.unwrap();
    drop(ws);

    let mut waited = 0;
    while connected_devices(&hub).await != 0 {
        assert!(waited < 100, "the session outlived its socket");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    // The hub serves on: the device connects again.
    let (mut ws, _) = handshake(&hub, Some("mqtt")).await.unwrap();
    assert_eq!(connect(&hub, &mut ws).await, ConnectReturnCode::Success);
    hub.stop().await;
}

/// `KillTcp` severs the connection: the socket ends with no WebSocket close frame (the test
/// gateway cuts TCP). `ShutDownMqtt` closes it cleanly: a close frame (MQTT 3.1.1 has no
/// server DISCONNECT).
#[tokio::test]
async fn kill_tcp_cuts_the_websocket_and_shut_down_mqtt_closes_it() {
    let hub = start("1").await;
    for (kind, clean) in [("KillTcp", false), ("ShutDownMqtt", true)] {
        let (mut ws, _) = handshake(&hub, Some("mqtt")).await.unwrap();
        assert_eq!(connect(&hub, &mut ws).await, ConnectReturnCode::Success);
        let topic = format!(
            "devices/device-0000/messages/events/AzIoTHub_FaultOperationType={kind}&AzIoTHub_FaultOperationDelayInSecs=0"
        );
        let fault = Publish::new(topic, QoS::AtMostOnce, Vec::new());
        ws.send(Message::Binary(encode(Packet::Publish(fault)).into()))
            .await
            .unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the connection ends");
        match end {
            Some(Ok(Message::Close(_))) => assert!(clean, "{kind}: a close frame"),
            Some(Err(_)) | None => assert!(!clean, "{kind}: no close frame"),
            Some(Ok(other)) => panic!("{kind}: expected the end, got {other:?}"),
        }
    }
    hub.stop().await;
}
