//! The device side over AMQP 1.0, as Azure IoT device SDKs speak it: after TLS (terminated by
//! the server, on the HTTPS port or `--amqp-port`) or a WebSocket (`AMQPWSB10`, see
//! `websocket.rs`), the plain AMQP header (protocol id 0: Node, C#) or a SASL layer first
//! (`sasl.rs`: Java's ANONYMOUS, the C SDK's MSSBCBS, PLAIN), then CBS put-tokens on `$cbs` and
//! the device links; an x509 device puts no token, its TLS certificate admits its links.
//! `fe2o3-amqp`'s acceptors run the connection, sessions and links; what a link address means,
//! who may attach it (`cbs.rs`, `login.rs`), and what travels on it (`device.rs`) are this
//! module's; hub rules stay behind `Hub::admit` and each client's `DeviceLink` (opened when its
//! first link attaches, dropped when the connection ends).
//!
//! Links served: `$cbs` (put-token), `/devices/{id}/messages/events` (telemetry),
//! `/devices/{id}/methods/devicebound` (direct methods, a sender and a receiver),
//! `/devices/{id}/twin` (twin GET, reported PATCH, desired notifications) and
//! `/devices/{id}/messages/devicebound` (cloud-to-device messages, settled by the device);
//! modules under `/devices/{id}/modules/{mid}/…`. The service's links (`service.rs`, with a
//! policy token): `/messages/devicebound` (azure-iothub's `Client.send`),
//! `/messages/serviceBound/feedback` and `/messages/serviceBound/filenotifications`; a reader
//! at `messages/events/…` is redirected to the built-in events endpoint (`events.rs`).
//! Addresses match case-insensitively and may be absolute (`amqps://{host}/devices/…`).

mod cbs;
mod device;
mod events;
mod fault;
mod file_notifications;
mod login;
mod message;
mod padding;
mod sasl;
mod service;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fe2o3_amqp::acceptor::error::AcceptorAttachError;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SessionAcceptor,
    SupportedReceiverSettleModes, SupportedSenderSettleModes,
};
use fe2o3_amqp::types::definitions::{
    AmqpError, Error as AmqpErrorBody, ReceiverSettleMode, Role, SenderSettleMode,
};
use fe2o3_amqp::types::messaging::{Body, Message};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Receiver, Sender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::AbortHandle;

use crate::gateway_fault::FaultKind;
use crate::hub::{ConnectOptions, DeviceLink, Hub, Incoming, SubscriptionChange};
use crate::locks::lock;
use crate::x509::CertChain;
use cbs::Grantee;

/// The first byte of every AMQP protocol header (`AMQP…`); no HTTP method or MQTT packet
/// starts with it.
pub const HEADER_START: u8 = b'A';
/// The header this server answers one it does not serve with: AMQP 1.0 without SASL (what
/// most IoT Hub SDKs send first).
const PLAIN_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// How long a closing connection waits for its sessions' End before closing anyway.
const SESSION_END_WAIT: Duration = Duration::from_secs(2);
/// A client must send its protocol header this soon after the TLS handshake.
const HEADER_WAIT: Duration = Duration::from_secs(10);

/// What an 8-byte AMQP protocol header asks for (AMQP 1.0 §2.2, §5.1, §5.2).
#[derive(Debug, PartialEq)]
pub enum Header {
    /// Protocol id 0: AMQP straight away (IoT Hub's CBS clients: Node, C#).
    Plain,
    /// Protocol id 3: a SASL layer first (Java's ANONYMOUS, the C SDK's MSSBCBS).
    Sasl,
    /// Protocol id 2: TLS inside AMQP (never used by IoT Hub clients, which start with TLS).
    Tls,
    /// Not an AMQP 1.0 header.
    Other,
}

pub fn classify(header: &[u8; 8]) -> Header {
    match header {
        [b'A', b'M', b'Q', b'P', 0, 1, 0, 0] => Header::Plain,
        [b'A', b'M', b'Q', b'P', 3, 1, 0, 0] => Header::Sasl,
        [b'A', b'M', b'Q', b'P', 2, 1, 0, 0] => Header::Tls,
        _ => Header::Other,
    }
}

/// An outgoing AMQP message of any body (the links carry JSON in data sections).
type AmqpMessage = Message<Body<Value>>;

