//! Run state folded from events; the main structure here is [`RunState`].
//!
//! The same fold serves a live run (the runner applies each event it emits), a resume (the
//! journal is replayed), and the offline `status` and `report` commands.

mod records;

pub use records::{Counters, Failure, FailureKind, RunOutcome, SourceRecord};

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::api::{CreateRequest, TaskStatus, Timestamp, Usage};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not sent yet.
    Pending,
    /// A create was (maybe) sent and no task id is known: reconcile before sending again.
    Submitting,
    /// The task exists on the server and is not finished.
    Submitted,
    /// The task finished; the video is still to be fetched.
    Generated,
    /// The video is on disk and verified.
    Done,
    /// The job failed.
    Failed,
}

impl Phase {
    /// The name used in status output and reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Submitting => "submitting",
            Phase::Submitted => "submitted",
            Phase::Generated => "generated",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }
}

/// Everything known about one job (also the record of a compacted journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Job id.
    pub id: String,
    /// Output file stem.
    pub name: String,
    /// sha256 of the canonical request.
    pub fingerprint: String,
    /// The request.
    pub request: CreateRequest,
    /// Where the job came from.
    pub source: String,
    /// Estimated tokens.
    pub estimated_tokens: Option<u64>,
    /// Where it is.
    pub phase: Phase,
    /// Every task id the job ever had, oldest first.
    pub task_ids: Vec<String>,
    /// Creates sent, in all runs.
    pub attempts: u32,
    /// Retries of any kind.
    pub retries: u32,
    /// Idempotency key of the latest create attempt.
    pub idempotency_key: Option<String>,
    /// When the latest create attempt started (vidbatch's clock).
    pub intent_at: Option<Timestamp>,
    /// The seed vidbatch drew for the job (when its request sets none).
    pub seed: Option<i64>,
    /// When the current task was created.
    pub submitted_at: Option<Timestamp>,
    /// When the task was first seen processing.
    pub processing_at: Option<Timestamp>,
    /// When the task finished on the server.
    pub completed_at: Option<Timestamp>,
    /// When the job became done or failed.
    pub finished_at: Option<Timestamp>,
    /// When the video URL given with the completed task stops working.
    pub video_url_expires_at: Option<Timestamp>,
    /// Tokens billed.
    pub usage: Option<Usage>,
    /// Video path relative to the out dir, when done.
    pub path: Option<String>,
    /// Last frame path relative to the out dir, when done and asked for.
    pub last_frame: Option<String>,
    /// Video size.
    pub bytes: Option<u64>,
    /// Video sha256.
    pub sha256: Option<String>,
    /// Why it failed (the latest failure, kept after a retry succeeds for flaky marking).
    pub failure: Option<Failure>,
    /// Failures seen over its life.
    pub failures: u32,
    /// URL refreshes.
    pub url_refreshes: u32,
    /// The jobs this one refers to with `job://ID` (it waits for them), from its request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// The status the current task last showed on the server (for the display; not reported).
    #[serde(default)]
    pub last_status: Option<TaskStatus>,
}

impl JobState {
    /// Whether the job is blocked: never created, because a job it refers to failed.
    pub fn is_blocked(&self) -> bool {
        self.phase == Phase::Failed
            && self
                .failure
                .as_ref()
                .is_some_and(|f| f.kind == FailureKind::Blocked)
    }

    /// The task the job is on now.
    pub fn task_id(&self) -> Option<&str> {
        self.task_ids.last().map(String::as_str)
    }

    /// The request as sent: the job's, with the seed vidbatch drew for it.
    pub fn sent_request(&self) -> CreateRequest {
        let mut request = self.request.clone();
        if request.draws_seed()
            && let Some(seed) = self.seed
        {
            request.seed = Some(seed);
        }
        request
    }
}

/// Where one job stands, as far as a [`Tally`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    phase: Phase,
    queued: bool,
}

impl JobState {
    /// Where the job stands for the tally.
    pub fn standing(&self) -> Standing {
        Standing {
            phase: self.phase,
            queued: self.phase == Phase::Submitted && self.last_status == Some(TaskStatus::Queued),
        }
    }
}

/// Counts of a plan's jobs by where they stand, kept by the runner as events arrive, so the
/// display never counts every job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Jobs in the plan.
    pub total: usize,
    /// Jobs whose video is on disk.
    pub done: usize,
    /// Jobs that failed.
    pub failed: usize,
    /// Jobs with a task on the server (or a create on its way) that is not finished.
    pub in_flight: usize,
    /// Of those, the tasks whose last seen status was `queued`.
    pub queued: usize,
}

