//! The device registry: identities, twins and the simulated direct-method behaviour of each
//! device. One `RwLock` over a sorted map; every operation holds it briefly and never across
//! an `.await`, so request handling and job workers never stall each other.

mod authentication;
mod bulk;
pub mod cloud_to_device;
mod device;
mod export;
mod identity;
mod methods;
mod module;
mod modules;
mod seed;
mod sessions;
mod shared;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;

use crate::errors::{ApiError, ErrorCode};
use crate::paging::{Collected, Page};
use crate::query::SelectQuery;
use crate::store::{Change, Document, Pending, Store, StoreError};
use crate::twin::if_match;
use identity::{write_identity, IdentitySpec, Write};

pub use authentication::{Authentication, Credentials, DeviceAuthError, Grants};
pub use device::{BehaviourPatch, Device, MethodBehaviour, MethodCallRecord};
pub use methods::{MethodCall, MethodFailure, MAX_METHOD_PAYLOAD};
pub use module::Module;
pub use modules::{client_key, split_client};
pub use seed::{validate_device_id, Seed, SeedDevice, SeedProperties};
pub use sessions::{CallError, DeviceFaults, Outgoing, Sessions, TwinAnswer, TwinRequest};

#[derive(Default)]
pub struct Registry {
    devices: RwLock<BTreeMap<String, Device>>,
    /// Live sessions (MQTT or AMQP) of connected devices (separate: only they cost memory).
    pub sessions: Sessions,
    /// Cloud-to-device queues and their feedback.
    pub cloud_to_device: cloud_to_device::CloudToDevice,
    /// Where every change is written before it is answered (the hub's one store: the job
    /// engine writes its jobs through it too). Written under the map's lock, so the store
    /// sees the changes of a device in the order they were made.
    pub store: Store,
}

/// `authentication.symmetricKey.{primaryKey, secondaryKey}` of an identity body (a device's or
/// a module's); absent or empty ones are generated or kept.
fn symmetric_keys(identity: &serde_json::Map<String, Value>) -> [Option<String>; 2] {
    let keys = identity
        .get("authentication")
        .and_then(|a| a.get("symmetricKey"));
    ["primaryKey", "secondaryKey"].map(|name| {
        keys.and_then(|k| k.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

/// A twin that the REST twin endpoints and twin jobs write: a device's or a module's.
trait WritableTwin {
    fn etag(&self) -> String;
    fn patch_twin(&mut self, patch: &Value, now_ms: i64) -> Result<Option<Value>, ApiError>;
    fn replace_twin(&mut self, twin: &Value, now_ms: i64) -> Result<Option<Value>, ApiError>;
}

impl WritableTwin for Device {
    fn etag(&self) -> String {
        Device::etag(self)
    }
    fn patch_twin(&mut self, patch: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        Device::patch_twin(self, patch, now_ms)
    }
    fn replace_twin(&mut self, twin: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        Device::replace_twin(self, twin, now_ms)
    }
}

impl WritableTwin for Module {
    fn etag(&self) -> String {
        Module::etag(self)
    }
    fn patch_twin(&mut self, patch: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        Module::patch_twin(self, patch, now_ms)
    }
    fn replace_twin(&mut self, twin: &Value, now_ms: i64) -> Result<Option<Value>, ApiError> {
        Module::replace_twin(self, twin, now_ms)
    }
}

/// `PATCH` (merge) or `PUT` (`replace`) of a twin under `If-Match`: the desired notification
/// for the twin's session when desired changed. `what` names the twin in the error.
fn write_twin(
    twin: &mut impl WritableTwin,
    body: &Value,
    etag: Option<&str>,
    replace: bool,
    now_ms: i64,
    what: &str,
) -> Result<Option<Value>, ApiError> {
    if !if_match(etag, &twin.etag()) {
        return Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            format!("Precondition failed: the twin etag of {what} does not match"),
        ));
    }
    if replace {
        twin.replace_twin(body, now_ms)
    } else {
        twin.patch_twin(body, now_ms)
    }
}

/// PUT of an identity that exists updates it only with `If-Match` (`*` or its etag), as the
/// service does: without one the PUT was a create (`exists`), with another etag it fails.
fn may_update(
    etag: Option<&str>,
    current: &str,
    exists: impl FnOnce() -> ApiError,
    what: &str,
) -> Result<(), ApiError> {
    if etag.is_none() {
        return Err(exists());
    }
    if !if_match(etag, current) {
        return Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            format!("Precondition failed: the etag of {what} does not match"),
        ));
    }
    Ok(())
}