/// What the hub sends on one link. It exists before the link attaches, so a message sent in
/// between (a CBS reply or twin answer racing the attach of the client's receiver) waits for it
/// instead of being lost.
struct Outbox<T = AmqpMessage> {
    tx: mpsc::UnboundedSender<T>,
    waiting: Option<mpsc::UnboundedReceiver<T>>,
}

impl<T> Outbox<T> {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Outbox {
            tx,
            waiting: Some(rx),
        }
    }

    /// The receiving end for a link that attaches (a fresh one when a link had it before).
    fn attach(&mut self) -> mpsc::UnboundedReceiver<T> {
        self.waiting.take().unwrap_or_else(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.tx = tx;
            rx
        })
    }

    fn send(&self, message: T) {
        let _ = self.tx.send(message);
    }
}

/// Serves one TLS-terminated (or WebSocket-carried) connection whose first byte (`A`) has been
/// peeked, not consumed; `client_chain` is the certificate chain the client sent in the TLS
/// handshake (an x509 device's identity).
pub async fn serve<S>(hub: Arc<Hub>, stream: S, client_chain: CertChain)
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    serve_scoped(hub, stream, client_chain, Scope::Hub).await
}

/// Serves one connection of the events endpoint's plain AMQP port (`--events-port`): no TLS,
/// and only the endpoint's links (and `$cbs`) are served on it.
pub async fn serve_plain_events<S>(hub: Arc<Hub>, stream: S)
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    serve_scoped(hub, stream, CertChain::default(), Scope::EventsOnly).await
}

/// Which links a connection serves.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Every link: devices, the service, the events endpoint.
    Hub,
    /// The events endpoint's and `$cbs` (the plain port).
    EventsOnly,
}

async fn serve_scoped<S>(hub: Arc<Hub>, stream: S, client_chain: CertChain, scope: Scope)
where
    S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut header = [0u8; 8];
    match tokio::time::timeout(HEADER_WAIT, rd.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let kind = classify(&header);
    if !matches!(kind, Header::Plain | Header::Sasl) {
        // AMQP 1.0 §2.2: a server answers a header it does not serve with the one it does,
        // then closes; the client knows at once what to retry with.
        if kind == Header::Tls {
            eprintln!("iothub-emulator: AMQP-TLS header refused (IoT Hub clients start with TLS)");
        }
        let _ = wr.write_all(&PLAIN_HEADER).await;
        let _ = wr.shutdown().await;
        return;
    }
    // fe2o3 reads the header itself: hand it back in front of the rest of the stream.
    // Every frame goes out with all its fields (`padding.rs`: Python's pyamqp needs them), and
    // a gateway fault can sever the write half (`fault.rs`).
    let conn = Arc::new(Conn::new(hub.clone(), client_chain, scope));
    let wr = fault::Severable::new(padding::PaddedWriter::new(wr), conn.severed.clone());
    let io = tokio::io::join(std::io::Cursor::new(header).chain(rd), wr);
    let acceptor = ConnectionAcceptor::builder().container_id("iothub-emulator");
    let opened = if kind == Header::Sasl {
        let mechanisms = sasl::Mechanisms::new(hub);
        let opened = acceptor
            .sasl_acceptor(mechanisms.clone())
            .build()
            .accept(io)
            .await;
        if let Some(grant) = lock(&mechanisms.granted).take() {
            conn.grant(grant);
        }
        opened
    } else {
        acceptor.build().accept(io).await
    };
    let Ok(mut connection) = opened else {
        return;
    };
    let sessions = SessionAcceptor::new();
    let mut serving = tokio::task::JoinSet::new();
    let closed_by_hub = loop {
        tokio::select! {
            session = sessions.accept(&mut connection) => match session {
                Ok(session) => { serving.spawn(conn.clone().serve_session(session)); }
                Err(_) => break false,
            },
            _ = conn.closed.notified() => break true,
        }
    };
    if closed_by_hub && !conn.abrupt.load(Ordering::Relaxed) {
        // Sessions end before the connection closes: the SDKs then drop their links at once
        // instead of waiting (up to 45 s in Node's) for detaches a closed connection never sends.
        conn.closing.send_replace(true);
        let _ = tokio::time::timeout(SESSION_END_WAIT, serving.join_all()).await;
    }
    let close_error = lock(&conn.close_error).take();
    let _ = match close_error {
        Some(error) => connection.close_with_error(error).await,
        None => connection.close().await,
    };
    conn.release();
}

