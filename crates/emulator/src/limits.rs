//! Tier limits (documented per-unit quotas). Off unless `--tier` is given, so tests run fast.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    S1,
    S2,
    S3,
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "S1" => Ok(Tier::S1),
            "S2" => Ok(Tier::S2),
            "S3" => Ok(Tier::S3),
            _ => Err(format!("--tier must be S1, S2 or S3, not {s:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TierLimits {
    pub job_ops_per_minute: f64,
    pub device_ops_per_second: f64,
    pub concurrent_jobs: usize,
    pub queries_per_minute: f64,
}

impl Tier {
    pub fn limits(self) -> TierLimits {
        match self {
            Tier::S1 => TierLimits {
                job_ops_per_minute: 100.0,
                device_ops_per_second: 10.0,
                concurrent_jobs: 1,
                queries_per_minute: 20.0,
            },
            Tier::S2 => TierLimits {
                job_ops_per_minute: 100.0,
                device_ops_per_second: 10.0,
                concurrent_jobs: 5,
                queries_per_minute: 20.0,
            },
            Tier::S3 => TierLimits {
                job_ops_per_minute: 5000.0,
                device_ops_per_second: 50.0,
                concurrent_jobs: 10,
                queries_per_minute: 1000.0,
            },
        }
    }
}

/// A token bucket on real time: `per_minute` tokens, refilled continuously, full at start.
pub struct RateLimiter {
    per_minute: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn per_minute(per_minute: f64) -> Self {
        Self {
            per_minute,
            state: Mutex::new((per_minute, Instant::now())),
        }
    }

    /// Takes a token if one is available.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> bool {
        let mut s = crate::locks::lock(&self.state);
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.per_minute / 60.0).min(self.per_minute);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Spaces device operations (method calls, twin updates) across all jobs on the emulated clock:
/// each caller gets the next free slot `1/rate` seconds after the previous one.
pub struct DevicePacer {
    interval_ms: f64,
    next_ms: Mutex<f64>,
}

impl DevicePacer {
    pub fn per_second(rate: f64) -> Self {
        Self {
            interval_ms: 1000.0 / rate,
            next_ms: Mutex::new(0.0),
        }
    }

    /// Reserves a slot; returns the emulated time at which the operation may run.
    pub fn reserve(&self, now_ms: i64) -> i64 {
        let mut next = crate::locks::lock(&self.next_ms);
        let slot = next.max(now_ms as f64);
        *next = slot + self.interval_ms;
        slot as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_empties_then_refills() {
        let l = RateLimiter::per_minute(3.0);
        let t0 = Instant::now();
        assert!(l.try_acquire_at(t0));
        assert!(l.try_acquire_at(t0));
        assert!(l.try_acquire_at(t0));
        assert!(!l.try_acquire_at(t0));
        // 3/min = one token every 20 s.
        assert!(!l.try_acquire_at(t0 + Duration::from_secs(19)));
        assert!(l.try_acquire_at(t0 + Duration::from_secs(21)));
    }

    #[test]
    fn pacer_spaces_operations() {
        let p = DevicePacer::per_second(10.0);
        assert_eq!(p.reserve(1000), 1000);
        assert_eq!(p.reserve(1000), 1100);
        assert_eq!(p.reserve(1000), 1200);
        assert_eq!(p.reserve(5000), 5000);
    }

    #[test]
    fn tiers_have_documented_limits() {
        assert_eq!("s1".parse::<Tier>().unwrap().limits().concurrent_jobs, 1);
        assert_eq!(Tier::S2.limits().concurrent_jobs, 5);
        assert_eq!(Tier::S3.limits().concurrent_jobs, 10);
        assert_eq!(Tier::S3.limits().job_ops_per_minute, 5000.0);
    }
}
