//! The direct-method rule, one implementation for `POST /twins/{id}[/modules/{mid}]/methods`
//! and a method job's devices: the payload limit, the device (and module) must exist, a
//! simulated device answers from its behaviour (and remembers the call), a real one and every
//! module answer through their live session within the connect and response timeouts.

use std::sync::Arc;

use serde_json::Value;

use super::{client_key, MethodCallRecord, Registry};
use crate::clock::Clock;
use crate::errors::ErrorCode;

/// Direct-method size limit: payloads above it fail with 413.
pub const MAX_METHOD_PAYLOAD: usize = 128 * 1024;

/// One direct-method call as the service or a job asks for it.
pub struct MethodCall<'a> {
    pub name: &'a str,
    pub payload: &'a Value,
    /// The payload's serialized size (a job computes it once for all its devices).
    pub payload_bytes: usize,
    pub connect_timeout_s: u64,
    pub response_timeout_s: u64,
    /// What the device remembers of the call (its control-API `lastMethod`); a job shares one
    /// among all its devices.
    pub record: &'a MethodCallRecord,
}

/// Why a call failed: IoT Hub's error code and its description.
pub type MethodFailure = (ErrorCode, String);

impl Registry {
    /// Calls a direct method on a device or module: the device's `{status, payload}` answer.
    pub async fn invoke_method(
        &self,
        clock: &Clock,
        device_id: &str,
        module: Option<&str>,
        call: &MethodCall<'_>,
    ) -> Result<(i64, Arc<Value>), MethodFailure> {
        if call.payload_bytes > MAX_METHOD_PAYLOAD {
            return Err((
                ErrorCode::MessageTooLarge,
                format!(
                    "The method payload is {} bytes; the limit is {MAX_METHOD_PAYLOAD}",
                    call.payload_bytes
                ),
            ));
        }
        let simulated = {
            let mut devices = self.write();
            let Some(device) = devices.get_mut(device_id) else {
                return Err((
                    ErrorCode::DeviceNotFound,
                    format!("Device {device_id} not registered"),
                ));
            };
            if let Some(module) = module {
                if !device.modules.contains_key(module) {
                    return Err((
                        ErrorCode::ModuleNotFound,
                        format!("Module {module} on device {device_id} not registered"),
                    ));
                }
                None
            } else {
                if device.simulated && !device.behaviour.offline {
                    device.record_method(call.record);
                }
                device.simulated.then(|| device.behaviour.clone())
            }
        };
        let connect_ms = call.connect_timeout_s as i64 * 1000;
        let response_ms = call.response_timeout_s as i64 * 1000;
        let Some(behaviour) = simulated else {
            let answer = self
                .sessions
                .call_method(
                    clock,
                    &client_key(device_id, module),
                    call.name,
                    call.payload,
                    connect_ms,
                    response_ms,
                )
                .await;
            if answer.is_ok() && module.is_none() {
                if let Some(device) = self.write().get_mut(device_id) {
                    device.record_method(call.record);
                }
            }
            return answer
                .map(|(status, payload)| (status, Arc::new(payload)))
                .map_err(|(code, text)| (code, text.to_string()));
        };
        if behaviour.offline {
            clock.sleep_ms(connect_ms).await;
            return Err((
                ErrorCode::DeviceNotOnline,
                "Timed out waiting for device to connect.".into(),
            ));
        }
        if behaviour.delay_ms as i64 > response_ms {
            clock.sleep_ms(response_ms).await;
            return Err((
                ErrorCode::GatewayTimeout,
                "Timed out waiting for the response from device.".into(),
            ));
        }
        if behaviour.delay_ms > 0 {
            clock.sleep_ms(behaviour.delay_ms as i64).await;
        }
        Ok((behaviour.status, behaviour.payload))
    }
}
