//! Status checks for many tasks at once by listing; the main structure here is [`Sweeper`].
//!
//! With many tasks in flight, one `GET /videos/generations?status=S&limit=100` per finished
//! status (completed each sweep; failed, cancelled and expired every few sweeps) tells which
//! tasks finished, instead of one GET per task per poll. A page is newest first; when it is
//! full, it only speaks for tasks created after its oldest item. A task absent from every page
//! that speaks for it is still running. A task listed as completed with its video URL needs no
//! GET at all. When several tasks are left that no page speaks for (timestamps are whole seconds,
//! so many tie with a full page's oldest), the queued and processing pages are listed too, and
//! the tasks they show are running. Any other task (listed as finished without a URL, or still
//! unknown) gets its own GET. So the lists never hide a change: they only spare the GETs they
//! can vouch for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::Ctx;
use crate::api::{ApiError, ListQuery, Task, TaskList, TaskStatus, Timestamp};

/// Tasks in flight before sweeping pays (a sweep costs one request per finished status).
const SWEEP_MIN: usize = 8;
/// Largest page the API gives.
const PAGE: u32 = 100;
/// The statuses a sweep lists every time.
const COMMON: [TaskStatus; 1] = [TaskStatus::Completed];
/// The statuses a sweep lists every [`RARE_EVERY`] sweeps (their last pages are reused in
/// between, so a task that fails, is cancelled or expires is noticed a few intervals later).
const RARE: [TaskStatus; 3] = [TaskStatus::Failed, TaskStatus::Cancelled, TaskStatus::Expired];
/// How often the rare statuses are listed.
const RARE_EVERY: u64 = 4;
/// The statuses of tasks still running, listed only to settle tasks the finished pages cannot
/// speak for (a task listed here is running, whatever the finished pages say).
const ACTIVE: [TaskStatus; 2] = [TaskStatus::Queued, TaskStatus::Processing];
/// Unsettled tasks worth listing [`ACTIVE`] for (below this, reading them one by one is cheaper).
const ACTIVE_MIN: usize = ACTIVE.len() + 1;

/// What a sweep says of one task.
#[derive(Debug, Clone)]
pub(super) enum Verdict {
    /// Not finished when the sweep ran: no GET needed.
    Running,
    /// Listed as completed with its video URL: the listed task stands in for a GET.
    Completed(Arc<Task>),
    /// Finished, or not knowable from the lists: read the task.
    Check,
}

/// Sweeps in a row that may vouch for a task before it is read anyway: however sure the lists
/// seem, a task is read now and then.
const VOUCHED_MAX: u32 = 30;

/// What a job waiting on the sweeps learns: `Some(task)`, its task as listed completed with
/// its video URL; `None`, read the task (it finished, the lists cannot tell, sweeping stopped,
/// or the lists have vouched for it [`VOUCHED_MAX`] times).
pub(super) type News = Option<Arc<Task>>;

/// One task being polled.
struct Entry {
    /// The server's creation time.
    created_at: Option<Timestamp>,
    /// Sweeps that found it running since it was last read.
    vouched: u32,
    /// The job waiting for news of it, if it is waiting (a job that is not, because it is
    /// reading the task, has no use for the news).
    waiter: Option<oneshot::Sender<News>>,
}

/// Keeps the set of tasks being polled and tells each job only the news of its own task, so
/// a sweep wakes the jobs it has news for, not every job in flight.
pub(super) struct Sweeper {
    tasks: Mutex<HashMap<String, Entry>>,
    active: AtomicBool,
}

/// Removes a task from the sweeper when its poll ends.
pub(super) struct Registration<'a> {
    sweeper: &'a Sweeper,
    task_id: String,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sweeper.lock().remove(&self.task_id);
    }
}

