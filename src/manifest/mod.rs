//! Manifests: the YAML/CSV/XLSX/ODS readers, the job model, validation and the plan.
//!
//! [`load_plan`] reads every manifest named in [`ManifestArgs`], expands `matrix`, `repeat` and
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
//! - Job fields: the API request fields by API name ([`job::API_FIELDS`]), the content
//!   shorthands ([`job::SHORTHANDS`]: `first_frame`, `last_frame`, `reference_image`,
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

pub mod diag;
pub mod estimate;
pub mod expand;
pub mod grid;
pub mod job;
pub mod numfmt;
pub mod ods;
pub mod plan;
pub mod refs;
pub mod rules;
pub mod run;
pub mod schema;
pub mod sheet;
pub mod yaml;

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use diag::{Diagnostic, Diagnostics, Severity, SourceLocation};
pub use plan::{cmd_plan, cmd_validate};
pub use rules::{Problem, check_request};
pub use run::RunSection;
pub use schema::manifest_schema;

use crate::api::CreateRequest;
use job::{Built, Vars};
use yaml::{Node, Value};

/// The manifest options shared by `validate`, `plan` and `run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ManifestArgs {
    /// Manifests: YAML (.yaml/.yml), CSV (.csv/.tsv/.txt), or spreadsheets (.xlsx/.xlsm/.xls/.ods).
    #[arg(required = true, num_args = 1.., value_name = "MANIFEST")]
    pub manifests: Vec<PathBuf>,
    /// CSV delimiter: `,` `;` `tab` or one character (default: detected from the header line).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
    /// Sheet of a spreadsheet given on the command line (default: the first).
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// Model of every job that does not name one (overrides manifest defaults).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// A job field for every job that does not set it, e.g. `--set duration=5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// One input file and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    /// The path as given (rows files joined to their manifest's folder).
    pub path: PathBuf,
    /// sha256 hex of the file's bytes.
    pub sha256: String,
}

/// One video to generate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Stable id: the manifest's own (rendered), else `j-` + 12 hex of the request's sha256,
    /// with `-N` appended for `repeat`.
    pub id: String,
    /// Safe file stem of the outputs (`videos/NAME.mp4`); the id unless `name` is set.
    pub name: String,
    /// The request to send.
    pub request: CreateRequest,
    /// Where the job was written.
    pub source: SourceLocation,
    /// Estimated tokens ([`estimate`]), `None` when unknown.
    pub estimated_tokens: Option<u64>,
    /// The jobs this one refers to with `job://ID` ([`refs`]), in content order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// Where each item of `request.content` was written.
    #[serde(skip)]
    pub content_locs: Vec<SourceLocation>,
    /// For a job of a chain: a sha256 over its request and those of every job it refers to,
    /// directly or not ([`refs::link`]).
    #[serde(skip)]
    pub chain_fingerprint: Option<String>,
    /// For a job of a chain: the id of the chain's root, which places the whole chain in one
    /// `--shard`.
    #[serde(skip)]
    pub chain_root: Option<String>,
}

impl Job {
    /// The job's identity: sha256 hex of the canonical request JSON, covering the requests of
    /// the jobs it refers to (so editing shot 1 changes shot 2's fingerprint too).
    pub fn fingerprint(&self) -> String {
        self.chain_fingerprint
            .clone()
            .unwrap_or_else(|| job::fingerprint(&self.request))
    }

    /// The key that places the job in a `--shard`: its chain's root, else its own id.
    pub fn shard_key(&self) -> &str {
        self.chain_root.as_deref().unwrap_or(&self.id)
    }

    /// The video's path inside the output directory.
    pub fn output_file(&self) -> String {
        format!("videos/{}.mp4", self.name)
    }
}

/// Everything the manifests describe, validated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The jobs, in manifest order.
    pub jobs: Vec<Job>,
    /// The files read.
    pub sources: Vec<SourceFile>,
    /// Warnings (unknown models, ...).
    pub warnings: Vec<Diagnostic>,
    /// The merged `run:` sections (the first manifest setting a key wins).
    pub run: RunSection,
}

impl Plan {
    /// Sum of the estimates, or `None` if any job's estimate is unknown.
    pub fn total_tokens(&self) -> Option<u64> {
        self.jobs
            .iter()
            .try_fold(0u64, |acc, j| j.estimated_tokens.map(|t| acc.saturating_add(t)))
    }
}

/// The top-level keys of a YAML manifest (keys starting with `x-` are also allowed, to hold
/// anchors).
pub const TOP_KEYS: &[&str] = &["version", "defaults", "rows", "jobs", "run"];

