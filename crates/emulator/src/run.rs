//! Start-up: seed, key, TLS, listener, the ready line, and serving until a signal.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Authenticator, Policy};
use crate::cli::{storage_choice, Args};
use crate::devices::Seed;
use crate::errors::StartError;
use crate::events::{EventsConfig, EventsEndpoint};
use crate::hub::{FileUploadSettings, Hub, HubConfig};
use crate::listeners::{Listeners, STANDARD_AMQP_PORT, STANDARD_HTTPS_PORT};
use crate::routing::{Routing, RoutingSpec};
use crate::storage::{AzuriteSetup, LinkedStorage, StorageChoice, AZURITE_ENV};
use crate::store::{meta, Store};
use crate::tls::{Ca, CaFile};
use crate::x509::DeviceCas;
use crate::{server, tls, websocket};

/// What the ready line tells clients. Holds the key: no `Debug`, printed only as the line.
pub struct Ready {
    pub host: String,
    pub port: u16,
    /// The port of its own MQTT is served on (`--mqtt-port`, `--standard-ports`), if any.
    pub mqtt_port: Option<u16>,
    /// The port of its own AMQP is served on (`--amqp-port`, `--standard-ports`), if any.
    pub amqp_port: Option<u16>,
    /// The events endpoint's plain AMQP port (`--events-port`; none with `--standard-ports`).
    pub events_port: Option<u16>,
    pub host_name: String,
    pub connection_string: String,
    /// The built-in events endpoint's, as the portal shows it (`Endpoint=sb://…;EntityPath=…`).
    pub event_hub_connection_string: String,
    pub ca_path: PathBuf,
    pub ca_pem: String,
    /// The linked storage account's (`--storage`, `--storage-connection-string`), if any.
    pub storage_connection_string: Option<String>,
}

impl Ready {
    pub fn line(&self) -> String {
        let mut line = json!({
            "host": self.host,
            "port": self.port,
            "hostName": self.host_name,
            "connectionString": self.connection_string,
            "eventHubConnectionString": self.event_hub_connection_string,
            "caPath": self.ca_path.to_string_lossy(),
            // MQTT is always served on `port` too; a port of its own when one was asked for.
            "mqttPort": self.mqtt_port.unwrap_or(self.port),
            // AMQP likewise: always on `port`, and on a port of its own when asked for.
            "amqpPort": self.amqp_port.unwrap_or(self.port),
            // The events endpoint as plain AMQP (eventHubConnectionString names it), if served.
            "eventsPort": self.events_port,
            // MQTT over WebSockets, on `port`.
            "websocketPath": websocket::PATH,
            // Devices connect over MQTT on this same port with a SAS token from their key.
            "deviceConnectionString": format!(
                "HostName={};DeviceId={{deviceId}};SharedAccessKey={{deviceKey}}",
                self.host_name
            ),
        });
        // Only with a linked storage account (--storage, --storage-connection-string).
        if let Some(cs) = &self.storage_connection_string {
            line["storageConnectionString"] = json!(cs);
        }
        line.to_string()
    }

    /// Prints the ready line to stdout and flushes, so a parent process sees it at once.
    pub fn print(&self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", self.line());
        let _ = out.flush();
    }
}

/// The Event Hub-compatible name (`EntityPath`): the hub's name, the first label of
/// `--hostname` (`myhub` for `myhub.azure-devices.net`), else `iothub-emulator`.
fn event_hub_name(hostname: Option<&str>) -> String {
    hostname
        .filter(|h| h.parse::<std::net::IpAddr>().is_err())
        .and_then(|h| h.split('.').next())
        .filter(|label| !label.is_empty())
        .map_or_else(|| "iothub-emulator".to_string(), str::to_ascii_lowercase)
}

/// The events endpoint's connection string. On 5671 (`--standard-ports`) the plain host, as a
/// real hub's: the clients dial it there over TLS. Elsewhere the plain AMQP port with
/// `UseDevelopmentEmulator=true`, the one form with a port that both `@azure/event-hubs` 6 and
/// `azure-eventhub` 5 keep (over TLS, `azure-eventhub` dials 5671 whatever the port).
fn event_hub_connection_string(
    host: &str,
    on_standard_port: bool,
    events_port: Option<u16>,
    key: &str,
    name: &str,
) -> String {
    let (endpoint, emulator) = match events_port {
        Some(port) if !on_standard_port => {
            (format!("{host}:{port}"), ";UseDevelopmentEmulator=true")
        }
        _ => (host.to_string(), ""),
    };
    format!(
        "Endpoint=sb://{endpoint}/;SharedAccessKeyName=iothubowner;SharedAccessKey={key};EntityPath={name}{emulator}"
    )
}

/// Where the hub redirects its `messages/events` readers: the events endpoint over TLS, on 5671
/// with `--standard-ports` (as the service's), else on the events port (which speaks TLS too).
fn events_endpoint(host: &str, amqp_port: Option<u16>, events_port: Option<u16>) -> EventsEndpoint {
    let port = match events_port {
        Some(port) if amqp_port != Some(STANDARD_AMQP_PORT) => port,
        _ => STANDARD_AMQP_PORT,
    };
    EventsEndpoint {
        host: host.to_string(),
        port,
    }
}

