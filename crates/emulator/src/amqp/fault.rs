//! Carrying out the test gateway's faults (`crate::gateway_fault`) on an AMQP connection: the
//! hub decides, the device's downlink brings `Outgoing::Fault`, and this connection cuts its
//! TCP stream, closes, ends its sessions or detaches the named link, each with the fault's
//! reason in its error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, LinkError};
use tokio::io::AsyncWrite;
use tokio::sync::watch;

use super::Address;
use crate::gateway_fault::{AmqpLink, FaultKind, GatewayFault};

/// The last session or link fault asked of a connection (its generation counts them, so a link
/// attached after a fault is not killed by it).
#[derive(Default)]
pub(super) struct Kills {
    generation: u64,
    /// The device whose downlink brought it.
    client: String,
    fault: Option<GatewayFault>,
}

/// What a connection does with a fault.
pub(super) enum Carry {
    /// Cut the TCP stream: no AMQP close reaches the client.
    CutTcp,
    /// Close the connection with this error (`None`: cleanly, sessions ended first).
    Close(Option<AmqpErrorBody>),
    /// Ended sessions or detached links: the connection stays.
    Signalled,
    /// Not a fault for AMQP (`ShutDownMqtt`).
    Nothing,
}

/// Carries out `fault`, brought by `client`'s downlink: session and link faults go to the
/// tasks that hold them (through `kills`); what the connection must do itself is returned.
pub(super) fn carry(kills: &watch::Sender<Kills>, client: &str, fault: GatewayFault) -> Carry {
    let description = Some(fault.reason.clone()).filter(|r| !r.is_empty());
    match fault.kind {
        FaultKind::KillTcp => Carry::CutTcp,
        // `amqp:internal-error`, which the device SDKs retry (Node's turns it into an
        // InternalServerError); `amqp:connection:forced` is a plain error there, never retried,
        // and Microsoft's suite expects a retrying client not to see this fault.
        FaultKind::KillAmqpConnection => Carry::Close(Some(AmqpErrorBody::new(
            AmqpError::InternalError,
            description,
            None,
        ))),
        FaultKind::ShutDownAmqp => Carry::Close(None),
        FaultKind::KillAmqpSession | FaultKind::KillAmqpLink(_) => {
            kills.send_modify(|k| {
                k.generation += 1;
                k.client = client.to_string();
                k.fault = Some(fault);
            });
            Carry::Signalled
        }
        FaultKind::ShutDownMqtt => Carry::Nothing,
    }
}

/// Resolves with the error to end with once a fault of `kind` is asked for `client` (`None`:
/// any client, as for the connection's CBS links and its sessions); pending forever otherwise.
/// Only faults asked after this call count.
pub(super) fn killed(
    kills: &watch::Sender<Kills>,
    client: Option<String>,
    kind: FaultKind,
) -> impl Future<Output = AmqpErrorBody> + Send + 'static {
    let mut rx = kills.subscribe();
    let start = rx.borrow().generation;
    async move {
        let hit = rx
            .wait_for(|k| {
                k.generation > start
                    && k.fault.as_ref().is_some_and(|f| f.kind == kind)
                    && client.as_deref().is_none_or(|c| c == k.client)
            })
            .await
            .ok()
            .and_then(|k| k.fault.clone());
        match hit {
            Some(fault) => {
                let description = Some(fault.reason).filter(|r| !r.is_empty());
                match kind {
                    FaultKind::KillAmqpLink(_) => {
                        AmqpErrorBody::new(LinkError::DetachForced, description, None)
                    }
                    _ => AmqpErrorBody::new(AmqpError::InternalError, description, None),
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Address {
    /// The fault kind that detaches this address's link: `sending` is the hub's side (a link
    /// the device receives on).
    pub(super) fn fault_kind(&self, sending: bool) -> Option<FaultKind> {
        use AmqpLink::*;
        let link = match (self, sending) {
            (Address::Cbs, false) => CbsRequest,
            (Address::Cbs, true) => CbsResponse,
            (Address::Telemetry(_), false) => Telemetry,
            (Address::CloudToDevice(_), true) => CloudToDevice,
            (Address::Methods(_), true) => MethodRequest,
            (Address::Methods(_), false) => MethodResponse,
            (Address::Twin(_), false) => TwinRequest,
            (Address::Twin(_), true) => TwinResponse,
            _ => return None,
        };
        Some(FaultKind::KillAmqpLink(link))
    }
}

/// The write half of a connection's stream, which a `KillTcp` fault severs: every write after
/// fails, so the AMQP close never leaves, and the stream is dropped with the connection.
#[derive(Debug)]
pub(super) struct Severable<W> {
    inner: W,
    severed: Arc<AtomicBool>,
}

impl<W> Severable<W> {
    pub(super) fn new(inner: W, severed: Arc<AtomicBool>) -> Self {
        Severable { inner, severed }
    }

    fn cut(&self) -> Option<io::Error> {
        self.severed
            .load(Ordering::Relaxed)
            .then(|| io::Error::new(io::ErrorKind::ConnectionAborted, "severed by a fault"))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Severable<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.cut() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.cut() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::parse_address;

    #[test]
    fn each_link_fault_names_one_side_of_one_address() {
        use AmqpLink::*;
        let kind = |address: &str, sending| parse_address(address).fault_kind(sending);
        let link = |l| Some(FaultKind::KillAmqpLink(l));
        assert_eq!(kind("$cbs", false), link(CbsRequest));
        assert_eq!(kind("$cbs", true), link(CbsResponse));
        assert_eq!(kind("/devices/d/messages/events", false), link(Telemetry));
        assert_eq!(
            kind("/devices/d/messages/devicebound", true),
            link(CloudToDevice)
        );
        assert_eq!(
            kind("/devices/d/methods/devicebound", true),
            link(MethodRequest)
        );
        assert_eq!(
            kind("/devices/d/methods/devicebound", false),
            link(MethodResponse)
        );
        assert_eq!(kind("/devices/d/twin", false), link(TwinRequest));
        assert_eq!(kind("/devices/d/twin", true), link(TwinResponse));
        assert_eq!(kind("/messages/devicebound", false), None);
    }

    #[tokio::test]
    async fn a_link_fault_reaches_the_links_attached_before_it_for_its_client() {
        let kills = watch::Sender::default();
        let twin = FaultKind::KillAmqpLink(AmqpLink::TwinRequest);
        let mine = tokio::spawn(killed(&kills, Some("d1".into()), twin));
        let other = tokio::spawn(killed(&kills, Some("d2".into()), twin));
        let fault = GatewayFault {
            kind: twin,
            reason: "why".into(),
        };
        assert!(matches!(carry(&kills, "d1", fault), Carry::Signalled));
        let error = mine.await.unwrap();
        assert_eq!(error.description.as_deref(), Some("why"));
        assert!(matches!(
            error.condition,
            fe2o3_amqp::types::definitions::ErrorCondition::LinkError(LinkError::DetachForced)
        ));
        // Another device's link, and a link attached after the fault, are left alone.
        let later = tokio::spawn(killed(&kills, Some("d1".into()), twin));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!other.is_finished() && !later.is_finished());
        other.abort();
        later.abort();
    }
}
