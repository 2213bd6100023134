//! The SASL layer some IoT Hub clients put before AMQP (protocol header id 3): Java's
//! `ANONYMOUS` and the C SDK's `MSSBCBS` admit the connection, which then authenticates with
//! CBS put-tokens like a connection without SASL; `PLAIN` carries a device's SAS token itself
//! (username `{deviceId}@sas.{hubName}`, the token as the password), as IoT Hub documents it.
//! `EXTERNAL` is not offered: an x509 device is known by its TLS certificate when it attaches
//! its links, with or without SASL.

use std::sync::{Arc, Mutex};

use fe2o3_amqp::acceptor::sasl_acceptor::{SaslAcceptor, SaslServerFrame};
use fe2o3_amqp::types::primitives::{Array, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};

use super::cbs::{self, Grant, Refusal};
use super::lock;
use crate::hub::Hub;

/// The C SDK's mechanism: no credentials in SASL, CBS put-tokens after the AMQP open.
pub const MSSBCBS: &str = "MSSBCBS";
pub const ANONYMOUS: &str = "ANONYMOUS";
pub const PLAIN: &str = "PLAIN";

/// The mechanisms offered, in IoT Hub's order of preference.
const OFFERED: [&str; 3] = [MSSBCBS, PLAIN, ANONYMOUS];

/// Runs the SASL exchange of one connection; a PLAIN login's grant is left in `granted` for
/// the connection to take.
#[derive(Clone)]
pub struct Mechanisms {
    hub: Arc<Hub>,
    pub granted: Arc<Mutex<Option<Grant>>>,
}

impl Mechanisms {
    pub fn new(hub: Arc<Hub>) -> Self {
        Mechanisms {
            hub,
            granted: Arc::default(),
        }
    }

    fn outcome(code: SaslCode) -> SaslServerFrame {
        SaslServerFrame::Outcome(SaslOutcome {
            code,
            additional_data: None,
        })
    }

    /// A PLAIN response (`authzid NUL authcid NUL password`) from a device.
    fn plain(&self, response: &[u8]) -> SaslCode {
        let mut parts = response.split(|b| *b == 0);
        let (Some(_), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
        else {
            return SaslCode::Auth;
        };
        let user = String::from_utf8_lossy(user);
        let token = String::from_utf8_lossy(password);
        let Some(client) = plain_client(&user) else {
            eprintln!("iothub-emulator: AMQP SASL PLAIN refused: the username must be {{deviceId}}@sas.{{hubName}}");
            return SaslCode::Auth;
        };
        match cbs::authorize(&self.hub, client, &token, &[]) {
            Ok(grant) => {
                *lock(&self.granted) = Some(grant);
                SaslCode::Ok
            }
            Err(Refusal::Unauthorized(why)) => {
                eprintln!("iothub-emulator: AMQP SASL PLAIN refused: {why}");
                SaslCode::Auth
            }
            Err(Refusal::Unavailable) => SaslCode::SysTemp,
        }
    }
}

/// The device a PLAIN username names: `{deviceId}@sas.{hubName}`.
fn plain_client(user: &str) -> Option<&str> {
    let (client, hub) = user.rsplit_once('@')?;
    (!client.is_empty() && hub.starts_with("sas.") && !hub.starts_with("sas.root."))
        .then_some(client)
}

impl SaslAcceptor for Mechanisms {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(OFFERED.map(Symbol::from).to_vec())
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        Self::outcome(match init.mechanism.as_str() {
            MSSBCBS | ANONYMOUS => SaslCode::Ok,
            PLAIN => self.plain(init.initial_response.as_ref().map_or(&[][..], |r| &r[..])),
            _ => SaslCode::Auth,
        })
    }

    /// None of the offered mechanisms sends a challenge, so a response is out of place.
    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        Self::outcome(SaslCode::Auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_usernames_name_a_device_never_a_policy() {
        assert_eq!(plain_client("dev-1@sas.myhub"), Some("dev-1"));
        assert_eq!(plain_client("a@b@sas.myhub"), Some("a@b"));
        assert_eq!(plain_client("iothubowner@sas.root.myhub"), None);
        assert_eq!(plain_client("@sas.myhub"), None);
        assert_eq!(plain_client("dev-1"), None);
    }
}
