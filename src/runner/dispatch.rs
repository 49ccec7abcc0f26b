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
//! ids in place of the references. Among jobs ready to go, those with the longest chain of
//! jobs behind them go first. When a job fails, every job waiting behind it is blocked (never
//! created).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::reconcile::{self, Found, draws_seed, effective_request};
use super::slots::Slots;
use super::spend::{Reservation, Spend};
use super::sweep::{self, PAGE, Page, Seen};
use super::work::{self, Fetch, FetchPlan, ListFor, ReadFor, Report};
use super::{Observer, RunSettings, StopKind};
use crate::api::{
    ApiError, Client, ContentItem, CreateRequest, IdempotencyKey, Task, TaskList, TaskStatus, Timestamp,
};
use crate::events::{Counters, Event, Failure, FailureKind, Throttle};
use crate::hex::hex;
use crate::journal::{Durable, Journal};
use crate::state::{JobState, Phase, RunState, Tally};

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
    /// The longest chain of jobs (itself included) that waits on each job.
    behind: HashMap<String, usize>,
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
        // The longest chains first; the rest in plan order.
        pending.sort_by_key(|id| std::cmp::Reverse(self.behind.get(id).copied().unwrap_or(1)));
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
            let key = reconcile::match_key(&effective_request(job));
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
        if on_server > 0 && !self.settings.cancel_on_interrupt {
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

    /// Spends the tokens the pacer has on the most valuable requests; returns when to look
    /// again.
    fn spend_tokens(&mut self, now: Instant) -> Instant {
        let mut wake = self.next_tick;
        // A due sweep wakes the loop only when it could be sent: while a list is on the wire
        // (or the wire is full) its answer wakes the loop instead, so it never spins.
        if self.wants_sweep() && !self.listing && self.outstanding < MAX_OUTSTANDING {
            wake = wake.min(self.next_sweep);
        }
        let mut held = false;
        while let Some(next) = self.next_request(now) {
            match self.pacer.try_take() {
                Ok(()) => self.send(next, now),
                Err(at) => {
                    wake = wake.min(at);
                    held = true;
                    break;
                }
            }
        }
        self.note_throttle(held, now);
        wake
    }

    /// Tells the display when the pacer begins or stops holding requests back: at once for a
    /// 429's pause; after [`THROTTLE_AFTER`] of waiting without a break for the `--rpm` bucket;
    /// and that it stopped once requests have flowed that long (so the state does not flicker
    /// when the queue empties for a moment).
    fn note_throttle(&mut self, held: bool, now: Instant) {
        let since = *self.held_since.get_or_insert(now);
        if !held {
            self.held_since = None;
        }
        let flowing = *self.flowing_since.get_or_insert(now);
        if held {
            self.flowing_since = None;
        }
        let by = match held {
            true if self.pacer.is_paused() => Some(Throttle::RateLimited),
            true if now.duration_since(since) >= THROTTLE_AFTER => Some(Throttle::Rpm),
            // Not yet worth showing; a throttle shown stays while requests wait.
            true => self.throttled.map(|_| Throttle::Rpm),
            false if now.duration_since(flowing) >= THROTTLE_AFTER => None,
            false => self.throttled,
        };
        self.tell_throttle(by);
    }

    fn tell_throttle(&mut self, by: Option<Throttle>) {
        if by != self.throttled {
            self.throttled = by;
            self.emit(Event::Throttled { by });
        }
    }

    /// Tasks on the server or on their way there.
    fn in_flight(&self) -> usize {
        self.flights.len() + self.creating.len() + self.lost.len()
    }

    fn wants_sweep(&self) -> bool {
        !self.interrupted && (!self.flights.is_empty() || !self.lost.is_empty())
    }

    /// The interval between sweeps now.
    fn sweep_interval(&self) -> Duration {
        let used = self.used.len() as f64 / USE_WINDOW.as_secs_f64();
        sweep::interval(self.settings.poll_interval, self.pacer.rpm_now() / 60.0, used)
    }

    /// The in-flight target now.
    fn target(&self) -> usize {
        self.slots.target(self.sweep_interval())
    }

    fn next_request(&mut self, now: Instant) -> Option<Next> {
        if self.outstanding >= MAX_OUTSTANDING {
            return None;
        }
        if let Some((job, task)) = self.cancels.front() {
            return Some(Next::Cancel(job.clone(), task.clone()));
        }
        if self.interrupted {
            return None;
        }
        if let Some(next) = self.next_create() {
            return Some(next);
        }
        if self.stop.is_none()
            && let Some(job) = self
                .upstream_reads
                .iter()
                .find(|j| !self.upstream_reading.contains(*j))
        {
            return Some(Next::UpstreamRead(job.clone()));
        }
        if !self.listing {
            if let Some(status) = self.status_pages.front() {
                return Some(Next::List(ListFor::Status(status.clone())));
            }
            if self.wants_sweep() && now >= self.next_sweep {
                return Some(Next::List(ListFor::Sweep));
            }
        }
        // A URL is read when a download can take it soon: read long before, it may expire in
        // the queue and cost another read.
        let downloads_ahead = self.fetch_wait.len() + self.fetching + self.url_reading.len();
        if downloads_ahead < 2 * self.settings.download_concurrency.max(1)
            && let Some(job) = self.url_wait.iter().find(|j| !self.url_reading.contains(*j))
        {
            return Some(Next::UrlRead(job.clone()));
        }
        self.reads
            .iter()
            .find(|(task, _)| !self.reading.contains(task))
            .map(|(task, why)| Next::Read(task.clone(), *why))
    }

    /// The next job to create, with its tokens reserved, when the target allows one.
    fn next_create(&mut self) -> Option<Next> {
        if self.stop.is_some() || self.pending.is_empty() || self.in_flight() >= self.target() {
            return None;
        }
        let (index, cost) = loop {
            let (index, cost) =
                self.pending
                    .iter()
                    .take(CREATE_LOOKAHEAD)
                    .enumerate()
                    .find_map(|(i, id)| {
                        let job = self.state.jobs.get(id)?;
                        let free = draws_seed(&job.request)
                            || !self
                                .busy_keys
                                .contains(&reconcile::match_key(&effective_request(job)));
                        free.then(|| (i, job.estimated_tokens.unwrap_or(0)))
                    })?;
            let id = self.pending.get(index)?.clone();
            if !self.upstream.contains_key(&id) || self.gap(&id).is_none() {
                break (index, cost);
            }
            // Its upstream URLs went stale while it queued: back to waiting for a fresh read.
            self.pending.remove(index);
            self.waiting.insert(id.clone());
            self.try_release(&id);
        };
        match self.spend.reserve(cost) {
            Some(reservation) => Some(Next::Create(index, reservation)),
            None => {
                // Creates still unanswered may give their share back; else the budget is spent.
                if self.creating.is_empty() && self.lost.is_empty() {
                    let budget = self.spend.limit().unwrap_or_default();
                    self.stop(
                        StopKind::Limit,
                        format!("the token budget ({budget}) would be passed (--budget-tokens)"),
                    );
                }
                None
            }
        }
    }

    fn send(&mut self, next: Next, now: Instant) {
        self.counters.api_requests += 1;
        let client = self.client.clone();
        match next {
            Next::Cancel(job, task) => {
                self.cancels.pop_front();
                self.cancelling += 1;
                self.counters.cancels += 1;
                self.spawn_api(work::cancel(client, job, task));
            }
            Next::Create(index, reservation) => {
                self.note_use(now);
                if let Some(id) = self.pending.remove(index) {
                    self.send_create(id, reservation);
                }
            }
            Next::List(what) => {
                self.counters.lists += 1;
                self.listing = true;
                if matches!(what, ListFor::Status(_)) {
                    self.status_pages.pop_front();
                }
                self.spawn_api(work::list(client, what, PAGE));
            }
            Next::UrlRead(job) => {
                self.note_use(now);
                self.counters.reads += 1;
                self.url_wait.retain(|j| *j != job);
                let Some(task) = self.task_of(&job) else {
                    return;
                };
                self.url_reading.insert(job.clone());
                self.spawn_api(work::read(client, job, task, ReadFor::Url));
            }
            Next::UpstreamRead(job) => {
                self.note_use(now);
                self.counters.reads += 1;
                self.upstream_reads.retain(|j| *j != job);
                let Some(task) = self.task_of(&job) else {
                    self.block_behind(&job, &format!("job `{job}` has no task to take it from"));
                    return;
                };
                self.upstream_reading.insert(job.clone());
                self.spawn_api(work::read(client, job, task, ReadFor::Upstream));
            }
            Next::Read(task, why) => {
                self.note_use(now);
                self.counters.reads += 1;
                self.reads.retain(|(t, _)| *t != task);
                let Some(flight) = self.flights.get_mut(&task) else {
                    return;
                };
                flight.read_queued = false;
                let job = flight.job.clone();
                self.reading.insert(task.clone());
                self.spawn_api(work::read(client, job, task, why));
            }
        }
    }

    /// The task a job is on now.
    fn task_of(&self, job: &str) -> Option<String> {
        self.state
            .jobs
            .get(job)
            .and_then(|j| j.task_id())
            .map(str::to_string)
    }

    /// Starts one API request's work, counted until its report comes back.
    fn spawn_api(&mut self, work: impl Future<Output = Report> + Send + 'static) {
        self.outstanding += 1;
        self.workers.spawn(work);
    }

    fn note_use(&mut self, now: Instant) {
        self.used.push_back(now);
        while self
            .used
            .front()
            .is_some_and(|t| now.duration_since(*t) > USE_WINDOW)
        {
            self.used.pop_front();
        }
    }

    fn send_create(&mut self, id: String, reservation: Reservation) {
        let Some(job) = self.state.jobs.get(&id) else {
            return;
        };
        let resolved = if job.upstream.is_empty() {
            None
        } else {
            match self.resolve(&job.request) {
                Some(content) => Some(content),
                None => {
                    drop(reservation);
                    self.waiting.insert(id.clone());
                    self.try_release(&id);
                    return;
                }
            }
        };
        let seed =
            draws_seed(&job.request).then(|| job.seed.unwrap_or_else(|| i64::from(rand::random::<u32>())));
        let key = idempotency_key(&self.run_id, job);
        let attempt = job.attempts + 1;
        let intent = self.emit(Event::SubmitIntent {
            job: id.clone(),
            attempt,
            idempotency_key: key.expose().to_string(),
            seed,
            at: Timestamp::now(),
        });
        let Some(job) = self.state.jobs.get(&id) else {
            return;
        };
        let mut request = effective_request(job);
        if let Some(content) = resolved {
            request.content = content;
        }
        self.busy_keys.insert(reconcile::match_key(&request));
        self.creating.insert(id.clone());
        self.counters.creates += 1;
        self.spawn_api(work::create(
            self.client.clone(),
            id,
            request,
            key,
            intent,
            reservation,
        ));
    }

    /// Periodic checks: backoffs that ended, deadlines, and reads that are due.
    fn tick(&mut self, now: Instant) {
        self.next_tick = now + self.settings.poll_interval.min(Duration::from_secs(1));
        if !self.delayed.is_empty() {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            self.delayed = later;
            for (_, id) in due.into_iter().rev() {
                self.pending.push_front(id);
            }
        }
        let grace = self.lost_grace();
        for (task, f) in &mut self.flights {
            if f.read_queued || f.timing_out {
                continue;
            }
            let why = if now >= f.deadline {
                // One last look: a task that finished is not cancelled.
                f.timing_out = true;
                Some(ReadFor::Deadline)
            } else if f.next_read.is_some_and(|t| t <= now)
                || f.absent_since.is_some_and(|t| now.duration_since(t) > grace)
                || now.duration_since(f.last_read) > SAFETY_READ
            {
                Some(ReadFor::Status)
            } else {
                None
            };
            if let Some(why) = why {
                f.read_queued = true;
                if why == ReadFor::Deadline {
                    self.reads.push_front((task.clone(), why));
                } else {
                    self.reads.push_back((task.clone(), why));
                }
            }
        }
    }

    /// How long a create whose answer was lost may stay unlisted before it is taken as never
    /// made: a few times the longest lag the lists have shown for this run's own tasks, and
    /// long while they have shown none.
    fn lost_grace(&self) -> Duration {
        if self.lag_seen {
            LOST_GRACE_MIN.max(self.lag_max * 3)
        } else {
            LOST_GRACE_UNSEEN
        }
    }

    fn start_fetches(&mut self) {
        if self.interrupted || self.halted {
            return;
        }
        while self.fetching < self.settings.download_concurrency.max(1) {
            let Some((job, task, fresh)) = self.fetch_wait.pop_front() else {
                return;
            };
            let Some(state) = self.state.jobs.get(&job) else {
                continue;
            };
            if !fresh && url_expired(&task, self.client.server_offset()) {
                tracing::info!(job = %job, "video URL past its expiry; reading the task for a fresh one");
                self.emit(Event::UrlRefreshed {
                    job: job.clone(),
                    status: 0,
                });
                self.url_wait.push_back(job);
                continue;
            }
            let out = &self.settings.out_dir;
            let plan = FetchPlan {
                http: self.http.clone(),
                video: out.join(video_path(&state.name)),
                frame: out.join(frame_path(&state.name)),
                wants_frame: state.request.return_last_frame == Some(true),
                max_bytes: self.settings.max_video_bytes,
                retry: self.settings.retry,
                max_retries: self.settings.max_retries,
            };
            self.fetching += 1;
            if self.downstream.contains_key(&job) {
                self.fresh.insert(job.clone(), (task.clone(), false));
            }
            self.workers.spawn(work::fetch(plan, job, task));
        }
    }

    fn handle(&mut self, report: Report) {
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
    fn answered<T>(&mut self, result: &Result<T, ApiError>) {
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

    fn on_created(
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
        let key = reconcile::match_key(&effective_request(state));
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
    fn retry_create(&mut self, job: String, why: &dyn std::fmt::Display, now: Instant) {
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

    fn note_retry(&mut self, job: &str, what: &str, attempt: u32, error: String, wait: Duration) {
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
    fn fly(&mut self, job: String, task: Task, sent: Instant, now: Instant) {
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

    /// What a list or a read showed of a task in flight.
    fn on_status(&mut self, task_id: &str, task: Task, now: Instant) {
        let Some(flight) = self.flights.get_mut(task_id) else {
            return;
        };
        let job = flight.job.clone();
        match &task.status {
            TaskStatus::Completed => {
                // The slot is free at once; without a URL the task is read for one, off the
                // critical path, and recorded as completed with what that read shows.
                self.flights.remove(task_id);
                self.slots.on_finished(now);
                if has_url(&task) {
                    self.completed(&job, &task);
                    self.fetch_wait.push_back((job, task, false));
                } else {
                    self.url_wait.push_back(job);
                }
            }
            TaskStatus::Failed | TaskStatus::Expired | TaskStatus::Cancelled => {
                self.flights.remove(task_id);
                self.slots.on_finished(now);
                let (kind, default) = match task.status {
                    TaskStatus::Failed => (FailureKind::TaskFailed, "the task failed"),
                    TaskStatus::Expired => (FailureKind::Expired, "the task expired"),
                    _ => (FailureKind::Cancelled, "the task was cancelled"),
                };
                self.fail(
                    &job,
                    Some(task_id.to_string()),
                    task_failure(&task, kind, default),
                );
            }
            status => {
                if flight.status != *status {
                    flight.status = status.clone();
                    self.emit(Event::TaskProgress {
                        job,
                        task_id: task_id.to_string(),
                        status: status.clone(),
                        at: Timestamp::now(),
                    });
                }
            }
        }
    }

    /// Records a task as completed, with its usage and the expiry of its video URL.
    fn completed(&mut self, job: &str, task: &Task) {
        self.emit(Event::TaskCompleted {
            job: job.to_string(),
            task_id: task.id.clone(),
            usage: task.usage,
            completed_at: task.completed_at,
            created_at: task.created_at,
            video_url_expires_at: task.video_url_expires_at,
            at: Timestamp::now(),
        });
    }

    fn on_read(&mut self, task_id: String, why: ReadFor, result: Result<Task, ApiError>, now: Instant) {
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
    fn time_out(&mut self, task_id: &str) {
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

    fn on_url_read(&mut self, job: String, result: Result<Task, ApiError>) {
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

    fn on_sweep(&mut self, page: TaskList, now: Instant) {
        let (processing, queued) = sweep::account_load(&page);
        if !sweep::is_full(&page) || queued > 0 {
            self.slots.observe(processing, queued);
        } else {
            // Tasks start in the order they were created and a page is newest first, so a
            // queued task would be on this full page: none is, so every task seen processing
            // still runs, more than one page holds.
            let running = self
                .flights
                .values()
                .filter(|f| f.status == TaskStatus::Processing)
                .count();
            self.slots.observe(processing.max(running), 0);
        }
        let interval = self.sweep_interval();
        let view = Page::new(&page);
        let mut news: Vec<(String, Task)> = Vec::new();
        let mut uncovered = 0;
        for (id, f) in &mut self.flights {
            f.uncovered = false;
            match view.judge(id, f.created_at) {
                Seen::Listed(task) => {
                    if !f.listed {
                        f.listed = true;
                        self.lag_max = self.lag_max.max(now.duration_since(f.sent));
                        self.lag_seen = true;
                    }
                    f.absent_since = None;
                    f.next_read = None;
                    if task.status != f.status || task.status.is_terminal() {
                        news.push((id.clone(), task.clone()));
                    }
                }
                Seen::Absent => {
                    f.next_read = None;
                    f.absent_since.get_or_insert(now);
                }
                Seen::Uncovered => {
                    f.uncovered = true;
                    uncovered += 1;
                }
            }
        }
        for (id, task) in news {
            self.on_status(&id, task, now);
        }
        let covers_lost = !sweep::is_full(&page);
        self.settle_lost(std::slice::from_ref(&page), covers_lost, now);
        if uncovered > 0 {
            tracing::debug!(
                uncovered,
                in_flight = self.flights.len(),
                target = self.target(),
                "a sweep could not speak for every task"
            );
        }
        if self.status_pages.is_empty() {
            if !self.lost.is_empty() && !covers_lost {
                self.status_pages.extend(ALL);
            } else if uncovered >= STATUS_PAGES_MIN {
                self.rounds += 1;
                self.status_pages.extend(COMMON);
                if self.rounds % RARE_EVERY == 1 || self.rare_pages.len() < RARE.len() {
                    self.status_pages.extend(RARE);
                }
            }
            self.status_round.clear();
        }
        if self.status_pages.is_empty() {
            // Too few to list for: each uncovered task is read on its own.
            for f in self.flights.values_mut().filter(|f| f.uncovered) {
                f.next_read.get_or_insert(now);
            }
        }
        self.next_sweep = now + interval;
        if !self.warned_cap && self.slots.held_back(interval) {
            self.warned_cap = true;
            let cap = self.settings.concurrency.cap().unwrap_or_default();
            self.emit(Event::Notice {
                message: format!(
                    "--concurrency {cap} holds this run back: the account runs {} tasks at once \
                     and a queue ahead of them keeps its slots busy (leave --concurrency at auto)",
                    self.slots
                        .learned()
                        .map_or_else(|| format!("at least {cap}"), |s| s.to_string())
                ),
            });
        }
    }

    fn on_status_page(&mut self, status: TaskStatus, page: TaskList, now: Instant) {
        let mut news: Vec<(String, Task)> = Vec::new();
        for task in &page.items {
            if let Some(f) = self.flights.get_mut(&task.id) {
                f.next_read = None;
                f.absent_since = None;
                f.uncovered = false;
                if task.status != f.status || task.status.is_terminal() {
                    news.push((task.id.clone(), task.clone()));
                }
            }
        }
        for (id, task) in news {
            self.on_status(&id, task, now);
        }
        if RARE.contains(&status) {
            self.rare_pages.insert(status.as_str().to_string(), page.clone());
        }
        self.status_round.push((status, page));
        if self.status_pages.is_empty() {
            self.end_status_round(now);
        }
    }

    /// After a status round: an uncovered task that no finished page lists, though every
    /// finished page would, is still running; any other is read on its own.
    fn end_status_round(&mut self, now: Instant) {
        let round = std::mem::take(&mut self.status_round);
        let mut finished: Vec<&TaskList> = round
            .iter()
            .filter(|(s, _)| COMMON.contains(s))
            .map(|(_, p)| p)
            .collect();
        finished.extend(self.rare_pages.values());
        let views: Vec<Page> = finished.iter().map(|p| Page::new(p)).collect();
        let complete = finished.len() == COMMON.len() + RARE.len();
        for (id, f) in self.flights.iter_mut().filter(|(_, f)| f.uncovered) {
            let running = complete && views.iter().all(|v| v.judge(id, f.created_at) == Seen::Absent);
            if running {
                f.uncovered = false;
                f.next_read = None;
            } else {
                f.next_read.get_or_insert(now);
            }
        }
        let pages: Vec<TaskList> = round.into_iter().map(|(_, p)| p).collect();
        self.settle_lost(&pages, true, now);
    }

    /// Looks for the tasks of lost creates on `pages`. `covering`: the pages hold every task
    /// the lost creates may have made, so one missing from them was not made, once the lists
    /// have had time to show it.
    fn settle_lost(&mut self, pages: &[TaskList], covering: bool, now: Instant) {
        if self.lost.is_empty() {
            return;
        }
        let grace = self.lost_grace();
        let mut ids: Vec<(Instant, String)> = self.lost.iter().map(|(id, l)| (l.since, id.clone())).collect();
        ids.sort();
        for (_, id) in ids {
            let (Some(job), Some(lost)) = (self.state.jobs.get(&id), self.lost.get(&id)) else {
                self.lost.remove(&id);
                continue;
            };
            let request = effective_request(job);
            let tokens = job.estimated_tokens.unwrap_or(0);
            let (since_sent, later) = (lost.since, lost.later.clone());
            // A drawn seed is this job's alone: no time window is needed to tell its task.
            let offset = self.client.server_offset().unwrap_or(time::Duration::ZERO);
            let since =
                (!draws_seed(&job.request)).then(|| Timestamp(lost.intent_at.0 + offset - CLOCK_SLACK));
            let claimed = &self.state.claimed_tasks;
            let verdict = match reconcile::find(&request, since, pages, |t| claimed.contains(t)) {
                Found::One(task) => Ok(task.clone()),
                Found::Many(tasks) => Err(Some(tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>())),
                Found::None => Err(None),
            };
            match verdict {
                Ok(task) => {
                    let Some(lost) = self.lost.remove(&id) else {
                        continue;
                    };
                    self.busy_keys.remove(&lost.key);
                    match lost.reservation {
                        Some(r) => r.keep(),
                        None => self.spend.add(tokens),
                    }
                    self.counters.reconciled += 1;
                    tracing::info!(job = %id, task = %task.id, "found the task of a lost create");
                    self.emit(Event::Submitted {
                        job: id.clone(),
                        task_id: task.id.clone(),
                        at: task.created_at.unwrap_or_else(Timestamp::now),
                        reconciled: true,
                    });
                    self.fly(id, task, lost.since, now);
                }
                Err(Some(candidates)) => {
                    // Never guess: either could be another's, and both may be paid for.
                    let Some(lost) = self.lost.remove(&id) else {
                        continue;
                    };
                    self.busy_keys.remove(&lost.key);
                    if let Some(r) = lost.reservation {
                        r.keep();
                    }
                    let message = format!(
                        "ambiguous: tasks {} all fit the create whose answer was lost; none is taken \
                         (check them with `vidbatch status`, then rerun with --retry-failed)",
                        candidates.join(", ")
                    );
                    self.fail(&id, None, plain(FailureKind::SubmitFailed, message));
                }
                Err(None) => {
                    let waited = now.duration_since(since_sent);
                    let later_listed = later
                        .as_ref()
                        .is_some_and(|l| pages.iter().any(|p| p.items.iter().any(|t| t.id == *l)));
                    if !covering || (waited < grace && !(later_listed && waited >= self.lag_max)) {
                        continue;
                    }
                    let Some(lost) = self.lost.remove(&id) else {
                        continue;
                    };
                    self.busy_keys.remove(&lost.key);
                    drop(lost.reservation);
                    self.emit(Event::SubmitNotCreated {
                        job: id.clone(),
                        reason: "no task found for the create whose answer was lost".into(),
                    });
                    self.retry_create(id, &"the create's answer was lost and it made no task", now);
                }
            }
        }
    }

    fn on_cancelled(&mut self, job: String, task_id: String, result: Result<Option<Task>, ApiError>) {
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

    fn on_fetched(&mut self, job: String, task_id: String, outcome: Fetch, retries: Vec<(String, Duration)>) {
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
                    path: video_path(&name),
                    bytes: video.bytes,
                    sha256: video.sha256,
                    last_frame: frame.map(|_| frame_path(&name)),
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

    fn fail(&mut self, job: &str, task_id: Option<String>, failure: Failure) {
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
    fn fatal(&mut self, e: &ApiError) {
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

    fn fail_local(&mut self, message: String) {
        self.local_failure.get_or_insert(message);
    }

    /// Reads the chains of the plan: who refers to whom, and how long a chain waits on each.
    fn link(&mut self, plan: &[String]) {
        self.upstream.clear();
        self.downstream.clear();
        for id in plan {
            let Some(job) = self.state.jobs.get(id) else {
                continue;
            };
            if job.upstream.is_empty() {
                continue;
            }
            for u in &job.upstream {
                self.downstream.entry(u.clone()).or_default().push(id.clone());
            }
            self.upstream.insert(id.clone(), job.upstream.clone());
        }
        // Longest chain behind each job, downstream first (a cycle, which validation rules
        // out, would leave its jobs at 1).
        let mut left: HashMap<&str, usize> = plan
            .iter()
            .map(|id| (id.as_str(), self.downstream.get(id).map_or(0, Vec::len)))
            .collect();
        let mut ready: Vec<&str> = left.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
        let mut behind: HashMap<String, usize> = HashMap::new();
        while let Some(id) = ready.pop() {
            let b = 1 + self
                .downstream
                .get(id)
                .map(|ds| {
                    ds.iter()
                        .filter_map(|d| behind.get(d))
                        .max()
                        .copied()
                        .unwrap_or(0)
                })
                .unwrap_or(0);
            behind.insert(id.to_string(), b);
            for u in self.upstream.get(id).map(Vec::as_slice).unwrap_or_default() {
                if let Some(n) = left.get_mut(u.as_str()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        ready.push(u.as_str());
                    }
                }
            }
        }
        self.behind = behind;
    }

    /// Puts a job that is ready into the create queue, after every job with a longer chain
    /// behind it.
    fn enqueue(&mut self, id: String) {
        let b = self.behind.get(&id).copied().unwrap_or(1);
        let at = self
            .pending
            .iter()
            .position(|p| self.behind.get(p).copied().unwrap_or(1) < b)
            .unwrap_or(self.pending.len());
        self.pending.insert(at, id);
    }

    /// Moves a waiting job on when it can: to the create queue when every job it refers to is
    /// done and their URLs are at hand (else their tasks are read), blocked when one of them
    /// failed or cannot give what it needs.
    fn try_release(&mut self, id: &str) {
        if !self.waiting.contains(id) {
            return;
        }
        let ups = self.upstream.get(id).cloned().unwrap_or_default();
        for u in &ups {
            match self.state.jobs.get(u) {
                Some(j) if j.phase == Phase::Done => {}
                Some(j) if j.phase == Phase::Failed => {
                    let why = if j.is_blocked() {
                        format!("waits for job `{u}`, which is blocked")
                    } else {
                        format!("waits for job `{u}`, which failed")
                    };
                    self.block(id, why);
                    return;
                }
                _ => return,
            }
        }
        match self.gap(id) {
            None => {
                self.waiting.remove(id);
                self.enqueue(id.to_string());
            }
            Some(Gap::Read(jobs)) => {
                for u in jobs {
                    if !self.upstream_reads.contains(&u) && !self.upstream_reading.contains(&u) {
                        self.upstream_reads.push_back(u);
                    }
                }
            }
            Some(Gap::Missing(why)) => self.block(id, why),
        }
    }

    /// What keeps a job whose upstream jobs are done from being created now, if anything.
    fn gap(&self, id: &str) -> Option<Gap> {
        let job = self.state.jobs.get(id)?;
        let offset = self.client.server_offset();
        let mut reads: Vec<String> = Vec::new();
        for item in &job.request.content {
            let Some(u) = item.job_ref().map(str::trim) else {
                continue;
            };
            let Some(up) = self.state.jobs.get(u) else {
                return Some(Gap::Missing(format!(
                    "refers to job `{u}`, which this run does not know"
                )));
            };
            if matches!(item, ContentItem::DraftTask { .. }) {
                if up.task_id().is_none() {
                    return Some(Gap::Missing(format!("job `{u}` has no task to promote")));
                }
                continue;
            }
            let want_frame = matches!(item, ContentItem::ImageUrl { .. });
            let usable = match self.fresh.get(u) {
                Some((task, by_read)) if url_fresh(task, offset) => {
                    let url = if want_frame {
                        task.last_frame_url.as_deref()
                    } else {
                        task.video_url.as_deref()
                    };
                    if url.is_some_and(|x| !x.is_empty()) {
                        true
                    } else if *by_read {
                        let what = if want_frame { "last frame" } else { "video URL" };
                        return Some(Gap::Missing(format!(
                            "job `{u}` gave no {what} (its task finished without one)"
                        )));
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !usable && !reads.iter().any(|r| r == u) {
                reads.push(u.to_string());
            }
        }
        (!reads.is_empty()).then_some(Gap::Read(reads))
    }

    /// The content of a request with each `job://` reference replaced by the URL or task id it
    /// stands for; `None` when one is not at hand.
    fn resolve(&self, request: &CreateRequest) -> Option<Vec<ContentItem>> {
        let mut content = request.content.clone();
        for item in &mut content {
            let Some(u) = item.job_ref().map(|u| u.trim().to_string()) else {
                continue;
            };
            match item {
                ContentItem::DraftTask { draft_task, .. } => {
                    draft_task.id = self.state.jobs.get(&u)?.task_id()?.to_string();
                }
                ContentItem::ImageUrl { image_url, .. } => {
                    let (task, _) = self.fresh.get(&u)?;
                    image_url.url = task.last_frame_url.clone().filter(|x| !x.is_empty())?;
                }
                ContentItem::VideoUrl { video_url, .. } => {
                    let (task, _) = self.fresh.get(&u)?;
                    video_url.url = task.video_url.clone().filter(|x| !x.is_empty())?;
                }
                ContentItem::AudioUrl { .. } => return None,
            }
        }
        Some(content)
    }

    /// A job is done: the jobs waiting on it may go.
    fn release_behind(&mut self, job: &str) {
        let downs = self.downstream.get(job).cloned().unwrap_or_default();
        for d in downs {
            self.try_release(&d);
        }
    }

    /// Blocks one job that was never created, and every job waiting behind it.
    fn block(&mut self, id: &str, why: String) {
        let pending = self.state.jobs.get(id).is_some_and(|j| j.phase == Phase::Pending);
        self.waiting.remove(id);
        if !pending {
            return;
        }
        self.pending.retain(|p| p != id);
        self.delayed.retain(|(_, p)| p != id);
        tracing::info!(job = %id, reason = %why, "blocked");
        self.emit(Event::JobFailed {
            job: id.to_string(),
            task_id: None,
            failure: plain(FailureKind::Blocked, why),
            at: Timestamp::now(),
        });
        self.block_behind(id, &format!("waits for job `{id}`, which is blocked"));
    }

    /// Blocks every job not yet created that waits on `job`, with `why` naming it.
    fn block_behind(&mut self, job: &str, why: &str) {
        let downs = self.downstream.get(job).cloned().unwrap_or_default();
        for d in downs {
            self.block(&d, why.to_string());
        }
    }

    fn on_upstream_read(&mut self, job: String, result: Result<Task, ApiError>) {
        self.upstream_reading.remove(&job);
        match result {
            Ok(task) if task.status == TaskStatus::Completed => {
                self.upstream_errors.remove(&job);
                self.fresh.insert(job.clone(), (task, true));
                self.release_behind(&job);
            }
            Ok(task) => {
                let why = format!(
                    "waits for job `{job}`, whose task is now {} on the server (tasks are kept \
                     about 7 days): generate `{job}` again (a new id, or --fresh)",
                    task.status.as_str()
                );
                self.block_waiting_behind(&job, &why);
            }
            Err(ApiError::RateLimited { .. }) => self.upstream_reads.push_front(job),
            Err(e @ ApiError::Transient { .. }) => {
                let errors = self.upstream_errors.entry(job.clone()).or_default();
                *errors += 1;
                let attempt = *errors;
                if attempt > self.settings.max_retries {
                    let why = format!("waits for job `{job}`, whose task could not be read: {e}");
                    self.block_waiting_behind(&job, &why);
                } else {
                    let wait = self.settings.retry.delay(attempt);
                    self.note_retry(&job, "get", attempt, e.to_string(), wait);
                    self.upstream_reads.push_back(job);
                }
            }
            Err(e) if e.is_fatal() => self.fatal(&e),
            Err(e) => {
                let why = format!("waits for job `{job}`, whose task could not be read: {e}");
                self.block_waiting_behind(&job, &why);
            }
        }
    }

    /// Blocks the jobs waiting on `job` (a done job whose task can no longer serve them).
    fn block_waiting_behind(&mut self, job: &str, why: &str) {
        let downs: Vec<String> = self
            .downstream
            .get(job)
            .map(|ds| ds.iter().filter(|d| self.waiting.contains(*d)).cloned().collect())
            .unwrap_or_default();
        for d in downs {
            self.block(&d, why.to_string());
        }
    }

    /// Jobs left waiting at the end of a run that was not stopped: they wait for jobs this run
    /// could not finish, and stay pending for the next run.
    pub fn note_left_waiting(&mut self) {
        if self.waiting.is_empty() || self.stop.is_some() || self.interrupted {
            return;
        }
        let mut left: Vec<String> = self.waiting.iter().cloned().collect();
        left.sort();
        let message = format!(
            "{} job(s) still wait for jobs this run did not finish ({}); run again to continue",
            left.len(),
            left.join(", ")
        );
        self.emit(Event::Notice { message });
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

fn has_url(task: &Task) -> bool {
    task.video_url.as_deref().is_some_and(|u| !u.is_empty())
}

/// Whether a task's video URL is past (or within 2 s of) its expiry, read on the server's
/// clock (`offset`: how far ahead of ours it is).
fn url_expired(task: &Task, offset: Option<time::Duration>) -> bool {
    let server_now = Timestamp::now().0 + offset.unwrap_or(time::Duration::ZERO);
    task.video_url_expires_at
        .is_some_and(|at| at.0 <= server_now + time::Duration::seconds(2))
}

/// Whether a task's URLs live long enough to hand to another job: past the lesser of
/// [`URL_MARGIN`] and half their lifetime, on the server's clock.
fn url_fresh(task: &Task, offset: Option<time::Duration>) -> bool {
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

/// Where a job's video goes, relative to the out dir.
pub(super) fn video_path(name: &str) -> String {
    format!("videos/{name}.mp4")
}

/// Where a job's last frame goes, relative to the out dir.
pub(super) fn frame_path(name: &str) -> String {
    format!("videos/{name}.last.png")
}

fn api_failure(kind: FailureKind, e: &ApiError) -> Failure {
    Failure {
        kind,
        http_status: e.status(),
        code: e.detail().map(|d| d.code.0.clone()).filter(|c| !c.is_empty()),
        message: e.to_string(),
    }
}

fn plain(kind: FailureKind, message: String) -> Failure {
    Failure {
        kind,
        http_status: None,
        code: None,
        message,
    }
}

/// A task's own error, or `default` when it gave none.
fn task_failure(task: &Task, kind: FailureKind, default: &str) -> Failure {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiKey, ClientConfig, CreateRequest, ErrorCode, ErrorDetail};

    /// A dispatcher over `jobs` pending jobs whose client points at a closed port: these tests
    /// look at its decisions, never at its requests.
    fn dispatcher(dir: &std::path::Path, jobs: usize) -> Dispatcher {
        let ids: Vec<String> = (0..jobs).map(|i| format!("j{i}")).collect();
        let jobs: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
        chained(dir, &jobs)
    }

    fn task(id: &str, status: &str) -> Task {
        serde_json::from_value(
            serde_json::json!({"id": id, "status": status, "created_at": "2026-12-01T10:00:00Z"}),
        )
        .unwrap()
    }

    /// Records what the display is told of the throttle.
    struct Throttles(std::sync::Arc<std::sync::Mutex<Vec<Option<Throttle>>>>);

    impl Observer for Throttles {
        fn on_event(&mut self, event: &Event, _: &RunState, _: &Tally) {
            if let Event::Throttled { by } = event {
                self.0.lock().unwrap().push(*by);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_display_hears_when_requests_are_held_back_and_when_they_flow_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(dir.path(), 3);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        d.observers.push(Box::new(Throttles(seen.clone())));
        let t0 = Instant::now();
        // A token a moment away is no throttle; a second of waiting is.
        d.note_throttle(true, t0);
        d.note_throttle(true, t0 + Duration::from_millis(500));
        assert!(seen.lock().unwrap().is_empty());
        d.note_throttle(true, t0 + Duration::from_millis(1500));
        d.note_throttle(true, t0 + Duration::from_secs(2));
        assert_eq!(*seen.lock().unwrap(), vec![Some(Throttle::Rpm)]);
        // Requests flowing for a moment leave it shown; flowing for a second clear it.
        d.note_throttle(false, t0 + Duration::from_secs(3));
        d.note_throttle(true, t0 + Duration::from_millis(3200));
        d.note_throttle(false, t0 + Duration::from_millis(3400));
        assert_eq!(*seen.lock().unwrap(), vec![Some(Throttle::Rpm)]);
        d.note_throttle(false, t0 + Duration::from_millis(4500));
        assert_eq!(*seen.lock().unwrap(), vec![Some(Throttle::Rpm), None]);
        // A 429's pause shows at once.
        d.answered(&rate_limited("rate_limit_exceeded"));
        d.note_throttle(true, Instant::now());
        assert_eq!(seen.lock().unwrap().last(), Some(&Some(Throttle::RateLimited)));
        assert!(!Event::Throttled { by: None }.is_journaled());
    }

    fn rate_limited(code: &str) -> Result<(), ApiError> {
        Err(ApiError::RateLimited {
            retry_after: None,
            limit: None,
            detail: Some(Box::new(ErrorDetail {
                code: ErrorCode(code.into()),
                ..Default::default()
            })),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn each_token_goes_to_a_cancel_then_a_create_then_a_sweep_then_url_reads_then_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(dir.path(), 3);
        let now = Instant::now();
        d.fly("other".into(), task("t0", "queued"), now, now);
        d.reads.push_back(("t0".into(), ReadFor::Status));
        d.url_wait.push_back("finished".into());
        d.next_sweep = now;
        assert!(
            matches!(d.next_request(now), Some(Next::Create(0, _))),
            "a create comes first"
        );
        d.cancels.push_back(("x".into(), "t9".into()));
        assert!(
            matches!(d.next_request(now), Some(Next::Cancel(..))),
            "a cancel comes before all"
        );
        d.cancels.clear();
        // With the in-flight target reached, the others are served in their order.
        d.slots = Slots::new(Some(1));
        assert!(matches!(d.next_request(now), Some(Next::List(ListFor::Sweep))));
        d.listing = true;
        assert!(matches!(d.next_request(now), Some(Next::UrlRead(j)) if j == "finished"));
        d.url_wait.clear();
        assert!(matches!(d.next_request(now), Some(Next::Read(t, ReadFor::Status)) if t == "t0"));
        // A slot freed: the create is served before the reads still waiting.
        d.flights.clear();
        assert!(matches!(d.next_request(now), Some(Next::Create(..))));
    }

    /// A dispatcher over jobs `(id, first_frame)` with the given references.
    fn chained(dir: &std::path::Path, jobs: &[(&str, Option<&str>)]) -> Dispatcher {
        let mut state = RunState::default();
        let plan: Vec<String> = jobs.iter().map(|(id, _)| id.to_string()).collect();
        for (id, frame) in jobs {
            let mut request = CreateRequest {
                model: "seedance-1.5-pro".into(),
                prompt: format!("shot {id}"),
                ..Default::default()
            };
            if let Some(f) = frame {
                request.content.push(ContentItem::ImageUrl {
                    image_url: crate::api::MediaUrl { url: f.to_string() },
                    role: Some(crate::api::ContentRole::FirstFrame),
                });
            }
            state.apply(&Event::JobPlanned {
                job: id.to_string(),
                name: id.to_string(),
                fingerprint: format!("fp-{id}"),
                request: Box::new(request),
                source: "test".into(),
                estimated_tokens: Some(100),
            });
        }
        let client = Client::new(&ClientConfig::new("http://127.0.0.1:9/v1", ApiKey::new("k"))).unwrap();
        let mut d = Dispatcher::new(Setup {
            client,
            http: reqwest::Client::new(),
            settings: RunSettings::new(dir),
            journal: Journal::open(&dir.join("state.jsonl")).unwrap(),
            state,
            observers: Vec::new(),
            run_id: "run_test".into(),
            plan: plan.clone(),
            committed_tokens: 0,
        });
        d.load(&plan);
        d
    }

    fn done(d: &mut Dispatcher, job: &str, task_id: &str) {
        d.emit(Event::Submitted {
            job: job.into(),
            task_id: task_id.into(),
            at: Timestamp::now(),
            reconciled: false,
        });
        d.emit(Event::JobDone {
            job: job.into(),
            task_id: task_id.into(),
            path: format!("videos/{job}.mp4"),
            bytes: 1,
            sha256: "x".into(),
            last_frame: None,
            at: Timestamp::now(),
        });
        d.release_behind(job);
    }

    fn finished_task(id: &str, expires_in: i64) -> Task {
        let at = Timestamp(Timestamp::now().0 + time::Duration::seconds(expires_in));
        let mut t = task(id, "completed");
        t.video_url = Some(format!("https://cdn/{id}.mp4"));
        t.last_frame_url = Some(format!("https://cdn/{id}.last.png"));
        t.video_url_expires_at = Some(at);
        t.video_url_ttl = Some(3600.0);
        t
    }

    #[tokio::test(start_paused = true)]
    async fn a_shot_waits_for_the_one_before_and_the_longest_chain_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = chained(
            dir.path(),
            &[
                ("solo", None),
                ("s1", None),
                ("s2", Some("job://s1")),
                ("s3", Some("job://s2")),
            ],
        );
        assert_eq!(d.pending, ["s1", "solo"], "the chain's root first");
        assert_eq!(d.waiting.len(), 2);
        // Done, with no URL at hand (an earlier run): its task is read first.
        d.pending.retain(|j| j != "s1");
        done(&mut d, "s1", "t1");
        assert!(d.waiting.contains("s2"));
        assert_eq!(d.upstream_reads, ["s1"]);
        d.on_upstream_read("s1".into(), Ok(finished_task("t1", 3000)));
        assert_eq!(d.pending, ["s2", "solo"], "the longer chain behind s2 goes first");
        let sent = d.resolve(&d.state.jobs["s2"].request).unwrap();
        assert_eq!(sent[0].url(), Some("https://cdn/t1.last.png"));
        // A URL about to expire is read again before it is handed on.
        d.fresh.insert("s1".into(), (finished_task("t1", 30), true));
        assert!(matches!(d.gap("s2"), Some(Gap::Read(r)) if r == ["s1"]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_shot_blocks_every_shot_behind_it_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = chained(
            dir.path(),
            &[
                ("s1", None),
                ("s2", Some("job://s1")),
                ("s3", Some("job://s2")),
                ("solo", None),
            ],
        );
        d.pending.retain(|j| j != "s1");
        d.fail("s1", None, plain(FailureKind::TaskFailed, "boom".into()));
        for (id, waits) in [("s2", "s1"), ("s3", "s2")] {
            let j = &d.state.jobs[id];
            assert!(j.is_blocked(), "{id}");
            assert!(
                j.failure
                    .as_ref()
                    .unwrap()
                    .message
                    .contains(&format!("`{waits}`"))
            );
        }
        assert!(d.waiting.is_empty());
        assert_eq!(d.pending, ["solo"]);
        assert_eq!(d.failed_this_run, 1, "blocked jobs are not failures of their own");
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_full_429_lowers_the_queue_and_not_the_request_rate() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(dir.path(), 0);
        d.slots.observe(8, 4);
        for _ in 0..20 {
            d.slots.on_finished(Instant::now());
            tokio::time::advance(Duration::from_millis(50)).await;
        }
        let target = d.target();
        let rpm = d.pacer.rpm_now();
        d.answered(&rate_limited("too_many_queued_tasks"));
        assert_eq!(d.pacer.rpm_now(), rpm);
        assert!(!d.pacer.is_paused());
        assert!(d.target() < target, "{} !< {target}", d.target());
        assert_eq!(d.counters.rate_limited, 1);
        // A 429 about the rate does hold every request.
        d.answered(&rate_limited("rate_limit_exceeded"));
        assert!(d.pacer.is_paused());
        assert!(d.pacer.rpm_now() < rpm);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_that_never_clears_ends_the_run_after_ten_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(dir.path(), 0);
        for _ in 0..60 {
            d.answered(&rate_limited("rate_limit_exceeded"));
            assert!(!d.halted, "gave up too soon");
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        d.answered(&Ok(()));
        tokio::time::advance(Duration::from_secs(9 * 60)).await;
        d.answered(&rate_limited("rate_limit_exceeded"));
        assert!(!d.halted, "an answer in between starts the count again");
        tokio::time::advance(Duration::from_secs(2 * 60)).await;
        d.answered(&rate_limited("rate_limit_exceeded"));
        assert!(d.halted);
        assert_eq!(d.stop, Some(StopKind::Fatal));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_past_its_deadline_is_read_first_and_cancelled_only_when_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(dir.path(), 0);
        let now = Instant::now();
        d.fly("a".into(), task("ta", "processing"), now, now);
        d.fly("b".into(), task("tb", "processing"), now, now);
        d.reads.push_back(("tb".into(), ReadFor::Status));
        tokio::time::advance(d.settings.job_timeout + Duration::from_secs(1)).await;
        let now = Instant::now();
        d.tick(now);
        assert!(matches!(d.reads.front(), Some((t, ReadFor::Deadline)) if t == "ta" || t == "tb"));
        // Finished after all: kept, not cancelled.
        d.on_read("ta".into(), ReadFor::Deadline, Ok(task("ta", "completed")), now);
        assert!(d.cancels.is_empty());
        assert!(!d.flights.contains_key("ta"));
        // Still running: cancelled.
        d.on_read("tb".into(), ReadFor::Deadline, Ok(task("tb", "processing")), now);
        assert_eq!(d.cancels.front().map(|(_, t)| t.as_str()), Some("tb"));
        assert!(d.flights.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_the_lists_cannot_cover_is_read_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dispatcher(dir.path(), 0);
        let now = Instant::now();
        d.fly("a".into(), task("ta", "processing"), now, now);
        // A full page of newer tasks of another client: it cannot speak for ours.
        let items: Vec<Task> = (0..PAGE)
            .map(|i| {
                let mut t = task(&format!("other{i}"), "processing");
                t.created_at = Some(Timestamp(time::macros::datetime!(2026-12-01 11:00 UTC)));
                t
            })
            .collect();
        d.on_sweep(
            TaskList {
                items,
                total: Some(500),
            },
            now,
        );
        tokio::time::advance(Duration::from_millis(10)).await;
        d.tick(Instant::now());
        assert!(matches!(d.reads.front(), Some((t, ReadFor::Status)) if t == "ta"));
    }
}
