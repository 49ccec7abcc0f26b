//! `vidbatch run`: the plan, the settings, the run and the lines around it; the main function
//! here is [`cmd_run`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::api::http_client;
use crate::display;
use crate::events::{RunOutcome, SourceRecord};
use crate::exit;
use crate::journal;
use crate::manifest::{self, Plan};
use crate::report;
use crate::runner::{Concurrency, JobSpec, RetryPolicy, RunSettings, Runner, SettingLayer};
use crate::state::{Phase, RunState};

use super::*;
use crate::outdir;

/// Parses `K/N` (1-based K).
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (k, n) = text
        .split_once('/')
        .ok_or_else(|| format!("--shard {text}: expected K/N, e.g. 2/4"))?;
    let k: u64 = k
        .trim()
        .parse()
        .map_err(|_| format!("--shard {text}: K is not a number"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("--shard {text}: N is not a number"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("--shard {text}: expected 1 <= K <= N"));
    }
    Ok((k, n))
}

/// Whether a job id falls in shard `k` of `n`: a stable hash of the id, mod n.
pub fn in_shard(id: &str, k: u64, n: u64) -> bool {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % n == k - 1
}

/// The run's last line: where the report is and the next step that fits how it ended.
pub(super) fn closing_line(out: &Path, summary: &crate::runner::RunSummary) -> String {
    let dir = out.display();
    let failed = summary
        .plan
        .iter()
        .filter_map(|id| summary.state.jobs.get(id))
        .filter(|j| j.phase == Phase::Failed)
        .count();
    let next = match summary.outcome {
        RunOutcome::Success => None,
        RunOutcome::Interrupted => Some(format!(
            "run the same command again to resume, or `vidbatch cancel --out {dir}` to stop the tasks on the server"
        )),
        RunOutcome::Fatal => Some("fix the key or the balance, then run the same command again".into()),
        RunOutcome::Stopped => {
            Some("raise --max-fail or --budget-tokens, then run the same command again".into())
        }
        RunOutcome::LocalFailure => {
            Some("free disk space or fix the out dir, then run the same command again".into())
        }
        RunOutcome::SomeFailed if failed > 0 => Some(format!(
            "add --retry-failed to try the {failed} failed jobs again"
        )),
        RunOutcome::SomeFailed => Some("run the same command again to finish the rest".into()),
    };
    format!(
        "report: {dir}/report.json and {dir}/report.html{}",
        next.map(|n| format!("; next: {n}")).unwrap_or_default()
    )
}

/// The settings the flags (and their environment variables) give.
pub(super) fn flag_layer(args: &RunArgs) -> SettingLayer {
    SettingLayer {
        rpm: args.rpm,
        burst: args.burst,
        concurrency: args.concurrency,
        download_concurrency: args.download_concurrency,
        max_retries: args.max_retries,
        poll_interval: args.poll_interval,
        job_timeout: args.job_timeout,
        max_fail: args.max_fail,
        budget_tokens: args.budget_tokens,
    }
}

/// The settings the manifest's `run:` section gives.
pub(super) fn manifest_layer(r: &manifest::run::RunSection) -> SettingLayer {
    let narrow = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    SettingLayer {
        rpm: r.rpm,
        burst: r.burst,
        concurrency: r.concurrency.map(|c| Concurrency::Max(c as usize)),
        download_concurrency: r.download_concurrency.map(|c| c as usize),
        max_retries: r.max_retries,
        poll_interval: r.poll_interval,
        job_timeout: r.job_timeout,
        max_fail: r.max_fail.map(narrow),
        budget_tokens: r.budget_tokens,
    }
}

