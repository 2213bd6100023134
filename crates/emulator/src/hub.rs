//! The hub's shared state: everything a request handler or a job runner can reach, and the
//! rules a transport or handler calls (`link.rs`: a connected device's link).

mod cloud_to_device;
mod files;
mod import_export;
mod link;
mod route;
mod service;

use std::sync::{Arc, RwLock};

use serde_json::Value;

use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::auth::Authenticator;
use crate::cli::UnknownJob;
use crate::clock::{wall_secs, Clock};
use crate::configurations::Configurations;
use crate::device_message::DeviceMessage;
use crate::devices::cloud_to_device::Queue;
use crate::devices::{
    split_client, Credentials, Device, DeviceAuthError, MethodCall, MethodFailure, Outgoing,
    Registry, Seed,
};
use crate::errors::{ApiError, StartError};
use crate::events::{Events, EventsConfig, EventsError};
use crate::faults::{Decision, FaultSpec};
use crate::gateway_fault;
use crate::import_export::ImportExportJobs;
use crate::jobs::{Engine, EngineLimits};
use crate::limits::{DevicePacer, RateLimiter, Tier};
use crate::record::Recorder;
use crate::routing::Router;
use crate::store::{Store, StoreError};

pub use files::{FileNotification, FileUploadSettings, MAX_ACTIVE_UPLOADS};
pub use link::{ConnectOptions, DeviceLink, Downlink, Incoming, SubscriptionChange, TwinOp};
pub use route::TwinChange;

/// Why `Hub::admit` turned a device's login away.
#[derive(Debug)]
pub enum ConnectError {
    /// The control API's `refuseConnects` fault: refused as if the hub were unavailable, so
    /// the SDK retries.
    Unavailable,
    /// The client sent no login, or one that names another client.
    NoLogin,
    /// The device or module is unknown or disabled, or its credentials do not admit it.
    Refused(DeviceAuthError),
}

pub struct HubConfig {
    /// `host:port` as printed in the ready line.
    pub host_name: String,
    pub unknown_job: UnknownJob,
    pub tier: Option<Tier>,
    /// The devices `reset` recreates (from `--devices` and `--seed`).
    pub initial_devices: Seed,
    /// The built-in `events` endpoint's settings.
    pub events: EventsConfig,
}

/// The hub: its state lives behind its methods (here, `service.rs` for the REST and control
/// APIs, `cloud_to_device.rs`, and `link.rs` for connected devices).
pub struct Hub {
    config: HubConfig,
    clock: Arc<Clock>,
    devices: Arc<Registry>,
    engine: Arc<Engine>,
    configurations: Configurations,
    /// The built-in Event Hubs-compatible endpoint's log.
    events: Arc<Events>,
    /// Message routing: which messages reach `events` (`route.rs`).
    router: Router,
    auth: Authenticator,
    faults: RwLock<FaultSpec>,
    recorder: Recorder,
    job_ops: Option<RateLimiter>,
    queries: Option<RateLimiter>,
    /// File uploads on the linked storage account (`files.rs`).
    files: files::FileUploads,
    /// Import/export jobs (`import_export.rs`).
    import_export: Arc<ImportExportJobs>,
}

impl Hub {
    pub fn new(
        config: HubConfig,
        auth: Authenticator,
        faults: FaultSpec,
    ) -> Result<Arc<Self>, StartError> {
        Self::with_store(config, auth, faults, Store::memory())
    }

