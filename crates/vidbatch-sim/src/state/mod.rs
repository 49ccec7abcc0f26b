//! The simulated service: the main structure here is [`State`], accounts and their tasks over simulated time.
//!
//! Time is modelled lazily and exactly: before every request (and every stats read) each account
//! is advanced to "now". Processing tasks whose end passed finish at their end time, and each
//! freed slot starts the next queued task (FIFO) at that very moment, so the processing cap holds
//! and start order is submission order whatever the polling pattern. Nothing ticks in the background.
//!
//! A task's end is `start + generation time`; if its execution deadline
//! (`created + execution_expires_after`, scaled) comes first it ends `expired` at the deadline
//! instead (also while still queued). A completed task turns `expired` after the asset TTL.
//! Failed, cancelled and never-completed expired tasks are refunded.

mod render;

pub(crate) use render::{rfc3339, shift, task_json};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::SimConfig;
use crate::cost::cost_tokens;
use crate::error::ApiError;
use crate::rng;
use crate::stats::SimStats;
use crate::validate::CreateSpec;

/// Failure codes of failed tasks; one is a number, as the real API has been seen to send.
const FAILURE_CODES: [(&str, &str); 4] = [
    (
        "upstream_error",
        "the upstream model failed to generate the video",
    ),
    (
        "upstream_content_violation",
        "the output was blocked by the content policy",
    ),
    (
        "OutputVideoSensitiveContentDetected",
        "the generated video may contain sensitive content",
    ),
    ("50001", "internal generation error"),
];

/// The account id shown in stats for an API key: `acct_` + the first 8 hex digits of its SHA-256.
pub fn account_id(api_key: &str) -> String {
    let digest = Sha256::digest(api_key.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("acct_{hex}")
}

/// A task's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Queued,
    Processing,
    Completed,
    Failed,
    Expired,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Processing,
        Status::Completed,
        Status::Failed,
        Status::Expired,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One generation task.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub id: String,
    pub spec: CreateSpec,
    pub status: Status,
    pub created: Duration,
    pub started: Option<Duration>,
    pub ended: Option<Duration>,
    /// Real time the generation takes once started.
    pub gen_time: Duration,
    /// Real time since start after which the task expires unless completed.
    pub deadline: Duration,
    pub cost: u64,
    /// Seconds of video (the picked value when the request said -1).
    pub duration_used: i64,
    pub seed_used: i64,
    pub fails_with: Option<(Value, String)>,
    pub error: Option<(Value, String)>,
    /// Whether the task completed (usage, completed_at) even if now expired.
    pub was_completed: bool,
}

impl Task {
    /// When and how a processing task ends.
    fn outcome(&self) -> (Duration, Status) {
        let end = self.started.unwrap_or(self.created) + self.gen_time;
        if self.deadline < end {
            (self.deadline, Status::Expired)
        } else if self.fails_with.is_some() {
            (end, Status::Failed)
        } else {
            (end, Status::Completed)
        }
    }
}

/// Token bucket of one key: capacity `burst`, refilled at `rpm / 60` per second. When refused
/// requests are charged, a refusal takes a token too and the bucket goes into debt, down to
/// minus one burst.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Duration,
}

/// The outcome of taking a token.
pub(crate) enum RateDecision {
    /// No limit configured.
    Unlimited,
    /// Allowed: tokens left (floored) and seconds until one more request would be allowed.
    Allowed { remaining: u64, reset: f64 },
    /// Refused: seconds until one request would be allowed.
    Limited { wait: f64 },
}

impl Bucket {
    fn take(&mut self, now: Duration, rpm: u32, burst: u32, charge_refused: bool) -> RateDecision {
        if rpm == 0 {
            return RateDecision::Unlimited;
        }
        let rate = f64::from(rpm) / 60.0;
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            RateDecision::Allowed {
                remaining: self.tokens.floor() as u64,
                reset: ((1.0 - self.tokens).max(0.0)) / rate,
            }
        } else {
            if charge_refused {
                self.tokens = (self.tokens - 1.0).max(-f64::from(burst));
            }
            RateDecision::Limited {
                wait: (1.0 - self.tokens) / rate,
            }
        }
    }
}

/// One API key's account.
#[derive(Debug)]
pub(crate) struct Account {
    pub balance: Option<u64>,
    pub tasks: Vec<Task>,
    queue: VecDeque<usize>,
    processing: Vec<usize>,
    bucket: Bucket,
    bodies: HashSet<[u8; 32]>,
    idempotency: HashMap<String, usize>,
}

