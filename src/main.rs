//! vidbatch: turn a manifest of prompts into generated videos.
use clap::{Parser, Subcommand};

/// Turn a manifest of prompts into generated videos through the AllToken Videos API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local simulator of the API.
    Sim(vidbatch::sim::SimArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sim(args) => vidbatch::sim::run_cli(args).await,
    }
}
