//! A hub started in-process for the integration tests, its ready line, and device tokens.
#![allow(dead_code)] // each test binary uses a part

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use iothub_emulator::cli::{self, Parsed};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub struct Hub {
    pub port: u16,
    pub host_name: String,
    pub line: Value,
    pub policy_key: Vec<u8>,
    pub tls: Arc<ClientConfig>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), iothub_emulator::errors::StartError>>,
}

pub async fn start(devices: &str) -> Hub {
    start_with(&["--devices", devices]).await
}

pub async fn start_with(argv: &[&str]) -> Hub {
    let Parsed::Run(args) = cli::parse(argv.iter().map(|s| s.to_string())).unwrap() else {
        unreachable!()
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(iothub_emulator::run_until(
        *args,
        move |ready| {
            let _ = ready_tx.send((ready.line(), ready.ca_pem.clone()));
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let (line, ca_pem) = ready_rx.await.unwrap();
    let line: Value = serde_json::from_str(&line).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    // The client uses whatever crypto provider the emulator's own TLS is built on (the workspace
    // enables more than one, so there is no process default to rely on).
    let provider = iothub_emulator::tls::generate("127.0.0.1", None)
        .unwrap()
        .config
        .crypto_provider()
        .clone();
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cs = line["connectionString"].as_str().unwrap();
    let key = cs
        .split(';')
        .find_map(|p| p.strip_prefix("SharedAccessKey="))
        .unwrap();
    Hub {
        port: line["port"].as_u64().unwrap() as u16,
        host_name: line["hostName"].as_str().unwrap().to_string(),
        policy_key: STANDARD.decode(key).unwrap(),
        tls: Arc::new(tls),
        line,
        stop,
        task,
    }
}

impl Hub {
    /// A device token signed with the hub's policy key (`skn`), as a gateway would make one.
    pub fn device_token(&self, device_id: &str, key: &[u8]) -> String {
        let host = self.host_name.replace(':', "%3A");
        self.sign(&format!("{host}%2Fdevices%2F{device_id}"), key)
    }

    /// The service's token for the whole hub (policy `iothubowner`).
    pub fn hub_token(&self) -> String {
        self.service_token(&self.policy_key)
    }

    /// A token for the hub itself (`sr` = the host) signed with `key`, as azure-iothub's
    /// `Client` makes one.
    pub fn service_token(&self, key: &[u8]) -> String {
        self.sign(&self.host_name.replace(':', "%3A"), key)
    }

    /// A SAS token for the url-encoded resource `sr`, valid for an hour.
    fn sign(&self, sr: &str, key: &[u8]) -> String {
        let se = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{sr}\n{se}").as_bytes());
        let sig = STANDARD
            .encode(mac.finalize().into_bytes())
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        format!("SharedAccessSignature sr={sr}&sig={sig}&skn=iothubowner&se={se}")
    }

    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}
