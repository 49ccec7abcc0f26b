//! A run's report, built from the run state alone; the main structure here is [`Report`].
//!
//! The report is a pure function of [`RunState`], so `vidbatch report` rebuilds from
//! `state.jsonl` exactly what a run writes. Three renderings share the one model:
//! - [`json`]: `report.json` and its JSON Schema (`schemas/report.schema.json`);
//! - [`junit`]: JUnit XML for CI, one testcase per job;
//! - [`markdown`]: a short human summary with a table (also for `$GITHUB_STEP_SUMMARY`);
//! - [`html`]: `report.html`, a self-contained page with every video playable in place.
//!
//! [`merge`] builds one report over the out dirs of several shards; [`status`] is what
//! `vidbatch status` shows.
//!
//! Every file is written atomically (temporary file, fsync, rename) at the end of every run,
//! also after a failure or an interrupt.

pub(crate) mod html;
pub(crate) mod json;
pub mod junit;
pub(crate) mod markdown;
pub(crate) mod merge;
pub(crate) mod status;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;

use crate::api::{CreateRequest, Timestamp, Usage};
use crate::events::{Counters, Failure, RunOutcome, SourceRecord};
use crate::outdir::{self, write_atomic, write_atomic_with};
use crate::state::{JobState, Phase, RunState};

pub use json::{report_schema, write_report};

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(title = "vidbatch report")]
pub struct Report {
    /// The run.
    pub run: RunInfo,
    /// Totals.
    pub summary: Summary,
    /// One entry per job of the state, in plan order.
    pub jobs: Vec<JobReport>,
}

/// What ran, when, and how.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RunInfo {
    /// vidbatch version.
    pub tool_version: String,
    /// Id of the out dir's state.
    pub run_id: Option<String>,
    /// Manifests and their sha256.
    pub manifests: Vec<SourceRecord>,
    /// When the latest run started.
    pub started_at: Option<Timestamp>,
    /// When it ended (null while running or when it was killed).
    pub finished_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: Option<RunOutcome>,
    /// Exit code of that outcome.
    pub exit_code: Option<i32>,
    /// Why the latest run stopped submitting (`--max-fail`, the budget, a 401/402, an
    /// interrupt); null when it did not stop early.
    pub stop_reason: Option<String>,
    /// Settings in effect (never the key).
    pub settings: Option<serde_json::Value>,
    /// Shard, `K/N`.
    pub shard: Option<String>,
    /// Runs recorded in the state (1 + resumes).
    pub runs: u32,
    /// For a report merged over shards (`vidbatch report --merge`): the shards, in the order
    /// given. Absent from a single run's report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<merge::MergedShard>,
}

/// The 50th and 95th percentiles (nearest rank) of a duration over the jobs that have it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct Percentiles {
    /// Jobs measured.
    pub count: usize,
    /// Median in seconds; null when no job has the figure.
    pub p50: Option<f64>,
    /// 95th percentile in seconds; null when no job has the figure.
    pub p95: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (any order).
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| -> Option<f64> {
            if values.is_empty() {
                return None;
            }
            let n = values.len();
            let r = ((p / 100.0) * n as f64).ceil() as usize;
            Some(values[r.clamp(1, n) - 1])
        };
        Percentiles {
            count: values.len(),
            p50: rank(50.0),
            p95: rank(95.0),
        }
    }
}