impl Account {
    fn new(cfg: &SimConfig, now: Duration) -> Self {
        Account {
            balance: cfg.balance,
            tasks: Vec::new(),
            queue: VecDeque::new(),
            processing: Vec::new(),
            bucket: Bucket {
                tokens: f64::from(cfg.effective_burst()),
                last: now,
            },
            bodies: HashSet::new(),
            idempotency: HashMap::new(),
        }
    }

    fn refund(&mut self, cost: u64) {
        if let Some(b) = self.balance.as_mut() {
            *b = b.saturating_add(cost);
        }
    }

    /// End task `i` with `status` at `t` (refunding what did not complete).
    fn end(&mut self, i: usize, status: Status, t: Duration, stats: &mut SimStats) {
        let Some(task) = self.tasks.get_mut(i) else {
            return;
        };
        task.status = status;
        task.ended = Some(t);
        let cost = task.cost;
        match status {
            Status::Completed => task.was_completed = true,
            Status::Failed => {
                task.error = task.fails_with.clone();
                stats.faults.failed_tasks += 1;
            }
            _ => {}
        }
        if status != Status::Completed {
            self.refund(cost);
        }
    }

    /// Start queued tasks at `t` while slots are free.
    fn fill(&mut self, cfg: &SimConfig, stats: &mut SimStats, t: Duration) {
        while self.processing.len() < cfg.concurrency.max(1) {
            let Some(i) = self.queue.pop_front() else {
                break;
            };
            let deadline = self.tasks[i].deadline;
            if deadline <= t {
                self.end(i, Status::Expired, deadline, stats);
                continue;
            }
            self.tasks[i].status = Status::Processing;
            self.tasks[i].started = Some(t);
            self.processing.push(i);
        }
        stats.max_processing = stats.max_processing.max(self.processing.len() as u64);
    }

    /// Bring the account to time `now` (see the module doc).
    fn advance(&mut self, cfg: &SimConfig, stats: &mut SimStats, now: Duration) {
        loop {
            let next = self
                .processing
                .iter()
                .enumerate()
                .map(|(pi, &ti)| (self.tasks[ti].outcome().0, pi))
                .min();
            let Some((t, pi)) = next else { break };
            if t > now {
                break;
            }
            let ti = self.processing.swap_remove(pi);
            let (t, status) = self.tasks[ti].outcome();
            self.end(ti, status, t, stats);
            self.fill(cfg, stats, t);
        }
        self.fill(cfg, stats, now);
        let expired: Vec<usize> = self
            .queue
            .iter()
            .copied()
            .filter(|&i| self.tasks[i].deadline <= now)
            .collect();
        if !expired.is_empty() {
            self.queue.retain(|i| !expired.contains(i));
            for i in expired {
                let deadline = self.tasks[i].deadline;
                self.end(i, Status::Expired, deadline, stats);
            }
        }
        let ttl = cfg.scaled(cfg.asset_ttl);
        for task in &mut self.tasks {
            if task.status == Status::Completed && task.ended.is_some_and(|e| e + ttl <= now) {
                task.status = Status::Expired;
            }
        }
    }

    /// The index of the task `id` of this account.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == id)
    }
}

/// The whole simulated service.
#[derive(Debug)]
pub(crate) struct State {
    pub cfg: SimConfig,
    start: Instant,
    start_wall: SystemTime,
    pub accounts: HashMap<String, Account>,
    pub stats: SimStats,
    next_request: u64,
    next_download: u64,
    next_task: u64,
    next_view: u64,
}

impl State {
    pub fn new(cfg: SimConfig) -> Self {
        let stats = SimStats {
            seed: cfg.seed,
            ..SimStats::default()
        };
        State {
            cfg,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            accounts: HashMap::new(),
            stats,
            next_request: 0,
            next_download: 0,
            next_task: 0,
            next_view: 0,
        }
    }

    /// Real time since the simulator started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The server's wall-clock time of an offset since start (its clock may be off).
    pub fn wall(&self, t: Duration) -> SystemTime {
        shift(self.start_wall + t, self.cfg.clock_offset_secs)
    }

    /// The server's wall-clock time now.
    pub fn server_now(&self) -> SystemTime {
        shift(SystemTime::now(), self.cfg.clock_offset_secs)
    }

    /// Sequence number of the next `/v1` request.
    pub fn next_request(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request - 1
    }

    /// Sequence number of the next download.
    pub fn next_download(&mut self) -> u64 {
        self.next_download += 1;
        self.next_download - 1
    }

