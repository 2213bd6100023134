//! Azurite's blob service as the emulator's child (`--storage azurite`): on the hub's loopback
//! address and a free port (Azurite picks it: `--blobPort 0`; with a data dir the port of the
//! last run again when it is free, so that container URIs and SAS URIs made before a restart,
//! and import/export jobs that run again after one, still reach it), HTTPS with the hub's server
//! certificate (issued by the hub's CA), its data under `<data dir>/azurite` or a temporary
//! directory. It runs under a small Node wrapper that stops it when its stdin closes: the hub
//! holds the pipe, so however the hub ends (SIGKILL included) the OS closes the pipe and Azurite
//! stops too.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::account::{Account, DEVELOPMENT_ACCOUNT, DEVELOPMENT_KEY};
use super::AzuriteSetup;
use crate::errors::StartError;
use crate::tls::TempDir;

/// The `azurite-blob` script (Azurite's `dist/src/blob/main.js`); the npm launcher sets it.
pub const AZURITE_ENV: &str = "IOTHUB_EMULATOR_AZURITE";
/// The Node.js binary that runs it (the launcher's own `process.execPath`), else `node`.
pub const NODE_ENV: &str = "IOTHUB_EMULATOR_NODE";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the script named first with the rest as its arguments; when stdin ends (the hub is
/// gone), stops it as SIGTERM does, then exits whatever still runs.
const WRAPPER: &str = "const [node, main, ...rest] = process.argv;
process.argv = [node, main, ...rest];
const stop = () => { process.kill(process.pid, 'SIGTERM'); setTimeout(() => process.exit(0), 3000).unref(); };
process.stdin.on('end', stop).on('error', stop).resume();
require(main);";

/// Where a data dir keeps the port Azurite last served on.
const PORT_FILE: &str = "blob-port";

/// What every start of Azurite is given.
struct Launch<'a> {
    script: &'a std::path::Path,
    host: &'a str,
    location: &'a std::path::Path,
    cert: &'a std::path::Path,
    key: &'a std::path::Path,
}

pub struct Azurite {
    child: Child,
    stdin: Option<ChildStdin>,
    endpoint: String,
    _dir: Option<TempDir>,
}

impl Azurite {
    pub async fn start(setup: &AzuriteSetup<'_>) -> Result<Self, StartError> {
        let script = setup.script.ok_or_else(|| {
            format!("--storage azurite needs Azurite: npm install azurite@3.35.0 (the iothub-emulator package finds it), or set {AZURITE_ENV} to Azurite's dist/src/blob/main.js")
        })?;
        if !script.is_file() {
            return Err(format!("{AZURITE_ENV}: {} is not a file", script.display()).into());
        }
        let (location, dir) = match setup.location {
            Some(location) => (location.to_path_buf(), None),
            None => {
                let dir = TempDir::create()
                    .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
                (dir.path().join("azurite"), Some(dir))
            }
        };
        std::fs::create_dir_all(&location)
            .map_err(|e| format!("cannot create {}: {e}", location.display()))?;
        let cert = location.join("server-cert.pem");
        let key = location.join("server-key.pem");
        write_private(&cert, setup.cert_pem)?;
        write_private(&key, setup.key_pem)?;
        let host = match setup.host {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "::1",
            h => h.trim_start_matches('[').trim_end_matches(']'),
        };
        let port_file = setup.location.map(|_| location.join(PORT_FILE));
        let last_port = port_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| text.trim().parse::<u16>().ok());
        let launch = Launch {
            script,
            host,
            location: &location,
            cert: &cert,
            key: &key,
        };
        // The last run's port once it is free (the last run's Azurite, orphaned by a SIGKILL of
        // its hub, stops within a few seconds); else, or when Azurite cannot take it, any.
        let free_again = match last_port {
            Some(port) => port_frees(host, port).await.then_some(port),
            None => None,
        };
        let (mut azurite, url) = match free_again {
            Some(port) => match Self::spawn(&launch, port).await {
                Ok(started) => started,
                Err(_) => Self::spawn(&launch, 0).await?,
            },
            None => Self::spawn(&launch, 0).await?,
        };
        azurite._dir = dir;
        let url = url.trim_end_matches('/');
        if !url.starts_with("https://") {
            return Err(format!("Azurite serves {url}, not HTTPS").into());
        }
        if let (Some(file), Some((_, port))) = (&port_file, url.rsplit_once(':')) {
            let _ = std::fs::write(file, port);
        }
        azurite.endpoint = format!("{url}/{DEVELOPMENT_ACCOUNT}");
        eprintln!(
            "iothub-emulator: Azurite blob service at {}",
            azurite.endpoint
        );
        Ok(azurite)
    }

    /// Starts Azurite on `port` (0: any free one); it and the URL it serves once it says so.
    async fn spawn(launch: &Launch<'_>, port: u16) -> Result<(Self, String), StartError> {
        let node = std::env::var_os(NODE_ENV).unwrap_or_else(|| "node".into());
        let mut child = Command::new(&node)
            .arg("-e")
            .arg(WRAPPER)
            .arg(launch.script)
            .args([
                "--blobHost",
                launch.host,
                "--blobPort",
                &port.to_string(),
                "--location",
            ])
            .arg(launch.location)
            .arg("--cert")
            .arg(launch.cert)
            .arg("--key")
            .arg(launch.key)
            .args([
                "--silent",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} for Azurite: {e}",
                    PathBuf::from(&node).display()
                )
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        // Its stdout is read to the end (never let the pipe fill); the first "listens on" line
        // carries the URL with the port it took.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("successfully listens on ").nth(1) {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        // Dropped on an error below: Azurite is stopped.
        let azurite = Self {
            child,
            stdin,
            endpoint: String::new(),
            _dir: None,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(url)) => Ok((azurite, url)),
            Ok(Err(_)) => Err("Azurite exited before it was ready (its output is above)".into()),
            Err(_) => Err(format!("Azurite was not ready within {READY_TIMEOUT:?}").into()),
        }
    }

    /// Azurite's well-known account at the endpoint it serves.
    pub fn account(&self) -> Account {
        Account::new(DEVELOPMENT_ACCOUNT, DEVELOPMENT_KEY, &self.endpoint)
            .expect("the well-known account is valid")
    }
}

/// Whether `host:port` can be listened on within [`STOP_TIMEOUT`].
async fn port_frees(host: &str, port: u16) -> bool {
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if std::net::TcpListener::bind((host, port)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_private(path: &std::path::Path, text: &str) -> Result<(), StartError> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

impl Drop for Azurite {
    /// Closes its stdin (the wrapper stops Azurite), waits a little, then kills it.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
