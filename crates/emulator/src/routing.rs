//! Message routing, in the shape of IoT Hub's `properties.routing`: routes (a source, a
//! condition in the routing query language, the endpoint), the fallback route and enrichments.
//! `events` is the one endpoint the emulator has; `Hub::route` asks [`Routing::deliver`] whether
//! a message goes there and with which enrichments.
//!
//! A condition is evaluated against one JSON document per message (`document`): application
//! properties by name, system properties as `$contentType`, `$connectionDeviceId`, …, the body
//! as `$body` (JSON bodies only) and the sender's twin as `$twin`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::iso;
use crate::device_message::{DeviceMessage, MessageSource};
use crate::devices::split_client;
use crate::locks::{read, write};
use crate::query::{parse_route_condition, Condition};
use crate::store::{meta, Change, Store, StoreError};

/// The one endpoint the emulator has: the built-in Event Hubs-compatible one.
pub const BUILT_IN_ENDPOINT: &str = "events";
/// IoT Hub's limits: routes per hub, enrichments per hub, a route name's and a condition's
/// length.
pub const MAX_ROUTES: usize = 100;
pub const MAX_ENRICHMENTS: usize = 10;
const MAX_NAME_LEN: usize = 64;
const MAX_CONDITION_LEN: usize = 1024;

/// `properties.routing` as IoT Hub's resource has it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingSpec {
    /// Custom endpoints: refused (the emulator has none), taken only to say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Value>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_route: Option<RouteSpec>,
    #[serde(default)]
    pub enrichments: Vec<EnrichmentSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default = "device_messages")]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default)]
    pub endpoint_names: Vec<String>,
    #[serde(default = "enabled")]
    pub is_enabled: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichmentSpec {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub endpoint_names: Vec<String>,
}

fn device_messages() -> String {
    "DeviceMessages".into()
}

fn enabled() -> bool {
    true
}

/// A checked route.
#[derive(Debug)]
struct Route {
    source: MessageSource,
    condition: Condition,
    enabled: bool,
}

/// A checked routing configuration, ready to route messages.
#[derive(Debug)]
pub struct Routing {
    spec: RoutingSpec,
    routes: Vec<Route>,
    /// `None`: the fallback route is disabled.
    fallback: Option<Condition>,
    enrichments: Vec<EnrichmentSpec>,
    /// Whether any condition or enrichment reads the sender's twin (only then is it looked up).
    reads_twin: bool,
}

impl Default for Routing {
    /// A new hub's: no routes, the fallback route on.
    fn default() -> Self {
        Routing::new(RoutingSpec::default()).expect("the default routing is valid")
    }
}

fn check_endpoints(what: &str, names: &[String]) -> Result<(), String> {
    match names {
        [one] if one == BUILT_IN_ENDPOINT => Ok(()),
        [one] => Err(format!(
            "{what}: endpoint {one:?} is not supported: the emulator has only the built-in endpoint \"{BUILT_IN_ENDPOINT}\" (custom endpoints are not emulated)"
        )),
        _ => Err(format!(
            "{what}: endpointNames must name exactly one endpoint (\"{BUILT_IN_ENDPOINT}\"), not {}",
            names.len()
        )),
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} is invalid: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
        ))
    }
}

fn parse_source(what: &str, name: &str) -> Result<MessageSource, String> {
    MessageSource::ALL
        .into_iter()
        .find(|s| s.route_name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let known: Vec<&str> = MessageSource::ALL.iter().map(|s| s.route_name()).collect();
            format!(
                "{what}: unknown source {name:?} (one of {})",
                known.join(", ")
            )
        })
}

fn parse_condition(what: &str, text: Option<&str>) -> Result<Condition, String> {
    let text = text.unwrap_or("");
    if text.len() > MAX_CONDITION_LEN {
        return Err(format!(
            "{what}: the condition is longer than {MAX_CONDITION_LEN} characters"
        ));
    }
    parse_route_condition(text).map_err(|e| format!("{what}: invalid condition: {e}"))
}

/// Why a routing configuration was refused: one line, as the service would say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingError(pub String);

impl std::fmt::Display for RoutingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RoutingError {}

impl Routing {
    /// Checks `spec` as the service does; the error is one line.
    pub fn new(spec: RoutingSpec) -> Result<Routing, RoutingError> {
        Self::check(spec).map_err(RoutingError)
    }

