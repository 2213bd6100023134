//! A device-to-cloud message as the hub takes it from any transport (MQTT, AMQP, HTTPS, and
//! their WebSocket forms): what the transport decoded, in one transport-neutral shape. Every
//! such message enters the hub through `Hub::device_message`, the one place where what happens
//! to device data (today the control API's telemetry view) is decided.

use bytes::Bytes;

#[derive(Clone, Debug)]
pub struct DeviceMessage {
    /// The sending client: a device id, or `{deviceId}/{moduleId}` for a module.
    pub client: String,
    /// Where it arrived (the MQTT topic, the AMQP link address, the HTTPS path), as the control
    /// API's telemetry view shows it.
    pub via: String,
    /// The body, as sent.
    pub body: Bytes,
}
