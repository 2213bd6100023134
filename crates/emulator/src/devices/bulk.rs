//! `POST /devices`: the bulk registry operation (azure-iothub's `addDevices`, `updateDevices`,
//! `removeDevices`). Up to 100 `ExportImportDevice` items, each with an `importMode`; every item
//! is tried on its own, like the service does: the ones that fail are listed in `errors` (device
//! id, error code, status text) and the others take effect. The answer is a
//! `BulkRegistryOperationResult`, with HTTP 200 when every item succeeded and 400 otherwise.
//!
//! The device items run as one batch (`import_batch`: one registry lock, one commit), which an
//! import job's `devices.txt` lines take too, with `createOrUpdate` as their default mode; a
//! line with `moduleId` is a module (`import_item`). The twin part of a create or update item
//! (`tags`, `properties.desired`) is written with its identity.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Map, Value};

use super::identity::{write_identity, IdentitySpec, Write};
use super::{not_found, put_device, write_client_twin, Device, Registry, TwinWrite};
use crate::errors::{ApiError, ErrorCode};
use crate::store::{Change, Changes, StoreError};
use crate::twin::if_match;

/// Items one request may carry (the service's limit).
pub const MAX_BULK_DEVICES: usize = 100;

/// What an item asks for (`importMode`, compared case-insensitively as the service does).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    CreateOrUpdate,
    Create,
    Update,
    UpdateIfMatchETag,
    Delete,
    DeleteIfMatchETag,
    UpdateTwin,
    UpdateTwinIfMatchETag,
}

impl Mode {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "createorupdate" => Self::CreateOrUpdate,
            "create" => Self::Create,
            "update" => Self::Update,
            "updateifmatchetag" => Self::UpdateIfMatchETag,
            "delete" => Self::Delete,
            "deleteifmatchetag" => Self::DeleteIfMatchETag,
            "updatetwin" => Self::UpdateTwin,
            "updatetwinifmatchetag" => Self::UpdateTwinIfMatchETag,
            _ => return None,
        })
    }
}

fn invalid(text: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ArgumentInvalid, text)
}

/// One request item: device id, mode and the item itself.
type Item<'a> = (&'a str, Mode, &'a Map<String, Value>);

/// The whole request is refused (400, classic envelope) when it is malformed: not an array,
/// empty or over 100 items, an item without `id` or with an unknown `importMode`, or an id
/// named twice.
fn parse_items(body: &Value) -> Result<Vec<Item<'_>>, ApiError> {
    let items = body
        .as_array()
        .ok_or_else(|| invalid("the body must be a JSON array of devices"))?;
    if items.is_empty() || items.len() > MAX_BULK_DEVICES {
        return Err(invalid(format!(
            "a bulk registry operation takes 1 to {MAX_BULK_DEVICES} devices, not {}",
            items.len()
        )));
    }
    let mut seen = HashSet::new();
    items
        .iter()
        .map(|item| {
            let obj = item
                .as_object()
                .ok_or_else(|| invalid("every device must be a JSON object"))?;
            let id = obj
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("every device needs an \"id\""))?;
            let mode_text = obj.get("importMode").and_then(Value::as_str).unwrap_or("");
            let mode = Mode::parse(mode_text)
                .ok_or_else(|| invalid(format!("device {id}: unknown importMode '{mode_text}'")))?;
            if !seen.insert(id) {
                return Err(ApiError::new(
                    ErrorCode::DeviceDefinedMultipleTimes,
                    format!("device {id} is named more than once in the request"),
                ));
            }
            Ok((id, mode, obj))
        })
        .collect()
}

/// The IfMatchETag modes compare the item's etag; without one nothing can match.
fn checked(tag: Option<&str>) -> Option<&str> {
    Some(tag.unwrap_or("\u{0}no etag"))
}

impl Registry {
    /// Runs a bulk registry operation: `(all succeeded, BulkRegistryOperationResult)`.
    pub fn bulk(&self, body: &Value, now_ms: i64) -> Result<(bool, Value), ApiError> {
        let items = parse_items(body)?;
        let objs: Vec<_> = items.iter().map(|(_, _, obj)| *obj).collect();
        let errors: Vec<Value> = items
            .iter()
            .zip(self.import_batch(&objs, now_ms))
            .filter_map(|((id, _, _), result)| {
                let e = result.err()?;
                Some(json!({
                    "deviceId": id,
                    "errorCode": e.code.name(),
                    "errorStatus": format!("ErrorCode:{};{}", e.code.name(), e.message),
                }))
            })
            .collect();
        let ok = errors.is_empty();
        Ok((
            ok,
            json!({"isSuccessful": ok, "errors": errors, "warnings": []}),
        ))
    }

