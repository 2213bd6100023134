//! The hub's shared state: everything a request handler or a job runner can reach.

use std::sync::{Arc, RwLock};

use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::auth::Authenticator;
use crate::cli::UnknownJob;
use crate::clock::{wall_secs, Clock};
use crate::configurations::Configurations;
use crate::device_message::DeviceMessage;
use crate::devices::cloud_to_device::Queue;
use crate::devices::{split_client, Credentials, Device, DeviceAuthError, Registry, Seed};
use crate::errors::StartError;
use crate::faults::{Decision, FaultSpec};
use crate::jobs::{Engine, EngineLimits};
use crate::limits::{DevicePacer, RateLimiter, Tier};
use crate::record::Recorder;
use crate::store::Store;

pub struct HubConfig {
    /// `host:port` as printed in the ready line.
    pub host_name: String,
    pub unknown_job: UnknownJob,
    pub tier: Option<Tier>,
    /// The devices `reset` recreates (from `--devices` and `--seed`).
    pub initial_devices: Seed,
}

pub struct Hub {
    pub config: HubConfig,
    pub clock: Arc<Clock>,
    pub devices: Arc<Registry>,
    pub engine: Arc<Engine>,
    pub configurations: Configurations,
    pub auth: Authenticator,
    faults: RwLock<FaultSpec>,
    pub recorder: Recorder,
    pub job_ops: Option<RateLimiter>,
    pub queries: Option<RateLimiter>,
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
        let stored = store.load::<Device, Queue, serde_json::Value>()?;
        let devices = Arc::new(Registry::with_store(store));
        let configurations = Configurations::default();
        let stored_jobs = match stored {
            Some(stored) => {
                if !config.initial_devices.is_empty() {
                    eprintln!("iothub-emulator: the data dir already holds a hub; --devices and --seed apply to a new data dir and to a reset");
                }
                devices.restore(stored.devices);
                devices.cloud_to_device.restore(stored.queues);
                configurations.restore(stored.configurations);
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
        Ok(Arc::new(Self {
            clock,
            devices,
            engine,
            configurations,
            auth,
            faults: RwLock::new(faults),
            recorder: Recorder::default(),
            job_ops: limits.map(|l| RateLimiter::per_minute(l.job_ops_per_minute)),
            queries: limits.map(|l| RateLimiter::per_minute(l.queries_per_minute)),
            config,
        }))
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

    /// Every device-to-cloud message, from every transport, enters the hub here.
    pub fn device_message(&self, message: DeviceMessage) {
        self.devices.sessions.record_telemetry(&message);
    }

    /// Back to the state of a new hub: initial devices, no jobs, records or faults, real time.
    /// With a data dir, the store is emptied the same way (the hub's keys and CA stay).
    pub fn reset(&self) -> Result<(), StartError> {
        self.engine.reset()?;
        self.configurations.clear(&self.devices.store)?;
        self.devices.sessions.drop_all();
        self.clock.reset();
        let devices: Vec<Device> = self.config.initial_devices.build(self.clock.now_ms())?;
        self.devices.load(devices, true)?;
        self.recorder.clear();
        self.set_faults(FaultSpec::default());
        Ok(())
    }
}
