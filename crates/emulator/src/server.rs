//! HTTPS serving: TLS accept on every listener, HTTP/1.1 keep-alive connections (hyper), and
//! the per-request pipeline: WebSocket upgrade, control API bypass, recording, faults,
//! api-version, auth, routing.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::api::{self, ApiRequest, Reply};
use crate::clock::wall_ms;
use crate::control;
use crate::device_http;
use crate::errors::{ApiError, ErrorCode};
use crate::faults::FaultKind;
use crate::hub::Hub;
use crate::listeners::Front;
use crate::record::RecordedRequest;
use crate::response::{json_response, Body};
use crate::x509::CertChain;
use crate::{amqp, mqtt, websocket};

/// Largest request body accepted (a method payload is at most 128 KB; twins are small).
const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// The first byte of an MQTT CONNECT packet.
const MQTT_CONNECT: u8 = 0x10;
/// A client of the events endpoint's plain port must send its first byte this soon.
const FIRST_BYTE_WAIT: Duration = Duration::from_secs(10);

/// Returned to hyper to make it close the connection without writing a response.
#[derive(Debug)]
struct CloseConnection(&'static str);

impl fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection closed by fault injection ({})", self.0)
    }
}

impl std::error::Error for CloseConnection {}

fn error_response(hub: &Hub, err: &ApiError) -> Response<Body> {
    let mut res = json_response(err.status(), err.envelope(hub.clock().now()).into_bytes());
    if let Ok(v) = HeaderValue::from_str(err.code.name()) {
        res.headers_mut().insert("iothub-errorcode", v);
    }
    res
}

fn reply_response(reply: Reply) -> Response<Body> {
    let mut res = match reply.body {
        Some(body) => json_response(reply.status, body),
        None => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = reply.status;
            r
        }
    };
    for (name, value) in reply.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(v)) = (name, HeaderValue::from_str(&value)) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}

/// Accepts connections on every listener until `shutdown` resolves.
pub async fn serve(
    hub: Arc<Hub>,
    listeners: Vec<(TcpListener, Front)>,
    acceptor: TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(listener, front)| {
            tokio::spawn(accept_loop(hub.clone(), listener, front, acceptor.clone()))
        })
        .collect();
    shutdown.await;
    for accept in loops {
        accept.abort();
    }
}

async fn accept_loop(hub: Arc<Hub>, listener: TcpListener, front: Front, acceptor: TlsAcceptor) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Usually EMFILE under load: back off briefly instead of spinning.
                eprintln!("iothub-emulator: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(hub.clone(), tcp, peer, front, acceptor.clone()));
    }
}

