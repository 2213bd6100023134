//! One simulated device: identity, twin and direct-method behaviour, and the JSON shapes the
//! service returns for them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use super::authentication::{Authentication, Credentials};
use crate::errors::ApiError;
use crate::twin::{device_etag, TwinProperties};

use super::module::Module;
use super::shared::{random_key, time_or_never, TwinHead, NEVER};

/// How a simulated device answers direct methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodBehaviour {
    pub status: i64,
    /// Shared: every device answering the default (or one control-API setting for `*`) points
    /// at one value, and so do the device-job rows recording the answer.
    #[serde(deserialize_with = "shared_payload")]
    pub payload: Arc<Value>,
    /// Emulated milliseconds the device takes to answer.
    pub delay_ms: u64,
    /// An offline device never answers: DeviceNotOnline after the connect timeout.
    pub offline: bool,
}

fn default_payload() -> &'static Arc<Value> {
    static DEFAULT_PAYLOAD: OnceLock<Arc<Value>> = OnceLock::new();
    DEFAULT_PAYLOAD.get_or_init(|| Arc::new(json!({"ok": true})))
}

/// A stored device answering the default payload points at the shared one again (a million
/// devices read back from the store cost one payload, as they did before the restart).
fn shared_payload<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Value>, D::Error> {
    let value = Value::deserialize(d)?;
    let default = default_payload();
    Ok(if value == **default {
        default.clone()
    } else {
        Arc::new(value)
    })
}

impl Default for MethodBehaviour {
    fn default() -> Self {
        Self {
            status: 200,
            payload: default_payload().clone(),
            delay_ms: 0,
            offline: false,
        }
    }
}

/// A partial behaviour update (control API and seed files): absent fields are kept.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BehaviourPatch {
    pub status: Option<i64>,
    pub payload: Option<Value>,
    pub delay_ms: Option<u64>,
    pub offline: Option<bool>,
}