impl Sweeper {
    /// An idle sweeper.
    pub fn new() -> Sweeper {
        Sweeper {
            tasks: Mutex::new(HashMap::new()),
            active: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a task being polled; created_at is the server's creation time.
    pub fn register(&self, task_id: &str, created_at: Option<Timestamp>) -> Registration<'_> {
        self.lock().insert(
            task_id.to_string(),
            Entry {
                created_at,
                vouched: 0,
                waiter: None,
            },
        );
        Registration {
            sweeper: self,
            task_id: task_id.to_string(),
        }
    }

    /// Whether the next sweep will judge the tasks: sweeps are on, or enough tasks are in
    /// flight to turn them on. A task created early in a batch then waits for that first sweep
    /// instead of being read on its own.
    pub fn sweeping(&self) -> bool {
        self.active.load(Ordering::Relaxed) || self.lock().len() >= SWEEP_MIN
    }

    /// The next news of a registered task (a closed channel means: read it).
    pub fn news(&self, task_id: &str) -> oneshot::Receiver<News> {
        let (tx, rx) = oneshot::channel();
        if let Some(entry) = self.lock().get_mut(task_id) {
            entry.waiter = Some(tx);
        }
        rx
    }

    /// The tasks to judge and when each was created.
    fn snapshot(&self) -> HashMap<String, Option<Timestamp>> {
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.created_at))
            .collect()
    }

    /// Tells each task's job what the sweep found; with sweeping off, every waiting job reads
    /// its task.
    fn publish(&self, active: bool, verdicts: HashMap<String, Verdict>) {
        self.active.store(active, Ordering::Relaxed);
        for (id, entry) in self.lock().iter_mut() {
            let news = if !active {
                None
            } else {
                match verdicts.get(id) {
                    // Registered after the sweep began: just created, so no news.
                    None => continue,
                    Some(Verdict::Running) => {
                        entry.vouched += 1;
                        if entry.vouched < VOUCHED_MAX {
                            continue;
                        }
                        None
                    }
                    Some(Verdict::Completed(task)) => Some(task.clone()),
                    Some(Verdict::Check) => None,
                }
            };
            entry.vouched = 0;
            if let Some(waiter) = entry.waiter.take() {
                let _ = waiter.send(news);
            }
        }
    }
}

/// Whether a newest-first page speaks for a task created at `created`.
fn covers(page: &TaskList, oldest: Option<Timestamp>, created: Option<Timestamp>) -> bool {
    let full = page.items.len() as u32 >= PAGE && page.total.is_none_or(|t| t > page.items.len() as u64);
    if !full {
        return true;
    }
    // Strictly newer: a task created in the same instant as the page's oldest item (timestamps
    // may be whole seconds) can be the next one past the page's end.
    matches!((oldest, created), (Some(o), Some(c)) if c > o)
}

/// The oldest creation time on a page (`None` when some item has none).
fn oldest(page: &TaskList) -> Option<Timestamp> {
    if page.items.iter().any(|t| t.created_at.is_none()) {
        None
    } else {
        page.items.iter().filter_map(|t| t.created_at).min()
    }
}

/// Judges each task from the finished-status pages. Also returns the tasks no page could
/// speak for (checked, yet not listed as finished): the ones the active pages may settle.
fn judge(
    tasks: &HashMap<String, Option<Timestamp>>,
    pages: &[TaskList],
) -> (HashMap<String, Verdict>, Vec<String>) {
    let oldest: Vec<Option<Timestamp>> = pages.iter().map(oldest).collect();
    let listed: HashMap<&str, &Task> = pages
        .iter()
        .flat_map(|p| p.items.iter().map(|t| (t.id.as_str(), t)))
        .collect();
    let mut unsettled = Vec::new();
    let verdicts = tasks
        .iter()
        .map(|(id, created)| {
            let verdict = match listed.get(id.as_str()) {
                Some(t)
                    if t.status == TaskStatus::Completed
                        && t.video_url.as_deref().is_some_and(|u| !u.is_empty()) =>
                {
                    Verdict::Completed(Arc::new((*t).clone()))
                }
                Some(_) => Verdict::Check,
                None if pages.iter().zip(&oldest).all(|(p, o)| covers(p, *o, *created)) => Verdict::Running,
                None => {
                    unsettled.push(id.clone());
                    Verdict::Check
                }
            };
            (id.clone(), verdict)
        })
        .collect();
    (verdicts, unsettled)
}

