//! The terminal display: one indicatif bar for the whole run; the main structure here is [`BarDisplay`].
//!
//! The bar shows jobs done of the total, tasks in flight (and how many of them the server still
//! has queued), failures and the ETA. Lines (rate limits, failures, and with `-v` every job's
//! steps) are printed above the bar through [`ProgressBar::println`], so the screen stays clean.
//! Counts come from the [`RunState`] the runner passes with each event; the only timer is
//! indicatif's steady tick, which redraws the spinner and the ETA.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::TaskStatus;
use crate::events::Event;
use crate::runner::Observer;
use crate::state::{Phase, RunState};

use super::Verbosity;
use super::lines;

/// The bar's layout.
const TEMPLATE: &str = "{spinner} {elapsed:>4} [{bar:28}] {msg}, ETA {eta}";

/// Counts the bar shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Jobs whose video is on disk.
    pub done: usize,
    /// Jobs that failed.
    pub failed: usize,
    /// Jobs with a task on the server (or a create on its way) that is not finished.
    pub in_flight: usize,
    /// Of those, the tasks whose last seen status was `queued`.
    pub queued: usize,
}

impl Counts {
    /// Counts every job of the state.
    pub fn of(state: &RunState) -> Counts {
        let mut c = Counts::default();
        for j in state.jobs.values() {
            match j.phase {
                Phase::Done => c.done += 1,
                Phase::Failed => c.failed += 1,
                Phase::Submitted | Phase::Submitting => {
                    c.in_flight += 1;
                    if j.phase == Phase::Submitted && j.last_status == Some(TaskStatus::Queued) {
                        c.queued += 1;
                    }
                }
                Phase::Pending | Phase::Generated => {}
            }
        }
        c
    }

    /// The bar's message: `3/6 done, 2 in flight (1 queued on the server), 0 failed`.
    pub fn message(&self, total: usize) -> String {
        format!(
            "{}/{} done, {} in flight ({} queued on the server), {} failed",
            self.done,
            total.max(self.done),
            self.in_flight,
            self.queued,
            self.failed
        )
    }
}

/// Draws the run's bar on stderr and prints lines above it.
pub struct BarDisplay {
    bar: ProgressBar,
    verbosity: Verbosity,
    total: usize,
}

impl BarDisplay {
    /// A bar drawn on stderr when it is a terminal (`force`: draw even when it does not look
    /// like one, for `--progress always`).
    pub fn new(verbosity: Verbosity, force: bool) -> BarDisplay {
        let target = if force {
            ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10)
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        BarDisplay {
            bar,
            verbosity,
            total: 0,
        }
    }

    /// Whether the event gets a line above the bar at this verbosity.
    fn shows_line(&self, event: &Event) -> bool {
        match event {
            Event::JobFailed { .. } => true,
            Event::RateLimited { .. } | Event::SubmissionsStopped { .. } | Event::FileInvalid { .. } => {
                self.verbosity >= Verbosity::Normal
            }
            Event::RunStarted { .. } | Event::RunFinished { .. } => false,
            _ => self.verbosity >= Verbosity::Verbose,
        }
    }
}

impl Observer for BarDisplay {
    fn on_event(&mut self, event: &Event, state: &RunState) {
        if let Event::RunStarted { total_jobs, .. } = event {
            self.total = *total_jobs;
            self.bar.set_length(*total_jobs as u64);
            // Jobs finished by an earlier run must not count as speed.
            let counts = Counts::of(state);
            self.bar
                .set_position((counts.done + counts.failed).min(*total_jobs) as u64);
            self.bar.reset_eta();
            self.bar.enable_steady_tick(Duration::from_millis(100));
        }
        if self.shows_line(event)
            && let Some(line) = lines::line(event, state, self.total, self.verbosity)
        {
            self.bar.println(line);
        }
        if let Event::RunFinished { outcome, .. } = event {
            self.bar.finish_and_clear();
            eprintln!("{}", lines::summary(state, *outcome));
            return;
        }
        let counts = Counts::of(state);
        let finished = (counts.done + counts.failed).min(self.total) as u64;
        if finished != self.bar.position() {
            self.bar.set_position(finished);
        }
        self.bar.set_message(counts.message(self.total));
    }
}

impl Drop for BarDisplay {
    fn drop(&mut self) {
        // A run that ended without RunFinished (an error) must not leave a half-drawn bar.
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CreateRequest, Timestamp};

    fn planned(job: &str) -> Event {
        Event::JobPlanned {
            job: job.into(),
            name: job.into(),
            fingerprint: format!("fp-{job}"),
            request: Box::new(CreateRequest::default()),
            source: "test".into(),
            estimated_tokens: None,
        }
    }

    #[test]
    fn counts_come_from_the_state_and_the_last_seen_status() {
        let mut state = RunState::default();
        for job in ["a", "b", "c", "d"] {
            state.apply(&planned(job));
        }
        for (job, task) in [("a", "t1"), ("b", "t2"), ("c", "t3")] {
            state.apply(&Event::Submitted {
                job: job.into(),
                task_id: task.into(),
                at: Timestamp::now(),
                reconciled: false,
            });
        }
        for (job, task, status) in [
            ("a", "t1", TaskStatus::Queued),
            ("b", "t2", TaskStatus::Processing),
        ] {
            state.apply(&Event::TaskProgress {
                job: job.into(),
                task_id: task.into(),
                status,
                at: Timestamp::now(),
            });
        }
        let c = Counts::of(&state);
        assert_eq!(
            c,
            Counts {
                done: 0,
                failed: 0,
                in_flight: 3,
                queued: 1
            }
        );
        assert_eq!(
            c.message(4),
            "0/4 done, 3 in flight (1 queued on the server), 0 failed"
        );
    }
}
