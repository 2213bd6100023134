//! Live device sessions, whatever the transport (MQTT, AMQP): one per connected device, in a map
//! of their own so a device that is not connected costs nothing here. A job or
//! `POST /twins/{id}/methods` reaches a device through its session (a request id, a one-shot
//! answer); desired-property changes are pushed to it. What the hub sends a session is
//! transport-neutral (`Outgoing`); each transport only encodes it (topics, AMQP messages).
//! Device faults (refused CONNACKs, delayed or swallowed method answers) live here too, only
//! for the devices that have one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use super::cloud_to_device::Delivery;
use crate::clock::{iso, wall_ms, Clock};
use crate::device_message::DeviceMessage;
use crate::errors::ErrorCode;
use crate::gateway_fault::GatewayFault;
use crate::locks::lock;

/// What a session task is asked to do by the rest of the hub.
#[derive(Debug)]
pub enum Outgoing {
    /// A direct method call; the device's answer comes back through `method_answered` with
    /// the same request id.
    MethodCall {
        request_id: u64,
        name: String,
        payload: Vec<u8>,
    },
    /// The desired properties changed: the patch (it carries its `$version`).
    DesiredChanged { version: u64, patch: Value },
    /// The answer to one of the session's own twin requests (GET or reported PATCH).
    TwinAnswer {
        request_id: String,
        answer: TwinAnswer,
    },
    /// A cloud-to-device message, locked for this device until it settles it by its lock
    /// token (`Registry::settle_cloud_to_device`).
    CloudToDevice(Delivery),
    /// Another connection took over, a fault dropped it, or the hub was reset.
    Close,
    /// The test gateway's fault injection: break the connection as the fault names.
    Fault(GatewayFault),
}

/// What a device's session is subscribed to (the topics whose delivery the hub decides).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Subscriptions {
    pub methods: bool,
    pub desired: bool,
    /// Cloud-to-device messages (MQTT `devices/{id}/messages/devicebound/#`, the AMQP link).
    pub cloud_to_device: bool,
}

struct Session {
    serial: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    subscriptions: Subscriptions,
    /// Connected with clean session 0: its subscriptions outlive the connection.
    persistent: bool,
    /// Asked to close (a dropped connection): it stays until its connection ends, but a
    /// method call waits for the device's next session instead of being lost with this one.
    closing: bool,
}

/// Faults for one device, set through the control API.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceFaults {
    /// The next this many CONNACKs are refused (return code 3, server unavailable).
    #[serde(default)]
    pub refuse_connects: u32,
    /// Real milliseconds a method answer is held before it reaches the caller.
    #[serde(default)]
    pub method_response_delay_ms: u64,
    /// Method answers are dropped: callers time out with GatewayTimeout.
    #[serde(default)]
    pub swallow_method_responses: bool,
}

type Answer = oneshot::Sender<(i64, Bytes)>;

/// Telemetry messages kept for the control API at most (oldest dropped first).
const TELEMETRY_KEPT: usize = 1000;

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    /// Subscriptions of persistent sessions (MQTT clean session 0) whose device is not
    /// connected: MQTT 3.1.1 §3.1.2.4 keeps them for the next connection of the same client id,
    /// and the device SDKs rely on it (azure-iot-device-mqtt reconnects after a SAS renewal
    /// without subscribing again).
    kept: Mutex<HashMap<String, Subscriptions>>,
    /// Method calls waiting for an answer, by request id: (device id, answer).
    pending: Mutex<HashMap<u64, (String, Answer)>>,
    next_id: AtomicU64,
    /// Woken whenever a session subscribes to methods, for calls waiting for their device.
    subscribed: Notify,
    faults: Mutex<HashMap<String, DeviceFaults>>,
    telemetry: Mutex<VecDeque<Value>>,
}

