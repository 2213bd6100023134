//! Who an AMQP connection may act for: the grants of its logins (CBS put-tokens, SASL PLAIN,
//! an x509 device's TLS certificate), the expiry of their tokens, and the refusals IoT Hub
//! gives (`amqp:unauthorized-access`, which the SDKs surface as `UnauthorizedError`).

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody};

use super::cbs::{self, Grant, Grantee, Refusal};
use super::{lock, Address, Conn};
use crate::clock::wall_secs;

/// IoT Hub's refusal of a login or link: `amqp:unauthorized-access`, which the SDKs surface
/// as `UnauthorizedError`.
pub(super) fn refusal(text: &str) -> AmqpErrorBody {
    AmqpErrorBody::new(AmqpError::UnauthorizedAccess, Some(text.to_string()), None)
}

/// The refusal of a login by the control API's `refuseConnects` fault: a transient server
/// error, which the SDKs retry.
pub(super) fn unavailable() -> AmqpErrorBody {
    let text = "the hub refused this connection (refuseConnects fault)".to_string();
    AmqpErrorBody::new(AmqpError::InternalError, Some(text), None)
}

impl Conn {
    /// Closes the connection with `error` (the first reason given wins).
    pub(super) fn close_with(&self, error: AmqpErrorBody) {
        lock(&self.close_error).get_or_insert(error);
        self.closed.notify_one();
    }

    /// Lets this connection act for a grant's client (or use the service's links). When its
    /// token expires without a newer put-token (the SDKs renew theirs ahead), the connection is
    /// closed with `amqp:unauthorized-access`, as IoT Hub closes one whose token lapsed.
    pub(super) fn grant(self: &Arc<Self>, grant: Grant) {
        let expiry = grant.expires_secs.map(|se| {
            let conn = Arc::downgrade(self);
            let text = match &grant.to {
                Grantee::Client(client) => format!("the token for {client} expired"),
                Grantee::Service => "the service's token expired".to_string(),
            };
            tokio::spawn(async move {
                let left = se.saturating_sub(wall_secs());
                tokio::time::sleep(Duration::from_secs(left)).await;
                if let Some(conn) = conn.upgrade() {
                    eprintln!("iothub-emulator: AMQP connection closed: {text}");
                    conn.close_with(refusal(&text));
                }
            })
            .abort_handle()
        });
        let renewed = lock(&self.authorized).insert(grant.to, expiry);
        if let Some(Some(previous)) = renewed {
            previous.abort();
        }
    }

    /// Admits a link to `address`: a client's needs that client's login ([`Conn::admit`]), the
    /// service's a policy token; `$cbs` needs nothing.
    pub(super) fn admit_link(self: &Arc<Self>, address: &Address) -> Result<(), AmqpErrorBody> {
        if address.is_service() {
            return match lock(&self.authorized).contains_key(&Grantee::Service) {
                true => Ok(()),
                false => Err(refusal("no valid policy token")),
            };
        }
        address.client().map_or(Ok(()), |client| self.admit(client))
    }

    /// Admits the links of `client` when the connection is logged in for it, or when its TLS
    /// certificate authenticates an x509 device (which puts no token); the refusal otherwise.
    pub(super) fn admit(self: &Arc<Self>, client: &str) -> Result<(), AmqpErrorBody> {
        if lock(&self.authorized).contains_key(&Grantee::Client(client.to_string())) {
            return Ok(());
        }
        if self.client_chain.is_empty() {
            return Err(refusal("no valid token for this device"));
        }
        match cbs::authorize(&self.hub, client, "", &self.client_chain) {
            Ok(grant) => {
                self.grant(grant);
                Ok(())
            }
            Err(Refusal::Unauthorized(why)) => {
                eprintln!("iothub-emulator: AMQP device {client} refused: {why}");
                Err(refusal(why))
            }
            Err(Refusal::Unavailable) => Err(unavailable()),
        }
    }
}
