//! Command-line parsing and the commands; the main structure here is [`Cli`].
//!
//! Settings come from a flag, then its environment variable, then (on resume) the earlier
//! run's settings, then the manifest's `run:` section, then the built-in default.

#[cfg(feature = "sim")]
mod sim;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use crate::api::{ApiKey, Client, ClientConfig, DEFAULT_BASE_URL, http_client};
use crate::display;
use crate::events::{RunOutcome, SourceRecord};
use crate::exit::{self, Ending};
use crate::journal;
use crate::manifest::{self, ManifestArgs, Plan};
use crate::report;
use crate::runner::{Concurrency, JobSpec, RetryPolicy, RunSettings, Runner, SettingLayer};
use crate::state::{Phase, RunState};

/// Exit code of a usage or manifest error.
pub const EXIT_USAGE: i32 = exit::USAGE;

/// Help headings of `run --help`, in the order shown.
const MANIFEST: &str = "Manifest";
const API: &str = "API";
const RATE: &str = "Rate and concurrency";
const POLLING: &str = "Polling and retries";
const OUTPUTS: &str = "Outputs";
const CONTROL: &str = "Run control";
const GLOBAL: &str = "Global options";

/// vidbatch: generate videos from a manifest of prompts through the AllToken Videos API.
#[derive(Debug, Parser)]
#[command(name = "vidbatch", version, about, max_term_width = 100)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr; `json` prints one JSON object per line, for every command (run
    /// events carry `event`, `job`, `task_id`; errors carry `exit_code`), and replaces the
    /// progress display.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "VIDBATCH_LOG_FORMAT",
        help_heading = GLOBAL
    )]
    pub log_format: LogFormat,
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Less output: failures and the final summary only.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
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
    /// Show whether a run is live (pid, start), how the last one ended and why, and every
    /// job's state with what it means (offline, from the state file and the lock).
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
    /// Rebuild report.json and report.html (and --junit, --summary-md) from the state file,
    /// or merge the reports of several shard out dirs into --out with --merge.
    Report {
        /// Out dir (with --merge: the dir the merged report is written to).
        #[arg(long, default_value = "./vidbatch-out", env = "VIDBATCH_OUT")]
        out: PathBuf,
        /// Merge the reports of these shard out dirs into one (report.json, report.html and the
        /// CI files) in --out; its links point at each shard's videos.
        #[arg(long, value_name = "OUT_DIR", num_args = 1..)]
        merge: Vec<PathBuf>,
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
    #[cfg(feature = "sim")]
    Sim(Box<sim::SimArgs>),
    /// Print a shell completion script, e.g. `vidbatch completions bash > /etc/bash_completion.d/vidbatch`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (roff): one per command into DIR (vidbatch.1, vidbatch-run.1,
    /// ...), or vidbatch.1 to stdout without DIR; e.g. `vidbatch man /usr/local/share/man/man1`.
    Man {
        /// Directory to write the pages into (made if missing).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Where the API is and how to sign in.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// API base URL.
    #[arg(long, env = "ALLTOKEN_BASE_URL", default_value = DEFAULT_BASE_URL, help_heading = API)]
    pub base_url: String,
    /// API key (prefer the environment variable or --api-key-file: a flag shows in the process
    /// list) [default: none]
    #[arg(long, env = "ALLTOKEN_API_KEY", hide_env_values = true, help_heading = API)]
    pub api_key: Option<String>,
    /// Read the API key from this file (e.g. a mounted secret) [default: none]
    #[arg(long, env = "VIDBATCH_API_KEY_FILE", value_name = "FILE", help_heading = API)]
    pub api_key_file: Option<PathBuf>,
    /// Start the embedded simulator and use it (no key, no network); a run's defaults are
    /// then faster: --rpm 600, --poll-interval 200ms.
    #[arg(long, help_heading = API)]
    pub sim: bool,
    /// Longest one API request may take (connect, send, answer), e.g. 60s or 2m.
    #[arg(
        long,
        env = "VIDBATCH_REQUEST_TIMEOUT",
        default_value = "60s",
        value_name = "DUR",
        value_parser = manifest::run::parse_duration_arg,
        help_heading = POLLING
    )]
    pub request_timeout: Duration,
}