impl Tally {
    /// The tally of `jobs`, the plan's jobs as they stand.
    pub fn of<'a>(jobs: impl Iterator<Item = &'a JobState>) -> Tally {
        let mut t = Tally::default();
        for j in jobs {
            t.total += 1;
            t.count(j.standing(), 1);
        }
        t
    }

    /// Moves one job of the plan from where it stood to where it stands now.
    pub fn moved(&mut self, before: Standing, after: Standing) {
        if before != after {
            self.count(before, -1);
            self.count(after, 1);
        }
    }

    fn count(&mut self, s: Standing, by: isize) {
        let slot = match s.phase {
            Phase::Done => &mut self.done,
            Phase::Failed => &mut self.failed,
            Phase::Submitted | Phase::Submitting => &mut self.in_flight,
            Phase::Pending | Phase::Generated => return,
        };
        *slot = slot.saturating_add_signed(by);
        if s.queued {
            self.queued = self.queued.saturating_add_signed(by);
        }
    }
}

/// The run-wide part of a [`RunState`], as a compacted journal records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSnapshot {
    /// Id of the state.
    pub run_id: Option<String>,
    /// Settings of the latest run.
    pub settings: Option<serde_json::Value>,
    /// Manifests of the latest run.
    pub manifests: Vec<SourceRecord>,
    /// Shard of the latest run.
    pub shard: Option<String>,
    /// When the latest run started.
    pub started_at: Option<Timestamp>,
    /// When the latest run ended.
    pub finished_at: Option<Timestamp>,
    /// How the latest run ended.
    pub outcome: Option<RunOutcome>,
    /// Why the latest run stopped submitting, if it did.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Ids of the latest run's plan, sorted (absent: every job counts as planned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<Vec<String>>,
    /// Counters of all runs, summed.
    pub counters: Counters,
    /// Runs recorded.
    pub runs: u32,
    /// Every task id any job ever had, sorted.
    #[serde(default)]
    pub claimed_tasks: Vec<String>,
}

/// The state of a run's out dir.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    /// Id of the state (kept across resumes).
    pub run_id: Option<String>,
    /// Jobs by id.
    pub jobs: HashMap<String, JobState>,
    /// Job ids in the order first planned.
    pub order: Vec<String>,
    /// Settings of the latest run.
    pub settings: Option<serde_json::Value>,
    /// Manifests of the latest run.
    pub manifests: Vec<SourceRecord>,
    /// Shard of the latest run.
    pub shard: Option<String>,
    /// When the latest run started.
    pub started_at: Option<Timestamp>,
    /// When the latest run ended.
    pub finished_at: Option<Timestamp>,
    /// How the latest run ended.
    pub outcome: Option<RunOutcome>,
    /// Counters of all runs, summed.
    pub counters: Counters,
    /// Runs recorded.
    pub runs: u32,
    /// Every task id any job ever had.
    pub claimed_tasks: HashSet<String>,
    /// Why the latest run stopped submitting (`--max-fail`, the budget, 401/402, an interrupt).
    pub stop_reason: Option<String>,
    /// Ids of the latest run's plan; `None` when the state does not say (journals of earlier
    /// versions), and then every job counts as planned.
    pub planned: Option<HashSet<String>>,
}

impl RunState {
    /// The run-wide part of the state, for a compacted journal.
    pub fn snapshot(&self) -> RunSnapshot {
        RunSnapshot {
            run_id: self.run_id.clone(),
            settings: self.settings.clone(),
            manifests: self.manifests.clone(),
            shard: self.shard.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            outcome: self.outcome,
            stop_reason: self.stop_reason.clone(),
            planned: self.planned.as_ref().map(|p| {
                let mut ids: Vec<String> = p.iter().cloned().collect();
                ids.sort();
                ids
            }),
            counters: self.counters.clone(),
            runs: self.runs,
            claimed_tasks: {
                let mut claimed: Vec<String> = self.claimed_tasks.iter().cloned().collect();
                claimed.sort();
                claimed
            },
        }
    }

    /// Whether a job is in the latest run's plan (every job is when the state does not say).
    pub fn in_plan(&self, id: &str) -> bool {
        self.planned.as_ref().is_none_or(|p| p.contains(id))
    }

    /// Jobs in the order first planned.
    pub fn jobs_in_order(&self) -> impl Iterator<Item = &JobState> {
        self.order.iter().filter_map(|id| self.jobs.get(id))
    }

    /// Count of jobs per phase name; a failed job that was never created because a job it
    /// refers to failed counts as `blocked`.
    pub fn phase_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for j in self.jobs.values() {
            let name = if j.is_blocked() { "blocked" } else { j.phase.name() };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests;
