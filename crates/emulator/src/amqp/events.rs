//! The events endpoint's links on an AMQP connection (the endpoint itself is `crate::events`):
//! a link under the Event Hub-compatible name needs a policy token for the endpoint (a CBS
//! put-token for `sb://{host}/{name}…`, see `cbs.rs`), then a receiver reads a partition and
//! `$management` answers requests. A reader at the hub's own `messages/events/…` is detached
//! with `amqp:link:redirect` to the endpoint (the target is `crate::events::redirect`'s).

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, Fields, LinkError};
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::{Receiver, Sender};

use super::cbs::Grantee;
use super::login::refusal;
use super::{lock, Conn};
use crate::events::link::{self, Node};
use crate::events::management;
use crate::events::Redirect;

/// How long the redirect follows the attach it answers, as the service's comes after its
/// attach. Microsoft's sample (`@azure/event-hubs`' `iothubConnectionString`) registers its
/// `receiver_error` handler only once `createReceiver` has resolved, so a detach read together
/// with the attach could reach rhea-promise before the handler exists. Not seen on loopback
/// (the sample passed with no pause): a margin for a loaded machine.
const REDIRECT_AFTER: Duration = Duration::from_millis(200);

/// Detaches a reader of the hub's `messages/events/…` with `amqp:link:redirect`: the info as
/// the service fills it (symbol keys, the `port` an int), and no description, as the service
/// sends none.
pub(super) async fn redirect(sender: Sender, to: Redirect) {
    tokio::time::sleep(REDIRECT_AFTER).await;
    let info: Fields = [
        ("hostname", Value::String(to.hostname)),
        ("network-host", Value::String(to.network_host)),
        ("port", Value::Int(i32::from(to.port))),
        ("address", Value::String(to.address)),
    ]
    .into_iter()
    .map(|(key, value)| (Symbol::from(key), value))
    .collect();
    let error = AmqpErrorBody::new(LinkError::Redirect, None, Some(info));
    let _ = sender.close_with_error(error).await;
}

impl Conn {
    /// What `address` names on the events endpoint (`None`: not the endpoint's).
    pub(super) fn events_node(&self, address: &str) -> Option<Result<Node, AmqpErrorBody>> {
        link::node(self.hub.events(), self.hub.host_name(), address)
    }

    fn holds_policy_token(&self) -> bool {
        lock(&self.authorized).contains_key(&Grantee::Service)
    }

    /// A link the client receives on: a partition's events or `$management`'s replies.
    pub(super) async fn events_sender(
        self: Arc<Self>,
        sender: Sender,
        node: Result<Node, AmqpErrorBody>,
        epoch: Option<i64>,
    ) {
        if !self.holds_policy_token() {
            let _ = sender
                .close_with_error(refusal(
                    "Unauthorized: put a token for the endpoint on $cbs first",
                ))
                .await;
            return;
        }
        let events = self.hub.events().clone();
        match node {
            Err(refused) => {
                let _ = sender.close_with_error(refused).await;
            }
            Ok(Node::Partition { group, partition }) => {
                tokio::spawn(link::serve_partition(
                    events, sender, group, partition, epoch,
                ));
            }
            Ok(Node::Management) => {
                let connection = self.events_connection;
                tokio::spawn(async move {
                    management::serve_replies(&events, sender, connection).await
                });
            }
        }
    }

    /// A link the client sends on: `$management`'s requests (the endpoint takes no events).
    pub(super) async fn events_receiver(
        self: Arc<Self>,
        receiver: Receiver,
        node: Result<Node, AmqpErrorBody>,
    ) {
        match node {
            Ok(Node::Management) => {
                let events = self.hub.events().clone();
                let connection = self.events_connection;
                let conn = Arc::downgrade(&self);
                tokio::spawn(async move {
                    let authorized = || conn.upgrade().is_some_and(|c| c.holds_policy_token());
                    management::serve_requests(&events, receiver, connection, authorized).await
                });
            }
            Ok(Node::Partition { .. }) => {
                let text = "a consumer group's partition is read, not written".to_string();
                let error = AmqpErrorBody::new(AmqpError::NotAllowed, Some(text), None);
                let _ = receiver.close_with_error(error).await;
            }
            Err(refused) => {
                let _ = receiver.close_with_error(refused).await;
            }
        }
    }
}