/// Reports for CI besides `OUT/report.json`.
#[derive(Debug, Clone, Default, Args)]
pub struct CiArgs {
    /// Also write JUnit XML here: one testcase per job, flaky ones marked [default: none]
    #[arg(long, value_name = "FILE", env = "VIDBATCH_JUNIT", help_heading = OUTPUTS)]
    pub junit: Option<PathBuf>,
    /// Also write a Markdown summary here (and append it to $GITHUB_STEP_SUMMARY when set)
    /// [default: none]
    #[arg(long, value_name = "FILE", env = "VIDBATCH_SUMMARY_MD", help_heading = OUTPUTS)]
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

/// Options of `vidbatch run`, shown by `run --help` under headings.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The manifests.
    #[command(flatten, next_help_heading = MANIFEST)]
    pub manifest: ManifestArgs,
    /// API requests per minute (token bucket rate) [default: 60] [with --sim: 600]
    #[arg(long, env = "VIDBATCH_RPM", help_heading = RATE)]
    pub rpm: Option<u32>,
    /// Requests allowed at once above the steady rate [default: 5]
    #[arg(long, env = "VIDBATCH_BURST", help_heading = RATE)]
    pub burst: Option<u32>,
    /// Tasks queued or processing on the server at once: `auto` learns the account's
    /// processing slots and keeps a small queue ahead of them; a number is a hard cap [default: auto]
    #[arg(long, env = "VIDBATCH_CONCURRENCY", value_name = "auto|N", help_heading = RATE)]
    pub concurrency: Option<Concurrency>,
    /// Downloads at once [default: 4]
    #[arg(long, env = "VIDBATCH_DOWNLOAD_CONCURRENCY", help_heading = RATE)]
    pub download_concurrency: Option<usize>,
    /// Shortest interval between sweeps of the task list (the interval follows the spare request
    /// budget), e.g. 3s [default: 3s] [with --sim: 200ms]
    #[arg(
        long,
        env = "VIDBATCH_POLL_INTERVAL",
        value_name = "DUR",
        value_parser = manifest::run::parse_duration_arg,
        help_heading = POLLING
    )]
    pub poll_interval: Option<Duration>,
    /// Retries of a transient failure (5xx, timeout, lost connection) [default: 5]
    #[arg(long, env = "VIDBATCH_MAX_RETRIES", help_heading = POLLING)]
    pub max_retries: Option<u32>,
    /// First delay of the retry backoff (the longest is 120 times it) [default: 500ms]; not in
    /// --help: for tests that fault every request and should not wait like a real run.
    #[arg(long, env = "VIDBATCH_RETRY_BASE_DELAY", hide = true, value_parser = manifest::run::parse_duration_arg)]
    pub retry_base_delay: Option<Duration>,
    /// Longest a job may take from submit to finish before it is cancelled, e.g. 1h [default: 1h]
    #[arg(
        long,
        env = "VIDBATCH_JOB_TIMEOUT",
        value_name = "DUR",
        value_parser = manifest::run::parse_duration_arg,
        help_heading = POLLING
    )]
    pub job_timeout: Option<Duration>,
    /// The API (its request timeout shows under polling and retries).
    #[command(flatten)]
    pub api: ApiArgs,
    /// Out dir: videos/, report.json, report.html, state.jsonl [default: ./vidbatch-out]
    #[arg(long, env = "VIDBATCH_OUT", help_heading = OUTPUTS)]
    pub out: Option<PathBuf>,
    /// CI outputs.
    #[command(flatten)]
    pub ci: CiArgs,
    /// Progress display: `auto` draws a bar when stderr is a terminal, else plain lines.
    #[arg(long, value_enum, default_value = "auto", env = "VIDBATCH_PROGRESS", help_heading = OUTPUTS)]
    pub progress: Progress,
    /// Retry jobs that failed in an earlier run.
    #[arg(long, help_heading = CONTROL)]
    pub retry_failed: bool,
    /// Start over: keep the old state as a backup and begin a new one.
    #[arg(long, help_heading = CONTROL)]
    pub fresh: bool,
    /// Show what would run; send nothing.
    #[arg(long, help_heading = CONTROL)]
    pub dry_run: bool,
    /// Run only shard K of N (jobs split by a hash of their id), e.g. 2/4 [default: all jobs]
    #[arg(long, value_name = "K/N", env = "VIDBATCH_SHARD", help_heading = CONTROL)]
    pub shard: Option<String>,
    /// Stop submitting after N failed jobs [default: no limit]
    #[arg(long, env = "VIDBATCH_MAX_FAIL", help_heading = CONTROL)]
    pub max_fail: Option<u32>,
    /// Stop submitting when the estimated tokens would pass N [default: no limit]
    #[arg(long, env = "VIDBATCH_BUDGET_TOKENS", help_heading = CONTROL)]
    pub budget_tokens: Option<u64>,
    /// Also cancel the tasks in flight on Ctrl-C.
    #[arg(long, help_heading = CONTROL)]
    pub cancel_on_interrupt: bool,
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
    display::log::set_json(json_logs);
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
        Command::Report { out, merge, ci } => cmd_report(&out, &merge, &ci),
        Command::Models { api, json } => cmd_models(&api, json).await,
        #[cfg(feature = "sim")]
        Command::Sim(args) => sim::run(*args).await.map(|()| 0),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vidbatch", &mut script);
            std::io::stdout()
                .lock()
                .write_all(&script)
                .map(|()| 0)
                .map_err(anyhow::Error::from)
        }
        Command::Man { dir } => cmd_man(dir.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => match exit::code_of(&e) {
            // The reader of stdout went away (`| head`): what it wanted, it has.
            Ending::Quiet => exit::SUCCESS,
            Ending::Code(code) => {
                display::log::error(&format!("{e:#}"), code);
                code
            }
        },
    }
}

