//! The work the dispatcher hands out, one API request or one job's downloads each, answered
//! with a [`Report`]; the main type here is [`Report`].
//!
//! A piece of work never touches run state: it does its one thing and reports back. The
//! dispatcher took the request's token before starting it, so nothing here waits on the
//! pacer. A create waits for its intent to be on disk before it is sent.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::RetryPolicy;
use super::spend::Reservation;
use crate::api::{ApiError, Client, CreateRequest, IdempotencyKey, ListQuery, Task, TaskList, TaskStatus};
use crate::download::{self, DownloadError, DownloadRequest, Downloaded, MediaKind};
use crate::journal::Durable;

/// Why a task is read on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadFor {
    /// Its status: the lists could not speak for it, or a timed re-read.
    Status,
    /// A fresh video URL for a finished task.
    Url,
    /// A last look before the job times out.
    Deadline,
    /// Fresh URLs of a finished job that other jobs refer to (`job://`).
    Upstream,
    /// A task that may be a lost create's, whose list item showed no seed: its own read may.
    Candidate,
}

/// Why a page of the task list is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ListFor {
    /// The sweep: every status at once.
    Sweep,
    /// One status, for tasks the sweep could not speak for.
    Status(TaskStatus),
}

/// What a piece of work found.
pub(super) enum Report {
    /// A create was answered (or its answer lost).
    Created {
        job: String,
        sent: Instant,
        result: Result<Task, ApiError>,
        reservation: Reservation,
    },
    /// A create was not sent: its intent could not be put on disk.
    IntentLost { job: String, error: String },
    /// A task was read.
    Read {
        job: String,
        task_id: String,
        why: ReadFor,
        result: Result<Task, ApiError>,
    },
    /// A page of the task list was read.
    Listed {
        what: ListFor,
        result: Result<TaskList, ApiError>,
    },
    /// A cancel was answered.
    Cancelled {
        job: String,
        task_id: String,
        result: Result<Option<Task>, ApiError>,
    },
    /// A job's downloads ended.
    Fetched {
        job: String,
        task_id: String,
        outcome: Fetch,
        retries: Vec<(String, Duration)>,
    },
}

/// How a job's downloads ended.
pub(super) enum Fetch {
    /// The video (and the last frame, when there was one) are on disk and verified.
    Done {
        video: Downloaded,
        frame: Option<Downloaded>,
        frame_missing: bool,
        bytes: u64,
    },
    /// A URL was refused or had expired: read the task for fresh ones.
    Refused { status: u16 },
    /// Downloads kept failing.
    Failed(String),
    /// The disk failed.
    Local(String),
}

/// Sends a create once its intent is on disk.
pub(super) async fn create(
    client: Client,
    job: String,
    request: CreateRequest,
    key: IdempotencyKey,
    intent: Option<Durable>,
    reservation: Reservation,
) -> Report {
    if let Some(intent) = intent
        && let Err(e) = intent.wait().await
    {
        return Report::IntentLost {
            job,
            error: e.to_string(),
        };
    }
    let sent = Instant::now();
    let result = client.create(&request, &key).await;
    Report::Created {
        job,
        sent,
        result,
        reservation,
    }
}

/// Reads one task.
pub(super) async fn read(client: Client, job: String, task_id: String, why: ReadFor) -> Report {
    let result = client.get(&task_id).await;
    Report::Read {
        job,
        task_id,
        why,
        result,
    }
}

/// Reads one page of the task list.
pub(super) async fn list(client: Client, what: ListFor, limit: u32) -> Report {
    let query = ListQuery {
        limit: Some(limit),
        status: match &what {
            ListFor::Sweep => None,
            ListFor::Status(s) => Some(s.clone()),
        },
    };
    let result = client.list(&query).await;
    Report::Listed { what, result }
}

/// Cancels one task.
pub(super) async fn cancel(client: Client, job: String, task_id: String) -> Report {
    let result = client.cancel(&task_id).await;
    Report::Cancelled { job, task_id, result }
}

/// Where a job's downloads go and how hard to try.
pub(super) struct FetchPlan {
    pub http: reqwest::Client,
    pub video: PathBuf,
    pub frame: PathBuf,
    pub wants_frame: bool,
    pub max_bytes: u64,
    pub retry: RetryPolicy,
    pub max_retries: u32,
}

/// Downloads a completed task's video, then its last frame when asked for one.
pub(super) async fn fetch(plan: FetchPlan, job: String, task: Task) -> Report {
    let mut retries = Vec::new();
    let outcome = fetch_all(&plan, &task, &mut retries).await;
    Report::Fetched {
        job,
        task_id: task.id,
        outcome,
        retries,
    }
}

async fn fetch_all(plan: &FetchPlan, task: &Task, retries: &mut Vec<(String, Duration)>) -> Fetch {
    let Some(url) = task.video_url.as_deref().filter(|u| !u.is_empty()) else {
        return Fetch::Failed("the completed task gave no video_url".into());
    };
    let video = match one(plan, url, &plan.video, MediaKind::Mp4, plan.max_bytes, retries).await {
        Ok(v) => v,
        Err(f) => return f,
    };
    let mut bytes = video.bytes - video.resumed_from;
    let (frame, frame_missing) = match task.last_frame_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) if plan.wants_frame => {
            let max = MediaKind::Png.default_max_bytes();
            match one(plan, url, &plan.frame, MediaKind::Png, max, retries).await {
                Ok(f) => {
                    bytes += f.bytes - f.resumed_from;
                    (Some(f), false)
                }
                Err(f) => return f,
            }
        }
        // The provider promises no last frame: a paid video is kept without one.
        None if plan.wants_frame => (None, true),
        _ => (None, false),
    };
    Fetch::Done {
        video,
        frame,
        frame_missing,
        bytes,
    }
}

/// One file, retried with backoff on transient errors.
async fn one(
    plan: &FetchPlan,
    url: &str,
    dest: &std::path::Path,
    kind: MediaKind,
    max_bytes: u64,
    retries: &mut Vec<(String, Duration)>,
) -> Result<Downloaded, Fetch> {
    loop {
        let req = DownloadRequest {
            max_bytes,
            ..DownloadRequest::new(url, dest, kind)
        };
        match download::download(&plan.http, &req).await {
            Ok(done) => return Ok(done),
            Err(DownloadError::Refused { status }) => return Err(Fetch::Refused { status }),
            Err(e @ DownloadError::Io { .. }) => return Err(Fetch::Local(e.to_string())),
            Err(e) => {
                if retries.len() as u32 >= plan.max_retries {
                    return Err(Fetch::Failed(e.to_string()));
                }
                let wait = plan.retry.delay(retries.len() as u32 + 1);
                retries.push((e.to_string(), wait));
                tokio::time::sleep(wait).await;
            }
        }
    }
}
