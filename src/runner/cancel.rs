//! `vidbatch cancel`: cancel every task of an out dir still queued or processing on the
//! server; the main function here is [`cancel_run`].
//!
//! The cancels go through the same [`Pacer`] as a run's requests and honour the server's
//! waits. A task that finished before its cancel is no error: a completed one stays for the
//! next run to download, a failed one keeps its own error. Each cancellation is journaled, so
//! `status` and `report` show it. A create whose answer was lost is looked up in the lists by
//! the seed its intent recorded, and cancelled too.

use std::path::Path;

use super::reconcile::{self, Found};
use super::sweep::PAGE;
use super::{Pacer, RetryPolicy, RunError};
use crate::api::{ApiError, Client, ListQuery, Task, TaskList, TaskStatus, Timestamp};
use crate::events::{Event, Failure, FailureKind};
use crate::journal::{self, Journal};
use crate::outdir;
use crate::state::{JobState, Phase};

/// What `vidbatch cancel` did, task by task.
#[derive(Debug, Default)]
pub struct CancelSummary {
    /// Tasks cancelled now: `(job, task)`.
    pub cancelled: Vec<(String, String)>,
    /// Tasks that had finished already: `(job, task, status)`.
    pub finished: Vec<(String, String, String)>,
    /// Tasks the server no longer knows (expired): `(job, task)`.
    pub gone: Vec<(String, String)>,
    /// Tasks whose cancel failed: `(job, task, error)`.
    pub errors: Vec<(String, String, String)>,
    /// Creates whose answer was lost (no task id known): a run settles them first.
    pub unsettled: Vec<String>,
}

/// Cancels the out dir's tasks in flight, `rpm` requests a minute at most.
pub async fn cancel_run(
    out: &Path,
    client: &Client,
    rpm: u32,
    retry: RetryPolicy,
) -> Result<CancelSummary, RunError> {
    let _lock = outdir::lock(out)?;
    let path = out.join(outdir::STATE_FILE);
    let state = journal::load(&path)?.state;
    let journal = Journal::open(&path)?;
    let mut summary = CancelSummary::default();
    let mut pacer = Pacer::new(rpm, 1, retry);
    // Creates whose answer was lost are looked up first, by the seed their intent recorded.
    let lost: Vec<&JobState> = state
        .jobs_in_order()
        .filter(|j| j.phase == Phase::Submitting)
        .collect();
    let pages = if lost.is_empty() {
        Vec::new()
    } else {
        list_recent(client, &mut pacer).await
    };
    let mut found: Vec<(String, String)> = Vec::new();
    for job in lost {
        let claimed = |t: &str| state.claimed_tasks.contains(t) || found.iter().any(|(_, f)| f == t);
        let (sent, drawn) = (job.sent_request(), job.request.draws_seed());
        let mut verdict = reconcile::find(&sent, drawn, None, &pages, claimed);
        // Fits whose list items show no seed are read on their own, which may show it.
        let read = match &verdict {
            Found::Unproven(fits) if drawn => read_seedless(client, &mut pacer, fits).await,
            _ => TaskList::default(),
        };
        if !read.items.is_empty() {
            verdict = reconcile::find(&sent, drawn, None, [&read], claimed);
        }
        match verdict {
            Found::Proven(task) => {
                journal
                    .append(&Event::Submitted {
                        job: job.id.clone(),
                        task_id: task.id.clone(),
                        at: task.created_at.unwrap_or_else(Timestamp::now),
                        reconciled: true,
                    })
                    .await?;
                found.push((job.id.clone(), task.id.clone()));
            }
            _ => summary.unsettled.push(job.id.clone()),
        }
    }
    let in_flight = state
        .jobs_in_order()
        .filter(|j| j.phase == Phase::Submitted)
        .filter_map(|j| Some((j.id.clone(), j.task_id()?.to_string())))
        .chain(found);
    for (id, task) in in_flight {
        let event = cancel_one(client, &mut pacer, &id, &task, &mut summary).await;
        if let Some(event) = event {
            journal.append(&event).await?;
        }
    }
    journal.sync().await?;
    Ok(summary)
}

