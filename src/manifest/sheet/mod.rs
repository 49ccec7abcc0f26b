//! The sheet readers: CSV (any of `,` `;` tab, UTF-8 with or without BOM, UTF-16 with a BOM,
//! CRLF, quoted cells), XLSX/XLS through calamine with each cell shown in its number format,
//! and ODS ([`super::ods`]), into a [`Table`] of cells as the sheet shows them, with spreadsheet
//! row numbers.

mod workbook;

pub use workbook::read_sheet;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use super::{numfmt, ods};
use crate::manifest::diag::{Diagnostic, SourceLocation};
use crate::manifest::grid::{self, Merge};

/// Picks the delimiter of a CSV from its first line: the most frequent of `,` `;` and tab
/// outside quotes (`,` on a tie or when none is present).
pub fn detect_delimiter(data: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in data {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let cands = [b',', b';', b'\t'];
    let mut best = 0;
    for (i, n) in counts.iter().enumerate() {
        if *n > counts[best] {
            best = i;
        }
    }
    cands[best]
}

fn file_loc(file: &Arc<str>) -> SourceLocation {
    SourceLocation::File { file: file.clone() }
}

fn row_loc(file: &Arc<str>, row: u32) -> SourceLocation {
    SourceLocation::Row {
        file: file.clone(),
        row,
        column: None,
    }
}

/// What a sheet cell holds beyond its shown text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellInfo {
    /// The number behind a formatted number (`7` behind `007`, `1234567` behind `1,234,567`).
    pub raw: Option<Box<str>>,
    /// The cell held a time of day.
    pub time: bool,
}

/// A sheet read into memory: the header and the data rows (skipped rows left out), every
/// cell's shown text in one buffer, and what is known beyond the text for the few cells where
/// it matters.
#[derive(Debug, Clone)]
pub struct Table {
    /// The file as displayed in messages.
    pub file: Arc<str>,
    /// The sheet read, for a workbook.
    pub sheet: Option<Arc<str>>,
    /// Every sheet of the workbook, in order (empty for a CSV).
    pub sheets: Vec<String>,
    /// The header cells, trimmed.
    pub headers: Vec<Arc<str>>,
    /// The header's row number.
    pub header_row: u32,
    data: String,
    /// Byte ranges into `data`, `headers.len()` per row.
    cells: Vec<(u32, u32)>,
    /// Row numbers (as a spreadsheet numbers them) of the data rows.
    rows: Vec<u32>,
    /// Cell index (row * headers + column) → what it holds beyond its text, sorted.
    info: Vec<(usize, CellInfo)>,
}

impl Table {
    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no data row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The spreadsheet row number of data row `r`.
    pub fn row_number(&self, r: usize) -> u32 {
        self.rows.get(r).copied().unwrap_or(0)
    }

    /// The text of data row `r`, column `c` (empty past the end).
    pub fn cell(&self, r: usize, c: usize) -> &str {
        let n = self.headers.len();
        match self.cells.get(r * n + c) {
            Some(&(a, b)) if c < n => self.data.get(a as usize..b as usize).unwrap_or(""),
            _ => "",
        }
    }

    /// What data row `r`, column `c` holds beyond its text, if anything.
    pub fn info(&self, r: usize, c: usize) -> Option<&CellInfo> {
        if self.info.is_empty() || c >= self.headers.len() {
            return None;
        }
        let k = r * self.headers.len() + c;
        self.info
            .binary_search_by_key(&k, |(i, _)| *i)
            .ok()
            .and_then(|i| self.info.get(i))
            .map(|(_, x)| x)
    }
}

/// Whether a row is a comment: its first cell's text starts with `#` (a formula error such as
/// `#N/A` is not a comment).
fn is_comment(first: &str) -> bool {
    let t = first.trim_start();
    t.starts_with('#') && !grid::is_error_text(t)
}

/// One row handed to the [`Builder`]: the cells' text as ranges into `text`, what some cells
/// hold beyond it, and the formula errors shown (column, error, cell name).
#[derive(Default)]
struct RowIn {
    text: String,
    ranges: Vec<std::ops::Range<usize>>,
    info: Vec<(usize, CellInfo)>,
    errors: Vec<(usize, String, String)>,
}

