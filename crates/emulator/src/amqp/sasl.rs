//! The SASL layer some IoT Hub clients put before AMQP (protocol header id 3): Java's
//! `ANONYMOUS` and the C SDK's `MSSBCBS` admit the connection, which then authenticates with
//! CBS put-tokens like a connection without SASL; `PLAIN` carries a SAS token itself, as IoT
//! Hub documents it: a device's (username `{deviceId}@sas.{hubName}`) or a shared access
//! policy's (`{policyName}@sas.root.{hubName}`: the service's links, and the redirect of
//! `messages/events` readers to the events endpoint), the token as the password. The hub name
//! is not checked (clients derive it from the first label of `HostName`, an address's `127`
//! on the emulator); the token's `sr` names the hub.
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

    /// A PLAIN response (`authzid NUL authcid NUL password`) from a device or a policy.
    fn plain(&self, response: &[u8]) -> SaslCode {
        let mut parts = response.split(|b| *b == 0);
        let (Some(_), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
        else {
            return SaslCode::Auth;
        };
        let user = String::from_utf8_lossy(user);
        let token = String::from_utf8_lossy(password);
        let client = match plain_login(&user) {
            Some(PlainLogin::Device(client)) => client,
            Some(PlainLogin::Policy(policy)) => {
                return match cbs::authorize_policy(&self.hub, policy, &token) {
                    Ok(grant) => {
                        *lock(&self.granted) = Some(grant);
                        SaslCode::Ok
                    }
                    Err(why) => {
                        eprintln!("iothub-emulator: AMQP SASL PLAIN refused: {why}");
                        SaslCode::Auth
                    }
                };
            }
            None => {
                eprintln!("iothub-emulator: AMQP SASL PLAIN refused: the username must be {{deviceId}}@sas.{{hubName}} or {{policyName}}@sas.root.{{hubName}}");
                return SaslCode::Auth;
            }
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

/// Who a PLAIN username names.
#[derive(Debug, PartialEq)]
enum PlainLogin<'a> {
    /// `{deviceId}@sas.{hubName}` (a module: `{deviceId}/{moduleId}`).
    Device(&'a str),
    /// `{policyName}@sas.root.{hubName}`.
    Policy(&'a str),
}

fn plain_login(user: &str) -> Option<PlainLogin<'_>> {
    let (name, hub) = user.rsplit_once('@')?;
    if name.is_empty() {
        return None;
    }
    if hub.starts_with("sas.root.") {
        Some(PlainLogin::Policy(name))
    } else {
        hub.starts_with("sas.").then_some(PlainLogin::Device(name))
    }
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
    fn plain_usernames_name_a_device_or_a_policy() {
        use PlainLogin::*;
        assert_eq!(plain_login("dev-1@sas.myhub"), Some(Device("dev-1")));
        assert_eq!(plain_login("a@b@sas.myhub"), Some(Device("a@b")));
        assert_eq!(
            plain_login("iothubowner@sas.root.myhub"),
            Some(Policy("iothubowner"))
        );
        assert_eq!(plain_login("service@sas.root.127"), Some(Policy("service")));
        assert_eq!(plain_login("@sas.myhub"), None);
        assert_eq!(plain_login("@sas.root.myhub"), None);
        assert_eq!(plain_login("dev-1"), None);
        assert_eq!(plain_login("dev-1@myhub"), None);
    }
}
