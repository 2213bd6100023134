//! Twin mechanics shared by the REST twin endpoints and twin jobs: JSON merge patch
//! (RFC 7386: `null` removes, objects merge, anything else replaces), etags, and the
//! versioned desired/reported sections that device and module twins both have.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::clock::iso;
use crate::errors::{ApiError, ErrorCode};

/// The properties of one twin (a device's or a module's): desired and reported, the twin
/// version and the section versions. Tags stay with the owner (a generated device keeps its
/// tags implicit), so the operations that touch tags are handed them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TwinProperties {
    // Empty sections are left out of a stored document and come back empty.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub desired: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub reported: Map<String, Value>,
    /// Twin version: bumped by every twin change (tags, desired or reported).
    version: u64,
    desired_version: u64,
    reported_version: u64,
    updated_ms: i64,
}

impl TwinProperties {
    pub fn new(now_ms: i64) -> Self {
        Self {
            desired: Map::new(),
            reported: Map::new(),
            version: 1,
            desired_version: 1,
            reported_version: 1,
            updated_ms: now_ms,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn etag(&self) -> String {
        twin_etag(self.version)
    }

    fn section(map: &Map<String, Value>, version: u64, updated_ms: i64) -> Value {
        let mut out = map.clone();
        out.insert("$metadata".into(), json!({"$lastUpdated": iso(updated_ms)}));
        out.insert("$version".into(), json!(version));
        Value::Object(out)
    }

    /// `{desired, reported}` with their `$version` and `$metadata`: a twin's `properties`, and
    /// what a device or module's twin GET returns.
    pub fn to_json(&self) -> Value {
        json!({
            "desired": Self::section(&self.desired, self.desired_version, self.updated_ms),
            "reported": Self::section(&self.reported, self.reported_version, self.updated_ms),
        })
    }

    /// Applies `tags` and `properties.desired` of a twin patch (merge semantics; a section that
    /// is `null` empties it) and bumps versions. `tags` is asked for only when the patch has
    /// tags. Returns the desired-property notification when the patch names desired: the
    /// service bumps desired `$version` and tells the client on every such patch, even one
    /// that changes no value, and sends it the patch as applied (`null` for what it removed)
    /// with the new `$version`.
    pub fn patch<'t>(
        &mut self,
        patch: &Value,
        tags: impl FnOnce() -> &'t mut Map<String, Value>,
        now_ms: i64,
    ) -> Result<Option<Value>, ApiError> {
        let (tags_patch, desired) = twin_sections(patch)?;
        let tags_changed = match tags_patch {
            Section::Absent => false,
            Section::Null => !std::mem::take(tags()).is_empty(),
            Section::Patch(t) => merge_patch(tags(), t),
        };
        let note = match desired {
            Section::Absent => None,
            Section::Patch(d) if d.is_empty() => None,
            Section::Null => {
                let removed = std::mem::take(&mut self.desired);
                Some(removed.into_iter().map(|(k, _)| (k, Value::Null)).collect())
            }
            Section::Patch(d) => {
                merge_patch(&mut self.desired, d);
                Some(d.clone())
            }
        };
        self.bump(tags_changed, note.is_some(), now_ms);
        Ok(note.map(|mut note: Map<String, Value>| {
            note.insert("$version".into(), json!(self.desired_version));
            Value::Object(note)
        }))
    }

    /// Replaces `properties.desired` (PUT /twins semantics). Returns the new tags for the owner
    /// to store, and the whole new desired section when it changed (the client is told all of it).
    pub fn replace(
        &mut self,
        twin: &Value,
        now_ms: i64,
    ) -> Result<(Map<String, Value>, Option<Value>), ApiError> {
        let (tags, desired) = twin_sections(twin)?;
        let mut tags = tags.patch().cloned().unwrap_or_default();
        let mut desired = desired.patch().cloned().unwrap_or_default();
        strip_nulls(&mut tags);
        strip_nulls(&mut desired);
        let desired_changed = desired != self.desired;
        self.desired = desired;
        self.bump(true, desired_changed, now_ms);
        let note = desired_changed.then(|| {
            let mut note = self.desired.clone();
            note.insert("$version".into(), json!(self.desired_version));
            Value::Object(note)
        });
        Ok((tags, note))
    }

    /// Merges a reported-properties patch from the client; returns the new reported `$version`.
    pub fn patch_reported(&mut self, patch: &Map<String, Value>, now_ms: i64) -> u64 {
        if merge_patch(&mut self.reported, patch) {
            self.reported_version += 1;
            self.version += 1;
            self.updated_ms = now_ms;
        }
        self.reported_version
    }

    fn bump(&mut self, tags_changed: bool, desired_changed: bool, now_ms: i64) {
        if desired_changed {
            self.desired_version += 1;
        }
        if tags_changed || desired_changed {
            self.version += 1;
            self.updated_ms = now_ms;
        }
    }
}

/// A twin body's `tags` or `properties.desired`.
enum Section<'a> {
    Absent,
    /// `null`: the whole section is removed.
    Null,
    Patch(&'a Map<String, Value>),
}

impl<'a> Section<'a> {
    fn patch(&self) -> Option<&'a Map<String, Value>> {
        match self {
            Section::Patch(m) => Some(m),
            _ => None,
        }
    }
}

/// Pulls `tags` and `properties.desired` out of a twin body, rejecting non-objects.
fn twin_sections(twin: &Value) -> Result<(Section<'_>, Section<'_>), ApiError> {
    let bad = |what: &str| {
        ApiError::new(
            ErrorCode::ArgumentInvalid,
            format!("{what} must be a JSON object"),
        )
    };
    fn section(value: Option<&Value>) -> Option<Section<'_>> {
        match value {
            None => Some(Section::Absent),
            Some(Value::Null) => Some(Section::Null),
            Some(Value::Object(m)) => Some(Section::Patch(m)),
            Some(_) => None,
        }
    }
    let twin = twin.as_object().ok_or_else(|| bad("the twin"))?;
    let tags = section(twin.get("tags")).ok_or_else(|| bad("tags"))?;
    let desired = match twin.get("properties") {
        None | Some(Value::Null) => Section::Absent,
        Some(Value::Object(p)) => {
            section(p.get("desired")).ok_or_else(|| bad("properties.desired"))?
        }
        Some(_) => return Err(bad("properties")),
    };
    Ok((tags, desired))
}

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
