//! How long to wait before trying again; the main structure here is [`RetryPolicy`].

use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Tries after the first, for errors that allow retries.
    pub max_retries: u32,
}

impl RetryPolicy {
    /// The policy of a run.
    pub fn new(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retries,
        }
    }

    /// The policy of a run whose first delay is `base` (the longest is 120 times it).
    pub fn with_base(max_retries: u32, base: Duration) -> RetryPolicy {
        RetryPolicy {
            base,
            max_delay: base.saturating_mul(120),
            max_retries,
        }
    }

    /// A quick policy for tests.
    pub fn for_tests() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
            max_retries: 5,
        }
    }

    /// The delay before try number `attempt` (1 = first retry): uniformly drawn between half
    /// and all of `base * 2^(attempt-1)`, capped at `max_delay`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let ms = exp.as_millis() as u64;
        let low = ms / 2;
        Duration::from_millis(rand::rng().random_range(low..=ms.max(low)))
    }

    /// A small random spread added to a wait the server named, so waiters don't wake together.
    pub fn small_jitter(&self) -> Duration {
        let ms = (self.base.as_millis() as u64 / 2).max(1);
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }
}

/// `d` spread by up to ±20 %.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::new(5);
        for attempt in 1..40 {
            let d = p.delay(attempt);
            assert!(d <= p.max_delay, "{d:?}");
        }
        assert!(p.delay(1) <= Duration::from_millis(500));
        assert!(p.delay(6) >= Duration::from_secs(8));
    }
}