    fn check(spec: RoutingSpec) -> Result<Routing, String> {
        if let Some(endpoints) = &spec.endpoints {
            let empty = |v: &Value| v.as_array().is_some_and(Vec::is_empty) || v.is_null();
            let none = match endpoints {
                Value::Object(kinds) => kinds.values().all(empty),
                other => empty(other),
            };
            if !none {
                return Err(format!(
                    "routing.endpoints: custom endpoints are not supported: the emulator has only the built-in endpoint \"{BUILT_IN_ENDPOINT}\""
                ));
            }
        }
        if spec.routes.len() > MAX_ROUTES {
            return Err(format!(
                "routing: {} routes, IoT Hub allows at most {MAX_ROUTES}",
                spec.routes.len()
            ));
        }
        let mut routes = Vec::with_capacity(spec.routes.len());
        let mut names = std::collections::HashSet::new();
        for r in &spec.routes {
            check_name("route", &r.name)?;
            let what = format!("route {:?}", r.name);
            if !names.insert(r.name.to_ascii_lowercase()) {
                return Err(format!("{what}: a route of that name already exists"));
            }
            check_endpoints(&what, &r.endpoint_names)?;
            routes.push(Route {
                source: parse_source(&what, &r.source)?,
                condition: parse_condition(&what, r.condition.as_deref())?,
                enabled: r.is_enabled,
            });
        }
        let fallback = match &spec.fallback_route {
            None => Some(parse_route_condition("true").map_err(|e| e.to_string())?),
            Some(f) => {
                let what = "the fallback route";
                if parse_source(what, &f.source)? != MessageSource::Telemetry {
                    return Err(format!("{what}: its source must be DeviceMessages"));
                }
                check_endpoints(what, &f.endpoint_names)?;
                let condition = parse_condition(what, f.condition.as_deref())?;
                f.is_enabled.then_some(condition)
            }
        };
        if spec.enrichments.len() > MAX_ENRICHMENTS {
            return Err(format!(
                "routing: {} enrichments, IoT Hub allows at most {MAX_ENRICHMENTS}",
                spec.enrichments.len()
            ));
        }
        for e in &spec.enrichments {
            check_name("enrichment key", &e.key)?;
            let what = format!("enrichment {:?}", e.key);
            if e.value.is_empty() {
                return Err(format!("{what}: the value is empty"));
            }
            check_endpoints(&what, &e.endpoint_names)?;
        }
        let reads_twin = spec
            .routes
            .iter()
            .chain(&spec.fallback_route)
            .filter_map(|r| r.condition.as_deref())
            .chain(spec.enrichments.iter().map(|e| e.value.as_str()))
            .any(|text| text.to_ascii_lowercase().contains("$twin"));
        Ok(Routing {
            routes,
            fallback,
            enrichments: spec.enrichments.clone(),
            reads_twin,
            spec,
        })
    }

    /// The configuration as given (the control API's `GET /_emulator/routing`).
    pub fn spec(&self) -> &RoutingSpec {
        &self.spec
    }

    /// Whether an enabled route reads `source` (the hub's own events are built only then).
    pub fn reads_source(&self, source: MessageSource) -> bool {
        self.routes.iter().any(|r| r.enabled && r.source == source)
    }

    pub fn reads_twin(&self) -> bool {
        self.reads_twin
    }

    /// Whether `message` from `source` reaches `events`: once however many routes match. An
    /// enabled route of its source that matches sends it; device messages no route sent go
    /// through the fallback route (IoT Hub's rule).
    pub fn delivers(
        &self,
        message: &DeviceMessage,
        enqueued_ms: i64,
        twin: Option<&Value>,
    ) -> bool {
        let source = message.source;
        // The document is built only when a condition must be evaluated: with a new hub's
        // routing (the fallback's `true`) a device message costs no copy.
        let mut doc = None;
        let mut matches = |c: &Condition| {
            c.is_literal_true()
                || c.matches(doc.get_or_insert_with(|| document(message, enqueued_ms, twin)))
        };
        if self
            .routes
            .iter()
            .filter(|r| r.enabled && r.source == source)
            .any(|r| matches(&r.condition))
        {
            return true;
        }
        source == MessageSource::Telemetry && self.fallback.as_ref().is_some_and(matches)
    }

