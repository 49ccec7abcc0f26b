//! What the dispatcher does with each report of its work: creates answered or lost, reads,
//! URL reads, cancels, downloads; and how a job or the run ends.

use std::time::Duration;

use tokio::time::Instant;

use crate::api::{ApiError, Task, TaskStatus, Timestamp};
use crate::events::{Event, Failure, FailureKind};
use crate::runner::StopKind;
use crate::runner::reconcile;
use crate::runner::spend::Reservation;
use crate::runner::work::{Fetch, ListFor, ReadFor, Report};
use crate::state::Phase;

use super::*;

impl Dispatcher {
    pub(super) fn handle(&mut self, report: Report) {
        let now = Instant::now();
        if !matches!(report, Report::Fetched { .. }) {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        match report {
            Report::Created {
                job,
                sent,
                result,
                reservation,
            } => self.on_created(job, sent, result, reservation, now),
            Report::IntentLost { job, error } => {
                self.creating.remove(&job);
                self.fail_local(error);
            }
            Report::Read {
                job,
                task_id,
                why,
                result,
            } => {
                self.answered(&result);
                match why {
                    ReadFor::Url => self.on_url_read(job, result),
                    ReadFor::Upstream => self.on_upstream_read(job, result),
                    ReadFor::Candidate => self.on_candidate_read(task_id, result),
                    ReadFor::Status | ReadFor::Deadline => self.on_read(task_id, why, result, now),
                }
            }
            Report::Listed { what, result } => {
                self.listing = false;
                self.answered(&result);
                match result {
                    Ok(page) => match what {
                        ListFor::Sweep => self.on_sweep(page, now),
                        ListFor::Status(status) => self.on_status_page(status, page, now),
                    },
                    Err(e) if e.is_fatal() => self.fatal(&e),
                    Err(e) => {
                        tracing::debug!(error = %e, "listing tasks failed; trying again at the next sweep");
                        self.next_sweep = now + self.sweep_interval();
                    }
                }
            }
            Report::Cancelled { job, task_id, result } => {
                self.cancelling = self.cancelling.saturating_sub(1);
                self.answered(&result);
                self.on_cancelled(job, task_id, result);
            }
            Report::Fetched {
                job,
                task_id,
                outcome,
                retries,
            } => {
                self.fetching = self.fetching.saturating_sub(1);
                self.on_fetched(job, task_id, outcome, retries);
            }
        }
    }

    /// Feeds an answer back to the pacer: a 429 that is about the request rate slows every
    /// request; one that says too many tasks wait queued lowers the queue instead.
    pub(super) fn answered<T>(&mut self, result: &Result<T, ApiError>) {
        match result {
            Err(
                e @ ApiError::RateLimited {
                    retry_after, limit, ..
                },
            ) => {
                self.counters.rate_limited += 1;
                let limited_for = self.last_unlimited.elapsed();
                if limited_for > RATE_LIMIT_GIVE_UP {
                    self.stop(
                        StopKind::Fatal,
                        format!(
                            "the server answered nothing but 429 for {}; giving up (a quota, or a limit that does not clear)",
                            humantime::format_duration(Duration::from_secs(limited_for.as_secs()))
                        ),
                    );
                    self.halted = true;
                } else if e.is_queue_full() {
                    self.slots.on_queue_full(self.sweep_interval());
                } else {
                    let wait = self.pacer.on_rate_limited(*retry_after, *limit);
                    self.emit(Event::RateLimited {
                        wait_ms: wait.as_millis() as u64,
                        rpm_now: self.pacer.rpm_now(),
                    });
                }
            }
            Err(ApiError::Transient { .. } | ApiError::AmbiguousCreate { .. }) => {}
            _ => {
                self.last_unlimited = Instant::now();
                self.pacer.on_success();
            }
        }
    }

    pub(super) fn on_created(
        &mut self,
        job: String,
        sent: Instant,
        result: Result<Task, ApiError>,
        reservation: Reservation,
        now: Instant,
    ) {
        self.creating.remove(&job);
        self.answered(&result);
        let Some(state) = self.state.jobs.get(&job) else {
            return;
        };
        let key = reconcile::match_key(&state.sent_request());
        let intent_at = state.intent_at.unwrap_or_else(Timestamp::now);
        match result {
            Ok(task) => {
                self.busy_keys.remove(&key);
                reservation.keep();
                self.slots.on_create_answered(now.duration_since(sent));
                for lost in self.lost.values_mut() {
                    if lost.later.is_none() && lost.failed_at <= sent {
                        lost.later = Some(task.id.clone());
                    }
                }
                self.emit(Event::Submitted {
                    job: job.clone(),
                    task_id: task.id.clone(),
                    at: task.created_at.unwrap_or_else(Timestamp::now),
                    reconciled: false,
                });
                self.fly(job, task, sent, now);
            }
            Err(e @ ApiError::AmbiguousCreate { .. }) => {
                self.counters.ambiguous_creates += 1;
                tracing::info!(job = %job, error = %e, "create answer lost; looking for its task in the lists");
                self.lost.insert(
                    job,
                    Lost {
                        key,
                        since: sent,
                        intent_at,
                        failed_at: now,
                        later: None,
                        reservation: Some(reservation),
                    },
                );
            }
            Err(e) => {
                self.busy_keys.remove(&key);
                drop(reservation);
                self.emit(Event::SubmitNotCreated {
                    job: job.clone(),
                    reason: e.to_string(),
                });
                match &e {
                    ApiError::RateLimited { .. } => self.pending.push_front(job),
                    ApiError::Transient { .. } => self.retry_create(job, &e, now),
                    ApiError::Unauthorized(_) | ApiError::Payment(_) => {
                        self.pending.push_front(job);
                        self.fatal(&e);
                    }
                    _ => self.fail(&job, None, api_failure(FailureKind::Rejected, &e)),
                }
            }
        }
    }

    /// A create that made nothing for a reason that may pass: try again after a backoff, or
    /// give the job up.
    pub(super) fn retry_create(&mut self, job: String, why: &dyn std::fmt::Display, now: Instant) {
        let errors = self.create_errors.entry(job.clone()).or_default();
        *errors += 1;
        let attempt = *errors;
        if attempt > self.settings.max_retries {
            let failure = plain(FailureKind::SubmitFailed, why.to_string());
            self.fail(&job, None, failure);
            return;
        }
        let wait = self.settings.retry.delay(attempt);
        self.note_retry(&job, "create", attempt, why.to_string(), wait);
        self.delayed.push((now + wait, job));
    }

    pub(super) fn note_retry(&mut self, job: &str, what: &str, attempt: u32, error: String, wait: Duration) {
        self.counters.retries += 1;
        self.emit(Event::Retrying {
            job: Some(job.to_string()),
            what: what.to_string(),
            attempt,
            error,
            wait_ms: wait.as_millis() as u64,
        });
    }

    /// Puts a task in flight.
    pub(super) fn fly(&mut self, job: String, task: Task, sent: Instant, now: Instant) {
        let id = task.id.clone();
        let deadline = deadline_after(sent, self.settings.job_timeout);
        let flight = Flight::new(job, task.created_at, sent, deadline, task.status.clone(), now);
        self.flights.insert(id.clone(), flight);
        if task.status.is_terminal() {
            self.on_status(&id, task, now);
        } else {
            self.emit(Event::TaskProgress {
                job: self.flights.get(&id).map(|f| f.job.clone()).unwrap_or_default(),
                task_id: id,
                status: task.status,
                at: Timestamp::now(),
            });
        }
    }

    pub(super) fn on_read(
        &mut self,
        task_id: String,
        why: ReadFor,
        result: Result<Task, ApiError>,
        now: Instant,
    ) {
        self.reading.remove(&task_id);
        let interval = self.sweep_interval();
        let max_retries = self.settings.max_retries;
        let Some(flight) = self.flights.get_mut(&task_id) else {
            return;
        };
        let job = flight.job.clone();
        match result {
            Ok(task) => {
                flight.last_read = now;
                flight.read_errors = 0;
                flight.absent_since = None;
                if flight.next_read.is_some() {
                    flight.next_read = Some(now + read_gap(flight.sent, interval, now));
                }
                if why == ReadFor::Deadline && !task.status.is_terminal() {
                    self.time_out(&task_id);
                } else {
                    flight.timing_out = false;
                    self.on_status(&task_id, task, now);
                }
            }
            Err(ApiError::RateLimited { .. }) => {
                flight.read_queued = true;
                self.reads.push_front((task_id, why));
            }
            Err(e @ ApiError::Transient { .. }) => {
                flight.read_errors += 1;
                flight.timing_out = false;
                let attempt = flight.read_errors;
                if attempt > max_retries {
                    self.flights.remove(&task_id);
                    self.fail(&job, Some(task_id), api_failure(FailureKind::PollFailed, &e));
                    return;
                }
                let wait = self.settings.retry.delay(attempt);
                flight.next_read = Some(now + wait);
                self.note_retry(&job, "poll", attempt, e.to_string(), wait);
            }
            Err(e) if e.is_fatal() => self.fatal(&e),
            Err(e) => {
                self.flights.remove(&task_id);
                let kind = match e {
                    ApiError::NotFound(_) => FailureKind::Expired,
                    _ => FailureKind::Rejected,
                };
                self.fail(&job, Some(task_id), api_failure(kind, &e));
            }
        }
    }

    /// The job ran past `--job-timeout` with its task unfinished: cancel it, fail the job.
    pub(super) fn time_out(&mut self, task_id: &str) {
        let Some(flight) = self.flights.remove(task_id) else {
            return;
        };
        self.cancels.push_back((flight.job.clone(), task_id.to_string()));
        let message = format!(
            "not finished after {} (--job-timeout); cancelled",
            humantime::format_duration(self.settings.job_timeout)
        );
        self.fail(
            &flight.job,
            Some(task_id.to_string()),
            plain(FailureKind::TimedOut, message),
        );
    }

    pub(super) fn on_url_read(&mut self, job: String, result: Result<Task, ApiError>) {
        self.url_reading.remove(&job);
        let task_id = self.task_of(&job);
        match result {
            Ok(task) if task.status == TaskStatus::Completed => {
                if has_url(&task) {
                    if self
                        .state
                        .jobs
                        .get(&job)
                        .is_some_and(|j| j.phase == Phase::Submitted)
                    {
                        self.completed(&job, &task);
                    }
                    self.fetch_wait.push_back((job, task, true));
                } else {
                    let failure = plain(
                        FailureKind::DownloadFailed,
                        "the completed task gave no video_url".into(),
                    );
                    self.fail(&job, task_id, failure);
                }
            }
            Ok(task) => {
                let kind = match task.status {
                    TaskStatus::Expired => FailureKind::Expired,
                    _ => FailureKind::DownloadFailed,
                };
                let message = format!(
                    "the task is {} where a finished video was expected",
                    task.status.as_str()
                );
                self.fail(&job, task_id, plain(kind, message));
            }
            Err(ApiError::RateLimited { .. }) => self.url_wait.push_front(job),
            Err(e @ ApiError::Transient { .. }) => {
                let errors = self.url_errors.entry(job.clone()).or_default();
                *errors += 1;
                let attempt = *errors;
                if attempt > self.settings.max_retries {
                    self.fail(&job, task_id, api_failure(FailureKind::DownloadFailed, &e));
                } else {
                    let wait = self.settings.retry.delay(attempt);
                    self.note_retry(&job, "get", attempt, e.to_string(), wait);
                    self.url_wait.push_back(job);
                }
            }
            Err(e) if e.is_fatal() => self.fatal(&e),
            Err(e) => {
                let kind = match e {
                    ApiError::NotFound(_) => FailureKind::Expired,
                    _ => FailureKind::DownloadFailed,
                };
                self.fail(&job, task_id, api_failure(kind, &e));
            }
        }
    }

    pub(super) fn on_cancelled(
        &mut self,
        job: String,
        task_id: String,
        result: Result<Option<Task>, ApiError>,
    ) {
        if !self.interrupted {
            // A job timeout's cancel: the job has failed already.
            if let Err(e) = result {
                tracing::warn!(job = %job, task = %task_id, error = %e, "cancelling a timed-out task failed");
            }
            return;
        }
        match result {
            Ok(_) => {
                self.flights.remove(&task_id);
                let failure = plain(
                    FailureKind::Cancelled,
                    "cancelled on interrupt (--cancel-on-interrupt)".into(),
                );
                self.fail(&job, Some(task_id), failure);
            }
            Err(ApiError::RateLimited { .. }) => self.cancels.push_front((job, task_id)),
            Err(e @ ApiError::Conflict(_)) => {
                // Finished already: the next run reads it and, when completed, fetches it.
                tracing::info!(job = %job, task = %task_id, error = %e, "the task finished before its cancel; kept");
            }
            Err(e) => {
                tracing::warn!(job = %job, task = %task_id, error = %e, "cancel on interrupt failed; the task may still run");
            }
        }
    }

    pub(super) fn on_fetched(
        &mut self,
        job: String,
        task_id: String,
        outcome: Fetch,
        retries: Vec<(String, Duration)>,
    ) {
        for (attempt, (error, wait)) in retries.into_iter().enumerate() {
            self.note_retry(&job, "download", attempt as u32 + 1, error, wait);
        }
        let Some(name) = self.state.jobs.get(&job).map(|j| j.name.clone()) else {
            return;
        };
        match outcome {
            Fetch::Done {
                video,
                frame,
                frame_missing,
                bytes,
            } => {
                self.counters.bytes_downloaded += bytes;
                if frame_missing {
                    self.emit(Event::Notice {
                        message: format!(
                            "{job}: the task gave no last frame (return_last_frame); the video is kept without one"
                        ),
                    });
                }
                self.emit(Event::JobDone {
                    job: job.clone(),
                    task_id,
                    path: crate::outdir::video_file(&name),
                    bytes: video.bytes,
                    sha256: video.sha256,
                    last_frame: frame.map(|_| crate::outdir::last_frame_file(&name)),
                    at: Timestamp::now(),
                });
                self.release_behind(&job);
            }
            Fetch::Refused { status } => {
                let refreshes = self.refreshes.entry(job.clone()).or_default();
                *refreshes += 1;
                if *refreshes > MAX_URL_REFRESHES {
                    let message = format!("the video URL was refused (HTTP {status}) {refreshes} times");
                    self.fail(&job, Some(task_id), plain(FailureKind::DownloadFailed, message));
                } else {
                    tracing::info!(job = %job, status, "video URL refused or expired; reading the task for a fresh one");
                    self.emit(Event::UrlRefreshed {
                        job: job.clone(),
                        status,
                    });
                    self.url_wait.push_back(job);
                }
            }
            Fetch::Failed(message) => {
                self.fail(&job, Some(task_id), plain(FailureKind::DownloadFailed, message));
            }
            Fetch::Local(message) => {
                self.stop(StopKind::Fatal, format!("cannot write the video: {message}"));
                self.fail_local(message);
            }
        }
    }

    pub(super) fn fail(&mut self, job: &str, task_id: Option<String>, failure: Failure) {
        let counts = !failure.kind.resumes_by_itself();
        self.emit(Event::JobFailed {
            job: job.to_string(),
            task_id,
            failure,
            at: Timestamp::now(),
        });
        if self.state.jobs.get(job).is_some_and(|j| j.phase == Phase::Failed) {
            self.block_behind(job, &format!("waits for job `{job}`, which failed"));
        }
        if counts {
            self.failed_this_run += 1;
            if let Some(max) = self.settings.max_fail
                && self.failed_this_run >= u64::from(max)
            {
                let failed = self.failed_this_run;
                self.stop(
                    StopKind::Limit,
                    format!("{failed} jobs failed (--max-fail {max})"),
                );
            }
        }
    }

    /// 401 and 402: no more creates; on 401 nothing more is sent at all.
    pub(super) fn fatal(&mut self, e: &ApiError) {
        self.stop(StopKind::Fatal, format!("{e}; no new jobs are submitted"));
        if matches!(e, ApiError::Unauthorized(_)) {
            self.halted = true;
        }
    }

    /// Stops new submissions (a fatal stop overrides another kind).
    pub fn stop(&mut self, kind: StopKind, reason: String) {
        match self.stop {
            Some(_) if kind == StopKind::Fatal => self.stop = Some(kind),
            Some(_) => {}
            None => {
                self.stop = Some(kind);
                self.emit(Event::SubmissionsStopped { reason });
            }
        }
    }

    pub(super) fn fail_local(&mut self, message: String) {
        self.local_failure.get_or_insert(message);
    }
}