/// Resolves the run's settings: each from the flags, else the earlier run, else the manifest,
/// else the default (faster ones with `--sim`). Also says which settings the earlier run changed
/// from what this run would have had without it, as the flags that give them (`--rpm 77`).
pub(super) fn settings(
    args: &RunArgs,
    plan: &Plan,
    out: PathBuf,
    previous: Option<&serde_json::Value>,
) -> (RunSettings, Vec<String>) {
    let mut defaults = RunSettings::new(out);
    if args.api.sim {
        defaults.rpm = 600;
        defaults.poll_interval = Duration::from_millis(200);
    }
    if let Some(base) = args.retry_base_delay {
        defaults.retry = RetryPolicy::with_base(defaults.max_retries, base);
    }
    defaults.embedded_sim = args.api.sim;
    defaults.earlier_tasks_gone = args.api.sim
        && previous
            .and_then(|p| p.get("embedded_sim"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
    defaults.retry_failed = args.retry_failed;
    defaults.cancel_on_interrupt = args.cancel_on_interrupt;
    let flags = flag_layer(args);
    let earlier = previous.map(SettingLayer::recorded).unwrap_or_default();
    let manifest = manifest_layer(&plan.run);
    let without_earlier = manifest.clone().over(defaults.clone());
    let remembered = earlier
        .clone()
        .hidden_by(&flags)
        .unlike(&without_earlier)
        .as_flags();
    let settings = flags.or(earlier).or(manifest).over(defaults);
    (settings, remembered)
}

/// Moves an out dir's earlier run aside for `--fresh`: its state, videos and reports go to
/// `OUT/earlier/<time>/`, never deleted or overwritten, and the new run starts empty.
pub(super) fn move_earlier_run(out: &Path) -> anyhow::Result<()> {
    let parts = [
        outdir::STATE_FILE,
        outdir::VIDEOS,
        outdir::REPORT_JSON,
        outdir::REPORT_HTML,
    ];
    if !parts.iter().any(|p| out.join(p).exists()) {
        return Ok(());
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_default();
    let earlier = out.join("earlier");
    let mut dest = earlier.join(&stamp);
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = earlier.join(format!("{stamp}-{n}"));
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    for part in parts {
        let from = out.join(part);
        if from.exists() {
            let to = dest.join(part);
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
    }
    outdir::sync_dir(out);
    note(
        display::log::json(),
        &format!(
            "--fresh: the earlier run (state, videos, reports) is kept in {}",
            dest.display()
        ),
    );
    Ok(())
}

/// Listens, from the call on, for Ctrl-C or SIGTERM; a second one exits at once (the state is
/// already safe). The display says so, from the run's own stop.
pub(super) fn interrupted() -> impl std::future::Future<Output = ()> {
    let first = wait_signal();
    async {
        first.await;
        let second = wait_signal();
        tokio::spawn(async {
            second.await;
            std::process::exit(crate::exit::of_run(RunOutcome::Interrupted));
        });
    }
}

pub(super) async fn cmd_run(
    args: RunArgs,
    verbosity: display::Verbosity,
    json_logs: bool,
) -> anyhow::Result<i32> {
    let plan = match manifest::load_plan(&args.manifest.clone().into()) {
        Ok(plan) => plan,
        Err(diags) => {
            super::manifest_cmds::report_problems(&diags, &mut std::io::stderr().lock());
            return Ok(exit::USAGE);
        }
    };
    for w in &plan.warnings {
        if json_logs {
            display::log::diagnostic(w);
        } else {
            note(false, &w.to_string());
        }
    }
    let shard = match args.shard.as_deref().map(parse_shard).transpose() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let out = args
        .out
        .clone()
        .or_else(|| plan.run.out.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./vidbatch-out"));
    if args.dry_run {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        // The shard's jobs, in plan order (split as the run splits them): one pass, as `plan`
        // costs.
        let shown = match shard {
            None => plan,
            Some((k, n)) => Plan {
                jobs: plan
                    .jobs
                    .into_iter()
                    .filter(|j| in_shard(j.shard_key(), k, n))
                    .collect(),
                ..plan
            },
        };
        manifest::plan::render_table(&shown, &mut stdout)?;
        let state_path = out.join(outdir::STATE_FILE);
        let state = if state_path.exists() && !args.fresh {
            Some(journal::load(&state_path)?.state)
        } else {
            None
        };
        let would = DryRun::of(&shown, state.as_ref(), &out, args.retry_failed);
        would.write(&mut stdout, &out, state.is_some())?;
        stdout.flush()?;
        return Ok(exit::SUCCESS);
    }
    let jobs: Vec<JobSpec> = plan
        .jobs
        .iter()
        .filter(|j| shard.is_none_or(|(k, n)| in_shard(j.shard_key(), k, n)))
        .map(|j| JobSpec {
            id: j.id.clone(),
            name: j.name.clone(),
            request: j.request.clone(),
            fingerprint: j.fingerprint(),
            source: j.source.to_string(),
            estimated_tokens: j.estimated_tokens,
        })
        .collect();
    if args.fresh {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let _lock = match outdir::lock(&out) {
            Ok(l) => l,
            Err(e @ outdir::LockError::Held { .. }) => return usage(e),
            Err(e) => return Err(e.into()),
        };
        move_earlier_run(&out)?;
    }
    let previous = journal::load(&out.join(outdir::STATE_FILE))
        .ok()
        .and_then(|l| l.state.settings);
    let (settings, remembered) = settings(&args, &plan, out.clone(), previous.as_ref());
    if !remembered.is_empty() {
        note(
            json_logs,
            &format!(
                "settings from the earlier run in {}: {} (give a flag to change one)",
                out.display(),
                remembered.join(" ")
            ),
        );
    }
    let manifests: Vec<SourceRecord> = plan
        .sources
        .iter()
        .map(|s| SourceRecord {
            path: s.path.display().to_string(),
            sha256: s.sha256.clone(),
        })
        .collect();

    let (client, _sim) = match connect(&args.api).await {
        Ok(c) => c,
        Err(e) => return usage(format!("{e:#}")),
    };
    let http = http_client(Duration::from_secs(10), None)?;
    let mut runner = Runner::new(client, http, settings.clone());
    let shown = display::choose(args.progress, json_logs, verbosity, display::stderr_is_terminal());
    runner.observe(display::observer(shown, verbosity));
    let result = runner
        .run(jobs, manifests, args.shard.clone(), interrupted())
        .await;
    let summary = match result {
        Ok(s) => s,
        Err(crate::runner::RunError::Lock(e @ outdir::LockError::Held { .. })) => return usage(e),
        Err(crate::runner::RunError::Plan(e)) => return usage(e),
        Err(e) => {
            // Nothing was sent: the out dir or its state could not be set up.
            let code = crate::exit::of_run(RunOutcome::LocalFailure);
            display::log::error(&e.to_string(), code);
            return Ok(code);
        }
    };
    if let Some(failure) = &summary.local_failure {
        display::log::error(
            &format!("{}: {failure}", out.display()),
            crate::exit::of_run(summary.outcome),
        );
    }
    let written = report::write_all(&out, &summary.state, &args.ci.outputs())
        .with_context(|| format!("writing the report of {}", out.display()));
    if let Err(e) = written {
        let code = crate::exit::of_run(RunOutcome::LocalFailure);
        display::log::error(&format!("{e:#}"), code);
        return Ok(code);
    }
    note(json_logs, &closing_line(&out, &summary));
    if !summary.orphaned.is_empty() {
        note(
            json_logs,
            &format!(
                "{} jobs in the state are no longer in the manifest (kept, not deleted): {}",
                summary.orphaned.len(),
                summary
                    .orphaned
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    Ok(crate::exit::of_run(summary.outcome))
}

/// What a run would do with each job of its plan, given the out dir's state (`run --dry-run`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// Done, its files verified: skipped.
    pub skip: usize,
    /// A task is on the server (or a create's answer was lost): polled, never sent again.
    pub poll: usize,
    /// Generated, or done with a missing or changed file: fetched again from its task.
    pub fetch: usize,
    /// Failed earlier and re-sent now (`--retry-failed`).
    pub retry: usize,
    /// Failed earlier and left so (without `--retry-failed`).
    pub failed: usize,
    /// Waits for a job that failed and is not retried: never sent.
    pub blocked: usize,
    /// Never sent: sent now.
    pub new: usize,
    /// Jobs of the state that this plan no longer has (kept, untouched).
    pub not_in_plan: usize,
    /// Estimated tokens of the creates it would send (`retry` and `new`).
    pub tokens: u64,
}

impl DryRun {
    /// What running `plan` into `out` would do, given the out dir's `state` (none: a new run).
    pub fn of(plan: &Plan, state: Option<&RunState>, out: &Path, retry_failed: bool) -> DryRun {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Act {
            Skip,
            Poll,
            Fetch,
            Retry,
            Failed,
            Blocked,
            New,
        }
        let mut acts: std::collections::HashMap<&str, Act> = std::collections::HashMap::new();
        for j in &plan.jobs {
            let act = match state.and_then(|s| s.jobs.get(&j.id)) {
                None => Act::New,
                Some(known) => match known.phase {
                    Phase::Pending => Act::New,
                    Phase::Submitting | Phase::Submitted => Act::Poll,
                    Phase::Generated => Act::Fetch,
                    Phase::Done => match crate::runner::verify_done(out, known) {
                        Ok(()) => Act::Skip,
                        Err(_) => Act::Fetch,
                    },
                    Phase::Failed if retry_failed => Act::Retry,
                    Phase::Failed if known.is_blocked() => Act::Blocked,
                    Phase::Failed => Act::Failed,
                },
            };
            acts.insert(j.id.as_str(), act);
        }
        // A job to be sent waits for the jobs it refers to: behind one that stays failed (or is
        // itself blocked), it is blocked. Repeated until nothing changes, for chains.
        let upstream: Vec<(&str, Vec<String>)> = plan
            .jobs
            .iter()
            .filter(|j| !j.upstream.is_empty())
            .map(|j| (j.id.as_str(), j.upstream.clone()))
            .collect();
        let stuck = |act: Option<&Act>, id: &str| match act {
            Some(a) => matches!(a, Act::Failed | Act::Blocked),
            // Not in this plan: stuck when the state has it failed.
            None => state
                .and_then(|s| s.jobs.get(id))
                .is_some_and(|u| u.phase == Phase::Failed && !retry_failed),
        };
        let mut changed = true;
        while changed {
            changed = false;
            for (id, ups) in &upstream {
                if matches!(acts.get(id), Some(Act::New | Act::Retry))
                    && ups.iter().any(|u| stuck(acts.get(u.as_str()), u))
                {
                    acts.insert(id, Act::Blocked);
                    changed = true;
                }
            }
        }
        let mut d = DryRun::default();
        for j in &plan.jobs {
            let act = acts.get(j.id.as_str()).copied().unwrap_or(Act::New);
            let slot = match act {
                Act::Skip => &mut d.skip,
                Act::Poll => &mut d.poll,
                Act::Fetch => &mut d.fetch,
                Act::Retry => &mut d.retry,
                Act::Failed => &mut d.failed,
                Act::Blocked => &mut d.blocked,
                Act::New => &mut d.new,
            };
            *slot += 1;
            if matches!(act, Act::Retry | Act::New) {
                d.tokens += j.estimated_tokens.unwrap_or(0);
            }
        }
        if let Some(s) = state {
            let ids: std::collections::HashSet<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
            d.not_in_plan = s.order.iter().filter(|id| !ids.contains(id.as_str())).count();
        }
        d
    }

    /// Jobs the run would work on: poll, fetch, retry or send.
    pub fn would_run(&self) -> usize {
        self.poll + self.fetch + self.retry + self.new
    }

    /// Writes the breakdown and the closing line (`dry run: N jobs would run into OUT ...`).
    pub fn write(&self, w: &mut impl Write, out: &Path, resumed: bool) -> std::io::Result<()> {
        if resumed {
            writeln!(w, "\n{} has a run state; this run would:", out.display())?;
            let lines = [
                (self.skip, "skip (done, files verified)"),
                (self.poll, "poll (a task is on the server; never sent again)"),
                (
                    self.fetch,
                    "fetch again (generated, or its file is missing or changed)",
                ),
                (self.retry, "retry (failed; --retry-failed)"),
                (self.failed, "leave failed (retried only with --retry-failed)"),
                (self.blocked, "leave blocked (behind a job that failed)"),
                (self.new, "send (new)"),
                (
                    self.not_in_plan,
                    "keep, untouched (in the state, not in this plan)",
                ),
            ];
            for (n, what) in lines.iter().filter(|(n, _)| *n > 0) {
                writeln!(w, "  {n:>6}  {what}")?;
            }
        }
        writeln!(
            w,
            "dry run: {} jobs would run into {} ({} creates, about {} tokens); nothing was sent",
            self.would_run(),
            out.display(),
            self.retry + self.new,
            self.tokens
        )
    }
}