    /// One line of an import job's `devices.txt` (an `ExportImportDevice`): a device, or a
    /// module of one when it names `moduleId`; `importMode` defaults to `createOrUpdate`.
    pub fn import_item(&self, obj: &Map<String, Value>, now_ms: i64) -> Result<(), ApiError> {
        let (id, mode) = import_mode(obj)?;
        match obj.get("moduleId").and_then(Value::as_str) {
            Some(module) => self.import_module(id, module, mode, obj, now_ms),
            None => self.import_batch(&[obj], now_ms).remove(0),
        }
    }

    /// Device lines of an import job (no `moduleId`), applied with the rules of
    /// [`Registry::import_item`] under one write lock and stored as one commit (a line's
    /// identity and twin together): each line's result, in order.
    pub fn import_batch(
        &self,
        items: &[&Map<String, Value>],
        now_ms: i64,
    ) -> Vec<Result<(), ApiError>> {
        let staged = self.store.stage(self.write(), |map, changes| {
            let mut done = BatchEffects::default();
            let results = items
                .iter()
                .map(|obj| import_device(map, obj, now_ms, changes, &mut done))
                .collect::<Vec<_>>();
            Ok::<_, StoreError>((results, done))
        });
        let ((results, done), pending) = match staged {
            Ok(staged) => staged,
            Err(e) => return items.iter().map(|_| Err(e.clone().into())).collect(),
        };
        for d in &done.removed {
            self.forget_removed(d);
        }
        if let Err(e) = pending.wait() {
            return items.iter().map(|_| Err(e.clone().into())).collect();
        }
        for (client, note) in done.notes {
            self.sessions.desired_changed(&client, &note);
        }
        results
    }

    /// A module line: the module routes' rules (`PUT`, `DELETE`, twin `PATCH` of
    /// `/devices/{id}/modules/{mid}`), with the line's `eTag`/`twinETag` as `If-Match`.
    fn import_module(
        &self,
        device: &str,
        module: &str,
        mode: Mode,
        obj: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let etag = obj.get("eTag").and_then(Value::as_str);
        let body =
            json!({"authentication": obj.get("authentication"), "managedBy": obj.get("managedBy")});
        let identity_etag = match mode {
            Mode::Create => None,
            Mode::CreateOrUpdate => Some("*"),
            Mode::Update => {
                self.module_identity(device, module)?;
                Some("*")
            }
            Mode::UpdateIfMatchETag => {
                self.module_identity(device, module)?;
                checked(etag)
            }
            Mode::Delete => return self.delete_module(device, module, None),
            Mode::DeleteIfMatchETag => return self.delete_module(device, module, checked(etag)),
            Mode::UpdateTwin | Mode::UpdateTwinIfMatchETag => {
                let (patch, twin_etag) = twin_update(mode, obj);
                return self
                    .update_module_twin(device, module, &patch, twin_etag, false, now_ms)
                    .map(drop);
            }
        };
        self.put_module(device, module, &body, identity_etag, now_ms)?;
        if let Some(patch) = twin_patch(obj) {
            self.update_module_twin(device, module, &patch, None, false, now_ms)?;
        }
        Ok(())
    }
}

/// What an import batch does after its lines are applied: desired changes for sessions, and
/// the devices it removed.
#[derive(Default)]
struct BatchEffects {
    notes: Vec<(String, Value)>,
    removed: Vec<Device>,
}

/// An import line's device id and mode (`createOrUpdate` when it names none).
fn import_mode(obj: &Map<String, Value>) -> Result<(&str, Mode), ApiError> {
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the device has no \"id\""))?;
    let mode = match obj.get("importMode") {
        None | Some(Value::Null) => Mode::CreateOrUpdate,
        Some(text) => text
            .as_str()
            .and_then(Mode::parse)
            .ok_or_else(|| invalid(format!("unknown importMode {text}")))?,
    };
    Ok((id, mode))
}

