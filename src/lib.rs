//! vidbatch: turn a manifest of prompts into generated videos through the AllToken Videos API.
//!
//! # Layout
//! - [`api`]: typed client of the five endpoints; classifies every failure, no retry loop.
pub mod api;
pub mod events;
pub mod journal;
pub mod state;
