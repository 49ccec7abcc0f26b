//! Workbooks (XLSX, ODS, XLS): the cells of one sheet as the spreadsheet app shows them; the main
//! function here is [`read_sheet`].

use std::path::Path;
use std::sync::Arc;

use calamine::{Data, Reader};

use super::{numfmt, ods};
use crate::manifest::diag::Diagnostic;
use crate::manifest::grid::{self, Cell, Grid, Merge, Workbook};

use super::*;

/// A sheet of a workbook read into a [`Table`]; `None` after reporting why not.
pub fn read_sheet(
    path: &Path,
    file: &Arc<str>,
    sheet: Option<&str>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Table> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let read = grid::check_part_sizes(path, grid::MAX_PART_BYTES).and_then(|()| match ext.as_str() {
        "ods" => ods::read_ods(path, sheet),
        "xlsx" | "xlsm" => read_xlsx(path, sheet),
        _ => read_other(path, sheet),
    });
    let wb = match read {
        Ok(wb) => wb,
        Err(e) => {
            diags.push(Diagnostic::error(file_loc(file), e));
            return None;
        }
    };
    let Some(name) = wb.sheet.clone() else {
        match sheet {
            Some(s) => diags.push(Diagnostic::field_error(
                file_loc(file),
                "sheet",
                format!("`{s}`"),
                format!("one of the workbook's sheets: {}", wb.sheets.join(", ")),
            )),
            None => diags.push(Diagnostic::error(file_loc(file), "the workbook has no sheet")),
        }
        return None;
    };
    let sheet_name: Arc<str> = Arc::from(name.as_str());
    let mut b = Builder::new(file, Some(sheet_name), None).with_merges(wb.grid.merges());
    let mut row = RowIn::default();
    for (r, cells) in (0..wb.grid.rows()).map(|r| (r, wb.grid.row(r))) {
        row.clear();
        for (c, cell) in cells.iter().enumerate() {
            let a = row.text.len();
            if cell.is_error() {
                row.errors.push((
                    c,
                    cell.text.trim().to_string(),
                    grid::cell_name(r as u32, c as u32),
                ));
            }
            row.text.push_str(cell.display());
            row.ranges.push(a..row.text.len());
            if cell.raw.is_some() || cell.time {
                row.info.push((
                    c,
                    CellInfo {
                        raw: cell.raw.as_deref().map(Box::from),
                        time: cell.time,
                    },
                ));
            }
        }
        b.push(u32::try_from(r + 1).unwrap_or(u32::MAX), &row, diags);
    }
    let mut t = b.finish(diags)?;
    t.sheets = wb.sheets;
    Some(t)
}

/// Picks the sheet to read: the named one, else the first.
pub(super) fn pick(names: &[String], sheet: Option<&str>) -> Option<String> {
    match sheet {
        Some(s) => names.iter().find(|n| *n == s).cloned(),
        None => names.first().cloned(),
    }
}

/// A number cell shown in its format, with the number behind it when the text differs.
pub(super) fn number_cell(v: f64, code: &str, date_like: bool, is_1904: bool) -> Cell {
    let shown = numfmt::show(v, code, date_like, is_1904);
    let general = numfmt::general(v);
    Cell {
        raw: (shown.text != general && !shown.date && !shown.time).then_some(general),
        time: shown.time,
        date: shown.date.then(|| shown.text.clone()),
        text: shown.text,
        ..Cell::default()
    }
}

