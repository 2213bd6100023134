//! The events layer's one error: what went wrong, with the AMQP condition Event Hubs gives for
//! it, so the listener sends it as it is (`amqp()`) and the control API and start-up show its
//! text.

use std::fmt;

use fe2o3_amqp::types::definitions::{
    AmqpError, Error as AmqpErrorBody, ErrorCondition, LinkError,
};
use fe2o3_amqp::types::primitives::Symbol;

use crate::errors::StartError;

/// The conditions the endpoint refuses with, as Event Hubs names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsCondition {
    /// `com.microsoft:argument-error`: a request or setting the endpoint cannot take.
    ArgumentError,
    /// `com.microsoft:argument-out-of-range`: a number outside its range (a partition, a
    /// setting).
    ArgumentOutOfRange,
    /// `amqp:unauthorized-access`: a missing, wrong or expired token.
    Unauthorized,
    /// `amqp:resource-limit-exceeded`: past a limit (consumer groups).
    ResourceLimitExceeded,
    /// `amqp:link:stolen`: a reader of a higher epoch holds (or took) the partition.
    Stolen,
    /// `amqp:internal-error`: the hub could not save a change (its data dir).
    InternalError,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsError {
    pub condition: EventsCondition,
    pub message: String,
}

impl EventsError {
    pub fn new(condition: EventsCondition, message: impl Into<String>) -> Self {
        EventsError {
            condition,
            message: message.into(),
        }
    }

    /// The AMQP error a link or request is refused with.
    pub fn amqp(&self) -> AmqpErrorBody {
        let condition = match self.condition {
            EventsCondition::ArgumentError => microsoft("com.microsoft:argument-error"),
            EventsCondition::ArgumentOutOfRange => microsoft("com.microsoft:argument-out-of-range"),
            EventsCondition::Unauthorized => {
                ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess)
            }
            EventsCondition::ResourceLimitExceeded => {
                ErrorCondition::AmqpError(AmqpError::ResourceLimitExceeded)
            }
            EventsCondition::Stolen => ErrorCondition::LinkError(LinkError::Stolen),
            EventsCondition::InternalError => ErrorCondition::AmqpError(AmqpError::InternalError),
        };
        AmqpErrorBody::new(condition, Some(self.message.clone()), None)
    }
}

/// A condition of Event Hubs' own (`com.microsoft:…`).
fn microsoft(condition: &str) -> ErrorCondition {
    ErrorCondition::Custom(Symbol::from(condition))
}

impl fmt::Display for EventsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EventsError {}

/// A setting refused at start (`--partitions`, a seed's consumer group): its one line.
impl From<EventsError> for StartError {
    fn from(e: EventsError) -> Self {
        StartError::new(e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_condition_goes_on_the_wire_as_event_hubs_names_it() {
        let wire = |c| format!("{:?}", EventsError::new(c, "why").amqp().condition);
        assert_eq!(
            wire(EventsCondition::ArgumentError),
            r#"Custom(Symbol("com.microsoft:argument-error"))"#
        );
        assert_eq!(
            wire(EventsCondition::ArgumentOutOfRange),
            r#"Custom(Symbol("com.microsoft:argument-out-of-range"))"#
        );
        assert_eq!(
            wire(EventsCondition::Unauthorized),
            "AmqpError(UnauthorizedAccess)"
        );
        assert_eq!(
            wire(EventsCondition::ResourceLimitExceeded),
            "AmqpError(ResourceLimitExceeded)"
        );
        assert_eq!(wire(EventsCondition::Stolen), "LinkError(Stolen)");
        let e = EventsError::new(EventsCondition::Stolen, "taken over");
        assert_eq!(e.amqp().description.as_deref(), Some("taken over"));
        assert_eq!(StartError::from(e).to_string(), "taken over");
    }
}
