//! Where every message that may reach the `events` endpoint goes: device telemetry and the
//! hub's own events (twin changes, lifecycle, connection state, device jobs), built here as the
//! service emits them and routed by `Hub::route`, the one place routing is applied.

use std::sync::Weak;

use serde_json::{json, Value};

use super::Hub;
use crate::clock::iso;
use crate::device_message::{DeviceMessage, MessageSource, SystemProperties};
use crate::devices::split_client;
use crate::jobs::model::RowStatus;
use crate::jobs::{EndedDeviceJob, JobListener};
use crate::routing::{Routing, RoutingError, RoutingSpec};
use crate::store::StoreError;

/// Twin changes: a merge (`PATCH`, a reported patch) or a replacement (`PUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinChange {
    Update,
    Replace,
}

impl TwinChange {
    pub fn of(replace: bool) -> Self {
        if replace {
            TwinChange::Replace
        } else {
            TwinChange::Update
        }
    }
}

impl Hub {
    /// The routing in force (`GET /_emulator/routing`).
    pub fn routing(&self) -> RoutingSpec {
        self.router.current().spec().clone()
    }

    /// Replaces the routing, stored before it returns (with a data dir it outlives a
    /// restart); the one-line error says what the service would refuse.
    pub fn set_routing(&self, spec: RoutingSpec) -> Result<(), RoutingError> {
        self.router
            .set(&self.devices.store, Routing::new(spec)?)
            .map_err(|e| RoutingError(format!("the hub could not save the routing: {e}")))
    }

    /// The routing a new hub starts with (the seed's); a reset goes back to it. The routing a
    /// previous run on the data dir set through the control API stays in force over it.
    pub fn set_initial_routing(&self, routing: Routing) -> Result<(), RoutingError> {
        self.router.set_initial(&self.devices.store, routing)
    }

    /// Sends `message` to the `events` endpoint if a route (or the fallback route) takes it,
    /// with the enrichments added; returns once it is stored (with a data dir), so that its
    /// sender is answered only then.
    pub fn route(&self, mut message: DeviceMessage) -> Result<(), StoreError> {
        let routing = self.router.current();
        let now = self.clock.now_ms();
        let twin = routing
            .reads_twin()
            .then(|| self.twin_of(&message.client))
            .flatten();
        if !routing.delivers(&message, now, twin.as_ref()) {
            return Ok(());
        }
        for (key, value) in routing.enrichments(&self.config.events.name, twin.as_ref()) {
            message.properties.retain(|(k, _)| *k != key);
            message.properties.push((key, value));
        }
        self.events
            .append(&self.devices.store, message, now)
            .map(drop)
    }

    /// The twin of a device or module (`{deviceId}/{moduleId}`), as the service API shows it.
    pub(crate) fn twin_of(&self, client: &str) -> Option<Value> {
        match split_client(client) {
            (device, Some(module)) => self.devices.module_twin(device, module).ok(),
            (device, None) => self.devices.twin(device).ok(),
        }
    }

    /// Whether a route reads `source`: the hub's own events are built only then.
    pub(super) fn routed(&self, source: MessageSource) -> bool {
        self.router.current().reads_source(source)
    }

    /// One of the hub's own events about `client`, as the service emits it: a JSON body, its
    /// `opType` and schema in the application properties.
    fn notify(
        &self,
        client: &str,
        source: MessageSource,
        op_type: &str,
        schema: &str,
        body: Value,
    ) {
        let (device, module) = split_client(client);
        let mut properties = vec![
            ("hubName".to_string(), self.config.events.name.clone()),
            ("deviceId".to_string(), device.to_string()),
        ];
        if let Some(module) = module {
            properties.push(("moduleId".into(), module.to_string()));
        }
        properties.extend([
            ("opType".to_string(), op_type.to_string()),
            ("operationTimestamp".to_string(), iso(self.clock.now_ms())),
            ("iothub-message-schema".to_string(), schema.to_string()),
        ]);
        // The hub's own events have no sender to answer: a failed store says so in the log.
        let routed = self.route(DeviceMessage {
            client: client.to_string(),
            via: source.route_name().to_string(),
            body: body.to_string().into_bytes().into(),
            properties,
            system: SystemProperties {
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
                ..Default::default()
            },
            auth: None,
            source,
        });
        if let Err(e) = routed {
            eprintln!(
                "iothub-emulator: a {} event was not saved: {e}",
                source.route_name()
            );
        }
    }

