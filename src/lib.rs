//! vidbatch: turn a manifest of prompts into generated videos through the AllToken Videos API.
//!
//! # Layout
//! - [`api`]: typed client of the five endpoints; classifies every failure, no retry loop.
//! - [`download`]: resumable, verified, atomic downloads of finished videos and frames.
//! - [`mp4`]: structural checks of MP4 files (top-level box walk).
pub mod api;
pub mod download;
pub mod mp4;
