//! A device's link to the hub: what a transport (MQTT, AMQP, their WebSocket forms) holds for
//! one connected device or module. `Hub::connect` opens it (the session, takeover of an older
//! one, connection state, pending cloud-to-device messages); what the hub sends the device
//! arrives on its `Downlink`; what the device sends enters through `DeviceLink::incoming`; and
//! dropping the link disconnects the device. The session lifecycle and the twin round trip are
//! written here once, so a transport only decodes and encodes.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Hub;
use crate::device_message::DeviceMessage;
use crate::devices::cloud_to_device::Settle;
use crate::devices::{Outgoing, TwinAnswer, TwinRequest};
use crate::store::StoreError;

/// How a device connects.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions {
    /// MQTT clean session 1 (AMQP is always clean): false keeps the subscriptions of the
    /// device's previous persistent session.
    pub clean_session: bool,
}

/// What the hub sends a connected device (`Outgoing::Close` when its session is closed by a
/// takeover, a fault or a reset); the transport encodes each.
pub struct Downlink(mpsc::UnboundedReceiver<Outgoing>);

impl Downlink {
    /// The next message for the device; `None` when the hub forgot the session.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        self.0.recv().await
    }
}

/// A twin operation a device asks for on its own twin.
pub enum TwinOp<'a> {
    Get,
    /// A reported-properties patch as the device sent it.
    Report(&'a [u8]),
    /// Desired-property notifications on (`true`) or off (AMQP asks on the twin link).
    NotifyDesired(bool),
    /// An operation the hub does not serve: answered 400.
    Unsupported,
}

/// What a device's session subscribes to or leaves (`None`: unchanged).
#[derive(Clone, Copy, Debug, Default)]
pub struct SubscriptionChange {
    pub methods: Option<bool>,
    pub desired: Option<bool>,
    pub cloud_to_device: Option<bool>,
}

/// What a connected device sends the hub, decoded by its transport.
/// (Telemetry is `DeviceLink::telemetry`: its sender is answered only once it is stored.)
pub enum Incoming<'a> {
    /// The answer to a direct method call, by the call's request id.
    MethodAnswer {
        request_id: &'a str,
        status: i64,
        body: Bytes,
    },
    /// A twin request, answered on the downlink (`Outgoing::TwinAnswer`) with its request id.
    Twin {
        request_id: String,
        op: TwinOp<'a>,
    },
    /// A cloud-to-device message settled by its lock token (a failed store write is logged by
    /// the store: neither MQTT's PUBACK nor an AMQP disposition can be refused).
    Settled {
        lock_token: u64,
        how: Settle,
    },
    Subscriptions(SubscriptionChange),
    /// Anything heard from the device (its last activity time).
    Activity,
}

/// One connected device or module; dropping it disconnects it.
pub struct DeviceLink {
    hub: Arc<Hub>,
    client: String,
    serial: u64,
    session_present: bool,
}

impl Hub {
    /// Connects `client` (a device, or `{deviceId}/{moduleId}`), admitted by `Hub::admit`:
    /// opens its session (an older one of the same client is closed: one session per device),
    /// marks it connected and sends the cloud-to-device messages a persistent session that
    /// listened has waiting.
    pub fn connect(
        self: &Arc<Self>,
        client: &str,
        options: ConnectOptions,
    ) -> (DeviceLink, Downlink) {
        let (serial, outgoing, session_present) =
            self.devices.sessions.open(client, options.clean_session);
        let now = self.clock.now_ms();
        self.devices.set_connected(client, true, now);
        self.connection_changed(client, true);
        self.devices.deliver_cloud_to_device(client, now);
        let link = DeviceLink {
            hub: self.clone(),
            client: client.to_string(),
            serial,
            session_present,
        };
        (link, Downlink(outgoing))
    }
}

impl DeviceLink {
    pub fn client(&self) -> &str {
        &self.client
    }

    /// MQTT's "session present": the subscriptions of a persistent session carried over.
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// Takes a device-to-cloud message (`Hub::device_message`); `Ok` once it is stored, when
    /// the transport may acknowledge it (its activity is `Incoming::Activity`).
    pub fn telemetry(&self, message: DeviceMessage) -> Result<(), StoreError> {
        self.hub.device_message(message)
    }

    /// Takes what the device sent.
    pub fn incoming(&self, incoming: Incoming<'_>) {
        let hub = &self.hub;
        let id = self.client.as_str();
        match incoming {
            Incoming::MethodAnswer {
                request_id,
                status,
                body,
            } => hub
                .devices
                .sessions
                .method_answered(id, request_id, status, body),
            Incoming::Twin { request_id, op } => {
                let answer = self.twin(op);
                hub.devices
                    .sessions
                    .send(id, Outgoing::TwinAnswer { request_id, answer });
            }
            Incoming::Settled { lock_token, how } => {
                let now = hub.clock.now_ms();
                let _ = hub.devices.settle_cloud_to_device(id, lock_token, how, now);
            }
            Incoming::Subscriptions(change) => self.subscribe(change),
            Incoming::Activity => hub.touch(id),
        }
    }

