//! Automatic device and module management configurations (`/configurations`): the registry
//! side, with IoT Hub's rules. A configuration is created, read, listed, updated (its labels,
//! target condition, priority and metrics; its id and content never change) and deleted; its
//! system and custom metrics are counted against the twins when it is read.
//!
//! Not emulated: the service applying a configuration's content to the twins it targets (and the
//! twins' `configurations` section). `appliedCount` is therefore always 0, and the README says so.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::clock::iso;
use crate::devices::Registry;
use crate::errors::{ApiError, ErrorCode};
use crate::locks::lock;
use crate::query::{parse_condition, parse_counted, Condition, SelectQuery};
use crate::store::{Change, Document, Store, StoreError};
use crate::twin::{device_etag, if_match};

/// Configurations a hub holds at most (IoT Hub's limit for paid tiers: 100; free: 10).
pub const MAX_CONFIGURATIONS: usize = 100;
/// Longest configuration id (IoT Hub: 128 characters).
const MAX_ID_LEN: usize = 128;
/// The characters an id may have besides lowercase letters and digits (IoT Hub's rule).
const ID_SYMBOLS: &str = "-:+%_#*?!(),=@;$'";
/// What a configuration's content may hold: one device, module or Edge deployment section.
const CONTENT_KINDS: [&str; 3] = ["deviceContent", "moduleContent", "modulesContent"];

/// The hub's configurations, by id, as the documents the REST API returns (without metrics
/// results, which are counted when read).
#[derive(Default)]
pub struct Configurations {
    map: Mutex<BTreeMap<String, Value>>,
    /// The etag counter: every write gets a new one.
    writes: Mutex<u64>,
}

fn invalid(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

fn not_found(id: &str) -> ApiError {
    invalid(
        ErrorCode::ConfigurationNotFound,
        format!("Configuration {id} does not exist on this hub"),
    )
}

/// IoT Hub's id rule: 1–128 of lowercase letters, digits and `-:+%_#*?!(),=@;$'`.
fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ID_SYMBOLS.contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            ErrorCode::ArgumentInvalid,
            format!("The configuration id '{id}' is invalid: use 1-{MAX_ID_LEN} lowercase letters, digits and {ID_SYMBOLS}"),
        ))
    }
}

/// A target condition as the service takes it: empty (targets nothing), `*`, a WHERE clause
/// over device twins, or `FROM devices.modules WHERE …` for module configurations.
fn target_condition(text: &str) -> Result<Option<Condition>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_condition(text).map(Some).map_err(|e| e.to_string())
}

/// Custom metric queries: each a full `SELECT … FROM devices[.modules] WHERE …`.
fn metric_errors(queries: Option<&Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut errors = BTreeMap::new();
    let Some(queries) = queries else {
        return Ok(errors);
    };
    let queries = queries.as_object().ok_or_else(|| {
        invalid(
            ErrorCode::InvalidConfigurationCustomMetricsQuery,
            "metrics.queries must be an object of named queries",
        )
    })?;
    for (name, query) in queries {
        let error = match query.as_str() {
            Some(text) => parse_counted(text).err().map(|e| e.to_string()),
            None => Some("the query must be a string".to_string()),
        };
        if let Some(e) = error {
            errors.insert(name.clone(), e);
        }
    }
    Ok(errors)
}