fn initial_seed(args: &Args) -> Result<Seed, StartError> {
    let mut seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            Seed::from_json(value).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Seed::default(),
    };
    seed.generate = seed.generate.max(args.devices);
    Ok(seed)
}

/// The seed's `storage` and `fileNotifications` where the flags say nothing (the flags win).
fn with_seed_storage(mut args: Args, seed: &Seed) -> Result<Args, StartError> {
    if let Some(choice) = &seed.storage {
        let choice = storage_choice(choice).map_err(|e| format!("seed: storage {e}"))?;
        if args.storage.is_none() && args.storage_connection_string.is_none() {
            args.storage = Some(choice);
        }
    }
    args.file_notifications |= seed.file_notifications;
    Ok(args)
}

fn random_key() -> Result<String, StartError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness for the hub key: {e}"))?;
    Ok(STANDARD.encode(key))
}

/// The value the store keeps under `key`, or a new one (then kept).
fn kept(
    store: &Store,
    key: &str,
    new: impl FnOnce() -> Result<String, StartError>,
) -> Result<String, StartError> {
    if let Some(value) = store.meta(key)? {
        return Ok(value);
    }
    let value = new()?;
    store.set_meta(key, &value)?;
    Ok(value)
}

/// The TLS setup: `--ca-cert/--ca-key` when given, else the data dir's CA (created once), else
/// a CA for this run. With a data dir the server key is kept too, and `ca.pem` is in the dir.
fn tls_for(args: &Args, store: &Store) -> Result<tls::Tls, StartError> {
    let alias = args.hostname.as_deref();
    let brought = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => Some((Ca::read(cert, key)?, cert.clone())),
        _ => None,
    };
    let Some(dir) = &args.data_dir else {
        return match brought {
            Some((ca, path)) => tls::serve(&args.host, alias, &ca, None, CaFile::Existing(path)),
            None => tls::generate(&args.host, alias),
        };
    };
    let (ca, ca_file) = match brought {
        Some((ca, path)) => (ca, CaFile::Existing(path)),
        None => {
            let ca = match (store.meta(meta::CA_CERT)?, store.meta(meta::CA_KEY)?) {
                (Some(cert_pem), Some(key_pem)) => {
                    let ca = Ca { cert_pem, key_pem };
                    ca.check().map_err(|e| {
                        format!("the CA kept in {} is not usable: {e}", dir.display())
                    })?;
                    ca
                }
                _ => {
                    let ca = Ca::generate()?;
                    store.set_meta(meta::CA_CERT, &ca.cert_pem)?;
                    store.set_meta(meta::CA_KEY, &ca.key_pem)?;
                    ca
                }
            };
            (ca, CaFile::Write(dir.join("ca.pem")))
        }
    };
    let server_key = store.meta(meta::SERVER_KEY)?;
    let tls = tls::serve(&args.host, alias, &ca, server_key.as_deref(), ca_file)?;
    if server_key.is_none() {
        store.set_meta(meta::SERVER_KEY, &tls.server_key_pem)?;
    }
    Ok(tls)
}

/// The storage account linked to the hub: the one of `--storage-connection-string`, or Azurite
/// started now (`--storage azurite`, with the hub's certificate; its data in the data dir).
async fn link_storage(args: &Args, tls: &tls::Tls) -> Result<Option<LinkedStorage>, StartError> {
    if let Some(cs) = &args.storage_connection_string {
        return LinkedStorage::connect(cs, &tls.ca_pem).await.map(Some);
    }
    let Some(StorageChoice::Azurite) = args.storage else {
        return Ok(None);
    };
    let script = std::env::var_os(AZURITE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let location = args.data_dir.as_ref().map(|dir| dir.join("azurite"));
    LinkedStorage::start_azurite(AzuriteSetup {
        script: script.as_deref(),
        host: &args.host,
        location: location.as_deref(),
        cert_pem: &tls.server_cert_pem,
        key_pem: &tls.server_key_pem,
        ca_pem: &tls.ca_pem,
    })
    .await
    .map(Some)
}

/// Serves until SIGTERM or SIGINT (or, with `--exit-on-stdin-eof`, the end of stdin).
pub async fn run(args: Args, on_ready: impl FnOnce(&Ready)) -> Result<(), StartError> {
    let signals = shutdown_signal(); // registered now, before the ready line
    let watch_stdin = args.exit_on_stdin_eof;
    let shutdown = async move {
        tokio::select! {
            _ = signals => {}
            _ = stdin_closed(), if watch_stdin => {}
        }
    };
    run_until(args, on_ready, shutdown).await
}

/// Resolves when stdin reaches end of file (or fails): what is written to it is discarded.
async fn stdin_closed() {
    let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut tokio::io::sink()).await;
}

