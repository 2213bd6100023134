//! Command-line arguments (documented in crates/emulator/README.md).
//! Hand-parsed: eight flags do not justify an argument-parsing dependency.

use std::fmt;
use std::path::PathBuf;

use crate::faults::FaultSpec;
use crate::limits::Tier;

pub const HELP: &str = "\
iothub-emulator: a local Azure IoT Hub for jobs, twins, devices and queries

USAGE:
    iothub-emulator [--host 127.0.0.1] [--port 0] [--devices N] [--seed FILE.json]
                    [--faults SPEC] [--unknown-job 404|200] [--tier S1|S2|S3]
                    [--bearer-token TOKEN]...

OPTIONS:
    --host HOST            address to listen on (default 127.0.0.1)
    --port PORT            port to listen on, 0 = pick a free one (default 0)
    --devices N            create device-0000 ... with tags {group: even|odd, index: i}
    --seed FILE.json       load devices from a seed file (format in the README)
    --faults SPEC          comma-separated kind:probability, kinds 429, 503, 500, reset, drop,
                           plus latency:MIN-MAXms (e.g. 429:0.1,reset:0.05,latency:1-20ms)
    --unknown-job 404|200  answer to GET of an unknown job: 404 JobNotFound (default) or
                           200 with status \"unknown\"
    --tier S1|S2|S3        enforce that tier's documented limits (default: no limits)
    --bearer-token TOKEN   accept `Authorization: Bearer TOKEN` (repeatable)
    --help                 print this help

On ready, prints one JSON line to stdout: host, port, hostName, connectionString, caPath.
Serves HTTPS until SIGTERM or SIGINT. Logs go to stderr.
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownJob {
    NotFound,
    StatusUnknown,
}

#[derive(Clone, PartialEq)]
pub struct Args {
    pub host: String,
    pub port: u16,
    pub devices: usize,
    pub seed: Option<PathBuf>,
    pub faults: FaultSpec,
    pub unknown_job: UnknownJob,
    pub tier: Option<Tier>,
    pub bearer_tokens: Vec<String>,
}

// Bearer tokens are secrets: never print them.
impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("devices", &self.devices)
            .field("seed", &self.seed)
            .field("faults", &self.faults.to_string())
            .field("unknown_job", &self.unknown_job)
            .field("tier", &self.tier)
            .field(
                "bearer_tokens",
                &format_args!("[{} redacted]", self.bearer_tokens.len()),
            )
            .finish()
    }
}

impl Default for Args {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            devices: 0,
            seed: None,
            faults: FaultSpec::default(),
            unknown_job: UnknownJob::NotFound,
            tier: None,
            bearer_tokens: Vec::new(),
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Box<Args>),
    Help,
}

pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Parsed, String> {
    let mut args = Args::default();
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        if name == "--help" || name == "-h" {
            return Ok(Parsed::Help);
        }
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--host" => args.host = value()?,
            "--port" => {
                args.port = value()?
                    .parse()
                    .map_err(|_| "--port must be 0..65535".to_string())?
            }
            "--devices" => {
                args.devices = value()?
                    .parse()
                    .map_err(|_| "--devices must be a number".to_string())?
            }
            "--seed" => args.seed = Some(PathBuf::from(value()?)),
            "--faults" => args.faults = value()?.parse().map_err(|e| format!("--faults: {e}"))?,
            "--unknown-job" => {
                args.unknown_job = match value()?.as_str() {
                    "404" => UnknownJob::NotFound,
                    "200" => UnknownJob::StatusUnknown,
                    other => {
                        return Err(format!("--unknown-job must be 404 or 200, not {other:?}"))
                    }
                }
            }
            "--tier" => args.tier = Some(value()?.parse()?),
            "--bearer-token" => {
                let token = value()?;
                if token.is_empty() {
                    return Err("--bearer-token must not be empty".into());
                }
                args.bearer_tokens.push(token)
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Parsed::Run(Box::new(args)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[&str]) -> Args {
        match parse(v.iter().map(|s| s.to_string())).unwrap() {
            Parsed::Run(a) => *a,
            Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let a = run(&[]);
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.port, 0);
        assert_eq!(a.unknown_job, UnknownJob::NotFound);
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
        assert!(!format!("{a:?}").contains("t1"));
    }

    #[test]
    fn errors_and_help() {
        assert_eq!(parse(["--help".to_string()]).unwrap(), Parsed::Help);
        assert!(parse(["--port".to_string()]).is_err());
        assert!(parse(["--nope".to_string()]).is_err());
        assert!(parse(["--unknown-job".to_string(), "500".to_string()]).is_err());
        assert!(parse(["--tier".to_string(), "F1".to_string()]).is_err());
    }
}
