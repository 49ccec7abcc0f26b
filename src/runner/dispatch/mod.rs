//! The one owner of a run; the main structure here is [`Dispatcher`].
//!
//! The dispatcher is the source of truth for run state, as nextest's dispatcher is for a test
//! run. It alone holds the [`RunState`], writes the journal, calls the observers, keeps the
//! in-flight set and the token budget, and spends the request budget. Work (a create, a read,
//! a page of the list, a cancel, a job's downloads) runs in tasks of its own that report back
//! with a [`Report`]; nothing else changes run state and nothing runs under a lock.
//!
//! Each token of the pacer goes to the most valuable request waiting, in strict order: a
//! create when the in-flight target allows one, then a due sweep of the task list (and the
//! per-status pages it asked for), then reads of finished tasks for their video URL, then
//! reads of single tasks the lists could not speak for. Cancels on an interrupt and on a job
//! timeout come before everything.
//!
//! Chains: a job that refers to others (`job://ID`) waits in [`Dispatcher::waiting`] until
//! every job it refers to is done, then is created with those jobs' URLs (a read of their task,
//! through the same tokens, when the URL this run holds is unknown or about to expire) or task
//! ids in place of the references. Among jobs ready to go, those that hold up the most work go
//! first: the estimated tokens of the job and of the heaviest chain waiting on it (under
//! `--budget-tokens` only the chain's length, so the plan's order decides what the budget
//! buys). The longest generations start early, and a batch does not end waiting on one. When a job fails, every job waiting behind it is blocked (never
//! created).
//!
//! Its parts: `schedule` (what each token buys, and the wake-up clock), `answers` (each report
//! of work, and how a job or the run ends), `lists` (what a page of the task list says, and
//! the settling of lost creates), `chains` (jobs waiting on jobs) and `tasks` (what a task
//! shows).

mod answers;
mod chains;
mod lists;
mod schedule;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::reconcile;
use super::slots::Slots;
use super::spend::{Reservation, Spend};
use super::work::{ListFor, ReadFor, Report};
use super::{Observer, RunSettings, StopKind};
use crate::api::{Client, IdempotencyKey, Task, TaskList, TaskStatus, Timestamp};
use crate::events::{Counters, Event, Throttle};
use crate::hex::hex;
use crate::journal::{Durable, Journal};
use crate::state::{JobState, Phase, RunState, Tally};

use tasks::*;
/// Longest a task goes without a read of its own, however the lists vouch for it.
const SAFETY_READ: Duration = Duration::from_secs(600);
/// Fewest uncovered tasks worth the per-status pages (below this, reading each is cheaper).
const STATUS_PAGES_MIN: usize = 4;
/// The finished statuses a status round lists each time.
const COMMON: [TaskStatus; 1] = [TaskStatus::Completed];
/// The finished statuses a status round lists every [`RARE_EVERY`] rounds (their last pages
/// are reused in between, so a task that fails is noticed a few sweeps later).
const RARE: [TaskStatus; 3] = [TaskStatus::Failed, TaskStatus::Cancelled, TaskStatus::Expired];
/// How often the rare statuses are listed.
const RARE_EVERY: u64 = 4;
/// The pages listed to find the task of a lost create on a busy account.
const ALL: [TaskStatus; 5] = [
    TaskStatus::Queued,
    TaskStatus::Processing,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Cancelled,
];
/// Shortest wait before a create whose answer was lost is taken as never made: lists lag.
const LOST_GRACE_MIN: Duration = Duration::from_secs(2);
/// The wait while no task of this run has been listed yet, so the lists' lag is unknown.
const LOST_GRACE_UNSEEN: Duration = Duration::from_secs(30);
/// How far before a create's intent (read on the server's clock, as far as its `Date` headers
/// tell) a look-alike create's task may be dated and still be taken for it.
const CLOCK_SLACK: time::Duration = time::Duration::minutes(10);
/// URL refreshes before a download gives up.
const MAX_URL_REFRESHES: u32 = 5;
/// Window over which requests other than lists are counted, to know the spare budget.
const USE_WINDOW: Duration = Duration::from_secs(2);
/// How long the server may answer nothing but 429s before the run gives up (a limit that never
/// clears is a quota, whatever its code says).
const RATE_LIMIT_GIVE_UP: Duration = Duration::from_secs(600);
/// API requests on the wire at once: enough for thousands a minute at real latencies, and a
/// bound on sockets and buffers when a burst of tokens is there to spend.
const MAX_OUTSTANDING: usize = 128;
/// How long requests must wait on the `--rpm` bucket before the run shows as throttled (a token
/// a moment away is the bucket doing its job, not a throttle worth showing).
const THROTTLE_AFTER: Duration = Duration::from_secs(1);
/// Pending jobs looked at for one whose look-alikes have no create in flight.
const CREATE_LOOKAHEAD: usize = 64;
/// The most a URL handed to a job of a chain must still live (less for URLs that live less:
/// half their lifetime).
const URL_MARGIN: Duration = Duration::from_secs(600);