/// Totals over the jobs.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Summary {
    /// Jobs in all: the latest run's plan and the jobs of earlier runs that left it.
    pub jobs: usize,
    /// Jobs of the latest run's plan (the ones the outcome and exit code speak of).
    pub planned: usize,
    /// Jobs of earlier runs that the latest run's plan no longer has (state `not_in_plan`):
    /// kept in the state, never counted as failures.
    pub not_in_plan: usize,
    /// Jobs per final state (`done`, `task_failed`, `download_failed`, `pending`,
    /// `not_in_plan`, ...).
    pub by_state: BTreeMap<String, usize>,
    /// Jobs done after a failure or a retry (marked flaky in JUnit).
    pub flaky: usize,
    /// Tokens billed (sum of usage).
    pub tokens_used: u64,
    /// Bytes of verified videos.
    pub bytes: u64,
    /// Request counts, summed over the runs (`rate_limited` counts 429 answers).
    #[serde(flatten)]
    pub counters: Counters,
    /// Video URLs refreshed because they expired or were refused.
    pub url_refreshes: u64,
    /// Queue time: from the create's send until the task was first seen processing (vidbatch's
    /// clock).
    pub queue_seconds: Percentiles,
    /// Generation time: the task's life on the server (its own clock) less the queue time.
    pub generation_seconds: Percentiles,
}

/// When things happened to one job, and the durations between. Instants are on the clock
/// named with each; a duration never mixes two clocks (the server's may be off).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Timings {
    /// When the latest create was sent (vidbatch's clock).
    pub submit_sent_at: Option<Timestamp>,
    /// When its task was created (the server's clock).
    pub created_at: Option<Timestamp>,
    /// When the task was first seen processing (vidbatch's clock).
    pub processing_at: Option<Timestamp>,
    /// When the task finished (the server's clock).
    pub completed_at: Option<Timestamp>,
    /// When the job became done or failed (vidbatch's clock).
    pub finished_at: Option<Timestamp>,
    /// `processing_at - submit_sent_at` (vidbatch's clock); null when processing was never seen.
    pub queue_seconds: Option<f64>,
    /// `completed_at - created_at` (the server's clock) less `queue_seconds`.
    pub generation_seconds: Option<f64>,
    /// `finished_at - submit_sent_at` (vidbatch's clock; download included).
    pub total_seconds: Option<f64>,
}

/// One job's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct JobReport {
    /// Job id.
    pub id: String,
    /// Output file stem.
    pub name: String,
    /// Where it came from (`file:line:col`, or `file: row N`).
    pub source: String,
    /// Final state: `done`, a failure kind (`task_failed`, `download_failed`, ...), where an
    /// unfinished job stands (`pending`, `submitted`, `generated`, ...), or `not_in_plan` for a
    /// job of an earlier run that the latest run's plan no longer has.
    pub state: String,
    /// For a job not in the latest plan: the state it was left in; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<String>,
    /// The request sent, with the seed vidbatch drew when the job set none.
    pub request: CreateRequest,
    /// Every task id it had, oldest first.
    pub task_ids: Vec<String>,
    /// Creates sent.
    pub attempts: u32,
    /// Retries of any kind (create, poll, download).
    pub retries: u32,
    /// Failures over its life (a `download_failed` later finished counts).
    pub failures: u32,
    /// Video URLs refreshed.
    pub url_refreshes: u32,
    /// Done after a failure or a retry.
    pub flaky: bool,
    /// Why it is not done (null when done).
    pub error: Option<Failure>,
    /// For a job done after a failure: the latest failure it got over.
    pub recovered_from: Option<Failure>,
    /// The jobs this one refers to with `job://ID` (it waited for them); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// Video path relative to the out dir.
    pub file: Option<String>,
    /// Last frame path relative to the out dir.
    pub last_frame: Option<String>,
    /// Video size.
    pub bytes: Option<u64>,
    /// Video sha256.
    pub sha256: Option<String>,
    /// When the video URL given with the completed task stops working.
    pub video_url_expires_at: Option<Timestamp>,
    /// Tokens billed.
    pub usage: Option<Usage>,
    /// Timestamps and durations.
    pub timings: Timings,
}

/// The state of a job that the latest run's plan no longer has.
pub const NOT_IN_PLAN: &str = "not_in_plan";

/// The name of a job's final state in reports.
pub fn job_state_name(j: &JobState) -> String {
    match (j.phase, &j.failure) {
        (Phase::Failed, Some(f)) => f.kind.name().to_string(),
        (Phase::Submitted | Phase::Generated, Some(f)) if f.kind.resumes_by_itself() => {
            f.kind.name().to_string()
        }
        (phase, _) => phase.name().to_string(),
    }
}

