//! The scheduler of a run; the main structure here is [`Runner`].
//!
//! The runner is the source of truth for run state. It dispatches jobs under two bounds (tasks
//! queued or processing on the server, downloads at once) and one pacer in front of every API
//! request, and emits an [`Event`] for everything that happens. The journal, the display and
//! the report consume those events; nothing else changes run state.

mod backoff;
mod job;
mod pacer;
mod reconcile;
mod sweep;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use backoff::{RetryPolicy, jittered};
pub use pacer::Pacer;

use crate::api::{ApiError, Client, CreateRequest, Timestamp};
use crate::events::{Counters, Event, RunOutcome, SourceRecord};
use crate::hex::hex;
use crate::journal::{self, Journal, JournalError};
use crate::state::{Phase, RunState};

/// One job to run, as the plan gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Unique id.
    pub id: String,
    /// Output file stem.
    pub name: String,
    /// The request to send.
    pub request: CreateRequest,
    /// sha256 of the canonical request.
    pub fingerprint: String,
    /// Where the job came from.
    pub source: String,
    /// Estimated tokens, when known.
    pub estimated_tokens: Option<u64>,
}

/// Settings of a run (never the key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSettings {
    /// Out dir.
    pub out_dir: PathBuf,
    /// API requests per minute.
    pub rpm: u32,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
    /// Tasks queued or processing on the server at once.
    pub concurrency: usize,
    /// Downloads at once.
    pub download_concurrency: usize,
    /// Retries of a transient failure.
    pub max_retries: u32,
    /// First poll interval.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// Longest a job may take from submit to finish.
    #[serde(with = "duration_text")]
    pub job_timeout: Duration,
    /// Stop submitting after this many failures.
    pub max_fail: Option<u32>,
    /// Stop submitting when estimated tokens would pass this.
    pub budget_tokens: Option<u64>,
    /// Retry jobs that failed in earlier runs.
    pub retry_failed: bool,
    /// Cancel tasks in flight on Ctrl-C.
    pub cancel_on_interrupt: bool,
    /// Largest video accepted, in bytes.
    pub max_video_bytes: u64,
    /// Backoff of retries.
    #[serde(skip)]
    pub retry: RetryPolicy,
}

impl RunSettings {
    /// Settings with the documented defaults, writing to `out_dir`.
    pub fn new(out_dir: impl Into<PathBuf>) -> RunSettings {
        RunSettings {
            out_dir: out_dir.into(),
            rpm: 60,
            burst: 5,
            concurrency: 5,
            download_concurrency: 4,
            max_retries: 5,
            poll_interval: Duration::from_secs(3),
            job_timeout: Duration::from_secs(3600),
            max_fail: None,
            budget_tokens: None,
            retry_failed: false,
            cancel_on_interrupt: false,
            max_video_bytes: 4 << 30,
            retry: RetryPolicy::new(5),
        }
    }
}

mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// Watches a run: the display and anything else that wants events as they happen.
pub trait Observer: Send {
    /// Called for each event, after the state has taken it.
    fn on_event(&mut self, event: &Event, state: &RunState);
}

/// Why a run could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state file or the out dir failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A local file could not be written (the out dir is unwritable or full).
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The plan cannot run as given (e.g. two jobs writing one file).
    #[error("{0}")]
    Plan(String),
}

/// What a run ended with.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// How it ended.
    pub outcome: RunOutcome,
    /// The state at the end (all runs of the out dir).
    pub state: RunState,
    /// Ids of this run's plan.
    pub plan: Vec<String>,
    /// Ids in the state that the plan no longer has.
    pub orphaned: Vec<String>,
    /// This run's counts.
    pub counters: Counters,
}

#[derive(Default)]
struct AtomicCounters {
    api_requests: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    creates: AtomicU64,
    ambiguous_creates: AtomicU64,
    reconciled: AtomicU64,
    bytes_downloaded: AtomicU64,
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            api_requests: g(&self.api_requests),
            rate_limited: g(&self.rate_limited),
            retries: g(&self.retries),
            creates: g(&self.creates),
            ambiguous_creates: g(&self.ambiguous_creates),
            reconciled: g(&self.reconciled),
            bytes_downloaded: g(&self.bytes_downloaded),
        }
    }
}

/// Why submissions stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    Fatal,
    Limit,
    Interrupt,
}

