//! The endpoint's consumer groups: `$Default`, always there, and those created with
//! `--consumer-group`, the seed's `consumerGroups` or the control API, up to IoT Hub's limit.
//! Names compare case-insensitively, as Event Hubs' do. With a data dir the list is stored
//! at each change (before it is answered) and a restart takes it back.

use super::{EventsCondition, EventsError};
use std::sync::{Mutex, MutexGuard};

use crate::locks::lock;
use crate::store::{meta, Change, Changes, Store, StoreError};

pub const DEFAULT_GROUP: &str = "$Default";
/// IoT Hub's limit of consumer groups on the built-in endpoint (every paid tier).
pub const MAX_CONSUMER_GROUPS: usize = 20;

pub struct ConsumerGroups {
    initial: Vec<String>,
    names: Mutex<Vec<String>>,
}

/// Event Hubs' rule for a consumer group name: 1 to 50 letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit.
fn check_name(name: &str) -> Result<(), EventsError> {
    let ok = (1..=50).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(EventsError::new(EventsCondition::ArgumentError, format!("consumer group name {name:?} is not valid: 1 to 50 letters, digits, '.', '_' or '-', starting with a letter or digit")))
    }
}

/// A store that failed to take a change: the AMQP/control-API error.
fn not_saved(e: StoreError) -> EventsError {
    EventsError::new(
        EventsCondition::InternalError,
        format!("the hub could not save the change: {e}"),
    )
}

/// The stored list: the groups besides `$Default` (always the first).
fn stored(names: &[String], changes: &mut Changes) {
    changes.push(|| {
        Change::Meta(
            meta::CONSUMER_GROUPS.into(),
            serde_json::to_string(&names[1..]).unwrap_or_default(),
        )
    });
}

impl ConsumerGroups {
    pub fn new(initial: &[String]) -> Result<Self, EventsError> {
        let groups = ConsumerGroups {
            initial: initial.to_vec(),
            names: Mutex::new(vec![DEFAULT_GROUP.to_string()]),
        };
        let mut names = lock(&groups.names);
        for name in initial {
            add(&mut names, name)?;
        }
        drop(names);
        Ok(groups)
    }

    /// Adds the groups a previous run stored (those of this start's flags and seed stay).
    pub fn restore(&self, store: &Store) -> Result<(), EventsError> {
        let Some(list) = store.meta(meta::CONSUMER_GROUPS).map_err(not_saved)? else {
            return Ok(());
        };
        let stored: Vec<String> = serde_json::from_str(&list).map_err(|e| {
            EventsError::new(
                EventsCondition::ArgumentError,
                format!("the consumer groups in the store cannot be read ({e})"),
            )
        })?;
        let mut names = lock(&self.names);
        for name in &stored {
            add(&mut names, name)?;
        }
        Ok(())
    }

    /// The group's name as created, when it exists.
    pub fn find(&self, name: &str) -> Option<String> {
        lock(&self.names)
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .cloned()
    }

    pub fn list(&self) -> Vec<String> {
        lock(&self.names).clone()
    }

    /// Creates a group, stored in `store` before it returns; true when it is new (an
    /// existing one is left as is).
    pub fn create(&self, store: &Store, name: &str) -> Result<bool, EventsError> {
        self.change(store, |names| add(names, name))
    }

    /// Deletes a group, stored in `store` before it returns; `$Default` cannot be deleted.
    pub fn delete(&self, store: &Store, name: &str) -> Result<bool, EventsError> {
        if name.eq_ignore_ascii_case(DEFAULT_GROUP) {
            return Err(EventsError::new(
                EventsCondition::ArgumentError,
                "the $Default consumer group cannot be deleted",
            ));
        }
        self.change(store, |names| {
            let before = names.len();
            names.retain(|n| !n.eq_ignore_ascii_case(name));
            Ok(names.len() < before)
        })
    }

    /// Runs `edit` on the list under its lock; when it changed something (true), the new list
    /// is queued to the store under that lock and waited for.
    fn change(
        &self,
        store: &Store,
        edit: impl FnOnce(&mut MutexGuard<'_, Vec<String>>) -> Result<bool, EventsError>,
    ) -> Result<bool, EventsError> {
        let (changed, pending) = store.stage(lock(&self.names), |names, changes| {
            let changed = edit(names)?;
            if changed {
                stored(names, changes);
            }
            Ok::<_, EventsError>(changed)
        })?;
        pending.wait().map_err(not_saved)?;
        Ok(changed)
    }

    /// Back to `$Default` and the initial groups (a hub reset); the stored list goes.
    pub fn reset(&self, store: &Store) -> Result<(), StoreError> {
        let names = lock(&self.names);
        let (_, pending) = store.stage(names, |names, changes| {
            names.truncate(1);
            names.extend(self.initial.iter().cloned());
            changes.push(|| Change::DeleteMeta(meta::CONSUMER_GROUPS.into()));
            Ok::<_, StoreError>(())
        })?;
        pending.wait()
    }
}

/// Adds `name` to `names`; false when it is there already (in any case).
fn add(names: &mut Vec<String>, name: &str) -> Result<bool, EventsError> {
    check_name(name)?;
    if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return Ok(false);
    }
    if names.len() >= MAX_CONSUMER_GROUPS {
        return Err(EventsError::new(
            EventsCondition::ResourceLimitExceeded,
            format!(
                "the endpoint has {MAX_CONSUMER_GROUPS} consumer groups already, IoT Hub's limit"
            ),
        ));
    }
    names.push(name.to_string());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_named_limited_and_found_in_any_case() {
        let g = ConsumerGroups::new(&["readers".to_string()]).unwrap();
        let store = &Store::memory();
        assert_eq!(g.find("$default").as_deref(), Some("$Default"));
        assert_eq!(g.find("READERS").as_deref(), Some("readers"));
        assert!(g.create(store, "bad name").is_err());
        assert!(g.create(store, "$x").is_err());
        assert_eq!(g.create(store, "Readers"), Ok(false));
        for i in 0..18 {
            assert_eq!(g.create(store, &format!("g{i}")), Ok(true));
        }
        let limit = g.create(store, "one-too-many").unwrap_err();
        assert!(limit.message.contains("limit"));
        assert_eq!(limit.condition, EventsCondition::ResourceLimitExceeded);
        assert!(g.delete(store, "$Default").is_err());
        assert_eq!(g.delete(store, "g0"), Ok(true));
        g.reset(store).unwrap();
        assert_eq!(g.list(), vec!["$Default", "readers"]);
    }
}