/// Why a job of a chain cannot be created yet with what this run holds of its upstream jobs.
enum Gap {
    /// These upstream jobs' tasks are to be read for fresh URLs.
    Read(Vec<String>),
    /// An upstream job cannot give what the job needs; the reason.
    Missing(String),
}

/// One task queued or processing on the server.
struct Flight {
    job: String,
    /// The server's creation time.
    created_at: Option<Timestamp>,
    /// When its create was sent (vidbatch's clock).
    sent: Instant,
    /// When the job times out.
    deadline: Instant,
    status: TaskStatus,
    last_read: Instant,
    read_errors: u32,
    /// When a task the lists cannot speak for is due a read of its own.
    next_read: Option<Instant>,
    /// Since when a sweep that would list it has not.
    absent_since: Option<Instant>,
    listed: bool,
    /// The last sweep could not speak for it.
    uncovered: bool,
    read_queued: bool,
    timing_out: bool,
}

impl Flight {
    /// A task put in flight `now`: nothing read or listed of it yet.
    fn new(
        job: String,
        created_at: Option<Timestamp>,
        sent: Instant,
        deadline: Instant,
        status: TaskStatus,
        now: Instant,
    ) -> Flight {
        Flight {
            job,
            created_at,
            sent,
            deadline,
            status,
            last_read: now,
            read_errors: 0,
            next_read: None,
            absent_since: None,
            listed: false,
            uncovered: false,
            read_queued: false,
            timing_out: false,
        }
    }
}

/// A create whose answer was lost: its task may exist.
struct Lost {
    key: String,
    /// When it was sent (vidbatch's clock).
    since: Instant,
    intent_at: Timestamp,
    /// When its answer was found lost (or the run began, for one an earlier run lost).
    failed_at: Instant,
    /// A task of this run whose create was sent after that: the server made it after this
    /// one, so once lists show it they would show this one's too.
    later: Option<String>,
    reservation: Option<Reservation>,
}

/// What the next token buys.
enum Next {
    Cancel(String, String),
    Create(usize, Reservation),
    List(ListFor),
    UrlRead(String),
    Read(String, ReadFor),
    UpstreamRead(String),
}

/// Everything the dispatcher starts with.
pub(super) struct Setup {
    pub client: Client,
    pub http: reqwest::Client,
    pub settings: RunSettings,
    pub journal: Journal,
    pub state: RunState,
    pub observers: Vec<Box<dyn Observer>>,
    pub run_id: String,
    pub plan: Vec<String>,
    pub committed_tokens: u64,
}

