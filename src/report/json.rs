//! `report.json` and its JSON Schema (2020-12), generated from the report types.

use std::path::Path;

use super::{Report, write_atomic};
use crate::state::RunState;

/// The JSON Schema (2020-12) of `report.json`, as pretty JSON with a final newline; the file
/// `schemas/report.schema.json` is this text (a test keeps them in step).
pub fn report_schema() -> String {
    let schema = schemars::schema_for!(Report);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// The report as pretty JSON with a final newline.
pub fn to_json(report: &Report) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(report).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Writes a report to `path` atomically.
pub fn write(path: &Path, report: &Report) -> std::io::Result<()> {
    write_atomic(path, &to_json(report))
}

/// Writes `OUT/report.json` from a state.
pub fn write_report(out_dir: &Path, state: &RunState) -> std::io::Result<()> {
    write(&out_dir.join("report.json"), &Report::from_state(state))
}