/// The fields a client sets, checked; the hub's own fields (times, etag, system metrics) are
/// added by the write.
fn checked(id: &str, body: &Value) -> Result<Map<String, Value>, ApiError> {
    let body = body.as_object().ok_or_else(|| {
        invalid(
            ErrorCode::ArgumentInvalid,
            "The configuration must be a JSON object",
        )
    })?;
    if let Some(other) = body.get("id").and_then(Value::as_str) {
        if other != id {
            return Err(invalid(
                ErrorCode::ArgumentInvalid,
                format!(
                    "The configuration id in the body ({other}) is not the one in the path ({id})"
                ),
            ));
        }
    }
    let content = body.get("content").cloned().unwrap_or_else(|| json!({}));
    let sections = content.as_object().map(|c| {
        c.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
    });
    match sections.as_deref() {
        Some([kind]) if CONTENT_KINDS.contains(kind) && content[*kind].is_object() => {}
        _ => {
            return Err(invalid(
                ErrorCode::InvalidConfigurationContent,
                "The configuration content must hold one object: deviceContent, moduleContent or modulesContent",
            ))
        }
    }
    let target = body
        .get("targetCondition")
        .map(|t| t.as_str().map(str::to_string))
        .unwrap_or(Some(String::new()))
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidConfigurationTargetCondition,
                "targetCondition must be a string",
            )
        })?;
    target_condition(&target).map_err(|e| {
        invalid(
            ErrorCode::InvalidConfigurationTargetCondition,
            format!("The target condition '{target}' is invalid: {e}"),
        )
    })?;
    let priority = match body.get("priority") {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_i64()
            .filter(|p| (0..=i64::from(i32::MAX)).contains(p))
            .ok_or_else(|| {
                invalid(
                    ErrorCode::ArgumentInvalid,
                    "priority must be a non-negative 32-bit integer",
                )
            })?,
    };
    let labels = body.get("labels").cloned().unwrap_or(Value::Null);
    let labels_ok = match &labels {
        Value::Null => true,
        Value::Object(l) => l.values().all(Value::is_string),
        _ => false,
    };
    if !labels_ok {
        return Err(invalid(
            ErrorCode::ArgumentInvalid,
            "labels must be an object of strings",
        ));
    }
    let queries = body.get("metrics").and_then(|m| m.get("queries"));
    if let Some((name, e)) = metric_errors(queries)?.into_iter().next() {
        return Err(invalid(
            ErrorCode::InvalidConfigurationCustomMetricsQuery,
            format!("The custom metric query '{name}' is invalid: {e}"),
        ));
    }
    let mut doc = Map::new();
    doc.insert("id".into(), id.into());
    doc.insert(
        "schemaVersion".into(),
        body.get("schemaVersion")
            .cloned()
            .filter(Value::is_string)
            .unwrap_or_else(|| "1.0".into()),
    );
    doc.insert("labels".into(), labels);
    doc.insert("content".into(), content);
    doc.insert("targetCondition".into(), target.into());
    doc.insert("priority".into(), priority.into());
    doc.insert(
        "metrics".into(),
        json!({"results": {}, "queries": queries.cloned().unwrap_or_else(|| json!({}))}),
    );
    Ok(doc)
}

impl Configurations {
    /// The configurations read back from the store at start.
    pub fn restore(&self, docs: Vec<Value>) {
        let mut map = lock(&self.map);
        for doc in docs {
            if let Some(id) = doc.get("id").and_then(Value::as_str) {
                map.insert(id.to_string(), doc);
            }
        }
        *lock(&self.writes) = map.len() as u64;
    }

    /// Forgets every configuration (a reset), in the store too.
    pub fn clear(&self, store: &Store) -> Result<(), StoreError> {
        store.commit(lock(&self.map), |map, changes| {
            map.clear();
            changes.push(|| Change::ClearConfigurations);
            Ok(())
        })
    }

    fn next_etag(&self) -> String {
        let mut writes = lock(&self.writes);
        *writes += 1;
        device_etag(*writes)
    }

