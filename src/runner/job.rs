//! One job's life: submit, poll, download, verify; the main function here is [`drive`].
//!
//! Each step is journaled before the next begins, so a job killed anywhere resumes from
//! where it stood: a create is never sent twice without first looking for the task it may
//! have made, and a finished video is never generated again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::reconcile::{self, Reconciled};
use super::{Ctx, StopKind, jittered};
use crate::api::{ApiError, IdempotencyKey, Task, TaskStatus, Timestamp};
use crate::download::{self, DownloadError, DownloadRequest, MediaKind};
use crate::events::{Event, Failure, FailureKind};
use crate::hex::hex;
use crate::journal::JournalError;
use crate::state::{JobState, Phase};

/// Why a job task stopped early: the run is stopping, or the disk failed.
pub(super) struct Abort;

impl From<JournalError> for Abort {
    fn from(_: JournalError) -> Abort {
        Abort
    }
}

type Step<T> = Result<T, Abort>;

/// Polls a long job less often: the interval grows by this each poll past the first minute.
const POLL_GROWTH: f64 = 1.25;
/// Largest poll interval, as a multiple of `--poll-interval`.
const POLL_MAX_FACTOR: u32 = 5;
/// URL refreshes before a download gives up.
const MAX_URL_REFRESHES: u32 = 5;

/// Runs one job from wherever it stands until done, failed, or the run stops.
pub(super) async fn drive(ctx: &Ctx, run_id: &str, id: &str, mut slot: Option<OwnedSemaphorePermit>) {
    let result = async {
        loop {
            let Some(job) = ctx.state().jobs.get(id).cloned() else {
                return Ok(());
            };
            match job.phase {
                Phase::Pending => {
                    if !submit(ctx, run_id, &job).await? {
                        return Ok(());
                    }
                }
                Phase::Submitting => {
                    let intent_at = job.intent_at.unwrap_or_else(Timestamp::now);
                    let lock = ctx.create_lock(reconcile::match_key(&job.request));
                    let _guard = lock.lock().await;
                    match reconcile_task(ctx, &job, intent_at).await? {
                        Some(task) => {
                            ctx.tokens_committed
                                .fetch_add(job.estimated_tokens.unwrap_or(0), Ordering::SeqCst);
                            adopt(ctx, &job, &task, true).await?
                        }
                        None => {
                            ctx.emit(Event::SubmitNotCreated {
                                job: job.id.clone(),
                                reason: "no task found for the earlier create".into(),
                            })
                            .await?;
                        }
                    }
                }
                Phase::Submitted => {
                    let finished = poll(ctx, &job).await?;
                    slot.take();
                    match finished {
                        Some(task) => fetch(ctx, &job, Some(task)).await?,
                        None => return Ok(()),
                    }
                }
                Phase::Generated => {
                    slot.take();
                    fetch(ctx, &job, None).await?;
                }
                Phase::Done | Phase::Failed => return Ok(()),
            }
            // A failure that resumes by itself (poll or download) ends this run's work on it.
            let state = ctx.state();
            if let Some(j) = state.jobs.get(id)
                && matches!(j.phase, Phase::Submitted | Phase::Generated)
                && j.failure.is_some()
            {
                return Ok(());
            }
        }
    }
    .await;
    let _: Step<()> = result;
}

fn idempotency_key(run_id: &str, job: &JobState) -> IdempotencyKey {
    let mut h = Sha256::new();
    h.update(run_id.as_bytes());
    h.update([0]);
    h.update(job.id.as_bytes());
    h.update([0]);
    h.update(job.task_ids.len().to_le_bytes());
    IdempotencyKey::new(format!("vidbatch-{}", &hex(&h.finalize())[..32]))
}

async fn fail(ctx: &Ctx, job: &str, task_id: Option<String>, failure: Failure) -> Step<()> {
    ctx.emit(Event::JobFailed {
        job: job.to_string(),
        task_id,
        failure: failure.clone(),
        at: Timestamp::now(),
    })
    .await?;
    if !failure.kind.resumes_by_itself() {
        let failed = ctx.failed_this_run.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(max) = ctx.settings.max_fail
            && failed >= u64::from(max)
        {
            ctx.stop_submissions(
                StopKind::Limit,
                format!("{failed} jobs failed (--max-fail {max})"),
            )
            .await;
        }
    }
    Ok(())
}