/// What every job task shares.
struct Ctx {
    client: Client,
    http: reqwest::Client,
    settings: RunSettings,
    pacer: Pacer,
    journal: Journal,
    state: Mutex<RunState>,
    observers: Mutex<Vec<Box<dyn Observer>>>,
    counters: AtomicCounters,
    stop: Mutex<Option<StopKind>>,
    local_failure: Mutex<Option<String>>,
    failed_this_run: AtomicU64,
    tokens_committed: AtomicU64,
    downloads: Arc<Semaphore>,
    create_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    interrupted: AtomicBool,
    sweeper: sweep::Sweeper,
}

impl Ctx {
    fn state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Journals the event (durably when it costs money), applies it, and shows it.
    async fn emit(&self, event: Event) -> Result<(), JournalError> {
        if event.is_journaled() {
            self.journal.append(&event).await?;
        }
        let state = {
            let mut s = self.state();
            s.apply(&event);
            s
        };
        let mut observers = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        for o in observers.iter_mut() {
            o.on_event(&event, &state);
        }
        Ok(())
    }

    fn submissions_stopped(&self) -> bool {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    async fn stop_submissions(&self, kind: StopKind, reason: String) {
        {
            let mut stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
            if stop.is_some() {
                if kind == StopKind::Fatal {
                    *stop = Some(kind);
                }
                return;
            }
            *stop = Some(kind);
        }
        let _ = self.emit(Event::SubmissionsStopped { reason }).await;
    }

    fn create_lock(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        self.create_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// Sends one API request through the pacer, counting it and feeding 429s back.
    async fn api<T, F, Fut>(&self, call: F) -> Result<T, ApiError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.pacer.acquire().await;
        self.counters.api_requests.fetch_add(1, Ordering::Relaxed);
        let result = call(self.client.clone()).await;
        match &result {
            Err(ApiError::RateLimited {
                retry_after, limit, ..
            }) => {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                let wait = self.pacer.on_rate_limited(*retry_after, *limit);
                let _ = self
                    .emit(Event::RateLimited {
                        wait_ms: wait.as_millis() as u64,
                        rpm_now: self.pacer.rpm_now(),
                    })
                    .await;
            }
            Err(ApiError::Transient { .. } | ApiError::AmbiguousCreate { .. }) => {}
            _ => self.pacer.on_success(),
        }
        result
    }

    async fn note_retry(&self, job: &str, what: &str, attempt: u32, error: String, wait: Duration) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .emit(Event::Retrying {
                job: Some(job.to_string()),
                what: what.to_string(),
                attempt,
                error,
                wait_ms: wait.as_millis() as u64,
            })
            .await;
    }

    fn fail_local(&self, message: String) {
        let mut f = self.local_failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(message);
        }
    }
}

/// Runs a plan in an out dir.
pub struct Runner {
    client: Client,
    http: reqwest::Client,
    settings: RunSettings,
    observers: Vec<Box<dyn Observer>>,
}

impl Runner {
    /// A runner that sends API requests with `client` and downloads with `http`.
    pub fn new(client: Client, http: reqwest::Client, settings: RunSettings) -> Runner {
        Runner {
            client,
            http,
            settings,
            observers: Vec::new(),
        }
    }

