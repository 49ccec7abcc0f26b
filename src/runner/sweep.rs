//! What a page of the task list says about the tasks in flight; the main function here is [`judge`].
//!
//! A sweep reads one page of `GET /videos/generations?limit=100`, newest first, every status
//! at once (and both spellings of completed). A task on the page is seen as it is. A task not
//! on it is *covered* when the page holds every task of the account (it is not full) or the
//! task is newer than the page's oldest item: then it is simply not listed yet (lists lag),
//! and is still running. Anything else (other work on the account, more tasks than a page,
//! timestamps tied with the page's oldest) is *uncovered*: per-status pages may show it, and
//! failing those the task is read on its own. The interval between sweeps follows the spare
//! request budget and never goes below `--poll-interval`.

use std::collections::HashMap;
use std::time::Duration;

use crate::api::{Task, TaskList, TaskStatus, Timestamp};

/// Largest page the API gives.
pub(super) const PAGE: u32 = 100;

/// What a page says of one task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Seen<'a> {
    /// On the page, as it is now.
    Listed(&'a Task),
    /// Not on a page that would list it: not listed yet (lists lag); no news.
    Absent,
    /// The page cannot speak for it.
    Uncovered,
}

/// One page, indexed for judging.
pub(super) struct Page<'a> {
    listed: HashMap<&'a str, &'a Task>,
    full: bool,
    oldest: Option<Timestamp>,
}

impl<'a> Page<'a> {
    /// Indexes a page.
    pub fn new(page: &'a TaskList) -> Page<'a> {
        Page {
            listed: page.items.iter().map(|t| (t.id.as_str(), t)).collect(),
            full: is_full(page),
            oldest: oldest(page),
        }
    }

    /// What the page says of a task created (by the server's clock) at `created`.
    pub fn judge(&self, id: &str, created: Option<Timestamp>) -> Seen<'a> {
        if let Some(task) = self.listed.get(id) {
            return Seen::Listed(task);
        }
        // Strictly newer: a task created in the same instant as the page's oldest item
        // (timestamps may be whole seconds) can be the next one past the page's end.
        let covered = !self.full || matches!((self.oldest, created), (Some(o), Some(c)) if c > o);
        if covered { Seen::Absent } else { Seen::Uncovered }
    }
}

/// Whether a page may have left tasks out: it holds a full page and the total (when given)
/// says there are more.
pub(super) fn is_full(page: &TaskList) -> bool {
    page.items.len() as u32 >= PAGE && page.total.is_none_or(|t| t > page.items.len() as u64)
}

/// The oldest creation time on a page (`None` when some item has none, or it is empty).
pub(super) fn oldest(page: &TaskList) -> Option<Timestamp> {
    if page.items.iter().any(|t| t.created_at.is_none()) {
        None
    } else {
        page.items.iter().filter_map(|t| t.created_at).min()
    }
}

/// Tasks the page shows processing and queued, all clients' on the account. Exact when the
/// page is not full.
pub(super) fn account_load(page: &TaskList) -> (usize, usize) {
    page.items.iter().fold((0, 0), |(p, q), t| match t.status {
        TaskStatus::Processing => (p + 1, q),
        TaskStatus::Queued => (p, q + 1),
        _ => (p, q),
    })
}

/// Share of the spare request budget the sweeps may take.
const SWEEP_SHARE: f64 = 0.5;
/// The longest interval between sweeps, as a multiple of `--poll-interval`.
const MAX_FACTOR: u32 = 10;

/// The interval between sweeps: half of the request rate left over by creates and reads,
/// never below `poll` and never above [`MAX_FACTOR`] times it.
pub(super) fn interval(poll: Duration, rate_per_s: f64, used_per_s: f64) -> Duration {
    let ceiling = poll.saturating_mul(MAX_FACTOR);
    let spare = (rate_per_s - used_per_s) * SWEEP_SHARE;
    if spare <= 0.0 {
        return ceiling;
    }
    Duration::from_secs_f64((1.0 / spare).min(ceiling.as_secs_f64())).max(poll)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Option<Timestamp> {
        Some(Timestamp(
            time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap(),
        ))
    }

    fn task(id: &str, status: &str, created: i64) -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({"id": id, "status": status})).unwrap();
        t.created_at = at(created);
        t
    }

    #[test]
    fn a_short_page_covers_every_task() {
        let list = TaskList {
            items: vec![task("a", "succeeded", 1)],
            total: Some(1),
        };
        let page = Page::new(&list);
        assert!(matches!(page.judge("a", at(1)), Seen::Listed(t) if t.status == TaskStatus::Completed));
        assert_eq!(page.judge("b", at(0)), Seen::Absent);
    }

    #[test]
    fn a_full_page_covers_only_tasks_newer_than_its_oldest() {
        let items: Vec<Task> = (0..100)
            .map(|i| task(&format!("x{i}"), "completed", 100 + i))
            .collect();
        let list = TaskList {
            items,
            total: Some(500),
        };
        let page = Page::new(&list);
        assert_eq!(page.judge("new", at(150)), Seen::Absent);
        assert_eq!(page.judge("tie", at(100)), Seen::Uncovered);
        assert_eq!(page.judge("old", at(50)), Seen::Uncovered);
        assert_eq!(page.judge("unknown", None), Seen::Uncovered);
    }

    #[test]
    fn the_load_counts_processing_and_queued() {
        let list = TaskList {
            items: vec![
                task("a", "processing", 1),
                task("b", "queued", 2),
                task("c", "processing", 3),
                task("d", "completed", 0),
            ],
            total: None,
        };
        assert_eq!(account_load(&list), (2, 1));
    }

    #[test]
    fn the_interval_takes_half_the_spare_budget_within_bounds() {
        let poll = Duration::from_millis(200);
        // 10 requests/s, 5.3 used: 2.35 lists/s.
        let i = interval(poll, 10.0, 5.3);
        assert!((i.as_secs_f64() - 1.0 / 2.35).abs() < 1e-6, "{i:?}");
        assert_eq!(interval(poll, 1000.0, 10.0), poll);
        assert_eq!(interval(poll, 10.0, 12.0), poll * MAX_FACTOR);
    }
}