/// What a link address names.
#[derive(Debug, PartialEq)]
pub enum Address {
    Cbs,
    Telemetry(String),
    Methods(String),
    Twin(String),
    CloudToDevice(String),
    /// The service's side: it sends cloud-to-device messages here.
    ServiceCloudToDevice,
    /// The service's side: delivery feedback and file-upload notifications come from here.
    Feedback,
    FileNotifications,
    /// `messages/events/{rest}`: the built-in endpoint as the hub names it; a reader there is
    /// redirected to the endpoint itself (`events.rs`).
    BuiltInEvents(String),
    Unknown,
}

/// Parses a link address (relative or `amqps://host/…`; fixed parts case-insensitive) into
/// what it names, with the client id (`{deviceId}` or `{deviceId}/{moduleId}`).
pub fn parse_address(address: &str) -> Address {
    let path = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => address.trim_start_matches('/'),
    };
    if path.eq_ignore_ascii_case("$cbs") {
        return Address::Cbs;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    let (client, rest) = match segments.as_slice() {
        [a, b, rest @ ..] if is(a, "messages") && is(b, "events") => {
            return Address::BuiltInEvents(rest.join("/"))
        }
        [a, b] if is(a, "messages") && is(b, "devicebound") => {
            return Address::ServiceCloudToDevice
        }
        [a, b, c] if is(a, "messages") && is(b, "serviceBound") => {
            return match *c {
                c if is(c, "feedback") => Address::Feedback,
                c if is(c, "filenotifications") => Address::FileNotifications,
                _ => Address::Unknown,
            };
        }
        [devices, d, modules, m, rest @ ..] if is(devices, "devices") && is(modules, "modules") => {
            (format!("{d}/{m}"), rest)
        }
        [devices, d, rest @ ..] if is(devices, "devices") => (d.to_string(), rest),
        _ => return Address::Unknown,
    };
    if client.is_empty() || client.split('/').any(str::is_empty) {
        return Address::Unknown;
    }
    match rest {
        [a, b] if is(a, "messages") && is(b, "events") => Address::Telemetry(client),
        [a, b] if is(a, "methods") && is(b, "devicebound") => Address::Methods(client),
        [a] if is(a, "twin") => Address::Twin(client),
        [a, b] if is(a, "messages") && is(b, "devicebound") => Address::CloudToDevice(client),
        _ => Address::Unknown,
    }
}

impl Address {
    /// The device or module whose link this is (whose login it needs).
    fn client(&self) -> Option<&str> {
        match self {
            Address::Telemetry(c)
            | Address::Methods(c)
            | Address::Twin(c)
            | Address::CloudToDevice(c) => Some(c),
            _ => None,
        }
    }

    /// A link of the service's (a policy token's): cloud-to-device sends and their feedback,
    /// the built-in endpoint's readers.
    fn is_service(&self) -> bool {
        matches!(
            self,
            Address::ServiceCloudToDevice
                | Address::Feedback
                | Address::FileNotifications
                | Address::BuiltInEvents(_)
        )
    }
}

/// The links the hub sends a client messages on.
#[derive(Clone, Copy)]
enum Link {
    Methods,
    Twin,
    /// A cloud-to-device message and the lock token its disposition settles.
    CloudToDevice(u64),
}

/// The outboxes of one client's links on this connection, and its link to the hub (dropped
/// with the entry: the client is disconnected).
struct Client {
    link: Arc<DeviceLink>,
    methods: Outbox,
    twin: Outbox,
    /// Cloud-to-device messages with their lock tokens.
    cloud_to_device: Outbox<(u64, AmqpMessage)>,
}

/// One AMQP connection: the clients it may act for, and their links.
struct Conn {
    hub: Arc<Hub>,
    /// What the client sent in the TLS handshake (empty unless it is an x509 device).
    client_chain: CertChain,
    scope: Scope,
    /// This connection's number on the events endpoint (its `$management` reply links).
    events_connection: u64,
    /// The clients (or the service) logged in on this connection, each with the task that
    /// closes the connection when its token expires (none for a certificate).
    authorized: Mutex<HashMap<Grantee, Option<AbortHandle>>>,
    cbs_replies: Mutex<Outbox>,
    clients: Mutex<HashMap<String, Client>>,
    /// Signalled when the hub closes a session of this connection (takeover, fault, reset).
    closed: Notify,
    /// Set when the connection is closing: every session ends.
    closing: watch::Sender<bool>,
    /// The error the hub closes the connection with (a token that expired, a fault).
    close_error: Mutex<Option<AmqpErrorBody>>,
    /// The session and link faults asked of this connection (`fault.rs`).
    kills: watch::Sender<fault::Kills>,
    /// Set by a `KillTcp` fault: the stream's writes fail, no AMQP close leaves.
    severed: Arc<AtomicBool>,
    /// The hub cuts the connection without ending its sessions first (`KillTcp`).
    abrupt: AtomicBool,
}

