//! The fold: how each [`Event`] changes a [`RunState`], the same live, on resume and offline.

use crate::api::TaskStatus;
use crate::events::Event;
use crate::state::{JobState, Phase, RunState};

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
                plan,
                ..
            } => {
                self.planned = plan.as_ref().map(|p| p.iter().cloned().collect());
                self.run_id = Some(run_id.clone());
                self.started_at = Some(*at);
                self.finished_at = None;
                self.outcome = None;
                self.stop_reason = None;
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
                    existing.upstream = crate::manifest::refs::upstream_of(request);
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
                            seed: None,
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
                            upstream: crate::manifest::refs::upstream_of(request),
                            last_status: None,
                        },
                    );
                }
            }
            Event::SubmitIntent {
                job,
                attempt,
                idempotency_key,
                seed,
                at,
            } => {
                if let Some(j) = self.jobs.get_mut(job) {
                    if seed.is_some() {
                        j.seed = *seed;
                    }
                    j.phase = Phase::Submitting;
                    j.attempts = j.attempts.max(*attempt);
                    j.idempotency_key = Some(idempotency_key.clone());
                    j.intent_at = Some(*at);
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
            Event::TaskGone { job, task_id } => {
                if let Some(j) = self.jobs.get_mut(job)
                    && matches!(j.phase, Phase::Submitting | Phase::Submitted | Phase::Generated)
                {
                    j.phase = Phase::Pending;
                    if let Some(gone) = task_id {
                        j.task_ids.retain(|t| t != gone);
                    }
                    j.last_status = None;
                    j.submitted_at = None;
                    j.processing_at = None;
                    j.completed_at = None;
                    j.video_url_expires_at = None;
                }
            }
            Event::JobReopened { job } => {
                if let Some(j) = self.jobs.get_mut(job)
                    && j.phase == Phase::Failed
                {
                    j.phase = Phase::Pending;
                    // A retry is a new generation: the seed drawn for the one that failed (and
                    // would likely fail the same way) is not sent again; a new one is drawn.
                    j.seed = None;
                }
            }
            Event::RunFinished {
                at,
                outcome,
                counters,
            } => {
                self.finished_at = Some(*at);
                self.outcome = Some(*outcome);
                self.counters.add_counts(counters);
                self.counters.slots = counters.slots.or(self.counters.slots);
            }
            Event::SubmissionsStopped { reason } => {
                self.stop_reason.get_or_insert_with(|| reason.clone());
            }
            Event::Snapshot { run, .. } => {
                let r = (**run).clone();
                self.run_id = r.run_id;
                self.settings = r.settings;
                self.manifests = r.manifests;
                self.shard = r.shard;
                self.started_at = r.started_at;
                self.finished_at = r.finished_at;
                self.outcome = r.outcome;
                self.stop_reason = r.stop_reason;
                self.planned = r.planned.map(|p| p.into_iter().collect());
                self.counters = r.counters;
                self.runs = r.runs;
                self.claimed_tasks.extend(r.claimed_tasks);
            }
            Event::JobSnapshot { state } => {
                let job = (**state).clone();
                self.claimed_tasks.extend(job.task_ids.iter().cloned());
                if !self.jobs.contains_key(&job.id) {
                    self.order.push(job.id.clone());
                }
                self.jobs.insert(job.id.clone(), job);
            }
            Event::Retrying { job: None, .. }
            | Event::RateLimited { .. }
            | Event::Throttled { .. }
            | Event::Notice { .. } => {}
        }
    }
}