/// Loads, expands and validates every manifest; all problems are reported at once.
pub fn load_plan(args: &ManifestArgs) -> Result<Plan, Diagnostics> {
    let mut ctx = Ctx::default();
    let cli = ctx.cli_defaults(args);
    let delimiter = ctx.delimiter(args);
    for path in &args.manifests {
        let file: Arc<str> = Arc::from(path.display().to_string());
        if !ctx.first_time(path, &file, SourceLocation::File { file: file.clone() }) {
            continue;
        }
        match kind_of(path) {
            Some(Kind::Yaml) => ctx.load_yaml(path, &file, &cli, delimiter, args.sheet.as_deref()),
            Some(Kind::Csv) => {
                if let Some(t) = ctx.read_csv(path, &file, delimiter) {
                    let base: Vec<(&str, &Node)> = cli.iter().map(|(k, n)| (k.as_str(), n)).collect();
                    ctx.rows(t, &base);
                }
            }
            Some(Kind::Sheet) => {
                ctx.hash_file(path);
                if let Some(t) = sheet::read_sheet(path, &file, args.sheet.as_deref(), &mut ctx.diags) {
                    let base: Vec<(&str, &Node)> = cli.iter().map(|(k, n)| (k.as_str(), n)).collect();
                    ctx.rows(t, &base);
                }
            }
            None => ctx.diags.push(Diagnostic::field_error(
                SourceLocation::File { file },
                "manifest",
                "an unknown file type",
                "a .yaml/.yml, .csv/.tsv/.txt, .xlsx/.xlsm/.xls or .ods file",
            )),
        }
    }
    if ctx.jobs.is_empty() && !ctx.diags.iter().any(Diagnostic::is_error) {
        let file = args
            .manifests
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        ctx.diags.push(Diagnostic::error(
            SourceLocation::File {
                file: Arc::from(file),
            },
            "the manifests describe no jobs (add `jobs:` or `rows:`)",
        ));
    }
    let ids = &ctx.ids;
    refs::link(&mut ctx.jobs, &|id| ids.contains_key(id), &mut ctx.diags);
    let mut d = Diagnostics::default();
    for x in ctx.diags {
        d.push(x);
    }
    d.finish();
    if d.has_errors() {
        return Err(d);
    }
    Ok(Plan {
        jobs: ctx.jobs,
        sources: ctx.sources,
        warnings: d.warnings,
        run: ctx.run,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Yaml,
    Csv,
    Sheet,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "yaml" | "yml" => Some(Kind::Yaml),
        "csv" | "tsv" | "txt" => Some(Kind::Csv),
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Some(Kind::Sheet),
        _ => None,
    }
}

/// Header text → job key: trimmed, lower-cased, spaces and dashes as underscores.
fn normalize_header(h: &str) -> String {
    h.trim().to_lowercase().replace([' ', '-'], "_")
}

/// Merges `over` onto `base`: a key in `over` replaces the same key in `base`.
fn merge<'a>(base: &[(&'a str, &'a Node)], over: &[(&'a str, &'a Node)]) -> Vec<(&'a str, &'a Node)> {
    let mut out: Vec<(&str, &Node)> = Vec::with_capacity(base.len() + over.len());
    out.extend_from_slice(base);
    for &(k, n) in over {
        match out.iter_mut().find(|(k2, _)| *k2 == k) {
            Some(slot) => slot.1 = n,
            None => out.push((k, n)),
        }
    }
    out
}

/// A fast non-cryptographic hasher (FxHash) for the id maps; ids are not attacker-chosen
/// across a network, and SipHash showed up in the 100,000-row benchmark.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Rows built per batch.
const ROW_BATCH: usize = 4096;

/// Which columns of a sheet are fields and which are variables.
struct Cols<'c> {
    fields: &'c [(usize, &'static str)],
    vars: &'c [usize],
}

/// One row built: its request, problems, variables and location.
struct RowOut<'t> {
    built: Built,
    diags: Vec<Diagnostic>,
    vars: Vars<'t>,
    loc: SourceLocation,
}