/// One device item of a batch, applied to the registry's map under its write lock, its changes
/// queued in order.
fn import_device(
    map: &mut BTreeMap<String, Device>,
    obj: &Map<String, Value>,
    now_ms: i64,
    changes: &mut Changes,
    done: &mut BatchEffects,
) -> Result<(), ApiError> {
    let (id, mode) = import_mode(obj)?;
    let etag = obj.get("eTag").and_then(Value::as_str);
    let twin =
        |map: &mut BTreeMap<String, Device>, patch: &Value, etag, done: &mut BatchEffects| {
            let write = TwinWrite {
                body: patch,
                etag,
                replace: false,
                now_ms,
            };
            let (note, _) = write_client_twin(map, id, None, &write)?;
            if let Some(note) = note {
                done.notes.push((id.to_string(), note));
            }
            Ok::<_, ApiError>(())
        };
    let result = match mode {
        Mode::CreateOrUpdate | Mode::Create | Mode::Update | Mode::UpdateIfMatchETag => {
            let spec = IdentitySpec::parse(obj)?;
            let write = match mode {
                Mode::Create => Write::Create,
                Mode::CreateOrUpdate if !map.contains_key(id) => Write::Create,
                Mode::UpdateIfMatchETag => Write::Update {
                    etag: checked(etag),
                },
                _ => Write::Update { etag: None },
            };
            write_identity(map, id, &spec, write, now_ms)?;
            match twin_patch(obj) {
                Some(patch) => twin(map, &patch, None, done),
                None => Ok(()),
            }
        }
        Mode::Delete | Mode::DeleteIfMatchETag => {
            let d = map.get(id).ok_or_else(|| not_found(id))?;
            let etag = if mode == Mode::Delete {
                None
            } else {
                checked(etag)
            };
            if !if_match(etag, &d.device_etag()) {
                return Err(ApiError::new(
                    ErrorCode::PreconditionFailed,
                    format!("Precondition failed: the etag of device {id} does not match"),
                ));
            }
            changes.push(|| Change::DeleteDevice(id.into()));
            done.removed.extend(map.remove(id));
            return Ok(());
        }
        Mode::UpdateTwin | Mode::UpdateTwinIfMatchETag => {
            let (patch, twin_etag) = twin_update(mode, obj);
            twin(map, &patch, twin_etag, done)
        }
    };
    // What was written is stored, also when the twin part of a line failed after its identity.
    if let Some(d) = map.get(id) {
        changes.push(|| put_device(d));
    }
    result
}

/// The twin patch and `If-Match` of an `updateTwin` or `updateTwinIfMatchETag` line (its
/// `twinETag`, only for the latter).
fn twin_update(mode: Mode, obj: &Map<String, Value>) -> (Value, Option<&str>) {
    let etag = match mode {
        Mode::UpdateTwinIfMatchETag => checked(obj.get("twinETag").and_then(Value::as_str)),
        _ => None,
    };
    (twin_patch(obj).unwrap_or_else(|| json!({})), etag)
}