/// The tasks among `fits` whose list items show no seed, each as its own read shows it (a
/// read that fails is left out).
async fn read_seedless(client: &Client, pacer: &mut Pacer, fits: &[&Task]) -> TaskList {
    let mut read = TaskList::default();
    for fit in fits.iter().filter(|t| t.seed.is_none()) {
        if let Ok(task) = paced(pacer, 10, || client.get(&fit.id)).await {
            read.items.push(task);
        }
    }
    read
}

/// The newest page of every status, to find the tasks of lost creates (a page that fails is
/// left out: those creates stay unsettled).
async fn list_recent(client: &Client, pacer: &mut Pacer) -> Vec<TaskList> {
    let mut pages = Vec::new();
    let statuses = [None, Some(TaskStatus::Queued), Some(TaskStatus::Processing)];
    for status in statuses {
        let query = ListQuery {
            limit: Some(PAGE),
            status,
        };
        if let Ok(page) = paced(pacer, 10, || client.list(&query)).await {
            pages.push(page);
        }
    }
    pages
}

/// One request through the pacer, waiting out 429s (a limit that never clears ends it after
/// the policy's retries).
async fn paced<T, F, Fut>(pacer: &mut Pacer, retries: u32, call: F) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut limited = 0;
    loop {
        while let Err(at) = pacer.try_take() {
            tokio::time::sleep_until(at).await;
        }
        match call().await {
            Err(ApiError::RateLimited {
                retry_after, limit, ..
            }) if limited < retries.max(10) => {
                limited += 1;
                pacer.on_rate_limited(retry_after, limit);
            }
            other => {
                pacer.on_success();
                return other;
            }
        }
    }
}

/// Cancels one task; returns the record to journal, if any.
async fn cancel_one(
    client: &Client,
    pacer: &mut Pacer,
    job: &str,
    task: &str,
    summary: &mut CancelSummary,
) -> Option<Event> {
    match paced(pacer, 10, || client.cancel(task)).await {
        Ok(_) => {
            summary.cancelled.push((job.to_string(), task.to_string()));
            Some(failed(
                job,
                task,
                FailureKind::Cancelled,
                None,
                "cancelled with `vidbatch cancel`".into(),
            ))
        }
        Err(ApiError::Conflict(_)) => {
            // Finished before the cancel: see how.
            match paced(pacer, 10, || client.get(task)).await {
                Ok(t) => finished(job, t, summary),
                Err(e) => {
                    summary
                        .errors
                        .push((job.to_string(), task.to_string(), e.to_string()));
                    None
                }
            }
        }
        Err(ApiError::NotFound(_)) => {
            summary.gone.push((job.to_string(), task.to_string()));
            Some(failed(
                job,
                task,
                FailureKind::Expired,
                None,
                "the server no longer knows the task".into(),
            ))
        }
        Err(e) => {
            summary
                .errors
                .push((job.to_string(), task.to_string(), e.to_string()));
            None
        }
    }
}

/// A task that had finished before its cancel: a completed one stays for the next run to
/// fetch; any other keeps its own error.
fn finished(job: &str, t: Task, summary: &mut CancelSummary) -> Option<Event> {
    summary
        .finished
        .push((job.to_string(), t.id.clone(), t.status.as_str().to_string()));
    let kind = match t.status {
        TaskStatus::Failed => FailureKind::TaskFailed,
        TaskStatus::Expired => FailureKind::Expired,
        TaskStatus::Cancelled => FailureKind::Cancelled,
        _ => return None,
    };
    let (code, message) = match &t.error {
        Some(e) => (
            Some(e.code.0.clone()).filter(|c| !c.is_empty()),
            e.message.clone(),
        ),
        None => (None, format!("the task was {}", t.status.as_str())),
    };
    Some(failed(job, &t.id, kind, code, message))
}

fn failed(job: &str, task: &str, kind: FailureKind, code: Option<String>, message: String) -> Event {
    Event::JobFailed {
        job: job.to_string(),
        task_id: Some(task.to_string()),
        failure: Failure {
            kind,
            http_status: None,
            code,
            message,
        },
        at: Timestamp::now(),
    }
}