/// Twin patches written and queued to the store, not yet committed.
#[must_use = "a twin write counts only once committed"]
pub struct StagedTwins {
    results: Vec<Result<(), ApiError>>,
    /// Desired changes for the clients' sessions, sent once committed.
    notes: Vec<(String, Value)>,
    pending: Option<Pending>,
}

impl StagedTwins {
    /// Waits until the patches are on disk, then sends the desired changes: one result per
    /// target (every one an error when the commit failed).
    pub fn commit(self, registry: &Registry) -> Vec<Result<(), ApiError>> {
        if let Some(Err(e)) = self.pending.map(Pending::wait) {
            let e = ApiError::from(e);
            return self.results.iter().map(|_| Err(e.clone())).collect();
        }
        for (client, note) in self.notes {
            registry.sessions.desired_changed(&client, &note);
        }
        self.results
    }
}

/// A twin write's request: `PATCH` (merge) or `PUT` (`replace`) with `body` under `If-Match`.
struct TwinWrite<'a> {
    body: &'a Value,
    etag: Option<&'a str>,
    replace: bool,
    now_ms: i64,
}

/// The hub's one twin write, for the REST twin endpoints and twin jobs alike: the twin of a
/// device or of one of its modules written under the registry's lock. Gives the desired
/// notification for its session (when desired changed) and the device, whose document is
/// what the store writes.
fn write_client_twin<'m>(
    map: &'m mut BTreeMap<String, Device>,
    device: &str,
    module: Option<&str>,
    write: &TwinWrite<'_>,
) -> Result<(Option<Value>, &'m Device), ApiError> {
    let d = map.get_mut(device).ok_or_else(|| not_found(device))?;
    let TwinWrite {
        body,
        etag,
        replace,
        now_ms,
    } = *write;
    let note = match module {
        None => write_twin(d, body, etag, replace, now_ms, device)?,
        Some(module) => {
            let m = d
                .modules
                .get_mut(module)
                .ok_or_else(|| modules::module_not_found(device, module))?;
            let what = format!("module {module} on device {device}");
            write_twin(m, body, etag, replace, now_ms, &what)?
        }
    };
    Ok((note, d))
}

/// The change that writes `device` (everything it has, its modules too).
fn put_device(device: &Device) -> Change {
    Change::PutDevices(vec![Document::from(device)])
}

pub fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::DeviceNotFound,
        format!("Device {id} not registered"),
    )
}