fn api_failure(kind: FailureKind, e: &ApiError) -> Failure {
    Failure {
        kind,
        http_status: e.status(),
        code: e.detail().map(|d| d.code.0.clone()).filter(|c| !c.is_empty()),
        message: e.to_string(),
    }
}

async fn fatal(ctx: &Ctx, e: &ApiError) {
    ctx.stop_submissions(StopKind::Fatal, format!("{e}; no new jobs are submitted"))
        .await;
}

/// Sends the job's create. Returns whether the job has a task now.
///
/// The intent is on disk before the request leaves. Creates that a task could not tell apart
/// (same [`reconcile::match_key`]) are sent one at a time, so a lost answer can be matched
/// to its task without doubt; the lock covers the intent and the request, not the rest.
async fn submit(ctx: &Ctx, run_id: &str, job: &JobState) -> Step<bool> {
    let lock = ctx.create_lock(reconcile::match_key(&job.request));
    let key = idempotency_key(run_id, job);
    let cost = job.estimated_tokens.unwrap_or(0);
    let mut retries = 0u32;
    let mut attempt = job.attempts;
    loop {
        if ctx.submissions_stopped() {
            return Ok(false);
        }
        let committed = ctx.tokens_committed.fetch_add(cost, Ordering::SeqCst);
        if let Some(budget) = ctx.settings.budget_tokens
            && committed + cost > budget
        {
            ctx.tokens_committed.fetch_sub(cost, Ordering::SeqCst);
            ctx.stop_submissions(
                StopKind::Limit,
                format!("the token budget ({budget}) would be passed (--budget-tokens)"),
            )
            .await;
            return Ok(false);
        }
        let guard = lock.lock().await;
        if ctx.submissions_stopped() {
            ctx.tokens_committed.fetch_sub(cost, Ordering::SeqCst);
            return Ok(false);
        }
        // The intent is written under the lock: for look-alike creates, intent order is send
        // order, which is what lets a resumed run give each lost create its own task.
        attempt += 1;
        let intent_at = Timestamp::now();
        ctx.emit(Event::SubmitIntent {
            job: job.id.clone(),
            attempt,
            idempotency_key: key.expose().to_string(),
            at: intent_at,
        })
        .await?;
        ctx.counters.creates.fetch_add(1, Ordering::Relaxed);
        let request = job.request.clone();
        let k = key.clone();
        let result = ctx.api(|c| async move { c.create(&request, &k).await }).await;
        let result = match result {
            Err(e @ ApiError::AmbiguousCreate { .. }) => {
                ctx.counters.ambiguous_creates.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %job.id, error = %e, "create answer lost; looking for the task");
                match reconcile_task(ctx, job, intent_at).await? {
                    Some(task) => Ok((task, true)),
                    None => Err(e),
                }
            }
            other => other.map(|task| (task, false)),
        };
        let e = match result {
            Ok((task, reconciled)) => {
                // Recorded before the lock is let go, so no reconciliation can take the task,
                // and the next look-alike intent's sync puts this record on disk first: a crash
                // leaves at most one look-alike create without its task on disk.
                adopt(ctx, job, &task, reconciled).await?;
                drop(guard);
                return Ok(true);
            }
            Err(e) => e,
        };
        // Also recorded under the lock: were this record lost while the next look-alike
        // intent was kept, the next create's task could pass for this one's.
        ctx.emit(Event::SubmitNotCreated {
            job: job.id.clone(),
            reason: match &e {
                ApiError::AmbiguousCreate { .. } => format!("{e}; no task found"),
                _ => e.to_string(),
            },
        })
        .await?;
        drop(guard);
        ctx.tokens_committed.fetch_sub(cost, Ordering::SeqCst);
        match &e {
            ApiError::RateLimited { .. } => {}
            ApiError::Transient { .. } | ApiError::AmbiguousCreate { .. } => {
                retries += 1;
                if retries > ctx.settings.max_retries {
                    fail(ctx, &job.id, None, api_failure(FailureKind::SubmitFailed, &e)).await?;
                    return Ok(false);
                }
                let wait = ctx.settings.retry.delay(retries);
                ctx.note_retry(&job.id, "create", retries, e.to_string(), wait)
                    .await;
                tokio::time::sleep(wait).await;
            }
            ApiError::Unauthorized(_) | ApiError::Payment(_) => {
                fatal(ctx, &e).await;
                return Ok(false);
            }
            ApiError::InvalidRequest { .. } | ApiError::NotFound(_) | ApiError::Conflict(_) => {
                fail(ctx, &job.id, None, api_failure(FailureKind::Rejected, &e)).await?;
                return Ok(false);
            }
        }
    }
}