/// The owner of a run.
pub(super) struct Dispatcher {
    client: Client,
    http: reqwest::Client,
    pub settings: RunSettings,
    pub journal: Journal,
    pub state: RunState,
    tally: Tally,
    observers: Vec<Box<dyn Observer>>,
    pub counters: Counters,
    pacer: super::Pacer,
    slots: Slots,
    spend: Spend,
    run_id: String,
    in_plan: HashSet<String>,
    pending: VecDeque<String>,
    delayed: Vec<(Instant, String)>,
    create_errors: HashMap<String, u32>,
    creating: HashSet<String>,
    busy_keys: HashSet<String>,
    lost: HashMap<String, Lost>,
    flights: HashMap<String, Flight>,
    reads: VecDeque<(String, ReadFor)>,
    reading: HashSet<String>,
    url_wait: VecDeque<String>,
    url_reading: HashSet<String>,
    url_errors: HashMap<String, u32>,
    /// Finished tasks to download: `(job, task, fresh)`, fresh when the task was just read for
    /// its URL (then used as it is, however short the URL's life).
    fetch_wait: VecDeque<(String, Task, bool)>,
    fetching: usize,
    refreshes: HashMap<String, u32>,
    cancels: VecDeque<(String, String)>,
    cancelling: usize,
    /// API requests sent and not yet answered.
    outstanding: usize,
    workers: JoinSet<Report>,
    listing: bool,
    status_pages: VecDeque<TaskStatus>,
    status_round: Vec<(TaskStatus, TaskList)>,
    rare_pages: HashMap<String, TaskList>,
    rounds: u64,
    next_sweep: Instant,
    next_tick: Instant,
    used: VecDeque<Instant>,
    lag_max: Duration,
    /// Whether any task of this run has been seen on a list (so `lag_max` means something).
    lag_seen: bool,
    /// When the server last answered anything but a 429.
    last_unlimited: Instant,
    /// Since when a request has waited on the pacer without a break, and what the display was
    /// last told holds requests back.
    held_since: Option<Instant>,
    throttled: Option<Throttle>,
    /// Since when requests have flowed without waiting on the pacer.
    flowing_since: Option<Instant>,
    pub stop: Option<StopKind>,
    halted: bool,
    pub interrupted: bool,
    pub local_failure: Option<String>,
    failed_this_run: u64,
    warned_cap: bool,
    /// Each plan job's `job://` targets.
    upstream: HashMap<String, Vec<String>>,
    /// The jobs of the plan that refer to each job.
    downstream: HashMap<String, Vec<String>>,
    /// Tasks that may be lost creates', whose list items showed no seed: `None` while their
    /// read waits or is on the wire, then the task as its read showed it.
    candidates: HashMap<String, Option<Task>>,
    /// The work each job holds up (see [`chains::Work`]).
    behind: HashMap<String, chains::Work>,
    /// Jobs to create once the jobs they refer to are done and their URLs are at hand.
    pub waiting: HashSet<String>,
    /// The latest task seen of each finished job that others refer to, and whether it came from
    /// a read made for them.
    fresh: HashMap<String, (Task, bool)>,
    /// Upstream jobs whose task is to be read for fresh URLs.
    upstream_reads: VecDeque<String>,
    upstream_reading: HashSet<String>,
    upstream_errors: HashMap<String, u32>,
}

impl Dispatcher {
    /// A dispatcher over the loaded state; nothing is sent yet.
    pub fn new(setup: Setup) -> Dispatcher {
        let s = setup.settings;
        let tally = Tally::of(setup.plan.iter().filter_map(|id| setup.state.jobs.get(id)));
        let tally = Tally {
            total: setup.plan.len(),
            ..tally
        };
        let now = Instant::now();
        Dispatcher {
            client: setup.client,
            http: setup.http,
            pacer: super::Pacer::new(s.rpm, s.burst, s.retry),
            slots: Slots::new(s.concurrency.cap()),
            spend: Spend::new(s.budget_tokens, setup.committed_tokens),
            next_sweep: now + s.poll_interval,
            next_tick: now,
            settings: s,
            journal: setup.journal,
            state: setup.state,
            tally,
            observers: setup.observers,
            counters: Counters::default(),
            run_id: setup.run_id,
            in_plan: setup.plan.into_iter().collect(),
            pending: VecDeque::new(),
            delayed: Vec::new(),
            create_errors: HashMap::new(),
            creating: HashSet::new(),
            busy_keys: HashSet::new(),
            lost: HashMap::new(),
            flights: HashMap::new(),
            reads: VecDeque::new(),
            reading: HashSet::new(),
            url_wait: VecDeque::new(),
            url_reading: HashSet::new(),
            url_errors: HashMap::new(),
            fetch_wait: VecDeque::new(),
            fetching: 0,
            refreshes: HashMap::new(),
            cancels: VecDeque::new(),
            cancelling: 0,
            outstanding: 0,
            workers: JoinSet::new(),
            listing: false,
            status_pages: VecDeque::new(),
            status_round: Vec::new(),
            rare_pages: HashMap::new(),
            rounds: 0,
            used: VecDeque::new(),
            lag_max: Duration::ZERO,
            lag_seen: false,
            last_unlimited: now,
            held_since: None,
            throttled: None,
            flowing_since: None,
            stop: None,
            halted: false,
            interrupted: false,
            local_failure: None,
            failed_this_run: 0,
            warned_cap: false,
            upstream: HashMap::new(),
            downstream: HashMap::new(),
            behind: HashMap::new(),
            candidates: HashMap::new(),
            waiting: HashSet::new(),
            fresh: HashMap::new(),
            upstream_reads: VecDeque::new(),
            upstream_reading: HashSet::new(),
            upstream_errors: HashMap::new(),
        }
    }