/// A failed direct-method call: the error code and its description.
pub type CallError = (ErrorCode, &'static str);

impl Sessions {
    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a new session for `id`, dropping the one it replaces (one session per device).
    /// With `clean` false the subscriptions of the device's previous persistent session carry
    /// over; the last value is MQTT's "session present" (true when they did).
    pub fn open(&self, id: &str, clean: bool) -> (u64, mpsc::UnboundedReceiver<Outgoing>, bool) {
        let (tx, rx) = mpsc::unbounded_channel();
        let serial = self.next();
        let mut live = lock(&self.live);
        let old = live.remove(id);
        if let Some(old) = &old {
            let _ = old.tx.send(Outgoing::Close);
        }
        let kept = lock(&self.kept).remove(id);
        let previous = old
            .filter(|s| s.persistent)
            .map(|s| s.subscriptions)
            .or(kept)
            .filter(|_| !clean);
        let session = Session {
            serial,
            tx,
            subscriptions: previous.unwrap_or_default(),
            persistent: !clean,
            closing: false,
        };
        live.insert(id.to_string(), session);
        drop(live);
        if previous.is_some_and(|s| s.methods) {
            self.subscribed.notify_waiters();
        }
        (serial, rx, previous.is_some())
    }

    /// Removes the session if it is still the device's current one (keeping a persistent
    /// session's subscriptions); true when it was.
    pub fn close(&self, id: &str, serial: u64) -> bool {
        let mut live = lock(&self.live);
        if live.get(id).is_none_or(|s| s.serial != serial) {
            return false;
        }
        if let Some(s) = live.remove(id).filter(|s| s.persistent) {
            lock(&self.kept).insert(id.to_string(), s.subscriptions);
        }
        true
    }

    /// Forgets everything kept for a device (it was deleted: a new one of that id starts clean).
    pub fn forget(&self, id: &str) {
        lock(&self.kept).remove(id);
        self.drop_connection(id);
    }

    /// Asks a device's session to close; true when the device had one.
    pub fn drop_connection(&self, id: &str) -> bool {
        lock(&self.live).get_mut(id).is_some_and(|s| {
            s.closing = true;
            s.tx.send(Outgoing::Close).is_ok()
        })
    }

    pub fn drop_all(&self) {
        for s in lock(&self.live).values() {
            let _ = s.tx.send(Outgoing::Close);
        }
        lock(&self.kept).clear();
        lock(&self.faults).clear();
        lock(&self.telemetry).clear();
    }

    pub fn connected_count(&self) -> usize {
        lock(&self.live).len()
    }

    /// Records what the session has subscribed to (`Some(true)` on, `Some(false)` off).
    pub fn set_subscriptions(
        &self,
        id: &str,
        serial: u64,
        methods: Option<bool>,
        desired: Option<bool>,
    ) {
        if let Some(s) = lock(&self.live).get_mut(id).filter(|s| s.serial == serial) {
            let subs = &mut s.subscriptions;
            subs.methods = methods.unwrap_or(subs.methods);
            subs.desired = desired.unwrap_or(subs.desired);
        }
        if methods == Some(true) {
            self.subscribed.notify_waiters();
        }
    }

    /// Records whether the session listens for cloud-to-device messages.
    pub fn set_cloud_to_device(&self, id: &str, serial: u64, on: bool) {
        if let Some(s) = lock(&self.live).get_mut(id).filter(|s| s.serial == serial) {
            s.subscriptions.cloud_to_device = on;
        }
    }

    /// True when the device is connected and listens for cloud-to-device messages.
    pub fn listens_cloud_to_device(&self, id: &str) -> bool {
        lock(&self.live)
            .get(id)
            .is_some_and(|s| s.subscriptions.cloud_to_device)
    }

    /// Sends a message to the session, if there is one.
    pub fn send(&self, id: &str, message: Outgoing) {
        if let Some(s) = lock(&self.live).get(id) {
            let _ = s.tx.send(message);
        }
    }

    /// Tells a connected device, subscribed to desired updates, about a change of desired.
    pub fn desired_changed(&self, id: &str, note: &Value) {
        if let Some(s) = lock(&self.live).get(id).filter(|s| s.subscriptions.desired) {
            let version = note.get("$version").and_then(Value::as_u64).unwrap_or(0);
            let _ = s.tx.send(Outgoing::DesiredChanged {
                version,
                patch: note.clone(),
            });
        }
    }

    fn method_channel(&self, id: &str) -> Option<mpsc::UnboundedSender<Outgoing>> {
        lock(&self.live)
            .get(id)
            .filter(|s| s.subscriptions.methods && !s.closing)
            .map(|s| s.tx.clone())
    }

    /// Calls a direct method on a live device: waits up to `connect_timeout_ms` (emulator time)
    /// for it to be connected and subscribed, then up to `response_timeout_ms` for its answer.
    pub async fn call_method(
        &self,
        clock: &Clock,
        id: &str,
        method_name: &str,
        payload: &Value,
        connect_timeout_ms: i64,
        response_timeout_ms: i64,
    ) -> Result<(i64, Value), CallError> {
        let deadline = clock.now_ms().saturating_add(connect_timeout_ms);
        let tx = loop {
            let notified = self.subscribed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(tx) = self.method_channel(id) {
                break tx;
            }
            if clock.now_ms() >= deadline {
                return Err((
                    ErrorCode::DeviceNotOnline,
                    "Timed out waiting for device to connect.",
                ));
            }
            tokio::select! {
                _ = notified => {}
                _ = clock.sleep_until(deadline) => {}
            }
        };
        let rid = self.next();
        let (answer_tx, answer_rx) = oneshot::channel();
        lock(&self.pending).insert(rid, (id.to_string(), answer_tx));
        // Whatever happens next (answer, timeout, job cancelled), the request id is forgotten.
        let _forget = Forget(self, rid);
        let _ = tx.send(Outgoing::MethodCall {
            request_id: rid,
            name: method_name.to_string(),
            payload: payload.to_string().into_bytes(),
        });
        let timeout = (
            ErrorCode::GatewayTimeout,
            "Timed out waiting for the response from device.",
        );
        tokio::select! {
            answer = answer_rx => match answer {
                Ok((status, body)) => Ok((status, parse_payload(&body))),
                Err(_) => Err(timeout),
            },
            _ = clock.sleep_ms(response_timeout_ms) => Err(timeout),
        }
    }

    /// A device answered request `rid` (only its own requests count); applies its faults.
    pub fn method_answered(&self, id: &str, rid: &str, status: i64, body: Bytes) {
        let Ok(rid) = rid.parse::<u64>() else { return };
        let faults = lock(&self.faults).get(id).cloned().unwrap_or_default();
        if faults.swallow_method_responses {
            return;
        }
        let answer = {
            let mut pending = lock(&self.pending);
            match pending.get(&rid) {
                Some((device, _)) if device == id => pending.remove(&rid).map(|(_, a)| a),
                _ => None,
            }
        };
        let Some(answer) = answer else { return };
        if faults.method_response_delay_ms == 0 {
            let _ = answer.send((status, body));
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(
                    faults.method_response_delay_ms,
                ))
                .await;
                let _ = answer.send((status, body));
            });
        }
    }

    pub fn set_faults(&self, id: &str, faults: DeviceFaults) {
        let mut map = lock(&self.faults);
        if faults == DeviceFaults::default() {
            map.remove(id);
        } else {
            map.insert(id.to_string(), faults);
        }
    }

    pub fn faults_of(&self, id: &str) -> DeviceFaults {
        lock(&self.faults).get(id).cloned().unwrap_or_default()
    }

    /// True when this connection attempt must be refused (and counts it).
    pub fn take_refusal(&self, id: &str) -> bool {
        let mut map = lock(&self.faults);
        match map.get_mut(id) {
            Some(f) if f.refuse_connects > 0 => {
                f.refuse_connects -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn record_telemetry(&self, message: &DeviceMessage) {
        let mut ring = lock(&self.telemetry);
        if ring.len() >= TELEMETRY_KEPT {
            ring.pop_front();
        }
        let (device, module) = super::split_client(&message.client);
        ring.push_back(json!({
            "deviceId": device,
            "moduleId": module,
            "topic": message.via,
            "time": iso(wall_ms()),
            "body": String::from_utf8_lossy(&message.body),
        }));
    }

    /// The kept telemetry, oldest first; `clear` empties the ring in the same step.
    pub fn telemetry(&self, clear: bool) -> Vec<Value> {
        let mut ring = lock(&self.telemetry);
        let out = ring.iter().cloned().collect();
        if clear {
            ring.clear();
        }
        out
    }
}

/// A twin request a device session makes about its own twin.
pub enum TwinRequest<'a> {
    Get,
    /// A reported-properties patch, as the device sent it (JSON object expected).
    Report(&'a [u8]),
}

/// The hub's answer to a `TwinRequest`: an HTTP-like status, the new version of a reported
/// patch, and the body (the twin for a GET).
#[derive(Debug)]
pub struct TwinAnswer {
    pub status: u16,
    pub version: Option<u64>,
    pub body: Vec<u8>,
}

impl super::Registry {
    /// Answers a session's twin request for client `id` (a device, or `{device}/{module}`).
    pub fn answer_twin(&self, id: &str, request: TwinRequest, now_ms: i64) -> TwinAnswer {
        let answer = |status, version, body| TwinAnswer {
            status,
            version,
            body,
        };
        match request {
            TwinRequest::Get => match self.client_twin(id) {
                Some(t) => answer(200, None, t.to_string().into_bytes()),
                None => answer(404, None, Vec::new()),
            },
            TwinRequest::Report(payload) => {
                let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(payload) else {
                    return answer(400, None, Vec::new());
                };
                match self.report(id, &patch, now_ms) {
                    Some(Ok(v)) => answer(204, Some(v), Vec::new()),
                    // The store could not save it: the device may retry.
                    Some(Err(_)) => answer(500, None, Vec::new()),
                    None => answer(404, None, Vec::new()),
                }
            }
        }
    }
}

struct Forget<'a>(&'a Sessions, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.0.pending).remove(&self.1);
    }
}

/// A method answer's body as the service reports it: JSON when it is JSON, else its text.
fn parse_payload(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}
