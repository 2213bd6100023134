//! One simulated device: identity, twin and direct-method behaviour, and the JSON shapes the
//! service returns for them.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use crate::clock::iso;
use crate::errors::{ApiError, ErrorCode};
use crate::twin::{device_etag, merge_patch, strip_nulls, twin_etag};

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
    pub(crate) identity_version: u64,
    /// `Some(i)`: the tags are still the generated `{group, index: i}` of `--devices`, built
    /// when read and stored only once written (a fleet of untouched devices costs no maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generated_tags: Option<u32>,
    // Empty and default fields are left out of the stored document (a million untouched
    // devices are 40% smaller on disk) and come back as their defaults.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    tags: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub desired: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub reported: Map<String, Value>,
    /// Twin version: bumped by every twin change.
    version: u64,
    desired_version: u64,
    reported_version: u64,
    updated_ms: i64,
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

/// What `0001-01-01T00:00:00Z` is on the service: "never".
const NEVER: &str = "0001-01-01T00:00:00Z";

fn time_or_never(ms: i64) -> Value {
    if ms == 0 {
        json!(NEVER)
    } else {
        json!(iso(ms))
    }
}

fn random_key() -> String {
    let mut bytes = [0u8; 32];
    fastrand::fill(&mut bytes);
    STANDARD.encode(bytes)
}

impl Device {
    pub fn new(id: impl Into<String>, now_ms: i64) -> Self {
        Self {
            id: id.into(),
            generation_id: fastrand::u64(100_000_000_000_000_000..999_999_999_999_999_999),
            enabled: true,
            primary_key: random_key(),
            secondary_key: random_key(),
            identity_version: 1,
            generated_tags: None,
            tags: Map::new(),
            desired: Map::new(),
            reported: Map::new(),
            version: 1,
            desired_version: 1,
            reported_version: 1,
            updated_ms: now_ms,
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
            Some(i) => {
                let mut tags = Map::new();
                let group = if i % 2 == 0 { "even" } else { "odd" };
                tags.insert("group".into(), json!(group));
                tags.insert("index".into(), json!(i));
                Cow::Owned(tags)
            }
        }
    }

    /// The tags for writing (a generated device's implicit tags become stored ones).
    fn tags_mut(&mut self) -> &mut Map<String, Value> {
        if self.generated_tags.is_some() {
            self.tags = self.tags().into_owned();
            self.generated_tags = None;
        }
        &mut self.tags
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
        twin_etag(self.version)
    }

    pub fn device_etag(&self) -> String {
        device_etag(self.identity_version)
    }

    fn section(map: &Map<String, Value>, version: u64, updated_ms: i64) -> Value {
        let mut out = map.clone();
        out.insert("$metadata".into(), json!({"$lastUpdated": iso(updated_ms)}));
        out.insert("$version".into(), json!(version));
        Value::Object(out)
    }