/// Seconds from `a` to `b`, never negative (server clocks are in whole seconds).
fn seconds(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<f64> {
    let (a, b) = (a?, b?);
    Some((b.0 - a.0).as_seconds_f64().max(0.0))
}

fn timings(j: &JobState) -> Timings {
    let queue = seconds(j.intent_at, j.processing_at);
    let on_server = seconds(j.submitted_at, j.completed_at);
    Timings {
        submit_sent_at: j.intent_at,
        created_at: j.submitted_at,
        processing_at: j.processing_at,
        completed_at: j.completed_at,
        finished_at: j.finished_at,
        queue_seconds: queue,
        generation_seconds: on_server.map(|s| (s - queue.unwrap_or(0.0)).max(0.0)),
        total_seconds: seconds(j.intent_at, j.finished_at),
    }
}

fn job_report(j: &JobState, in_plan: bool) -> JobReport {
    let done = j.phase == Phase::Done;
    let (state, last_state) = if in_plan {
        (job_state_name(j), None)
    } else {
        (NOT_IN_PLAN.to_string(), Some(job_state_name(j)))
    };
    JobReport {
        id: j.id.clone(),
        name: j.name.clone(),
        source: j.source.clone(),
        state,
        last_state,
        request: j.sent_request(),
        task_ids: j.task_ids.clone(),
        attempts: j.attempts,
        retries: j.retries,
        failures: j.failures,
        url_refreshes: j.url_refreshes,
        flaky: done && (j.failures > 0 || j.retries > 0),
        // A job that left the plan is no failure of this run, whatever it was; a failed job
        // sent again (`--retry-failed`) is judged by its new attempt.
        error: j
            .failure
            .clone()
            .filter(|f| !done && in_plan && (j.phase == Phase::Failed || f.kind.resumes_by_itself())),
        recovered_from: if done { j.failure.clone() } else { None },
        upstream: j.upstream.clone(),
        file: j.path.clone().filter(|_| done),
        last_frame: j.last_frame.clone().filter(|_| done),
        bytes: j.bytes.filter(|_| done),
        sha256: j.sha256.clone().filter(|_| done),
        video_url_expires_at: j.video_url_expires_at,
        usage: j.usage,
        timings: timings(j),
    }
}

impl Report {
    /// Builds the report from a state (a pure function: the same state, the same report).
    pub fn from_state(state: &RunState) -> Report {
        let jobs: Vec<JobReport> = state
            .jobs_in_order()
            .map(|j| job_report(j, state.in_plan(&j.id)))
            .collect();
        let run = RunInfo {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: state.run_id.clone(),
            manifests: state.manifests.clone(),
            started_at: state.started_at,
            finished_at: state.finished_at,
            outcome: state.outcome,
            exit_code: state.outcome.map(crate::exit::of_run),
            stop_reason: state.stop_reason.clone(),
            settings: state.settings.clone(),
            shard: state.shard.clone(),
            runs: state.runs,
            merged_from: Vec::new(),
        };
        Report::from_jobs(run, jobs, state.counters.clone())
    }

    /// The outcome's name (`success`, `some_failed`, ...), or `unfinished` when no end is
    /// recorded.
    pub fn outcome_name(&self) -> String {
        self.run
            .outcome
            .and_then(|o| serde_json::to_value(o).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unfinished".into())
    }

    /// Builds a report from its run, its jobs and the request counts; the summary's totals
    /// are computed from the jobs.
    pub fn from_jobs(run: RunInfo, jobs: Vec<JobReport>, mut counters: Counters) -> Report {
        // A run cut off (kill -9, a power cut) never wrote its request counts, but each create
        // it sent is still recorded as an attempt of its job: creates are never counted short.
        let attempts: u64 = jobs.iter().map(|j| u64::from(j.attempts)).sum();
        if attempts > counters.creates {
            counters.api_requests += attempts - counters.creates;
            counters.creates = attempts;
        }
        let mut by_state = BTreeMap::new();
        for j in &jobs {
            *by_state.entry(j.state.clone()).or_insert(0) += 1;
        }
        let queue = jobs.iter().filter_map(|j| j.timings.queue_seconds).collect();
        let generation = jobs.iter().filter_map(|j| j.timings.generation_seconds).collect();
        let not_in_plan = jobs.iter().filter(|j| j.state == NOT_IN_PLAN).count();
        Report {
            run,
            summary: Summary {
                jobs: jobs.len(),
                planned: jobs.len() - not_in_plan,
                not_in_plan,
                flaky: jobs.iter().filter(|j| j.flaky).count(),
                tokens_used: jobs.iter().filter_map(|j| j.usage).map(|u| u.total_tokens).sum(),
                bytes: jobs.iter().filter_map(|j| j.bytes).sum(),
                by_state,
                counters,
                url_refreshes: jobs.iter().map(|j| u64::from(j.url_refreshes)).sum(),
                queue_seconds: Percentiles::of(queue),
                generation_seconds: Percentiles::of(generation),
            },
            jobs,
        }
    }
}

/// Where to write the CI renderings besides `OUT/report.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// JUnit XML file (`--junit`).
    pub junit: Option<PathBuf>,
    /// Markdown summary file (`--summary-md`).
    pub summary_md: Option<PathBuf>,
    /// File the Markdown summary is appended to as well (`$GITHUB_STEP_SUMMARY`; only with
    /// `summary_md`).
    pub step_summary: Option<PathBuf>,
}

/// Writes `OUT/report.json`, `OUT/report.html` and the asked-for renderings from a state.
/// Every file is tried even when an earlier one fails; the first error is returned.
pub fn write_all(out_dir: &Path, state: &RunState, outputs: &Outputs) -> std::io::Result<()> {
    write_report_files(out_dir, &Arc::new(Report::from_state(state)), outputs)
}

/// Writes a report's files: `OUT/report.json`, `OUT/report.html` and the asked-for
/// renderings. Every file is tried even when an earlier one fails; the first error is
/// returned. `report.json` and `report.html` are written as they are made (report.html's cards
/// one at a time), so a report of many jobs costs little memory beyond the report itself.
pub fn write_report_files(out_dir: &Path, report: &Arc<Report>, outputs: &Outputs) -> std::io::Result<()> {
    let mut first_error = None;
    let mut note = |r: std::io::Result<()>, what: &Path| {
        if let Err(e) = r
            && first_error.is_none()
        {
            first_error = Some(std::io::Error::new(
                e.kind(),
                format!("writing {}: {e}", what.display()),
            ));
        }
    };
    let json_path = out_dir.join(outdir::REPORT_JSON);
    note(json::write(&json_path, report), &json_path);
    let html_path = out_dir.join(outdir::REPORT_HTML);
    note(
        write_atomic_with(&html_path, |w| html::render_to(report, w)),
        &html_path,
    );
    if let Some(path) = &outputs.junit {
        note(write_atomic(path, junit::render(report).as_bytes()), path);
    }
    if let Some(path) = &outputs.summary_md {
        let md = markdown::render(report);
        note(write_atomic(path, md.as_bytes()), path);
        if let Some(step) = &outputs.step_summary {
            note(append(step, md.as_bytes()), step);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Appends `contents` to `path` in one write (the file is shared with other steps).
fn append(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of(vec![]);
        assert_eq!((p.count, p.p50, p.p95), (0, None, None));
        let p = Percentiles::of(vec![7.0]);
        assert_eq!((p.p50, p.p95), (Some(7.0), Some(7.0)));
        let p = Percentiles::of((1..=20).rev().map(f64::from).collect());
        assert_eq!((p.p50, p.p95), (Some(10.0), Some(19.0)));
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95), (Some(50.0), Some(95.0)));
    }
}