    /// Adds an observer of the run's events.
    pub fn observe(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Runs `jobs` until every one is done or failed, submissions stop, or `shutdown`
    /// resolves (Ctrl-C). The out dir is locked for the whole run; the state is saved at
    /// every step.
    pub async fn run(
        self,
        jobs: Vec<JobSpec>,
        manifests: Vec<SourceRecord>,
        shard: Option<String>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, RunError> {
        let settings = self.settings;
        let out = settings.out_dir.clone();
        create_dir(&out)?;
        create_dir(&out.join("videos"))?;
        let _lock = journal::lock_dir(&out)?;
        let state_path = out.join(journal::STATE_FILE);
        let loaded = journal::load(&state_path)?;
        if journal::needs_compaction(&loaded) {
            journal::compact(&state_path, &loaded.state)?;
        }
        check_names(&jobs)?;
        let journal = Journal::open(&state_path)?;
        let run_id = loaded.state.run_id.clone().unwrap_or_else(new_run_id);
        let plan: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let plan_set: HashSet<&str> = plan.iter().map(String::as_str).collect();
        let orphaned: Vec<String> = loaded
            .state
            .order
            .iter()
            .filter(|id| !plan_set.contains(id.as_str()))
            .cloned()
            .collect();
        let ctx = Arc::new(Ctx {
            client: self.client,
            http: self.http,
            pacer: Pacer::new(settings.rpm, settings.burst, settings.retry),
            downloads: Arc::new(Semaphore::new(settings.download_concurrency.max(1))),
            settings: settings.clone(),
            journal,
            state: Mutex::new(loaded.state),
            observers: Mutex::new(self.observers),
            counters: AtomicCounters::default(),
            stop: Mutex::new(None),
            local_failure: Mutex::new(None),
            failed_this_run: AtomicU64::new(0),
            tokens_committed: AtomicU64::new(0),
            create_locks: Mutex::new(HashMap::new()),
            interrupted: AtomicBool::new(false),
            sweeper: sweep::Sweeper::new(),
        });

        ctx.emit(Event::RunStarted {
            run_id: run_id.clone(),
            at: Timestamp::now(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            settings: serde_json::to_value(&settings).unwrap_or_default(),
            manifests,
            total_jobs: jobs.len(),
            shard,
        })
        .await?;
        prepare_jobs(&ctx, &jobs).await?;
        let committed: u64 = ctx
            .state()
            .jobs
            .values()
            .filter(|j| !j.task_ids.is_empty())
            .filter_map(|j| j.estimated_tokens)
            .sum();
        ctx.tokens_committed.store(committed, Ordering::SeqCst);

        let was_interrupted = {
            let work = dispatch(ctx.clone(), run_id, plan.clone());
            tokio::pin!(work);
            tokio::pin!(shutdown);
            tokio::select! {
                () = &mut work => false,
                () = &mut shutdown => true,
            }
            // Leaving this block drops the dispatcher and with it every job task.
        };
        if was_interrupted {
            ctx.interrupted.store(true, Ordering::SeqCst);
            ctx.stop_submissions(StopKind::Interrupt, "interrupted".into())
                .await;
            if settings.cancel_on_interrupt {
                cancel_in_flight(&ctx, &plan).await;
            }
        }

        let local_failure = ctx
            .local_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(message) = local_failure {
            ctx.journal.sync().await?;
            return Err(RunError::Io {
                path: out,
                source: std::io::Error::other(message),
            });
        }
        let outcome = {
            let state = ctx.state();
            let stop = *ctx.stop.lock().unwrap_or_else(|p| p.into_inner());
            let all_done = plan
                .iter()
                .all(|id| state.jobs.get(id).is_some_and(|j| j.phase == Phase::Done));
            match stop {
                _ if ctx.interrupted.load(Ordering::SeqCst) => RunOutcome::Interrupted,
                Some(StopKind::Fatal) => RunOutcome::Fatal,
                _ if all_done => RunOutcome::Success,
                _ => RunOutcome::SomeFailed,
            }
        };
        // Downloads are not synced one by one; this puts all of them on disk before the run
        // is recorded as finished and the report speaks of them.
        let videos = out.join("videos");
        if videos.is_dir()
            && let Err(e) = crate::download::sync_downloads(&videos)
        {
            tracing::warn!(dir = %videos.display(), error = %e, "syncing the downloaded files failed");
        }
        let counters = ctx.counters.snapshot();
        ctx.emit(Event::RunFinished {
            at: Timestamp::now(),
            outcome,
            counters: counters.clone(),
        })
        .await?;
        ctx.journal.sync().await?;
        let state = ctx.state().clone();
        Ok(RunSummary {
            outcome,
            state,
            plan,
            orphaned,
            counters,
        })
    }
}

fn create_dir(path: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn new_run_id() -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{:?}{}",
        std::time::SystemTime::now(),
        std::process::id()
    ));
    h.update(rand::random::<u64>().to_le_bytes());
    format!("run_{}", &hex(&h.finalize())[..16])
}

/// Two jobs must not write one file.
fn check_names(jobs: &[JobSpec]) -> Result<(), RunError> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for j in jobs {
        if let Some(other) = seen.insert(j.name.to_lowercase(), &j.id) {
            return Err(RunError::Plan(format!(
                "jobs `{other}` and `{}` would both write videos/{}.mp4; give them distinct names",
                j.id, j.name
            )));
        }
    }
    Ok(())
}