    /// Sequence number of the next rendering of a task.
    pub fn next_view(&mut self) -> u64 {
        self.next_view += 1;
        self.next_view - 1
    }

    /// The account of `key`, created on first use.
    pub fn account(&mut self, key: &str) -> &mut Account {
        let now = self.now();
        let cfg = &self.cfg;
        self.accounts
            .entry(key.to_string())
            .or_insert_with(|| Account::new(cfg, now))
    }

    /// Advance every account to now.
    pub fn advance_all(&mut self) {
        let now = self.now();
        for acct in self.accounts.values_mut() {
            acct.advance(&self.cfg, &mut self.stats, now);
        }
    }

    /// Apply a configuration change: a changed balance becomes every account's balance; a changed rpm refills buckets.
    pub fn reconfigure(&mut self, f: impl FnOnce(&mut SimConfig)) {
        self.advance_all();
        let old = self.cfg.clone();
        f(&mut self.cfg);
        self.cfg.concurrency = self.cfg.concurrency.max(1);
        let now = self.now();
        let burst = f64::from(self.cfg.effective_burst());
        for acct in self.accounts.values_mut() {
            if self.cfg.balance != old.balance {
                acct.balance = self.cfg.balance;
            }
            if self.cfg.rpm != old.rpm || self.cfg.rate_burst != old.rate_burst {
                acct.bucket = Bucket {
                    tokens: burst,
                    last: now,
                };
            }
            acct.fill(&self.cfg, &mut self.stats, now);
        }
    }

    /// Take a rate-limit token for `key`.
    pub fn rate_limit(&mut self, key: &str) -> RateDecision {
        let now = self.now();
        let (rpm, burst, charge) = (self.cfg.rpm, self.cfg.effective_burst(), self.cfg.charge_refused);
        self.account(key).bucket.take(now, rpm, burst, charge)
    }

    /// Generation time in simulated seconds (see [`SimConfig::gen_time`]).
    fn draw_gen_time(&self, seq: u64, spec: &CreateSpec, duration: i64) -> Duration {
        if let Some(fixed) = self.cfg.gen_time {
            return match self.cfg.gen_time_max {
                Some(max) if max > fixed => {
                    fixed + (max - fixed).mul_f64(rng::unit(self.cfg.seed, "gen_time", seq))
                }
                _ => fixed,
            };
        }
        let resolution = if spec.draft {
            "480p"
        } else {
            spec.resolution.as_str()
        };
        let median = match resolution {
            "480p" => 45.0,
            "1080p" => 180.0,
            _ => 70.0,
        } * (duration as f64 / 5.0).sqrt()
            * if spec.service_tier == "flex" { 2.0 } else { 1.0 };
        let z = rng::normal(self.cfg.seed, "gen_time", seq);
        Duration::from_secs_f64((median * (0.45 * z).exp()).clamp(30.0, 300.0))
    }

