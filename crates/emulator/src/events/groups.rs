//! The endpoint's consumer groups: `$Default`, always there, and those created with
//! `--consumer-group`, the seed's `consumerGroups` or the control API, up to IoT Hub's limit.
//! Names compare case-insensitively, as Event Hubs' do.

use super::{EventsCondition, EventsError};
use std::sync::Mutex;

use crate::locks::lock;

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

impl ConsumerGroups {
    pub fn new(initial: &[String]) -> Result<Self, EventsError> {
        let groups = ConsumerGroups {
            initial: initial.to_vec(),
            names: Mutex::new(vec![DEFAULT_GROUP.to_string()]),
        };
        for name in initial {
            groups.create(name)?;
        }
        Ok(groups)
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

    /// Creates a group; true when it is new (an existing one is left as is).
    pub fn create(&self, name: &str) -> Result<bool, EventsError> {
        check_name(name)?;
        let mut names = lock(&self.names);
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Ok(false);
        }
        if names.len() >= MAX_CONSUMER_GROUPS {
            return Err(EventsError::new(
                EventsCondition::ResourceLimitExceeded,
                format!("the endpoint has {MAX_CONSUMER_GROUPS} consumer groups already, IoT Hub's limit"),
            ));
        }
        names.push(name.to_string());
        Ok(true)
    }

    /// Deletes a group; `$Default` cannot be deleted.
    pub fn delete(&self, name: &str) -> Result<bool, EventsError> {
        if name.eq_ignore_ascii_case(DEFAULT_GROUP) {
            return Err(EventsError::new(
                EventsCondition::ArgumentError,
                "the $Default consumer group cannot be deleted",
            ));
        }
        let mut names = lock(&self.names);
        let before = names.len();
        names.retain(|n| !n.eq_ignore_ascii_case(name));
        Ok(names.len() < before)
    }

    /// Back to `$Default` and the initial groups (a hub reset).
    pub fn reset(&self) {
        let mut names = lock(&self.names);
        names.truncate(1);
        names.extend(self.initial.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_named_limited_and_found_in_any_case() {
        let g = ConsumerGroups::new(&["readers".to_string()]).unwrap();
        assert_eq!(g.find("$default").as_deref(), Some("$Default"));
        assert_eq!(g.find("READERS").as_deref(), Some("readers"));
        assert!(g.create("bad name").is_err());
        assert!(g.create("$x").is_err());
        assert_eq!(g.create("Readers"), Ok(false));
        for i in 0..18 {
            assert_eq!(g.create(&format!("g{i}")), Ok(true));
        }
        let limit = g.create("one-too-many").unwrap_err();
        assert!(limit.message.contains("limit"));
        assert_eq!(limit.condition, EventsCondition::ResourceLimitExceeded);
        assert!(g.delete("$Default").is_err());
        assert_eq!(g.delete("g0"), Ok(true));
        g.reset();
        assert_eq!(g.list(), vec!["$Default", "readers"]);
    }
}