async fn connection(
    hub: Arc<Hub>,
    tcp: TcpStream,
    peer: SocketAddr,
    front: Front,
    acceptor: TlsAcceptor,
) {
    if front == Front::PlainEvents {
        // Plain AMQP (Event Hubs clients with `UseDevelopmentEmulator=true`), or TLS as on the
        // HTTPS port: the same clients over WebSockets dial `wss://` on the `Endpoint`'s port.
        let mut first = [0u8; 1];
        match tokio::time::timeout(FIRST_BYTE_WAIT, tcp.peek(&mut first)).await {
            Ok(Ok(1)) if first[0] == amqp::HEADER_START => {
                return amqp::serve_plain_events(hub, tcp).await
            }
            Ok(Ok(1)) => {}
            _ => return,
        }
    }
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    // What an x509 device presented; the hub judges it when the device logs in.
    let client_chain: CertChain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    match front {
        Front::Mqtt => return mqtt::serve(hub, tls, client_chain).await,
        Front::Amqp => return amqp::serve(hub, tls, client_chain).await,
        Front::Https | Front::PlainEvents => {}
    }
    // Devices speak MQTT and AMQP on the same port: an MQTT CONNECT starts with 0x10, an AMQP
    // header with `A`, and no HTTP request does either. The byte is only peeked, so every
    // protocol reads it.
    let mut stream = BufReader::new(tls);
    match stream.fill_buf().await {
        Ok([MQTT_CONNECT, ..]) => return mqtt::serve(hub, stream, client_chain).await,
        Ok([amqp::HEADER_START, ..]) => return amqp::serve(hub, stream, client_chain).await,
        Ok([_, ..]) => {}
        _ => return,
    }
    let service = service_fn(move |req| handle(hub.clone(), peer, client_chain.clone(), req));
    // Errors here are clients going away or injected resets: nothing to report.
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

fn decode_segments(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

async fn handle(
    hub: Arc<Hub>,
    peer: SocketAddr,
    client_chain: CertChain,
    req: Request<Incoming>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    if websocket::serves(req.uri().path()) {
        // An MQTT session or AMQP connection; it authenticates itself, like over TCP.
        return Ok(websocket::upgrade(hub, req, client_chain));
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let err = ApiError::new(ErrorCode::MessageTooLarge, "The request body is too large");
            return Ok(error_response(&hub, &err));
        }
    };
    let path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let query = decode_query(raw_query);
    let segments = decode_segments(path);

    if segments.first().map(String::as_str) == Some("_emulator") {
        // The control API has no auth, so it only answers on loopback; faults never apply.
        if !peer.ip().is_loopback() && !peer.ip().to_canonical().is_loopback() {
            return Ok(json_response(
                StatusCode::FORBIDDEN,
                br#"{"error":"the control API answers loopback peers only"}"#.to_vec(),
            ));
        }
        return Ok(control::handle(
            &hub,
            &parts.method,
            &segments[1..],
            &query,
            &body,
        ));
    }

    let decision = hub.decide_fault();
    if decision.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
    }
    let mut record = RecordedRequest {
        time_ms: wall_ms(),
        method: parts.method.to_string(),
        path: path.to_string(),
        query: raw_query.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: None,
        fault: decision.fault.map(FaultKind::label),
    };

    let injected = match decision.fault {
        Some(FaultKind::Reset) => {
            hub.recorder().push(record);
            return Err(Box::new(CloseConnection("reset")));
        }
        Some(FaultKind::Throttle429) => Some(ApiError::new(
            ErrorCode::ThrottlingException,
            "Injected fault: throttled",
        )),
        Some(FaultKind::Unavailable503) => Some(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Injected fault: service unavailable",
        )),
        Some(FaultKind::ServerError500) => Some(ApiError::new(
            ErrorCode::ServerError,
            "Injected fault: internal server error",
        )),
        Some(FaultKind::Drop) | None => None,
    };
    let result = match injected {
        Some(err) => Err(err),
        None => process(&hub, &parts, &segments, &query, &body, &client_chain).await,
    };
    let response = match result {
        Ok(reply) => reply_response(reply),
        Err(err) => error_response(&hub, &err),
    };
    record.status = Some(response.status().as_u16());
    hub.recorder().push(record);
    if decision.fault == Some(FaultKind::Drop) {
        // The operation is committed; the answer is lost.
        return Err(Box::new(CloseConnection("drop")));
    }
    Ok(response)
}

async fn process(
    hub: &Hub,
    parts: &hyper::http::request::Parts,
    segments: &[String],
    query: &[(String, String)],
    body: &Bytes,
    client_chain: &CertChain,
) -> Result<Reply, ApiError> {
    if !query
        .iter()
        .any(|(k, v)| k == "api-version" && !v.is_empty())
    {
        return Err(ApiError::new(
            ErrorCode::InvalidProtocolVersion,
            "The api-version query parameter is required (for example api-version=2021-04-12)",
        ));
    }
    if device_http::is_device_path(segments) {
        // Device-facing endpoints authenticate the device, not a policy.
        return device_http::handle(
            hub,
            &parts.method,
            segments,
            query,
            &parts.headers,
            body,
            client_chain,
        )
        .await;
    }
    let auth = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    hub.authorize_service(auth)?;
    let req = ApiRequest {
        method: &parts.method,
        segments,
        query,
        headers: &parts.headers,
        body,
    };
    match (&parts.method, segments) {
        // The one call that waits for a device: answered asynchronously.
        (&hyper::Method::POST, [twins, id, methods])
            if twins == "twins" && methods == "methods" =>
        {
            api::invoke_method(hub, id, None, &req).await
        }
        (&hyper::Method::POST, [twins, id, modules, mid, methods])
            if twins == "twins" && modules == "modules" && methods == "methods" =>
        {
            api::invoke_method(hub, id, Some(mid), &req).await
        }
        _ => api::route(hub, &req),
    }
}
