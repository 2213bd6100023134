//! The emulator's clock: wall time that the control API can scale (run faster or slower)
//! and advance (jump forward), so tests can run an hour-ahead schedule in milliseconds.
//!
//! Everything that the job engine waits for (start times, device delays, connect timeouts,
//! `maxExecutionTimeInSeconds`) is measured on this clock. SAS expiry is not: clients sign
//! with the real wall clock, so advancing emulated time must not invalidate their tokens.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

struct Anchor {
    real: Instant,
    emulated_ms: f64,
    scale: f64,
}

pub struct Clock {
    anchor: Mutex<Anchor>,
    /// Bumped on every scale change or advance, so sleepers recompute their deadline.
    changed: watch::Sender<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Self::starting_at(wall_ms() as f64)
    }

    pub fn starting_at(emulated_ms: f64) -> Self {
        Self {
            anchor: Mutex::new(Anchor {
                real: Instant::now(),
                emulated_ms,
                scale: 1.0,
            }),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Anchor> {
        crate::locks::lock(&self.anchor)
    }

    /// Emulated milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let a = self.lock();
        (a.emulated_ms + a.real.elapsed().as_secs_f64() * 1000.0 * a.scale) as i64
    }

    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }

    pub fn scale(&self) -> f64 {
        self.lock().scale
    }

    /// Re-anchors at the current instant so the change never moves time backwards.
    fn update(&self, f: impl FnOnce(&mut Anchor)) {
        {
            let mut a = self.lock();
            let now = a.emulated_ms + a.real.elapsed().as_secs_f64() * 1000.0 * a.scale;
            a.real = Instant::now();
            a.emulated_ms = now;
            f(&mut a);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// `scale` emulated seconds pass per real second; 0 freezes the clock.
    pub fn set_scale(&self, scale: f64) {
        self.update(|a| a.scale = scale);
    }

    pub fn advance(&self, seconds: f64) {
        self.update(|a| a.emulated_ms += seconds * 1000.0);
    }

    /// Back to real time (used by the control API's reset).
    pub fn reset(&self) {
        self.update(|a| {
            a.emulated_ms = wall_ms() as f64;
            a.scale = 1.0;
        });
    }

    /// Waits until the emulated clock reads at least `deadline_ms`, following scale changes
    /// and advances made while waiting.
    pub async fn sleep_until(&self, deadline_ms: i64) {
        let mut changes = self.changed.subscribe();
        loop {
            changes.borrow_and_update();
            let (now, scale) = {
                let a = self.lock();
                (
                    a.emulated_ms + a.real.elapsed().as_secs_f64() * 1000.0 * a.scale,
                    a.scale,
                )
            };
            let remaining = deadline_ms as f64 - now;
            if remaining <= 0.0 {
                return;
            }
            if scale <= 0.0 {
                // Frozen: only an advance or a new scale can move us.
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            // +1ms so float rounding never wakes us a hair early in a busy loop.
            let real =
                Duration::from_secs_f64(remaining / scale / 1000.0) + Duration::from_millis(1);
            tokio::select! {
                _ = tokio::time::sleep(real) => {}
                r = changes.changed() => if r.is_err() { return },
            }
        }
    }

    pub async fn sleep_ms(&self, ms: i64) {
        let deadline = self.now_ms().saturating_add(ms);
        self.sleep_until(deadline).await;
    }
}

/// Real wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Real wall-clock seconds since the Unix epoch (for SAS expiry).
pub fn wall_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// ISO 8601 the way the service writes it (UTC, `Z`).
pub fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_and_scale_move_time() {
        let c = Clock::starting_at(1_000_000.0);
        c.set_scale(0.0);
        let t0 = c.now_ms();
        assert!((1_000_000..1_000_010).contains(&t0));
        c.advance(3600.0);
        assert_eq!(c.now_ms(), t0 + 3_600_000);
    }

    #[tokio::test]
    async fn sleep_until_wakes_on_advance_of_a_frozen_clock() {
        let c = std::sync::Arc::new(Clock::starting_at(0.0));
        c.set_scale(0.0);
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.sleep_until(60_000).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        c.advance(61.0);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn scaled_clock_sleeps_proportionally() {
        let c = Clock::starting_at(0.0);
        c.set_scale(1000.0);
        let start = Instant::now();
        c.sleep_ms(10_000).await; // 10 emulated seconds = 10 real ms
        assert!(start.elapsed() < Duration::from_millis(500));
        assert!(c.now_ms() >= 10_000);
    }

    #[test]
    fn iso_format() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
    }
}
