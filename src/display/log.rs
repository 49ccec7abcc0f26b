//! Events and diagnostics as `tracing` records, for `--log-format json`; the main structure here is [`EventLog`].
//!
//! Every run event has the target `vidbatch::events` and the fields `event` (the event's tag, as
//! in `state.jsonl`), `job` and `task_id` (when the event has them), a few event-specific
//! fields, and a human message. With `--log-format json` the subscriber in `main.rs` prints each
//! as one JSON object per line on stderr, and no other display runs.
//!
//! Every command's own diagnostics go through [`error`], [`diagnostic`] and [`info`]: plain
//! lines (`error: ...`) on stderr, or with `--log-format json` ([`set_json`]) records of the
//! target `vidbatch::diagnostics`: errors carry `exit_code`, manifest problems `file`, `line`,
//! `col` (YAML) or `row`/`rows` and `column` (CSV and sheets), and `field`, `found`,
//! `expected`, `help` when they have them.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::events::{Event, Throttle};
use crate::manifest::{Diagnostic, SourceLocation};
use crate::runner::Observer;
use crate::state::{RunState, Tally};

use super::Verbosity;
use super::lines;

/// The target of every event record (always enabled at `info` by `main.rs`).
pub const TARGET: &str = "vidbatch::events";

/// The target of commands' diagnostics (always enabled at `info` by `main.rs`).
pub const DIAGNOSTICS: &str = "vidbatch::diagnostics";

/// Whether this process logs JSON (`--log-format json`); set once, by `main.rs`.
static JSON: AtomicBool = AtomicBool::new(false);

/// Records that this process logs JSON: diagnostics become JSON records.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Whether this process logs JSON.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// A command's error, ending the process with `exit_code`: `error: MESSAGE` on stderr, or a JSON
/// record with the message and the exit code.
pub fn error(message: &str, exit_code: i32) {
    if json() {
        tracing::error!(target: DIAGNOSTICS, exit_code, "{message}");
    } else {
        eprintln!("error: {message}");
    }
}

/// `validate`'s verdict on good manifests (`ok: 6 jobs from 1 file`): a line on `stdout`, or a
/// JSON record on stderr with `jobs` and `files` (and nothing on stdout).
pub fn validated(message: &str, jobs: usize, files: usize, stdout: &mut dyn std::io::Write) {
    if json() {
        tracing::info!(target: DIAGNOSTICS, jobs, files, "{message}");
    } else {
        let _ = writeln!(stdout, "{message}");
    }
}

/// A problem found in a manifest, as a JSON record: an error or a warning, with where it is.
pub fn diagnostic(d: &Diagnostic) {
    let (mut file, mut line, mut col, mut row, mut rows, mut column, mut arg) =
        (None, None, None, None, None, None, None);
    match &d.location {
        SourceLocation::Yaml {
            file: f,
            line: l,
            col: c,
        } => {
            (file, line, col) = (Some(&**f), Some(*l), Some(*c));
        }
        SourceLocation::Row {
            file: f,
            row: r,
            column: c,
        } => {
            (file, row, column) = (Some(&**f), Some(*r), c.as_deref());
        }
        SourceLocation::Rows {
            file: f,
            rows: r,
            column: c,
        } => {
            let list: Vec<String> = r.iter().map(u32::to_string).collect();
            (file, rows, column) = (Some(&**f), Some(list.join(",")), c.as_deref());
        }
        SourceLocation::File { file: f } => file = Some(&**f),
        SourceLocation::Arg { arg: a } => arg = Some(&**a),
    }
    // The message without the snippet (source lines under it), which has its own field.
    let text = Diagnostic {
        snippet: None,
        ..d.clone()
    }
    .to_string();
    macro_rules! record {
        ($level:ident) => {
            tracing::$level!(
                target: DIAGNOSTICS,
                file,
                line,
                col,
                row,
                rows = rows.as_deref(),
                column,
                arg,
                field = d.field.as_deref(),
                found = d.found.as_deref(),
                expected = d.expected.as_deref(),
                help = d.help.as_deref(),
                snippet = d.snippet.as_deref(),
                "{text}"
            )
        };
    }
    if d.is_error() {
        record!(error);
    } else {
        record!(warn);
    }
}

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
        Event::TaskGone { .. } => "task_gone",
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

/// Logs on stderr: `text` lines, or one JSON object per line.
pub fn init(json: bool, quiet: bool, verbose: u8) {
    let level = super::log_level(quiet, verbose);
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIDBATCH_LOG").unwrap_or_else(|_| {
        // Run events (target vidbatch::events) are only logged with --log-format json, which
        // picks them by -q/-v itself; so are commands' diagnostics (vidbatch::diagnostics).
        tracing_subscriber::EnvFilter::new(format!(
            "vidbatch={level},{}=info,{}=info,warn",
            TARGET, DIAGNOSTICS
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    set_json(json);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        // Warnings while the bar is on screen are printed above it.
        builder
            .with_writer(|| super::bar::AroundBar)
            .with_ansi(false)
            .init();
    }
}
