//! Fault injection: `kind:probability` entries (`429`, `503`, `500`, `reset`, `drop`) plus
//! `latency:MIN-MAXms`. One uniform roll per request picks at most one fault, so the
//! probabilities are exclusive and must add up to at most 1. Latency applies to every request.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Throttle429,
    Unavailable503,
    ServerError500,
    /// Close the connection before answering (nothing is committed).
    Reset,
    /// Commit the operation, then close the connection without answering.
    Drop,
}

impl FaultKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Throttle429 => "429",
            Self::Unavailable503 => "503",
            Self::ServerError500 => "500",
            Self::Reset => "reset",
            Self::Drop => "drop",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultSpec {
    pub faults: Vec<(FaultKind, f64)>,
    /// Inclusive range of added latency, in real milliseconds.
    pub latency_ms: Option<(u64, u64)>,
}

/// What to do to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub latency_ms: u64,
    pub fault: Option<FaultKind>,
}

impl FaultSpec {
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty() && self.latency_ms.is_none()
    }

    pub fn decide(&self) -> Decision {
        self.decide_with(fastrand::f64(), |lo, hi| fastrand::u64(lo..=hi))
    }

    /// `roll` in [0, 1); `pick` chooses a latency in an inclusive range (injectable for tests).
    pub fn decide_with(&self, roll: f64, pick: impl FnOnce(u64, u64) -> u64) -> Decision {
        let latency_ms = self.latency_ms.map(|(lo, hi)| pick(lo, hi)).unwrap_or(0);
        let mut acc = 0.0;
        let mut fault = None;
        for &(kind, p) in &self.faults {
            acc += p;
            if roll < acc {
                fault = Some(kind);
                break;
            }
        }
        Decision { latency_ms, fault }
    }
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut spec = FaultSpec::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, value) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: expected kind:probability"))?;
            if kind.eq_ignore_ascii_case("latency") {
                spec.latency_ms = Some(parse_latency(value)?);
                continue;
            }
            let kind = match kind.to_ascii_lowercase().as_str() {
                "429" => FaultKind::Throttle429,
                "503" => FaultKind::Unavailable503,
                "500" => FaultKind::ServerError500,
                "reset" => FaultKind::Reset,
                "drop" => FaultKind::Drop,
                other => {
                    return Err(format!(
                        "unknown fault kind {other:?} (429, 503, 500, reset, drop, latency)"
                    ))
                }
            };
            let p: f64 = value
                .parse()
                .map_err(|_| format!("{part:?}: probability must be a number"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{part:?}: probability must be between 0 and 1"));
            }
            if spec.faults.iter().any(|(k, _)| *k == kind) {
                return Err(format!("{part:?}: fault kind given twice"));
            }
            spec.faults.push((kind, p));
        }
        let total: f64 = spec.faults.iter().map(|(_, p)| p).sum();
        if total > 1.0 + 1e-9 {
            return Err(format!("probabilities add up to {total}, more than 1"));
        }
        Ok(spec)
    }
}

fn parse_latency(value: &str) -> Result<(u64, u64), String> {
    let bad = || format!("latency:{value}: expected MIN-MAXms, e.g. latency:1-20ms");
    let range = value.strip_suffix("ms").ok_or_else(bad)?;
    let (lo, hi) = match range.split_once('-') {
        Some((lo, hi)) => (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let v = range.trim().parse().map_err(|_| bad())?;
            (v, v)
        }
    };
    if lo > hi || hi > 600_000 {
        return Err(bad());
    }
    Ok((lo, hi))
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .faults
            .iter()
            .map(|(k, p)| format!("{}:{}", k.label(), p))
            .collect();
        if let Some((lo, hi)) = self.latency_ms {
            parts.push(format!("latency:{lo}-{hi}ms"));
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let s: FaultSpec = "429:0.1,reset:0.05,drop:0.05,latency:1-20ms"
            .parse()
            .unwrap();
        assert_eq!(
            s.faults,
            vec![
                (FaultKind::Throttle429, 0.1),
                (FaultKind::Reset, 0.05),
                (FaultKind::Drop, 0.05)
            ]
        );
        assert_eq!(s.latency_ms, Some((1, 20)));
        assert_eq!(s.to_string(), "429:0.1,reset:0.05,drop:0.05,latency:1-20ms");
        assert_eq!(s.to_string().parse::<FaultSpec>().unwrap(), s);
    }

    #[test]
    fn empty_spec_means_no_faults() {
        let s: FaultSpec = "".parse().unwrap();
        assert!(s.is_empty());
        assert_eq!(
            s.decide(),
            Decision {
                latency_ms: 0,
                fault: None
            }
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "429",
            "429:x",
            "429:1.5",
            "404:0.1",
            "latency:20-1ms",
            "latency:5",
            "500:0.6,503:0.6",
            "drop:0.1,drop:0.1",
        ] {
            assert!(
                bad.parse::<FaultSpec>().is_err(),
                "{bad} should be rejected"
            );
        }
        assert_eq!(
            "latency:7ms".parse::<FaultSpec>().unwrap().latency_ms,
            Some((7, 7))
        );
    }

    #[test]
    fn one_roll_picks_exclusive_faults_in_order() {
        let s: FaultSpec = "500:0.2,503:0.3,latency:5-9ms".parse().unwrap();
        let pick = |lo: u64, hi: u64| {
            assert_eq!((lo, hi), (5, 9));
            6
        };
        assert_eq!(
            s.decide_with(0.1, pick),
            Decision {
                latency_ms: 6,
                fault: Some(FaultKind::ServerError500)
            }
        );
        assert_eq!(
            s.decide_with(0.45, pick).fault,
            Some(FaultKind::Unavailable503)
        );
        assert_eq!(s.decide_with(0.5, pick).fault, None);
        assert_eq!(s.decide_with(0.99, pick).fault, None);
    }

    #[test]
    fn probability_one_always_fires() {
        let s: FaultSpec = "reset:1".parse().unwrap();
        assert!((0..1000).all(|_| s.decide().fault == Some(FaultKind::Reset)));
    }
}
