//! The token bucket in front of every API request, slowed down run-wide by 429s; the main structure here is [`Pacer`].
//!
//! A governor bucket holds requests to `--rpm` with `--burst`. A 429 pauses every request
//! until the wait the server asked for has passed (or a capped, jittered backoff), and
//! lowers the rate (to the server's announced limit when it gave one), with the burst cut
//! to one so the end of the pause is no thundering herd. A run of successes raises the
//! rate back step by step to what was configured.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use super::backoff::RetryPolicy;

/// Successes in a row before the rate is raised one step.
const RAISE_AFTER: u32 = 20;
/// Each raise multiplies the rate by this.
const RAISE_FACTOR: f64 = 1.1;
/// Each 429 without an announced limit multiplies the rate by this.
const CUT_FACTOR: f64 = 0.7;
/// The slowest the pacer goes, in requests per minute.
const MIN_RPM: f64 = 2.0;
/// The share of the target rate actually sent: requests leave evenly spaced but arrive with
/// jitter, and a server bucket at exactly the same rate would answer the early ones 429.
const MARGIN: f64 = 0.97;

struct Inner {
    limiter: Arc<DefaultDirectRateLimiter>,
    rpm_now: f64,
    paused_until: Option<Instant>,
    successes: u32,
    consecutive_429: u32,
}

/// The request pacer shared by every job of a run.
pub struct Pacer {
    configured_rpm: f64,
    burst: u32,
    backoff: RetryPolicy,
    inner: Mutex<Inner>,
}

/// A bucket at `rpm` (less [`MARGIN`]) holding `burst`. A `fresh` bucket starts full (the
/// start of a run); a replacement starts empty, so changing the rate never grants a new burst.
fn limiter(rpm: f64, burst: u32, fresh: bool) -> Arc<DefaultDirectRateLimiter> {
    let period = Duration::from_secs_f64(60.0 / (rpm * MARGIN).max(MIN_RPM));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    let limiter = RateLimiter::direct(quota);
    if !fresh {
        let _ = limiter.check_n(burst);
    }
    Arc::new(limiter)
}

impl Pacer {
    /// A pacer at `rpm` requests per minute with `burst` at once.
    pub fn new(rpm: u32, burst: u32, backoff: RetryPolicy) -> Pacer {
        let rpm = f64::from(rpm.max(1));
        Pacer {
            configured_rpm: rpm,
            burst,
            backoff,
            inner: Mutex::new(Inner {
                limiter: limiter(rpm, burst, true),
                rpm_now: rpm,
                paused_until: None,
                successes: 0,
                consecutive_429: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate aimed at now, per minute.
    pub fn rpm_now(&self) -> f64 {
        self.lock().rpm_now
    }

    /// Waits until one more API request may be sent.
    pub async fn acquire(&self) {
        loop {
            let (pause, limiter) = {
                let inner = self.lock();
                (inner.paused_until, inner.limiter.clone())
            };
            if let Some(until) = pause
                && until > Instant::now()
            {
                tokio::time::sleep_until(until).await;
                continue;
            }
            limiter.until_ready().await;
            // A 429 may have paused everything while this request waited for its token.
            let paused = self.lock().paused_until.is_some_and(|u| u > Instant::now());
            if !paused {
                return;
            }
        }
    }

    /// Notes an answer that was not a 429.
    pub fn on_success(&self) {
        let mut inner = self.lock();
        inner.consecutive_429 = 0;
        if inner.rpm_now >= self.configured_rpm {
            return;
        }
        inner.successes += 1;
        if inner.successes >= RAISE_AFTER {
            inner.successes = 0;
            inner.rpm_now = (inner.rpm_now * RAISE_FACTOR).min(self.configured_rpm);
            let burst = if inner.rpm_now >= self.configured_rpm {
                self.burst
            } else {
                1
            };
            inner.limiter = limiter(inner.rpm_now, burst, false);
        }
    }

    /// Notes a 429: pauses every request and lowers the rate. Returns the pause.
    pub fn on_rate_limited(&self, server_wait: Option<Duration>, announced_limit: Option<u32>) -> Duration {
        let mut inner = self.lock();
        inner.consecutive_429 += 1;
        inner.successes = 0;
        let wait = match server_wait {
            Some(w) => w.min(self.backoff.max_delay) + self.backoff.small_jitter(),
            None => self.backoff.delay(inner.consecutive_429),
        };
        let until = Instant::now() + wait;
        inner.paused_until = Some(inner.paused_until.map_or(until, |u| u.max(until)));
        let cut = inner.rpm_now * CUT_FACTOR;
        let target = match announced_limit {
            // Aim a little under what the server says it allows.
            Some(limit) if f64::from(limit) * 0.95 < inner.rpm_now => f64::from(limit) * 0.95,
            Some(_) => inner.rpm_now * 0.9,
            None => cut,
        };
        inner.rpm_now = target.max(MIN_RPM);
        inner.limiter = limiter(inner.rpm_now, 1, false);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_429_lowers_the_rate_and_successes_raise_it_back() {
        let pacer = Pacer::new(600, 10, RetryPolicy::for_tests());
        pacer.on_rate_limited(Some(Duration::from_millis(1)), Some(100));
        assert!((pacer.rpm_now() - 95.0).abs() < 1e-9);
        pacer.on_rate_limited(None, None);
        assert!((pacer.rpm_now() - 66.5).abs() < 1e-9);
        for _ in 0..(RAISE_AFTER * 40) {
            pacer.on_success();
        }
        assert_eq!(pacer.rpm_now(), 600.0);
    }

    #[tokio::test]
    async fn a_pause_holds_every_request() {
        let pacer = Pacer::new(60_000, 100, RetryPolicy::for_tests());
        let wait = pacer.on_rate_limited(Some(Duration::from_millis(150)), None);
        assert!(wait >= Duration::from_millis(150));
        let start = std::time::Instant::now();
        pacer.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(140));
    }
}
