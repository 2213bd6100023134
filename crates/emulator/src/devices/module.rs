//! One module identity of a device (an IoT Edge module, or any other module a client connects
//! as) and the JSON shapes the service returns for it: the identity and the module twin.
//! Modules live inside their device, so a device's document carries them and deleting the
//! device deletes them.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::twin::{device_etag, TwinProperties};

use super::authentication::Authentication;
use super::shared::{random_key, time_or_never, TwinHead};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Module {
    pub id: String,
    generation_id: u64,
    /// `managedBy` as the caller set it (`IotEdge` for modules of the edge runtime).
    managed_by: Option<String>,
    pub(crate) primary_key: String,
    pub(crate) secondary_key: String,
    identity_version: u64,
    tags: Map<String, Value>,
    pub props: TwinProperties,
    /// MQTT connection state, kept by the module's session (not stored: a session does not
    /// survive a restart).
    #[serde(skip)]
    connected: bool,
    connection_updated_ms: i64,
    pub(crate) last_activity_ms: i64,
}

impl Module {
    pub fn new(id: impl Into<String>, now_ms: i64) -> Self {
        Self {
            id: id.into(),
            generation_id: fastrand::u64(100_000_000_000_000_000..999_999_999_999_999_999),
            managed_by: None,
            primary_key: random_key(),
            secondary_key: random_key(),
            identity_version: 1,
            tags: Map::new(),
            props: TwinProperties::new(now_ms),
            connected: false,
            connection_updated_ms: 0,
            last_activity_ms: 0,
        }
    }

    pub fn etag(&self) -> String {
        self.props.etag()
    }

    pub fn identity_etag(&self) -> String {
        device_etag(self.identity_version)
    }

    fn connection_state(&self) -> &'static str {
        if self.connected {
            "Connected"
        } else {
            "Disconnected"
        }
    }

    /// The keys a module SAS token may be signed with.
    pub fn generation_id(&self) -> u64 {
        self.generation_id
    }

    pub fn keys(&self) -> [&str; 2] {
        [&self.primary_key, &self.secondary_key]
    }

    /// Applies the writable fields of a PUT body: keys (kept when absent) and `managedBy`.
    pub(super) fn apply(&mut self, keys: [Option<String>; 2], managed_by: Option<String>) {
        let [primary, secondary] = keys;
        if let Some(k) = primary {
            self.primary_key = k;
        }
        if let Some(k) = secondary {
            self.secondary_key = k;
        }
        self.managed_by = managed_by;
    }

    pub(super) fn bump_identity(&mut self) {
        self.identity_version += 1;
    }

    pub fn set_connected(&mut self, connected: bool, now_ms: i64) {
        self.connected = connected;
        self.connection_updated_ms = now_ms;
        self.last_activity_ms = now_ms;
    }

    /// The module identity document (`/devices/{id}/modules/{mid}`).
    pub fn identity(&self, device_id: &str) -> Value {
        json!({
            "moduleId": self.id,
            "managedBy": self.managed_by,
            "deviceId": device_id,
            "generationId": self.generation_id.to_string(),
            "etag": self.identity_etag(),
            "connectionState": self.connection_state(),
            "connectionStateUpdatedTime": time_or_never(self.connection_updated_ms),
            "lastActivityTime": time_or_never(self.last_activity_ms),
            "cloudToDeviceMessageCount": 0,
            "authentication": Authentication::Sas.identity_json(self.keys()),
        })
    }

    /// The module twin as the service returns it (and as `devices.modules` queries see it).
    /// A module has no status of its own: it reports its device's.
    pub fn twin(&self, device_id: &str, device_enabled: bool) -> Value {
        TwinHead {
            device_id,
            module_id: Some(&self.id),
            etag: self.etag(),
            identity_etag: self.identity_etag(),
            enabled: device_enabled,
            connection_state: self.connection_state(),
            connection_updated_ms: self.connection_updated_ms,
            last_activity_ms: self.last_activity_ms,
            authentication: &Authentication::Sas,
        }
        .document(&self.tags, &self.props)
    }

    /// Applies a twin patch (see [`TwinProperties::patch`]).
    pub fn patch_twin(
        &mut self,
        patch: &Value,
        now_ms: i64,
    ) -> Result<Option<Value>, crate::errors::ApiError> {
        self.props.patch(patch, || &mut self.tags, now_ms)
    }

    /// Replaces tags and desired (see [`TwinProperties::replace`]).
    pub fn replace_twin(
        &mut self,
        twin: &Value,
        now_ms: i64,
    ) -> Result<Option<Value>, crate::errors::ApiError> {
        let (tags, note) = self.props.replace(twin, now_ms)?;
        self.tags = tags;
        Ok(note)
    }
}