impl RowIn {
    fn clear(&mut self) {
        self.text.clear();
        self.ranges.clear();
        self.info.clear();
        self.errors.clear();
    }

    fn cell(&self, i: usize) -> &str {
        self.ranges
            .get(i)
            .and_then(|r| self.text.get(r.clone()))
            .unwrap_or("")
    }
}

/// The columns a merged range across columns covers, as a message names them (`` `model` and
/// `prompt` ``), when it covers a named column besides its first: its one value would be read
/// for the first column only. `None` when the columns after the first have no header (a wide
/// cell, such as a prompt spread over empty columns).
fn merged_fields(headers: &[Arc<str>], m: &Merge) -> Option<String> {
    let named = |c: u32| headers.get(c as usize).filter(|h| !h.is_empty());
    if !(m.first.1 + 1..=m.last.1).any(|c| named(c).is_some()) {
        return None;
    }
    let mut cols: Vec<String> = (m.first.1..=m.last.1)
        .map(|c| match named(c) {
            Some(h) => format!("`{h}`"),
            None => format!("column {} (no header)", grid::column_name(c)),
        })
        .collect();
    let last = cols.pop().unwrap_or_default();
    Some(format!("{} and {last}", cols.join(", ")))
}

/// Collects rows into a [`Table`]: the first non-skipped row is the header. A row is skipped
/// when it is a comment or all of its cells are blank.
struct Builder {
    file: Arc<str>,
    /// The sheet, for messages about cells.
    sheet: Option<Arc<str>>,
    /// The delimiter of a CSV, for the hint about ragged rows.
    delimiter: Option<u8>,
    /// The sheet's ranges merged across columns, each with whether it was reported.
    across: Vec<(Merge, bool)>,
    table: Option<Table>,
    /// Rows not read for a formula error.
    error_rows: u32,
    too_big: bool,
}

impl Builder {
    fn new(file: &Arc<str>, sheet: Option<Arc<str>>, delimiter: Option<u8>) -> Builder {
        Builder {
            file: file.clone(),
            sheet,
            delimiter,
            across: Vec::new(),
            table: None,
            error_rows: 0,
            too_big: false,
        }
    }

    /// The same builder, checking the data rows against the sheet's merged ranges.
    fn with_merges(mut self, merges: &[Merge]) -> Builder {
        self.across = merges
            .iter()
            .filter(|m| m.is_across())
            .map(|m| (*m, false))
            .collect();
        self
    }

    /// Whether data row `row` (1-based) lies in a range merged across a field and another
    /// column, whose value cannot be read for both; the range is reported the first time.
    fn in_merge_across(&mut self, row: u32, r: &RowIn, diags: &mut Vec<Diagnostic>) -> bool {
        let Some(t) = &self.table else {
            return false;
        };
        let r0 = row.saturating_sub(1);
        let found = self.across.iter_mut().find_map(|(m, reported)| {
            let value = r.cell(m.first.1 as usize).trim();
            if !m.covers_row(r0) || value.is_empty() {
                return None;
            }
            merged_fields(&t.headers, m).map(|cols| (*m, reported, cols, value))
        });
        let Some((m, reported, cols, value)) = found else {
            return false;
        };
        if std::mem::replace(reported, true) {
            return true;
        }
        let first = t.headers.get(m.first.1 as usize).filter(|h| !h.is_empty());
        let (loc, read_for) = match first {
            Some(h) => (row_loc(&self.file, row).with_column(h), format!("`{h}`")),
            None => (
                row_loc(&self.file, row),
                format!("column {}", grid::column_name(m.first.1)),
            ),
        };
        let place = match &self.sheet {
            Some(s) => format!("cells {} of sheet `{s}`", m.name()),
            None => format!("cells {}", m.name()),
        };
        let rows = if m.last.0 > m.first.0 {
            format!("rows {}–{} are", m.first.0 + 1, m.last.0 + 1)
        } else {
            format!("row {} is", m.first.0 + 1)
        };
        diags.push(
            Diagnostic::error(
                loc,
                format!(
                    "{place} are merged into one cell across {cols}: its value `{}` would be read for {read_for} only",
                    super::yaml::excerpt(value, 40)
                ),
            )
            .with_help(format!(
                "unmerge {} and type each field's value in its own cell (a cell merged over columns with no header, such as a wide prompt, is fine); {rows} not read",
                m.name()
            )),
        );
        true
    }

