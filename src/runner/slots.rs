//! How many tasks to keep queued or processing on the server: the main structure here is [`Slots`].
//!
//! The provider does not publish how many tasks an account may have processing at once. The
//! lists show it: when some tasks wait `queued` while others are `processing`, the processing
//! ones fill the account's slots S. Until a queue is seen, the target doubles what is seen
//! processing. The target is S plus a small queue Q ahead of the slots, so a slot that frees
//! starts its next task at once: Q covers the completions expected while vidbatch learns of
//! one and its next create reaches the server. Q never passes the provider's queued-task cap
//! (about 120), and a `queue_full` 429 lowers it. A number given to `--concurrency` is a hard
//! cap over all of this.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// In flight before anything is learned.
const INITIAL: usize = 8;
/// The largest queue kept ahead of the slots (the provider keeps about 120 queued per account).
const QUEUE_MAX: usize = 100;
/// The smallest queue kept ahead of the slots.
const QUEUE_MIN: usize = 2;
/// How far back completions count toward their rate (sweeps see them in bursts, so the rate
/// is taken over a span of time, not a number of completions).
const RATE_SPAN: Duration = Duration::from_secs(10);
/// Saturated sweeps whose processing count the slots are taken from (the largest of them: a
/// sweep may catch a slot between two tasks).
const SLOT_SAMPLES: usize = 8;
/// Headroom on the queue the completion rate asks for.
const QUEUE_HEADROOM: f64 = 2.0;

/// What is learned of the account's slots and the target it gives.
#[derive(Debug)]
pub(super) struct Slots {
    cap: Option<usize>,
    samples: VecDeque<usize>,
    seen_processing: usize,
    queue_ceiling: usize,
    completions: VecDeque<Instant>,
    /// When the run began: completions are counted over the time since, up to [`RATE_SPAN`].
    started: Instant,
    create_latency: Option<Duration>,
}

impl Slots {
    /// Slots of a run; `cap` is `--concurrency N`.
    pub fn new(cap: Option<usize>) -> Slots {
        Slots {
            cap: cap.map(|c| c.max(1)),
            samples: VecDeque::new(),
            seen_processing: 0,
            queue_ceiling: QUEUE_MAX,
            completions: VecDeque::new(),
            started: Instant::now(),
            create_latency: None,
        }
    }

    /// The account's processing slots, once seen.
    pub fn learned(&self) -> Option<usize> {
        self.samples.iter().max().copied()
    }

    /// Tasks to keep queued or processing, given how often the server's news comes in.
    pub fn target(&self, news_interval: Duration) -> usize {
        let auto = match self.learned() {
            Some(s) => s + self.queue(news_interval),
            // Not saturated yet: double what runs, as a slow start does.
            None => INITIAL.max(self.seen_processing + self.seen_processing.max(self.queue(news_interval))),
        };
        self.cap.map_or(auto, |cap| auto.min(cap))
    }

    /// Whether `--concurrency` holds the run below what the slots could take.
    pub fn held_back(&self, news_interval: Duration) -> bool {
        let Some(cap) = self.cap else {
            return false;
        };
        match self.learned() {
            Some(s) => cap < s + self.queue(news_interval),
            None => self.seen_processing >= cap,
        }
    }

    /// The queue kept ahead of the slots.
    fn queue(&self, news_interval: Duration) -> usize {
        let rate = self.completion_rate().unwrap_or(0.0);
        // A completion shows at the next sweep (its list takes about as long as a create), then
        // the create that replaces it travels to the server.
        let lead = news_interval + self.create_latency.unwrap_or_default() * 2;
        let wanted = (rate * lead.as_secs_f64() * QUEUE_HEADROOM).ceil() as usize + 1;
        wanted.clamp(QUEUE_MIN.min(self.queue_ceiling), self.queue_ceiling)
    }

    /// Completions per second over the last [`RATE_SPAN`] (or since the run began, at least 1 s).
    fn completion_rate(&self) -> Option<f64> {
        if self.completions.is_empty() {
            return None;
        }
        let span = Instant::now()
            .duration_since(self.started)
            .clamp(Duration::from_secs(1), RATE_SPAN);
        Some(self.completions.len() as f64 / span.as_secs_f64())
    }

    /// Notes what a list showed of the account: tasks processing and queued (all clients').
    pub fn observe(&mut self, processing: usize, queued: usize) {
        self.seen_processing = self.seen_processing.max(processing);
        let saturated = queued > 0 && processing > 0;
        // More running than thought, queue or not: there are more slots.
        let more = self.learned().is_some_and(|s| processing > s);
        if saturated || more {
            if self.samples.len() == SLOT_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(processing);
        }
    }

    /// Notes a task that finished.
    pub fn on_finished(&mut self, at: Instant) {
        while self
            .completions
            .front()
            .is_some_and(|t| at.duration_since(*t) > RATE_SPAN)
        {
            self.completions.pop_front();
        }
        self.completions.push_back(at);
    }

    /// Notes how long a create took to be answered.
    pub fn on_create_answered(&mut self, took: Duration) {
        self.create_latency = Some(match self.create_latency {
            Some(d) => d.mul_f64(0.8) + took.mul_f64(0.2),
            None => took,
        });
    }

    /// The server refused a create because too many tasks wait queued: keep fewer queued.
    pub fn on_queue_full(&mut self, news_interval: Duration) {
        self.queue_ceiling = (self.queue(news_interval) / 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(200);

    #[test]
    fn the_target_grows_until_a_queue_shows_the_slots() {
        let mut slots = Slots::new(None);
        assert_eq!(slots.target(TICK), INITIAL);
        slots.observe(8, 0);
        assert_eq!(slots.target(TICK), 16);
        slots.observe(12, 0);
        assert_eq!(slots.target(TICK), 24);
        slots.observe(16, 2);
        assert_eq!(slots.learned(), Some(16));
        assert_eq!(slots.target(TICK), 16 + QUEUE_MIN);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_follows_the_completion_rate_and_a_full_queue_lowers_it() {
        let mut slots = Slots::new(None);
        slots.observe(8, 3);
        for _ in 0..20 {
            slots.on_finished(Instant::now());
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // 10 completions a second, learned of every 200 ms: 10 × 0.2 × 2 + 1 = 5.
        assert_eq!(slots.target(TICK), 8 + 5);
        slots.on_queue_full(TICK);
        assert_eq!(slots.target(TICK), 8 + 2);
    }

    #[test]
    fn a_cap_is_a_hard_limit_and_says_when_it_holds_back() {
        let mut slots = Slots::new(Some(8));
        slots.observe(8, 0);
        assert_eq!(slots.target(TICK), 8);
        assert!(slots.held_back(TICK));
        let mut roomy = Slots::new(Some(50));
        roomy.observe(8, 4);
        assert!(!roomy.held_back(TICK));
        assert_eq!(roomy.target(TICK), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn completions_seen_in_one_burst_and_a_slot_caught_between_tasks_change_little() {
        let mut slots = Slots::new(None);
        slots.observe(50, 5);
        // A sweep catches a slot between two tasks: still 50 slots.
        slots.observe(40, 5);
        assert_eq!(slots.learned(), Some(50));
        tokio::time::advance(Duration::from_secs(3)).await;
        // One sweep sees 50 completions at once, 3 s into the run: about 17 a second.
        let now = Instant::now();
        for _ in 0..50 {
            slots.on_finished(now);
        }
        let target = slots.target(TICK);
        assert!((55..=60).contains(&target), "{target}");
    }
}
