//! The scheduler of a run; the main structure here is [`Runner`].
//!
//! One [`dispatch::Dispatcher`] owns the run: the run state, the journal writes, the
//! observers, the tasks in flight and the token budget. It spends every request token on the
//! most valuable request waiting, and hands each request (and each job's downloads) to a task
//! of its own that reports back. It emits an [`Event`] for everything that happens; the
//! journal, the display and the report consume those events.
//!
//! Its parts: [`pacer`] (the token bucket and its 429 feedback), [`slots`] (how many tasks to
//! keep on the server, learned from the lists), [`sweep`] (what a page of the task list says
//! of the tasks in flight), [`reconcile`] (finding the task of a create whose answer was
//! lost), [`spend`] (the `--budget-tokens` reservations), [`work`] (the requests and
//! downloads, one task each), [`backoff`] (retry delays) and [`settings`] (a run's settings and
//! the layers they are resolved from); [`cancel`] is `vidbatch cancel`.

mod backoff;
mod cancel;
mod dispatch;
mod pacer;
mod reconcile;
mod settings;
mod slots;
mod spend;
mod sweep;
mod work;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use backoff::{RetryPolicy, jittered};
pub use cancel::{CancelSummary, cancel_run};
pub use pacer::Pacer;
pub use settings::{Concurrency, RunSettings, SettingLayer};

use crate::api::{Client, CreateRequest, Timestamp};
use crate::download::{self, MediaKind};
use crate::events::{Counters, Event, RunOutcome, SourceRecord};
use crate::hex::hex;
use crate::journal::{self, Journal, JournalError};
use crate::outdir;
use crate::state::{JobState, Phase, RunState, Tally};

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

/// Watches a run: the display and anything else that wants events as they happen.
pub trait Observer: Send {
    /// Called for each event, after the state has taken it, with the plan's counts (so no
    /// observer needs to count every job).
    fn on_event(&mut self, event: &Event, state: &RunState, tally: &Tally);
}

/// Why a run could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state file or the out dir failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Another run holds the out dir, or its lock file failed.
    #[error(transparent)]
    Lock(#[from] crate::outdir::LockError),
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
    /// The local failure (disk full, out dir not writable) that ended the run, if one did.
    pub local_failure: Option<String>,
}

/// Why submissions stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopKind {
    Fatal,
    Limit,
    Interrupt,
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
        create_dir(&out.join(outdir::VIDEOS))?;
        let _lock = outdir::lock(&out)?;
        let state_path = out.join(outdir::STATE_FILE);
        let loaded = journal::load(&state_path)?;
        if journal::needs_compaction(&loaded) {
            journal::compact(&state_path, &loaded.state)?;
        }
        check_names(&jobs, &loaded.state, &out)?;
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
        let committed_tokens: u64 = plan
            .iter()
            .filter_map(|id| loaded.state.jobs.get(id))
            .filter(|j| !j.task_ids.is_empty())
            .filter_map(|j| j.estimated_tokens)
            .sum();
        let mut d = dispatch::Dispatcher::new(dispatch::Setup {
            client: self.client,
            http: self.http,
            settings: settings.clone(),
            journal,
            state: loaded.state,
            observers: self.observers,
            run_id: run_id.clone(),
            plan: plan.clone(),
            committed_tokens,
        });
        d.emit(Event::RunStarted {
            run_id,
            at: Timestamp::now(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            settings: serde_json::to_value(&settings).unwrap_or_default(),
            manifests,
            total_jobs: jobs.len(),
            shard,
            plan: Some(plan.clone()),
        });
        prepare_jobs(&mut d, &jobs);
        d.load(&plan);
        if let Some(line) = resume_line(&d.state, &plan, settings.retry_failed) {
            d.emit(Event::Notice { message: line });
        }
        d.run(shutdown).await;
        d.note_left_waiting();

        let all_done = plan
            .iter()
            .all(|id| d.state.jobs.get(id).is_some_and(|j| j.phase == Phase::Done));
        let outcome = match d.stop {
            _ if d.local_failure.is_some() => RunOutcome::LocalFailure,
            _ if d.interrupted => RunOutcome::Interrupted,
            Some(StopKind::Fatal) => RunOutcome::Fatal,
            _ if all_done => RunOutcome::Success,
            Some(StopKind::Limit) => RunOutcome::Stopped,
            _ => RunOutcome::SomeFailed,
        };
        // Downloads are not synced one by one; this puts all of them on disk before the run
        // is recorded as finished and the report speaks of them.
        let videos = out.join(outdir::VIDEOS);
        if videos.is_dir()
            && let Err(e) = download::sync_downloads(&videos)
        {
            tracing::warn!(dir = %videos.display(), error = %e, "syncing the downloaded files failed");
        }
        let counters = Counters {
            slots: d.learned_slots(),
            ..d.counters.clone()
        };
        d.emit(Event::RunFinished {
            at: Timestamp::now(),
            outcome,
            counters: counters.clone(),
        });
        // After a local failure the disk may refuse this too; the summary still tells it all.
        if let Err(e) = d.journal.sync().await {
            d.local_failure.get_or_insert_with(|| e.to_string());
        }
        Ok(RunSummary {
            local_failure: d.local_failure.take(),
            outcome,
            state: d.state,
            plan,
            orphaned,
            counters,
        })
    }
}

