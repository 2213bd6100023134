//! Command-line arguments (documented in crates/emulator/README.md), parsed with `clap`
//! (derive): the flag set keeps growing with every transport and the store, and clap gives
//! `--flag value` / `--flag=value`, repeatable flags, typed values and the help text for free.

use std::fmt;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::Parser;

use crate::errors::StartError;
use crate::faults::FaultSpec;
use crate::limits::Tier;
use crate::storage::StorageChoice;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownJob {
    NotFound,
    StatusUnknown,
}

fn unknown_job(text: &str) -> Result<UnknownJob, String> {
    match text {
        "404" => Ok(UnknownJob::NotFound),
        "200" => Ok(UnknownJob::StatusUnknown),
        other => Err(format!("must be 404 or 200, not {other:?}")),
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(text.to_string())
    }
}

/// A local Azure IoT Hub for jobs, twins, devices and queries.
///
/// On ready, prints one JSON line to stdout: host, port, hostName, connectionString, caPath,
/// mqttPort, amqpPort, websocketPath.
/// Serves HTTPS until SIGTERM or SIGINT. Logs go to stderr.
#[derive(Clone, PartialEq, Parser)]
#[command(name = "iothub-emulator", version)]
// A flag given again wins (`--port 0 … --port 8443`): launchers put defaults first.
#[command(args_override_self = true)]
#[command(after_help = "Every flag is documented in the emulator's README.")]
pub struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    pub host: String,
    /// Port to listen on (HTTPS, MQTT over WebSockets, and MQTT), 0 = pick a free one
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub port: u16,
    /// Also serve MQTT over TLS on a port of its own, 0 = pick a free one
    #[arg(long, value_name = "PORT", conflicts_with = "standard_ports")]
    pub mqtt_port: Option<u16>,
    /// Also serve AMQP over TLS (device side) on a port of its own, 0 = pick a free one
    #[arg(long, value_name = "PORT", conflicts_with = "standard_ports")]
    pub amqp_port: Option<u16>,
    /// Serve the events endpoint also as plain AMQP (no TLS, for loopback and development, as
    /// Microsoft's Event Hubs emulator does) on this port, 0 = pick a free one (the default
    /// without --standard-ports); eventHubConnectionString then names it
    #[arg(long, value_name = "PORT", conflicts_with = "standard_ports")]
    pub events_port: Option<u16>,
    /// The hub's standard ports on --host: HTTPS and WebSockets on 443, MQTT on 8883, AMQP on 5671 (ports
    /// below 1024 need root); connection strings then carry a plain HostName
    #[arg(long, conflicts_with = "port")]
    pub standard_ports: bool,
    /// Another name for the hub: added to the server certificate and accepted as the hub in
    /// SAS tokens
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    pub hostname: Option<String>,
    /// Trust this CA (PEM file) for devices with certificateAuthority authentication
    /// (repeatable)
    #[arg(long = "device-ca", value_name = "PEM")]
    pub device_cas: Vec<PathBuf>,
    /// Create device-0000 ... with tags {group: even|odd, index: i}
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub devices: usize,
    /// Load devices from a seed file (format in the README)
    #[arg(long, value_name = "FILE.json")]
    pub seed: Option<PathBuf>,
    /// Comma-separated kind:probability, kinds 429, 503, 500, reset, drop, plus
    /// latency:MIN-MAXms (e.g. 429:0.1,reset:0.05,latency:1-20ms)
    #[arg(
        long,
        default_value = "",
        value_name = "SPEC",
        hide_default_value = true
    )]
    pub faults: FaultSpec,
    /// Answer to GET of an unknown job: 404 JobNotFound, or 200 with status "unknown"
    #[arg(long, default_value = "404", value_parser = unknown_job, value_name = "404|200")]
    pub unknown_job: UnknownJob,
    /// Enforce that tier's documented limits (default: no limits)
    #[arg(long, value_name = "S1|S2|S3")]
    pub tier: Option<Tier>,
    /// Accept `Authorization: Bearer TOKEN` (repeatable)
    #[arg(long = "bearer-token", value_name = "TOKEN", value_parser = non_empty)]
    pub bearer_tokens: Vec<String>,
    /// Also stop when stdin reaches end of file: a parent that spawns the emulator with a stdin
    /// pipe never leaves it running, even when the parent is killed (the pipe closes)
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// Keep the hub in DIR (an SQLite database): its keys and CA, devices, twins, jobs.
    /// Every answered write is on disk first; the next start goes on from there. Without it,
    /// the hub lives in memory
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Sign the server certificate with this CA (PEM) instead of a generated one; caPath
    /// is this file. Needs --ca-key
    #[arg(long, value_name = "PEM", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key (PKCS#8 PEM) of --ca-cert
    #[arg(long, value_name = "PEM", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Partitions of the built-in events endpoint (2 to 128)
    #[arg(long, default_value_t = crate::events::DEFAULT_PARTITIONS, value_name = "N")]
    pub partitions: u32,
    /// How long the events endpoint keeps a message, in hours of the emulator's clock (1 to 168)
    #[arg(long, default_value_t = crate::events::DEFAULT_RETENTION_HOURS, value_name = "HOURS")]
    pub retention_hours: u32,
    /// A consumer group of the events endpoint besides $Default (repeatable)
    #[arg(long = "consumer-group", value_name = "NAME")]
    pub consumer_groups: Vec<String>,
    /// Link the hub to this storage account (Azurite's or a real one's connection string)
    #[arg(long, value_name = "CS", value_parser = non_empty, conflicts_with = "storage")]
    pub storage_connection_string: Option<String>,
    /// Start a storage account as the emulator's child and link it: azurite (Azurite's blob
    /// service, HTTPS with the hub's CA, found through $IOTHUB_EMULATOR_AZURITE)
    #[arg(long, value_name = "azurite", value_parser = storage_choice)]
    pub storage: Option<StorageChoice>,
    /// Send file-upload notifications to the service (off by default, as on a new hub)
    #[arg(long)]
    pub file_notifications: bool,
}

