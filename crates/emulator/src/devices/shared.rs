//! What a device and its modules (both clients of the hub) build alike: the head of their
//! twins, their generated keys, the service's way of writing a time that never happened.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::authentication::Authentication;
use crate::clock::iso;
use crate::twin::TwinProperties;

/// What `0001-01-01T00:00:00Z` is on the service: "never".
pub(super) const NEVER: &str = "0001-01-01T00:00:00Z";

pub(super) fn time_or_never(ms: i64) -> Value {
    if ms == 0 {
        json!(NEVER)
    } else {
        json!(iso(ms))
    }
}

pub(super) fn random_key() -> String {
    let mut bytes = [0u8; 32];
    fastrand::fill(&mut bytes);
    STANDARD.encode(bytes)
}

/// What a device twin and a module twin share above their tags and properties.
pub(super) struct TwinHead<'a> {
    pub device_id: &'a str,
    /// A module twin's `moduleId`, right after `deviceId` as the service writes it.
    pub module_id: Option<&'a str>,
    pub etag: String,
    pub identity_etag: String,
    /// A module reports its device's status.
    pub enabled: bool,
    pub connection_state: &'static str,
    pub connection_updated_ms: i64,
    pub last_activity_ms: i64,
    pub authentication: &'a Authentication,
}

impl TwinHead<'_> {
    pub fn document(self, tags: &Map<String, Value>, props: &TwinProperties) -> Value {
        let twin = json!({
            "deviceId": self.device_id,
            "etag": self.etag,
            "deviceEtag": self.identity_etag,
            "status": if self.enabled { "enabled" } else { "disabled" },
            "statusUpdateTime": NEVER,
            "connectionState": self.connection_state,
            "connectionStateUpdatedTime": time_or_never(self.connection_updated_ms),
            "lastActivityTime": time_or_never(self.last_activity_ms),
            "cloudToDeviceMessageCount": 0,
            "authenticationType": self.authentication.type_name(),
            "x509Thumbprint": self.authentication.thumbprints_json(),
            "modelId": "",
            "version": props.version(),
            "tags": tags,
            "properties": props.to_json(),
        });
        match (self.module_id, twin) {
            // Rebuilt only for modules, so device twins (queries over fleets) cost no more.
            (Some(module_id), Value::Object(fields)) => {
                let mut with_module = Map::with_capacity(fields.len() + 1);
                for (key, value) in fields {
                    let after_device = key == "deviceId";
                    with_module.insert(key, value);
                    if after_device {
                        with_module.insert("moduleId".into(), json!(module_id));
                    }
                }
                Value::Object(with_module)
            }
            (_, twin) => twin,
        }
    }
}
