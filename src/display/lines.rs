//! Plain lines for logs and pipes, one per notable event; the main structure here is [`LineDisplay`].

use std::io::Write;

use crate::events::{Event, INTERRUPTED, Throttle};
use crate::runner::Observer;
use crate::state::{RunState, Tally};

use super::Verbosity;

/// Writes a line per notable event to stderr (no control characters).
pub struct LineDisplay {
    verbosity: Verbosity,
}

impl LineDisplay {
    /// A display showing what `verbosity` asks for.
    pub fn new(verbosity: Verbosity) -> LineDisplay {
        LineDisplay { verbosity }
    }
}

impl Observer for LineDisplay {
    fn on_event(&mut self, event: &Event, state: &RunState, tally: &Tally) {
        if let Some(line) = line(event, state, tally, self.verbosity) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}

/// `[done/total]`.
fn progress(tally: &Tally) -> String {
    format!("[{}/{}]", tally.done, tally.total.max(tally.done))
}

/// The line an event gets at `verbosity` (`tally`: the plan's counts), if any; free of
/// control characters whatever the server's messages held.
///
/// Quiet: failures, stops and the end. Normal: also submits, finished files, rate limits and
/// refreshed URLs. Verbose: also every status change, finished generation and retry.
pub fn line(event: &Event, state: &RunState, tally: &Tally, verbosity: Verbosity) -> Option<String> {
    let normal = verbosity >= Verbosity::Normal;
    let verbose = verbosity >= Verbosity::Verbose;
    let text = match event {
        Event::RunStarted {
            total_jobs, shard, ..
        } => Some(format!(
            "run started: {total_jobs} jobs{}",
            shard
                .as_ref()
                .map(|s| format!(" (shard {s})"))
                .unwrap_or_default()
        )),
        Event::Submitted {
            job,
            task_id,
            reconciled,
            ..
        } if normal => Some(format!(
            "{} submitted {job} -> {task_id}{}",
            progress(tally),
            if *reconciled {
                " (found after a lost answer)"
            } else {
                ""
            }
        )),
        Event::SubmitNotCreated { job, reason } if verbose => {
            Some(format!("{job}: create not accepted: {reason}"))
        }
        Event::TaskProgress {
            job, task_id, status, ..
        } if verbose => Some(format!(
            "{} {job} ({task_id}) is {}",
            progress(tally),
            status.as_str()
        )),
        Event::TaskCompleted {
            job, task_id, usage, ..
        } if verbose => Some(format!(
            "{} generated {job} ({task_id}){}",
            progress(tally),
            usage
                .map(|u| format!(", {} tokens", u.total_tokens))
                .unwrap_or_default()
        )),
        Event::Retrying {
            job,
            what,
            attempt,
            error,
            wait_ms,
        } if verbose => Some(format!(
            "retrying {what}{} (attempt {attempt}) in {:.1}s: {error}",
            job.as_ref().map(|j| format!(" of {j}")).unwrap_or_default(),
            *wait_ms as f64 / 1000.0
        )),
        Event::JobDone { job, path, bytes, .. } if normal => {
            Some(format!("{} done {job}: {path} ({bytes} bytes)", progress(tally)))
        }
        Event::JobFailed { job, failure, .. } => Some(format!(
            "FAILED job {job} ({}/{} done): {}{}",
            tally.done,
            tally.total.max(tally.done),
            failure.kind.name(),
            match (&failure.code, failure.message.as_str()) {
                (Some(code), msg) => format!(" [{code}] {msg}"),
                (None, msg) => format!(" {msg}"),
            }
        )),
        Event::RateLimited { wait_ms, rpm_now } if normal => Some(format!(
            "rate limited: every request waits {:.1}s, then {rpm_now:.0} requests/min",
            *wait_ms as f64 / 1000.0
        )),
        Event::UrlRefreshed { job, status } if normal => Some(format!(
            "video URL of {job} expired or was refused ({}); reading the task for a fresh one",
            if *status == 0 {
                "past its expiry".to_string()
            } else {
                format!("HTTP {status}")
            }
        )),
        Event::FileInvalid { job, reason } => Some(format!("{job}: {reason}; fetching it again")),
        Event::SubmissionsStopped { reason } if reason == INTERRUPTED => Some(
            "interrupted: saving the state and writing the report (interrupt again to leave at once)"
                .to_string(),
        ),
        Event::SubmissionsStopped { reason } => Some(format!("no new submissions: {reason}")),
        Event::Throttled { by } if verbose => Some(match by {
            Some(Throttle::Rpm) => "throttled: requests wait for the --rpm limiter".to_string(),
            Some(Throttle::RateLimited) => "throttled: requests wait out a 429".to_string(),
            None => "no longer throttled".to_string(),
        }),
        Event::Notice { message } if normal => Some(message.clone()),
        Event::RunFinished { outcome, .. } => Some(summary(state, *outcome)),
        _ => None,
    };
    text.map(|t| clean(&t))
}

/// The final line: how the run ended and the count of jobs in each phase.
pub fn summary(state: &RunState, outcome: crate::events::RunOutcome) -> String {
    let counts = state.phase_counts();
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!("run finished ({}): {}", outcome_name(outcome), parts.join(", "))
}

/// The outcome's name as `report.json` spells it (`success`, `some_failed`, ...).
pub fn outcome_name(outcome: crate::events::RunOutcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Replaces control characters (escape sequences, carriage returns, newlines) with spaces.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