    /// Adds one row.
    fn push(&mut self, row: u32, r: &RowIn, diags: &mut Vec<Diagnostic>) {
        let n_in = r.ranges.len();
        if (r.errors.is_empty() && is_comment(r.cell(0))) || (0..n_in).all(|i| r.cell(i).trim().is_empty()) {
            return;
        }
        if !r.errors.is_empty() {
            self.error_rows += 1;
            for (col, err, name) in &r.errors {
                let header = self
                    .table
                    .as_ref()
                    .and_then(|t| t.headers.get(*col))
                    .filter(|h| !h.is_empty());
                let loc = match header {
                    Some(h) => row_loc(&self.file, row).with_column(h),
                    None => row_loc(&self.file, row),
                };
                let place = match &self.sheet {
                    Some(s) => format!("cell {name} of sheet `{s}`"),
                    None => format!("cell {name}"),
                };
                let how = if self.sheet.is_some() {
                    "the formula cannot be computed: fix it, or type the value; the row is not read"
                } else {
                    "the sheet was exported with the formula's error instead of a value: fix the formula and export again; the row is not read"
                };
                diags.push(
                    Diagnostic::error(loc, format!("{place} shows the formula error {err}")).with_help(how),
                );
            }
            return;
        }
        if self.table.is_none() {
            self.table = Some(Table {
                file: self.file.clone(),
                sheet: self.sheet.clone(),
                sheets: Vec::new(),
                headers: (0..n_in).map(|i| Arc::from(r.cell(i).trim())).collect(),
                header_row: row,
                data: String::new(),
                cells: Vec::new(),
                rows: Vec::new(),
                info: Vec::new(),
            });
            return;
        }
        if self.in_merge_across(row, r, diags) {
            return;
        }
        let Some(t) = &mut self.table else {
            return;
        };
        let n = t.headers.len();
        if n_in > n && (n..n_in).any(|i| !r.cell(i).trim().is_empty()) {
            let d = Diagnostic::field_error(
                row_loc(&self.file, row),
                "row",
                format!("{n_in} cells"),
                format!("at most {n} cells, as many as header columns"),
            );
            diags.push(match self.delimiter {
                Some(b) => {
                    let c = if b == b'\t' { "tab".to_string() } else { format!("`{}`", b as char) };
                    d.with_help(format!(
                        "a cell holding a {c} must be in double quotes (\"A fox, at dawn\"); or the header lacks a column"
                    ))
                }
                None => d.with_help("the header lacks a column: name every column that holds values"),
            });
            return;
        }
        let first = t.cells.len();
        for i in 0..n {
            let a = t.data.len();
            t.data.push_str(r.cell(i));
            match (u32::try_from(a), u32::try_from(t.data.len())) {
                (Ok(a), Ok(b)) => t.cells.push((a, b)),
                _ => {
                    if !self.too_big {
                        self.too_big = true;
                        diags.push(Diagnostic::error(
                            file_loc(&self.file),
                            "the sheet holds more than 4 GB of text",
                        ));
                    }
                    return;
                }
            }
        }
        for (c, x) in &r.info {
            if *c < n {
                t.info.push((first + c, x.clone()));
            }
        }
        t.rows.push(row);
    }

    fn finish(self, diags: &mut Vec<Diagnostic>) -> Option<Table> {
        if self.too_big {
            return None;
        }
        if self.table.is_none() {
            let sheet = match &self.sheet {
                Some(s) => format!("sheet `{s}`"),
                None => "the sheet".to_string(),
            };
            diags.push(if self.error_rows > 0 {
                Diagnostic::error(
                    file_loc(&self.file),
                    format!("no header row: each row of {sheet} that holds values shows a formula error"),
                )
                .with_help("fix the formulas named above; the first row without one is the header")
            } else {
                Diagnostic::error(file_loc(&self.file), format!("no header row: {sheet} is empty"))
            });
        }
        self.table
    }
}

/// The most bytes vidbatch reads of one manifest file (YAML, CSV, a workbook): as much as one
/// sheet of a workbook may unpack to ([`grid::MAX_PART_BYTES`]), far more than a million rows
/// take, and a bound on what a path to an endless source (`/dev/zero`) can make vidbatch hold.
pub const MAX_MANIFEST_BYTES: u64 = grid::MAX_PART_BYTES;