/// A time of day as a spreadsheet shows it (`16:09`, `4:09:00 PM`, `16:09:00`) as the ratio
/// it was typed as (`16:9`), if it is one.
pub fn time_as_ratio(s: &str) -> Option<String> {
    let t = s.trim();
    let (t, pm) = match t.len().checked_sub(2).map(|i| t.split_at(i)) {
        Some((a, b)) if b.eq_ignore_ascii_case("PM") => (a.trim_end(), Some(true)),
        Some((a, b)) if b.eq_ignore_ascii_case("AM") => (a.trim_end(), Some(false)),
        _ => (t, None),
    };
    let mut parts = t.split(':');
    let (h, m) = (parts.next()?, parts.next()?);
    let sec = parts.next();
    let digits = |x: &str, n: usize| !x.is_empty() && x.len() <= n && x.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !digits(h, 2) || !digits(m, 2) || sec.is_some_and(|x| x != "00") {
        return None;
    }
    let (mut h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    match pm {
        Some(true) if h < 12 => h += 12,
        Some(false) if h == 12 => h = 0,
        _ => {}
    }
    (h < 24 && m < 60).then(|| format!("{h}:{m}"))
}

/// A number that is a whole number of minutes of a day (`0.67291666666666666665`, as a CSV
/// export of bare numbers writes the time 16:09) as the time it is (`16:09`).
fn day_fraction_as_time(s: &str) -> Option<String> {
    let v: f64 = s.trim().parse().ok()?;
    let minutes = v * 1440.0;
    ((0.0..1.0).contains(&v) && (minutes - minutes.round()).abs() < 1e-6)
        .then(|| numfmt::show(v, "h:mm", true, false).text)
}

/// The `ratio` of a sheet cell: a cell the app turned into a time reads as the ratio typed,
/// whether shown as a time or written as a fraction of a day, with a warning saying how to
/// keep it a ratio.
fn ratio_cell(c: &str, was_time: bool, loc: &SourceLocation, diags: &mut Vec<Diagnostic>) -> String {
    let valid = rules::RATIOS.contains(&c.trim());
    if !was_time && valid {
        return c.to_string();
    }
    let fraction = day_fraction_as_time(c);
    let time = fraction.as_deref().unwrap_or(c);
    let Some(r) = time_as_ratio(time).filter(|r| rules::RATIOS.contains(&r.as_str())) else {
        return c.to_string();
    };
    let held = match &fraction {
        Some(t) => format!("`{}`, the time {t} as a fraction of a day", c.trim()),
        None => format!("the time `{}`", c.trim()),
    };
    diags.push(
        Diagnostic::warning(loc.clone(), format!("the cell holds {held}: read as the ratio {r}"))
            .with_help("the spreadsheet app turned the typed ratio into a time of day; format the ratio column as Text (or type '16:9) so it stays a ratio"),
    );
    r
}

/// Help for an id or file name that a template variable made unsafe by holding a date written
/// with `/` (`2024/03/15`, as Gnumeric's default CSV export writes a date).
fn slashed_date_help(tpl: &str, vars: &Vars) -> Option<String> {
    expand::variables(tpl).into_iter().find_map(|v| {
        let val = vars.get(&v)?.trim();
        let parts: Vec<&str> = val.split('/').collect();
        let date = parts.len() == 3
            && parts
                .iter()
                .all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        date.then(|| {
            format!(
                "the variable `{v}` holds the date `{val}`, written with `/`: format the {v} column as Text or as YYYY-MM-DD; \
                 an export that writes dates so (Gnumeric's default CSV export) also drops number formats (7 for 007, 0.125 for 12.50%): \
                 export the CSV with the cells as shown"
            )
        })
    })
}

/// The error of a header that names no job field (and that no default uses as a variable):
/// names the sheet read and the others, and a row below that looks like the header.
fn no_job_field(t: &sheet::Table) -> Diagnostic {
    let shown: Vec<String> = t
        .headers
        .iter()
        .filter(|h| !h.is_empty())
        .take(6)
        .map(|h| format!("`{}`", yaml::excerpt(h, 30)))
        .collect();
    let place = match &t.sheet {
        Some(s) => format!("row {} of sheet `{s}`", t.header_row),
        None => format!("row {}", t.header_row),
    };
    let mut help = Vec::new();
    let looks = (0..t.len().min(10)).find_map(|r| {
        let named: Vec<String> = (0..t.headers.len())
            .map(|c| t.cell(r, c).trim())
            .filter(|c| job::is_job_key(&normalize_header(c)))
            .map(str::to_string)
            .collect();
        (!named.is_empty()).then(|| (t.row_number(r), named))
    });
    if let Some((row, named)) = looks {
        help.push(format!(
            "row {row} looks like the header ({}): delete the rows above it, or start them with `#`",
            named.join(", ")
        ));
    }
    if let Some(s) = &t.sheet
        && t.sheets.len() > 1
    {
        let others: Vec<&str> = t
            .sheets
            .iter()
            .map(String::as_str)
            .filter(|o| *o != s.as_ref())
            .collect();
        help.push(format!(
            "sheet `{s}` was read; the workbook also has {}: choose one with `sheet:` under `rows:` or `--sheet`",
            others.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if help.is_empty() {
        help.push(
            "name the columns after job fields, e.g. `prompt`, `model`, `duration` (the header is the first row not starting with `#`)"
                .to_string(),
        );
    }
    Diagnostic::error(
        SourceLocation::Row {
            file: t.file.clone(),
            row: t.header_row,
            column: None,
        },
        format!(
            "the header ({place}: {}) names no job field",
            if shown.is_empty() {
                "empty".to_string()
            } else {
                shown.join(", ")
            }
        ),
    )
    .with_help(help.join("; "))
}

/// Builds the requests of some rows of a table (no shared state).
fn build_rows<'t>(
    t: &'t sheet::Table,
    rows: std::ops::Range<usize>,
    base: &[(&str, &Node)],
    cols: &Cols,
) -> Vec<RowOut<'t>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut nodes: Vec<(&'static str, Node)> = Vec::with_capacity(cols.fields.len());
    for r in rows {
        let loc = SourceLocation::Row {
            file: t.file.clone(),
            row: t.row_number(r),
            column: None,
        };
        nodes.clear();
        let mut diags = Vec::new();
        for &(i, k) in cols.fields {
            let c = t.cell(r, i);
            if !c.trim().is_empty() {
                let cell_loc = loc.with_column(&t.headers[i]);
                let info = t.info(r, i);
                let value = match (k, info) {
                    // a number field reads the number behind its format (`1,234,567` → 1234567)
                    ("duration" | "frames" | "seed" | "execution_expires_after" | "repeat", Some(x))
                        if x.raw.is_some() =>
                    {
                        x.raw.as_deref().unwrap_or(c).to_string()
                    }
                    ("ratio", _) => ratio_cell(c, info.is_some_and(|x| x.time), &cell_loc, &mut diags),
                    _ => c.to_string(),
                };
                nodes.push((
                    k,
                    Node {
                        value: Value::Str(value),
                        loc: cell_loc,
                    },
                ));
            }
        }
        let vars = Vars {
            pairs: cols
                .vars
                .iter()
                .map(|&i| (t.headers[i].as_ref(), Cow::Borrowed(t.cell(r, i))))
                .collect(),
        };
        let mut fields: Vec<(&str, &Node)> = Vec::with_capacity(base.len() + nodes.len());
        fields.extend_from_slice(base);
        for (k, n) in &nodes {
            match fields.iter_mut().find(|(k2, _)| k2 == k) {
                Some(slot) => slot.1 = n,
                None => fields.push((k, n)),
            }
        }
        let built = job::build(&fields, &vars, &loc, &mut diags);
        out.push(RowOut {
            built,
            diags,
            vars,
            loc,
        });
    }
    out
}

#[derive(Default)]
struct Ctx {
    diags: Vec<Diagnostic>,
    jobs: Vec<Job>,
    sources: Vec<SourceFile>,
    run: RunSection,
    /// id → (index in `seen`, whether the id was derived from the request).
    ids: FastMap<String, (usize, bool)>,
    /// lower-cased file name → index in `seen`.
    names: FastMap<String, usize>,
    /// Where each id was written, and the job's file name.
    seen: Vec<(SourceLocation, String)>,
    /// The files read (canonical path → as first named).
    given: HashMap<PathBuf, Arc<str>>,
}

impl Ctx {
    fn cli_defaults(&mut self, args: &ManifestArgs) -> Vec<(String, Node)> {
        let mut out: Vec<(String, Node)> = Vec::new();
        let mut put = |k: String, n: Node| match out.iter_mut().find(|(k2, _)| *k2 == k) {
            Some(slot) => slot.1 = n,
            None => out.push((k, n)),
        };
        for s in &args.set {
            let loc = SourceLocation::Arg {
                arg: Arc::from(format!("--set {s}")),
            };
            let Some((k, v)) = s.split_once('=') else {
                self.diags.push(Diagnostic::field_error(
                    loc,
                    "--set",
                    format!("`{s}`"),
                    "KEY=VALUE, e.g. duration=5",
                ));
                continue;
            };
            let k = k.trim();
            if !job::is_job_key(k) || matches!(k, "id" | "matrix") {
                let allowed = job::job_keys().filter(|k| !matches!(*k, "id" | "matrix"));
                self.diags.push(job::unknown_key(loc, k, "--set", allowed));
                continue;
            }
            put(
                k.to_string(),
                Node {
                    value: Value::Str(v.to_string()),
                    loc,
                },
            );
        }
        if let Some(m) = &args.model {
            let loc = SourceLocation::Arg {
                arg: Arc::from(format!("--model {m}")),
            };
            put(
                "model".into(),
                Node {
                    value: Value::Str(m.clone()),
                    loc,
                },
            );
        }
        out
    }

    /// Whether `path` is read for the first time; a file named twice (on the command line or
    /// in `rows:`) is read once, with a warning at `loc`.
    fn first_time(&mut self, path: &Path, file: &Arc<str>, loc: SourceLocation) -> bool {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        match self.given.entry(key) {
            Entry::Occupied(e) => {
                let how = if e.get() == file {
                    "the file is given twice".to_string()
                } else {
                    format!("the file is given twice (also as `{}`)", e.get())
                };
                self.diags.push(
                    Diagnostic::warning(loc, format!("{how}: its jobs are read once"))
                        .with_help("name each manifest and rows file once"),
                );
                false
            }
            Entry::Vacant(e) => {
                e.insert(file.clone());
                true
            }
        }
    }

    fn delimiter(&mut self, args: &ManifestArgs) -> Option<u8> {
        let d = args.delimiter.as_deref()?;
        let b = match d {
            "tab" | "\\t" | "\t" => Some(b'\t'),
            s if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" => s.bytes().next(),
            _ => None,
        };
        if b.is_none() {
            self.diags.push(Diagnostic::field_error(
                SourceLocation::Arg {
                    arg: Arc::from(format!("--delimiter {d}")),
                },
                "--delimiter",
                format!("`{d}`"),
                "one ASCII character such as `,` or `;`, or `tab`",
            ));
        }
        b
    }

    /// Reads a CSV once: hashes its bytes and parses them.
    fn read_csv(&mut self, path: &Path, file: &Arc<str>, delimiter: Option<u8>) -> Option<sheet::Table> {
        match std::fs::read(path) {
            Ok(bytes) => {
                self.add_source(path, &bytes);
                sheet::read_csv_bytes(&bytes, file, delimiter, &mut self.diags)
            }
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    SourceLocation::File { file: file.clone() },
                    format!("cannot read: {e}"),
                ));
                None
            }
        }
    }

    fn hash_file(&mut self, path: &Path) {
        if let Ok(bytes) = std::fs::read(path) {
            self.add_source(path, &bytes);
        }
    }

    fn add_source(&mut self, path: &Path, bytes: &[u8]) {
        let sha256 = crate::hex::hex(&Sha256::digest(bytes));
        self.sources.push(SourceFile {
            path: path.to_path_buf(),
            sha256,
        });
    }

    fn load_yaml(
        &mut self,
        path: &Path,
        file: &Arc<str>,
        cli: &[(String, Node)],
        delim: Option<u8>,
        sheet_arg: Option<&str>,
    ) {
        let text = match std::fs::read(path) {
            Ok(b) => {
                self.add_source(path, &b);
                match String::from_utf8(b) {
                    Ok(t) => t,
                    Err(_) => {
                        self.diags.push(Diagnostic::error(
                            SourceLocation::File { file: file.clone() },
                            "not valid UTF-8",
                        ));
                        return;
                    }
                }
            }
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    SourceLocation::File { file: file.clone() },
                    format!("cannot read: {e}"),
                ));
                return;
            }
        };
        let root = match yaml::parse(file, &text) {
            Ok(r) => r,
            Err(d) => {
                self.diags.push(*d);
                return;
            }
        };
        let Value::Map(top) = &root.value else {
            self.diags.push(Diagnostic::field_error(
                root.loc.clone(),
                "manifest",
                root.value.describe(),
                "a mapping with `jobs:` and/or `rows:` (and optional `version`, `defaults`, `run`)",
            ));
            return;
        };
        let (mut defaults, mut rows, mut jobs) = (None, None, None);
        for (k, v) in top {
            let key = k.value.scalar_text().unwrap_or_default();
            match key.as_str() {
                "version" => {
                    if v.value != Value::Int(1) && v.value != Value::Str("1".into()) {
                        self.diags.push(Diagnostic::field_error(
                            v.loc.clone(),
                            "version",
                            v.value.describe(),
                            "1",
                        ));
                    }
                }
                "defaults" => defaults = Some(v),
                "rows" => rows = Some(v),
                "jobs" => jobs = Some(v),
                "run" => {
                    let r = run::parse_run(v, &mut self.diags);
                    self.run.merge_from(r);
                }
                k2 if k2.starts_with("x-") => {}
                other => self.diags.push(job::unknown_key(
                    k.loc.clone(),
                    other,
                    "top-level",
                    TOP_KEYS.iter().copied(),
                )),
            }
        }
        // defaults < command line
        let mut base: Vec<(&str, &Node)> = Vec::new();
        if let Some(d) = defaults {
            match &d.value {
                Value::Map(entries) => {
                    for (k, v) in entries {
                        let Some(key) = self.job_key(k, "defaults") else {
                            continue;
                        };
                        if matches!(key, "id" | "matrix") {
                            self.diags.push(Diagnostic::field_error(
                                k.loc.clone(),
                                key,
                                "a key only a single job can have",
                                "job fields other than `id` and `matrix` in `defaults`",
                            ));
                            continue;
                        }
                        base.push((key, v));
                    }
                }
                Value::Null => {}
                other => self.diags.push(Diagnostic::field_error(
                    d.loc.clone(),
                    "defaults",
                    other.describe(),
                    "a mapping of job fields",
                )),
            }
        }
        let cli_pairs: Vec<(&str, &Node)> = cli.iter().map(|(k, n)| (k.as_str(), n)).collect();
        let base = merge(&base, &cli_pairs);
        if let Some(j) = jobs {
            match &j.value {
                Value::Seq(items) => {
                    for item in items {
                        self.yaml_job(item, &base);
                    }
                }
                Value::Null => {}
                other => self.diags.push(Diagnostic::field_error(
                    j.loc.clone(),
                    "jobs",
                    other.describe(),
                    "a list of jobs",
                )),
            }
        }
        if let Some(r) = rows {
            let entries: Vec<&Node> = match &r.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![r],
            };
            let dir = path.parent().unwrap_or(Path::new(""));
            for e in entries {
                self.rows_entry(e, dir, &base, delim, sheet_arg);
            }
        }
    }

    /// The job key named by `k`, or `None` after reporting an unknown key.
    fn job_key(&mut self, k: &Node, what: &str) -> Option<&'static str> {
        let key = k.value.scalar_text().unwrap_or_default();
        match job::job_keys().find(|j| *j == key) {
            Some(j) => Some(j),
            None => {
                self.diags
                    .push(job::unknown_key(k.loc.clone(), &key, what, job::job_keys()));
                None
            }
        }
    }

    fn rows_entry(
        &mut self,
        e: &Node,
        dir: &Path,
        base: &[(&str, &Node)],
        delim: Option<u8>,
        sheet_arg: Option<&str>,
    ) {
        let (mut p, mut sheet, mut d) = (None, sheet_arg.map(str::to_string), delim);
        match &e.value {
            Value::Str(s) => p = Some(s.clone()),
            Value::Map(m) => {
                for (k, v) in m {
                    match k.value.scalar_text().as_deref() {
                        Some("path") => p = v.value.scalar_text(),
                        Some("sheet") => sheet = v.value.scalar_text(),
                        Some("delimiter") => {
                            let t = v.value.scalar_text().unwrap_or_default();
                            d = match t.as_str() {
                                "tab" | "\t" | "\\t" => Some(b'\t'),
                                s if s.len() == 1 => s.bytes().next(),
                                _ => {
                                    self.diags.push(Diagnostic::field_error(
                                        v.loc.clone(),
                                        "rows.delimiter",
                                        v.value.describe(),
                                        "one character such as `,` or `;`, or `tab`",
                                    ));
                                    None
                                }
                            }
                        }
                        other => self.diags.push(job::unknown_key(
                            k.loc.clone(),
                            other.unwrap_or("?"),
                            "rows",
                            ["path", "sheet", "delimiter"],
                        )),
                    }
                }
            }
            other => {
                self.diags.push(Diagnostic::field_error(
                    e.loc.clone(),
                    "rows",
                    other.describe(),
                    "a file path, or {path, sheet, delimiter}",
                ));
                return;
            }
        }
        let Some(p) = p.filter(|p| !p.trim().is_empty()) else {
            self.diags.push(Diagnostic::field_error(
                e.loc.clone(),
                "rows",
                "no path",
                "the path of a CSV/XLSX/ODS file",
            ));
            return;
        };
        let full = dir.join(&p);
        let file: Arc<str> = Arc::from(full.display().to_string());
        if !self.first_time(&full, &file, e.loc.clone()) {
            return;
        }
        if !full.exists() {
            self.diags.push(Diagnostic::field_error(
                e.loc.clone(),
                "rows",
                format!("`{p}`, which does not exist (looked for `{}`)", full.display()),
                "a CSV/XLSX/ODS file; a relative path is taken from the manifest's folder",
            ));
            return;
        }
        let table = match kind_of(&full) {
            Some(Kind::Csv) => self.read_csv(&full, &file, d),
            Some(Kind::Sheet) => {
                self.hash_file(&full);
                sheet::read_sheet(&full, &file, sheet.as_deref(), &mut self.diags)
            }
            _ => {
                self.diags.push(Diagnostic::field_error(
                    e.loc.clone(),
                    "rows",
                    format!("`{p}`"),
                    "a .csv/.tsv/.txt, .xlsx/.xls or .ods file",
                ));
                None
            }
        };
        if let Some(t) = table {
            self.rows(t, base);
        }
    }

    fn yaml_job(&mut self, item: &Node, base: &[(&str, &Node)]) {
        let Value::Map(entries) = &item.value else {
            self.diags.push(Diagnostic::field_error(
                item.loc.clone(),
                "jobs[]",
                item.value.describe(),
                "a mapping of job fields",
            ));
            return;
        };
        let mut own: Vec<(&str, &Node)> = Vec::with_capacity(entries.len());
        let mut matrix = None;
        for (k, v) in entries {
            let Some(key) = self.job_key(k, "job") else {
                continue;
            };
            if key == "matrix" {
                matrix = Some(v);
            } else {
                own.push((key, v));
            }
        }
        let fields = merge(base, &own);
        let Some(m) = matrix else {
            self.build_and_emit(&fields, &Vars::default(), &item.loc);
            return;
        };
        let Value::Map(axes) = &m.value else {
            self.diags.push(Diagnostic::field_error(
                m.loc.clone(),
                "matrix",
                m.value.describe(),
                "a mapping of variable → list of values, e.g. {animal: [fox, owl]}",
            ));
            return;
        };
        let mut names: Vec<String> = Vec::new();
        let mut values: Vec<Vec<&Node>> = Vec::new();
        for (k, v) in axes {
            let name = k.value.scalar_text().unwrap_or_default();
            let vals: Vec<&Node> = match &v.value {
                Value::Seq(items) => items.iter().collect(),
                Value::Map(_) | Value::Null => Vec::new(),
                _ => vec![v],
            };
            let bad = vals.is_empty() || vals.iter().any(|n| n.value.scalar_text().is_none());
            if bad {
                self.diags.push(Diagnostic::field_error(
                    v.loc.clone(),
                    format!("matrix.{name}"),
                    v.value.describe(),
                    "a non-empty list of scalar values",
                ));
                return;
            }
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c)) {
                self.diags.push(Diagnostic::field_error(
                    k.loc.clone(),
                    "matrix",
                    format!("variable name `{name}`"),
                    "letters, digits, `_`, `-` or `.`",
                ));
                return;
            }
            names.push(name);
            values.push(vals);
        }
        let Some(combos) = expand::cartesian(&values.iter().map(Vec::len).collect::<Vec<_>>()) else {
            self.diags.push(Diagnostic::field_error(
                m.loc.clone(),
                "matrix",
                "too many combinations",
                format!("at most {} jobs per matrix", expand::MAX_MATRIX),
            ));
            return;
        };
        for combo in combos {
            let mut vars = Vars::default();
            let mut over: Vec<(&str, &Node)> = Vec::new();
            for (i, &vi) in combo.iter().enumerate() {
                let node = values[i][vi];
                vars.pairs.push((
                    names[i].as_str(),
                    Cow::Owned(node.value.scalar_text().unwrap_or_default()),
                ));
                if let Some(key) = job::job_keys().find(|k| *k == names[i])
                    && !matches!(key, "matrix" | "id" | "name" | "repeat")
                {
                    over.push((key, node));
                }
            }
            let f = merge(&fields, &over);
            self.build_and_emit(&f, &vars, &item.loc);
        }
    }

    fn rows(&mut self, t: sheet::Table, base: &[(&str, &Node)]) {
        // column index → job key, or variable
        let mut field_cols: Vec<(usize, &'static str)> = Vec::new();
        let mut var_cols: Vec<usize> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let header_loc = |c: &Arc<str>| SourceLocation::Row {
            file: t.file.clone(),
            row: t.header_row,
            column: Some(c.clone()),
        };
        let used_in_defaults: Vec<String> = base
            .iter()
            .filter_map(|(_, n)| match &n.value {
                Value::Str(s) => Some(expand::variables(s)),
                _ => None,
            })
            .flatten()
            .collect();
        let names_a_field = t.headers.iter().any(|h| job::is_job_key(&normalize_header(h)));
        let feeds_defaults = t
            .headers
            .iter()
            .any(|h| used_in_defaults.iter().any(|u| u == h.as_ref()));
        if !names_a_field && !feeds_defaults {
            self.diags.push(no_job_field(&t));
            return;
        }
        for (i, h) in t.headers.iter().enumerate() {
            if h.is_empty() {
                continue;
            }
            let norm = normalize_header(h);
            if let Some(prev) = seen.insert(norm.clone(), i) {
                self.diags.push(Diagnostic::field_error(
                    header_loc(h),
                    norm.clone(),
                    format!("a second column `{h}` (column {} and {})", prev + 1, i + 1),
                    "one column per field or variable",
                ));
                continue;
            }
            match job::job_keys().find(|k| *k == norm) {
                Some("matrix") => self.diags.push(Diagnostic::field_error(
                    header_loc(h),
                    "matrix",
                    "a `matrix` column",
                    "one job per row (use a YAML manifest for `matrix`)",
                )),
                Some(k) => field_cols.push((i, k)),
                None => {
                    if !used_in_defaults.iter().any(|u| u == h.as_ref())
                        && let Some(s) = job::suggest(&norm, job::job_keys())
                    {
                        self.diags.push(
                            Diagnostic {
                                field: Some(h.to_string()),
                                ..Diagnostic::error(header_loc(h), format!("unknown column `{h}`"))
                            }
                            .with_help(format!(
                                "did you mean `{s}`? (a column that names no field is a template variable, and no template uses `{{{h}}}`)"
                            )),
                        );
                    }
                    var_cols.push(i);
                }
            }
        }
        self.jobs.reserve(t.len());
        self.ids.reserve(t.len());
        self.names.reserve(t.len());
        // Build the rows' requests in batches, then check ids and add jobs in row order. (One
        // thread: with glibc's allocator, building on several threads cost more CPU than it
        // saved on this 2-core machine.)
        let cols = Cols {
            fields: &field_cols,
            vars: &var_cols,
        };
        let n = t.len();
        let mut start = 0;
        while start < n {
            let end = (start + ROW_BATCH).min(n);
            for out in build_rows(&t, start..end, base, &cols) {
                self.diags.extend(out.diags);
                self.emit(out.built, &out.vars, &out.loc);
            }
            start = end;
        }
    }

    fn build_and_emit(&mut self, fields: &[(&str, &Node)], vars: &Vars, loc: &SourceLocation) {
        let b = job::build(fields, vars, loc, &mut self.diags);
        self.emit(b, vars, loc);
    }

    fn emit(&mut self, mut b: Built, vars: &Vars, loc: &SourceLocation) {
        let fp = if b.id.is_none() {
            job::fingerprint(&b.request)
        } else {
            String::new()
        };
        let est = estimate::estimate_tokens(&b.request);
        for k in 1..=b.repeat {
            let suffix = if b.repeat > 1 {
                format!("-{k}")
            } else {
                String::new()
            };
            let (id, derived, id_loc) = match &b.id {
                Some((tpl, iloc)) => {
                    let Some(r) = job::render_field(tpl, "id", iloc, vars, &mut self.diags) else {
                        return;
                    };
                    (r + &suffix, false, iloc)
                }
                None => (format!("j-{}{suffix}", &fp[..12]), true, loc),
            };
            if let Err(exp) = expand::check_safe_name(&id) {
                let why = expand::why_unsafe(&id).unwrap_or_default();
                let d = Diagnostic::field_error(
                    id_loc.clone(),
                    "id",
                    format!("`{}` ({why} is not allowed)", yaml::excerpt(&id, 60)),
                    exp,
                );
                let help = b.id.as_ref().and_then(|(tpl, _)| slashed_date_help(tpl, vars));
                self.diags.push(match help {
                    Some(h) => d.with_help(h),
                    None => d,
                });
                return;
            }
            let name = match &b.name {
                Some((tpl, nloc)) => {
                    let mut v = vars.clone();
                    v.pairs.push(("id", Cow::Borrowed(id.as_str())));
                    let Some(r) = job::render_field(tpl, "name", nloc, &v, &mut self.diags) else {
                        return;
                    };
                    let uses_id = expand::variables(tpl).iter().any(|x| x == "id");
                    let n = if uses_id { r } else { r + &suffix };
                    if let Err(exp) = expand::check_safe_name(&n) {
                        let why = expand::why_unsafe(&n).unwrap_or_default();
                        let d = Diagnostic::field_error(
                            nloc.clone(),
                            "name",
                            format!("`{}` ({why} is not allowed)", yaml::excerpt(&n, 60)),
                            exp,
                        );
                        self.diags.push(match slashed_date_help(tpl, &v) {
                            Some(h) => d.with_help(h),
                            None => d,
                        });
                        return;
                    }
                    n
                }
                None => id.clone(),
            };
            if derived && !b.ok {
                // a request with errors is incomplete: its derived id would only make
                // misleading duplicates
                continue;
            }
            let slot = self.seen.len();
            match self.ids.entry(id.clone()) {
                Entry::Occupied(e) => {
                    let (prev, prev_derived) = *e.get();
                    let d = Diagnostic::field_error(
                        id_loc.clone(),
                        "id",
                        format!("duplicate id `{id}`, also at {}", self.seen[prev].0),
                        "ids unique after expansion",
                    );
                    self.diags.push(if derived && prev_derived {
                        d.with_help("these jobs are identical; use `repeat: N` for several takes of one job")
                    } else {
                        d
                    });
                    continue;
                }
                Entry::Vacant(e) => {
                    e.insert((slot, derived));
                }
            }
            let lower = if name.chars().any(char::is_uppercase) {
                name.to_lowercase()
            } else {
                name.clone()
            };
            match self.names.entry(lower) {
                Entry::Occupied(e) => {
                    let (prev_loc, prev_name) = &self.seen[*e.get()];
                    self.diags.push(Diagnostic::field_error(
                        b.name
                            .as_ref()
                            .map(|(_, l)| l.clone())
                            .unwrap_or_else(|| id_loc.clone()),
                        "name",
                        format!("file name `{name}` already used by the job at {prev_loc} (`{prev_name}`)"),
                        "file names unique (ignoring case)",
                    ));
                    self.seen.push((id_loc.clone(), name));
                    continue;
                }
                Entry::Vacant(e) => {
                    e.insert(slot);
                }
            }
            self.seen.push((id_loc.clone(), name.clone()));
            if !b.ok {
                continue;
            }
            let request = if k == b.repeat {
                std::mem::take(&mut b.request)
            } else {
                b.request.clone()
            };
            self.jobs.push(Job {
                id,
                name,
                request,
                source: loc.clone(),
                estimated_tokens: est,
                upstream: Vec::new(),
                content_locs: b.content_locs.clone(),
                chain_fingerprint: None,
                chain_root: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_written_as_a_fraction_of_a_day_is_that_time() {
        assert_eq!(
            day_fraction_as_time("0.67291666666666666665").as_deref(),
            Some("16:09")
        );
        assert_eq!(day_fraction_as_time("0.16875").as_deref(), Some("4:03"));
        assert_eq!(day_fraction_as_time("0.5").as_deref(), Some("12:00"));
        // not a whole number of minutes, not within a day, not a number
        assert_eq!(day_fraction_as_time("0.672"), None);
        assert_eq!(day_fraction_as_time("1"), None);
        assert_eq!(day_fraction_as_time("16:9"), None);
        assert_eq!(
            time_as_ratio(&day_fraction_as_time("0.16875").unwrap_or_default()).as_deref(),
            Some("4:3")
        );
    }
}
