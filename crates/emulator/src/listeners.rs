//! The TCP ports the hub listens on and what each one speaks.
//!
//! The HTTPS port always serves REST, the control API, MQTT over WebSockets
//! (`/$iothub/websocket`) and, told apart by the first byte, MQTT and AMQP themselves.
//! `--mqtt-port` and `--amqp-port` add a port for MQTT or AMQP alone; `--standard-ports` puts
//! HTTPS on 443, MQTT on 8883 and AMQP on 5671, where device SDKs dial them from a plain
//! `HostName`. Without `--standard-ports`, the events endpoint is also served as plain AMQP on
//! a port of its own (`--events-port`, a free one by default): Event Hubs clients keep a port
//! only for a development emulator's plain AMQP (`UseDevelopmentEmulator=true`). (AMQP over WebSockets, `AMQPWSB10`, is not served yet.)

use std::io::ErrorKind;

use tokio::net::TcpListener;

use crate::cli::Args;
use crate::errors::StartError;

/// The hub's standard HTTPS (and WebSocket) port.
pub const STANDARD_HTTPS_PORT: u16 = 443;
/// The hub's standard MQTT-over-TLS port.
pub const STANDARD_MQTT_PORT: u16 = 8883;
/// The hub's standard AMQP-over-TLS port.
pub const STANDARD_AMQP_PORT: u16 = 5671;

/// What a listener speaks after the TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// HTTPS, WebSocket upgrades, and MQTT and AMQP recognised by their first byte.
    Https,
    /// MQTT only.
    Mqtt,
    /// AMQP only.
    Amqp,
    /// The events endpoint over plain AMQP (no TLS), or, told apart by the first byte, all
    /// that `Https` serves (Event Hubs clients over WebSockets dial `wss://` on this port).
    PlainEvents,
}

pub struct Listeners {
    pub https: TcpListener,
    pub mqtt: Option<TcpListener>,
    pub amqp: Option<TcpListener>,
    pub events: Option<TcpListener>,
}

impl Listeners {
    /// Binds the ports `args` ask for; a port that is taken or needs root is a one-line error.
    pub async fn bind(args: &Args) -> Result<Self, StartError> {
        let (https_port, mqtt_port, amqp_port, events_port) = if args.standard_ports {
            let standard = (STANDARD_MQTT_PORT, STANDARD_AMQP_PORT);
            (
                STANDARD_HTTPS_PORT,
                Some(standard.0),
                Some(standard.1),
                None,
            )
        } else {
            let events = Some(args.events_port.unwrap_or(0));
            (args.port, args.mqtt_port, args.amqp_port, events)
        };
        let https = bind(&args.host, https_port).await?;
        let mqtt = match mqtt_port {
            Some(port) => Some(bind(&args.host, port).await?),
            None => None,
        };
        let amqp = match amqp_port {
            Some(port) => Some(bind(&args.host, port).await?),
            None => None,
        };
        let events = match events_port {
            Some(port) => Some(bind(&args.host, port).await?),
            None => None,
        };
        Ok(Self {
            https,
            mqtt,
            amqp,
            events,
        })
    }

    pub fn https_port(&self) -> u16 {
        port_of(&self.https)
    }

    pub fn mqtt_port(&self) -> Option<u16> {
        self.mqtt.as_ref().map(port_of)
    }

    pub fn amqp_port(&self) -> Option<u16> {
        self.amqp.as_ref().map(port_of)
    }

    pub fn events_port(&self) -> Option<u16> {
        self.events.as_ref().map(port_of)
    }

    /// Every listener with what it speaks.
    pub fn into_fronts(self) -> Vec<(TcpListener, Front)> {
        std::iter::once((self.https, Front::Https))
            .chain(self.mqtt.map(|l| (l, Front::Mqtt)))
            .chain(self.amqp.map(|l| (l, Front::Amqp)))
            .chain(self.events.map(|l| (l, Front::PlainEvents)))
            .collect()
    }
}

fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().map(|a| a.port()).unwrap_or(0)
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, StartError> {
    TcpListener::bind((host, port)).await.map_err(|e| {
        let why = match e.kind() {
            ErrorKind::AddrInUse => "the port is already in use".to_string(),
            ErrorKind::PermissionDenied if port < 1024 => {
                format!("port {port} needs root (or CAP_NET_BIND_SERVICE)")
            }
            _ => e.to_string(),
        };
        StartError::new(format!("cannot listen on {host}:{port}: {why}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Parsed};

    fn args(v: &[&str]) -> Args {
        match cli::parse(v.iter().map(|s| s.to_string())).unwrap() {
            Parsed::Run(a) => *a,
            Parsed::Print(_) => unreachable!(),
        }
    }

    #[tokio::test]
    async fn binds_what_the_flags_ask_and_names_a_taken_port() {
        let l = Listeners::bind(&args(&[])).await.unwrap();
        assert!(l.https_port() > 0);
        assert_eq!(l.mqtt_port(), None);
        // The events endpoint's plain AMQP port is on by default, on a free port.
        let events = l.events_port().unwrap();
        assert!(events > 0 && events != l.https_port());
        let e = Listeners::bind(&args(&["--events-port", &events.to_string()]))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().ends_with("the port is already in use"), "{e}");
        let taken = l.https_port().to_string();
        let e = Listeners::bind(&args(&["--port", &taken]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            format!("cannot listen on 127.0.0.1:{taken}: the port is already in use")
        );
        let e = Listeners::bind(&args(&["--mqtt-port", &taken]))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.ends_with("the port is already in use"), "{e}");
        let both = Listeners::bind(&args(&["--mqtt-port", "0"])).await.unwrap();
        let mqtt = both.mqtt_port().unwrap();
        assert!(mqtt > 0 && mqtt != both.https_port());
        let fronts: Vec<Front> = both.into_fronts().into_iter().map(|(_, f)| f).collect();
        assert_eq!(fronts, [Front::Https, Front::Mqtt, Front::PlainEvents]);
        let all = Listeners::bind(&args(&["--mqtt-port", "0", "--amqp-port", "0"]))
            .await
            .unwrap();
        let amqp = all.amqp_port().unwrap();
        assert!(amqp > 0 && amqp != all.https_port() && Some(amqp) != all.mqtt_port());
        let fronts: Vec<Front> = all.into_fronts().into_iter().map(|(_, f)| f).collect();
        assert_eq!(
            fronts,
            [Front::Https, Front::Mqtt, Front::Amqp, Front::PlainEvents]
        );
    }
}
