//! The control API under `/_emulator/` (loopback only, no auth, never faulted): devices and
//! their method behaviour, faults, recorded requests, jobs with create counters, time, reset,
//! the events endpoint's partitions and consumer groups, message routing.
//! Every endpoint takes and returns plain JSON; errors are `{"error": "..."}`.

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::iso;
use crate::devices::{BehaviourPatch, DeviceFaults, Seed};
use crate::faults::FaultSpec;
use crate::hub::Hub;
use crate::response::{json_response, Body};
use crate::routing::RoutingSpec;

type Answer = Result<Value, (StatusCode, String)>;

fn bad(text: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, text.into())
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, (StatusCode, String)> {
    let text: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(text).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

pub fn handle(
    hub: &Hub,
    method: &Method,
    segments: &[String],
    query: &[(String, String)],
    body: &Bytes,
) -> Response<Body> {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let flag = |name: &str| {
        query
            .iter()
            .any(|(k, v)| k == name && (v == "true" || v == "1"))
    };
    let answer: Answer = match (method, seg.as_slice()) {
        (&Method::GET, ["health"]) => Ok(json!({
            "status": "ok",
            "hostName": hub.host_name(),
            "devices": hub.device_count(),
            "connectedDevices": hub.connected_count(),
            "jobs": hub.job_count(),
            "time": time_view(hub),
        })),
        (&Method::POST, ["reset"]) => hub.reset().map(|_| json!({"status": "reset"})).map_err(bad),
        (&Method::GET, ["devices"]) => Ok(json!({"devices": hub.devices_control_view()})),
        (&Method::PUT, ["devices"]) | (&Method::POST, ["devices"]) => {
            load_devices(hub, body, method == Method::PUT)
        }
        (&Method::PUT, ["devices", id, "method"]) | (&Method::PATCH, ["devices", id, "method"]) => {
            parse::<BehaviourPatch>(body).and_then(|patch| {
                hub.set_behaviour(id, &patch)
                    .map(|n| json!({"updated": n}))
                    .map_err(|e| (StatusCode::NOT_FOUND, e.message))
            })
        }
        (&Method::DELETE, ["devices", id, "connection"]) => {
            Ok(json!({"dropped": hub.drop_connection(id)}))
        }
        (&Method::GET, ["devices", id, "faults"]) => Ok(device_faults_view(&hub.device_faults(id))),
        (&Method::PUT, ["devices", id, "faults"]) => parse::<DeviceFaults>(body).map(|f| {
            hub.set_device_faults(id, f.clone());
            device_faults_view(&f)
        }),
        (&Method::GET, ["telemetry"]) => Ok(json!({"messages": hub.telemetry(flag("clear"))})),
        (&Method::GET, ["events"]) => Ok(hub.events().view(hub.clock().now_ms())),
        (&Method::GET, ["events", "consumerGroups"]) => {
            Ok(json!({"consumerGroups": hub.events().groups.list()}))
        }
        (&Method::PUT, ["events", "consumerGroups", name]) => hub
            .create_consumer_group(name)
            .map(
                |created| json!({"created": created, "consumerGroups": hub.events().groups.list()}),
            )
            .map_err(|e| bad(e.message)),
        (&Method::DELETE, ["events", "consumerGroups", name]) => {
            match hub.delete_consumer_group(name) {
                Ok(true) => Ok(json!({"consumerGroups": hub.events().groups.list()})),
                Ok(false) => Err((StatusCode::NOT_FOUND, format!("no consumer group {name:?}"))),
                Err(why) => Err(bad(why.message)),
            }
        }
        (&Method::GET, ["routing"]) => Ok(json!(hub.routing())),
        (&Method::PUT, ["routing"]) => parse::<RoutingSpec>(body).and_then(|spec| {
            hub.set_routing(spec).map_err(|e| bad(e.0))?;
            Ok(json!(hub.routing()))
        }),
        (&Method::GET, ["faults"]) => Ok(faults_view(&hub.faults())),
        (&Method::PUT, ["faults"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct SetFaults {
                spec: String,
            }
            parse::<SetFaults>(body).and_then(|b| {
                let spec: FaultSpec = b.spec.parse().map_err(bad)?;
                hub.set_faults(spec.clone());
                Ok(faults_view(&spec))
            })
        }
        (&Method::DELETE, ["faults"]) => {
            hub.set_faults(FaultSpec::default());
            Ok(faults_view(&FaultSpec::default()))
        }
        (&Method::GET, ["requests"]) => Ok(hub.recorder().snapshot(flag("clear"))),
        (&Method::DELETE, ["requests"]) => {
            hub.recorder().clear();
            Ok(json!({"requests": [], "dropped": 0}))
        }
        (&Method::GET, ["jobs"]) => Ok(hub.jobs_control_view()),
        (&Method::GET, ["store"]) => Ok(store_view(hub)),
        (&Method::PUT, ["store"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct SetStore {
                writer: String,
            }
            parse::<SetStore>(body).and_then(|b| {
                let held = match b.writer.as_str() {
                    "held" => true,
                    "running" => false,
                    other => {
                        return Err(bad(format!(
                            "writer must be \"held\" or \"running\", not \"{other}\""
                        )))
                    }
                };
                if !hub.hold_writer(held) {
                    return Err(bad("the hub keeps no data dir: there is no writer to hold"));
                }
                Ok(store_view(hub))
            })
        }
        (&Method::GET, ["time"]) => Ok(time_view(hub)),
        (&Method::PUT, ["time"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct SetTime {
                scale: f64,
            }
            parse::<SetTime>(body).and_then(|b| {
                if !(b.scale.is_finite() && b.scale >= 0.0) {
                    return Err(bad("scale must be a finite number >= 0"));
                }
                hub.clock().set_scale(b.scale);
                Ok(time_view(hub))
            })
        }
        (&Method::POST, ["time", "advance"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Advance {
                seconds: f64,
            }
            parse::<Advance>(body).and_then(|b| {
                if !(b.seconds.is_finite() && b.seconds >= 0.0) {
                    return Err(bad(
                        "seconds must be a finite number >= 0 (time never goes back)",
                    ));
                }
                hub.clock().advance(b.seconds);
                Ok(time_view(hub))
            })
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no control endpoint {method} /_emulator/{}", seg.join("/")),
        )),
    };
    match answer {
        Ok(v) => json_response(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
        Err((status, text)) => {
            json_response(status, json!({"error": text}).to_string().into_bytes())
        }
    }
}

fn load_devices(hub: &Hub, body: &Bytes, replace: bool) -> Answer {
    let value: Value = parse(body)?;
    let seed = Seed::from_json(value).map_err(bad)?;
    let devices = seed
        .build(hub.clock().now_ms())
        .map_err(|e| bad(e.to_string()))?;
    let loaded = devices.len();
    hub.load_devices(devices, replace)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json!({"loaded": loaded, "devices": hub.device_count()}))
}

fn faults_view(spec: &FaultSpec) -> Value {
    let faults: serde_json::Map<String, Value> = spec
        .faults
        .iter()
        .map(|(k, p)| (k.label().to_string(), json!(p)))
        .collect();
    json!({
        "spec": spec.to_string(),
        "faults": faults,
        "latencyMs": spec.latency_ms.map(|(lo, hi)| json!([lo, hi])),
    })
}

fn device_faults_view(f: &DeviceFaults) -> Value {
    json!({
        "refuseConnects": f.refuse_connects,
        "methodResponseDelayMs": f.method_response_delay_ms,
        "swallowMethodResponses": f.swallow_method_responses,
    })
}

fn store_view(hub: &Hub) -> Value {
    match hub.writer_state() {
        Some(w) => json!({
            "persistent": true,
            "writer": if w.held { "held" } else { "running" },
            "queued": w.queued,
        }),
        None => json!({"persistent": false}),
    }
}

fn time_view(hub: &Hub) -> Value {
    let now = hub.clock().now_ms();
    json!({"now": iso(now), "nowMs": now, "scale": hub.clock().scale()})
}
