//! Who an AMQP connection may act for: the grants of its logins (CBS put-tokens, SASL PLAIN,
//! an x509 device's TLS certificate), the expiry of their tokens, and the refusals IoT Hub
//! gives (`amqp:unauthorized-access`, which the SDKs surface as `UnauthorizedError`).

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody};

use super::cbs::{self, Grant, Refusal};
use super::{lock, Conn};
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

    /// Lets this connection act for a grant's client. When its token expires without a newer
    /// put-token for the client (the SDKs renew theirs ahead), the connection is closed with
    /// `amqp:unauthorized-access`, as IoT Hub closes one whose token lapsed.
    pub(super) fn grant(self: &Arc<Self>, grant: Grant) {
        let expiry = grant.expires_secs.map(|se| {
            let conn = Arc::downgrade(self);
            let text = format!("the token for {} expired", grant.client);
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
        let renewed = lock(&self.authorized).insert(grant.client, expiry);
        if let Some(Some(previous)) = renewed {
            previous.abort();
        }
    }

    /// Admits the links of `client` when the connection is logged in for it, or when its TLS
    /// certificate authenticates an x509 device (which puts no token); the refusal otherwise.
    pub(super) fn admit(self: &Arc<Self>, client: &str) -> Result<(), AmqpErrorBody> {
        if lock(&self.authorized).contains_key(client) {
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
