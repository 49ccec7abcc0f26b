//! What a task shows: whether its URL is there and fresh, and the failure it stands for.

use std::time::Duration;

use crate::api::{ApiError, Task, Timestamp};
use crate::events::{Failure, FailureKind};

use super::*;

pub(super) fn has_url(task: &Task) -> bool {
    task.video_url.as_deref().is_some_and(|u| !u.is_empty())
}

/// Whether a task's video URL is past (or within 2 s of) its expiry, read on the server's
/// clock (`offset`: how far ahead of ours it is).
pub(super) fn url_expired(task: &Task, offset: Option<time::Duration>) -> bool {
    let server_now = Timestamp::now().0 + offset.unwrap_or(time::Duration::ZERO);
    task.video_url_expires_at
        .is_some_and(|at| at.0 <= server_now + time::Duration::seconds(2))
}

/// Whether a task's URLs live long enough to hand to another job: past the lesser of
/// [`URL_MARGIN`] and half their lifetime, on the server's clock.
pub(super) fn url_fresh(task: &Task, offset: Option<time::Duration>) -> bool {
    let Some(at) = task.video_url_expires_at else {
        return true;
    };
    let ttl = task
        .video_url_ttl
        .filter(|t| t.is_finite() && *t > 0.0)
        .map_or(URL_MARGIN * 6, Duration::from_secs_f64);
    let margin = URL_MARGIN.min(ttl / 2);
    let server_now = Timestamp::now().0 + offset.unwrap_or(time::Duration::ZERO);
    let margin = time::Duration::try_from(margin).unwrap_or(time::Duration::ZERO);
    at.0 > server_now + margin
}

pub(super) fn api_failure(kind: FailureKind, e: &ApiError) -> Failure {
    Failure {
        kind,
        http_status: e.status(),
        code: e.detail().map(|d| d.code.0.clone()).filter(|c| !c.is_empty()),
        message: e.to_string(),
    }
}

pub(super) fn plain(kind: FailureKind, message: String) -> Failure {
    Failure {
        kind,
        http_status: None,
        code: None,
        message,
    }
}

/// A task's own error, or `default` when it gave none.
pub(super) fn task_failure(task: &Task, kind: FailureKind, default: &str) -> Failure {
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
}