    /// Journals the event, applies it, moves the tally and shows it. A durable event comes
    /// with the [`Durable`] to wait on before acting on it.
    pub fn emit(&mut self, event: Event) -> Option<Durable> {
        let durable = if event.is_journaled() {
            match self.journal.enqueue(&event) {
                Ok(d) => d,
                Err(e) => {
                    self.fail_local(e.to_string());
                    None
                }
            }
        } else {
            None
        };
        let job = event
            .job()
            .filter(|j| self.in_plan.contains(*j))
            .map(str::to_string);
        let before = job
            .as_deref()
            .and_then(|j| self.state.jobs.get(j))
            .map(JobState::standing);
        self.state.apply(&event);
        if let Some(job) = job
            && let (Some(b), Some(a)) = (before, self.state.jobs.get(&job).map(JobState::standing))
        {
            self.tally.moved(b, a);
        }
        for o in &mut self.observers {
            o.on_event(&event, &self.state, &self.tally);
        }
        durable
    }

    /// Files every job of the plan where it stands: to create, to settle, to poll, to fetch.
    pub fn load(&mut self, plan: &[String]) {
        let now = Instant::now();
        self.link(plan);
        if self.settings.earlier_tasks_gone {
            self.forget_gone_tasks(plan);
        }
        let mut lost: Vec<(Timestamp, String)> = Vec::new();
        let mut pending: Vec<String> = Vec::new();
        for id in plan {
            let Some(job) = self.state.jobs.get(id) else {
                continue;
            };
            match job.phase {
                Phase::Pending => pending.push(id.clone()),
                Phase::Submitting => lost.push((job.intent_at.unwrap_or_else(Timestamp::now), id.clone())),
                Phase::Submitted => {
                    if let Some(task) = job.task_id() {
                        let flight = Flight::new(
                            id.clone(),
                            job.submitted_at,
                            now,
                            resumed_deadline(job.intent_at, self.settings.job_timeout),
                            job.last_status.clone().unwrap_or(TaskStatus::Queued),
                            now,
                        );
                        self.flights.insert(task.to_string(), flight);
                    }
                }
                Phase::Generated => self.url_wait.push_back(id.clone()),
                Phase::Done | Phase::Failed => {}
            }
        }
        // The most work held up first; the rest in plan order.
        pending.sort_by_key(|id| std::cmp::Reverse(self.work_behind(id)));
        for id in pending {
            if self.upstream.contains_key(&id) {
                self.waiting.insert(id.clone());
                self.try_release(&id);
            } else {
                self.pending.push_back(id);
            }
        }
        // Settled oldest first: the lists are searched for each in the order they were sent.
        lost.sort();
        for (intent_at, id) in lost {
            let Some(job) = self.state.jobs.get(&id) else {
                continue;
            };
            let key = reconcile::match_key(&job.sent_request());
            self.busy_keys.insert(key.clone());
            let age = Duration::try_from(Timestamp::now().0 - intent_at.0).unwrap_or(Duration::ZERO);
            self.lost.insert(
                id,
                Lost {
                    key,
                    since: now.checked_sub(age).unwrap_or(now),
                    intent_at,
                    failed_at: now,
                    later: None,
                    reservation: None,
                },
            );
        }
        if !self.lost.is_empty() {
            self.next_sweep = now;
        }
    }

    /// The earlier run's simulator stopped with it, and its tasks with it: the jobs it held
    /// are made again (nothing was paid for them).
    fn forget_gone_tasks(&mut self, plan: &[String]) {
        let gone: Vec<(String, Option<String>)> = plan
            .iter()
            .filter_map(|id| self.state.jobs.get(id))
            .filter(|j| matches!(j.phase, Phase::Submitting | Phase::Submitted | Phase::Generated))
            .map(|j| (j.id.clone(), j.task_id().map(str::to_string)))
            .collect();
        if gone.is_empty() {
            return;
        }
        self.emit(Event::Notice {
            message: format!(
                "the simulator of the earlier --sim run stopped with it: {} jobs whose tasks it held are made again (nothing was paid for them)",
                gone.len()
            ),
        });
        for (job, task_id) in gone {
            self.emit(Event::TaskGone { job, task_id });
        }
    }

