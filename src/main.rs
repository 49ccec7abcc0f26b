//! The `vidbatch` binary: parses the command line, sets up logging, runs the command, and maps
//! its outcome to the exit code (the only place that does).

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use tracing_subscriber::EnvFilter;
use vidbatch::cli::{Cli, LogFormat, json_requested};
use vidbatch::display::log;
use vidbatch::exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refused(e),
    };
    init_logging(cli.log_format, cli.quiet, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error(&format!("cannot start the async runtime: {e}"), exit::FAILURE);
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(vidbatch::cli::run(cli));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Logs on stderr: `text` lines, or one JSON object per line.
fn init_logging(format: LogFormat, quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("VIDBATCH_LOG").unwrap_or_else(|_| {
        // Run events (target vidbatch::events) are only logged with --log-format json, which
        // picks them by -q/-v itself; so are commands' diagnostics (vidbatch::diagnostics).
        EnvFilter::new(format!(
            "vidbatch={level},{}=info,{}=info,warn",
            log::TARGET,
            log::DIAGNOSTICS
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    log::set_json(format == LogFormat::Json);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        // Warnings while the bar is on screen are printed above it.
        LogFormat::Text => builder
            .with_writer(|| vidbatch::display::bar::AroundBar)
            .with_ansi(false)
            .init(),
    }
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
    init_logging(LogFormat::Json, false, 0);
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
        target: log::DIAGNOSTICS,
        exit_code = exit::USAGE,
        kind = %e.kind(),
        usage = usage.as_deref(),
        "{message}"
    );
    ExitCode::from(exit::USAGE as u8)
}
