//! The bar's time left, from the run's own completions; the main structure here is [`Eta`].
//!
//! There is no estimate before this run has finished jobs at two moments at least
//! [`MIN_SPAN`] apart (jobs finished by an earlier run say nothing of this one's speed, and the
//! time to the first completions is the pipeline filling, not the pace). Then the rate is the
//! jobs finished since the first batch over the time between the first and the latest batch,
//! measured between completions only, never against the clock in between: tasks finish in
//! batches, and the quiet time between two batches is no slowdown. A sliding window of recent
//! batches lets a long run follow a change of pace. Between completions the estimate counts
//! down with the clock, and it never goes up by more than the time of a batch it was waiting
//! for, so it does not jump 3m, 6m, 3m.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Batches the rate is measured over, at most.
const WINDOW_BATCHES: usize = 64;
/// How far back the rate looks, at most (when it has batches enough without going this far).
const WINDOW_TIME: Duration = Duration::from_secs(600);
/// Least time between the first and the latest batch for their slope to count.
const MIN_SPAN: Duration = Duration::from_secs(2);

/// The time left of a run, estimated from its completions.
#[derive(Debug, Clone)]
pub struct Eta {
    /// Jobs finished (done or failed) when the run started.
    base: usize,
    /// Each batch: when, and jobs finished by then (this run's and earlier ones').
    batches: VecDeque<(Instant, usize)>,
    /// The time left as estimated at the latest batch, and when.
    estimate: Option<(Instant, Duration)>,
}

impl Eta {
    /// A run starting with `finished` jobs already finished.
    pub fn new(finished: usize) -> Eta {
        Eta {
            base: finished,
            batches: VecDeque::new(),
            estimate: None,
        }
    }

    /// Notes that `finished` of `total` jobs are finished at `now`.
    pub fn observe(&mut self, now: Instant, finished: usize, total: usize) {
        if self.batches.is_empty() && finished < self.base {
            // Jobs reopened at the start (`--retry-failed`, a file to fetch again).
            self.base = finished;
        }
        let last = self.batches.back().map_or(self.base, |b| b.1);
        if finished <= last {
            return;
        }
        self.batches.push_back((now, finished));
        while self.batches.len() > WINDOW_BATCHES
            || (self.batches.len() > 2
                && self
                    .batches
                    .front()
                    .is_some_and(|f| now.duration_since(f.0) > WINDOW_TIME))
        {
            self.batches.pop_front();
        }
        let Some(rate) = self.rate() else {
            return;
        };
        let left = total.saturating_sub(finished);
        let raw = Duration::from_secs_f64((left as f64 / rate).min(1e9));
        // Never further than the countdown the last estimate showed plus the wait it was in:
        // a batch that came late moves the end by no more than its lateness.
        let shown = match self.estimate {
            Some((at, before)) => {
                let counted = before.saturating_sub(now.duration_since(at));
                raw.min(counted + now.duration_since(at))
            }
            None => raw,
        };
        self.estimate = Some((now, shown));
    }

    /// Jobs per second, once batches span [`MIN_SPAN`].
    fn rate(&self) -> Option<f64> {
        let (first_at, first_n) = *self.batches.front()?;
        let (last_at, last_n) = *self.batches.back()?;
        let span = last_at.duration_since(first_at);
        (span >= MIN_SPAN).then(|| (last_n - first_n) as f64 / span.as_secs_f64())
    }

    /// The time left at `now`: none before this run's completions show a pace.
    pub fn left(&self, now: Instant) -> Option<Duration> {
        self.estimate
            .map(|(at, left)| left.saturating_sub(now.duration_since(at)))
    }
}

/// A time left as the bar shows it, coarser the longer it is: `45s`, `3m10s`, `12m`, `1h05m`.
pub fn format(left: Duration) -> String {
    let s = left.as_secs();
    match s {
        0..60 => format!("{}s", s.div_ceil(5) * 5),
        60..600 => {
            let s = s.div_ceil(10) * 10;
            format!("{}m{:02}s", s / 60, s % 60)
        }
        600..3600 => format!("{}m", s.div_ceil(60)),
        _ => {
            let m = s.div_ceil(60);
            format!("{}h{:02}m", m / 60, m % 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_estimate_before_this_runs_completions_show_a_pace() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut eta = Eta::new(5);
        assert_eq!(eta.left(at(30)), None);
        // Jobs of an earlier run are no completions of this one.
        eta.observe(at(31), 5, 20);
        assert_eq!(eta.left(at(31)), None);
        // One batch is no pace (the wait for it was the pipeline filling).
        eta.observe(at(60), 7, 20);
        assert_eq!(eta.left(at(60)), None);
        eta.observe(at(61), 8, 20);
        assert_eq!(eta.left(at(61)), None);
        // 3 jobs in the 10 s since the first batch: 10 left take 33 s.
        eta.observe(at(70), 10, 20);
        assert_eq!(eta.left(at(70)).unwrap().as_secs(), 33);
        assert_eq!(eta.left(at(80)).unwrap().as_secs(), 23);
    }

    /// Batches of 10 every 60 s (10 slots, a minute a video) over 200 jobs: the time left,
    /// read each second, counts down steadily; the end it points at moves little.
    #[test]
    fn batches_give_a_steady_countdown_not_3m_6m_3m() {
        let t0 = Instant::now();
        let total = 200;
        let mut eta = Eta::new(0);
        let mut ends = Vec::new();
        let mut previous: Option<Duration> = None;
        for second in 1..=1200u64 {
            let now = t0 + Duration::from_secs(second);
            // A little jitter: batches land a few seconds apart from the minute.
            if second % 60 == (second / 60) % 7 {
                let finished = ((second / 60) as usize * 10).min(total);
                eta.observe(now, finished, total);
            }
            let Some(left) = eta.left(now) else {
                assert!(second <= 122, "no estimate at {second} s");
                continue;
            };
            if let Some(p) = previous {
                assert!(
                    left <= p + Duration::from_secs(8),
                    "at {second} s the time left rose from {p:?} to {left:?}"
                );
            }
            previous = Some(left);
            if second >= 180 {
                ends.push(second as f64 + left.as_secs_f64());
            }
        }
        let min = ends.iter().cloned().fold(f64::MAX, f64::min);
        let max = ends.iter().cloned().fold(0.0, f64::max);
        assert!(max - min < 120.0, "the end moved from {min} s to {max} s");
    }

    #[test]
    fn times_left_are_coarse() {
        assert_eq!(format(Duration::from_secs(0)), "0s");
        assert_eq!(format(Duration::from_secs(42)), "45s");
        assert_eq!(format(Duration::from_secs(185)), "3m10s");
        assert_eq!(format(Duration::from_secs(725)), "13m");
        assert_eq!(format(Duration::from_secs(3900)), "1h05m");
    }
}