pub(super) fn data_cell(d: &Data, code: &str, is_1904: bool) -> Cell {
    match d {
        Data::Empty => Cell::default(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::text(s.clone()),
        Data::Int(i) => number_cell(*i as f64, code, false, is_1904),
        Data::Float(f) => number_cell(*f, code, false, is_1904),
        Data::DateTime(dt) => number_cell(dt.as_f64(), code, true, is_1904),
        Data::Bool(b) => Cell::text(if *b { "TRUE" } else { "FALSE" }),
        Data::Error(e) => Cell {
            text: e.to_string(),
            error: true,
            ..Cell::default()
        },
    }
}

/// The sheet of an open workbook to read (`sheet`, else the first) and its cells, in a
/// [`Workbook`] that lists every sheet; no range when the workbook has no sheet.
fn chosen_range<RS, R>(
    x: &mut R,
    sheet: Option<&str>,
) -> Result<(Workbook, Option<calamine::Range<Data>>), String>
where
    RS: std::io::Read + std::io::Seek,
    R: Reader<RS>,
    R::Error: std::fmt::Display,
{
    let sheets = x.sheet_names();
    let wb = Workbook {
        sheet: pick(&sheets, sheet),
        sheets,
        grid: Grid::default(),
    };
    let Some(name) = wb.sheet.clone() else {
        return Ok((wb, None));
    };
    let range = x
        .worksheet_range(&name)
        .map_err(|e| format!("cannot read sheet `{name}`: {e}"))?;
    Ok((wb, Some(range)))
}

/// Reads an XLSX through calamine, with each cell's number format and the merged ranges, in
/// one pass over the sheet's cells. A sheet whose values span more than
/// [`grid::MAX_SPAN_CELLS`] (a stray value far from the data) is refused as soon as the pass
/// meets the far cell, before anything the size of the span is made.
pub(super) fn read_xlsx(path: &Path, sheet: Option<&str>) -> Result<Workbook, String> {
    let mut x: calamine::Xlsx<_> =
        calamine::open_workbook(path).map_err(|e| format!("cannot read the workbook: {e}"))?;
    let sheets = x.sheet_names();
    let mut wb = Workbook {
        sheet: pick(&sheets, sheet),
        sheets,
        grid: Grid::default(),
    };
    let Some(name) = wb.sheet.clone() else {
        return Ok(wb);
    };
    let is_1904 = x.has_1904_epoch();
    let cannot = |e: calamine::XlsxError| format!("cannot read sheet `{name}`: {e}");
    let mut cells = match x.worksheet_cells_reader(&name) {
        Ok(cells) => cells,
        // A chart sheet: no cells.
        Err(calamine::XlsxError::NotAWorksheet(_)) => return Ok(wb),
        Err(e) => return Err(cannot(e)),
    };
    let (mut first, mut last) = ((u32::MAX, u32::MAX), (0, 0));
    while let Some((cell, style)) = cells.next_cell_with_style_id().map_err(cannot)? {
        if *cell.get_value() == calamine::DataRef::Empty {
            continue;
        }
        let (r, c) = cell.get_position();
        first = (first.0.min(r), first.1.min(c));
        last = (last.0.max(r), last.1.max(c));
        if grid::span_too_large(first, last) {
            return Err(grid::span_message(last));
        }
        let code = cells
            .styles()
            .get(style)
            .and_then(|s| s.number_format.as_ref())
            .map_or("General", |f| f.format_code.as_str());
        let value = Data::from(cell.get_value().clone());
        wb.grid.set(r, c, data_cell(&value, code, is_1904));
    }
    drop(cells);
    for m in x.merge_cells_by_sheet_name(&name).unwrap_or_default() {
        wb.grid.merge(Merge {
            first: m.start,
            last: m.end,
        });
    }
    Ok(wb)
}

/// Reads an XLS/XLSB through calamine (dates known, other number formats not).
pub(super) fn read_other(path: &Path, sheet: Option<&str>) -> Result<Workbook, String> {
    let mut x = calamine::open_workbook_auto(path).map_err(|e| format!("cannot read the workbook: {e}"))?;
    let (mut wb, range) = chosen_range(&mut x, sheet)?;
    let Some(range) = range else {
        return Ok(wb);
    };
    let (r0, c0) = range.start().unwrap_or((0, 0));
    for (r, c, d) in range.used_cells() {
        wb.grid
            .set(r0 + r as u32, c0 + c as u32, data_cell(d, "General", false));
    }
    Ok(wb)
}
