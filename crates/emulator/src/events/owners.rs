//! Who reads a partition of a consumer group: Event Hubs' epoch (exclusive) receivers. A
//! receiver with an epoch (`com.microsoft:epoch`, the clients' `ownerLevel`) takes the
//! partition over from every receiver with a lower or no epoch, which are detached; one with
//! a lower epoch than the owner's, or none while an owner exists, is refused.

use super::{EventsCondition, EventsError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::locks::lock;

struct Reader {
    id: u64,
    epoch: Option<i64>,
    /// Detaches the reader, with the text the service gives.
    kick: oneshot::Sender<String>,
}

#[derive(Default)]
pub struct Owners {
    next_id: AtomicU64,
    readers: Mutex<HashMap<(String, u32), Vec<Reader>>>,
}

/// A reader's place: released when its link ends.
#[derive(Debug)]
pub struct Claim {
    pub id: u64,
    pub key: (String, u32),
    pub kicked: oneshot::Receiver<String>,
}

/// A reader refused because a higher epoch holds the partition (`amqp:link:stolen`).
fn stolen(text: String) -> EventsError {
    EventsError::new(EventsCondition::Stolen, text)
}

impl Owners {
    /// Lets a reader with `epoch` read `partition` of `group` (a lower-cased name), detaching
    /// those it takes over from; the refusal's text when it may not.
    pub fn claim(
        &self,
        group: &str,
        partition: u32,
        epoch: Option<i64>,
    ) -> Result<Claim, EventsError> {
        let key = (group.to_ascii_lowercase(), partition);
        let mut readers = lock(&self.readers);
        let list = readers.entry(key.clone()).or_default();
        let owner = list.iter().filter_map(|r| r.epoch).max();
        match (epoch, owner) {
            (Some(e), Some(o)) if o > e => {
                return Err(stolen(format!(
                    "Receiver 'nil' with higher epoch of '{o}' already exists. Receiver 'nil' with epoch {e} cannot be created. Make sure you are creating receiver with increasing epoch value to ensure connectivity, or ensure all old epoch receivers are closed or disconnected."
                )))
            }
            (None, Some(o)) => {
                return Err(stolen(format!(
                    "At least one receiver for the endpoint is created with epoch of '{o}', and so non-epoch receiver is not allowed. Either reconnect with a higher epoch, or make sure all epoch receivers are closed or disconnected."
                )))
            }
            (Some(e), _) => {
                for old in list.drain(..) {
                    let old_epoch = old.epoch.map_or("nil".to_string(), |o| o.to_string());
                    let _ = old.kick.send(format!(
                        "New receiver 'nil' with higher epoch of '{e}' is created hence current receiver 'nil' with epoch '{old_epoch}' is getting disconnected. If you are recreating the receiver, make sure a higher epoch is used."
                    ));
                }
            }
            (None, None) => {}
        }
        let (kick, kicked) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        list.push(Reader { id, epoch, kick });
        Ok(Claim { id, key, kicked })
    }

    pub fn release(&self, claim: &Claim) {
        let mut readers = lock(&self.readers);
        if let Some(list) = readers.get_mut(&claim.key) {
            list.retain(|r| r.id != claim.id);
            if list.is_empty() {
                readers.remove(&claim.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_higher_epoch_takes_over_and_a_lower_one_is_refused() {
        let owners = Owners::default();
        let mut plain = owners.claim("$Default", 0, None).unwrap();
        let mut first = owners.claim("$default", 0, Some(1)).unwrap();
        assert!(plain
            .kicked
            .try_recv()
            .unwrap()
            .contains("higher epoch of '1'"));
        assert!(owners
            .claim("$Default", 0, None)
            .unwrap_err()
            .message
            .contains("non-epoch"));
        assert!(owners
            .claim("$Default", 0, Some(0))
            .unwrap_err()
            .message
            .contains("higher epoch of '1'"));
        assert!(
            owners.claim("$Default", 1, None).is_ok(),
            "another partition is free"
        );
        assert!(
            owners.claim("other", 0, None).is_ok(),
            "another group is free"
        );
        let second = owners.claim("$Default", 0, Some(2)).unwrap();
        assert!(first.kicked.try_recv().is_ok());
        owners.release(&second);
        assert!(
            owners.claim("$Default", 0, None).is_ok(),
            "free once released"
        );
    }
}