impl Registry {
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Device>> {
        crate::locks::read(&self.devices)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Device>> {
        crate::locks::write(&self.devices)
    }

    /// A registry writing through `store`.
    pub fn with_store(store: Store) -> Self {
        Self {
            store,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds (or overwrites) devices; with `replace`, removes every other device first.
    pub fn load(&self, devices: Vec<Device>, replace: bool) -> Result<(), StoreError> {
        let map = self.write();
        if !replace {
            return self.store.commit(map, |map, changes| {
                changes.push(|| Change::PutDevices(devices.iter().map(Document::from).collect()));
                map.extend(devices.into_iter().map(|d| (d.id.clone(), d)));
                Ok::<_, StoreError>(())
            });
        }
        // A whole fleet: written in slices as the store takes them (`Store::replace_devices`),
        // never all serialized at once, so not one `Changes` unit.
        let mut map = map;
        map.clear();
        // The store drops the queues with the devices they belong to.
        self.cloud_to_device.clear();
        map.extend(devices.into_iter().map(|d| (d.id.clone(), d)));
        let saved = self.store.replace_devices(map.values().map(Document::from));
        drop(map);
        saved.wait()
    }

    /// The devices read back from the store at start (not written again).
    pub fn restore(&self, devices: Vec<Device>) {
        let mut map = self.write();
        map.clear();
        map.extend(devices.into_iter().map(|d| (d.id.clone(), d)));
    }

    pub fn twin(&self, id: &str) -> Result<Value, ApiError> {
        self.read()
            .get(id)
            .map(Device::twin)
            .ok_or_else(|| not_found(id))
    }

    /// One page of `SELECT * FROM devices [WHERE …]`: up to `size` matching twins with ids
    /// after `after`, in id order, and the id to resume after when more follow. A seek into the
    /// sorted map, so any page costs the same; a device deleted meanwhile is no obstacle.
    pub fn twins_page(
        &self,
        query: &SelectQuery,
        after: Option<&str>,
        size: usize,
    ) -> Page<Value, String> {
        let map = self.read();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = Collected::new(size);
        for (id, device) in map.range::<str, _>((from, Bound::Unbounded)) {
            if page.is_full() {
                break;
            }
            let twin = device.twin();
            if query.matches(&twin) {
                page.push(id, twin);
            }
        }
        let (twins, next) = page.finish();
        (twins, next.cloned())
    }

    /// `PATCH` (merge) or `PUT` (`replace`) `/twins/{id}`.
    pub fn update_twin(
        &self,
        id: &str,
        body: &Value,
        etag: Option<&str>,
        replace: bool,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        self.write_twin(id, None, body, etag, replace, now_ms)
    }

    /// The REST twin write of a device or of one of its modules: the twin written (the hub's
    /// one twin write, [`write_client_twin`]), stored, then the desired change sent to the
    /// device's or module's session; the twin as written.
    fn write_twin(
        &self,
        device: &str,
        module: Option<&str>,
        body: &Value,
        etag: Option<&str>,
        replace: bool,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        let write = TwinWrite {
            body,
            etag,
            replace,
            now_ms,
        };
        let (note, twin) = self.store.commit(self.write(), |map, changes| {
            let (note, d) = write_client_twin(map, device, module, &write)?;
            changes.push(|| put_device(d));
            let twin = match module {
                Some(module) => d.modules[module].twin(device, d.is_enabled()),
                None => d.twin(),
            };
            Ok::<_, ApiError>((note, twin))
        })?;
        if let Some(note) = note {
            self.sessions
                .desired_changed(&client_key(device, module), &note);
        }
        Ok(twin)
    }

    /// A twin job's batch: `patch` merged into the twin of each target (a device, or a module
    /// of one) with the same twin write as the REST handlers, and queued to the store as one
    /// unit; [`StagedTwins::commit`] waits for it and sends the desired changes. Staged
    /// rather than committed at once so that a job writes its next batch while the store
    /// commits this one.
    pub fn stage_twin_patches(
        &self,
        targets: &[(&str, Option<&str>)],
        patch: &Value,
        now_ms: i64,
    ) -> StagedTwins {
        let write = TwinWrite {
            body: patch,
            etag: None,
            replace: false,
            now_ms,
        };
        let staged = self.store.stage(self.write(), |map, changes| {
            let mut results = Vec::with_capacity(targets.len());
            let mut notes = Vec::new();
            let mut written: Vec<&str> = Vec::new();
            for &(device, module) in targets {
                results.push(
                    write_client_twin(map, device, module, &write).map(|(note, _)| {
                        if let Some(note) = note {
                            notes.push((client_key(device, module).into_owned(), note));
                        }
                        // A device's modules are in its document: written once per batch.
                        if written.last() != Some(&device) {
                            written.push(device);
                        }
                    }),
                );
            }
            changes.push(|| {
                Change::PutDevices(
                    written
                        .iter()
                        .filter_map(|id| map.get(*id))
                        .map(Document::from)
                        .collect(),
                )
            });
            Ok::<_, StoreError>((results, notes))
        });
        match staged {
            Ok(((results, notes), pending)) => StagedTwins {
                results,
                notes,
                pending: Some(pending),
            },
            Err(e) => StagedTwins {
                results: targets.iter().map(|_| Err(e.clone().into())).collect(),
                notes: Vec::new(),
                pending: None,
            },
        }
    }

    pub fn identity(&self, id: &str) -> Result<Value, ApiError> {
        self.read()
            .get(id)
            .map(Device::identity)
            .ok_or_else(|| not_found(id))
    }

    /// PUT /devices/{id}: create, or update when the caller sends `If-Match`.
    pub fn put_identity(
        &self,
        id: &str,
        body: &Value,
        etag: Option<&str>,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        validate_device_id(id)?;
        let obj = body.as_object().ok_or_else(|| {
            ApiError::new(
                ErrorCode::ArgumentInvalid,
                "the device must be a JSON object",
            )
        })?;
        if let Some(body_id) = obj.get("deviceId").and_then(Value::as_str) {
            if body_id != id {
                return Err(ApiError::new(
                    ErrorCode::ArgumentInvalid,
                    format!("deviceId '{body_id}' in the body does not match '{id}' in the path"),
                ));
            }
        }
        let spec = IdentitySpec::parse(obj)?;
        // An existing id is updated only when the caller says which version (`If-Match`).
        self.write_identity(
            id,
            &spec,
            |exists| match (exists, etag) {
                (true, Some(etag)) => Write::Update { etag: Some(etag) },
                _ => Write::Create,
            },
            now_ms,
        )
    }

    /// Creates or updates one identity (`identity::write_identity`), stored before the answer;
    /// `write` chooses create or update from whether the id exists.
    fn write_identity<'e>(
        &self,
        id: &str,
        spec: &IdentitySpec,
        write: impl FnOnce(bool) -> Write<'e>,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        self.store.commit(self.write(), |map, changes| {
            let write = write(map.contains_key(id));
            let doc = write_identity(map, id, spec, write, now_ms)?;
            changes.push(|| put_device(&map[id]));
            Ok(doc)
        })
    }

