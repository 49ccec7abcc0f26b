//! What a person watching a run sees: one plain line per notable event; the main structure here is [`LineDisplay`].

use std::io::Write;

use crate::events::Event;
use crate::runner::Observer;
use crate::state::{Phase, RunState};

/// Writes a line per notable event to stderr (no control characters).
pub struct LineDisplay {
    quiet: bool,
    total: usize,
}

impl LineDisplay {
    /// A display; `quiet` shows only failures and the end.
    pub fn new(quiet: bool) -> LineDisplay {
        LineDisplay { quiet, total: 0 }
    }

    fn progress(&self, state: &RunState) -> String {
        let counts = state.phase_counts();
        let done = counts.get(Phase::Done.name()).copied().unwrap_or(0);
        format!("[{done}/{}]", self.total.max(done))
    }
}

impl Observer for LineDisplay {
    fn on_event(&mut self, event: &Event, state: &RunState) {
        let line = match event {
            Event::RunStarted { total_jobs, .. } => {
                self.total = *total_jobs;
                Some(format!("run started: {total_jobs} jobs"))
            }
            Event::Submitted {
                job,
                task_id,
                reconciled,
                ..
            } if !self.quiet => Some(format!(
                "{} submitted {job} -> {task_id}{}",
                self.progress(state),
                if *reconciled {
                    " (found after a lost answer)"
                } else {
                    ""
                }
            )),
            Event::JobDone { job, path, bytes, .. } if !self.quiet => Some(format!(
                "{} done {job}: {path} ({bytes} bytes)",
                self.progress(state)
            )),
            Event::JobFailed { job, failure, .. } => Some(format!(
                "{} FAILED {job}: {}{}",
                self.progress(state),
                failure.kind.name(),
                match (&failure.code, failure.message.as_str()) {
                    (Some(code), msg) => format!(" [{code}] {msg}"),
                    (None, msg) => format!(" {msg}"),
                }
            )),
            Event::RateLimited { wait_ms, rpm_now } if !self.quiet => Some(format!(
                "rate limited: every request waits {:.1}s, then {rpm_now:.0} requests/min",
                *wait_ms as f64 / 1000.0
            )),
            Event::UrlRefreshed { job, status } if !self.quiet => Some(format!(
                "video URL of {job} expired or was refused ({}); reading the task for a fresh one",
                if *status == 0 {
                    "past its expiry".to_string()
                } else {
                    format!("HTTP {status}")
                }
            )),
            Event::FileInvalid { job, reason } => Some(format!("{job}: {reason}; fetching it again")),
            Event::SubmissionsStopped { reason } => Some(format!("no new submissions: {reason}")),
            Event::RunFinished { outcome, .. } => {
                let counts = state.phase_counts();
                let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
                Some(format!("run finished ({outcome:?}): {}", parts.join(", ")))
            }
            _ => None,
        };
        if let Some(line) = line {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}