    /// A hub on `store`: what it holds from a previous run, or the initial devices when it is
    /// new. Must be called inside the tokio runtime (stored jobs go on running).
    pub fn with_store(
        config: HubConfig,
        auth: Authenticator,
        faults: FaultSpec,
        store: Store,
    ) -> Result<Arc<Self>, StartError> {
        let clock = Arc::new(Clock::new());
        let events = Arc::new(Events::new(config.events.clone(), clock.clone())?);
        let stored = store.load::<Device, Queue, serde_json::Value>()?;
        let devices = Arc::new(Registry::with_store(store));
        let configurations = Configurations::default();
        let import_export = Arc::new(ImportExportJobs::default());
        import_export.restore(devices.store.import_export_jobs()?);
        let stored_jobs = match stored {
            Some(stored) => {
                if !config.initial_devices.is_empty() {
                    eprintln!("iothub-emulator: the data dir already holds a hub; --devices and --seed apply to a new data dir and to a reset");
                }
                devices.restore(stored.devices);
                devices.cloud_to_device.restore(stored.queues);
                configurations.restore(stored.configurations);
                events.restore(stored.events)?;
                events.groups.restore(&devices.store)?;
                stored
                    .jobs
                    .into_iter()
                    .map(crate::jobs::from_stored)
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                devices.load(config.initial_devices.build(clock.now_ms())?, true)?;
                Vec::new()
            }
        };
        let limits = config.tier.map(Tier::limits);
        let engine = Engine::new(
            clock.clone(),
            devices.clone(),
            EngineLimits {
                max_active_jobs: limits.map(|l| l.concurrent_jobs),
                pacer: limits.map(|l| DevicePacer::per_second(l.device_ops_per_second)),
            },
        );
        engine.restore(stored_jobs);
        crate::devices::cloud_to_device::spawn_timer(&devices, clock.clone());
        let hub = Arc::new(Self {
            clock,
            devices,
            engine,
            configurations,
            events,
            router: Router::default(),
            auth,
            faults: RwLock::new(faults),
            recorder: Recorder::default(),
            job_ops: limits.map(|l| RateLimiter::per_minute(l.job_ops_per_minute)),
            queries: limits.map(|l| RateLimiter::per_minute(l.queries_per_minute)),
            files: files::FileUploads::default(),
            import_export,
            config,
        });
        hub.restore_file_uploads()?;
        // Twins a job writes raise twin-change events as REST writes do; device jobs that end
        // raise device-job lifecycle events.
        hub.engine
            .set_listener(Box::new(route::JobEvents(Arc::downgrade(&hub))));
        Ok(hub)
    }

