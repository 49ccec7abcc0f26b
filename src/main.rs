//! The `vidbatch` command line.

use clap::{Parser, Subcommand};
use vidbatch::manifest::{ManifestArgs, cmd_plan, cmd_validate};

/// Turn a manifest of prompts into generated videos through the AllToken Videos API.
#[derive(Parser, Debug)]
#[command(name = "vidbatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check manifests, print every error with its location.
    Validate(ManifestArgs),
    /// Show the expanded jobs (table, or --json), count, estimated tokens.
    Plan {
        #[command(flatten)]
        manifest: ManifestArgs,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let code = match &cli.command {
        Command::Validate(a) => cmd_validate(a, &mut out, &mut err),
        Command::Plan { manifest, json } => cmd_plan(manifest, *json, &mut out, &mut err),
    };
    std::process::exit(code);
}
