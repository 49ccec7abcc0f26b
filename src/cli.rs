//! Command-line parsing and the commands; the main structure here is [`Cli`].
//!
//! Settings come from a flag, then its environment variable, then (on resume) the earlier
//! run's settings, then the manifest's `run:` section, then the built-in default.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use crate::api::{ApiKey, Client, ClientConfig, DEFAULT_BASE_URL, http_client};
use crate::display;
use crate::events::{RunOutcome, SourceRecord};
use crate::journal;
use crate::manifest::{self, ManifestArgs, Plan};
use crate::report;
use crate::runner::{Concurrency, JobSpec, RetryPolicy, RunSettings, Runner};
use crate::sim::{Sim, SimArgs, SimConfig, SimHandle};
use crate::state::{Phase, RunState};

/// Exit code of a usage or manifest error.
pub const EXIT_USAGE: i32 = 2;

/// vidbatch: generate videos from a manifest of prompts through the AllToken Videos API.
#[derive(Debug, Parser)]
#[command(name = "vidbatch", version, about, max_term_width = 100)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr; `json` prints one JSON object per line (events carry `event`,
    /// `job`, `task_id`) and replaces the progress display.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "VIDBATCH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output: failures and the final summary only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate everything the manifests describe (resumes an earlier run in the same --out).
    Run(Box<RunArgs>),
    /// Check manifests and print every error with its location.
    Validate(ManifestArgs),
    /// Show the expanded jobs, their count and estimated tokens.
    Plan {
        /// The manifests.
        #[command(flatten)]
        manifest: ManifestArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a run's progress from its state file (offline).
    Status {
        /// Out dir.
        #[arg(long, default_value = "./vidbatch-out", env = "VIDBATCH_OUT")]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel every queued or processing task of a run on the server.
    Cancel {
        /// Out dir.
        #[arg(long, default_value = "./vidbatch-out", env = "VIDBATCH_OUT")]
        out: PathBuf,
        /// The API.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Rebuild report.json (and --junit, --summary-md) from the state file.
    Report {
        /// Out dir.
        #[arg(long, default_value = "./vidbatch-out", env = "VIDBATCH_OUT")]
        out: PathBuf,
        /// CI outputs.
        #[command(flatten)]
        ci: CiArgs,
    },
    /// List the models the API offers.
    Models {
        /// The API.
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the local simulator of the API.
    Sim(SimArgs),
    /// Print a shell completion script, e.g. `vidbatch completions bash > /etc/bash_completion.d/vidbatch`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `vidbatch man > vidbatch.1`.
    Man,
}

/// Where the API is and how to sign in.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// API base URL.
    #[arg(long, env = "ALLTOKEN_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub base_url: String,
    /// API key (prefer the environment variable or --api-key-file: a flag shows in the process
    /// list) [default: none]
    #[arg(long, env = "ALLTOKEN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read the API key from this file (e.g. a mounted secret) [default: none]
    #[arg(long, env = "VIDBATCH_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Start the embedded simulator and use it (no key, no network).
    #[arg(long)]
    pub sim: bool,
    /// Seconds allowed for one API request.
    #[arg(long, env = "VIDBATCH_REQUEST_TIMEOUT", default_value = "60s", value_parser = manifest::run::parse_duration_arg)]
    pub request_timeout: Duration,
}

/// Reports for CI besides `OUT/report.json`.
#[derive(Debug, Clone, Default, Args)]
pub struct CiArgs {
    /// Also write JUnit XML here: one testcase per job, flaky ones marked [default: none]
    #[arg(long, value_name = "FILE", env = "VIDBATCH_JUNIT")]
    pub junit: Option<PathBuf>,
    /// Also write a Markdown summary here (and append it to $GITHUB_STEP_SUMMARY when set)
    /// [default: none]
    #[arg(long, value_name = "FILE", env = "VIDBATCH_SUMMARY_MD")]
    pub summary_md: Option<PathBuf>,
}

impl CiArgs {
    /// The files to write, `$GITHUB_STEP_SUMMARY` included.
    pub fn outputs(&self) -> report::Outputs {
        report::Outputs {
            junit: self.junit.clone(),
            summary_md: self.summary_md.clone(),
            step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// Options of `vidbatch run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The manifests.
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The API.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Out dir: videos/, report.json, state.jsonl [default: ./vidbatch-out]
    #[arg(long, env = "VIDBATCH_OUT")]
    pub out: Option<PathBuf>,
    /// CI outputs.
    #[command(flatten)]
    pub ci: CiArgs,
    /// API requests per minute (token bucket rate) [default: 60]
    #[arg(long, env = "VIDBATCH_RPM")]
    pub rpm: Option<u32>,
    /// Requests allowed at once above the steady rate [default: 5]
    #[arg(long, env = "VIDBATCH_BURST")]
    pub burst: Option<u32>,
    /// Tasks queued or processing on the server at once: `auto` learns the account's
    /// processing slots and keeps a small queue ahead of them; a number is a hard cap [default: auto]
    #[arg(long, env = "VIDBATCH_CONCURRENCY", value_name = "auto|N")]
    pub concurrency: Option<Concurrency>,
    /// Downloads at once [default: 4]
    #[arg(long, env = "VIDBATCH_DOWNLOAD_CONCURRENCY")]
    pub download_concurrency: Option<usize>,
    /// Retries of a transient failure (5xx, timeout, lost connection) [default: 5]
    #[arg(long, env = "VIDBATCH_MAX_RETRIES")]
    pub max_retries: Option<u32>,
    /// First interval between polls of a task, e.g. 3s [default: 3s]
    #[arg(long, env = "VIDBATCH_POLL_INTERVAL", value_parser = manifest::run::parse_duration_arg)]
    pub poll_interval: Option<Duration>,
    /// Longest a job may take from submit to finish before it is cancelled [default: 1h]
    #[arg(long, env = "VIDBATCH_JOB_TIMEOUT", value_parser = manifest::run::parse_duration_arg)]
    pub job_timeout: Option<Duration>,
    /// Retry jobs that failed in an earlier run.
    #[arg(long)]
    pub retry_failed: bool,
    /// Start over: keep the old state as a backup and begin a new one.
    #[arg(long)]
    pub fresh: bool,
    /// Show what would run; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only shard K of N (jobs split by a hash of their id), e.g. 2/4 [default: all jobs]
    #[arg(long, value_name = "K/N", env = "VIDBATCH_SHARD")]
    pub shard: Option<String>,
    /// Stop submitting after N failed jobs [default: no limit]
    #[arg(long, env = "VIDBATCH_MAX_FAIL")]
    pub max_fail: Option<u32>,
    /// Stop submitting when the estimated tokens would pass N [default: no limit]
    #[arg(long, env = "VIDBATCH_BUDGET_TOKENS")]
    pub budget_tokens: Option<u64>,
    /// Also cancel the tasks in flight on Ctrl-C.
    #[arg(long)]
    pub cancel_on_interrupt: bool,
    /// Progress display: `auto` draws a bar when stderr is a terminal, else plain lines.
    #[arg(long, value_enum, default_value = "auto", env = "VIDBATCH_PROGRESS")]
    pub progress: Progress,
}

/// When to draw progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// A bar on a terminal, lines otherwise.
    Auto,
    /// Always a bar.
    Always,
    /// Plain lines.
    Never,
}

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let verbosity = display::Verbosity::from_flags(cli.quiet, cli.verbose);
    let json_logs = cli.log_format == LogFormat::Json;
    let result = match cli.command {
        Command::Run(args) => cmd_run(*args, verbosity, json_logs).await,
        Command::Validate(args) => Ok(manifest::cmd_validate(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
        Command::Plan { manifest: args, json } => Ok(manifest::cmd_plan(
            &args,
            json,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
        Command::Status { out, json } => cmd_status(&out, json),
        Command::Cancel { out, api } => cmd_cancel(&out, &api).await,
        Command::Report { out, ci } => cmd_report(&out, &ci),
        Command::Models { api, json } => cmd_models(&api, json).await,
        Command::Sim(args) => crate::sim::run_cli(args).await.map(|()| 0),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "vidbatch", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| 0)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// A usage error: printed, exit 2.
fn usage(message: impl std::fmt::Display) -> anyhow::Result<i32> {
    eprintln!("error: {message}");
    Ok(EXIT_USAGE)
}

/// The simulator `--sim` starts: fast, roomy, fault-free.
fn embedded_sim_config() -> SimConfig {
    SimConfig {
        time_scale: 0.01,
        rpm: 1200,
        concurrency: 10,
        ..SimConfig::default()
    }
}

/// The API client of a command, and the simulator it started, if any.
async fn connect(api: &ApiArgs) -> anyhow::Result<(Client, Option<SimHandle>)> {
    let (base_url, key, sim) = if api.sim {
        let sim = Sim::start(embedded_sim_config())
            .await
            .context("starting the embedded simulator")?;
        (sim.base_url(), ApiKey::new("sim-key"), Some(sim))
    } else {
        let key = match (&api.api_key_file, &api.api_key) {
            (Some(path), _) => ApiKey::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the API key from {}", path.display()))?,
            ),
            (None, Some(k)) => ApiKey::new(k.clone()),
            (None, None) => ApiKey::new(""),
        };
        if key.is_empty() {
            bail!("no API key: set ALLTOKEN_API_KEY or --api-key-file (or try --sim)");
        }
        (api.base_url.clone(), key, None)
    };
    let mut config = ClientConfig::new(base_url, key);
    config.request_timeout = api.request_timeout;
    let client = Client::new(&config).map_err(|e| anyhow!("{e}"))?;
    Ok((client, sim))
}

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

/// Chooses flag, then earlier run, then manifest, then default.
fn pick<T: Clone + serde::de::DeserializeOwned>(
    flag: Option<T>,
    previous: Option<&serde_json::Value>,
    key: &str,
    manifest: Option<T>,
    default: T,
) -> T {
    flag.or_else(|| {
        previous
            .and_then(|p| p.get(key))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    })
    .or(manifest)
    .unwrap_or(default)
}

fn pick_duration(
    flag: Option<Duration>,
    previous: Option<&serde_json::Value>,
    key: &str,
    manifest: Option<Duration>,
    default: Duration,
) -> Duration {
    flag.or_else(|| {
        previous
            .and_then(|p| p.get(key))
            .and_then(|v| v.as_str())
            .and_then(|s| humantime::parse_duration(s).ok())
            .map(|d| d.min(manifest::run::MAX_DURATION))
    })
    .or(manifest)
    .unwrap_or(default)
}

/// Resolves the run's settings.
fn settings(args: &RunArgs, plan: &Plan, out: PathBuf, previous: Option<&serde_json::Value>) -> RunSettings {
    let defaults = RunSettings::new(out.clone());
    let r = &plan.run;
    let sim = args.api.sim;
    let max_retries = pick(
        args.max_retries,
        previous,
        "max_retries",
        r.max_retries,
        defaults.max_retries,
    );
    RunSettings {
        out_dir: out,
        rpm: pick(
            args.rpm,
            previous,
            "rpm",
            r.rpm,
            if sim { 600 } else { defaults.rpm },
        ),
        burst: pick(args.burst, previous, "burst", r.burst, defaults.burst),
        concurrency: pick(
            args.concurrency,
            previous,
            "concurrency",
            r.concurrency.map(|c| Concurrency::Max(c as usize)),
            defaults.concurrency,
        ),
        download_concurrency: pick(
            args.download_concurrency,
            previous,
            "download_concurrency",
            r.download_concurrency.map(|c| c as usize),
            defaults.download_concurrency,
        ),
        max_retries,
        poll_interval: pick_duration(
            args.poll_interval,
            previous,
            "poll_interval",
            r.poll_interval,
            if sim {
                Duration::from_millis(200)
            } else {
                defaults.poll_interval
            },
        ),
        job_timeout: pick_duration(
            args.job_timeout,
            previous,
            "job_timeout",
            r.job_timeout,
            defaults.job_timeout,
        ),
        max_fail: args
            .max_fail
            .or(r.max_fail.map(|m| m.min(u64::from(u32::MAX)) as u32)),
        budget_tokens: args.budget_tokens.or(r.budget_tokens),
        retry_failed: args.retry_failed,
        cancel_on_interrupt: args.cancel_on_interrupt,
        max_video_bytes: defaults.max_video_bytes,
        retry: RetryPolicy::new(max_retries),
    }
}

/// Moves an out dir's state aside for `--fresh`, keeping it as a backup.
fn backup_state(out: &Path) -> anyhow::Result<()> {
    let state = out.join(journal::STATE_FILE);
    if state.exists() {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let backup = out.join(format!("state.{stamp}.jsonl.bak"));
        std::fs::rename(&state, &backup)
            .with_context(|| format!("moving {} to {}", state.display(), backup.display()))?;
        eprintln!("--fresh: the earlier state is kept as {}", backup.display());
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM; a second one exits at once (the state is already safe).
async fn interrupted() {
    wait_signal().await;
    eprintln!("interrupted: saving state and writing the report (Ctrl-C again to leave at once)");
    tokio::spawn(async {
        wait_signal().await;
        std::process::exit(RunOutcome::Interrupted.exit_code());
    });
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn cmd_run(args: RunArgs, verbosity: display::Verbosity, json_logs: bool) -> anyhow::Result<i32> {
    let plan = match manifest::load_plan(&args.manifest) {
        Ok(plan) => plan,
        Err(diags) => {
            eprint!("{diags}");
            return Ok(EXIT_USAGE);
        }
    };
    for w in &plan.warnings {
        note(json_logs, &w.to_string());
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
        // The shard's jobs, in plan order: one pass, as `plan` costs.
        let shown = match shard {
            None => plan,
            Some((k, n)) => Plan {
                jobs: plan.jobs.into_iter().filter(|j| in_shard(&j.id, k, n)).collect(),
                ..plan
            },
        };
        manifest::plan::render_table(&shown, &mut stdout)?;
        writeln!(
            stdout,
            "dry run: {} jobs would run into {}; nothing was sent",
            shown.jobs.len(),
            out.display()
        )?;
        stdout.flush()?;
        return Ok(0);
    }
    let jobs: Vec<JobSpec> = plan
        .jobs
        .iter()
        .filter(|j| shard.is_none_or(|(k, n)| in_shard(&j.id, k, n)))
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
        let _lock = match journal::lock_dir(&out) {
            Ok(l) => l,
            Err(e @ journal::JournalError::Locked { .. }) => return usage(e),
            Err(e) => return Err(e.into()),
        };
        backup_state(&out)?;
    }
    let previous = journal::load(&out.join(journal::STATE_FILE))
        .ok()
        .and_then(|l| l.state.settings);
    let settings = settings(&args, &plan, out.clone(), previous.as_ref());
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
        Err(crate::runner::RunError::Journal(e @ journal::JournalError::Locked { .. })) => return usage(e),
        Err(crate::runner::RunError::Plan(e)) => return usage(e),
        Err(e) => {
            // Write what is known, then fail.
            if let Ok(loaded) = journal::load(&out.join(journal::STATE_FILE)) {
                let _ = report::write_all(&out, &loaded.state, &args.ci.outputs());
            }
            return Err(e.into());
        }
    };
    report::write_all(&out, &summary.state, &args.ci.outputs())
        .with_context(|| format!("writing the report of {}", out.display()))?;
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
    Ok(summary.outcome.exit_code())
}

/// A warning for whoever watches the run: a plain line, or a JSON log record with json logs.
fn note(json_logs: bool, message: &str) {
    if json_logs {
        tracing::warn!("{message}");
    } else {
        eprintln!("{message}");
    }
}

fn load_state(out: &Path) -> anyhow::Result<RunState> {
    let path = out.join(journal::STATE_FILE);
    if !path.exists() {
        bail!("no run state at {} (is --out right?)", path.display());
    }
    Ok(journal::load(&path)?.state)
}

fn cmd_status(out: &Path, json: bool) -> anyhow::Result<i32> {
    let state = load_state(out)?;
    let report = report::Report::from_state(&state);
    let mut stdout = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(
            &mut stdout,
            &serde_json::json!({
                "out": out,
                "run_id": report.run.run_id,
                "outcome": report.run.outcome,
                "summary": report.summary,
                "jobs": report.jobs.iter().map(|j| serde_json::json!({
                    "id": j.id, "state": j.state, "task_id": j.task_ids.last(), "file": j.file,
                    "error": j.error.as_ref().map(|e| &e.message),
                })).collect::<Vec<_>>(),
            }),
        )?;
        writeln!(stdout)?;
        return Ok(0);
    }
    writeln!(stdout, "{}: {} jobs", out.display(), report.summary.jobs)?;
    for (state, n) in &report.summary.by_state {
        writeln!(stdout, "  {state:<16} {n}")?;
    }
    let c = &report.summary.counters;
    writeln!(
        stdout,
        "  requests: {} ({} creates, {} lists, {} reads, {} cancels), {} answered 429{}",
        c.api_requests,
        c.creates,
        c.lists,
        c.reads,
        c.cancels,
        c.rate_limited,
        c.slots
            .map(|s| format!("; the account runs {s} tasks at once (learned from the lists)"))
            .unwrap_or_default()
    )?;
    for j in report.jobs.iter().filter(|j| j.state != "done") {
        let detail = j.error.as_ref().map(|e| e.message.as_str()).unwrap_or("");
        writeln!(stdout, "  {:<24} {:<16} {}", j.id, j.state, detail)?;
    }
    Ok(0)
}

async fn cmd_cancel(out: &Path, api: &ApiArgs) -> anyhow::Result<i32> {
    let state = load_state(out)?;
    let in_flight: Vec<(String, String)> = state
        .jobs_in_order()
        .filter(|j| matches!(j.phase, Phase::Submitted | Phase::Submitting))
        .filter_map(|j| Some((j.id.clone(), j.task_id()?.to_string())))
        .collect();
    if in_flight.is_empty() {
        println!("nothing to cancel: no task of this run is queued or processing");
        return Ok(0);
    }
    let (client, _sim) = connect(api).await?;
    let mut failed = 0;
    for (job, task) in &in_flight {
        match client.cancel(task).await {
            Ok(_) => println!("cancelled {job} ({task})"),
            Err(crate::api::ApiError::Conflict(_)) => println!("{job} ({task}) already finished"),
            Err(e) => {
                failed += 1;
                eprintln!("{job} ({task}): {e}");
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn cmd_report(out: &Path, ci: &CiArgs) -> anyhow::Result<i32> {
    let state = load_state(out)?;
    report::write_all(out, &state, &ci.outputs())?;
    println!("wrote {}", out.join("report.json").display());
    for path in ci.junit.iter().chain(&ci.summary_md) {
        println!("wrote {}", path.display());
    }
    Ok(0)
}

async fn cmd_models(api: &ApiArgs, json: bool) -> anyhow::Result<i32> {
    let (client, _sim) = connect(api).await?;
    let models = client.list_models().await.map_err(|e| anyhow!("{e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&models)?);
    } else {
        for m in &models.data {
            println!("{}", m.id);
        }
    }
    Ok(0)
}