/// Marks as running the unsettled tasks that the queued and processing pages list.
fn settle(verdicts: &mut HashMap<String, Verdict>, unsettled: &[String], active: &[TaskList]) {
    let running: std::collections::HashSet<&str> = active
        .iter()
        .flat_map(|p| p.items.iter())
        .filter(|t| matches!(t.status, TaskStatus::Queued | TaskStatus::Processing))
        .map(|t| t.id.as_str())
        .collect();
    for id in unsettled {
        if running.contains(id.as_str()) {
            verdicts.insert(id.clone(), Verdict::Running);
        }
    }
}

/// Sweeps every poll interval while enough tasks are in flight; runs until dropped.
pub(super) async fn run(ctx: Arc<Ctx>) {
    let mut rare: Option<Vec<TaskList>> = None;
    let mut count = 0u64;
    loop {
        tokio::time::sleep(ctx.settings.poll_interval).await;
        let tasks = ctx.sweeper.snapshot();
        if tasks.len() < SWEEP_MIN {
            // Published even when already off: a task that registered while enough were in
            // flight is waiting for this sweep, and learns here to read itself.
            ctx.sweeper.publish(false, HashMap::new());
            continue;
        }
        count += 1;
        if count.is_multiple_of(RARE_EVERY) {
            rare = None;
        }
        let result = async {
            if rare.is_none() {
                rare = Some(list_pages(&ctx, &RARE).await?);
            }
            let mut pages = list_pages(&ctx, &COMMON).await?;
            pages.extend(rare.iter().flatten().cloned());
            Ok::<_, ApiError>(pages)
        }
        .await;
        match result {
            Ok(pages) => {
                let (mut verdicts, open) = judge(&tasks, &pages);
                if open.len() >= ACTIVE_MIN {
                    match list_pages(&ctx, &ACTIVE).await {
                        Ok(active) => settle(&mut verdicts, &open, &active),
                        Err(e) => tracing::debug!(error = %e, "listing running tasks failed; they are read"),
                    }
                }
                ctx.sweeper.publish(true, verdicts);
            }
            Err(e) => {
                tracing::debug!(error = %e, "sweep failed; tasks are read one by one");
                ctx.sweeper.publish(false, HashMap::new());
            }
        }
    }
}