    /// `PUT /configurations/{id}`: without `If-Match` a new configuration (409 when the id is
    /// taken); with it an update of an existing one whose etag matches (`*` always does), where
    /// the content must stay as it was.
    pub fn put(
        &self,
        store: &Store,
        id: &str,
        body: &Value,
        etag: Option<&str>,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        validate_id(id)?;
        let mut doc = checked(id, body)?;
        store.commit(lock(&self.map), |map, changes| {
            let created = match (map.get(id), etag) {
                (Some(_), None) => {
                    return Err(invalid(
                        ErrorCode::ConfigurationAlreadyExists,
                        format!("Configuration {id} already exists on this hub"),
                    ))
                }
                (None, None) if map.len() >= MAX_CONFIGURATIONS => {
                    return Err(invalid(
                        ErrorCode::ConfigurationCountLimitExceeded,
                        format!(
                            "This hub holds its maximum of {MAX_CONFIGURATIONS} configurations"
                        ),
                    ))
                }
                (None, None) => iso(now_ms),
                (None, Some(_)) => return Err(not_found(id)),
                (Some(old), Some(etag)) => {
                    if !if_match(Some(etag), old["etag"].as_str().unwrap_or_default()) {
                        return Err(invalid(
                            ErrorCode::PreconditionFailed,
                            format!("Precondition failed: the etag of configuration {id} does not match"),
                        ));
                    }
                    if old["content"] != doc["content"] {
                        return Err(invalid(
                            ErrorCode::CannotModifyImmutableConfigurationContent,
                            format!("The content of configuration {id} cannot be changed; create a new configuration"),
                        ));
                    }
                    old["createdTimeUtc"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                }
            };
            doc.insert("createdTimeUtc".into(), created.into());
            doc.insert("lastUpdatedTimeUtc".into(), iso(now_ms).into());
            doc.insert("etag".into(), self.next_etag().into());
            let doc = Value::Object(doc);
            changes.push(|| Change::PutConfiguration(Document::of(id, &doc)));
            map.insert(id.to_string(), doc.clone());
            Ok(doc)
        })
    }

    /// `GET /configurations/{id}`, its metrics counted against the twins now.
    pub fn get(&self, devices: &Registry, id: &str) -> Result<Value, ApiError> {
        let doc = lock(&self.map)
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))?;
        Ok(with_metrics(devices, vec![doc]).remove(0))
    }

    /// `GET /configurations[?top=n]`: the first `top` configurations by id (the service does
    /// not page them).
    pub fn list(&self, devices: &Registry, top: usize) -> Vec<Value> {
        let docs: Vec<Value> = lock(&self.map).values().take(top).cloned().collect();
        with_metrics(devices, docs)
    }

    /// `DELETE /configurations/{id}` with an optional `If-Match`.
    pub fn delete(&self, store: &Store, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        store.commit(lock(&self.map), |map, changes| {
            let old = map.get(id).ok_or_else(|| not_found(id))?;
            if !if_match(etag, old["etag"].as_str().unwrap_or_default()) {
                return Err(invalid(
                    ErrorCode::PreconditionFailed,
                    format!("Precondition failed: the etag of configuration {id} does not match"),
                ));
            }
            map.remove(id);
            changes.push(|| Change::DeleteConfiguration(id.into()));
            Ok(())
        })
    }
}

/// `POST /configurations/testQueries`: what is wrong with a target condition and custom metric
/// queries, without saving anything.
pub fn test_queries(body: &Value) -> Result<Value, ApiError> {
    let target = body
        .get("targetCondition")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target_error = target_condition(target).err().unwrap_or_default();
    let metric_errors = metric_errors(body.get("customMetricQueries"))?;
    Ok(json!({
        "targetConditionError": target_error,
        "customMetricQueryErrors": metric_errors,
    }))
}

/// What a configuration's metrics count: the twins its target condition selects (none when it
/// is empty), and the rows of each named custom query.
fn metric_queries(doc: &Value) -> (Option<SelectQuery>, Vec<(String, SelectQuery)>) {
    let target = doc["targetCondition"].as_str().unwrap_or_default();
    let target = target_condition(target)
        .ok()
        .flatten()
        .map(SelectQuery::of_condition);
    let custom = doc["metrics"]["queries"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), parse_counted(q.as_str()?).ok()?)))
        .collect();
    (target, custom)
}

