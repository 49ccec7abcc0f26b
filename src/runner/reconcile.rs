//! Finding the task a lost create may have made; the main function here is [`find`].
//!
//! A create whose answer was lost (timeout, dropped connection, 5xx after sending) may have
//! made a task that is being paid for. Before anything is sent again, recent tasks are listed
//! and matched on what a task shows of its request (model, prompt when echoed, ratio,
//! resolution, duration, frames, seed, service tier) and on creation time, skipping tasks
//! any job already owns. Creates that look alike to a task never run at once (the runner holds
//! a lock per [`match_key`]), so a match can only be this job's own task.

use std::time::Duration;

use super::Ctx;
use crate::api::{ApiError, CreateRequest, ListQuery, Task, TaskList, TaskStatus, Timestamp};
use crate::state::JobState;

/// Largest page the API gives.
const PAGE: u32 = 100;
/// How far before the intent a server's clock may put the task's creation.
const CLOCK_SKEW: time::Duration = time::Duration::seconds(60);
/// Listings before concluding no task was made (a new task may take a moment to be listed).
const PASSES: u32 = 2;
/// Wait before each listing after the first.
const LIST_LAG: Duration = Duration::from_millis(400);

/// What a search found.
pub(super) enum Reconciled {
    /// The task the create made.
    Found(Box<Task>),
    /// No such task: the create made nothing.
    NotFound,
}

/// What a task shows of a request: creates with equal keys could not be told apart.
pub(super) fn match_key(req: &CreateRequest) -> String {
    serde_json::json!([
        req.model,
        req.ratio,
        req.resolution,
        req.duration,
        req.frames,
        req.seed,
        req.service_tier,
        req.draft
    ])
    .to_string()
}

fn matches(req: &CreateRequest, task: &Task) -> bool {
    fn same<T: PartialEq>(asked: &Option<T>, shown: &Option<T>) -> bool {
        match (asked, shown) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        }
    }
    let duration_ok = match (req.duration, task.duration) {
        (Some(d), Some(shown)) if d > 0 => (shown - d as f64).abs() < 0.5,
        _ => true,
    };
    task.model.as_deref().is_none_or(|m| m == req.model)
        && task.prompt.as_deref().is_none_or(|p| p == req.prompt)
        && same(&req.ratio, &task.ratio)
        && same(&req.resolution, &task.resolution)
        && same(&req.service_tier, &task.service_tier)
        && same(&req.frames, &task.frames)
        && (req.seed.is_none_or(|s| s < 0) || same(&req.seed, &task.seed))
        && duration_ok
}

/// Whether a newest-first page surely holds every task created since `since`.
fn covers(page: &TaskList, since: Timestamp) -> bool {
    if (page.items.len() as u32) < PAGE || page.total.is_some_and(|t| t <= page.items.len() as u64) {
        return true;
    }
    page.items
        .iter()
        .filter_map(|t| t.created_at)
        .min()
        .is_some_and(|oldest| oldest < since)
}

/// Lists recent tasks and returns the unowned one matching `job` created after `intent_at`.
pub(super) async fn find(ctx: &Ctx, job: &JobState, intent_at: Timestamp) -> Result<Reconciled, ApiError> {
    let since = Timestamp(intent_at.0 - CLOCK_SKEW);
    for pass in 0..PASSES {
        if pass > 0 {
            tokio::time::sleep(LIST_LAG * pass).await;
        }
        let mut seen = list(ctx, None).await?;
        if !covers(&seen, since) {
            // More tasks than one page: look in each status's newest page too.
            for status in [
                TaskStatus::Queued,
                TaskStatus::Processing,
                TaskStatus::Completed,
                TaskStatus::Failed,
                TaskStatus::Cancelled,
            ] {
                let page = list(ctx, Some(status)).await?;
                seen.items.extend(page.items);
            }
        }
        let claimed = ctx.state().claimed_tasks.clone();
        let found = seen
            .items
            .into_iter()
            .filter(|t| !claimed.contains(&t.id))
            .filter(|t| t.created_at.is_none_or(|c| c >= since))
            .filter(|t| matches(&job.request, t))
            .min_by_key(|t| t.created_at);
        if let Some(task) = found {
            tracing::info!(job = %job.id, task = %task.id, "found the task of a lost create");
            return Ok(Reconciled::Found(Box::new(task)));
        }
    }
    Ok(Reconciled::NotFound)
}

async fn list(ctx: &Ctx, status: Option<TaskStatus>) -> Result<TaskList, ApiError> {
    loop {
        let query = ListQuery {
            limit: Some(PAGE),
            status: status.clone(),
        };
        match ctx.api(|c| async move { c.list(&query).await }).await {
            Err(ApiError::RateLimited { .. }) => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: serde_json::Value) -> Task {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn matching_uses_what_the_task_shows() {
        let req = CreateRequest {
            model: "seedance-1.5-pro".into(),
            prompt: "a cat".into(),
            duration: Some(5),
            ratio: Some("16:9".into()),
            ..Default::default()
        };
        let ok = task(
            serde_json::json!({"id":"a","status":"queued","model":"seedance-1.5-pro","duration":5,"ratio":"16:9"}),
        );
        assert!(matches(&req, &ok));
        let other_model = task(serde_json::json!({"id":"a","status":"queued","model":"seedance-2.0"}));
        assert!(!matches(&req, &other_model));
        let other_prompt =
            task(serde_json::json!({"id":"a","status":"queued","model":"seedance-1.5-pro","prompt":"a dog"}));
        assert!(!matches(&req, &other_prompt));
        let other_duration =
            task(serde_json::json!({"id":"a","status":"queued","model":"seedance-1.5-pro","duration":10}));
        assert!(!matches(&req, &other_duration));
    }

    #[test]
    fn a_short_page_covers_everything() {
        let page = TaskList {
            items: vec![],
            total: Some(0),
        };
        assert!(covers(&page, Timestamp::now()));
    }
}
