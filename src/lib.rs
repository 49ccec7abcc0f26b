//! vidbatch: turn a manifest of prompts into generated videos through the AllToken Videos API.
//!
//! # Layout
//! - [`api`]: typed client of the five endpoints; classifies every failure, no retry loop.
//! - [`manifest`]: YAML, CSV and spreadsheet readers, validation, and the plan.
//! - [`runner`]: the scheduler; owns run state and emits [`events::Event`]s.
//! - [`events`]: the contract between the runner and its consumers.
//! - [`state`]: run state (live, on resume, offline); `fold`: how each event changes it.
//! - [`journal`]: `state.jsonl`, the crash-safe resume journal, and the out-dir lock.
//! - [`download`]: streamed, resumable, verified downloads; `download::media`: what a file must be.
//! - [`outdir`]: the out dir's layout, its lock and its atomic writes.
//! - [`report`]: `report.json` from the state.
//! - `display`: what a person watching sees (the bar, lines, logs).
//! - `hex`: hex text of digests.
//! - [`cli`]: the command line (every clap type) and its commands; `main.rs` calls [`cli::main`].
//! - `exit`: the exit code of every command's outcome, in one place.
//!
//! The simulator of the API is the crate `vidbatch-sim` (`crates/vidbatch-sim`), used behind
//! the default `sim` feature.
pub mod api;
pub mod cli;
mod display;
pub mod download;
pub mod events;
mod exit;
mod fold;
mod hex;
pub mod journal;
pub mod manifest;
pub mod outdir;
pub mod report;
pub mod runner;
pub mod state;
