//! Events as `tracing` records, for `--log-format json`; the main structure here is [`EventLog`].
//!
//! Every record has the target `vidbatch::events` and the fields `event` (the event's tag, as in
//! `state.jsonl`), `job` and `task_id` (when the event has them), a few event-specific fields,
//! and a human message. With `--log-format json` the subscriber in `main.rs` prints each as one
//! JSON object per line on stderr, and no other display runs.

use crate::events::{Event, Throttle};
use crate::runner::Observer;
use crate::state::{RunState, Tally};

use super::Verbosity;
use super::lines;

/// The target of every event record (always enabled at `info` by `main.rs`).
pub const TARGET: &str = "vidbatch::events";

/// Logs events through `tracing`.
pub struct EventLog {
    verbosity: Verbosity,
}

impl EventLog {
    /// A log of the events `verbosity` asks for: quiet logs failures, stops and the end; normal
    /// logs every event but status changes and plan records; verbose logs every event.
    pub fn new(verbosity: Verbosity) -> EventLog {
        EventLog { verbosity }
    }

    fn wanted(&self, event: &Event) -> bool {
        match event {
            Event::JobFailed { .. }
            | Event::SubmissionsStopped { .. }
            | Event::FileInvalid { .. }
            | Event::RunStarted { .. }
            | Event::RunFinished { .. } => true,
            Event::TaskProgress { .. } | Event::JobPlanned { .. } => self.verbosity >= Verbosity::Verbose,
            _ => self.verbosity >= Verbosity::Normal,
        }
    }
}

/// The event's tag, as serialized in `state.jsonl`.
pub fn tag(event: &Event) -> &'static str {
    match event {
        Event::RunStarted { .. } => "run_started",
        Event::JobPlanned { .. } => "job_planned",
        Event::SubmitIntent { .. } => "submit_intent",
        Event::SubmitNotCreated { .. } => "submit_not_created",
        Event::Submitted { .. } => "submitted",
        Event::TaskProgress { .. } => "task_progress",
        Event::TaskCompleted { .. } => "task_completed",
        Event::Retrying { .. } => "retrying",
        Event::RateLimited { .. } => "rate_limited",
        Event::Throttled { .. } => "throttled",
        Event::Notice { .. } => "notice",
        Event::UrlRefreshed { .. } => "url_refreshed",
        Event::JobDone { .. } => "job_done",
        Event::JobFailed { .. } => "job_failed",
        Event::FileInvalid { .. } => "file_invalid",
        Event::JobReopened { .. } => "job_reopened",
        Event::SubmissionsStopped { .. } => "submissions_stopped",
        Event::RunFinished { .. } => "run_finished",
        Event::Snapshot { .. } => "snapshot",
        Event::JobSnapshot { .. } => "job_snapshot",
    }
}

/// The task id an event names, if any.
fn task_id(event: &Event) -> Option<&str> {
    match event {
        Event::Submitted { task_id, .. }
        | Event::TaskProgress { task_id, .. }
        | Event::TaskCompleted { task_id, .. }
        | Event::JobDone { task_id, .. } => Some(task_id),
        Event::JobFailed { task_id, .. } => task_id.as_deref(),
        _ => None,
    }
}

impl Observer for EventLog {
    fn on_event(&mut self, event: &Event, state: &RunState, tally: &Tally) {
        if !self.wanted(event) {
            return;
        }
        let message = lines::line(event, state, tally, Verbosity::Verbose)
            .unwrap_or_else(|| tag(event).replace('_', " "));
        let event_tag = tag(event);
        let job = event.job();
        let task = task_id(event);
        let status = match event {
            Event::TaskProgress { status, .. } => Some(status.as_str()),
            _ => None,
        };
        // What holds requests back (`rpm`, `rate_limited`), or `none` when they flow again.
        let throttle = match event {
            Event::Throttled { by } => Some(match by {
                Some(Throttle::Rpm) => "rpm",
                Some(Throttle::RateLimited) => "rate_limited",
                None => "none",
            }),
            _ => None,
        };
        let (kind, wait_ms, path, outcome) = match event {
            Event::JobFailed { failure, .. } => (Some(failure.kind.name()), None, None, None),
            Event::RateLimited { wait_ms, .. } | Event::Retrying { wait_ms, .. } => {
                (None, Some(*wait_ms), None, None)
            }
            Event::JobDone { path, .. } => (None, None, Some(path.as_str()), None),
            Event::RunFinished { outcome, .. } => (None, None, None, Some(lines::outcome_name(*outcome))),
            _ => (None, None, None, None),
        };
        let failure = matches!(
            event,
            Event::JobFailed { .. } | Event::SubmissionsStopped { .. } | Event::RateLimited { .. }
        );
        macro_rules! record {
            ($level:ident) => {
                tracing::$level!(
                    target: TARGET,
                    event = event_tag,
                    job,
                    task_id = task,
                    status,
                    throttle,
                    failure = kind,
                    wait_ms,
                    path,
                    outcome = outcome.as_deref(),
                    "{message}"
                )
            };
        }
        if failure {
            record!(warn);
        } else {
            record!(info);
        }
    }
}