    fn twin(&self, op: TwinOp<'_>) -> TwinAnswer {
        let hub = &self.hub;
        let now = hub.clock.now_ms();
        let bare = |status| TwinAnswer {
            status,
            version: None,
            body: Vec::new(),
        };
        match op {
            TwinOp::Get => hub.devices.answer_twin(&self.client, TwinRequest::Get, now),
            TwinOp::Report(patch) => {
                let answer = hub
                    .devices
                    .answer_twin(&self.client, TwinRequest::Report(patch), now);
                if answer.status == 204 {
                    self.reported_changed(patch);
                }
                answer
            }
            TwinOp::NotifyDesired(on) => {
                self.subscribe(SubscriptionChange {
                    desired: Some(on),
                    ..Default::default()
                });
                bare(200)
            }
            TwinOp::Unsupported => bare(400),
        }
    }

    /// A reported patch was stored: its twin-change event.
    fn reported_changed(&self, patch: &[u8]) {
        let hub = &self.hub;
        let (Ok(reported), Some(twin)) = (
            serde_json::from_slice::<serde_json::Value>(patch),
            hub.twin_of(&self.client),
        ) else {
            return;
        };
        let change = serde_json::json!({ "properties": { "reported": reported } });
        hub.twin_changed(&self.client, super::TwinChange::Update, &change, &twin);
    }

    fn subscribe(&self, change: SubscriptionChange) {
        let hub = &self.hub;
        let (id, serial) = (self.client.as_str(), self.serial);
        let sessions = &hub.devices.sessions;
        if change.methods.is_some() || change.desired.is_some() {
            sessions.set_subscriptions(id, serial, change.methods, change.desired);
        }
        match change.cloud_to_device {
            // Queued messages follow on the downlink.
            Some(true) => hub
                .devices
                .listen_cloud_to_device(id, serial, hub.clock.now_ms()),
            Some(false) => sessions.set_cloud_to_device(id, serial, false),
            None => {}
        }
    }
}

impl Drop for DeviceLink {
    /// The device is disconnected, unless a newer session of it took over; a persistent
    /// session's subscriptions are kept for its next connection.
    fn drop(&mut self) {
        let hub = &self.hub;
        if hub.devices.sessions.close(&self.client, self.serial) {
            hub.devices
                .set_connected(&self.client, false, hub.clock.now_ms());
            hub.connection_changed(&self.client, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::Authenticator;
    use crate::cli::UnknownJob;
    use crate::devices::Seed;
    use crate::faults::FaultSpec;
    use crate::hub::HubConfig;

    fn hub() -> Arc<Hub> {
        let config = HubConfig {
            host_name: "hub.test:1".into(),
            unknown_job: UnknownJob::NotFound,
            tier: None,
            initial_devices: Seed::from_json(
                json!([{"deviceId": "d1", "method": {"offline": true}}]),
            )
            .unwrap(),
            events: Default::default(),
        };
        let auth = Authenticator::new(vec!["hub.test:1".into()], vec![], vec![]);
        Hub::new(config, auth, FaultSpec::default()).unwrap()
    }

    fn state(hub: &Hub) -> String {
        hub.devices.twin("d1").unwrap()["connectionState"]
            .as_str()
            .unwrap()
            .to_string()
    }

    const PERSISTENT: ConnectOptions = ConnectOptions {
        clean_session: false,
    };

    #[tokio::test]
    async fn a_dropped_link_disconnects_and_a_persistent_session_keeps_its_subscriptions() {
        let hub = hub();
        assert_eq!(state(&hub), "Disconnected");
        let (link, _downlink) = hub.connect("d1", PERSISTENT);
        assert!(!link.session_present());
        assert_eq!(state(&hub), "Connected");
        link.incoming(Incoming::Subscriptions(SubscriptionChange {
            methods: Some(true),
            ..Default::default()
        }));
        drop(link);
        assert_eq!(state(&hub), "Disconnected");
        assert_eq!(hub.devices.sessions.connected_count(), 0);
        // The next persistent connection finds its subscriptions; a clean one does not.
        let (link, _downlink) = hub.connect("d1", PERSISTENT);
        assert!(link.session_present());
        drop(link);
        let clean = ConnectOptions {
            clean_session: true,
        };
        let (link, _downlink) = hub.connect("d1", clean);
        assert!(!link.session_present());
    }

    #[tokio::test]
    async fn a_takeover_closes_the_older_link_and_its_drop_leaves_the_newer_connected() {
        let hub = hub();
        let (old, mut old_downlink) = hub.connect("d1", PERSISTENT);
        let (new, _downlink) = hub.connect("d1", PERSISTENT);
        assert!(matches!(old_downlink.recv().await, Some(Outgoing::Close)));
        drop(old);
        assert_eq!(state(&hub), "Connected");
        drop(new);
        assert_eq!(state(&hub), "Disconnected");
    }
}