    /// A twin's tags or desired or reported properties changed: the changed part (`patch`,
    /// as written) with the twin's new version (`twin`, after the change).
    pub(crate) fn twin_changed(
        &self,
        client: &str,
        change: TwinChange,
        patch: &Value,
        twin: &Value,
    ) {
        if !self.routed(MessageSource::TwinChangeEvents) {
            return;
        }
        let mut body = serde_json::Map::new();
        body.insert(
            "version".into(),
            twin.get("version").cloned().unwrap_or(Value::Null),
        );
        if let Some(tags) = patch.get("tags") {
            body.insert("tags".into(), tags.clone());
        }
        let mut properties = serde_json::Map::new();
        for kind in ["desired", "reported"] {
            let Some(Value::Object(changed)) = patch.pointer(&format!("/properties/{kind}")) else {
                continue;
            };
            let mut changed = changed.clone();
            if let Some(v) = twin.pointer(&format!("/properties/{kind}/$version")) {
                changed.insert("$version".into(), v.clone());
            }
            properties.insert(kind.into(), Value::Object(changed));
        }
        if !properties.is_empty() {
            body.insert("properties".into(), Value::Object(properties));
        }
        let op_type = match change {
            TwinChange::Update => "updateTwin",
            TwinChange::Replace => "replaceTwin",
        };
        self.notify(
            client,
            MessageSource::TwinChangeEvents,
            op_type,
            "twinChangeNotification",
            Value::Object(body),
        );
    }

    /// A twin job merged `patch` into the twin of `client`.
    pub(crate) fn twin_patched(&self, client: &str, patch: &Value) {
        if !self.routed(MessageSource::TwinChangeEvents) {
            return;
        }
        if let Some(twin) = self.twin_of(client) {
            self.twin_changed(client, TwinChange::Update, patch, &twin);
        }
    }

    /// A device or module identity was created (`twin`: its new twin) or deleted (`twin`: the
    /// twin it had).
    pub(crate) fn identity_changed(&self, client: &str, created: bool, twin: Value) {
        if !self.routed(MessageSource::DeviceLifecycleEvents) {
            return;
        }
        let op_type = if created {
            "createDeviceIdentity"
        } else {
            "deleteDeviceIdentity"
        };
        self.notify(
            client,
            MessageSource::DeviceLifecycleEvents,
            op_type,
            "deviceLifecycleNotification",
            twin,
        );
    }

    /// A device's (or module's) job ended: its `devices.jobs` row is the body. IoT Hub names
    /// the source but documents no body for it; this mirrors the other sources' events.
    pub(crate) fn device_job_ended(&self, ended: &EndedDeviceJob) {
        if !self.routed(MessageSource::DeviceJobLifecycleEvents) {
            return;
        }
        let op_type = match ended.status {
            RowStatus::Completed => "deviceJobCompleted",
            RowStatus::Failed => "deviceJobFailed",
            RowStatus::Canceled => "deviceJobCanceled",
            // Rows are told of only once they ended.
            RowStatus::Pending | RowStatus::Running => return,
        };
        self.notify(
            &ended.client,
            MessageSource::DeviceJobLifecycleEvents,
            op_type,
            "deviceJobLifecycleNotification",
            ended.row.clone(),
        );
    }

    /// A device or module connected or disconnected.
    pub(crate) fn connection_changed(&self, client: &str, connected: bool) {
        if !self.routed(MessageSource::DeviceConnectionStateEvents) {
            return;
        }
        let op_type = if connected {
            "deviceConnected"
        } else {
            "deviceDisconnected"
        };
        let sequence = self.router.next_connection_sequence(self.clock.now_ms());
        self.notify(
            client,
            MessageSource::DeviceConnectionStateEvents,
            op_type,
            "deviceConnectionStateNotification",
            json!({ "sequenceNumber": sequence }),
        );
    }
}

/// The job engine's way to the hub's events (weak: the engine lives in the hub).
pub(super) struct JobEvents(pub Weak<Hub>);

impl JobListener for JobEvents {
    fn twin_patched(&self, client: &str, patch: &Value) {
        if let Some(hub) = self.0.upgrade() {
            hub.twin_patched(client, patch);
        }
    }

    fn wants_device_jobs(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|hub| hub.routed(MessageSource::DeviceJobLifecycleEvents))
    }

    fn device_job_ended(&self, ended: &EndedDeviceJob) {
        if let Some(hub) = self.0.upgrade() {
            hub.device_job_ended(ended);
        }
    }
}