    /// Create a task for `key` from a validated request (checks queue cap and balance); returns its index
    /// in the account, or the earlier task's index for a repeated, honoured idempotency key.
    pub fn create(
        &mut self,
        key: &str,
        spec: CreateSpec,
        body_hash: [u8; 32],
        idempotency_key: Option<&str>,
    ) -> Result<usize, ApiError> {
        let now = self.now();
        let honour = self.cfg.honour_idempotency_key;
        let cfg = self.cfg.clone();
        let acct = self.account(key);
        if honour && let Some(&i) = idempotency_key.and_then(|k| acct.idempotency.get(k)) {
            self.stats.idempotent_replays += 1;
            return Ok(i);
        }
        if acct.processing.len() >= cfg.concurrency && acct.queue.len() >= cfg.max_queued {
            self.stats.queue_full += 1;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_queued_tasks",
                format!("at most {} queued tasks per account", cfg.max_queued),
            ));
        }
        let seq = self.next_task;
        let seed = cfg.seed;
        let duration_used = if spec.duration == -1 {
            let span = (spec.max_duration() - 4 + 1) as u64;
            4 + (rng::bits(seed, "auto_duration", seq) % span) as i64
        } else {
            spec.duration
        };
        // A draft is a cheap preview: priced (and generated) as 480p whatever was asked.
        let priced_at = if spec.draft {
            "480p"
        } else {
            spec.resolution.as_str()
        };
        let cost = cost_tokens(priced_at, &spec.ratio, duration_used).unwrap_or(0);
        let acct = self.account(key);
        if let Some(balance) = acct.balance
            && balance < cost
        {
            self.stats.balance_refusals += 1;
            let msg = format!("this task costs {cost} tokens; the balance is {balance}");
            return Err(match cfg.balance_error_status {
                crate::config::BalanceErrorStatus::PaymentRequired => {
                    ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_balance", msg)
                }
                crate::config::BalanceErrorStatus::QuotaExhausted => {
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", msg)
                }
            });
        }
        self.next_task += 1;
        let gen_time = cfg.scaled(self.draw_gen_time(seq, &spec, duration_used));
        // A test hook like `sim:content-violation`: the first task of the account with this
        // prompt fails; any later one (a retry) runs.
        let fails_once = spec.prompt.contains("sim:fails-once")
            && !self
                .accounts
                .get(key)
                .is_some_and(|a| a.tasks.iter().any(|t| t.spec.prompt == spec.prompt));
        let forced = fails_once.then(|| {
            (
                Value::from("internal_error"),
                "the task failed (sim:fails-once)".to_string(),
            )
        });
        let fails_with = forced.or_else(|| {
            rng::chance(seed, "fail", seq, cfg.fail_rate).then(|| {
                let (code, msg) = FAILURE_CODES[(rng::bits(seed, "fail_code", seq) % 4) as usize];
                let code = code
                    .parse::<u64>()
                    .map_or_else(|_| Value::from(code), Value::from);
                (code, msg.to_string())
            })
        });
        let seed_used = if spec.seed == -1 {
            (rng::bits(seed, "video_seed", seq) % 4_294_967_296) as i64
        } else {
            spec.seed
        };
        let deadline = now + cfg.scaled(Duration::from_secs(spec.execution_expires_after));
        let task = Task {
            id: format!("vgen_{}", rng::base32(seed, "task_id", seq, 26)),
            spec,
            status: Status::Queued,
            created: now,
            started: None,
            ended: None,
            gen_time,
            deadline,
            cost,
            duration_used,
            seed_used,
            fails_with,
            error: None,
            was_completed: false,
        };
        let Some(acct) = self.accounts.get_mut(key) else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "account vanished",
            ));
        };
        if let Some(b) = acct.balance.as_mut() {
            *b -= cost;
        }
        let i = acct.tasks.len();
        acct.tasks.push(task);
        acct.queue.push_back(i);
        if let Some(k) = idempotency_key {
            acct.idempotency.insert(k.to_string(), i);
        }
        let duplicate = !acct.bodies.insert(body_hash);
        acct.fill(&cfg, &mut self.stats, now);
        let active = (acct.queue.len() + acct.processing.len()) as u64;
        self.stats.max_queued_or_processing = self.stats.max_queued_or_processing.max(active);
        self.stats.tasks_created += 1;
        self.stats.generation_seconds += gen_time.as_secs_f64();
        if duplicate {
            self.stats.duplicate_creates += 1;
        }
        Ok(i)
    }

    /// Cancel task `i` of `key`: queued or processing only (else 409).
    pub fn cancel(&mut self, key: &str, i: usize) -> Result<(), ApiError> {
        let now = self.now();
        let Some(acct) = self.accounts.get_mut(key) else {
            return Err(ApiError::task_not_found(""));
        };
        let Some(task) = acct.tasks.get(i) else {
            return Err(ApiError::task_not_found(""));
        };
        match task.status {
            Status::Queued => acct.queue.retain(|&q| q != i),
            Status::Processing => acct.processing.retain(|&p| p != i),
            other => {
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("a {} task cannot be cancelled", other.as_str()),
                );
                e.task_id = Some(task.id.clone());
                return Err(e);
            }
        }
        acct.end(i, Status::Cancelled, now, &mut self.stats);
        acct.fill(&self.cfg, &mut self.stats, now);
        Ok(())
    }

    /// A snapshot of the stats, advanced to now.
    pub fn snapshot(&mut self, bytes_served: u64) -> SimStats {
        self.advance_all();
        let mut stats = self.stats.clone();
        stats.bytes_served = bytes_served;
        let mut by_status = BTreeMap::new();
        let mut balances = BTreeMap::new();
        for (key, acct) in &self.accounts {
            for task in &acct.tasks {
                *by_status.entry(task.status.as_str().to_string()).or_insert(0) += 1;
            }
            balances.insert(account_id(key), acct.balance);
        }
        stats.tasks_by_status = by_status;
        stats.balances = balances;
        stats
    }

    /// RFC 3339 (whole seconds, UTC) of an offset since start.
    pub fn rfc3339(&self, t: Duration) -> String {
        rfc3339(self.wall(t))
    }
}

#[cfg(test)]
mod tests;
