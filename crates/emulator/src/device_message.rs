//! A device-to-cloud message as the hub takes it from any transport (MQTT, AMQP, HTTPS, and
//! their WebSocket forms): what the transport decoded, in one transport-neutral shape. Every
//! such message enters the hub through `Hub::device_message`, the one place where what happens
//! to device data (the control API's telemetry view, the `events` endpoint) is decided.
//!
//! Each transport only decodes what the device put on the message (MQTT's topic property bag,
//! AMQP's properties sections, HTTPS headers and batch items); what the hub adds (how the
//! client authenticated, its generation id) is filled in by `Hub::device_message`.

use bytes::Bytes;

#[derive(Clone, Debug, Default)]
pub struct DeviceMessage {
    /// The sending client: a device id, or `{deviceId}/{moduleId}` for a module.
    pub client: String,
    /// Where it arrived (the MQTT topic, the AMQP link address, the HTTPS path), as the control
    /// API's telemetry view shows it.
    pub via: String,
    /// The body, as sent.
    pub body: Bytes,
    /// Application properties, in the order sent (IoT Hub carries them as strings).
    pub properties: Vec<(String, String)>,
    /// The system properties the device set.
    pub system: SystemProperties,
    /// `iothub-connection-auth-method` and `-auth-generation-id`: set by the hub.
    pub auth: Option<ClientAuth>,
    /// What produced it: the device (telemetry), or the hub itself (a twin change, a
    /// lifecycle or connection-state event), as `iothub-message-source` tells readers.
    pub source: MessageSource,
}

/// The routing sources IoT Hub knows, each with the `iothub-message-source` its messages carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageSource {
    #[default]
    Telemetry,
    TwinChangeEvents,
    DeviceLifecycleEvents,
    DeviceConnectionStateEvents,
    DeviceJobLifecycleEvents,
}

impl MessageSource {
    pub const ALL: [MessageSource; 5] = [
        MessageSource::Telemetry,
        MessageSource::TwinChangeEvents,
        MessageSource::DeviceLifecycleEvents,
        MessageSource::DeviceConnectionStateEvents,
        MessageSource::DeviceJobLifecycleEvents,
    ];

    /// The name a route's `source` gives it.
    pub fn route_name(self) -> &'static str {
        match self {
            MessageSource::Telemetry => "DeviceMessages",
            MessageSource::TwinChangeEvents => "TwinChangeEvents",
            MessageSource::DeviceLifecycleEvents => "DeviceLifecycleEvents",
            MessageSource::DeviceConnectionStateEvents => "DeviceConnectionStateEvents",
            MessageSource::DeviceJobLifecycleEvents => "DeviceJobLifecycleEvents",
        }
    }

    /// `iothub-message-source` on its messages.
    pub fn annotation(self) -> &'static str {
        match self {
            MessageSource::Telemetry => "Telemetry",
            MessageSource::TwinChangeEvents => "twinChangeEvents",
            MessageSource::DeviceLifecycleEvents => "deviceLifecycleEvents",
            MessageSource::DeviceConnectionStateEvents => "deviceConnectionStateEvents",
            MessageSource::DeviceJobLifecycleEvents => "deviceJobLifecycleEvents",
        }
    }
}

/// The system properties a device may set on a message (IoT Hub's names in comments).
/// Serialized for the events endpoint's stored log.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SystemProperties {
    /// `message-id` (MQTT `$.mid`, HTTPS `iothub-messageid`).
    pub message_id: Option<String>,
    /// `correlation-id` (`$.cid`, `iothub-correlationid`).
    pub correlation_id: Option<String>,
    /// `content-type` (`$.ct`, `iothub-contenttype`).
    pub content_type: Option<String>,
    /// `content-encoding` (`$.ce`, `iothub-contentencoding`).
    pub content_encoding: Option<String>,
    /// `user-id` (`$.uid`, `iothub-userid`).
    pub user_id: Option<String>,
    /// `dt-dataschema` (`$.schema`).
    pub data_schema: Option<String>,
    /// `dt-subject` (`$.sub`).
    pub subject: Option<String>,
    /// `iothub-creation-time-utc` (`$.ctime`), as the device wrote it.
    pub creation_time: Option<String>,
}

/// How the sending client authenticated, as IoT Hub stamps it on every message.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientAuth {
    /// `sas` or `x509Certificate`.
    pub method: &'static str,
    /// `iothub` (its keys, or thumbprints registered with it) or `external` (a CA's
    /// certificate), as the service's connection logs show it.
    pub issuer: &'static str,
    /// `device` or `module`.
    pub scope: &'static str,
    pub generation_id: String,
}

impl ClientAuth {
    /// `iothub-connection-auth-method` as the service writes it (a JSON object in a string).
    pub fn method_json(&self) -> String {
        serde_json::json!({
            "scope": self.scope,
            "type": self.method,
            "issuer": self.issuer,
            "acceptingIpFilterRule": null,
        })
        .to_string()
    }
}

impl SystemProperties {
    /// Sets the system property a transport-level name (MQTT's `$.mid`, HTTPS's
    /// `iothub-messageid`, …) names; false when the name is no system property of a device's.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name.to_ascii_lowercase().as_str() {
            "$.mid" | "iothub-messageid" => &mut self.message_id,
            "$.cid" | "iothub-correlationid" => &mut self.correlation_id,
            "$.ct" | "iothub-contenttype" => &mut self.content_type,
            "$.ce" | "iothub-contentencoding" => &mut self.content_encoding,
            "$.uid" | "iothub-userid" => &mut self.user_id,
            "$.schema" | "dt-dataschema" | "iothub-dataschema" => &mut self.data_schema,
            "$.sub" | "dt-subject" | "iothub-subject" => &mut self.subject,
            "$.ctime" | "iothub-creation-time-utc" => &mut self.creation_time,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// Decodes MQTT's property bag (`devices/{id}/messages/events/{bag}`: `k=v&k2=v2`,
/// percent-encoded): system properties (`$.`-prefixed) and application properties.
pub fn from_property_bag(bag: &str) -> (Vec<(String, String)>, SystemProperties) {
    let mut properties = Vec::new();
    let mut system = SystemProperties::default();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    for pair in bag
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        if k.starts_with("$.") {
            system.set(&k, v);
        } else {
            properties.push((k, v));
        }
    }
    (properties, system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mqtt_property_bag_gives_system_and_application_properties() {
        let (props, sys) = from_property_bag(
            "%24.mid=m1&$.cid=c1&$.ct=application%2Fjson&$.ce=utf-8&temp=21.5&a%20b=c+d&$.sub=s&flag",
        );
        assert_eq!(
            props,
            vec![
                ("temp".to_string(), "21.5".to_string()),
                ("a b".to_string(), "c d".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
        assert_eq!(sys.message_id.as_deref(), Some("m1"));
        assert_eq!(sys.correlation_id.as_deref(), Some("c1"));
        assert_eq!(sys.content_type.as_deref(), Some("application/json"));
        assert_eq!(sys.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(sys.subject.as_deref(), Some("s"));
        assert_eq!(from_property_bag(""), (vec![], SystemProperties::default()));
    }

    #[test]
    fn auth_method_is_the_services_json() {
        let auth = ClientAuth {
            method: "sas",
            issuer: "iothub",
            scope: "device",
            generation_id: "1".into(),
        };
        assert_eq!(
            auth.method_json(),
            r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
        );
    }
}