/// A usage error: printed (a JSON record with json logs), exit 2.
fn usage(message: impl std::fmt::Display) -> anyhow::Result<i32> {
    display::log::error(&message.to_string(), EXIT_USAGE);
    Ok(EXIT_USAGE)
}

/// What keeps the simulator `--sim` started serving while a command runs.
#[cfg(not(feature = "sim"))]
type EmbeddedSim = std::convert::Infallible;
#[cfg(feature = "sim")]
use sim::{EmbeddedSim, start_embedded};

/// Without the `sim` feature there is no simulator to start.
#[cfg(not(feature = "sim"))]
async fn start_embedded() -> anyhow::Result<(String, EmbeddedSim)> {
    bail!("--sim: this vidbatch was built without the simulator (the `sim` feature)")
}

/// Whether the raw command line (or, without `--log-format` on it, `VIDBATCH_LOG_FORMAT`) asks
/// for JSON logs: for a command line clap refuses, whose error must then be JSON too.
pub fn json_requested(args: &[String], env: Option<&str>) -> bool {
    let mut given = None;
    for (i, arg) in args.iter().enumerate().skip(1) {
        if arg == "--" {
            break;
        }
        if let Some(value) = arg.strip_prefix("--log-format=") {
            given = Some(value);
        } else if arg == "--log-format" {
            given = args.get(i + 1).map(String::as_str);
        }
    }
    given.or(env).is_some_and(|v| v.eq_ignore_ascii_case("json"))
}