impl Conn {
    fn new(hub: Arc<Hub>, client_chain: CertChain, scope: Scope) -> Self {
        Conn {
            events_connection: hub.events().replies.connection(),
            hub,
            client_chain,
            scope,
            authorized: Mutex::default(),
            cbs_replies: Mutex::new(Outbox::new()),
            clients: Mutex::default(),
            closed: Notify::new(),
            closing: watch::Sender::new(false),
            close_error: Mutex::default(),
            kills: watch::Sender::default(),
            severed: Arc::default(),
            abrupt: AtomicBool::new(false),
        }
    }

    /// Carries out a fault the hub sent `client`; true when the connection is to close.
    fn carry_out(&self, client: &str, fault: crate::gateway_fault::GatewayFault) -> bool {
        match fault::carry(&self.kills, client, fault) {
            fault::Carry::CutTcp => {
                self.severed.store(true, Ordering::Relaxed);
                self.abrupt.store(true, Ordering::Relaxed);
                true
            }
            // Sessions end first, as for any close by the hub (or the SDKs wait for detaches).
            fault::Carry::Close(error) => {
                *lock(&self.close_error) = error;
                true
            }
            fault::Carry::Signalled | fault::Carry::Nothing => false,
        }
    }

    async fn serve_session(self: Arc<Self>, mut session: ListenerSessionHandle) {
        // The hub settles what it receives in the first mode, whatever the sender asks: uamqp
        // (Python's azure-iot-hub) attaches its sender asking for the second mode and waits
        // for a settled disposition, which a receiver in the second mode never sends first.
        let links = || {
            LinkAcceptor::builder()
                .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
                .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        };
        // The events endpoint sends its events and `$management` replies settled, whatever the
        // receiver asks: pyamqp (Python's azure-eventhub) asks for unsettled and never settles
        // an event, so a sender that waits for its settlement would stop after the first.
        let events_links = links()
            .supported_sender_settle_modes(SupportedSenderSettleModes::Settled)
            .fallback_sender_settle_mode(SenderSettleMode::Settled)
            .build();
        let links = links().build();
        let mut closing = self.closing.subscribe();
        let killed = fault::killed(&self.kills, None, FaultKind::KillAmqpSession);
        tokio::pin!(killed);
        loop {
            let attach = tokio::select! {
                attach = session.next_incoming_attach() => Ok(attach),
                _ = closing.wait_for(|c| *c) => Err(None),
                error = &mut killed => Err(Some(error)),
            };
            let attach = match attach {
                Ok(attach) => attach,
                Err(None) => {
                    let _ = session.end().await;
                    break;
                }
                // A fault ends the session with its reason.
                Err(Some(error)) => {
                    let _ = session.end_with_error(error).await;
                    break;
                }
            };
            let Some(attach) = attach else { break };
            // The events endpoint's receivers ask for an epoch in the link properties, which
            // only the client's attach carries.
            let epoch = crate::events::link::epoch(attach.properties.as_ref());
            let source = attach.source.as_ref().and_then(|s| s.address.as_deref());
            let acceptor = match (&attach.role, source) {
                (&Role::Receiver, Some(source)) if self.events_node(source).is_some() => {
                    &events_links
                }
                _ => &links,
            };
            match acceptor.accept_incoming_attach(attach, &mut session).await {
                Ok(LinkEndpoint::Sender(sender)) => {
                    self.clone().sender_attached(sender, epoch).await
                }
                Ok(LinkEndpoint::Receiver(receiver)) => {
                    self.clone().receiver_attached(receiver).await
                }
                Err(AcceptorAttachError::SessionStopped(_)) => break,
                Err(_) => continue,
            }
        }
    }

