//! Module identities and module twins in the registry, and the rules for a device-side client:
//! a device or one of its modules, named by its MQTT client id (`{deviceId}` or
//! `{deviceId}/{moduleId}`). Ids never contain `/`, so that text is unambiguous; it also keys
//! the live sessions, so methods and desired notifications reach modules the way they reach
//! devices.

use std::borrow::Cow;
use std::ops::Bound;

use serde_json::{Map, Value};

use crate::device_message::ClientAuth;
use crate::errors::{ApiError, ErrorCode};
use crate::paging::{Collected, Page};
use crate::query::{Condition, SelectQuery, Source};
use crate::store::StoreError;
use crate::twin::if_match;

use super::{
    may_update, not_found, put_device, symmetric_keys, validate_device_id, Authentication,
    Credentials, Device, DeviceAuthError, Module, Registry,
};

/// `{deviceId}` → (device, None); `{deviceId}/{moduleId}` → (device, Some(module)).
pub fn split_client(client: &str) -> (&str, Option<&str>) {
    match client.split_once('/') {
        Some((device, module)) => (device, Some(module)),
        None => (client, None),
    }
}

/// The client id (and session key) of a device or of one of its modules.
pub fn client_key<'a>(device: &'a str, module: Option<&str>) -> Cow<'a, str> {
    match module {
        None => Cow::Borrowed(device),
        Some(m) => Cow::Owned(format!("{device}/{m}")),
    }
}

pub(super) fn module_not_found(device: &str, module: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ModuleNotFound,
        format!("Module {module} on device {device} not registered"),
    )
}

impl Registry {
    fn module_ref<T>(
        &self,
        device: &str,
        module: &str,
        f: impl FnOnce(&Device, &Module) -> T,
    ) -> Result<T, ApiError> {
        let map = self.read();
        let d = map.get(device).ok_or_else(|| not_found(device))?;
        let m = d
            .modules
            .get(module)
            .ok_or_else(|| module_not_found(device, module))?;
        Ok(f(d, m))
    }

    /// `GET /devices/{id}/modules`: every module identity of the device, in id order.
    pub fn modules_of(&self, device: &str) -> Result<Vec<Value>, ApiError> {
        let map = self.read();
        let d = map.get(device).ok_or_else(|| not_found(device))?;
        Ok(d.modules.values().map(|m| m.identity(device)).collect())
    }

    pub fn module_identity(&self, device: &str, module: &str) -> Result<Value, ApiError> {
        self.module_ref(device, module, |_, m| m.identity(device))
    }

