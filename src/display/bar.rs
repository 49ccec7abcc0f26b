//! The terminal display: one indicatif bar for the whole run; the main structure here is [`BarDisplay`].
//!
//! The bar shows jobs done of the total, tasks in flight (and how many of them the server still
//! has queued), failures and the ETA. Lines (rate limits, failures, and with `-v` every job's
//! steps) are printed above the bar through [`ProgressBar::println`], so the screen stays clean.
//! Counts come from the [`Tally`] the runner passes with each event; the only timer is
//! indicatif's steady tick, which redraws the spinner and the ETA.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::Event;
use crate::runner::Observer;
use crate::state::{RunState, Tally};

use super::Verbosity;
use super::lines;

/// The bar's layout.
const TEMPLATE: &str = "{spinner} {elapsed:>4} [{bar:28}] {msg}, ETA {eta}";

/// The bar's message: `3/6 done, 2 in flight (1 queued on the server), 0 failed`.
pub fn message(t: &Tally) -> String {
    format!(
        "{}/{} done, {} in flight ({} queued on the server), {} failed",
        t.done,
        t.total.max(t.done),
        t.in_flight,
        t.queued,
        t.failed
    )
}

/// Draws the run's bar on stderr and prints lines above it.
pub struct BarDisplay {
    bar: ProgressBar,
    verbosity: Verbosity,
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
        BarDisplay { bar, verbosity }
    }

    /// Whether the event gets a line above the bar at this verbosity.
    fn shows_line(&self, event: &Event) -> bool {
        match event {
            Event::JobFailed { .. } => true,
            Event::RateLimited { .. }
            | Event::SubmissionsStopped { .. }
            | Event::FileInvalid { .. }
            | Event::Notice { .. } => self.verbosity >= Verbosity::Normal,
            Event::RunStarted { .. } | Event::RunFinished { .. } => false,
            _ => self.verbosity >= Verbosity::Verbose,
        }
    }
}

impl Observer for BarDisplay {
    fn on_event(&mut self, event: &Event, state: &RunState, tally: &Tally) {
        if let Event::RunStarted { total_jobs, .. } = event {
            self.bar.set_length(*total_jobs as u64);
            // Jobs finished by an earlier run must not count as speed.
            self.bar
                .set_position((tally.done + tally.failed).min(*total_jobs) as u64);
            self.bar.reset_eta();
            self.bar.enable_steady_tick(Duration::from_millis(100));
        }
        if self.shows_line(event)
            && let Some(line) = lines::line(event, state, tally, self.verbosity)
        {
            self.bar.println(line);
        }
        if let Event::RunFinished { outcome, .. } = event {
            self.bar.finish_and_clear();
            eprintln!("{}", lines::summary(state, *outcome));
            return;
        }
        let finished = (tally.done + tally.failed).min(tally.total) as u64;
        if finished != self.bar.position() {
            self.bar.set_position(finished);
        }
        self.bar.set_message(message(tally));
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

    #[test]
    fn the_message_shows_the_tally() {
        let t = Tally {
            total: 4,
            done: 0,
            failed: 0,
            in_flight: 3,
            queued: 1,
        };
        assert_eq!(
            message(&t),
            "0/4 done, 3 in flight (1 queued on the server), 0 failed"
        );
    }
}