    /// A link the client receives on (ours sends): `$cbs` replies, methods, twin, C2D.
    async fn sender_attached(self: Arc<Self>, sender: Sender, epoch: Option<i64>) {
        let address = sender
            .source()
            .as_ref()
            .and_then(|s| s.address.clone())
            .unwrap_or_default();
        if let Some(node) = self.events_node(&address) {
            return self.events_sender(sender, node, epoch).await;
        }
        let source = self.scoped(parse_address(&address));
        if let Err(refused) = self.admit_link(&source) {
            let _ = sender.close_with_error(refused).await;
            return;
        }
        let killed = self.link_killed(&source, true);
        let outbox = match source {
            Address::Cbs => lock(&self.cbs_replies).attach(),
            Address::Methods(client) => {
                let (outbox, link) =
                    self.with_client(&client, |c| (c.methods.attach(), c.link.clone()));
                link.incoming(Incoming::Subscriptions(SubscriptionChange {
                    methods: Some(true),
                    ..Default::default()
                }));
                outbox
            }
            Address::Twin(client) => self.with_client(&client, |c| c.twin.attach()),
            Address::CloudToDevice(client) => {
                let (outbox, link) =
                    self.with_client(&client, |c| (c.cloud_to_device.attach(), c.link.clone()));
                tokio::spawn(device::pump_cloud_to_device(link, sender, outbox, killed));
                return;
            }
            Address::Feedback => {
                tokio::spawn(service::feedback(self.hub.clone(), sender));
                return;
            }
            Address::FileNotifications => {
                tokio::spawn(file_notifications::serve(self.hub.clone(), sender));
                return;
            }
            Address::BuiltInEvents(rest) => {
                tokio::spawn(events::redirect(sender, self.hub.events().redirect(&rest)));
                return;
            }
            Address::Telemetry(_) | Address::ServiceCloudToDevice | Address::Unknown => {
                let text = format!("no such node to receive from: {address}");
                let err = AmqpErrorBody::new(AmqpError::NotFound, Some(text), None);
                let _ = sender.close_with_error(err).await;
                return;
            }
        };
        tokio::spawn(device::pump(sender, outbox, killed));
    }