    /// Runs until every job of the plan is settled, the run must stop, or `shutdown` resolves
    /// (then, with `--cancel-on-interrupt`, the tasks in flight are cancelled).
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
                self.tick(now);
            }
            self.start_fetches();
            if self.finished() {
                self.tell_throttle(None);
                return;
            }
            let wake = self.spend_tokens(now);
            tokio::select! {
                biased;
                () = &mut shutdown, if !self.interrupted => self.interrupt(),
                Some(joined) = self.workers.join_next() => {
                    if let Ok(report) = joined {
                        self.handle(report);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Stops everything but cancels (with `--cancel-on-interrupt`); unanswered creates stay
    /// on disk as intents, and the next run settles them.
    fn interrupt(&mut self) {
        self.interrupted = true;
        self.stop(StopKind::Interrupt, crate::events::INTERRUPTED.into());
        self.workers.abort_all();
        self.creating.clear();
        self.fetching = 0;
        self.cancelling = 0;
        self.reading.clear();
        self.url_reading.clear();
        self.listing = false;
        self.cancels.clear();
        let on_server = self.flights.len() + self.lost.len();
        if on_server > 0 && self.settings.embedded_sim {
            self.emit(Event::Notice {
                message: format!(
                    "{on_server} tasks were on the embedded simulator, which stops with this run: \
                     run the same command again to make them again"
                ),
            });
        } else if on_server > 0 && !self.settings.cancel_on_interrupt {
            self.emit(Event::Notice {
                message: format!(
                    "{on_server} tasks are still queued or processing on the server and are paid for \
                     when they finish: run the same command again to fetch them, or `vidbatch cancel \
                     --out {}` to stop them",
                    self.settings.out_dir.display()
                ),
            });
        }
        if self.settings.cancel_on_interrupt {
            let mut flights: Vec<(&String, &Flight)> = self.flights.iter().collect();
            flights.sort_by_key(|(_, f)| f.sent);
            self.cancels = flights
                .into_iter()
                .map(|(t, f)| (f.job.clone(), t.clone()))
                .collect();
        }
    }

    fn finished(&self) -> bool {
        if self.halted || self.local_failure.is_some() {
            return true;
        }
        if self.interrupted {
            return self.cancels.is_empty() && self.cancelling == 0;
        }
        // Jobs still waiting when nothing else is under way wait for jobs this run cannot
        // finish: they stay pending for the next run.
        let creates_done = self.stop.is_some()
            || (self.pending.is_empty()
                && self.delayed.is_empty()
                && self.upstream_reads.is_empty()
                && self.upstream_reading.is_empty());
        creates_done
            && self.creating.is_empty()
            && self.lost.is_empty()
            && self.flights.is_empty()
            && self.url_wait.is_empty()
            && self.url_reading.is_empty()
            && self.fetch_wait.is_empty()
            && self.fetching == 0
            && self.cancels.is_empty()
            && self.cancelling == 0
    }

    /// The account's slots as learned, for the report.
    pub fn learned_slots(&self) -> Option<u64> {
        self.slots.learned().map(|s| s as u64)
    }
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

/// `start + limit`, or as far as the clock goes when that overflows.
fn deadline_after(start: Instant, limit: Duration) -> Instant {
    start
        .checked_add(limit)
        .or_else(|| start.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(start)
}

/// The deadline of a task created by an earlier run: `--job-timeout` from its create's intent,
/// both read on vidbatch's own clock.
fn resumed_deadline(intent_at: Option<Timestamp>, limit: Duration) -> Instant {
    let now = Instant::now();
    let age = intent_at
        .and_then(|at| Duration::try_from(Timestamp::now().0 - at.0).ok())
        .unwrap_or(Duration::ZERO);
    deadline_after(now, limit.saturating_sub(age))
}

/// How long a task the lists cannot speak for waits between reads of its own: the sweep
/// interval, growing with the task's age up to five times it.
fn read_gap(sent: Instant, interval: Duration, now: Instant) -> Duration {
    let minutes = now.duration_since(sent).as_secs_f64() / 60.0;
    interval.mul_f64(minutes.clamp(1.0, 5.0))
}