/// The bytes of the manifest file at `path` (named `file` in messages), or the error of a file
/// that cannot be read or holds more than `limit` bytes; one larger than `limit` on disk is
/// refused unread.
pub fn read_manifest_file(path: &Path, file: &Arc<str>, limit: u64) -> Result<Vec<u8>, Box<Diagnostic>> {
    use std::io::Read;
    let cannot_read =
        |e: std::io::Error| Box::new(Diagnostic::error(file_loc(file), format!("cannot read: {e}")));
    let too_large = || {
        Box::new(
            Diagnostic::error(
                file_loc(file),
                format!(
                    "the file holds more than {} MB, the most vidbatch reads of one manifest",
                    limit / (1024 * 1024)
                ),
            )
            .with_help(
                "split the jobs over several manifests or rows files and name them all \
             (`vidbatch run part1.csv part2.csv`); a device or an endless pipe is no manifest",
            ),
        )
    };
    let f = std::fs::File::open(path).map_err(cannot_read)?;
    if f.metadata().is_ok_and(|m| m.len() > limit) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// How to save a CSV so that [`decode`] reads it.
const SAVE_CSV_AS_UTF8: &str =
    "save it as \"CSV UTF-8\" (Excel) or with the character set \"Unicode (UTF-8)\" (LibreOffice)";

/// The text of a file (a CSV, a YAML manifest): UTF-8 (a BOM dropped) or UTF-16 with a BOM;
/// else one error naming the first byte that is not UTF-8, with `save_as` as its help.
pub(crate) fn decode<'a>(
    data: &'a [u8],
    file: &Arc<str>,
    save_as: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Cow<'a, str>> {
    let utf16 = |le: bool| -> Option<String> {
        let body = &data[2..];
        let units = body
            .chunks(2)
            .map(|c| match (c, le) {
                ([a, b], true) => Some(u16::from_le_bytes([*a, *b])),
                ([a, b], false) => Some(u16::from_be_bytes([*a, *b])),
                _ => None,
            })
            .collect::<Option<Vec<u16>>>()?;
        char::decode_utf16(units).collect::<Result<String, _>>().ok()
    };
    if let Some(le) = match data {
        [0xFF, 0xFE, ..] => Some(true),
        [0xFE, 0xFF, ..] => Some(false),
        _ => None,
    } {
        return match utf16(le) {
            Some(s) => Some(Cow::Owned(
                s.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(s),
            )),
            None => {
                diags.push(
                    Diagnostic::error(
                        file_loc(file),
                        "damaged UTF-16 text (starts with a UTF-16 byte order mark)",
                    )
                    .with_help(save_as),
                );
                None
            }
        };
    }
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    match std::str::from_utf8(data) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(e) => {
            let at = e.valid_up_to();
            let byte = data.get(at).copied().unwrap_or(0);
            let before = &data[..at];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let context = String::from_utf8_lossy(&data[line_start..at]);
            let context: String = context
                .chars()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let latin = if byte >= 0xA0 {
                format!(" (`{}` in Latin-1 and Windows-1252)", char::from(byte))
            } else {
                String::new()
            };
            diags.push(
                Diagnostic::error(
                    file_loc(file),
                    format!(
                        "not UTF-8: byte 0x{byte:02X}{latin} at line {line}, after `{context}`; the file looks saved in a legacy encoding"
                    ),
                )
                .with_help(save_as),
            );
            None
        }
    }
}

