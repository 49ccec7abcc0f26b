//! `report.json`, built from the run state alone; the main structure here is [`Report`].
//!
//! The report is written atomically (temporary file, fsync, rename) at the end of every run,
//! also after a failure or an interrupt, and `vidbatch report` rebuilds it from `state.jsonl`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::api::{CreateRequest, Timestamp, Usage};
use crate::events::{Counters, Failure, RunOutcome, SourceRecord};
use crate::state::{JobState, Phase, RunState};

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run.
    pub run: RunInfo,
    /// Totals.
    pub summary: Summary,
    /// One entry per job of the state, in plan order.
    pub jobs: Vec<JobReport>,
}

/// What ran, when, and how.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// vidbatch version.
    pub tool_version: String,
    /// Id of the out dir's state.
    pub run_id: Option<String>,
    /// Manifests and their sha256.
    pub manifests: Vec<SourceRecord>,
    /// When the latest run started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: Option<RunOutcome>,
    /// Exit code of that outcome.
    pub exit_code: Option<i32>,
    /// Settings in effect (never the key).
    pub settings: Option<serde_json::Value>,
    /// Shard, `K/N`.
    pub shard: Option<String>,
    /// Runs recorded in the state (1 + resumes).
    pub runs: u32,
}

/// Totals over the jobs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Jobs in all.
    pub jobs: usize,
    /// Jobs per final state.
    pub by_state: BTreeMap<String, usize>,
    /// Tokens billed (sum of usage).
    pub tokens_used: u64,
    /// Bytes of verified videos.
    pub bytes: u64,
    /// Request counts, summed over the runs.
    pub counters: Counters,
}

/// One job's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// Job id.
    pub id: String,
    /// Where it came from.
    pub source: String,
    /// Final state: `done`, `failed`, `pending`, ...
    pub state: String,
    /// The request sent.
    pub request: CreateRequest,
    /// Every task id it had.
    pub task_ids: Vec<String>,
    /// Creates sent.
    pub attempts: u32,
    /// Retries of any kind.
    pub retries: u32,
    /// Why it failed.
    pub error: Option<Failure>,
    /// Video path relative to the out dir.
    pub file: Option<String>,
    /// Last frame path.
    pub last_frame: Option<String>,
    /// Video size.
    pub bytes: Option<u64>,
    /// Video sha256.
    pub sha256: Option<String>,
    /// Tokens billed.
    pub usage: Option<Usage>,
    /// When its task was created.
    pub submitted_at: Option<Timestamp>,
    /// When its task finished.
    pub completed_at: Option<Timestamp>,
    /// When the job ended.
    pub finished_at: Option<Timestamp>,
}

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

impl Report {
    /// Builds the report from a state.
    pub fn from_state(state: &RunState) -> Report {
        let jobs: Vec<JobReport> = state
            .jobs_in_order()
            .map(|j| JobReport {
                id: j.id.clone(),
                source: j.source.clone(),
                state: job_state_name(j),
                request: j.request.clone(),
                task_ids: j.task_ids.clone(),
                attempts: j.attempts,
                retries: j.retries,
                error: if j.phase == Phase::Done {
                    None
                } else {
                    j.failure.clone()
                },
                file: j.path.clone().filter(|_| j.phase == Phase::Done),
                last_frame: j.last_frame.clone().filter(|_| j.phase == Phase::Done),
                bytes: j.bytes.filter(|_| j.phase == Phase::Done),
                sha256: j.sha256.clone().filter(|_| j.phase == Phase::Done),
                usage: j.usage,
                submitted_at: j.submitted_at,
                completed_at: j.completed_at,
                finished_at: j.finished_at,
            })
            .collect();
        let mut by_state = BTreeMap::new();
        for j in &jobs {
            *by_state.entry(j.state.clone()).or_insert(0) += 1;
        }
        Report {
            run: RunInfo {
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                run_id: state.run_id.clone(),
                manifests: state.manifests.clone(),
                started_at: state.started_at,
                finished_at: state.finished_at,
                outcome: state.outcome,
                exit_code: state.outcome.map(RunOutcome::exit_code),
                settings: state.settings.clone(),
                shard: state.shard.clone(),
                runs: state.runs,
            },
            summary: Summary {
                jobs: jobs.len(),
                tokens_used: jobs.iter().filter_map(|j| j.usage).map(|u| u.total_tokens).sum(),
                bytes: jobs.iter().filter_map(|j| j.bytes).sum(),
                by_state,
                counters: state.counters.clone(),
            },
            jobs,
        }
    }
}

/// Writes `contents` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    crate::journal::sync_dir(dir);
    Ok(())
}

/// Writes `OUT/report.json` from a state.
pub fn write_report(out_dir: &Path, state: &RunState) -> std::io::Result<()> {
    let report = Report::from_state(state);
    let json = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
    write_atomic(&out_dir.join("report.json"), &json)
}