/// The API client of a command, and the simulator it started, if any.
async fn connect(api: &ApiArgs) -> anyhow::Result<(Client, Option<EmbeddedSim>)> {
    let (base_url, key, sim) = if api.sim {
        let (base_url, sim) = start_embedded().await?;
        (base_url, ApiKey::new("sim-key"), Some(sim))
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

/// The run's last line: where the report is and the next step that fits how it ended.
fn closing_line(out: &Path, summary: &crate::runner::RunSummary) -> String {
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
fn flag_layer(args: &RunArgs) -> SettingLayer {
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
fn manifest_layer(r: &manifest::run::RunSection) -> SettingLayer {
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
fn settings(
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
fn move_earlier_run(out: &Path) -> anyhow::Result<()> {
    let parts = [journal::STATE_FILE, "videos", "report.json", "report.html"];
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
    journal::sync_dir(out);
    note(
        display::log::json(),
        &format!(
            "--fresh: the earlier run (state, videos, reports) is kept in {}",
            dest.display()
        ),
    );
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM; a second one exits at once (the state is already safe). The
/// display says so, from the run's own stop.
async fn interrupted() {
    wait_signal().await;
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
            manifest::plan::report_problems(&diags, &mut std::io::stderr().lock());
            return Ok(EXIT_USAGE);
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
        let state_path = out.join(journal::STATE_FILE);
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
        let _lock = match journal::lock_dir(&out) {
            Ok(l) => l,
            Err(e @ journal::JournalError::Locked { .. }) => return usage(e),
            Err(e) => return Err(e.into()),
        };
        move_earlier_run(&out)?;
    }
    let previous = journal::load(&out.join(journal::STATE_FILE))
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
        Err(crate::runner::RunError::Journal(e @ journal::JournalError::Locked { .. })) => return usage(e),
        Err(crate::runner::RunError::Plan(e)) => return usage(e),
        Err(e) => {
            // Nothing was sent: the out dir or its state could not be set up.
            let code = RunOutcome::LocalFailure.exit_code();
            display::log::error(&e.to_string(), code);
            return Ok(code);
        }
    };
    if let Some(failure) = &summary.local_failure {
        display::log::error(
            &format!("{}: {failure}", out.display()),
            summary.outcome.exit_code(),
        );
    }
    let written = report::write_all(&out, &summary.state, &args.ci.outputs())
        .with_context(|| format!("writing the report of {}", out.display()));
    if let Err(e) = written {
        let code = RunOutcome::LocalFailure.exit_code();
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
    Ok(summary.outcome.exit_code())
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

/// A warning for whoever watches the run: a plain line (wrapped to a terminal's width), or a
/// JSON log record with json logs.
fn note(json_logs: bool, message: &str) {
    if json_logs {
        // Shown whatever -q says, as the plain line is.
        tracing::warn!(target: display::log::DIAGNOSTICS, "{message}");
    } else {
        eprintln!("{}", display::for_stderr(message));
    }
}

/// A line of what a command did (`cancelled JOB (TASK)`, `wrote PATH`) on stdout; with json
/// logs, an `info` record on stderr instead (with the job and task it names), so that a log
/// taking stdout too stays JSON lines.
fn say(stdout: &mut impl Write, message: &str, job_task: Option<(&String, &String)>) -> std::io::Result<()> {
    if !display::log::json() {
        return writeln!(stdout, "{message}");
    }
    let (job, task_id) = job_task.map_or((None, None), |(j, t)| (Some(j.as_str()), Some(t.as_str())));
    tracing::info!(target: display::log::DIAGNOSTICS, job, task_id, "{message}");
    Ok(())
}

/// A command's `--json` document: pretty, or one line when every line of the process is JSON
/// (`--log-format json`), so a log that takes stdout and stderr stays JSON lines.
fn write_json(w: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if display::log::json() {
        serde_json::to_writer(&mut *w, value)?;
    } else {
        serde_json::to_writer_pretty(&mut *w, value)?;
    }
    writeln!(w)?;
    Ok(())
}

fn load_state(out: &Path) -> anyhow::Result<RunState> {
    let path = out.join(journal::STATE_FILE);
    if !path.exists() {
        return Err(exit::Usage(format!("no run state at {} (is --out right?)", path.display())).into());
    }
    Ok(journal::load(&path)?.state)
}

fn cmd_status(out: &Path, json: bool) -> anyhow::Result<i32> {
    let state = load_state(out)?;
    let report = report::Report::from_state(&state);
    let status = report::status::Status::of(
        out,
        &report,
        report::status::Liveness::of(out),
        state.stop_reason.as_deref(),
    );
    let mut stdout = std::io::stdout().lock();
    if json {
        write_json(&mut stdout, &status)?;
    } else {
        status.write_text(&mut stdout)?;
    }
    Ok(0)
}

async fn cmd_cancel(out: &Path, api: &ApiArgs) -> anyhow::Result<i32> {
    if api.sim {
        return usage(
            "cancel --sim: the embedded simulator starts empty and knows none of this run's tasks; \
             give the --base-url (and key) the run used",
        );
    }
    let state = load_state(out)?;
    let rpm = state
        .settings
        .as_ref()
        .and_then(|s| s.get("rpm"))
        .and_then(|v| v.as_u64())
        .map_or(60, |r| r.clamp(1, u64::from(u32::MAX)) as u32);
    let (client, _sim) = match connect(api).await {
        Ok(c) => c,
        Err(e) => return usage(format!("{e:#}")),
    };
    let summary = match crate::runner::cancel_run(out, &client, rpm, RetryPolicy::new(5)).await {
        Ok(s) => s,
        Err(crate::runner::RunError::Journal(e @ journal::JournalError::Locked { .. })) => return usage(e),
        Err(e) => return Err(e.into()),
    };
    let mut stdout = std::io::stdout().lock();
    for (job, task) in &summary.cancelled {
        say(
            &mut stdout,
            &format!("cancelled {job} ({task})"),
            Some((job, task)),
        )?;
    }
    for (job, task, status) in &summary.finished {
        let next = if status == "completed" {
            "a rerun downloads it"
        } else {
            "its own error is kept"
        };
        say(
            &mut stdout,
            &format!("{job} ({task}) had finished ({status}): {next}"),
            Some((job, task)),
        )?;
    }
    for (job, task) in &summary.gone {
        say(
            &mut stdout,
            &format!("{job} ({task}) is no longer on the server (expired)"),
            Some((job, task)),
        )?;
    }
    for job in &summary.unsettled {
        say(
            &mut stdout,
            &format!("{job}: its create's answer was lost; run again to find its task, then cancel"),
            None,
        )?;
    }
    for (job, task, error) in &summary.errors {
        if display::log::json() {
            tracing::warn!(target: display::log::DIAGNOSTICS, job = %job, task_id = %task, "cancel failed: {error}");
        } else {
            eprintln!("{job} ({task}): cancel failed: {error}");
        }
    }
    if summary.cancelled.is_empty() && summary.finished.is_empty() && summary.errors.is_empty() {
        say(
            &mut stdout,
            "nothing to cancel: no task of this run is queued or processing",
            None,
        )?;
    }
    Ok(if summary.errors.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

fn cmd_report(out: &Path, merge: &[PathBuf], ci: &CiArgs) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout().lock();
    if merge.is_empty() {
        let state = load_state(out)?;
        report::write_all(out, &state, &ci.outputs())?;
    } else {
        let merged = match report::merge::merge(merge, out) {
            Ok(r) => r,
            Err(e @ (report::merge::MergeError::Io { .. } | report::merge::MergeError::Journal { .. })) => {
                return Err(e.into());
            }
            Err(e) => return usage(e),
        };
        let merged = std::sync::Arc::new(merged);
        report::write_report_files(out, &merged, &ci.outputs())?;
        let s = &merged.summary;
        let done = s.by_state.get("done").copied().unwrap_or(0);
        say(
            &mut stdout,
            &format!("merged {} shard dirs: {} jobs, {done} done", merge.len(), s.jobs),
            None,
        )?;
    }
    let written = [out.join("report.json"), out.join(report::html::FILE)];
    for path in written.iter().chain(&ci.junit).chain(&ci.summary_md) {
        say(&mut stdout, &format!("wrote {}", path.display()), None)?;
    }
    Ok(exit::SUCCESS)
}

/// Writes the man pages: one per command into `dir`, or the top page to stdout.
fn cmd_man(dir: Option<&Path>) -> anyhow::Result<i32> {
    let Some(dir) = dir else {
        clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vidbatch") && n.ends_with(".1"))
        .collect();
    pages.sort();
    writeln!(
        std::io::stdout().lock(),
        "wrote {} pages into {}: {}",
        pages.len(),
        dir.display(),
        pages.join(" ")
    )?;
    Ok(exit::SUCCESS)
}

async fn cmd_models(api: &ApiArgs, json: bool) -> anyhow::Result<i32> {
    let (client, _sim) = match connect(api).await {
        Ok(c) => c,
        Err(e) => return usage(format!("{e:#}")),
    };
    // The API error stays typed: a 401 or 402 exits 3, as from `run`.
    let models = client.list_models().await.context("listing the models")?;
    let mut stdout = std::io::stdout().lock();
    if json {
        write_json(&mut stdout, &models)?;
    } else {
        for m in &models.data {
            writeln!(stdout, "{}", m.id)?;
        }
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_logs_are_asked_for_by_the_flag_in_either_spelling_or_else_the_variable() {
        let args = |a: &[&str]| -> Vec<String> { a.iter().map(|s| s.to_string()).collect() };
        assert!(json_requested(
            &args(&["vidbatch", "--log-format", "json", "run", "--x"]),
            None
        ));
        assert!(json_requested(
            &args(&["vidbatch", "run", "--x", "--log-format=JSON"]),
            None
        ));
        assert!(!json_requested(&args(&["vidbatch", "run", "--x"]), None));
        assert!(json_requested(&args(&["vidbatch", "run", "--x"]), Some("json")));
        // The flag wins over the variable; after `--` nothing is a flag.
        assert!(!json_requested(
            &args(&["vidbatch", "--log-format", "text", "run"]),
            Some("json")
        ));
        assert!(!json_requested(
            &args(&["vidbatch", "run", "--", "--log-format=json"]),
            None
        ));
        // A dangling flag asks for nothing.
        assert!(!json_requested(&args(&["vidbatch", "run", "--log-format"]), None));
    }
}