/// The documents with their metrics counted, the twins read once for all of them:
/// `targetedCount` (twins the target condition selects), `appliedCount` (0: content is not
/// applied, see the module doc) and each custom query's count.
fn with_metrics(devices: &Registry, docs: Vec<Value>) -> Vec<Value> {
    let plans: Vec<_> = docs.iter().map(metric_queries).collect();
    let queries: Vec<SelectQuery> = plans
        .iter()
        .flat_map(|(target, custom)| target.iter().chain(custom.iter().map(|(_, q)| q)))
        .cloned()
        .collect();
    let mut counts = devices.count_matching(&queries).into_iter();
    let mut next = || counts.next().unwrap_or_default();
    docs.into_iter()
        .zip(plans)
        .map(|(mut doc, (target, custom))| {
            let targeted = target.map_or(0, |_| next());
            let custom: Map<String, Value> = custom
                .into_iter()
                .map(|(name, _)| (name, next().into()))
                .collect();
            doc["metrics"]["results"] = Value::Object(custom);
            let target = doc["targetCondition"].as_str().unwrap_or_default();
            let where_clause = match target.trim() {
                "" | "*" => String::new(),
                _ => format!(" where {target}"),
            };
            doc["systemMetrics"] = json!({
                "results": {"targetedCount": targeted, "appliedCount": 0},
                "queries": {
                    "targetedCount": format!("select deviceId from devices{where_clause}"),
                    "appliedCount": format!("select deviceId from devices where configurations.[[{}]].status = 'Applied'", doc["id"].as_str().unwrap_or_default()),
                },
            });
            doc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str) -> Value {
        json!({
            "id": id,
            "content": {"deviceContent": {"properties.desired.prop1": "foo"}},
            "targetCondition": "tags.building = 43",
            "priority": 20,
            "labels": {"team": "a"},
        })
    }

    #[test]
    fn create_update_and_delete_follow_the_etag_rules() {
        let (configs, store) = (Configurations::default(), Store::memory());
        let created = configs.put(&store, "c1", &config("c1"), None, 0).unwrap();
        assert_eq!(created["schemaVersion"], "1.0");
        assert_eq!(created["priority"], 20);
        let taken = configs
            .put(&store, "c1", &config("c1"), None, 0)
            .unwrap_err();
        assert_eq!(taken.code, ErrorCode::ConfigurationAlreadyExists);

        let mut update = created.clone();
        update["priority"] = 99.into();
        let stale = configs
            .put(&store, "c1", &update, Some("nope"), 1)
            .unwrap_err();
        assert_eq!(stale.code, ErrorCode::PreconditionFailed);
        let etag = created["etag"].as_str().unwrap();
        let updated = configs.put(&store, "c1", &update, Some(etag), 1).unwrap();
        assert_eq!(updated["priority"], 99);
        assert_ne!(updated["etag"], created["etag"]);
        assert_eq!(updated["createdTimeUtc"], created["createdTimeUtc"]);

        update["content"] = json!({"deviceContent": {"properties.desired.prop1": "bar"}});
        let immutable = configs
            .put(&store, "c1", &update, Some("*"), 2)
            .unwrap_err();
        assert_eq!(
            immutable.code,
            ErrorCode::CannotModifyImmutableConfigurationContent
        );
        let missing = configs
            .put(&store, "c2", &config("c2"), Some("*"), 2)
            .unwrap_err();
        assert_eq!(missing.code, ErrorCode::ConfigurationNotFound);

        assert_eq!(
            configs.delete(&store, "c1", Some("nope")).unwrap_err().code,
            ErrorCode::PreconditionFailed
        );
        configs.delete(&store, "c1", None).unwrap();
        assert_eq!(
            configs.delete(&store, "c1", None).unwrap_err().code,
            ErrorCode::ConfigurationNotFound
        );
    }

    #[test]
    fn bad_ids_content_conditions_and_metrics_are_refused() {
        let (configs, store) = (Configurations::default(), Store::memory());
        let refused = |id: &str, body: Value| configs.put(&store, id, &body, None, 0).unwrap_err();
        assert_eq!(
            refused("Upper", config("Upper")).code,
            ErrorCode::ArgumentInvalid
        );
        assert_eq!(
            refused("a/b", config("a/b")).code,
            ErrorCode::ArgumentInvalid
        );
        assert_eq!(refused("x", config("y")).code, ErrorCode::ArgumentInvalid);
        let mut body = config("c");
        body["content"] = json!({"deviceContent": {}, "moduleContent": {}});
        assert_eq!(
            refused("c", body).code,
            ErrorCode::InvalidConfigurationContent
        );
        let mut body = config("c");
        body["targetCondition"] = "tags.a = ".into();
        assert_eq!(
            refused("c", body).code,
            ErrorCode::InvalidConfigurationTargetCondition
        );
        let mut body = config("c");
        body["metrics"] = json!({"queries": {"m": "SELECT FROM"}});
        assert_eq!(
            refused("c", body).code,
            ErrorCode::InvalidConfigurationCustomMetricsQuery
        );
        let mut body = config("c");
        body["priority"] = (-1).into();
        assert_eq!(refused("c", body).code, ErrorCode::ArgumentInvalid);
        for n in 0..MAX_CONFIGURATIONS {
            let id = format!("c{n}");
            configs.put(&store, &id, &config(&id), None, 0).unwrap();
        }
        assert_eq!(
            refused("one-more", config("one-more")).code,
            ErrorCode::ConfigurationCountLimitExceeded
        );
    }

    #[test]
    fn test_queries_reports_each_error() {
        let answer = test_queries(&json!({
            "targetCondition": "tags.a = 1",
            "customMetricQueries": {"good": "SELECT deviceId FROM devices", "bad": "SELECT"},
        }))
        .unwrap();
        assert_eq!(answer["targetConditionError"], "");
        assert!(answer["customMetricQueryErrors"]["bad"].as_str().is_some());
        assert!(answer["customMetricQueryErrors"].get("good").is_none());
    }
}
