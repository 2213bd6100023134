//! An export job's `devices.txt`: one `ExportImportDevice` JSON line per device, then one per
//! module of it (`moduleId` set), as the service writes them: identity (`eTag`, `status`,
//! `authentication`, `capabilities`, scopes) and twin (`twinETag`, `tags`,
//! `properties.desired`/`reported`). With `excludeKeysInExport` the keys are `null`.

use serde_json::{json, Map, Value};

use super::{Device, Module, Registry};

/// The lines of `devices`, in id order, each ended by `\n`.
fn write_lines<'d>(
    devices: impl Iterator<Item = &'d Device>,
    exclude_keys: bool,
    out: &mut Vec<u8>,
) -> usize {
    let mut count = 0;
    for device in devices {
        push_line(out, &device_line(device, exclude_keys));
        for module in device.modules.values() {
            push_line(out, &module_line(device, module, exclude_keys));
        }
        count += 1;
    }
    count
}

fn push_line(out: &mut Vec<u8>, line: &Value) {
    // A `Value` always serializes.
    let _ = serde_json::to_writer(&mut *out, line);
    out.push(b'\n');
}

/// `authentication` with its keys nulled when they are excluded.
fn authentication(identity: &mut Value, exclude_keys: bool) -> Value {
    let mut auth = identity["authentication"].take();
    if exclude_keys {
        auth["symmetricKey"] = json!({"primaryKey": null, "secondaryKey": null});
    }
    auth
}

fn twin_parts(twin: &mut Value) -> (Value, Value, Value) {
    let props = twin["properties"].take();
    let properties = json!({"desired": props["desired"], "reported": props["reported"]});
    (twin["etag"].take(), twin["tags"].take(), properties)
}

fn device_line(device: &Device, exclude_keys: bool) -> Value {
    let mut identity = device.identity();
    let (twin_etag, tags, properties) = twin_parts(&mut device.twin());
    json!({
        "id": device.id,
        "eTag": identity["etag"].take(),
        "status": identity["status"].take(),
        "statusReason": identity["statusReason"].take(),
        "authentication": authentication(&mut identity, exclude_keys),
        "twinETag": twin_etag,
        "tags": tags,
        "properties": properties,
        "capabilities": identity["capabilities"].take(),
        "deviceScope": identity["deviceScope"].take(),
        "parentScopes": identity["parentScopes"].take(),
    })
}

fn module_line(device: &Device, module: &Module, exclude_keys: bool) -> Value {
    let mut identity = module.identity(&device.id);
    let (twin_etag, tags, properties) = twin_parts(&mut module.twin(&device.id, device.enabled));
    let mut line = Map::new();
    line.insert("id".into(), json!(device.id));
    line.insert("moduleId".into(), json!(module.id));
    line.insert("eTag".into(), identity["etag"].take());
    line.insert(
        "authentication".into(),
        authentication(&mut identity, exclude_keys),
    );
    line.insert("twinETag".into(), twin_etag);
    line.insert("tags".into(), tags);
    line.insert("properties".into(), properties);
    if !identity["managedBy"].is_null() {
        line.insert("managedBy".into(), identity["managedBy"].take());
    }
    Value::Object(line)
}

impl Registry {
    /// An export's `devices.txt` and the number of devices in it, read under one read lock
    /// (a consistent snapshot of the registry).
    pub fn export_devices(&self, exclude_keys: bool) -> (Vec<u8>, usize) {
        let map = self.read();
        let mut out = Vec::with_capacity(map.len() * 512);
        let count = write_lines(map.values(), exclude_keys, &mut out);
        (out, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_hold_identity_twin_and_modules() {
        let r = Registry::default();
        r.bulk(&json!([{"id": "d1", "importMode": "create", "tags": {"site": "a"}, "properties": {"desired": {"t": 1}}}]), 0)
            .unwrap();
        r.put_module("d1", "m1", &json!({}), None, 0).unwrap();
        let (text, count) = r.export_devices(false);
        assert_eq!(count, 1);
        let lines: Vec<Value> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], "d1");
        assert_eq!(lines[0]["tags"], json!({"site": "a"}));
        assert_eq!(lines[0]["properties"]["desired"]["t"], 1);
        assert!(lines[0]["authentication"]["symmetricKey"]["primaryKey"].is_string());
        assert!(lines[0]["twinETag"].is_string() && lines[0]["eTag"].is_string());
        assert_eq!(lines[1]["moduleId"], "m1");
        assert!(lines[1].get("status").is_none());

        let (text, _) = r.export_devices(true);
        let first: Value =
            serde_json::from_slice(text.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(
            first["authentication"]["symmetricKey"],
            json!({"primaryKey": null, "secondaryKey": null})
        );
    }
}
