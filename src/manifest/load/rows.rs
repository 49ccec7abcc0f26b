//! Sheets and CSV files as rows of jobs: reading the table, matching its header to fields, and
//! building each row's job; the main function here is [`Loader::rows`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::manifest::cells::ratio_cell;
use crate::manifest::diag::{Diagnostic, SourceLocation};
use crate::manifest::fields;
use crate::manifest::job::{self, Built, Vars};
use crate::manifest::yaml::{self, Node, Value};
use crate::manifest::{Inputs, expand, sheet};

use super::{FileKind, Loader, file_kind};

/// Header text → job key: trimmed, lower-cased, spaces and dashes as underscores.
fn normalize_header(h: &str) -> String {
    h.trim().to_lowercase().replace([' ', '-'], "_")
}

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
            .filter(|c| fields::is_job_key(&normalize_header(c)))
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

impl Loader {
    pub(super) fn delimiter(&mut self, args: &Inputs) -> Option<u8> {
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
    pub(super) fn read_csv(
        &mut self,
        path: &Path,
        file: &Arc<str>,
        delimiter: Option<u8>,
    ) -> Option<sheet::Table> {
        let bytes = self.read_file(path, file)?;
        sheet::read_csv_bytes(&bytes, file, delimiter, &mut self.diags)
    }

    pub(super) fn rows_entry(
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
                        other => self.diags.push(fields::unknown_key(
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
        let table = match file_kind(&full) {
            Some(FileKind::Csv) => self.read_csv(&full, &file, d),
            Some(FileKind::Sheet) => self
                .read_file(&full, &file)
                .and_then(|_| sheet::read_sheet(&full, &file, sheet.as_deref(), &mut self.diags)),
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

    pub(super) fn rows(&mut self, t: sheet::Table, base: &[(&str, &Node)]) {
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
        let names_a_field = t.headers.iter().any(|h| fields::is_job_key(&normalize_header(h)));
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
            match fields::job_keys().find(|k| *k == norm) {
                Some("matrix") => self.diags.push(Diagnostic::field_error(
                    header_loc(h),
                    "matrix",
                    "a `matrix` column",
                    "one job per row (use a YAML manifest for `matrix`)",
                )),
                Some(k) => field_cols.push((i, k)),
                None => {
                    if !used_in_defaults.iter().any(|u| u == h.as_ref())
                        && let Some(s) = fields::suggest(&norm, fields::job_keys())
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
}
