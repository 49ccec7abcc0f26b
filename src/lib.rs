//! vidbatch: turn a manifest of prompts into generated videos through the AllToken Videos API.
//!
//! # Layout
//! - [`api`]: typed client of the five endpoints; classifies every failure, no retry loop.
pub mod api;
pub mod download;
pub mod events;
pub mod journal;
pub mod mp4;
pub mod runner;
pub mod state;

pub mod display;
pub mod report;
