//! Diagnostics: one problem found in a manifest, where it is, what was found and what is allowed.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Where something in a manifest comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceLocation {
    /// A node of a YAML file; line and column are 1-based.
    Yaml {
        /// The file, as named on the command line or in `rows:`.
        file: Arc<str>,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        col: u32,
    },
    /// A row (and maybe a column) of a CSV file or a sheet; rows are numbered as a spreadsheet
    /// program numbers them (the header is row 1).
    Row {
        /// The file, as named on the command line or in `rows:`.
        file: Arc<str>,
        /// 1-based row number.
        row: u32,
        /// The column's header, when the problem is in one cell.
        column: Option<Arc<str>>,
    },
    /// The same place in several rows of a CSV file or a sheet (one problem repeated).
    Rows {
        /// The file.
        file: Arc<str>,
        /// The row numbers, ascending.
        rows: Vec<u32>,
        /// The column's header, when the problem is in one cell of each row.
        column: Option<Arc<str>>,
    },
    /// A whole file.
    File {
        /// The file.
        file: Arc<str>,
    },
    /// A command-line option, e.g. `--set duration=5`.
    Arg {
        /// The option as given.
        arg: Arc<str>,
    },
}

impl SourceLocation {
    /// The same row location pointing at one column (other kinds are returned unchanged).
    pub fn with_column(&self, column: &Arc<str>) -> SourceLocation {
        match self {
            SourceLocation::Row { file, row, .. } => SourceLocation::Row {
                file: file.clone(),
                row: *row,
                column: Some(column.clone()),
            },
            other => other.clone(),
        }
    }

    /// A key that sorts locations by file, then position.
    pub(crate) fn sort_key(&self) -> (&str, u32, u32) {
        match self {
            SourceLocation::Yaml { file, line, col } => (file, *line, *col),
            SourceLocation::Row { file, row, .. } => (file, *row, 0),
            SourceLocation::Rows { file, rows, .. } => (file, rows.first().copied().unwrap_or(0), 0),
            SourceLocation::File { file } => (file, 0, 0),
            SourceLocation::Arg { .. } => ("", 0, 0),
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceLocation::Yaml { file, line, col } => write!(f, "{file}:{line}:{col}"),
            SourceLocation::Row {
                file,
                row,
                column: Some(c),
            } => write!(f, "{file}: row {row}, column `{c}`"),
            SourceLocation::Row {
                file,
                row,
                column: None,
            } => write!(f, "{file}: row {row}"),
            SourceLocation::Rows { file, rows, column } => {
                write!(f, "{file}: rows {}", row_ranges(rows))?;
                match column {
                    Some(c) => write!(f, ", column `{c}`"),
                    None => Ok(()),
                }
            }
            SourceLocation::File { file } => write!(f, "{file}"),
            SourceLocation::Arg { arg } => write!(f, "command line `{arg}`"),
        }
    }
}

/// Row numbers as ranges: `2–4, 7, 9–501` (at most 8 ranges, then how many rows more).
fn row_ranges(rows: &[u32]) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &r in rows {
        match ranges.last_mut() {
            Some((_, end)) if r == *end + 1 => *end = r,
            _ => ranges.push((r, r)),
        }
    }
    let mut parts: Vec<String> = ranges
        .iter()
        .take(8)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}–{b}")
            }
        })
        .collect();
    if ranges.len() > 8 {
        let more: u32 = ranges[8..].iter().map(|(a, b)| b - a + 1).sum();
        parts.push(format!("and {more} more"));
    }
    parts.join(", ")
}

impl Serialize for SourceLocation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The manifest cannot run; nothing will be submitted.
    Error,
    /// Worth a look; the manifest still runs.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a manifest.
