//! The sheet readers: CSV (any of `,` `;` tab, BOM, CRLF, quoted cells) and XLSX/ODS through
//! calamine, into a [`Table`] of text cells with spreadsheet row numbers.

use std::path::Path;
use std::sync::Arc;

use calamine::{Data, Reader};

use super::diag::{Diagnostic, SourceLocation};

/// A sheet read into memory: the header and the data rows (skipped rows left out).
#[derive(Debug, Clone)]
pub struct Table {
    /// The file as displayed in messages.
    pub file: Arc<str>,
    /// The header cells, trimmed.
    pub headers: Vec<Arc<str>>,
    /// The header's row number.
    pub header_row: u32,
    /// Data rows: row number (as a spreadsheet numbers it) and cells (as many as headers).
    pub rows: Vec<(u32, Vec<String>)>,
}

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
    for i in 1..3 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    cands[best]
}

/// Whether a row is skipped: its first cell starts with `#`, or all of its cells are blank.
fn skipped(cells: &[String]) -> bool {
    cells.first().is_some_and(|c| c.trim_start().starts_with('#'))
        || cells.iter().all(|c| c.trim().is_empty())
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

/// Builds a table from rows of cells: the first non-skipped row is the header.
fn table_from(
    file: &Arc<str>,
    rows: impl Iterator<Item = Result<(u32, Vec<String>), Diagnostic>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Table> {
    let mut table: Option<Table> = None;
    for r in rows {
        let (row, mut cells) = match r {
            Ok(x) => x,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        if skipped(&cells) {
            continue;
        }
        match &mut table {
            None => {
                let headers: Vec<Arc<str>> = cells.iter().map(|c| Arc::from(c.trim())).collect();
                table = Some(Table {
                    file: file.clone(),
                    headers,
                    header_row: row,
                    rows: Vec::new(),
                });
            }
            Some(t) => {
                let n = t.headers.len();
                if cells.len() > n {
                    if cells[n..].iter().any(|c| !c.trim().is_empty()) {
                        diags.push(Diagnostic::field_error(
                            row_loc(file, row),
                            "row",
                            format!("{} cells", cells.len()),
                            format!("at most {n} cells, as many as header columns"),
                        ));
                        continue;
                    }
                    cells.truncate(n);
                }
                cells.resize(n, String::new());
                t.rows.push((row, cells));
            }
        }
    }
    if table.is_none() {
        diags.push(Diagnostic::error(
            file_loc(file),
            "no header row: the sheet is empty",
        ));
    }
    table
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
    let mut index: u32 = 0;
    let file2 = file.clone();
    let rows = std::iter::from_fn(move || match rdr.read_byte_record(&mut rec) {
        Ok(false) => None,
        Ok(true) => {
            index += 1;
            let mut cells = Vec::with_capacity(rec.len());
            for (i, c) in rec.iter().enumerate() {
                match std::str::from_utf8(c) {
                    Ok(s) => cells.push(s.to_string()),
                    Err(_) => {
                        return Some(Err(Diagnostic::error(
                            row_loc(&file2, index),
                            format!("cell {} is not valid UTF-8 (save the CSV as UTF-8)", i + 1),
                        )));
                    }
                }
            }
            Some(Ok((index, cells)))
        }
        Err(e) => {
            index += 1;
            Some(Err(Diagnostic::error(
                row_loc(&file2, index),
                format!("CSV error: {e}"),
            )))
        }
    });
    table_from(file, rows, diags)
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
    let pad = col0 as usize;
    let rows = range.rows().enumerate().map(|(i, r)| {
        let mut cells = vec![String::new(); pad];
        cells.extend(r.iter().map(cell_text));
        Ok((row0 + i as u32 + 1, cells))
    });
    table_from(file, rows, diags)
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
        assert_eq!(tb.rows.len(), 2);
        assert_eq!(tb.rows[0].1[0], "a, \"b\"\nc");
        assert_eq!(tb.rows[1].0, 5);
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