/// Records new and changed jobs, re-verifies finished files, and re-opens failed jobs when
/// asked.
async fn prepare_jobs(ctx: &Ctx, jobs: &[JobSpec]) -> Result<(), RunError> {
    for spec in jobs {
        let existing = ctx.state().jobs.get(&spec.id).cloned();
        let planned = Event::JobPlanned {
            job: spec.id.clone(),
            name: spec.name.clone(),
            fingerprint: spec.fingerprint.clone(),
            request: Box::new(spec.request.clone()),
            source: spec.source.clone(),
            estimated_tokens: spec.estimated_tokens,
        };
        let Some(existing) = existing else {
            ctx.emit(planned).await?;
            continue;
        };
        if existing.fingerprint != spec.fingerprint {
            if existing.phase == Phase::Pending {
                ctx.emit(planned).await?;
            } else {
                tracing::warn!(
                    job = %spec.id,
                    "the job's request changed since it was submitted; keeping the earlier task \
                     (give the job a new id, or use --fresh, to generate it again)"
                );
            }
        } else if existing.name != spec.name || existing.source != spec.source {
            ctx.emit(planned).await?;
        }
        match existing.phase {
            Phase::Done => {
                if let Err(reason) = job::verify_done(ctx, &existing) {
                    ctx.emit(Event::FileInvalid {
                        job: spec.id.clone(),
                        reason,
                    })
                    .await?;
                }
            }
            Phase::Failed if ctx.settings.retry_failed => {
                ctx.emit(Event::JobReopened { job: spec.id.clone() }).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Starts job tasks in plan order (those with a task on the server first), each holding a
/// slot of `--concurrency` while its task is queued or processing.
async fn dispatch(ctx: Arc<Ctx>, run_id: String, plan: Vec<String>) {
    job::reconcile_interrupted(&ctx, &plan).await;
    let slots = Arc::new(Semaphore::new(ctx.settings.concurrency.max(1)));
    let mut order: Vec<(u8, String)> = {
        let state = ctx.state();
        plan.iter()
            .filter_map(|id| state.jobs.get(id))
            .filter_map(|j| {
                let rank = match j.phase {
                    Phase::Generated => 0,
                    Phase::Submitted | Phase::Submitting => 1,
                    Phase::Pending => 2,
                    Phase::Done | Phase::Failed => return None,
                };
                Some((rank, j.id.clone()))
            })
            .collect()
    };
    order.sort_by_key(|(rank, _)| *rank);
    let mut tasks = JoinSet::new();
    let sweeper = AbortOnDrop(tokio::spawn(sweep::run(ctx.clone())));
    for (rank, id) in order {
        let slot = if rank == 0 {
            None
        } else {
            if rank == 2 && ctx.submissions_stopped() {
                break;
            }
            match slots.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => break,
            }
        };
        if rank == 2 && ctx.submissions_stopped() {
            break;
        }
        let ctx = ctx.clone();
        let run_id = run_id.clone();
        tasks.spawn(async move { job::drive(&ctx, &run_id, &id, slot).await });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    drop(sweeper);
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancels every task of the plan still queued or processing (on `--cancel-on-interrupt`).
async fn cancel_in_flight(ctx: &Ctx, plan: &[String]) {
    let in_flight: Vec<(String, String)> = {
        let state = ctx.state();
        plan.iter()
            .filter_map(|id| state.jobs.get(id))
            .filter(|j| j.phase == Phase::Submitted)
            .filter_map(|j| Some((j.id.clone(), j.task_id()?.to_string())))
            .collect()
    };
    for (job, task) in in_flight {
        let id = task.clone();
        let result = ctx.api(|c| async move { c.cancel(&id).await }).await;
        let message = match result {
            Ok(_) => "cancelled on interrupt (--cancel-on-interrupt)".to_string(),
            Err(e) => format!("cancel on interrupt failed: {e}"),
        };
        let _ = ctx
            .emit(Event::JobFailed {
                job,
                task_id: Some(task),
                failure: crate::events::Failure {
                    kind: crate::events::FailureKind::Cancelled,
                    http_status: None,
                    code: None,
                    message,
                },
                at: Timestamp::now(),
            })
            .await;
    }
}