/// Creates `path` and its parents; a file where a folder of the out dir belongs is named as such
/// (the system's own words for it are `File exists`).
fn create_dir(path: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source: match path.symlink_metadata() {
            Ok(m) if !m.is_dir() => std::io::Error::new(
                source.kind(),
                "a file is where this folder belongs; move the file away, or give another --out",
            ),
            _ => source,
        },
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

/// Two jobs must not write one file: not two of the plan, and not one of the plan and a job
/// that an earlier run (of this or another manifest) finished under that name. Nor may a job
/// the state has never sent write over a video already in `out` (left by a run whose state
/// file was lost, emptied or cut short, or put there by hand): that file is not the state's to
/// replace.
fn check_names(jobs: &[JobSpec], state: &RunState, out: &Path) -> Result<(), RunError> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for j in jobs {
        if let Some(other) = seen.insert(j.name.to_lowercase(), &j.id) {
            return Err(RunError::Plan(format!(
                "jobs `{other}` and `{}` would both write {}; give them distinct names",
                j.id,
                outdir::video_file(&j.name)
            )));
        }
    }
    for held in state.jobs.values().filter(|h| h.phase == Phase::Done) {
        if let Some(id) = seen.get(&held.name.to_lowercase())
            && *id != held.id
        {
            return Err(RunError::Plan(format!(
                "job `{id}` would write {}, which job `{}` of an earlier run holds \
                 (done, from {}); give `{id}` another `name`, or use another --out",
                outdir::video_file(&held.name),
                held.id,
                held.source
            )));
        }
    }
    for j in jobs {
        // A job sent before and put back (its task gone with an embedded simulator) may find
        // its own earlier file, and replaces it as a resume does.
        let never_sent = state.jobs.get(&j.id).is_none_or(|known| {
            known.phase == Phase::Pending && known.attempts == 0 && known.task_ids.is_empty()
        });
        let video = outdir::video_file(&j.name);
        if never_sent && out.join(&video).symlink_metadata().is_ok() {
            return Err(RunError::Plan(format!(
                "job `{}` would write {video} in {}, which is already there though no run \
                 recorded in its {} made it (that file is missing, empty or cut short, or the \
                 video was put there by hand); vidbatch does not overwrite it: move it away, \
                 give `{}` another `name`, or use --fresh to keep the earlier files in {}",
                j.id,
                out.display(),
                outdir::STATE_FILE,
                j.id,
                out.join("earlier").display()
            )));
        }
    }
    Ok(())
}

/// Records new and changed jobs, re-verifies finished files, and re-opens failed jobs when
/// asked.
fn prepare_jobs(d: &mut dispatch::Dispatcher, jobs: &[JobSpec]) {
    for spec in jobs {
        let existing = d.state.jobs.get(&spec.id).cloned();
        let planned = Event::JobPlanned {
            job: spec.id.clone(),
            name: spec.name.clone(),
            fingerprint: spec.fingerprint.clone(),
            request: Box::new(spec.request.clone()),
            source: spec.source.clone(),
            estimated_tokens: spec.estimated_tokens,
        };
        let Some(existing) = existing else {
            d.emit(planned);
            continue;
        };
        if existing.fingerprint != spec.fingerprint {
            if existing.phase == Phase::Pending {
                d.emit(planned);
            } else {
                tracing::warn!(
                    job = %spec.id,
                    "the job's request changed since it was submitted; keeping the earlier task \
                     (give the job a new id, or use --fresh, to generate it again)"
                );
            }
        } else if existing.name != spec.name || existing.source != spec.source {
            d.emit(planned);
        }
        match existing.phase {
            Phase::Done => {
                if let Err(reason) = verify_done(&d.settings.out_dir, &existing) {
                    d.emit(Event::FileInvalid {
                        job: spec.id.clone(),
                        reason,
                    });
                }
            }
            Phase::Failed if d.settings.retry_failed => {
                d.emit(Event::JobReopened { job: spec.id.clone() });
            }
            _ => {}
        }
    }
}

/// What a resumed run finds and will do, in one line; `None` for a first run.
fn resume_line(state: &RunState, plan: &[String], retry_failed: bool) -> Option<String> {
    if state.runs < 2 {
        return None;
    }
    let mut counts = [0usize; 5];
    for job in plan.iter().filter_map(|id| state.jobs.get(id)) {
        let slot = match job.phase {
            Phase::Done => 0,
            Phase::Submitted | Phase::Submitting => 1,
            Phase::Generated => 2,
            Phase::Failed => 3,
            Phase::Pending => 4,
        };
        counts[slot] += 1;
    }
    let [done, on_server, fetch, failed, create] = counts;
    let mut parts = vec![format!("{done} done and verified")];
    if on_server > 0 {
        parts.push(format!(
            "{on_server} tasks still on the server (polled, never sent again)"
        ));
    }
    if fetch > 0 {
        parts.push(format!("{fetch} videos to fetch again"));
    }
    if failed > 0 {
        parts.push(if retry_failed {
            format!("{failed} failed, retried now (--retry-failed)")
        } else {
            format!("{failed} failed (not retried: add --retry-failed)")
        });
    }
    if create > 0 {
        parts.push(format!("{create} to create"));
    }
    Some(format!("resuming: {}", parts.join(", ")))
}

/// Checks a done job's files against the state: present, same size and sha256, valid media.
pub fn verify_done(out: &Path, job: &JobState) -> Result<(), String> {
    let Some(rel) = &job.path else {
        return Err("no file recorded".into());
    };
    let found = download::verify_file(&out.join(rel), MediaKind::Mp4).map_err(|e| e.to_string())?;
    if Some(found.bytes) != job.bytes || Some(&found.sha256) != job.sha256.as_ref() {
        return Err(format!(
            "{rel} changed since it was downloaded (size or sha256 differ)"
        ));
    }
    if let Some(frame) = &job.last_frame
        && let Err(e) = download::verify_file(&out.join(frame), MediaKind::Png)
    {
        return Err(format!("{frame}: {e}"));
    }
    Ok(())
}
