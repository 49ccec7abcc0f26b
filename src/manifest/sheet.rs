//! The sheet readers: CSV (any of `,` `;` tab, BOM, CRLF, quoted cells) and XLSX/ODS through
//! calamine, into a [`Table`] of text cells with spreadsheet row numbers.

use std::path::Path;
use std::sync::Arc;

use calamine::{Data, Reader};

use super::diag::{Diagnostic, SourceLocation};

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

/// A sheet read into memory: the header and the data rows (skipped rows left out), every
/// cell's text in one buffer.
#[derive(Debug, Clone)]
pub struct Table {
    /// The file as displayed in messages.
    pub file: Arc<str>,
    /// The header cells, trimmed.
    pub headers: Vec<Arc<str>>,
    /// The header's row number.
    pub header_row: u32,
    data: String,
    /// Byte ranges into `data`, `headers.len()` per row.
    cells: Vec<(u32, u32)>,
    /// Row numbers (as a spreadsheet numbers them) of the data rows.
    rows: Vec<u32>,
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
}

/// Collects rows into a [`Table`]: the first non-skipped row is the header. A row is skipped
/// when its first cell starts with `#` or all of its cells are blank.
struct Builder {
    file: Arc<str>,
    table: Option<Table>,
    too_big: bool,
}

impl Builder {
    fn new(file: &Arc<str>) -> Builder {
        Builder {
            file: file.clone(),
            table: None,
            too_big: false,
        }
    }

    /// Adds one row given as ranges into `text`.
    fn push(&mut self, row: u32, text: &str, ranges: &[std::ops::Range<usize>], diags: &mut Vec<Diagnostic>) {
        let cell = |i: usize| ranges.get(i).and_then(|r| text.get(r.clone())).unwrap_or("");
        if cell(0).trim_start().starts_with('#') || (0..ranges.len()).all(|i| cell(i).trim().is_empty()) {
            return;
        }
        let Some(t) = &mut self.table else {
            self.table = Some(Table {
                file: self.file.clone(),
                headers: (0..ranges.len()).map(|i| Arc::from(cell(i).trim())).collect(),
                header_row: row,
                data: String::new(),
                cells: Vec::new(),
                rows: Vec::new(),
            });
            return;
        };
        let n = t.headers.len();
        if ranges.len() > n && (n..ranges.len()).any(|i| !cell(i).trim().is_empty()) {
            diags.push(Diagnostic::field_error(
                row_loc(&self.file, row),
                "row",
                format!("{} cells", ranges.len()),
                format!("at most {n} cells, as many as header columns"),
            ));
            return;
        }
        for i in 0..n {
            let a = t.data.len();
            t.data.push_str(cell(i));
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
        t.rows.push(row);
    }

    fn finish(self, diags: &mut Vec<Diagnostic>) -> Option<Table> {
        if self.too_big {
            return None;
        }
        if self.table.is_none() {
            diags.push(Diagnostic::error(
                file_loc(&self.file),
                "no header row: the sheet is empty",
            ));
        }
        self.table
    }
}

/// Reads a CSV file. `delimiter` `None` detects it from the first line.
pub fn read_csv(
    path: &Path,
    file: &Arc<str>,
    delimiter: Option<u8>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Table> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            diags.push(Diagnostic::error(file_loc(file), format!("cannot read: {e}")));
            return None;
        }
    };
    read_csv_bytes(&data, file, delimiter, diags)
}

/// Reads CSV text (see [`read_csv`]).
pub fn read_csv_bytes(
    data: &[u8],
    file: &Arc<str>,
    delimiter: Option<u8>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Table> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let delim = delimiter.unwrap_or_else(|| detect_delimiter(data));
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut rec = csv::ByteRecord::new();
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut b = Builder::new(file);
    let mut index: u32 = 0;
    loop {
        index += 1;
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => match std::str::from_utf8(rec.as_slice()) {
                Ok(text) => {
                    ranges.clear();
                    ranges.extend((0..rec.len()).filter_map(|i| rec.range(i)));
                    b.push(index, text, &ranges, diags);
                }
                Err(_) => diags.push(Diagnostic::error(
                    row_loc(file, index),
                    "not valid UTF-8 (save the CSV as UTF-8)",
                )),
            },
            Err(e) => diags.push(Diagnostic::error(row_loc(file, index), format!("CSV error: {e}"))),
        }
    }
    b.finish(diags)
}

fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => (*f as i64).to_string(),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => dt.to_string(),
        Data::Error(e) => format!("#ERROR {e:?}"),
    }
}

/// Reads a sheet of an XLSX/XLS/ODS workbook: the named one, else the first.
pub fn read_sheet(
    path: &Path,
    file: &Arc<str>,
    sheet: Option<&str>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Table> {
    let mut wb = match calamine::open_workbook_auto(path) {
        Ok(wb) => wb,
        Err(e) => {
            diags.push(Diagnostic::error(
                file_loc(file),
                format!("cannot read the workbook: {e}"),
            ));
            return None;
        }
    };
    let names = wb.sheet_names();
    let name = match sheet {
        Some(s) if names.iter().any(|n| n == s) => s.to_string(),
        Some(s) => {
            diags.push(Diagnostic::field_error(
                file_loc(file),
                "sheet",
                format!("`{s}`"),
                format!("one of the workbook's sheets: {}", names.join(", ")),
            ));
            return None;
        }
        None => match names.first() {
            Some(n) => n.clone(),
            None => {
                diags.push(Diagnostic::error(file_loc(file), "the workbook has no sheet"));
                return None;
            }
        },
    };
    let range = match wb.worksheet_range(&name) {
        Ok(r) => r,
        Err(e) => {
            diags.push(Diagnostic::error(
                file_loc(file),
                format!("cannot read sheet `{name}`: {e}"),
            ));
            return None;
        }
    };
    let (row0, col0) = range.start().unwrap_or((0, 0));
    let mut b = Builder::new(file);
    let mut text = String::new();
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, r) in range.rows().enumerate() {
        text.clear();
        ranges.clear();
        ranges.extend(std::iter::repeat_n(0..0, col0 as usize));
        for d in r {
            let a = text.len();
            text.push_str(&cell_text(d));
            ranges.push(a..text.len());
        }
        b.push(row0 + i as u32 + 1, &text, &ranges, diags);
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