/// Settles the creates an earlier run left without an answer, one at a time in the order they
/// were sent, each taking the oldest matching task: look-alike creates were sent in intent
/// order, so this gives each its own task.
pub(super) async fn reconcile_interrupted(ctx: &Ctx, plan: &[String]) {
    let mut pending: Vec<JobState> = {
        let state = ctx.state();
        plan.iter()
            .filter_map(|id| state.jobs.get(id))
            .filter(|j| j.phase == Phase::Submitting)
            .cloned()
            .collect()
    };
    pending.sort_by_key(|j| j.intent_at);
    for job in pending {
        let intent_at = job.intent_at.unwrap_or_else(Timestamp::now);
        let settled = match reconcile_task(ctx, &job, intent_at).await {
            Ok(Some(task)) => {
                ctx.tokens_committed
                    .fetch_add(job.estimated_tokens.unwrap_or(0), Ordering::SeqCst);
                adopt(ctx, &job, &task, true).await
            }
            Ok(None) => ctx
                .emit(Event::SubmitNotCreated {
                    job: job.id.clone(),
                    reason: "no task found for the earlier create".into(),
                })
                .await
                .map_err(Abort::from),
            Err(abort) => Err(abort),
        };
        if settled.is_err() {
            return;
        }
    }
}

/// Looks for the task a lost create may have made, retrying the listing on transient errors.
async fn reconcile_task(ctx: &Ctx, job: &JobState, intent_at: Timestamp) -> Step<Option<Task>> {
    let mut retries = 0;
    loop {
        match reconcile::find(ctx, job, intent_at).await {
            Ok(Reconciled::Found(task)) => {
                ctx.counters.reconciled.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(*task));
            }
            Ok(Reconciled::NotFound) => return Ok(None),
            Err(e) if e.is_fatal() => {
                fatal(ctx, &e).await;
                return Err(Abort);
            }
            Err(e) => {
                retries += 1;
                if retries > ctx.settings.max_retries.max(3) * 2 {
                    // Sending again without knowing could pay twice: leave it for a later run.
                    tracing::warn!(job = %job.id, error = %e, "cannot list tasks to reconcile a lost create");
                    return Err(Abort);
                }
                let wait = ctx.settings.retry.delay(retries);
                ctx.note_retry(&job.id, "reconcile", retries, e.to_string(), wait)
                    .await;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn adopt(ctx: &Ctx, job: &JobState, task: &Task, reconciled: bool) -> Step<()> {
    ctx.emit(Event::Submitted {
        job: job.id.clone(),
        task_id: task.id.clone(),
        at: task.created_at.unwrap_or_else(Timestamp::now),
        reconciled,
    })
    .await?;
    Ok(())
}

/// Polls the job's task until it finishes. Returns the finished task when it completed.
async fn poll(ctx: &Ctx, job: &JobState) -> Step<Option<Task>> {
    let Some(task_id) = job.task_id().map(str::to_string) else {
        return Ok(None);
    };
    let base = ctx.settings.poll_interval;
    let started = Instant::now();
    let deadline = started + remaining_time(ctx, job);
    let mut interval = base;
    let mut errors = 0u32;
    let mut last_status: Option<TaskStatus> = None;
    let _registration = ctx.sweeper.register(&task_id, job.submitted_at);
    loop {
        // With many tasks in flight the sweeps of the task lists bring news of the task;
        // otherwise (or when they cannot tell) the task is read on its own.
        let listed = if ctx.sweeper.sweeping() {
            let news = ctx.sweeper.news(&task_id);
            tokio::select! {
                n = news => n.unwrap_or(None),
                () = tokio::time::sleep_until(deadline) => None,
            }
        } else {
            tokio::time::sleep(jittered(interval)).await;
            None
        };
        if started.elapsed() > Duration::from_secs(60) {
            interval = interval.mul_f64(POLL_GROWTH).min(base * POLL_MAX_FACTOR);
        }
        if Instant::now() >= deadline {
            let id = task_id.clone();
            let _ = ctx.api(|c| async move { c.cancel(&id).await }).await;
            fail(
                ctx,
                &job.id,
                Some(task_id.clone()),
                Failure {
                    kind: FailureKind::TimedOut,
                    http_status: None,
                    code: None,
                    message: format!(
                        "not finished after {} (--job-timeout); cancelled",
                        humantime::format_duration(ctx.settings.job_timeout)
                    ),
                },
            )
            .await?;
            return Ok(None);
        }
        if let Some(task) = listed {
            let task = Arc::unwrap_or_clone(task);
            if let Some(done) = on_task(ctx, job, &task_id, task, &mut last_status).await? {
                return Ok(done);
            }
            continue;
        }
        let id = task_id.clone();
        match ctx.api(|c| async move { c.get(&id).await }).await {
            Ok(task) => {
                errors = 0;
                if let Some(done) = on_task(ctx, job, &task_id, task, &mut last_status).await? {
                    return Ok(done);
                }
            }
            Err(ApiError::RateLimited { .. }) => {}
            Err(e @ ApiError::Transient { .. }) => {
                errors += 1;
                if errors > ctx.settings.max_retries {
                    fail(
                        ctx,
                        &job.id,
                        Some(task_id.clone()),
                        api_failure(FailureKind::PollFailed, &e),
                    )
                    .await?;
                    return Ok(None);
                }
                let wait = ctx.settings.retry.delay(errors);
                ctx.note_retry(&job.id, "poll", errors, e.to_string(), wait).await;
                tokio::time::sleep(wait).await;
            }
            Err(e) if e.is_fatal() => {
                fatal(ctx, &e).await;
                return Err(Abort);
            }
            Err(e @ ApiError::NotFound(_)) => {
                fail(
                    ctx,
                    &job.id,
                    Some(task_id.clone()),
                    api_failure(FailureKind::Expired, &e),
                )
                .await?;
                return Ok(None);
            }
            Err(e) => {
                fail(
                    ctx,
                    &job.id,
                    Some(task_id.clone()),
                    api_failure(FailureKind::Rejected, &e),
                )
                .await?;
                return Ok(None);
            }
        }
    }
}

/// Time left for the job under `--job-timeout`, counted from its task's creation.
fn remaining_time(ctx: &Ctx, job: &JobState) -> Duration {
    let limit = ctx.settings.job_timeout;
    let Some(submitted) = job.submitted_at else {
        return limit;
    };
    let age = Timestamp::now().0 - submitted.0;
    let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
    limit.saturating_sub(age)
}

/// Handles one read of the task. `Some(Some(task))`: completed; `Some(None)`: finished
/// otherwise; `None`: still running.
async fn on_task(
    ctx: &Ctx,
    job: &JobState,
    task_id: &str,
    task: Task,
    last: &mut Option<TaskStatus>,
) -> Step<Option<Option<Task>>> {
    let failure = |kind: FailureKind, default: &str| {
        let (code, message) = match &task.error {
            Some(e) => (
                Some(e.code.0.clone()).filter(|c| !c.is_empty()),
                if e.message.is_empty() {
                    default.to_string()
                } else {
                    e.message.clone()
                },
            ),
            None => (None, default.to_string()),
        };
        Failure {
            kind,
            http_status: None,
            code,
            message,
        }
    };
    match &task.status {
        TaskStatus::Completed => {
            ctx.emit(Event::TaskCompleted {
                job: job.id.clone(),
                task_id: task_id.to_string(),
                usage: task.usage,
                completed_at: task.completed_at,
                created_at: task.created_at,
                video_url_expires_at: task.video_url_expires_at,
                at: Timestamp::now(),
            })
            .await?;
            Ok(Some(Some(task)))
        }
        TaskStatus::Failed => {
            let f = failure(FailureKind::TaskFailed, "the task failed");
            fail(ctx, &job.id, Some(task_id.to_string()), f).await?;
            Ok(Some(None))
        }
        TaskStatus::Expired => {
            let f = failure(FailureKind::Expired, "the task expired");
            fail(ctx, &job.id, Some(task_id.to_string()), f).await?;
            Ok(Some(None))
        }
        TaskStatus::Cancelled => {
            let f = failure(FailureKind::Cancelled, "the task was cancelled");
            fail(ctx, &job.id, Some(task_id.to_string()), f).await?;
            Ok(Some(None))
        }
        status => {
            if last.as_ref() != Some(status) {
                *last = Some(status.clone());
                ctx.emit(Event::TaskProgress {
                    job: job.id.clone(),
                    task_id: task_id.to_string(),
                    status: status.clone(),
                    at: Timestamp::now(),
                })
                .await?;
            }
            Ok(None)
        }
    }
}

/// Reads the task for a fresh URL.
async fn refresh(ctx: &Ctx, job: &JobState, task_id: &str) -> Result<Task, ApiError> {
    let mut retries = 0;
    loop {
        let id = task_id.to_string();
        match ctx.api(|c| async move { c.get(&id).await }).await {
            Ok(task) => return Ok(task),
            Err(ApiError::RateLimited { .. }) => {}
            Err(e @ ApiError::Transient { .. }) => {
                retries += 1;
                if retries > ctx.settings.max_retries {
                    return Err(e);
                }
                let wait = ctx.settings.retry.delay(retries);
                ctx.note_retry(&job.id, "get", retries, e.to_string(), wait).await;
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn url_expired(task: &Task) -> bool {
    task.video_url_expires_at
        .is_some_and(|at| at.0 <= Timestamp::now().0 + time::Duration::seconds(2))
}

/// Downloads the job's video (and last frame), verifies them and marks the job done.
async fn fetch(ctx: &Ctx, job: &JobState, task: Option<Task>) -> Step<()> {
    let Some(task_id) = job.task_id().map(str::to_string) else {
        return Ok(());
    };
    let out = ctx.settings.out_dir.clone();
    let video_rel = format!("videos/{}.mp4", job.name);
    let frame_rel = format!("videos/{}.last.png", job.name);
    let wants_frame = job.request.return_last_frame == Some(true);
    let mut task = task;
    let mut refreshes = 0u32;
    let mut retries = 0u32;
    let mut video: Option<download::Downloaded> = None;
    loop {
        // A task read long ago, or with an expired URL, is read again.
        let current = match task.take() {
            Some(t) if !url_expired(&t) => t,
            stale => {
                if stale.is_some() {
                    tracing::info!(job = %job.id, "video URL past its expiry; reading the task for a fresh one");
                    ctx.emit(Event::UrlRefreshed {
                        job: job.id.clone(),
                        status: 0,
                    })
                    .await?;
                }
                match refresh(ctx, job, &task_id).await {
                    Ok(t) => t,
                    Err(e) if e.is_fatal() => {
                        fatal(ctx, &e).await;
                        return Err(Abort);
                    }
                    Err(e) => {
                        let kind = match e {
                            ApiError::NotFound(_) => FailureKind::Expired,
                            _ => FailureKind::DownloadFailed,
                        };
                        return fail(ctx, &job.id, Some(task_id), api_failure(kind, &e)).await;
                    }
                }
            }
        };
        if current.status != TaskStatus::Completed {
            let message = format!(
                "the task is {} where a finished video was expected",
                current.status.as_str()
            );
            let kind = match current.status {
                TaskStatus::Expired => FailureKind::Expired,
                _ => FailureKind::DownloadFailed,
            };
            return fail(ctx, &job.id, Some(task_id), plain(kind, message)).await;
        }
        let target = match (
            &video,
            current.video_url.as_deref(),
            current.last_frame_url.as_deref(),
        ) {
            (None, Some(url), _) => Some((url.to_string(), video_rel.clone(), MediaKind::Mp4)),
            (Some(_), _, Some(url)) if wants_frame => {
                Some((url.to_string(), frame_rel.clone(), MediaKind::Png))
            }
            (Some(_), _, None) if wants_frame => {
                return fail(
                    ctx,
                    &job.id,
                    Some(task_id),
                    plain(
                        FailureKind::DownloadFailed,
                        "the task gave no last_frame_url".into(),
                    ),
                )
                .await;
            }
            (Some(_), _, _) => None,
            (None, None, _) => {
                return fail(
                    ctx,
                    &job.id,
                    Some(task_id),
                    plain(
                        FailureKind::DownloadFailed,
                        "the completed task gave no video_url".into(),
                    ),
                )
                .await;
            }
        };
        let Some((url, rel, kind)) = target else {
            break;
        };
        let dest = out.join(&rel);
        let result = {
            let _permit = ctx.downloads.acquire().await;
            download::download(
                &ctx.http,
                &DownloadRequest {
                    max_bytes: ctx.settings.max_video_bytes,
                    ..DownloadRequest::new(&url, &dest, kind)
                },
            )
            .await
        };
        match result {
            Ok(done) => {
                ctx.counters
                    .bytes_downloaded
                    .fetch_add(done.bytes - done.resumed_from, Ordering::Relaxed);
                if kind == MediaKind::Mp4 {
                    video = Some(done);
                }
                if !wants_frame || kind == MediaKind::Png {
                    break;
                }
                task = Some(current);
            }
            Err(DownloadError::Refused { status }) => {
                refreshes += 1;
                if refreshes > MAX_URL_REFRESHES {
                    let message = format!("the video URL was refused (HTTP {status}) {refreshes} times");
                    return fail(
                        ctx,
                        &job.id,
                        Some(task_id),
                        plain(FailureKind::DownloadFailed, message),
                    )
                    .await;
                }
                tracing::info!(job = %job.id, status, "video URL refused or expired; reading the task for a fresh one");
                ctx.emit(Event::UrlRefreshed {
                    job: job.id.clone(),
                    status,
                })
                .await?;
            }
            Err(e @ DownloadError::Io { .. }) => {
                ctx.fail_local(e.to_string());
                ctx.stop_submissions(StopKind::Fatal, format!("cannot write the video: {e}"))
                    .await;
                return Err(Abort);
            }
            Err(e) => {
                retries += 1;
                if retries > ctx.settings.max_retries {
                    return fail(
                        ctx,
                        &job.id,
                        Some(task_id),
                        plain(FailureKind::DownloadFailed, e.to_string()),
                    )
                    .await;
                }
                let wait = ctx.settings.retry.delay(retries);
                ctx.note_retry(&job.id, "download", retries, e.to_string(), wait)
                    .await;
                tokio::time::sleep(wait).await;
                task = Some(current);
            }
        }
    }
    let Some(video) = video else {
        return Ok(());
    };
    ctx.emit(Event::JobDone {
        job: job.id.clone(),
        task_id,
        path: video_rel,
        bytes: video.bytes,
        sha256: video.sha256,
        last_frame: wants_frame.then_some(frame_rel),
        at: Timestamp::now(),
    })
    .await?;
    Ok(())
}

fn plain(kind: FailureKind, message: String) -> Failure {
    Failure {
        kind,
        http_status: None,
        code: None,
        message,
    }
}

/// Checks a done job's files against the state: present, same size and sha256, valid media.
pub(super) fn verify_done(ctx: &Ctx, job: &JobState) -> Result<(), String> {
    let out = &ctx.settings.out_dir;
    let Some(rel) = &job.path else {
        return Err("no file recorded".into());
    };
    let found = download::verify_file(&out.join(rel), MediaKind::Mp4).map_err(|e| e.to_string())?;
    if Some(found.bytes) != job.bytes || Some(&found.sha256) != job.sha256.as_ref() {
        return Err(format!(
            "{rel} changed since it was downloaded (size or sha256 differ)"
        ));
    }
    if let Some(frame) = &job.last_frame
        && let Err(e) = download::verify_file(&out.join(frame), MediaKind::Png)
    {
        return Err(format!("{frame}: {e}"));
    }
    Ok(())
}