/// Serves until `shutdown` resolves (tests pass their own future).
pub async fn run_until(
    args: Args,
    on_ready: impl FnOnce(&Ready),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let seed = initial_seed(&args)?;
    let args = with_seed_storage(args, &seed)?;
    let store = match &args.data_dir {
        Some(dir) => Store::open(dir)?,
        None => Store::memory(),
    };
    let listeners = Listeners::bind(&args).await?;
    let port = listeners.https_port();
    let mqtt_port = listeners.mqtt_port();
    let amqp_port = listeners.amqp_port();
    let events_port = listeners.events_port();
    let host = if args.host.contains(':') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    // On the standard port the HostName is plain, as a real hub's: every SDK dials it as is.
    let host_name = if port == STANDARD_HTTPS_PORT {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let key = kept(&store, meta::HUB_KEY, random_key)?;
    let tls = tls_for(&args, &store)?;
    let device_cas = DeviceCas::load(&args.device_cas, tls.config.crypto_provider().clone())?;
    // Stops Azurite (when the hub started it) when dropped, after the hub stopped serving.
    let mut storage = link_storage(&args, &tls).await?;
    let azurite = storage.as_mut().and_then(LinkedStorage::take_azurite);
    let storage = storage.map(Arc::new);

    // The names a token's `sr` may give the hub: every name it answers to, bare or with a port
    // it serves.
    let mut names = vec![
        host.clone(),
        "localhost".into(),
        "127.0.0.1".into(),
        "[::1]".into(),
    ];
    names.extend(args.hostname.clone());
    let mut hub_names = vec![host_name.clone()];
    for name in &names {
        hub_names.push(name.clone());
        hub_names.extend(
            std::iter::once(port)
                .chain(mqtt_port)
                .chain(amqp_port)
                .chain(events_port)
                .map(|p| format!("{name}:{p}")),
        );
    }
    let auth = Authenticator::new(
        hub_names,
        vec![Policy::new("iothubowner", &key)],
        args.bearer_tokens.clone(),
    )
    .with_device_cas(device_cas);
    let events = EventsConfig {
        name: event_hub_name(args.hostname.as_deref()),
        partitions: args.partitions,
        retention_hours: args.retention_hours,
        consumer_groups: args
            .consumer_groups
            .iter()
            .chain(&seed.consumer_groups)
            .cloned()
            .collect(),
        endpoint: events_endpoint(&host, amqp_port, events_port),
    };
    events.check()?;
    let event_hub_connection_string = event_hub_connection_string(
        &host,
        amqp_port == Some(STANDARD_AMQP_PORT),
        events_port,
        &key,
        &events.name,
    );
    let routing = match &seed.routing {
        Some(spec) => serde_json::from_value::<RoutingSpec>(spec.clone())
            .map_err(|e| format!("seed: routing: {e}"))?,
        None => RoutingSpec::default(),
    };
    let routing = Routing::new(routing).map_err(|e| format!("seed: {e}"))?;
    let config = HubConfig {
        host_name: host_name.clone(),
        unknown_job: args.unknown_job,
        tier: args.tier,
        initial_devices: seed,
        events,
    };
    let hub: Arc<Hub> = Hub::with_store(config, auth, args.faults.clone(), store)?;
    hub.set_initial_routing(routing)
        .map_err(|e| StartError::new(e.0))?;
    if let Some(storage) = &storage {
        let settings = FileUploadSettings {
            notifications: args.file_notifications,
            ..FileUploadSettings::default()
        };
        hub.link_storage(storage.clone(), settings);
    }
    hub.resume_import_export_jobs();

    let ready = Ready {
        host: args.host.clone(),
        port,
        mqtt_port,
        amqp_port,
        events_port,
        connection_string: format!(
            "HostName={host_name};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"
        ),
        event_hub_connection_string,
        host_name,
        ca_path: tls.ca_path.clone(),
        ca_pem: tls.ca_pem.clone(),
        storage_connection_string: storage.as_ref().map(|s| s.account.connection_string()),
    };
    eprintln!(
        "iothub-emulator: serving https://{}{}{} ({} devices, tier {}, faults '{}')",
        ready.host_name,
        mqtt_port.map_or(String::new(), |p| format!(" and mqtts://{host}:{p}")),
        amqp_port.map_or(String::new(), |p| format!(" and amqps://{host}:{p}")),
        hub.device_count(),
        args.tier
            .map(|t| format!("{t:?}"))
            .unwrap_or_else(|| "unlimited".into()),
        args.faults
    );
    eprintln!(
        "iothub-emulator: events endpoint {} ({} partitions, {} h retention, {}){}",
        hub.events().config.name,
        hub.events().config.partitions,
        hub.events().config.retention_hours,
        if args.data_dir.is_some() {
            "kept in the data dir"
        } else {
            "in memory"
        },
        events_port.map_or(String::new(), |p| format!(
            ", also plain AMQP on amqp://{host}:{p}"
        ))
    );
    on_ready(&ready);
    server::serve(
        hub,
        listeners.into_fronts(),
        TlsAcceptor::from(tls.config.clone()),
        shutdown,
    )
    .await;
    drop(azurite);
    eprintln!("iothub-emulator: stopped");
    drop(tls); // removes the CA directory
    Ok(())
}

/// Registers for SIGTERM and SIGINT at once (before the ready line is printed, so a signal
/// that follows it right away still stops the hub cleanly) and resolves on the first.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let signals = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match signals {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