    /// The enrichments for a delivered message: (key, value), a `$twin.…` value read from
    /// the sender's twin (left out when the twin has no such property) and `$iothubname`.
    pub fn enrichments(&self, hub_name: &str, twin: Option<&Value>) -> Vec<(String, String)> {
        self.enrichments
            .iter()
            .filter_map(|e| {
                let value = if e.value.eq_ignore_ascii_case("$iothubname") {
                    hub_name.to_string()
                } else if let Some(path) = strip_prefix_ignore_case(&e.value, "$twin.") {
                    let found = path.split('.').try_fold(twin?, |v, name| v.get(name))?;
                    match found {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }
                } else {
                    e.value.clone()
                };
                Some((e.key.clone(), value))
            })
            .collect()
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The hub's routing: the configuration in force and the connection-state events' sequence.
#[derive(Default)]
pub struct Router {
    current: RwLock<Arc<Routing>>,
    /// What a reset goes back to: the seed's routing.
    initial: RwLock<Arc<Routing>>,
    connection_sequence: AtomicU64,
}

impl Router {
    pub fn current(&self) -> Arc<Routing> {
        read(&self.current).clone()
    }

    /// Puts `routing` in force and returns once `store` has it (queued under the lock: the
    /// last routing set is the one stored).
    pub fn set(&self, store: &Store, routing: Routing) -> Result<(), StoreError> {
        let (_, pending) = store.stage(write(&self.current), |current, changes| {
            changes.push(|| {
                Change::Meta(
                    meta::ROUTING.into(),
                    serde_json::to_string(routing.spec()).unwrap_or_default(),
                )
            });
            **current = Arc::new(routing);
            Ok::<_, StoreError>(())
        })?;
        pending.wait()
    }

    /// The routing a new hub starts with (the seed's), also in force from now on unless
    /// `store` holds one set through the control API in an earlier run.
    pub fn set_initial(&self, store: &Store, routing: Routing) -> Result<(), RoutingError> {
        let routing = Arc::new(routing);
        *write(&self.initial) = routing.clone();
        let unreadable = |e: String| RoutingError(format!("the routing in the store: {e}"));
        let current = match store
            .meta(meta::ROUTING)
            .map_err(|e| unreadable(e.to_string()))?
        {
            Some(text) => {
                let spec: RoutingSpec =
                    serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
                Arc::new(Routing::new(spec).map_err(|e| unreadable(e.0))?)
            }
            None => routing,
        };
        *write(&self.current) = current;
        Ok(())
    }

    /// Back to the initial routing (a hub reset); the stored one goes.
    pub fn reset(&self, store: &Store) -> Result<(), StoreError> {
        *write(&self.current) = read(&self.initial).clone();
        store
            .write(|| vec![Change::DeleteMeta(meta::ROUTING.into())])
            .wait()
    }

    /// A connection-state event's `sequenceNumber`: 64 hex digits that order a device's
    /// connects and disconnects (compare them as strings, as the service's docs say).
    pub fn next_connection_sequence(&self, now_ms: i64) -> String {
        let n = self.connection_sequence.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{:016X}{:048X}", now_ms.max(0), n)
    }
}

/// Whether a body may be read as `$body`: content type `application/json` and a UTF
/// encoding, as the service requires.
fn json_body(message: &DeviceMessage) -> Option<Value> {
    let s = &message.system;
    let json = s
        .content_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"));
    let utf = s.content_encoding.as_deref().is_some_and(|e| {
        ["utf-8", "utf-16", "utf-32"]
            .iter()
            .any(|u| e.eq_ignore_ascii_case(u))
    });
    if !(json && utf) {
        return None;
    }
    serde_json::from_slice(&message.body).ok()
}

/// The document a condition reads for `message`.
pub fn document(message: &DeviceMessage, enqueued_ms: i64, twin: Option<&Value>) -> Value {
    let mut doc = Map::new();
    for (k, v) in &message.properties {
        doc.insert(k.clone(), Value::String(v.clone()));
    }
    let s = &message.system;
    let (device, module) = split_client(&message.client);
    let mut system = |name: &str, value: Option<&str>| {
        if let Some(v) = value {
            doc.insert(name.to_string(), Value::String(v.to_string()));
        }
    };
    system("$connectionDeviceId", Some(device));
    system("$connectionModuleId", module);
    system("$contentType", s.content_type.as_deref());
    system("$contentEncoding", s.content_encoding.as_deref());
    system("$messageId", s.message_id.as_deref());
    system("$correlationId", s.correlation_id.as_deref());
    system("$userId", s.user_id.as_deref());
    system("$dt-dataschema", s.data_schema.as_deref());
    system("$dt-subject", s.subject.as_deref());
    system("$iothub-creation-time-utc", s.creation_time.as_deref());
    system("$iothub-enqueuedtime", Some(&iso(enqueued_ms)));
    system("$iothub-message-source", Some(message.source.annotation()));
    if let Some(auth) = &message.auth {
        system("$connectionAuthMethod", Some(&auth.method_json()));
    }
    if let Some(body) = json_body(message) {
        doc.insert("$body".into(), body);
    }
    if let Some(twin) = twin {
        doc.insert("$twin".into(), twin.clone());
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routing(spec: Value) -> Result<Routing, String> {
        Routing::new(serde_json::from_value(spec).unwrap()).map_err(|e| e.0)
    }

    fn telemetry(props: &[(&str, &str)], body: &str, json: bool) -> DeviceMessage {
        let mut m = DeviceMessage {
            client: "dev-1".into(),
            body: body.to_string().into_bytes().into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        if json {
            m.system.content_type = Some("application/json".into());
            m.system.content_encoding = Some("utf-8".into());
        }
        m
    }

    #[test]
    fn with_no_routes_device_messages_take_the_fallback_and_other_sources_go_nowhere() {
        let r = Routing::default();
        assert!(r.delivers(&telemetry(&[], "x", false), 0, None));
        let mut event = telemetry(&[], "{}", true);
        event.source = MessageSource::TwinChangeEvents;
        assert!(!r.delivers(&event, 0, None));
    }

    #[test]
    fn a_matching_route_sends_and_the_fallback_takes_only_what_no_route_matched() {
        let r = routing(json!({
            "routes": [{"name": "hot", "source": "DeviceMessages", "condition": "$body.t > 30", "endpointNames": ["events"], "isEnabled": true}],
            "fallbackRoute": {"name": "$fallback", "source": "DeviceMessages", "condition": "level = 'critical'", "endpointNames": ["events"], "isEnabled": true}
        }))
        .unwrap();
        assert!(r.delivers(&telemetry(&[], r#"{"t": 31}"#, true), 0, None));
        // Not JSON by its content type: `$body` is undefined.
        assert!(!r.delivers(&telemetry(&[], r#"{"t": 31}"#, false), 0, None));
        assert!(!r.delivers(&telemetry(&[], r#"{"t": 3}"#, true), 0, None));
        assert!(r.delivers(
            &telemetry(&[("level", "critical")], r#"{"t": 3}"#, true),
            0,
            None
        ));
        // Property names are not case-sensitive, values are.
        assert!(r.delivers(&telemetry(&[("Level", "critical")], "", false), 0, None));
        assert!(!r.delivers(&telemetry(&[("level", "Critical")], "", false), 0, None));
    }

    #[test]
    fn conditions_read_system_properties_and_the_twin() {
        let r = routing(json!({
            "routes": [{"name": "a", "source": "DeviceMessages", "endpointNames": ["events"],
              "condition": "$connectionDeviceId = 'dev-1' AND IS_DEFINED($iothub-enqueuedtime) AND $twin.tags.site = 'north' AND NOT $contentType = 'text/plain'"}],
            "fallbackRoute": {"name": "f", "source": "DeviceMessages", "endpointNames": ["events"], "isEnabled": false}
        }))
        .unwrap();
        assert!(r.reads_twin());
        let twin = json!({"tags": {"site": "north"}});
        assert!(r.delivers(&telemetry(&[], "", true), 0, Some(&twin)));
        assert!(!r.delivers(
            &telemetry(&[], "", true),
            0,
            Some(&json!({"tags": {"Site": "north"}}))
        ));
        assert!(!r.delivers(&telemetry(&[], "", true), 0, None));
    }

    #[test]
    fn enrichments_take_static_values_twin_properties_and_the_hub_name() {
        let r = routing(json!({"enrichments": [
            {"key": "env", "value": "prod", "endpointNames": ["events"]},
            {"key": "site", "value": "$twin.tags.site", "endpointNames": ["events"]},
            {"key": "missing", "value": "$twin.tags.nope", "endpointNames": ["events"]},
            {"key": "hub", "value": "$iothubname", "endpointNames": ["events"]}
        ]}))
        .unwrap();
        let twin = json!({"tags": {"site": "north"}});
        assert_eq!(
            r.enrichments("h1", Some(&twin)),
            vec![
                ("env".to_string(), "prod".to_string()),
                ("site".into(), "north".into()),
                ("hub".into(), "h1".into())
            ]
        );
    }

    #[test]
    fn what_the_service_refuses_is_refused_in_one_line() {
        let cases = [
            (
                json!({"routes": [{"name": "r", "source": "DeviceMessages", "endpointNames": ["myqueue"]}]}),
                "endpoint \"myqueue\" is not supported",
            ),
            (
                json!({"endpoints": {"serviceBusQueues": [{"name": "q"}]}}),
                "custom endpoints are not supported",
            ),
            (
                json!({"routes": [{"name": "r", "source": "Nope", "endpointNames": ["events"]}]}),
                "unknown source \"Nope\"",
            ),
            (
                json!({"routes": [{"name": "r", "condition": "a = ", "endpointNames": ["events"]}]}),
                "invalid condition",
            ),
            (
                json!({"routes": [{"name": "bad name", "endpointNames": ["events"]}]}),
                "route name \"bad name\" is invalid",
            ),
            (
                json!({"routes": [{"name": "r", "endpointNames": ["events"]}, {"name": "R", "endpointNames": ["events"]}]}),
                "already exists",
            ),
        ];
        for (spec, expected) in cases {
            let err = routing(spec).unwrap_err();
            assert!(err.contains(expected) && !err.contains('\n'), "{err}");
        }
        let many: Vec<Value> = (0..101)
            .map(|i| json!({"name": format!("r{i}"), "endpointNames": ["events"]}))
            .collect();
        assert!(routing(json!({ "routes": many }))
            .unwrap_err()
            .contains("at most 100"));
    }
}