    /// The twin document as the service returns it (and as query conditions see it).
    pub fn twin(&self) -> Value {
        json!({
            "deviceId": self.id,
            "etag": self.etag(),
            "deviceEtag": self.device_etag(),
            "status": if self.enabled { "enabled" } else { "disabled" },
            "statusUpdateTime": NEVER,
            "connectionState": self.connection_state(),
            "connectionStateUpdatedTime": time_or_never(self.connection_updated_ms),
            "lastActivityTime": time_or_never(self.last_activity_ms),
            "cloudToDeviceMessageCount": 0,
            "authenticationType": "sas",
            "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
            "modelId": "",
            "version": self.version,
            "tags": self.tags(),
            "properties": {
                "desired": Self::section(&self.desired, self.desired_version, self.updated_ms),
                "reported": Self::section(&self.reported, self.reported_version, self.updated_ms),
            },
            "capabilities": {"iotEdge": false},
        })
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
            "authentication": {
                "symmetricKey": {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key},
                "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
                "type": "sas",
            },
            "capabilities": {"iotEdge": false},
        })
    }

    /// What the control API shows: behaviour and what the device has been asked.
    pub fn control_view(&self) -> Value {
        json!({
            "deviceId": self.id,
            "tags": self.tags(),
            "desired": self.desired,
            "reported": self.reported,
            "method": self.behaviour.to_json(),
            "simulated": self.simulated,
            "connectionState": self.connection_state(),
            "methodCalls": self.method_calls,
            "lastMethod": self.last_method.as_ref().map(|call| json!({"methodName": &*call.0, "payload": &*call.1})),
        })
    }

    /// Applies `tags` and `properties.desired` of a twin patch (merge semantics); bumps versions.
    /// Returns the desired-property notification (the changed desired section with its new
    /// `$version`) when desired changed, for a connected device's session.
    pub fn patch_twin(&mut self, patch: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        let (tags, desired) = twin_sections(patch)?;
        let tags_changed = tags.is_some_and(|t| merge_patch(self.tags_mut(), t));
        let desired_changed = desired.is_some_and(|d| merge_patch(&mut self.desired, d));
        self.bump(tags_changed, desired_changed, now_ms);
        Ok(desired_changed.then(|| {
            let mut note = desired.cloned().unwrap_or_default();
            note.insert("$version".into(), json!(self.desired_version));
            Value::Object(note)
        }))
    }

    /// Replaces `tags` and `properties.desired` (PUT /twins semantics).
    /// Returns the whole new desired section when it changed (the device is told all of it).
    pub fn replace_twin(&mut self, twin: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        let (tags, desired) = twin_sections(twin)?;
        let mut tags = tags.cloned().unwrap_or_default();
        let mut desired = desired.cloned().unwrap_or_default();
        strip_nulls(&mut tags);
        strip_nulls(&mut desired);
        let desired_changed = desired != self.desired;
        self.set_tags(tags);
        self.desired = desired;
        self.bump(true, desired_changed, now_ms);
        Ok(desired_changed.then(|| {
            let mut note = self.desired.clone();
            note.insert("$version".into(), json!(self.desired_version));
            Value::Object(note)
        }))
    }

    /// Merges a reported-properties patch from the device; returns the new reported `$version`.
    pub fn patch_reported(&mut self, patch: &Map<String, Value>, now_ms: i64) -> u64 {
        if merge_patch(&mut self.reported, patch) {
            self.reported_version += 1;
            self.version += 1;
            self.updated_ms = now_ms;
        }
        self.reported_version
    }

    /// `{desired, reported}` as a device's twin GET returns them.
    pub fn device_twin(&self) -> Value {
        json!({
            "desired": Self::section(&self.desired, self.desired_version, self.updated_ms),
            "reported": Self::section(&self.reported, self.reported_version, self.updated_ms),
        })
    }

    /// The keys a device SAS token may be signed with (none for a disabled device).
    pub fn keys(&self) -> [&str; 2] {
        [&self.primary_key, &self.secondary_key]
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

    fn bump(&mut self, tags_changed: bool, desired_changed: bool, now_ms: i64) {
        if desired_changed {
            self.desired_version += 1;
        }
        if tags_changed || desired_changed {
            self.version += 1;
            self.updated_ms = now_ms;
        }
    }

    pub fn record_method(&mut self, call: &MethodCallRecord) {
        self.method_calls += 1;
        self.last_method = Some(Box::new(call.clone()));
    }
}

type Sections<'a> = (
    Option<&'a Map<String, Value>>,
    Option<&'a Map<String, Value>>,
);

/// Pulls `tags` and `properties.desired` out of a twin body, rejecting non-objects.
fn twin_sections(twin: &Value) -> Result<Sections<'_>, ApiError> {
    let bad = |what: &str| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("{what} must be a JSON object"),
        )
    };
    let twin = twin.as_object().ok_or_else(|| bad("the twin"))?;
    let tags = match twin.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Object(t)) => Some(t),
        Some(_) => return Err(bad("tags")),
    };
    let desired = match twin.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => match p.get("desired") {
            None | Some(Value::Null) => None,
            Some(Value::Object(d)) => Some(d),
            Some(_) => return Err(bad("properties.desired")),
        },
        Some(_) => return Err(bad("properties")),
    };
    Ok((tags, desired))
}
