//! Command-line parsing and the commands; the main structure here is [`Cli`].
//!
//! Settings come from a flag, then its environment variable, then (on resume) the earlier
//! run's settings, then the manifest's `run:` section, then the built-in default.
//!
//! Every clap type lives here and nowhere else. Its parts: `run` (`vidbatch run`),
//! `manifest_cmds` (`validate`, `plan` and the manifest flags), `commands` (`status`, `cancel`,
//! `report`, `man`, `models`), `endpoint` (the API or the embedded simulator) and `sim`
//! (`vidbatch sim`).

mod commands;
mod endpoint;
mod manifest_cmds;
mod run;
#[cfg(feature = "sim")]
mod sim;

use commands::{cmd_cancel, cmd_man, cmd_models, cmd_report, cmd_status};
use endpoint::connect;
pub use manifest_cmds::{ManifestArgs, cmd_plan, cmd_validate};
use run::cmd_run;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::api::DEFAULT_BASE_URL;
use crate::display::{self, Progress};
use crate::exit::{self, CommandError, Ending};
use crate::journal;
use crate::manifest;
use crate::outdir;
use crate::report;
use crate::runner::Concurrency;
use crate::state::RunState;

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
        value_parser = manifest::run::parse_positive_duration_arg,
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
    #[arg(long, env = "VIDBATCH_RPM", value_parser = clap::value_parser!(u32).range(1..), help_heading = RATE)]
    pub rpm: Option<u32>,
    /// Requests allowed at once above the steady rate [default: 5]
    #[arg(long, env = "VIDBATCH_BURST", value_parser = clap::value_parser!(u32).range(1..), help_heading = RATE)]
    pub burst: Option<u32>,
    /// Tasks queued or processing on the server at once: `auto` learns the account's
    /// processing slots and keeps a small queue ahead of them; a number is a hard cap [default: auto]
    #[arg(long, env = "VIDBATCH_CONCURRENCY", value_name = "auto|N", help_heading = RATE)]
    pub concurrency: Option<Concurrency>,
    /// Downloads at once [default: 4]
    #[arg(
        long,
        env = "VIDBATCH_DOWNLOAD_CONCURRENCY",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
        help_heading = RATE
    )]
    pub download_concurrency: Option<usize>,
    /// Shortest interval between sweeps of the task list (the interval follows the spare request
    /// budget), e.g. 3s [default: 3s] [with --sim: 200ms]
    #[arg(
        long,
        env = "VIDBATCH_POLL_INTERVAL",
        value_name = "DUR",
        value_parser = manifest::run::parse_positive_duration_arg,
        help_heading = POLLING
    )]
    pub poll_interval: Option<Duration>,
    /// Retries of a transient failure (5xx, timeout, lost connection) [default: 5]
    #[arg(long, env = "VIDBATCH_MAX_RETRIES", help_heading = POLLING)]
    pub max_retries: Option<u32>,
    /// First delay of the retry backoff (the longest is 120 times it) [default: 500ms]; not in
    /// --help: for tests that fault every request and should not wait like a real run.
    #[arg(long, env = "VIDBATCH_RETRY_BASE_DELAY", hide = true, value_parser = manifest::run::parse_positive_duration_arg)]
    pub retry_base_delay: Option<Duration>,
    /// Longest a job may take from submit to finish before it is cancelled, e.g. 1h [default: 1h]
    #[arg(
        long,
        env = "VIDBATCH_JOB_TIMEOUT",
        value_name = "DUR",
        value_parser = manifest::run::parse_positive_duration_arg,
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
    #[arg(
        long,
        default_value = "auto",
        env = "VIDBATCH_PROGRESS",
        help_heading = OUTPUTS,
        value_parser = PossibleValuesParser::new(["auto", "always", "never"]).try_map(|s| s.parse::<Progress>())
    )]
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

/// The binary's whole life: parses the command line, sets up logging, runs the command on a
/// tokio runtime and ends with its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refused(e),
    };
    display::log::init(cli.log_format == LogFormat::Json, cli.quiet, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            display::log::error(&format!("cannot start the async runtime: {e}"), exit::FAILURE);
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A command line clap refuses. Help and the version print as usual (exit 0); an error prints
/// as clap renders it, or, when the command line asks for JSON logs, as one JSON record with
/// the message, clap's kind of error, the usage line and the exit code (2, a usage error).
fn refused(e: clap::Error) -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env = std::env::var("VIDBATCH_LOG_FORMAT").ok();
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || !json_requested(&args, env.as_deref())
    {
        e.exit();
    }
    display::log::init(true, false, 0);
    let text = e.render().to_string();
    let message = match e.kind() {
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "a command or an argument is missing; see `vidbatch --help`".to_string()
        }
        _ => text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    };
    let usage = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(str::to_string);
    tracing::error!(
        target: display::log::DIAGNOSTICS,
        exit_code = exit::USAGE,
        kind = %e.kind(),
        usage = usage.as_deref(),
        "{message}"
    );
    ExitCode::from(exit::USAGE as u8)
}

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let verbosity = display::Verbosity::from_flags(cli.quiet, cli.verbose);
    let json_logs = cli.log_format == LogFormat::Json;
    display::log::set_json(json_logs);
    let result = match cli.command {
        Command::Run(args) => cmd_run(*args, verbosity, json_logs).await,
        Command::Validate(args) => Ok(cmd_validate(
            &args.into(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )),
        Command::Plan { manifest: args, json } => Ok(cmd_plan(
            &args.into(),
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
    match result.map_err(CommandError::from) {
        Ok(code) => code,
        Err(e) => match e.exit_code() {
            // The reader of stdout went away (`| head`): what it wanted, it has.
            Ending::Quiet => exit::SUCCESS,
            Ending::Code(code) => {
                display::log::error(&e.to_string(), code);
                code
            }
        },
    }
}

/// A usage error: printed (a JSON record with json logs), exit 2.
fn usage(message: impl std::fmt::Display) -> anyhow::Result<i32> {
    display::log::error(&message.to_string(), exit::USAGE);
    Ok(exit::USAGE)
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
    let path = out.join(outdir::STATE_FILE);
    if !path.exists() {
        return Err(exit::Usage(format!("no run state at {} (is --out right?)", path.display())).into());
    }
    Ok(journal::load(&path)?.state)
}

/// Listens for Ctrl-C and SIGTERM from the call on (a signal that comes before the future is
/// first polled is not lost, and never kills the process unheard); the future ends at the first.
fn wait_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut interrupt), Err(_)) => {
                    interrupt.recv().await;
                }
                (Err(_), _) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
