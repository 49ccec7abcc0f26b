//! `report.json` and its JSON Schema (2020-12), generated from the report types.

use std::io::{self, Write};
use std::path::Path;

use super::Report;
use crate::outdir::write_atomic_with;
use crate::state::RunState;

/// The JSON Schema (2020-12) of `report.json`, as pretty JSON with a final newline; the file
/// `schemas/report.schema.json` is this text (a test keeps them in step).
pub fn report_schema() -> String {
    let schema = schemars::schema_for!(Report);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// Writes the report to `w` as pretty JSON with a final newline, as it is serialized (the
/// text of a large report is never held in memory whole).
fn write_json(report: &Report, w: &mut impl Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, report)?;
    w.write_all(b"\n")
}

/// Writes a report to `path` atomically.
pub fn write(path: &Path, report: &Report) -> io::Result<()> {
    write_atomic_with(path, |w| write_json(report, w))
}

/// Writes `OUT/report.json` from a state.
pub fn write_report(out_dir: &Path, state: &RunState) -> io::Result<()> {
    write(
        &out_dir.join(crate::outdir::REPORT_JSON),
        &Report::from_state(state),
    )
}