    /// `GET /devices?top=N`: the first `top` identities in id order.
    pub fn list_identities(&self, top: usize) -> Vec<Value> {
        self.read()
            .values()
            .take(top)
            .map(Device::identity)
            .collect()
    }

    pub fn delete(&self, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        let (removed, saved) = self.store.stage(self.write(), |map, changes| {
            let d = map.get(id).ok_or_else(|| not_found(id))?;
            if !if_match(etag, &d.device_etag()) {
                return Err(ApiError::new(
                    ErrorCode::PreconditionFailed,
                    format!("Precondition failed: the etag of device {id} does not match"),
                ));
            }
            changes.push(|| Change::DeleteDevice(id.into()));
            Ok(map.remove(id))
        })?;
        if let Some(d) = removed {
            self.forget_removed(&d);
        }
        Ok(saved.wait()?)
    }

    /// A removed device's modules go with it, and so do their connections and what they kept
    /// (called before the removal's commit: a device that is gone takes no new connection
    /// meanwhile).
    fn forget_removed(&self, d: &Device) {
        self.sessions.forget(&d.id);
        self.forget_cloud_to_device(&d.id);
        for module in d.modules.keys() {
            self.sessions.forget(&client_key(&d.id, Some(module)));
        }
    }

    /// Updates the method behaviour of one device, or of all devices when `id` is `*`.
    pub fn set_behaviour(&self, id: &str, patch: &BehaviourPatch) -> Result<usize, ApiError> {
        self.store.commit(self.write(), |map, changes| {
            if id == "*" {
                map.values_mut().for_each(|d| d.behaviour.apply(patch));
                changes.push(|| Change::PutDevices(map.values().map(Document::from).collect()));
                Ok(map.len())
            } else {
                let d = map.get_mut(id).ok_or_else(|| not_found(id))?;
                d.behaviour.apply(patch);
                changes.push(|| put_device(d));
                Ok(1)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_devices_have_group_and_index_tags() {
        let devs = Seed::generated(3).build(0).unwrap();
        let ids: Vec<_> = devs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["device-0000", "device-0001", "device-0002"]);
        assert_eq!(
            *devs[1].tags(),
            *json!({"group": "odd", "index": 1}).as_object().unwrap()
        );
        assert_eq!(devs[0].behaviour, MethodBehaviour::default());
        let twin = devs[0].twin();
        assert_eq!(twin["tags"]["group"], "even");
        assert_eq!(twin["connectionState"], "Connected");
        assert_eq!(twin["etag"], "AAAAAAAAAAE=");
    }

    #[test]
    fn twin_pages_resume_after_the_last_id_even_when_it_is_deleted() {
        let r = Registry::default();
        r.load(Seed::generated(25).build(0).unwrap(), true).unwrap();
        let all = crate::query::parse_select("SELECT * FROM devices").unwrap();
        let odd =
            crate::query::parse_select("SELECT * FROM devices WHERE tags.group = 'odd'").unwrap();
        let (page, next) = r.twins_page(&all, None, 10);
        assert_eq!((page.len(), next.as_deref()), (10, Some("device-0009")));
        // The device the token names is gone: the next page starts with the one after it.
        r.delete("device-0009", None).unwrap();
        let (page, next) = r.twins_page(&all, next.as_deref(), 10);
        assert_eq!(page[0]["deviceId"], "device-0010");
        let (page, last) = r.twins_page(&all, next.as_deref(), 10);
        assert_eq!((page.len(), last), (5, None));
        let (mut ids, mut after) = (Vec::new(), None);
        loop {
            let (page, next) = r.twins_page(&odd, after.as_deref(), 3);
            ids.extend(page.iter().map(|t| t["tags"]["index"].as_u64().unwrap()));
            if next.is_none() {
                break;
            }
            after = next;
        }
        assert_eq!(ids, [1, 3, 5, 7, 11, 13, 15, 17, 19, 21, 23]);
    }

    #[test]
    fn seed_file_format() {
        let seed = Seed::from_json(json!({
            "generate": 1,
            "devices": [{
                "deviceId": "pump-1",
                "tags": {"site": "a"},
                "properties": {"desired": {"speed": 3}, "reported": {"fw": "1.0"}},
                "method": {"status": 500, "payload": {"err": 1}, "delayMs": 20, "offline": true}
            }]
        }))
        .unwrap();
        let devs = seed.build(0).unwrap();
        assert_eq!(devs.len(), 2);
        let pump = devs[1].twin();
        assert_eq!(pump["properties"]["desired"]["speed"], 3);
        assert_eq!(pump["properties"]["reported"]["fw"], "1.0");
        assert_eq!(pump["connectionState"], "Disconnected");
        assert_eq!(devs[1].behaviour.status, 500);
        assert!(Seed::from_json(json!([{"deviceId": "x"}]))
            .unwrap()
            .build(0)
            .is_ok());
        assert!(Seed::from_json(json!({"devices": [{"deviceId": "x", "bogus": 1}]})).is_err());
        assert!(Seed::from_json(json!([{"deviceId": "bad id"}]))
            .unwrap()
            .build(0)
            .is_err());
    }

    #[test]
    fn twin_patch_bumps_versions_and_etag() {
        let r = Registry::default();
        r.load(Seed::generated(1).build(0).unwrap(), true).unwrap();
        let before = r.twin("device-0000").unwrap();
        let after = r
            .update_twin(
                "device-0000",
                &json!({"tags": {"group": null, "site": "x"}, "properties": {"desired": {"v": 1}}}),
                None,
                false,
                5,
            )
            .unwrap();
        assert_eq!(after["tags"], json!({"index": 0, "site": "x"}));
        assert_eq!(after["properties"]["desired"]["v"], 1);
        assert_eq!(after["properties"]["desired"]["$version"], 2);
        assert_eq!(after["version"], before["version"].as_u64().unwrap() + 1);
        assert_ne!(after["etag"], before["etag"]);
        let stale = r.update_twin(
            "device-0000",
            &json!({"tags": {"a": 1}}),
            before["etag"].as_str(),
            false,
            6,
        );
        assert_eq!(stale.unwrap_err().code, ErrorCode::PreconditionFailed);
        assert_eq!(r.twin("nope").unwrap_err().code, ErrorCode::DeviceNotFound);
    }

    #[test]
    fn desired_patches_always_notify_and_null_empties_a_section() {
        let r = Registry::default();
        r.load(Seed::generated(1).build(0).unwrap(), true).unwrap();
        let mut d = r.read().get("device-0000").unwrap().clone();
        let patch = json!({"properties": {"desired": {"a": 1, "b": {"c": 2}}}});
        let first = d.patch_twin(&patch, 1).unwrap().unwrap();
        assert_eq!(first, json!({"a": 1, "b": {"c": 2}, "$version": 2}));
        // The same values again still bump $version and notify, as the service does.
        let again = d.patch_twin(&patch, 2).unwrap().unwrap();
        assert_eq!(again["$version"], 3);
        assert_eq!(d.twin()["version"], 3);
        // A tags-only or empty desired patch does not touch desired.
        assert!(d
            .patch_twin(&json!({"tags": {"t": 1}, "properties": {"desired": {}}}), 3)
            .unwrap()
            .is_none());
        let cleared = d
            .patch_twin(&json!({"tags": null, "properties": {"desired": null}}), 4)
            .unwrap()
            .unwrap();
        assert_eq!(cleared, json!({"a": null, "b": null, "$version": 4}));
        assert!(d.props.desired.is_empty());
        assert_eq!(d.twin()["tags"], json!({}));
    }

    #[test]
    fn identity_create_update_delete() {
        let r = Registry::default();
        let created = r
            .put_identity("d1", &json!({"deviceId": "d1"}), None, 0)
            .unwrap();
        assert_eq!(created["status"], "enabled");
        assert_eq!(
            r.put_identity("d1", &json!({}), None, 0).unwrap_err().code,
            ErrorCode::DeviceAlreadyExists
        );
        let etag = created["etag"].as_str().unwrap().to_string();
        let updated = r
            .put_identity("d1", &json!({"status": "disabled"}), Some(&etag), 0)
            .unwrap();
        assert_eq!(updated["status"], "disabled");
        assert_eq!(
            r.delete("d1", Some(&etag)).unwrap_err().code,
            ErrorCode::PreconditionFailed
        );
        r.delete("d1", Some("*")).unwrap();
        assert_eq!(
            r.identity("d1").unwrap_err().code,
            ErrorCode::DeviceNotFound
        );
    }
}