///
/// Rendered as `LOCATION: error: field `F`: found X, expected Y` (or `LOCATION: error: MESSAGE`
/// when there is a free-form message), followed by `; HELP` when there is help, then the
/// snippet (source and caret) on the lines below when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where the problem is.
    pub location: SourceLocation,
    /// The field (API name, shorthand, or manifest key) concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The value found, rendered for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// What is allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// A free-form message replacing the found/expected sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A hint, e.g. "did you mean `prompt`?".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The source lines around the problem with a caret under it, already rendered (plain
    /// text); shown under the first line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl Diagnostic {
    /// An error about a field: found `found`, expected `expected`.
    pub fn field_error(
        location: SourceLocation,
        field: impl Into<String>,
        found: impl Into<String>,
        expected: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            location,
            field: Some(field.into()),
            found: Some(found.into()),
            expected: Some(expected.into()),
            message: None,
            help: None,
            snippet: None,
        }
    }

    /// An error with a free-form message.
    pub fn error(location: SourceLocation, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            location,
            field: None,
            found: None,
            expected: None,
            message: Some(message.into()),
            help: None,
            snippet: None,
        }
    }

    /// A warning with a free-form message.
    pub fn warning(location: SourceLocation, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(location, message)
        }
    }

    /// The same diagnostic with a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// The same diagnostic with a rendered source snippet.
    pub fn with_snippet(mut self, snippet: impl Into<String>) -> Diagnostic {
        self.snippet = Some(snippet.into());
        self
    }

    /// The same diagnostic with another severity.
    pub fn with_severity(mut self, severity: Severity) -> Diagnostic {
        self.severity = severity;
        self
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.location, self.severity)?;
        if let Some(m) = &self.message {
            f.write_str(m)?;
        } else {
            if let Some(field) = &self.field {
                write!(f, "field `{field}`: ")?;
            }
            match (&self.found, &self.expected) {
                (Some(found), Some(exp)) => write!(f, "found {found}, expected {exp}")?,
                (Some(found), None) => write!(f, "found {found}")?,
                (None, Some(exp)) => write!(f, "expected {exp}")?,
                (None, None) => f.write_str("invalid")?,
            }
        }
        if let Some(h) = &self.help {
            write!(f, "; {h}")?;
        }
        if let Some(s) = &self.snippet {
            write!(f, "\n{}", s.trim_end_matches('\n'))?;
        }
        Ok(())
    }
}

/// Every problem found while loading manifests: the errors (at least one when returned as an
/// `Err`) and the warnings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diagnostics {
    /// Problems that stop the run.
    pub errors: Vec<Diagnostic>,
    /// Problems worth a look.
    pub warnings: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Adds a diagnostic to the errors or the warnings, by its severity.
    pub fn push(&mut self, d: Diagnostic) {
        if d.is_error() {
            self.errors.push(d);
        } else {
            self.warnings.push(d);
        }
    }

    /// Whether there is at least one error.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Drops exact repeats (e.g. one bad default reported once per row), groups one problem
    /// repeated in several rows of a file into one diagnostic over those rows, and sorts both
    /// lists by location (stable).
    pub fn finish(&mut self) {
        for list in [&mut self.errors, &mut self.warnings] {
            let mut seen = std::collections::HashSet::new();
            list.retain(|d| seen.insert(d.to_string()));
            group_rows(list);
            list.sort_by(|a, b| a.location.sort_key().cmp(&b.location.sort_key()));
        }
    }
}

/// Merges diagnostics that differ only in their row into one over all those rows.
fn group_rows(list: &mut Vec<Diagnostic>) {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(list.len());
    // (file, column, the diagnostic with its row cleared) → index in `out`
    let mut at: std::collections::HashMap<Diagnostic, usize> = std::collections::HashMap::new();
    for d in list.drain(..) {
        let SourceLocation::Row { file, row, column } = &d.location else {
            out.push(d);
            continue;
        };
        let key = Diagnostic {
            location: SourceLocation::Row {
                file: file.clone(),
                row: 0,
                column: column.clone(),
            },
            ..d.clone()
        };
        match at.get(&key) {
            Some(&i) => {
                let row = *row;
                let first = &mut out[i];
                first.location = match std::mem::replace(
                    &mut first.location,
                    SourceLocation::Arg { arg: Arc::from("") },
                ) {
                    SourceLocation::Row {
                        file,
                        row: r0,
                        column,
                    } => SourceLocation::Rows {
                        file,
                        rows: vec![r0, row],
                        column,
                    },
                    SourceLocation::Rows {
                        file,
                        mut rows,
                        column,
                    } => {
                        rows.push(row);
                        SourceLocation::Rows { file, rows, column }
                    }
                    other => other,
                };
            }
            None => {
                at.insert(key, out.len());
                out.push(d);
            }
        }
    }
    for d in &mut out {
        if let SourceLocation::Rows { rows, .. } = &mut d.location {
            rows.sort_unstable();
        }
    }
    *list = out;
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.errors.iter().chain(&self.warnings) {
            writeln!(f, "{d}")?;
        }
        let (e, w) = (self.errors.len(), self.warnings.len());
        write!(
            f,
            "{e} error{}, {w} warning{}",
            if e == 1 { "" } else { "s" },
            if w == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Diagnostics {}
