//! MQTT and AMQP over WebSockets: `GET /$iothub/websocket` on the HTTPS port, as every device
//! SDK's WebSocket transport dials it (`wss://{host}:443/$iothub/websocket`), subprotocol `mqtt`
//! for MQTT and `AMQPWSB10` for AMQP (device SDKs' `AmqpWs`, azure-iothub's `AmqpWs`); and
//! `/$servicebus/websocket`, the path uamqp-based clients (Python's azure-iot-hub with
//! `AmqpOverWebsocket`) open, which serves AMQP alike.
//!
//! hyper answers the upgrade request; frames are then read and written by `tokio-tungstenite`
//! (a kept WebSocket codec: masking, fragmentation, ping/pong, close), and `ByteStream` turns the
//! binary messages back into a byte stream, so the session code (`mqtt::serve`, `amqp::serve`)
//! runs unchanged and never knows which transport carries it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::hub::Hub;
use crate::response::{json_response, Body};
use crate::x509::CertChain;
use crate::{amqp, mqtt};

/// The path device SDKs open their WebSocket on.
pub const PATH: &str = "/$iothub/websocket";
/// The path uamqp opens its WebSocket on (with a trailing slash).
const SERVICEBUS_PATH: &str = "/$servicebus/websocket";

/// True when a request's path is one of the hub's WebSocket endpoints.
pub fn serves(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == PATH || path == SERVICEBUS_PATH
}

/// The subprotocol of MQTT over WebSockets (the C SDK spells it `MQTT`).
const MQTT_SUBPROTOCOL: &str = "mqtt";
/// The subprotocol of AMQP 1.0 over WebSockets (OASIS AMQP WebSocket Binding).
const AMQP_SUBPROTOCOL: &str = "AMQPWSB10";

/// Largest WebSocket message accepted (MQTT packets are at most 512 KB; AMQP frames here at
/// most fe2o3-amqp's default max-frame-size, 64 KiB).
const MAX_MESSAGE: usize = 1024 * 1024;
/// The read chunk of a WebSocket connection (tungstenite grows it for larger frames).
const READ_BUFFER: usize = 4096;

fn header_has_token(headers: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client's spelling of `subprotocol`, when it offers it.
fn offered(headers: &HeaderMap, subprotocol: &str) -> Option<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| p.eq_ignore_ascii_case(subprotocol))
        .map(str::to_string)
}

/// The protocol a WebSocket carries.
#[derive(Clone, Copy)]
enum Carried {
    Mqtt,
    Amqp,
}

fn bad_request(text: &str) -> Response<Body> {
    let body = serde_json::json!({ "Message": text }).to_string();
    json_response(StatusCode::BAD_REQUEST, body.into_bytes())
}

/// Answers a request on a WebSocket endpoint ([`serves`]): `101 Switching Protocols` for a WebSocket handshake offering
/// the `mqtt` or the `AMQPWSB10` subprotocol (then the connection becomes an MQTT session or an
/// AMQP connection), otherwise `400 Bad Request`, which is what IoT Hub answers a plain GET or a
/// handshake without the subprotocol (MicrosoftDocs/azure-docs#21306).
pub fn upgrade(
    hub: Arc<Hub>,
    mut req: Request<Incoming>,
    client_chain: CertChain,
) -> Response<Body> {
    let headers = req.headers();
    let is_handshake = req.method() == Method::GET
        && header_has_token(headers, CONNECTION, "upgrade")
        && header_has_token(headers, UPGRADE, "websocket");
    if !is_handshake {
        return bad_request(
            "This endpoint accepts only a WebSocket upgrade (GET with Upgrade: websocket)",
        );
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut res = bad_request("Sec-WebSocket-Version must be 13");
        res.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return res;
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return bad_request("The WebSocket handshake has no Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let chosen = offered(headers, MQTT_SUBPROTOCOL)
        .map(|p| (p, Carried::Mqtt))
        .or_else(|| offered(headers, AMQP_SUBPROTOCOL).map(|p| (p, Carried::Amqp)));
    let Some((subprotocol, carried)) = chosen else {
        return bad_request("The WebSocket handshake must offer the subprotocol mqtt or AMQPWSB10");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // Small buffers: MQTT packets and AMQP frames are small, and tungstenite's 128 KiB
        // defaults would cost that much per connected device. The sessions flush themselves.
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let stream = ByteStream::new(ws);
        match carried {
            Carried::Mqtt => mqtt::serve(hub, stream, client_chain).await,
            Carried::Amqp => amqp::serve(hub, stream, client_chain).await,
        }
    });
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&subprotocol) {
        h.insert(SEC_WEBSOCKET_PROTOCOL, v);
    }
    res
}

/// A WebSocket as a byte stream: binary messages in, one binary message per write out. Ping,
/// pong and close are tungstenite's; a text message is a protocol error for MQTT and AMQP.
#[derive(Debug)]
pub struct ByteStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message received.
    pending: Bytes,
}

impl<S> ByteStream<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ByteStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(self.ws.poll_next_unpin(cx)) {
                // The end of the stream, cleanly closed or not, is the end of the MQTT session.
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT and AMQP over WebSockets take binary messages only",
                    )))
                }
                Some(Ok(_)) => {} // ping and pong: tungstenite answers pings itself
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.ws.poll_ready_unpin(cx)).map_err(io_error)?;
        self.ws
            .start_send_unpin(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws.poll_flush_unpin(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws.poll_close_unpin(cx).map_err(io_error)
    }
}
