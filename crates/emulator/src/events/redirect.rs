//! IoT Hub's redirect to the built-in endpoint: a reader that attaches at `messages/events…` on
//! the hub's own AMQP endpoint (with a policy's login) is detached with `amqp:link:redirect`,
//! whose info names where the Event Hubs-compatible endpoint is. Microsoft's "IoT Hub
//! connection string → Event Hubs client" samples (`@azure/event-hubs`' `iothubConnectionString`,
//! `azure-eventhub`'s `iot_hub_connection_string_receive_async.py`) build the Event Hubs
//! connection string from it: `Endpoint=sb://{hostname}/` and the entity cut out of `address`.

/// Where readers reach the endpoint over AMQPS: the hub's host and a port serving TLS
/// (5671 with `--standard-ports`, else the events port, which tells TLS by its first byte).
#[derive(Clone, Debug, PartialEq)]
pub struct EventsEndpoint {
    pub host: String,
    pub port: u16,
}

/// The port the service's redirect names, and where Event Hubs clients dial a plain host.
const AMQPS_PORT: u16 = 5671;

impl Default for EventsEndpoint {
    fn default() -> Self {
        EventsEndpoint {
            host: "127.0.0.1".into(),
            port: AMQPS_PORT,
        }
    }
}

/// The info of a redirect, as the service fills it (`hostname`, `network-host`, `port`,
/// `address`).
#[derive(Debug, PartialEq)]
pub struct Redirect {
    /// What the samples put in `Endpoint=sb://{hostname}/`: the plain host on 5671, as the
    /// service's namespace host; elsewhere `host:port`, the one form that makes an Event Hubs
    /// client built from it dial the endpoint's port.
    pub hostname: String,
    pub network_host: String,
    pub port: u16,
    /// `amqps://{host}:{port}/{name}/` followed by what the reader asked for after
    /// `messages/events/` (`$management`, `ConsumerGroups/{g}/Partitions/{n}`), which the
    /// samples cut the entity name out of.
    pub address: String,
}

/// The redirect of a reader that asked for `messages/events/{rest}`, to the endpoint named
/// `name` at `endpoint`.
pub fn redirect(endpoint: &EventsEndpoint, name: &str, rest: &str) -> Redirect {
    let EventsEndpoint { host, port } = endpoint;
    let hostname = match *port {
        AMQPS_PORT => host.clone(),
        port => format!("{host}:{port}"),
    };
    Redirect {
        hostname,
        network_host: host.clone(),
        port: *port,
        address: format!("amqps://{host}:{port}/{name}/{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_5671_the_redirect_is_the_services_form() {
        let endpoint = EventsEndpoint {
            host: "127.0.0.81".into(),
            port: AMQPS_PORT,
        };
        assert_eq!(
            redirect(&endpoint, "myhub", ""),
            Redirect {
                hostname: "127.0.0.81".into(),
                network_host: "127.0.0.81".into(),
                port: 5671,
                address: "amqps://127.0.0.81:5671/myhub/".into(),
            }
        );
        let management = redirect(&endpoint, "myhub", "$management");
        assert_eq!(
            management.address,
            "amqps://127.0.0.81:5671/myhub/$management"
        );
    }

    #[test]
    fn off_5671_the_hostname_carries_the_endpoints_port() {
        let endpoint = EventsEndpoint {
            host: "127.0.0.1".into(),
            port: 40577,
        };
        let r = redirect(
            &endpoint,
            "iothub-emulator",
            "ConsumerGroups/$Default/Partitions/0",
        );
        assert_eq!(r.hostname, "127.0.0.1:40577");
        assert_eq!(r.network_host, "127.0.0.1");
        assert_eq!(r.port, 40577);
        assert_eq!(
            r.address,
            "amqps://127.0.0.1:40577/iothub-emulator/ConsumerGroups/$Default/Partitions/0"
        );
    }
}
