//! vidbatch: turn a manifest of prompts into generated videos through the AllToken Videos API.
//!
//! # Layout
//! - [`api`]: typed client of the five endpoints; classifies every failure, no retry loop.
//! - [`manifest`]: manifest readers (YAML, CSV, XLSX/ODS), job model, validation and plan.
pub mod api;
pub mod manifest;
