//! Seed files and control-API device lists: which devices exist at start or after a reset.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::device::{BehaviourPatch, Device};
use crate::errors::{ApiError, ErrorCode, StartError};

/// One device in a seed file or control-API body (format documented in the README).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedDevice {
    pub device_id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Map<String, Value>,
    #[serde(default)]
    pub properties: SeedProperties,
    #[serde(default)]
    pub method: BehaviourPatch,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProperties {
    #[serde(default)]
    pub desired: Map<String, Value>,
    #[serde(default)]
    pub reported: Map<String, Value>,
}

/// A seed: explicit devices plus optionally `generate` default devices.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub generate: usize,
    #[serde(default)]
    pub devices: Vec<SeedDevice>,
    /// Consumer groups of the events endpoint besides `$Default`.
    #[serde(default, rename = "consumerGroups")]
    pub consumer_groups: Vec<String>,
    /// Message routing, in the shape of IoT Hub's `properties.routing` (read by start-up as a
    /// `routing::RoutingSpec`: devices do not depend on routing).
    #[serde(default)]
    pub routing: Option<Value>,
    /// The storage account to start and link, as `--storage` (`"azurite"`; read by start-up:
    /// devices do not depend on storage).
    #[serde(default)]
    pub storage: Option<String>,
    /// File-upload notifications on, as `--file-notifications`.
    #[serde(default, rename = "fileNotifications")]
    pub file_notifications: bool,
}

impl Seed {
    /// Accepts `{"generate": N, "devices": [...]}` or a bare array of devices.
    pub fn from_json(v: Value) -> Result<Seed, StartError> {
        if v.is_array() {
            let devices = serde_json::from_value(v).map_err(|e| format!("invalid seed: {e}"))?;
            return Ok(Seed {
                devices,
                ..Seed::default()
            });
        }
        serde_json::from_value(v).map_err(|e| StartError::new(format!("invalid seed: {e}")))
    }

    pub fn generated(n: usize) -> Seed {
        Seed {
            generate: n,
            ..Seed::default()
        }
    }

    /// The devices this seed describes, generated ones first.
    /// No device at all.
    pub fn is_empty(&self) -> bool {
        self.generate == 0 && self.devices.is_empty()
    }

    pub fn build(&self, now_ms: i64) -> Result<Vec<Device>, StartError> {
        let generate = u32::try_from(self.generate)
            .map_err(|_| format!("cannot generate {} devices", self.generate))?;
        let mut out: Vec<Device> = (0..generate)
            .map(|i| Device::generated(i, now_ms))
            .collect();
        for s in &self.devices {
            validate_device_id(&s.device_id).map_err(|e| e.message)?;
            let mut d = Device::new(s.device_id.clone(), now_ms);
            d.simulated = true;
            d.enabled = match s.status.as_deref() {
                None | Some("enabled") => true,
                Some("disabled") => false,
                Some(other) => {
                    return Err(StartError::new(format!(
                        "device {}: status must be enabled or disabled, not {other:?}",
                        s.device_id
                    )))
                }
            };
            d.set_tags(s.tags.clone());
            d.props.desired = s.properties.desired.clone();
            d.props.reported = s.properties.reported.clone();
            d.behaviour.apply(&s.method);
            out.push(d);
        }
        Ok(out)
    }
}

/// Device ids: up to 128 characters of letters, digits and `-.+%_#*?!(),:=@$'`.
pub fn validate_device_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.+%_#*?!(),:=@$'".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("Device id '{id}' is invalid"),
        ))
    }
}
