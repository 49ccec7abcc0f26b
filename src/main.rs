//! The `vidbatch` binary: parses the command line, sets up logging, runs the command, and maps
//! its outcome to the exit code (the only place that does).

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vidbatch::cli::{Cli, LogFormat};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("VIDBATCH_LOG").unwrap_or_else(|_| {
        // Run events (target vidbatch::events) are only logged with --log-format json, which
        // picks them by -q/-v itself.
        EnvFilter::new(format!("vidbatch={level},vidbatch::events=info,warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(vidbatch::cli::run(cli));
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