impl MethodBehaviour {
    pub fn apply(&mut self, p: &BehaviourPatch) {
        if let Some(s) = p.status {
            self.status = s;
        }
        if let Some(v) = &p.payload {
            self.payload = Arc::new(v.clone());
        }
        if let Some(d) = p.delay_ms {
            self.delay_ms = d;
        }
        if let Some(o) = p.offline {
            self.offline = o;
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn to_json(&self) -> Value {
        json!({"status": self.status, "payload": &*self.payload, "delayMs": self.delay_ms, "offline": self.offline})
    }
}

/// The last direct method a device was asked, shared with the job that asked it.
pub type MethodCallRecord = (Arc<str>, Arc<Value>);

/// Stored as one JSON document (`devices.doc` in a data dir): every field is serialized, so a
/// field added here persists without a store change. A new field needs `Serialize` +
/// `Deserialize` and `#[serde(default)]`, so documents written before it still load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    generation_id: u64,
    pub(crate) enabled: bool,
    pub(crate) primary_key: String,
    pub(crate) secondary_key: String,
    /// How the device proves who it is; the keys above count only for `sas`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) authentication: Authentication,
    pub(crate) identity_version: u64,
    /// `capabilities.iotEdge`.
    pub(crate) iot_edge: bool,
    /// The device's scope: an Edge device's own (generated), or a leaf's parent Edge scope.
    pub(crate) device_scope: Option<String>,
    /// The scopes of the parent Edge devices (a child Edge's one parent; a leaf's own scope).
    pub(crate) parent_scopes: Vec<String>,
    /// `Some(i)`: the tags are still the generated `{group, index: i}` of `--devices`, built
    /// when read and stored only once written (a fleet of untouched devices costs no maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generated_tags: Option<u32>,
    // Empty and default fields are left out of the stored document (a million untouched
    // devices are 40% smaller on disk) and come back as their defaults.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    tags: Map<String, Value>,
    pub props: TwinProperties,
    /// The device's module identities (IoT Edge modules and others), by module id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, Module>,
    #[serde(default, skip_serializing_if = "MethodBehaviour::is_default")]
    pub behaviour: MethodBehaviour,
    /// Seeded devices answer methods from `behaviour`. Devices created over REST, and seeded
    /// ones once a client has connected as them, are real: only a live MQTT session answers.
    pub simulated: bool,
    /// MQTT connection state (kept for real devices; a few bytes, no session data). Not
    /// stored: a session does not survive a restart.
    #[serde(skip)]
    pub(crate) connected: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) connection_updated_ms: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) last_activity_ms: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub method_calls: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_method: Option<Box<MethodCallRecord>>,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl Device {
    pub fn new(id: impl Into<String>, now_ms: i64) -> Self {
        Self {
            id: id.into(),
            generation_id: fastrand::u64(100_000_000_000_000_000..999_999_999_999_999_999),
            enabled: true,
            primary_key: random_key(),
            secondary_key: random_key(),
            authentication: Authentication::Sas,
            identity_version: 1,
            iot_edge: false,
            device_scope: None,
            parent_scopes: Vec::new(),
            generated_tags: None,
            tags: Map::new(),
            props: TwinProperties::new(now_ms),
            modules: BTreeMap::new(),
            behaviour: MethodBehaviour::default(),
            simulated: false,
            connected: false,
            connection_updated_ms: 0,
            last_activity_ms: 0,
            method_calls: 0,
            last_method: None,
        }
    }

    /// A device of `--devices N`: tags `{group: even|odd, index: i}`, kept implicit until
    /// written.
    pub fn generated(index: u32, now_ms: i64) -> Self {
        let mut d = Self::new(format!("device-{index:04}"), now_ms);
        d.simulated = true;
        d.generated_tags = Some(index);
        d
    }

    /// The twin's tags.
    pub fn tags(&self) -> Cow<'_, Map<String, Value>> {
        match self.generated_tags {
            None => Cow::Borrowed(&self.tags),
            Some(i) => Cow::Owned(generated_tags(i)),
        }
    }

    pub fn set_tags(&mut self, tags: Map<String, Value>) {
        self.generated_tags = None;
        self.tags = tags;
    }

    fn connection_state(&self) -> &'static str {
        let online = if self.simulated {
            self.connected || !self.behaviour.offline
        } else {
            self.connected
        };
        if !online {
            "Disconnected"
        } else {
            "Connected"
        }
    }

    pub fn etag(&self) -> String {
        self.props.etag()
    }

    pub fn device_etag(&self) -> String {
        device_etag(self.identity_version)
    }

    /// The twin document as the service returns it (and as query conditions see it).
    pub fn twin(&self) -> Value {
        let mut twin = TwinHead {
            device_id: &self.id,
            module_id: None,
            etag: self.etag(),
            identity_etag: self.device_etag(),
            enabled: self.enabled,
            connection_state: self.connection_state(),
            connection_updated_ms: self.connection_updated_ms,
            last_activity_ms: self.last_activity_ms,
            authentication: &self.authentication,
        }
        .document(&self.tags(), &self.props);
        twin["capabilities"] = json!({"iotEdge": self.iot_edge});
        twin["deviceScope"] = json!(self.device_scope);
        twin["parentScopes"] = json!(self.parent_scopes);
        twin
    }

    /// The scope the service generates for an Edge device: `ms-azure-iot-edge://{id}-{generationId}`.
    pub fn edge_scope(&self) -> String {
        format!("ms-azure-iot-edge://{}-{}", self.id, self.generation_id)
    }

    /// The device identity document (`/devices/{id}`).
    pub fn identity(&self) -> Value {
        json!({
            "deviceId": self.id,
            "generationId": self.generation_id.to_string(),
            "etag": self.device_etag(),
            "connectionState": self.connection_state(),
            "status": if self.enabled { "enabled" } else { "disabled" },
            "statusReason": null,
            "connectionStateUpdatedTime": time_or_never(self.connection_updated_ms),
            "statusUpdatedTime": NEVER,
            "lastActivityTime": time_or_never(self.last_activity_ms),
            "cloudToDeviceMessageCount": 0,
            "authentication": self.authentication.identity_json(self.keys()),
            "capabilities": {"iotEdge": self.iot_edge},
            "deviceScope": self.device_scope,
            "parentScopes": self.parent_scopes,
        })
    }

    /// What the control API shows: behaviour and what the device has been asked.
    pub fn control_view(&self) -> Value {
        json!({
            "deviceId": self.id,
            "tags": self.tags(),
            "desired": self.props.desired,
            "reported": self.props.reported,
            "method": self.behaviour.to_json(),
            "simulated": self.simulated,
            "connectionState": self.connection_state(),
            "methodCalls": self.method_calls,
            "lastMethod": self.last_method.as_ref().map(|call| json!({"methodName": &*call.0, "payload": &*call.1})),
        })
    }

    /// Applies a twin patch (see [`TwinProperties::patch`]).
    pub fn patch_twin(&mut self, patch: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        let (generated, tags) = (&mut self.generated_tags, &mut self.tags);
        self.props
            .patch(patch, || stored_tags(generated, tags), now_ms)
    }

    /// Replaces tags and desired (see [`TwinProperties::replace`]).
    pub fn replace_twin(&mut self, twin: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        let (tags, note) = self.props.replace(twin, now_ms)?;
        self.set_tags(tags);
        Ok(note)
    }

    /// What the device's login is checked against: its keys, or its certificate's thumbprints
    /// or CA (x509 devices).
    pub fn credentials(&self) -> Credentials {
        self.authentication
            .credentials(format!("devices/{}", self.id), self.keys())
    }

    /// The device's SAS keys (returned as `null` for an x509 identity).
    pub fn keys(&self) -> [&str; 2] {
        [&self.primary_key, &self.secondary_key]
    }

    pub fn generation_id(&self) -> u64 {
        self.generation_id
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn set_connected(&mut self, connected: bool, now_ms: i64) {
        if connected {
            // A client speaks for this device now; its behaviour no longer answers.
            self.simulated = false;
        }
        self.connected = connected;
        self.connection_updated_ms = now_ms;
        self.last_activity_ms = now_ms;
    }

    pub fn record_method(&mut self, call: &MethodCallRecord) {
        self.method_calls += 1;
        self.last_method = Some(Box::new(call.clone()));
    }
}

/// A generated device's implicit tags, made stored ones for writing.
fn stored_tags<'t>(
    generated: &mut Option<u32>,
    tags: &'t mut Map<String, Value>,
) -> &'t mut Map<String, Value> {
    if let Some(i) = generated.take() {
        *tags = generated_tags(i);
    }
    tags
}

/// The tags of the `i`th device of `--devices`: `{group: even|odd, index: i}`.
fn generated_tags(i: u32) -> Map<String, Value> {
    let mut tags = Map::new();
    let group = if i.is_multiple_of(2) { "even" } else { "odd" };
    tags.insert("group".into(), json!(group));
    tags.insert("index".into(), json!(i));
    tags
}

/// How the store keeps a device: one JSON document of everything it has, under its id.
impl From<&Device> for crate::store::Document {
    fn from(device: &Device) -> Self {
        Self::of(&device.id, device)
    }
}
