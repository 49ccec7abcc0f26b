//! The token bucket in front of every API request, slowed down run-wide by 429s; the main structure here is [`Pacer`].
//!
//! A governor bucket holds requests to `--rpm` with `--burst`, on tokio's clock (so tests can
//! pause time). The dispatcher is its only user: it asks for a token only when it has a
//! request to send, and spends each token on the most valuable request waiting. A 429 pauses
//! every request until the wait the server asked for has passed (or a capped, jittered
//! backoff), and lowers the rate (to the server's announced limit when it gave one), with the
//! burst cut to one so the end of the pause is no thundering herd. A run of successes raises
//! the rate back step by step to what was configured.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
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
const MARGIN: f64 = 0.985;

/// Tokio's clock as governor sees it: time since the pacer began, so a paused test clock
/// pauses the bucket too.
#[derive(Debug, Clone)]
struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// The request pacer of a run, owned by its dispatcher.
pub struct Pacer {
    configured_rpm: f64,
    burst: u32,
    backoff: RetryPolicy,
    clock: TokioClock,
    bucket: Bucket,
    rpm_now: f64,
    paused_until: Option<Instant>,
    successes: u32,
    consecutive_429: u32,
}

impl Pacer {
    /// A pacer at `rpm` requests per minute with `burst` at once.
    pub fn new(rpm: u32, burst: u32, backoff: RetryPolicy) -> Pacer {
        let rpm = f64::from(rpm.max(1));
        let clock = TokioClock {
            start: Instant::now(),
        };
        Pacer {
            configured_rpm: rpm,
            burst,
            backoff,
            bucket: bucket(&clock, rpm, burst, true),
            clock,
            rpm_now: rpm,
            paused_until: None,
            successes: 0,
            consecutive_429: 0,
        }
    }

    /// The rate aimed at now, per minute.
    pub fn rpm_now(&self) -> f64 {
        self.rpm_now
    }

    /// Takes a token for one request now, or says when to ask again.
    pub fn try_take(&mut self) -> Result<(), Instant> {
        let now = Instant::now();
        if let Some(until) = self.paused_until {
            if until > now {
                return Err(until);
            }
            self.paused_until = None;
        }
        match self.bucket.check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(now + not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Whether a 429 holds every request right now.
    pub fn is_paused(&self) -> bool {
        self.paused_until.is_some_and(|u| u > Instant::now())
    }

    /// Notes an answer that was not a 429.
    pub fn on_success(&mut self) {
        self.consecutive_429 = 0;
        if self.rpm_now >= self.configured_rpm {
            return;
        }
        self.successes += 1;
        if self.successes >= RAISE_AFTER {
            self.successes = 0;
            self.rpm_now = (self.rpm_now * RAISE_FACTOR).min(self.configured_rpm);
            let burst = if self.rpm_now >= self.configured_rpm {
                self.burst
            } else {
                1
            };
            self.bucket = bucket(&self.clock, self.rpm_now, burst, false);
        }
    }

    /// Notes a 429 that says the request rate is too high: pauses every request and lowers
    /// the rate. Returns the pause.
    pub fn on_rate_limited(
        &mut self,
        server_wait: Option<Duration>,
        announced_limit: Option<u32>,
    ) -> Duration {
        self.consecutive_429 += 1;
        self.successes = 0;
        let wait = match server_wait {
            Some(w) => w.min(self.backoff.max_delay) + self.backoff.small_jitter(),
            None => self.backoff.delay(self.consecutive_429),
        };
        let until = Instant::now() + wait;
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        let target = match announced_limit {
            // Aim a little under what the server says it allows.
            Some(limit) if f64::from(limit) * 0.95 < self.rpm_now => f64::from(limit) * 0.95,
            Some(_) => self.rpm_now * 0.9,
            None => self.rpm_now * CUT_FACTOR,
        };
        self.rpm_now = target.max(MIN_RPM);
        self.bucket = bucket(&self.clock, self.rpm_now, 1, false);
        wait
    }
}

/// A bucket at `rpm` (less [`MARGIN`]) holding `burst`. A `fresh` bucket starts full (the
/// start of a run); a replacement starts empty, so changing the rate never grants a new burst.
fn bucket(clock: &TokioClock, rpm: f64, burst: u32, fresh: bool) -> Bucket {
    let period = Duration::from_secs_f64(60.0 / (rpm * MARGIN).max(MIN_RPM));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    let bucket = RateLimiter::direct_with_clock(quota, clock.clone());
    if !fresh {
        let _ = bucket.check_n(burst);
    }
    bucket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_429_lowers_the_rate_and_successes_raise_it_back() {
        let mut pacer = Pacer::new(600, 10, RetryPolicy::for_tests());
        pacer.on_rate_limited(Some(Duration::from_millis(1)), Some(100));
        assert!((pacer.rpm_now() - 95.0).abs() < 1e-9);
        pacer.on_rate_limited(None, None);
        assert!((pacer.rpm_now() - 66.5).abs() < 1e-9);
        for _ in 0..(RAISE_AFTER * 40) {
            pacer.on_success();
        }
        assert_eq!(pacer.rpm_now(), 600.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_request_and_the_bucket_runs_on_tokios_clock() {
        let mut pacer = Pacer::new(60, 2, RetryPolicy::new(5));
        assert!(pacer.try_take().is_ok());
        assert!(pacer.try_take().is_ok());
        let next = pacer.try_take().expect_err("the burst is spent");
        let wait = next - Instant::now();
        assert!(
            wait > Duration::from_millis(900) && wait < Duration::from_millis(1100),
            "{wait:?}"
        );
        tokio::time::advance(wait).await;
        assert!(pacer.try_take().is_ok());
        let pause = pacer.on_rate_limited(Some(Duration::from_secs(5)), None);
        assert!(pause >= Duration::from_secs(5));
        assert!(pacer.is_paused());
        let until = pacer.try_take().expect_err("paused");
        assert!(until - Instant::now() >= Duration::from_secs(5));
    }
}