    /// Resolves with the error a fault detaches the link at `address` with (the hub's side
    /// sends on it when `sending`).
    fn link_killed(
        &self,
        address: &Address,
        sending: bool,
    ) -> impl std::future::Future<Output = AmqpErrorBody> + Send + 'static {
        let client = address.client().map(str::to_string);
        let kind = address.fault_kind(sending);
        let killed = kind.map(|kind| fault::killed(&self.kills, client, kind));
        async move {
            match killed {
                Some(killed) => killed.await,
                None => std::future::pending().await,
            }
        }
    }

    /// A link the client sends on (ours receives): `$cbs` requests, telemetry, method
    /// answers, twin requests.
    async fn receiver_attached(self: Arc<Self>, receiver: Receiver) {
        let address = receiver
            .target()
            .as_ref()
            .and_then(|t| t.address.clone())
            .unwrap_or_default();
        if let Some(node) = self.events_node(&address) {
            return self.events_receiver(receiver, node).await;
        }
        let target = self.scoped(parse_address(&address));
        if let Err(refused) = self.admit_link(&target) {
            let _ = receiver.close_with_error(refused).await;
            return;
        }
        match &target {
            Address::Cbs => {}
            Address::Telemetry(client) | Address::Methods(client) | Address::Twin(client) => {
                self.with_client(client, |_| ());
            }
            Address::ServiceCloudToDevice => {
                tokio::spawn(service::receive(self.hub.clone(), receiver));
                return;
            }
            Address::CloudToDevice(_)
            | Address::Feedback
            | Address::FileNotifications
            | Address::BuiltInEvents(_)
            | Address::Unknown => {
                let text = format!("no such node to send to: {address}");
                let err = AmqpErrorBody::new(AmqpError::NotFound, Some(text), None);
                let _ = receiver.close_with_error(err).await;
                return;
            }
        }
        let killed = self.link_killed(&target, false);
        tokio::spawn(device::receive(self, receiver, target, address, killed));
    }

    /// What an address names on this connection: on the events endpoint's plain port, only
    /// `$cbs` besides the endpoint's own links (which never reach here).
    fn scoped(&self, address: Address) -> Address {
        match (self.scope, address) {
            (Scope::EventsOnly, Address::Cbs) => Address::Cbs,
            (Scope::EventsOnly, _) => Address::Unknown,
            (Scope::Hub, address) => address,
        }
    }

    /// Runs `f` on the client's entry, connecting it to the hub (the device is connected from
    /// its first link on) when this connection has none yet.
    fn with_client<T>(self: &Arc<Self>, client: &str, f: impl FnOnce(&mut Client) -> T) -> T {
        let mut clients = lock(&self.clients);
        let entry = clients.entry(client.to_string()).or_insert_with(|| {
            // AMQP has no persistent sessions: every connection starts clean.
            let options = ConnectOptions {
                clean_session: true,
            };
            let (link, downlink) = self.hub.connect(client, options);
            tokio::spawn(self.clone().deliver(client.to_string(), downlink));
            Client {
                link: Arc::new(link),
                methods: Outbox::new(),
                twin: Outbox::new(),
                cloud_to_device: Outbox::new(),
            }
        });
        f(entry)
    }

    /// The client's link to the hub on this connection, if its first link attached.
    fn link_of(&self, client: &str) -> Option<Arc<DeviceLink>> {
        lock(&self.clients).get(client).map(|c| c.link.clone())
    }

    /// Queues a message on a client's link (sent once the link is attached).
    fn send(&self, client: &str, link: Link, message: AmqpMessage) {
        if let Some(c) = lock(&self.clients).get(client) {
            match link {
                Link::Methods => c.methods.send(message),
                Link::Twin => c.twin.send(message),
                Link::CloudToDevice(token) => c.cloud_to_device.send((token, message)),
            }
        }
    }

    /// Drops the links this connection held (the devices are disconnected once their last
    /// link task lets go) and the watches of its tokens.
    fn release(&self) {
        for expiry in lock(&self.authorized).drain().filter_map(|(_, e)| e) {
            expiry.abort();
        }
        lock(&self.clients).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_headers_are_told_apart() {
        assert_eq!(classify(b"AMQP\x00\x01\x00\x00"), Header::Plain);
        assert_eq!(classify(b"AMQP\x03\x01\x00\x00"), Header::Sasl);
        assert_eq!(classify(b"AMQP\x02\x01\x00\x00"), Header::Tls);
        assert_eq!(classify(b"AMQP\x00\x00\x09\x01"), Header::Other); // AMQP 0-9-1
        assert_eq!(classify(b"ABCDEFGH"), Header::Other);
    }

    #[test]
    fn link_addresses_name_the_node_and_client_in_any_case() {
        let t = |id: &str| Address::Telemetry(id.to_string());
        assert_eq!(parse_address("$cbs"), Address::Cbs);
        assert_eq!(parse_address("/devices/d1/messages/events"), t("d1"));
        assert_eq!(parse_address("/devices/d1/Messages/Events"), t("d1"));
        assert_eq!(
            parse_address("amqps://h.azure-devices.net/devices/d1/messages/events"),
            t("d1")
        );
        assert_eq!(
            parse_address("/devices/d1/modules/m1/messages/events"),
            t("d1/m1")
        );
        assert_eq!(
            parse_address("/DEVICES/Dev-A/methods/deviceBound"),
            Address::Methods("Dev-A".into())
        );
        assert_eq!(
            parse_address("/devices/d1/twin"),
            Address::Twin("d1".into())
        );
        assert_eq!(
            parse_address("/devices/d1/messages/deviceBound"),
            Address::CloudToDevice("d1".into())
        );
        assert_eq!(
            parse_address("/messages/devicebound"),
            Address::ServiceCloudToDevice
        );
        assert_eq!(
            parse_address("amqps://h/messages/serviceBound/feedback"),
            Address::Feedback
        );
        assert_eq!(
            parse_address("/messages/servicebound/fileNotifications"),
            Address::FileNotifications
        );
        let events = |rest: &str| Address::BuiltInEvents(rest.to_string());
        assert_eq!(parse_address("messages/events/"), events(""));
        assert_eq!(parse_address("messages/events"), events(""));
        assert_eq!(
            parse_address("amqps://h/messages/events/$management"),
            events("$management")
        );
        assert_eq!(
            parse_address("/Messages/Events/ConsumerGroups/$Default/Partitions/0"),
            events("ConsumerGroups/$Default/Partitions/0")
        );
        for unknown in [
            "",
            "/messages/serviceBound/other",
            "/devices",
            "/devices//twin",
            "/devices/d1/other",
            "/twin/d1",
        ] {
            assert_eq!(parse_address(unknown), Address::Unknown, "{unknown}");
        }
    }
}