    /// `PUT /devices/{id}/modules/{mid}`: create (keys generated unless given), or update when
    /// the caller sends `If-Match` (`*` or the module's etag), as the service does.
    pub fn put_module(
        &self,
        device: &str,
        module: &str,
        body: &Value,
        etag: Option<&str>,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        validate_device_id(module).map_err(|_| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                format!("Module id '{module}' is invalid"),
            )
        })?;
        let obj = body.as_object().ok_or_else(|| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                "the module must be a JSON object",
            )
        })?;
        for (field, path_id) in [("deviceId", device), ("moduleId", module)] {
            if let Some(body_id) = obj.get(field).and_then(Value::as_str) {
                if body_id != path_id {
                    return Err(ApiError::new(
                        ErrorCode::ArgumentInvalid,
                        format!("{field} '{body_id}' in the body does not match '{path_id}' in the path"),
                    ));
                }
            }
        }
        if let Some(kind) = obj
            .get("authentication")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            .filter(|t| *t != "sas")
        {
            return Err(ApiError::new(
                ErrorCode::ArgumentInvalid,
                format!("module authentication type '{kind}' is not supported by the emulator; modules use SAS keys"),
            ));
        }
        let managed_by = obj
            .get("managedBy")
            .and_then(Value::as_str)
            .map(str::to_string);
        // Modules live in their device's document: the device is what the store writes.
        self.store.commit(self.write(), |map, changes| {
        let d = map.get_mut(device).ok_or_else(|| not_found(device))?;
        let doc = match d.modules.get_mut(module) {
            Some(m) => {
                may_update(
                    etag,
                    &m.identity_etag(),
                    || {
                        ApiError::new(
                            ErrorCode::ModuleAlreadyExistsOnDevice,
                            format!("A module with ID '{module}' is already registered on device '{device}'"),
                        )
                    },
                    &format!("module {module} on device {device}"),
                )?;
                m.apply(symmetric_keys(obj), managed_by);
                m.bump_identity();
                m.identity(device)
            }
            None => {
                let mut m = Module::new(module, now_ms);
                m.apply(symmetric_keys(obj), managed_by);
                let doc = m.identity(device);
                d.modules.insert(module.to_string(), m);
                doc
            }
        };
        changes.push(|| put_device(d));
        Ok(doc)
        })
    }

    /// `DELETE /devices/{id}/modules/{mid}`; a live session of the module is closed.
    pub fn delete_module(
        &self,
        device: &str,
        module: &str,
        etag: Option<&str>,
    ) -> Result<(), ApiError> {
        let ((), saved) = self.store.stage(self.write(), |map, changes| {
            let d = map.get_mut(device).ok_or_else(|| not_found(device))?;
            let m = d
                .modules
                .get(module)
                .ok_or_else(|| module_not_found(device, module))?;
            if !if_match(etag, &m.identity_etag()) {
                return Err(ApiError::new(
                    ErrorCode::PreconditionFailed,
                    format!("Precondition failed: the etag of module {module} on device {device} does not match"),
                ));
            }
            d.modules.remove(module);
            changes.push(|| put_device(d));
            Ok(())
        })?;
        self.sessions
            .drop_connection(&client_key(device, Some(module)));
        Ok(saved.wait()?)
    }

    pub fn module_twin(&self, device: &str, module: &str) -> Result<Value, ApiError> {
        self.module_ref(device, module, |d, m| m.twin(device, d.is_enabled()))
    }

    /// `PATCH` (merge) or `PUT` (`replace`) `/twins/{id}/modules/{mid}`, with the same twin
    /// rules as a device twin; a desired change reaches the module's session.
    pub fn update_module_twin(
        &self,
        device: &str,
        module: &str,
        body: &Value,
        etag: Option<&str>,
        replace: bool,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        self.write_twin(device, Some(module), body, etag, replace, now_ms)
    }

    /// One page of `SELECT * FROM devices.modules [WHERE …]`: module twins in (device, module)
    /// order after the client key `after` (`{deviceId}/{moduleId}`), and the key to resume after.
    pub fn module_twins_page(
        &self,
        query: &SelectQuery,
        after: Option<&str>,
        size: usize,
    ) -> Page<Value, String> {
        let map = self.read();
        let (after_device, after_module) = after.map_or((None, None), |key| {
            let (d, m) = split_client(key);
            (Some(d), m)
        });
        let from = after_device.map_or(Bound::Unbounded, Bound::Included);
        let mut page = Collected::new(size);
        'devices: for (id, device) in map.range::<str, _>((from, Bound::Unbounded)) {
            let skip_to = match (after_device, after_module) {
                (Some(d), Some(m)) if d == id => Bound::Excluded(m),
                (Some(d), None) if d == id => continue,
                _ => Bound::Unbounded,
            };
            for (mid, module) in device.modules.range::<str, _>((skip_to, Bound::Unbounded)) {
                if page.is_full() {
                    break 'devices;
                }
                let twin = module.twin(id, device.is_enabled());
                if query.matches(&twin) {
                    page.push(format!("{id}/{mid}"), twin);
                }
            }
        }
        page.finish()
    }

    /// The twins a condition selects (a job's query condition, a configuration's target
    /// condition), as (device, module): modules for `FROM devices.modules WHERE …`
    /// (Azure/iotedge#719), devices for anything else.
    pub fn targets(&self, condition: &Condition) -> Vec<(String, Option<String>)> {
        // `*` selects every twin without building one (a job over a whole fleet starts at once).
        let selects = |twin: &dyn Fn() -> Value| condition.is_all() || condition.matches(&twin());
        let map = self.read();
        if !condition.over_modules() {
            return map
                .values()
                .filter(|d| selects(&|| d.twin()))
                .map(|d| (d.id.clone(), None))
                .collect();
        }
        map.iter()
            .flat_map(|(id, d)| {
                d.modules
                    .iter()
                    .filter(|(_, m)| selects(&|| m.twin(id, d.is_enabled())))
                    .map(|(mid, _)| (id.clone(), Some(mid.clone())))
            })
            .collect()
    }

    /// How many twins each `SELECT … FROM devices[.modules]` query selects (a configuration's
    /// metrics), with the registry read once and each twin built once for all of them;
    /// `devices.jobs` rows are not twins and count 0.
    pub fn count_matching(&self, queries: &[SelectQuery]) -> Vec<usize> {
        let mut counts = vec![0; queries.len()];
        let wants = |source| queries.iter().any(|q| q.source == source);
        let (devices, modules) = (wants(Source::Devices), wants(Source::DevicesModules));
        let mut count = |twin: &Value, source| {
            for (query, n) in queries.iter().zip(counts.iter_mut()) {
                if query.source == source && query.matches(twin) {
                    *n += 1;
                }
            }
        };
        for (id, d) in self.read().iter() {
            if devices {
                count(&d.twin(), Source::Devices);
            }
            if modules {
                for m in d.modules.values() {
                    count(&m.twin(id, d.is_enabled()), Source::DevicesModules);
                }
            }
        }
        counts
    }

    /// How a client authenticates (`sas`, or `x509Certificate` from IoT Hub's thumbprints or an
    /// external CA) and its
    /// generation id, as IoT Hub stamps them on the client's messages; none when unknown.
    pub fn client_auth(&self, client: &str) -> Option<ClientAuth> {
        let (device, module) = split_client(client);
        let map = self.read();
        let d = map.get(device)?;
        Some(match module {
            None => {
                let (method, issuer) = match d.credentials() {
                    Credentials::Keys(_) => ("sas", "iothub"),
                    Credentials::Thumbprints(_) => ("x509Certificate", "iothub"),
                    Credentials::CertificateAuthority => ("x509Certificate", "external"),
                };
                ClientAuth {
                    method,
                    issuer,
                    scope: "device",
                    generation_id: d.generation_id().to_string(),
                }
            }
            Some(module) => ClientAuth {
                method: "sas",
                issuer: "iothub",
                scope: "module",
                generation_id: d.modules.get(module)?.generation_id().to_string(),
            },
        })
    }

    /// What a client's login is checked against, when the client may connect at all: its
    /// device must exist and be enabled, and its module (if it names one) exist. A device logs
    /// in as its `authentication` says (SAS keys or x509). A module's token names the module
    /// (`devices/{d}/modules/{m}`) and is signed with the module's keys only: the service
    /// refuses a device-scoped token for a module connection, "It does not match either the
    /// primary or secondary key" (Azure/iotedge#5155).
    pub fn client_credentials(&self, client: &str) -> Result<Credentials, DeviceAuthError> {
        let (device, module) = split_client(client);
        let map = self.read();
        let d = map.get(device).ok_or(DeviceAuthError::Unknown)?;
        if !d.is_enabled() {
            return Err(DeviceAuthError::Disabled);
        }
        Ok(match module {
            None => d.credentials(),
            Some(module) => {
                let m = d.modules.get(module).ok_or(DeviceAuthError::Unknown)?;
                Authentication::Sas
                    .credentials(format!("devices/{device}/modules/{module}"), m.keys())
            }
        })
    }

    /// Connection state kept by the MQTT sessions (no-op for an identity deleted meanwhile).
    pub fn set_connected(&self, client: &str, connected: bool, now_ms: i64) {
        let (device, module) = split_client(client);
        let saved = self.store.commit(self.write(), |map, changes| {
            let Some(d) = map.get_mut(device) else {
                return Ok(());
            };
            match module {
                None => d.set_connected(connected, now_ms),
                Some(m) => {
                    if let Some(m) = d.modules.get_mut(m) {
                        m.set_connected(connected, now_ms);
                    }
                }
            }
            // Kept for the next start: a device a client spoke for stays a real one.
            changes.push(|| put_device(d));
            Ok::<_, StoreError>(())
        });
        if let Err(e) = saved {
            eprintln!("iothub-emulator: the connection state of {client} was not saved: {e}");
        }
    }

    /// A packet arrived from the client.
    pub fn touch(&self, client: &str, now_ms: i64) {
        let (device, module) = split_client(client);
        let mut map = self.write();
        let Some(d) = map.get_mut(device) else { return };
        match module {
            None => d.last_activity_ms = now_ms,
            Some(m) => {
                if let Some(m) = d.modules.get_mut(m) {
                    m.last_activity_ms = now_ms;
                }
            }
        }
    }

    /// `{desired, reported}` as the client's twin GET returns them (None: identity gone).
    pub fn client_twin(&self, client: &str) -> Option<Value> {
        let (device, module) = split_client(client);
        let map = self.read();
        let d = map.get(device)?;
        match module {
            None => Some(d.props.to_json()),
            Some(m) => d.modules.get(m).map(|m| m.props.to_json()),
        }
    }

    /// Merges the client's reported-properties patch, saved before it returns: the new
    /// reported `$version` (None: identity gone; an error: not saved).
    pub fn report(
        &self,
        client: &str,
        patch: &Map<String, Value>,
        now_ms: i64,
    ) -> Option<Result<u64, ApiError>> {
        let (device, module) = split_client(client);
        let found = self.store.commit(self.write(), |map, changes| {
            let Some(d) = map.get_mut(device) else {
                return Ok(None);
            };
            let props = match module {
                None => &mut d.props,
                Some(m) => match d.modules.get_mut(m) {
                    Some(m) => &mut m.props,
                    None => return Ok(None),
                },
            };
            let version = props.patch_reported(patch, now_ms);
            changes.push(|| put_device(d));
            Ok::<_, ApiError>(Some(version))
        });
        found.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{parse_condition, parse_select};
    use serde_json::json;

    fn registry() -> Registry {
        let r = Registry::default();
        r.load(vec![Device::new("edge", 0), Device::new("plain", 0)], true)
            .unwrap();
        for m in ["b", "a"] {
            r.put_module("edge", m, &json!({}), None, 0).unwrap();
        }
        r
    }

    #[test]
    fn clients_are_devices_or_modules() {
        assert_eq!(split_client("edge"), ("edge", None));
        assert_eq!(split_client("edge/a"), ("edge", Some("a")));
        assert_eq!(client_key("edge", Some("a")), "edge/a");
        assert_eq!(client_key("edge", None), "edge");

        let r = registry();
        let grants = |client: &str| match r.client_credentials(client) {
            Ok(Credentials::Keys(grants)) => Some(grants),
            _ => None,
        };
        let module_grants = grants("edge/a").unwrap();
        assert_eq!(
            module_grants.len(),
            1,
            "a module signs with its own keys only"
        );
        assert_eq!(module_grants[0].0, "devices/edge/modules/a");
        let module_key = r.module_identity("edge", "a").unwrap()["authentication"]["symmetricKey"]
            ["primaryKey"]
            .clone();
        assert_eq!(module_grants[0].1[0], module_key.as_str().unwrap());
        assert_eq!(grants("edge").unwrap()[0].0, "devices/edge");
        assert!(grants("edge/zz").is_none());
        assert!(grants("nobody/a").is_none());
        r.put_identity("edge", &json!({"status": "disabled"}), Some("*"), 0)
            .unwrap();
        assert!(
            grants("edge/a").is_none(),
            "a disabled device's modules stay out"
        );
    }

    #[test]
    fn module_sessions_keep_their_own_state() {
        let r = registry();
        let twin = r.module_twin("edge", "a").unwrap();
        let first: Vec<&str> = twin
            .as_object()
            .unwrap()
            .keys()
            .take(3)
            .map(String::as_str)
            .collect();
        assert_eq!(
            first,
            ["deviceId", "moduleId", "etag"],
            "the service's field order"
        );
        r.set_connected("edge/a", true, 5_000);
        assert_eq!(
            r.module_twin("edge", "a").unwrap()["connectionState"],
            "Connected"
        );
        assert_eq!(
            r.module_twin("edge", "b").unwrap()["connectionState"],
            "Disconnected"
        );
        assert_eq!(
            r.identity("edge").unwrap()["connectionState"],
            "Disconnected"
        );
        let v = r.report("edge/a", json!({"fw": "2"}).as_object().unwrap(), 6_000);
        assert_eq!(v.map(Result::unwrap), Some(2));
        assert_eq!(r.client_twin("edge/a").unwrap()["reported"]["fw"], "2");
        assert_eq!(r.client_twin("edge").unwrap()["reported"].get("fw"), None);
        assert!(r.report("edge/zz", &Map::new(), 0).is_none());
        r.set_connected("edge/a", false, 7_000);
        assert_eq!(
            r.module_identity("edge", "a").unwrap()["connectionState"],
            "Disconnected"
        );
    }

    #[test]
    fn module_queries_page_in_device_then_module_order() {
        let r = registry();
        r.put_module("plain", "a", &json!({}), None, 0).unwrap();
        let all = parse_select("SELECT * FROM devices.modules").unwrap();
        let (page, next) = r.module_twins_page(&all, None, 2);
        let ids = |p: &[Value]| -> Vec<String> {
            p.iter()
                .map(|t| {
                    format!(
                        "{}/{}",
                        t["deviceId"].as_str().unwrap(),
                        t["moduleId"].as_str().unwrap()
                    )
                })
                .collect()
        };
        assert_eq!(ids(&page), ["edge/a", "edge/b"]);
        assert_eq!(next.as_deref(), Some("edge/b"));
        let (page, next) = r.module_twins_page(&all, next.as_deref(), 2);
        assert_eq!((ids(&page), next), (vec!["plain/a".to_string()], None));
        let only_a = parse_condition("FROM devices.modules WHERE moduleId = 'a'").unwrap();
        assert_eq!(
            r.targets(&only_a),
            [
                ("edge".to_string(), Some("a".to_string())),
                ("plain".to_string(), Some("a".to_string()))
            ]
        );
        r.delete("plain", None).unwrap();
        assert_eq!(
            r.targets(&only_a).len(),
            1,
            "a deleted device takes its modules"
        );
    }
}