pub fn storage_choice(text: &str) -> Result<StorageChoice, String> {
    match text {
        "azurite" => Ok(StorageChoice::Azurite),
        other => Err(format!("must be azurite, not {other:?}")),
    }
}

// Bearer tokens are secrets: never print them.
impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("mqtt_port", &self.mqtt_port)
            .field("amqp_port", &self.amqp_port)
            .field("events_port", &self.events_port)
            .field("standard_ports", &self.standard_ports)
            .field("hostname", &self.hostname)
            .field("device_cas", &self.device_cas)
            .field("devices", &self.devices)
            .field("seed", &self.seed)
            .field("faults", &self.faults.to_string())
            .field("unknown_job", &self.unknown_job)
            .field("tier", &self.tier)
            .field(
                "bearer_tokens",
                &format_args!("[{} redacted]", self.bearer_tokens.len()),
            )
            .field("exit_on_stdin_eof", &self.exit_on_stdin_eof)
            .field("data_dir", &self.data_dir)
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &self.ca_key)
            .field("partitions", &self.partitions)
            .field("retention_hours", &self.retention_hours)
            .field("consumer_groups", &self.consumer_groups)
            .field(
                "storage_connection_string",
                &self
                    .storage_connection_string
                    .as_ref()
                    .map(|_| "[redacted]"),
            )
            .field("storage", &self.storage)
            .field("file_notifications", &self.file_notifications)
            .finish()
    }
}

impl Default for Args {
    fn default() -> Self {
        Self::parse_from(["iothub-emulator"])
    }
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Box<Args>),
    /// `--help` or `--version`: the text to print to stdout, then exit 0.
    Print(String),
}

/// Parses the arguments (without the program name). A bad command line is one line, without
/// clap's usage block: the caller prints it as `iothub-emulator: {line}` and exits 2.
pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Parsed, StartError> {
    let argv = std::iter::once("iothub-emulator".to_string()).chain(argv);
    match Args::try_parse_from(argv) {
        Ok(args) => Ok(Parsed::Run(Box::new(args))),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Ok(Parsed::Print(e.render().to_string()))
        }
        Err(e) => Err(StartError::new(one_line(&e))),
    }
}

fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    // The first paragraph: a missing argument is named on the lines after the first.
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let first = if first.is_empty() {
        "bad arguments".to_string()
    } else {
        first.join(" ")
    };
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    format!("{first} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[&str]) -> Args {
        match parse(v.iter().map(|s| s.to_string())).unwrap() {
            Parsed::Run(a) => *a,
            Parsed::Print(_) => panic!("help"),
        }
    }

    fn error(v: &[&str]) -> String {
        parse(v.iter().map(|s| s.to_string()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_flags() {
        let a = run(&[]);
        assert_eq!(a, Args::default());
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.port, 0);
        assert_eq!(a.unknown_job, UnknownJob::NotFound);
        assert!(a.faults.is_empty());
        let a = run(&[
            "--port=8443",
            "--devices",
            "20",
            "--unknown-job",
            "200",
            "--tier",
            "s3",
            "--bearer-token",
            "t1",
            "--bearer-token",
            "t2",
            "--faults",
            "429:0.5",
        ]);
        assert_eq!(a.port, 8443);
        assert_eq!(a.devices, 20);
        assert_eq!(a.unknown_job, UnknownJob::StatusUnknown);
        assert_eq!(a.tier, Some(Tier::S3));
        assert_eq!(a.bearer_tokens, vec!["t1", "t2"]);
        assert_eq!(a.faults.to_string(), "429:0.5");
        assert!(!format!("{a:?}").contains("t1"));
        assert!(!a.exit_on_stdin_eof);
        assert!(run(&["--exit-on-stdin-eof"]).exit_on_stdin_eof);
        assert_eq!(a.data_dir, None);
        assert_eq!(a.storage, None);
        assert_eq!(
            run(&["--storage", "azurite"]).storage,
            Some(StorageChoice::Azurite)
        );
        let a = run(&[
            "--storage-connection-string",
            "AccountName=a;AccountKey=secret",
        ]);
        assert!(!format!("{a:?}").contains("secret"));
        assert_eq!(run(&["--port", "0", "--port", "5000"]).port, 5000);
        let a = run(&[
            "--data-dir",
            "hub",
            "--ca-cert",
            "ca.pem",
            "--ca-key=ca.key",
        ]);
        assert_eq!(a.data_dir, Some(PathBuf::from("hub")));
        assert_eq!(a.ca_cert, Some(PathBuf::from("ca.pem")));
        assert_eq!(a.ca_key, Some(PathBuf::from("ca.key")));
    }

    #[test]
    fn errors_are_one_line() {
        for bad in [
            &["--port"][..],
            &["--port", "70000"],
            &["--nope"],
            &["--unknown-job", "500"],
            &["--tier", "F1"],
            &["--faults", "teapot:1"],
            &["--bearer-token", ""],
            &["--ca-cert", "ca.pem"],
            &["--ca-key", "ca.key"],
            &["--data-dir"],
            &["--storage", "s3"],
            &["--storage", "azurite", "--storage-connection-string", "x"],
        ] {
            let e = error(bad);
            assert!(!e.contains('\n'), "{bad:?}: {e}");
            assert!(e.ends_with("(see --help)"), "{bad:?}: {e}");
        }
        assert!(error(&["--unknown-job", "500"]).contains("404 or 200"));
        assert!(error(&["--ca-cert", "ca.pem"]).contains("--ca-key"));
        for bad in [
            &["--standard-ports", "--port", "8443"][..],
            &["--standard-ports", "--mqtt-port", "0"],
            &["--standard-ports", "--amqp-port", "0"],
            &["--amqp-port", "70000"],
            &["--hostname", ""],
            &["--mqtt-port", "x"],
        ] {
            let e = error(bad);
            assert!(
                !e.contains('\n') && e.ends_with("(see --help)"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn transport_flags() {
        let a = run(&[]);
        assert_eq!(
            (a.mqtt_port, a.amqp_port, a.standard_ports, a.hostname),
            (None, None, false, None)
        );
        assert!(a.device_cas.is_empty());
        let a = run(&[
            "--mqtt-port",
            "0",
            "--hostname",
            "myhub.local",
            "--device-ca",
            "a.pem",
            "--device-ca=b.pem",
        ]);
        assert_eq!(a.mqtt_port, Some(0));
        assert_eq!(run(&["--amqp-port", "5671"]).amqp_port, Some(5671));
        assert_eq!(a.hostname.as_deref(), Some("myhub.local"));
        assert_eq!(
            a.device_cas,
            [PathBuf::from("a.pem"), PathBuf::from("b.pem")]
        );
        let a = run(&["--standard-ports", "--host", "127.0.0.41"]);
        assert!(a.standard_ports);
    }

    #[test]
    fn help_and_version_are_printed() {
        let Parsed::Print(help) = parse(["--help".to_string()]).unwrap() else {
            panic!("no help")
        };
        for flag in [
            "--host",
            "--port",
            "--devices",
            "--faults",
            "--bearer-token",
            "--exit-on-stdin-eof",
            "--data-dir",
            "--ca-cert",
            "--ca-key",
            "--mqtt-port",
            "--amqp-port",
            "--standard-ports",
            "--hostname",
            "--device-ca",
        ] {
            assert!(help.contains(flag), "{flag} missing from help");
        }
        assert!(matches!(
            parse(["--version".to_string()]).unwrap(),
            Parsed::Print(v) if v.contains(env!("CARGO_PKG_VERSION"))
        ));
    }
}