    /// The emulated clock (the control API scales and advances it).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The built-in Event Hubs-compatible endpoint (its log, consumer groups and settings),
    /// which the AMQP listeners serve and the control API shows.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    pub fn decide_fault(&self) -> Decision {
        let faults = crate::locks::read(&self.faults);
        if faults.is_empty() {
            Decision {
                latency_ms: 0,
                fault: None,
            }
        } else {
            faults.decide()
        }
    }

    pub fn faults(&self) -> FaultSpec {
        crate::locks::read(&self.faults).clone()
    }

    pub fn set_faults(&self, spec: FaultSpec) {
        *crate::locks::write(&self.faults) = spec;
    }

    /// Checks a device-side client's login (a device, or a module `{deviceId}/{moduleId}`) for
    /// every transport (MQTT CONNECT, the device HTTPS endpoints): its SAS `token`, or for an
    /// x509 device the certificate chain it sent in the TLS handshake. The error says why,
    /// never the token.
    pub fn authenticate_device(
        &self,
        client: &str,
        token: &str,
        client_chain: &[CertificateDer<'_>],
    ) -> Result<(), DeviceAuthError> {
        let credentials = self.devices.client_credentials(client)?;
        let by_token = matches!(credentials, Credentials::Keys(_));
        self.auth
            .check_device_login(
                split_client(client).0,
                credentials,
                token,
                client_chain,
                wall_secs(),
            )
            .map_err(|why| {
                if by_token {
                    DeviceAuthError::Token(why)
                } else {
                    DeviceAuthError::Certificate(why)
                }
            })
    }

    /// Checks a service request's `Authorization` (a policy's SAS token or a bearer token);
    /// the error never names the token.
    pub fn authorize_service(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        self.auth.check(authorization, wall_secs())
    }

    /// Checks a policy's SAS token for the `events` endpoint, signed as Event Hubs clients sign
    /// it; the error never names the token.
    pub fn authorize_events(&self, token: &str) -> Result<(), EventsError> {
        self.auth.check_events_token(token, wall_secs())
    }

    /// Admits a device-side login (an MQTT CONNECT, an AMQP put-token, SASL PLAIN or TLS
    /// certificate) of `client` before `Hub::connect`: the control API's `refuseConnects`
    /// fault is counted first, then its SAS `token` (`None`: the client sent no usable login)
    /// or certificate chain is checked.
    pub fn admit(
        &self,
        client: &str,
        token: Option<&str>,
        client_chain: &[CertificateDer<'_>],
    ) -> Result<(), ConnectError> {
        if self.devices.sessions.take_refusal(client) {
            return Err(ConnectError::Unavailable);
        }
        let token = token.ok_or(ConnectError::NoLogin)?;
        self.authenticate_device(client, token, client_chain)
            .map_err(ConnectError::Refused)
    }

    /// Calls a direct method on a device or module (`POST /twins/{id}[/modules/{mid}]/methods`;
    /// a job's devices take the same rule, `Registry::invoke_method`).
    pub async fn invoke_method(
        &self,
        device_id: &str,
        module: Option<&str>,
        call: &MethodCall<'_>,
    ) -> Result<(i64, Arc<Value>), MethodFailure> {
        self.devices
            .invoke_method(&self.clock, device_id, module, call)
            .await
    }

    /// A device-side client was heard from (its last activity time).
    pub fn touch(&self, client: &str) {
        self.devices.touch(client, self.clock.now_ms());
    }

    /// Every device-to-cloud message, from every transport, enters the hub here. It returns
    /// once the message is stored (with a data dir): only then may its device be answered.
    pub fn device_message(&self, mut message: DeviceMessage) -> Result<(), StoreError> {
        if message.auth.is_none() {
            message.auth = self.devices.client_auth(&message.client);
        }
        self.inject_gateway_fault(&message);
        self.devices.sessions.record_telemetry(&message);
        self.route(message)
    }

    /// Creates a consumer group of the `events` endpoint (stored before it returns).
    pub fn create_consumer_group(&self, name: &str) -> Result<bool, EventsError> {
        self.events.groups.create(&self.devices.store, name)
    }

    /// Deletes a consumer group of the `events` endpoint (stored before it returns).
    pub fn delete_consumer_group(&self, name: &str) -> Result<bool, EventsError> {
        self.events.groups.delete(&self.devices.store, name)
    }

    /// A message asking for a fault (`AzIoTHub_FaultOperationType`) breaks its device's
    /// connection after the delay it names, on the emulator's clock: the device's link is told
    /// (`Outgoing::Fault`) and its transport carries it out. The message itself is telemetry.
    fn inject_gateway_fault(&self, message: &DeviceMessage) {
        let Some((fault, delay_secs)) = gateway_fault::requested(&message.properties) else {
            return;
        };
        let (clock, devices) = (self.clock.clone(), self.devices.clone());
        let client = message.client.clone();
        tokio::spawn(async move {
            clock.sleep_ms(delay_secs as i64 * 1000).await;
            devices.sessions.send(&client, Outgoing::Fault(fault));
        });
    }

    /// Back to the state of a new hub: initial devices, no jobs, records or faults, real time.
    /// With a data dir, the store is emptied the same way (the hub's keys and CA stay).
    pub fn reset(&self) -> Result<(), StartError> {
        self.engine.reset()?;
        self.import_export.clear(&self.devices.store)?;
        self.configurations.clear(&self.devices.store)?;
        self.clear_file_uploads()?;
        self.devices.sessions.drop_all();
        self.clock.reset();
        let devices: Vec<Device> = self.config.initial_devices.build(self.clock.now_ms())?;
        self.devices.load(devices, true)?;
        self.recorder.clear();
        self.events.clear(&self.devices.store)?;
        self.router.reset(&self.devices.store)?;
        self.set_faults(FaultSpec::default());
        Ok(())
    }
}
