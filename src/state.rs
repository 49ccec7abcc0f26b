//! Run state folded from events; the main structure here is [`RunState`].
//!
//! The same fold serves a live run (the runner applies each event it emits), a resume (the
//! journal is replayed), and the offline `status` and `report` commands.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::api::{CreateRequest, TaskStatus, Timestamp, Usage};
use crate::events::{Counters, Event, Failure, RunOutcome, SourceRecord};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

/// Everything known about one job.
#[derive(Debug, Clone, Serialize)]
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
    /// When the latest create attempt started.
    pub intent_at: Option<Timestamp>,
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
    /// The status the current task last showed on the server (for the display; not reported).
    #[serde(skip)]
    pub last_status: Option<TaskStatus>,
}

impl JobState {
    /// The task the job is on now.
    pub fn task_id(&self) -> Option<&str> {
        self.task_ids.last().map(String::as_str)
    }
}

/// The state of a run's out dir.
#[derive(Debug, Clone, Default)]
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
}

impl RunState {
    /// Applies one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                at,
                settings,
                manifests,
                shard,
                ..
            } => {
                self.run_id = Some(run_id.clone());
                self.started_at = Some(*at);
                self.finished_at = None;
                self.outcome = None;
                self.settings = Some(settings.clone());
                self.manifests = manifests.clone();
                self.shard = shard.clone();
                self.runs += 1;
            }
            Event::JobPlanned {
                job,
                name,
                fingerprint,
                request,
                source,
                estimated_tokens,
            } => {
                if let Some(existing) = self.jobs.get_mut(job) {
                    existing.name = name.clone();
                    existing.fingerprint = fingerprint.clone();
                    existing.request = (**request).clone();
                    existing.source = source.clone();
                    existing.estimated_tokens = *estimated_tokens;
                } else {
                    self.order.push(job.clone());
                    self.jobs.insert(
                        job.clone(),
                        JobState {
                            id: job.clone(),
                            name: name.clone(),
                            fingerprint: fingerprint.clone(),
                            request: (**request).clone(),
                            source: source.clone(),
                            estimated_tokens: *estimated_tokens,
                            phase: Phase::Pending,
                            task_ids: Vec::new(),
                            attempts: 0,
                            retries: 0,
                            idempotency_key: None,
                            intent_at: None,
                            submitted_at: None,
                            processing_at: None,
                            completed_at: None,
                            finished_at: None,
                            video_url_expires_at: None,
                            usage: None,
                            path: None,
                            last_frame: None,
                            bytes: None,
                            sha256: None,
                            failure: None,
                            failures: 0,
                            url_refreshes: 0,
                            last_status: None,
                        },
                    );
                }
            }
            Event::SubmitIntent {
                job,
                attempt,
                idempotency_key,
                at,
            } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    j.phase = Phase::Submitting;
                    j.attempts = j.attempts.max(*attempt);
                    j.idempotency_key = Some(idempotency_key.clone());
                    j.intent_at = Some(*at);
                    j.failure = None;
                }
            }
            Event::SubmitNotCreated { job, .. } => {
                if let Some(j) = self.jobs.get_mut(job)
                    && j.phase == Phase::Submitting
                {
                    j.phase = Phase::Pending;
                }
            }
            Event::Submitted { job, task_id, at, .. } => {
                self.claimed_tasks.insert(task_id.clone());
                if let Some(j) = self.jobs.get_mut(job) {
                    j.phase = Phase::Submitted;
                    if !j.task_ids.contains(task_id) {
                        j.task_ids.push(task_id.clone());
                    }
                    j.submitted_at = Some(*at);
                    j.last_status = None;
                    j.processing_at = None;
                    j.completed_at = None;
                    j.video_url_expires_at = None;
                }
            }
            Event::TaskProgress { job, status, at, .. } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    if *status == TaskStatus::Processing && j.processing_at.is_none() {
                        j.processing_at = Some(*at);
                    }
                    j.last_status = Some(status.clone());
                }
            }
            Event::TaskCompleted {
                job,
                usage,
                completed_at,
                video_url_expires_at,
                at,
                ..
            } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    j.phase = Phase::Generated;
                    j.usage = *usage;
                    j.completed_at = Some(completed_at.unwrap_or(*at));
                    j.video_url_expires_at = *video_url_expires_at;
                }
            }
            Event::Retrying { job: Some(job), .. } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    j.retries += 1;
                }
            }
            Event::UrlRefreshed { job, .. } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    j.url_refreshes += 1;
                }
            }
            Event::JobDone {
                job,
                path,
                bytes,
                sha256,
                last_frame,
                at,
                ..
            } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    j.phase = Phase::Done;
                    j.path = Some(path.clone());
                    j.bytes = Some(*bytes);
                    j.sha256 = Some(sha256.clone());
                    j.last_frame = last_frame.clone();
                    j.finished_at = Some(*at);
                }
            }
            Event::JobFailed { job, failure, at, .. } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    // A failure that a later run resumes by itself keeps the job where it was.
                    if !failure.kind.resumes_by_itself() {
                        j.phase = Phase::Failed;
                    }
                    j.failure = Some(failure.clone());
                    j.failures += 1;
                    j.finished_at = Some(*at);
                }
            }
            Event::FileInvalid { job, .. } => {
                if let Some(j) = self.jobs.get_mut(job)
                    && j.phase == Phase::Done
                {
                    j.phase = Phase::Generated;
                }
            }
            Event::JobReopened { job } => {
                if let Some(j) = self.jobs.get_mut(job)
                    && j.phase == Phase::Failed
                {
                    j.phase = Phase::Pending;
                }
            }
            Event::RunFinished {
                at,
                outcome,
                counters,
            } => {
                self.finished_at = Some(*at);
                self.outcome = Some(*outcome);
                let c = &mut self.counters;
                c.api_requests += counters.api_requests;
                c.rate_limited += counters.rate_limited;
                c.retries += counters.retries;
                c.creates += counters.creates;
                c.ambiguous_creates += counters.ambiguous_creates;
                c.reconciled += counters.reconciled;
                c.bytes_downloaded += counters.bytes_downloaded;
            }
            Event::Retrying { job: None, .. }
            | Event::RateLimited { .. }
            | Event::SubmissionsStopped { .. } => {}
        }
    }

    /// Jobs in the order first planned.
    pub fn jobs_in_order(&self) -> impl Iterator<Item = &JobState> {
        self.order.iter().filter_map(|id| self.jobs.get(id))
    }

    /// Count of jobs per phase name.
    pub fn phase_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for j in self.jobs.values() {
            *counts.entry(j.phase.name()).or_insert(0) += 1;
        }
        counts
    }
}
