//! Manifests: the YAML/CSV/XLSX/ODS readers, the job model, validation and the plan.
//!
//! [`load_plan`] reads every manifest named in [`Inputs`], expands `matrix`, `repeat` and
//! sheet rows into [`Job`]s with stable ids, checks everything the API would reject, and returns
//! either a [`Plan`] or every problem at once ([`Diagnostics`]).
//!
//! Precedence of job fields, lowest first: a YAML manifest's `defaults`, then `--model` and
//! `--set key=value`, then the job's (or row's) own values. In YAML, `key: null` unsets a
//! default; in a sheet, an empty cell keeps it.
//!
//! # Keys
//! - Top level of a YAML manifest: `version` (1), `defaults`, `jobs`, `rows` (a path, or
//!   `{path, sheet, delimiter}`, or a list of those; relative to the manifest), `run`
//!   ([`RunSection`]); keys starting with `x-` are free (for anchors).
//! - Job fields: the API request fields by API name ([`fields::API_FIELDS`]), the content
//!   shorthands ([`fields::SHORTHANDS`]: `first_frame`, `last_frame`, `reference_image`,
//!   `reference_video`, `reference_audio` (each one URL or a list), `draft_task` (an id)), and
//!   `id`, `name`, `matrix`, `repeat`. `defaults` takes every job field but `id` and `matrix`.
//! - Templates: `{var}` in any text field, `id` and `name` (which may also use `{id}`); `{{`
//!   and `}}` are literal braces. Variables come from `matrix` (a variable named like a job
//!   field also sets that field) and from sheet columns that name no field.
//! - Sheets: the first non-skipped row is the header; headers are matched to fields
//!   case-insensitively with spaces and dashes as underscores; a row whose first cell starts
//!   with `#`, or whose cells are all blank, is skipped; a cell of `reference_*` may hold
//!   several URLs separated by whitespace; `tools` a comma-separated list; `content` JSON.
//!   Booleans accept true/false, yes/no, 1/0; numbers may be written as text.
//! - Ids: the manifest's own, else `j-` + the first 12 hex characters of [`Job::fingerprint`];
//!   `repeat: N` appends `-1`..`-N` (to the name as well, unless it uses `{id}`).
//!
//! # Layout
//! - `types`: [`Plan`], [`Job`], [`SourceFile`]; `load`: [`load_plan`] (YAML manifests, ids,
//!   names) and `load::rows` (sheet and CSV rows); `cells`: cells read by their field's meaning.
//! - [`yaml`]: the YAML reader with locations; [`sheet`], [`ods`], [`grid`], [`numfmt`]: sheets
//!   read as they are shown; [`diag`]: diagnostics and their rendering.
//! - [`fields`]: the keys a job may have; [`job`]: a job's fields to a request; [`canonical`]:
//!   the canonical JSON and fingerprint; [`rules`]: what the API would reject; [`refs`]:
//!   `job://` references and chains; [`expand`]: templates and matrices; [`estimate`]: tokens.
//! - [`run`]: the `run:` section; [`plan`]: `validate` and `plan`; [`schema`]: the JSON schema.

pub(crate) mod canonical;
mod cells;
pub(crate) mod diag;
pub(crate) mod estimate;
pub(crate) mod expand;
pub(crate) mod fields;
pub(crate) mod grid;
pub(crate) mod job;
mod load;
pub(crate) mod numfmt;
pub(crate) mod ods;
pub(crate) mod plan;
pub(crate) mod refs;
pub(crate) mod rules;
pub(crate) mod run;
pub(crate) mod schema;
pub mod sheet;
mod types;
pub(crate) mod yaml;

use std::path::PathBuf;

pub use cells::time_as_ratio;
pub use diag::{Diagnostic, Diagnostics, Severity, SourceLocation};
pub use load::load_plan;
pub use rules::{Problem, check_request};
pub use run::RunSection;
pub use schema::manifest_schema;
pub use types::{Job, Plan, SourceFile, TOP_KEYS};

/// What to read: the manifest files and the options that apply to all of them (the command
/// line's `validate`, `plan` and `run` give them).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Manifests: YAML (.yaml/.yml), CSV (.csv/.tsv/.txt), or spreadsheets (.xlsx/.xlsm/.xls/.ods).
    pub manifests: Vec<PathBuf>,
    /// CSV delimiter: `,` `;` `tab` or one character (default: detected from the header line).
    pub delimiter: Option<String>,
    /// Sheet of a spreadsheet given on the command line (default: the first).
    pub sheet: Option<String>,
    /// Model of every job that does not name one (overrides manifest defaults).
    pub model: Option<String>,
    /// A job field for every job that does not set it, e.g. `duration=5`.
    pub set: Vec<String>,
}
