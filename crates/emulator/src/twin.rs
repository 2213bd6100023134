//! Twin mechanics shared by the REST twin endpoints and twin jobs: JSON merge patch
//! (RFC 7386: `null` removes, objects merge, anything else replaces) and etags.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

/// Merges `patch` into `target`. Returns true when anything changed.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (key, value) in patch {
        match value {
            Value::Null => changed |= target.remove(key).is_some(),
            Value::Object(sub) => {
                let entry = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                    changed = true;
                }
                if let Value::Object(inner) = entry {
                    changed |= merge_patch(inner, sub);
                }
            }
            other => {
                if target.get(key) != Some(other) {
                    target.insert(key.clone(), other.clone());
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Removes `null` members recursively (a replaced twin section never stores nulls).
pub fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Object(inner) = v {
            strip_nulls(inner);
        }
    }
}

/// The twin etag: base64 of the big-endian twin version, like `AAAAAAAAAAE=`.
pub fn twin_etag(version: u64) -> String {
    STANDARD.encode(version.to_be_bytes())
}

/// The device identity etag: base64 of a decimal counter, like the service's `MTIzNDU2`.
pub fn device_etag(counter: u64) -> String {
    STANDARD.encode(counter.to_string())
}

/// `If-Match` semantics: absent or `*` matches; otherwise the (unquoted) etag must be equal.
pub fn if_match(header: Option<&str>, current: &str) -> bool {
    match header.map(|h| h.trim().trim_matches('"')) {
        None | Some("") | Some("*") => true,
        Some(tag) => tag == current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = obj(json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "f": "x"}));
        assert!(merge_patch(
            &mut t,
            &obj(json!({"a": null, "b": {"c": null, "g": 4}, "e": [3], "h": {"i": 1}}))
        ));
        assert_eq!(
            Value::Object(t.clone()),
            json!({"b": {"d": 3, "g": 4}, "e": [3], "f": "x", "h": {"i": 1}})
        );
        assert!(
            !merge_patch(&mut t, &obj(json!({"f": "x", "zz": null}))),
            "no-op patch changes nothing"
        );
        assert!(merge_patch(&mut t, &obj(json!({"f": {"now": "object"}}))));
        assert_eq!(t["f"], json!({"now": "object"}));
    }

    #[test]
    fn etags_and_if_match() {
        assert_eq!(twin_etag(1), "AAAAAAAAAAE=");
        assert_eq!(device_etag(123456), "MTIzNDU2");
        assert!(if_match(None, "x"));
        assert!(if_match(Some("*"), "x"));
        assert!(if_match(Some("\"x\""), "x"));
        assert!(!if_match(Some("y"), "x"));
    }

    #[test]
    fn strip_nulls_recursively() {
        let mut t = obj(json!({"a": null, "b": {"c": null, "d": 1}}));
        strip_nulls(&mut t);
        assert_eq!(Value::Object(t), json!({"b": {"d": 1}}));
    }
}
