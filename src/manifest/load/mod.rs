//! The loader: [`load_plan`] reads every manifest and sheet into one [`Plan`](super::Plan), or
//! every problem at once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::manifest::canonical;
use crate::manifest::cells::slashed_date_help;
use crate::manifest::diag::{Diagnostic, Diagnostics, SourceLocation};
use crate::manifest::fields;
use crate::manifest::job::{self, Built, Vars};
use crate::manifest::types::{Job, Plan, SourceFile, TOP_KEYS};
use crate::manifest::yaml::{self, Node, Value};
use crate::manifest::{Inputs, RunSection, estimate, expand, refs, run, sheet};

/// How to save a YAML manifest that is not UTF-8.
const SAVE_YAML_AS_UTF8: &str = "save it as UTF-8 in your editor (the encoding is usually offered \
     in its Save As dialog or status bar)";

/// The id maps' hasher: ids are not chosen by a remote party, and SipHash showed up in the
/// 100,000-row benchmark.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

mod rows;

/// Loads, expands and validates every manifest; all problems are reported at once.
pub fn load_plan(args: &Inputs) -> Result<Plan, Diagnostics> {
    let mut ctx = Loader::default();
    let cli = ctx.cli_defaults(args);
    let delimiter = ctx.delimiter(args);
    for path in &args.manifests {
        let file: Arc<str> = Arc::from(path.display().to_string());
        if !ctx.first_time(path, &file, SourceLocation::File { file: file.clone() }) {
            continue;
        }
        match file_kind(path) {
            Some(FileKind::Yaml) => ctx.load_yaml(path, &file, &cli, delimiter, args.sheet.as_deref()),
            Some(FileKind::Csv) => {
                if let Some(t) = ctx.read_csv(path, &file, delimiter) {
                    let base: Vec<(&str, &Node)> = cli.iter().map(|(k, n)| (k.as_str(), n)).collect();
                    ctx.rows(t, &base);
                }
            }
            Some(FileKind::Sheet) => {
                if ctx.read_file(path, &file).is_some()
                    && let Some(t) = sheet::read_sheet(path, &file, args.sheet.as_deref(), &mut ctx.diags)
                {
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
enum FileKind {
    Yaml,
    Csv,
    Sheet,
}

fn file_kind(path: &Path) -> Option<FileKind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "yaml" | "yml" => Some(FileKind::Yaml),
        "csv" | "tsv" | "txt" => Some(FileKind::Csv),
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Some(FileKind::Sheet),
        _ => None,
    }
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

#[derive(Default)]
struct Loader {
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

impl Loader {
    fn cli_defaults(&mut self, args: &Inputs) -> Vec<(String, Node)> {
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
            if !fields::is_job_key(k) || matches!(k, "id" | "matrix") {
                let allowed = fields::job_keys().filter(|k| !matches!(*k, "id" | "matrix"));
                self.diags.push(fields::unknown_key(loc, k, "--set", allowed));
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

    /// The bytes of a manifest file, its hash recorded among the plan's sources; `None` after
    /// reporting why it cannot be read.
    fn read_file(&mut self, path: &Path, file: &Arc<str>) -> Option<Vec<u8>> {
        match sheet::read_manifest_file(path, file, sheet::MAX_MANIFEST_BYTES) {
            Ok(bytes) => {
                self.add_source(path, &bytes);
                Some(bytes)
            }
            Err(d) => {
                self.diags.push(*d);
                None
            }
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
        let Some(bytes) = self.read_file(path, file) else {
            return;
        };
        let Some(text) = sheet::decode(&bytes, file, SAVE_YAML_AS_UTF8, &mut self.diags) else {
            return;
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
                other => self.diags.push(fields::unknown_key(
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
        match fields::job_keys().find(|j| *j == key) {
            Some(j) => Some(j),
            None => {
                self.diags
                    .push(fields::unknown_key(k.loc.clone(), &key, what, fields::job_keys()));
                None
            }
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
                if let Some(key) = fields::job_keys().find(|k| *k == names[i])
                    && !matches!(key, "matrix" | "id" | "name" | "repeat")
                {
                    over.push((key, node));
                }
            }
            let f = merge(&fields, &over);
            self.build_and_emit(&f, &vars, &item.loc);
        }
    }

    fn build_and_emit(&mut self, fields: &[(&str, &Node)], vars: &Vars, loc: &SourceLocation) {
        let b = job::build(fields, vars, loc, &mut self.diags);
        self.emit(b, vars, loc);
    }

    fn emit(&mut self, mut b: Built, vars: &Vars, loc: &SourceLocation) {
        let fp = if b.id.is_none() {
            canonical::fingerprint(&b.request)
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