/// The twin part of an item (`tags`, `properties.desired`) as a twin patch, `None` when it has
/// none. Reported properties are the device's and `$`-metadata the hub's: both are left out.
fn twin_patch(obj: &Map<String, Value>) -> Option<Value> {
    let mut patch = Map::new();
    if let Some(tags) = obj.get("tags").filter(|t| t.is_object()) {
        patch.insert("tags".into(), tags.clone());
    }
    if let Some(Value::Object(desired)) = obj.get("properties").and_then(|p| p.get("desired")) {
        let desired: Map<String, Value> = desired
            .iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        patch.insert("properties".into(), json!({ "desired": desired }));
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_fail_alone_and_modes_are_case_insensitive() {
        let r = Registry::default();
        let (ok, result) = r
            .bulk(
                &json!([
                    {"id": "a", "importMode": "create", "status": "disabled"},
                    {"id": "b", "importMode": "Create"}
                ]),
                0,
            )
            .unwrap();
        assert!(ok, "{result}");
        assert_eq!(
            result,
            json!({"isSuccessful": true, "errors": [], "warnings": []})
        );
        assert_eq!(r.identity("a").unwrap()["status"], "disabled");

        let etag_b = r.identity("b").unwrap()["etag"]
            .as_str()
            .unwrap()
            .to_string();
        let (ok, result) = r
            .bulk(
                &json!([
                    {"id": "a", "importMode": "Update", "status": "enabled"},
                    {"id": "b", "importMode": "UpdateIfMatchETag", "eTag": "stale", "status": "disabled"},
                    {"id": "c", "importMode": "create"},
                    {"id": "a-missing", "importMode": "Update"},
                    {"id": "d", "importMode": "delete"}
                ]),
                0,
            )
            .unwrap();
        assert!(!ok);
        let codes: Vec<_> = result["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["deviceId"].as_str().unwrap(),
                    e["errorCode"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                ("b", "PreconditionFailed"),
                ("a-missing", "DeviceNotFound"),
                ("d", "DeviceNotFound")
            ]
        );
        // The items that succeeded took effect.
        assert_eq!(r.identity("a").unwrap()["status"], "enabled");
        assert!(r.identity("c").is_ok());
        assert_eq!(r.identity("b").unwrap()["etag"], etag_b.as_str());

        let (ok, _) = r
            .bulk(
                &json!([{"id": "b", "importMode": "deleteIfMatchETag", "eTag": etag_b}]),
                0,
            )
            .unwrap();
        assert!(ok);
        assert_eq!(r.identity("b").unwrap_err().code, ErrorCode::DeviceNotFound);
    }

    #[test]
    fn import_lines_default_to_create_or_update_and_name_modules() {
        let r = Registry::default();
        let line = |v: Value| v.as_object().unwrap().clone();
        let exported = line(json!({"id": "d", "tags": {"a": 1},
            "properties": {"desired": {"x": 1, "$metadata": {}, "$version": 4}, "reported": {"r": 1}}}));
        r.import_item(&exported, 0).unwrap();
        r.import_item(&exported, 0).unwrap(); // createOrUpdate: the second time updates
        let twin = r.twin("d").unwrap();
        assert_eq!(twin["tags"], json!({"a": 1}));
        assert_eq!(twin["properties"]["desired"]["x"], 1);
        assert!(
            twin["properties"]["reported"].get("r").is_none(),
            "reported is the device's"
        );

        r.import_item(
            &line(json!({"id": "d", "moduleId": "m", "properties": {"desired": {"y": 2}}})),
            0,
        )
        .unwrap();
        assert_eq!(
            r.module_twin("d", "m").unwrap()["properties"]["desired"]["y"],
            2
        );
        let again = r.import_item(
            &line(json!({"id": "d", "moduleId": "m", "importMode": "create"})),
            0,
        );
        assert_eq!(
            again.unwrap_err().code,
            ErrorCode::ModuleAlreadyExistsOnDevice
        );
        r.import_item(
            &line(json!({"id": "d", "moduleId": "m", "importMode": "delete"})),
            0,
        )
        .unwrap();
        assert!(r.module_identity("d", "m").is_err());
        let bad = r.import_item(&line(json!({"id": "d", "importMode": 7})), 0);
        assert_eq!(bad.unwrap_err().code, ErrorCode::ArgumentInvalid);
    }

    #[test]
    fn malformed_requests_are_refused_whole() {
        let r = Registry::default();
        let code = |body: Value| r.bulk(&body, 0).unwrap_err().code;
        assert_eq!(code(json!({})), ErrorCode::ArgumentInvalid);
        assert_eq!(code(json!([])), ErrorCode::ArgumentInvalid);
        let many: Vec<_> = (0..101)
            .map(|i| json!({"id": format!("d{i}"), "importMode": "create"}))
            .collect();
        assert_eq!(code(Value::Array(many)), ErrorCode::ArgumentInvalid);
        assert_eq!(
            code(json!([{"importMode": "create"}])),
            ErrorCode::ArgumentInvalid
        );
        assert_eq!(
            code(json!([{"id": "x", "importMode": "upsert"}])),
            ErrorCode::ArgumentInvalid
        );
        assert_eq!(
            code(json!([{"id": "x", "importMode": "create"}, {"id": "x", "importMode": "delete"}])),
            ErrorCode::DeviceDefinedMultipleTimes
        );
        assert!(r.is_empty(), "nothing of a refused request is applied");
    }
}