/// Reads the bytes of a CSV file (decoded as UTF-8, UTF-16 or with a named encoding error). `delimiter` `None` detects it from the first line.
pub fn read_csv_bytes(
    data: &[u8],
    file: &Arc<str>,
    delimiter: Option<u8>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Table> {
    let text = decode(data, file, SAVE_CSV_AS_UTF8, diags)?;
    let data = text.as_bytes();
    let delim = delimiter.unwrap_or_else(|| detect_delimiter(data));
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut rec = csv::StringRecord::new();
    let mut row = RowIn::default();
    let mut b = Builder::new(file, None, Some(delim));
    let mut index: u32 = 0;
    loop {
        index += 1;
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                row.clear();
                row.text.push_str(rec.as_slice());
                row.ranges.extend((0..rec.len()).filter_map(|i| rec.range(i)));
                for (i, c) in rec.iter().enumerate() {
                    if c.starts_with(['#', 'E']) && grid::is_error_text(c) {
                        row.errors
                            .push((i, c.trim().to_string(), grid::cell_name(index - 1, i as u32)));
                    }
                }
                b.push(index, &row, diags);
            }
            Err(e) => diags.push(Diagnostic::error(row_loc(file, index), format!("CSV error: {e}"))),
        }
    }
    if let (Some(forced), Some(t)) = (delimiter, &b.table)
        && t.headers.len() == 1
    {
        let header = &t.headers[0];
        let seen = [b',', b';', b'\t']
            .into_iter()
            .find(|&c| c != forced && header.as_bytes().contains(&c));
        if let Some(c) = seen {
            let name = |c: u8| {
                if c == b'\t' {
                    "tab".to_string()
                } else {
                    format!("`{}`", c as char)
                }
            };
            diags.push(
                Diagnostic::error(
                    row_loc(file, t.header_row),
                    format!(
                        "the header is one column `{}` with the delimiter {}: the file looks {}-separated",
                        super::yaml::excerpt(header, 60),
                        name(forced),
                        name(c)
                    ),
                )
                .with_help(format!(
                    "leave out the delimiter to detect it, or give {}",
                    name(c)
                )),
            );
            return None;
        }
    }
    b.finish(diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> (Option<Table>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        (read_csv_bytes(s.as_bytes(), &Arc::from("t.csv"), None, &mut d), d)
    }

    #[test]
    fn delimiters_are_detected() {
        assert_eq!(detect_delimiter(b"a,b,c\n"), b',');
        assert_eq!(detect_delimiter(b"a;b;\"x,y,z\"\n"), b';');
        assert_eq!(detect_delimiter(b"a\tb\n"), b'\t');
        assert_eq!(detect_delimiter(b"prompt\n"), b',');
    }

    #[test]
    fn bom_crlf_quotes_and_newlines() {
        let (tb, d) = t("\u{feff}prompt;id\r\n\"a, \"\"b\"\"\nc\";x\r\n# skipped;y\r\n;\r\nlast;z\r\n");
        assert!(d.is_empty(), "{d:?}");
        let tb = tb.expect("table");
        assert_eq!(&*tb.headers[0], "prompt");
        assert_eq!(tb.len(), 2);
        assert_eq!(tb.cell(0, 0), "a, \"b\"\nc");
        assert_eq!(tb.cell(0, 1), "x");
        assert_eq!(tb.row_number(1), 5);
        assert_eq!(tb.cell(1, 7), "");
    }

    #[test]
    fn a_manifest_past_the_limit_is_refused_naming_the_file_the_limit_and_the_fix() {
        let mib = 1024 * 1024;
        let file = Arc::from("x.csv");
        // what `ln -s /dev/zero x.csv` gives: no size on disk, and no end
        let said = read_manifest_file(Path::new("/dev/zero"), &file, 3 * mib)
            .expect_err("an endless file")
            .to_string();
        assert!(
            said.contains(
                "x.csv: error: the file holds more than 3 MB, the most vidbatch reads of one manifest"
            ) && said.contains("split the jobs over several manifests"),
            "{said}"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("p.csv");
        std::fs::write(&path, "prompt\na cat\n").expect("write");
        assert_eq!(
            read_manifest_file(&path, &file, 13).as_deref(),
            Ok(&b"prompt\na cat\n"[..])
        );
        assert!(
            read_manifest_file(&path, &file, 12).is_err(),
            "one byte past the limit"
        );
    }

    #[test]
    fn too_many_cells_and_bad_utf8() {
        let (_, d) = t("a,b\n1,2,3\n");
        assert_eq!(d.len(), 1);
        let mut d = Vec::new();
        read_csv_bytes(b"a\n\xff\n", &Arc::from("t.csv"), None, &mut d);
        assert!(d[0].to_string().contains("UTF-8"));
    }

    #[test]
    fn empty_file_is_an_error() {
        let (tb, d) = t("");
        assert!(tb.is_none());
        assert_eq!(d.len(), 1);
    }
}