async fn list_pages(ctx: &Ctx, statuses: &[TaskStatus]) -> Result<Vec<TaskList>, ApiError> {
    let mut pages = Vec::with_capacity(statuses.len());
    for status in statuses {
        let query = ListQuery {
            limit: Some(PAGE),
            status: Some(status.clone()),
        };
        pages.push(ctx.api(|c| async move { c.list(&query).await }).await?);
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Task;

    fn at(secs: i64) -> Option<Timestamp> {
        Some(Timestamp(
            time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap(),
        ))
    }

    fn task(id: &str, created: i64) -> Task {
        let mut t: Task =
            serde_json::from_value(serde_json::json!({"id": id, "status": "completed"})).unwrap();
        t.created_at = at(created);
        t
    }

    #[test]
    fn a_sweep_wakes_only_the_jobs_it_has_news_for() {
        use tokio::sync::oneshot::error::TryRecvError;
        let sweeper = Sweeper::new();
        let _registered: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|id| sweeper.register(id, at(1)))
            .collect();
        let (mut a, mut b, mut c) = (sweeper.news("a"), sweeper.news("b"), sweeper.news("c"));
        let running = || HashMap::from([("a".to_string(), Verdict::Running)]);
        let mut verdicts = running();
        verdicts.insert("b".into(), Verdict::Completed(Arc::new(task("b", 1))));
        verdicts.insert("c".into(), Verdict::Check);
        sweeper.publish(true, verdicts);
        assert!(matches!(a.try_recv(), Err(TryRecvError::Empty)));
        assert!(matches!(b.try_recv(), Ok(Some(t)) if t.id == "b"));
        assert!(matches!(c.try_recv(), Ok(None)));
        // However many sweeps vouch for a task, it is read after VOUCHED_MAX of them.
        for _ in 1..VOUCHED_MAX - 1 {
            sweeper.publish(true, running());
            assert!(matches!(a.try_recv(), Err(TryRecvError::Empty)));
        }
        sweeper.publish(true, running());
        assert!(matches!(a.try_recv(), Ok(None)));
        // With sweeping off, every waiting job reads its task.
        let mut a = sweeper.news("a");
        sweeper.publish(false, HashMap::new());
        assert!(matches!(a.try_recv(), Ok(None)));
    }

    #[test]
    fn listed_tasks_are_checked_and_covered_absent_ones_are_running() {
        let tasks: HashMap<String, Option<Timestamp>> = [("a".to_string(), at(1)), ("b".to_string(), at(2))]
            .into_iter()
            .collect();
        let pages = vec![TaskList {
            items: vec![task("a", 1)],
            total: Some(1),
        }];
        let (v, _) = judge(&tasks, &pages);
        assert!(matches!(v["a"], Verdict::Check));
        assert!(matches!(v["b"], Verdict::Running));
    }

    #[test]
    fn a_task_created_in_the_same_second_as_a_full_pages_oldest_is_checked() {
        let items: Vec<Task> = (0..100).map(|i| task(&format!("x{i}"), 100)).collect();
        let pages = vec![TaskList {
            items,
            total: Some(500),
        }];
        let tasks: HashMap<String, Option<Timestamp>> = [("tie".to_string(), at(100))].into_iter().collect();
        assert!(matches!(judge(&tasks, &pages).0["tie"], Verdict::Check));
    }

    #[test]
    fn a_full_page_only_speaks_for_tasks_no_older_than_its_oldest() {
        let items: Vec<Task> = (0..100).map(|i| task(&format!("x{i}"), 100 + i)).collect();
        let pages = vec![TaskList {
            items,
            total: Some(500),
        }];
        let tasks: HashMap<String, Option<Timestamp>> = [
            ("old".to_string(), at(50)),
            ("new".to_string(), at(150)),
            ("unknown".to_string(), None),
        ]
        .into_iter()
        .collect();
        let (v, _) = judge(&tasks, &pages);
        assert!(matches!(v["old"], Verdict::Check));
        assert!(matches!(v["new"], Verdict::Running));
        assert!(matches!(v["unknown"], Verdict::Check));
    }

    #[test]
    fn a_task_listed_as_completed_with_its_url_needs_no_read() {
        let mut with_url = task("a", 1);
        with_url.video_url = Some("http://127.0.0.1/files/a.mp4".into());
        let pages = vec![TaskList {
            items: vec![with_url, task("b", 1)],
            total: Some(2),
        }];
        let tasks: HashMap<String, Option<Timestamp>> = [("a".to_string(), at(1)), ("b".to_string(), at(1))]
            .into_iter()
            .collect();
        let (v, _) = judge(&tasks, &pages);
        assert!(matches!(&v["a"], Verdict::Completed(t) if t.id == "a"));
        assert!(matches!(v["b"], Verdict::Check), "listed without a URL: read it");
    }

    #[test]
    fn tied_tasks_the_processing_page_lists_are_running_and_the_rest_are_read() {
        let items: Vec<Task> = (0..100).map(|i| task(&format!("x{i}"), 100)).collect();
        let pages = vec![TaskList {
            items,
            total: Some(500),
        }];
        let tasks: HashMap<String, Option<Timestamp>> = [
            ("x5".to_string(), at(100)),
            ("running".to_string(), at(100)),
            ("gone".to_string(), at(100)),
        ]
        .into_iter()
        .collect();
        let (mut v, mut open) = judge(&tasks, &pages);
        open.sort();
        assert_eq!(open, ["gone", "running"], "a listed task is settled already");
        let mut processing = task("running", 100);
        processing.status = TaskStatus::Processing;
        let active = vec![TaskList {
            items: vec![processing],
            total: Some(1),
        }];
        settle(&mut v, &open, &active);
        assert!(matches!(v["running"], Verdict::Running));
        assert!(matches!(v["gone"], Verdict::Check));
        assert!(matches!(v["x5"], Verdict::Check));
    }
}
