//! A sheet read from a workbook, cell by cell as the app shows it: the main structure here is
//! [`Grid`] (with [`Workbook`], the sheet names around it).

use std::path::Path;

/// The most bytes one part of a workbook (a sheet's XML) may unpack to: far more than a sheet
/// of a million rows takes, far less than what a zip bomb of a few megabytes would have vidbatch
/// hold in memory.
pub const MAX_PART_BYTES: u64 = 512 * 1024 * 1024;

/// The most cells (rows × columns, from the first cell to the last) a sheet may span: ten times
/// a sheet of 100,000 rows of ten columns. Readers hold a sheet's span whole, and one stray value
/// in the last cell of a sheet (XFD1048576) spans 17 billion.
pub const MAX_SPAN_CELLS: u64 = 10_000_000;

/// Whether cells from (`first_row`, `first_col`) to (`last_row`, `last_col`), 0-based and
/// inclusive, span more than [`MAX_SPAN_CELLS`].
pub fn span_too_large(first: (u32, u32), last: (u32, u32)) -> bool {
    let rows = u64::from(last.0.saturating_sub(first.0)) + 1;
    let cols = u64::from(last.1.saturating_sub(first.1)) + 1;
    rows * cols > MAX_SPAN_CELLS
}

/// The message for a sheet whose cells reach `last` (0-based) and span too much.
pub fn span_message(last: (u32, u32)) -> String {
    format!(
        "the sheet's cells reach {}, more than {MAX_SPAN_CELLS} cells from its first: a value or \
         a format far from the others (or a row repeated a million times) makes the sheet that \
         large; delete the rows and columns past the data, or export the used range as CSV",
        cell_name(last.0, last.1)
    )
}

/// The message for a workbook part `name` that unpacks to more than `limit` bytes.
pub fn part_too_large(name: &str, limit: u64) -> String {
    format!(
        "the workbook's part `{name}` unpacks to more than {} MB, the most vidbatch reads: the \
         file is damaged or not a plain spreadsheet; save it again from the spreadsheet app, or \
         export the sheet as CSV",
        limit / (1024 * 1024)
    )
}

/// `Err` (a message) when a part of the zip-packed workbook at `path` says it unpacks to more
/// than `limit` bytes, before anything is unpacked; a file that is not a zip is left to its
/// reader to refuse.
pub fn check_part_sizes(path: &Path, limit: u64) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let Ok(mut zip) = zip::ZipArchive::new(file) else {
        return Ok(());
    };
    for i in 0..zip.len() {
        let Ok(part) = zip.by_index_raw(i) else {
            continue;
        };
        if part.size() > limit {
            let name = part.name().map(|n| n.into_owned()).unwrap_or_default();
            return Err(part_too_large(&name, limit));
        }
    }
    Ok(())
}

/// One cell of a workbook, as shown, with what is known of its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// The text the app shows (a date as an ISO date; see [`Cell::display`]).
    pub text: String,
    /// The number behind a formatted number (`7` behind `007`), when it differs from the text.
    pub raw: Option<String>,
    /// The date (ISO, `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`) of a date cell.
    pub date: Option<String>,
    /// The cell holds a time of day (what `16:9` becomes when typed into a cell).
    pub time: bool,
    /// The cell holds a formula error; `text` is the error as the app spells it.
    pub error: bool,
    /// The cell holds a formula.
    pub formula: bool,
    /// The top-left cell (row, column; 0-based) of the merged range this cell is covered by.
    pub merged_from: Option<(u32, u32)>,
}

/// Formula errors as Excel, LibreOffice and Gnumeric show them.
const ERRORS: &[&str] = &[
    "#N/A",
    "#DIV/0!",
    "#VALUE!",
    "#REF!",
    "#NAME?",
    "#NUM!",
    "#NULL!",
    "#GETTING_DATA",
    "#SPILL!",
    "#CALC!",
];

/// Whether `s` is a formula error as a spreadsheet shows it (`#N/A`, `#DIV/0!`, `Err:502`, ...).
pub fn is_error_text(s: &str) -> bool {
    let s = s.trim();
    ERRORS.iter().any(|e| e.eq_ignore_ascii_case(s))
        || s.strip_prefix("Err:")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell {
            text: s.into(),
            ..Cell::default()
        }
    }

    /// The text vidbatch reads: the ISO date of a date, else the shown text.
    pub fn display(&self) -> &str {
        self.date.as_deref().unwrap_or(&self.text)
    }

    /// Whether the cell shows a formula error (flagged, or a formula showing an error's spelling).
    pub fn is_error(&self) -> bool {
        self.error || (self.formula && is_error_text(&self.text))
    }

    /// Whether nothing is shown.
    pub fn is_blank(&self) -> bool {
        self.display().trim().is_empty() && !self.error
    }
}

/// A merged range of cells, by its top-left and bottom-right cells (0-based, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    /// The top-left cell (row, column).
    pub first: (u32, u32),
    /// The bottom-right cell (row, column).
    pub last: (u32, u32),
}

impl Merge {
    /// Whether the range spans more than one column.
    pub fn is_across(&self) -> bool {
        self.last.1 > self.first.1
    }

    /// Whether the range covers row `r` (0-based).
    pub fn covers_row(&self, r: u32) -> bool {
        (self.first.0..=self.last.0).contains(&r)
    }

    /// The range as a spreadsheet names it (`B2:C4`).
    pub fn name(&self) -> String {
        format!(
            "{}:{}",
            cell_name(self.first.0, self.first.1),
            cell_name(self.last.0, self.last.1)
        )
    }
}

/// The cells of one sheet, by 0-based row and column, and its merged ranges.
#[derive(Debug, Clone, Default)]
pub struct Grid {
    rows: Vec<Vec<Cell>>,
    merges: Vec<Merge>,
}

impl Grid {
    /// Sets a cell, growing the grid.
    pub fn set(&mut self, row: u32, col: u32, cell: Cell) {
        let (r, c) = (row as usize, col as usize);
        if self.rows.len() <= r {
            self.rows.resize_with(r + 1, Vec::new);
        }
        let cells = &mut self.rows[r];
        if cells.len() <= c {
            cells.resize_with(c + 1, Cell::default);
        }
        cells[c] = cell;
    }

    /// A cell, if set.
    pub fn get(&self, row: u32, col: u32) -> Option<&Cell> {
        self.rows.get(row as usize)?.get(col as usize)
    }

    /// Number of rows, up to the last one set.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The cells of row `r` (empty past the end).
    pub fn row(&self, r: usize) -> &[Cell] {
        self.rows.get(r).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The merged ranges, as added by [`Grid::merge`].
    pub fn merges(&self) -> &[Merge] {
        &self.merges
    }

    /// Notes a merged range and carries its top-left cell down its column, over the rows the
    /// range covers (rows past the last row with content are left out), marking each copy with
    /// where it came from. The other columns of a range spanning columns stay empty: a cell
    /// merged across is one wide cell, not the same value in every column (the sheet reader
    /// decides whether that is an error, from the columns it covers).
    pub fn merge(&mut self, m: Merge) {
        self.merges.push(m);
        let (r0, c0) = m.first;
        let Some(top) = self.get(r0, c0).cloned() else {
            return;
        };
        if top.is_blank() {
            return;
        }
        let last_row = (self.rows.len() as u32).saturating_sub(1);
        for r in r0.saturating_add(1)..=m.last.0.min(last_row) {
            self.set(
                r,
                c0,
                Cell {
                    merged_from: Some((r0, c0)),
                    ..top.clone()
                },
            );
        }
    }
}

/// A workbook as far as vidbatch reads it: every sheet's name and the grid of one.
#[derive(Debug, Clone, Default)]
pub struct Workbook {
    /// Every sheet's name, in order.
    pub sheets: Vec<String>,
    /// The sheet read, if the wanted one was found.
    pub sheet: Option<String>,
    /// Its cells.
    pub grid: Grid,
}

/// The name of a column as a spreadsheet shows it: `C` for column 2, `AA` for 26 (0-based).
pub fn column_name(col: u32) -> String {
    let mut letters = Vec::new();
    let mut c = col as u64 + 1;
    while c > 0 {
        let rem = ((c - 1) % 26) as u8;
        letters.push((b'A' + rem) as char);
        c = (c - 1) / 26;
    }
    letters.iter().rev().collect()
}

/// The name of a cell as a spreadsheet shows it: `C3` for row 2, column 2 (0-based).
pub fn cell_name(row: u32, col: u32) -> String {
    column_name(col) + &(row as u64 + 1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_past_the_limit_is_too_large_and_names_its_last_cell() {
        assert!(!span_too_large((0, 0), (99_999, 9)));
        assert!(span_too_large((0, 0), (1_048_575, 16_383)));
        assert!(!span_too_large((1_048_575, 16_383), (1_048_575, 16_383)));
        assert!(span_message((1_048_575, 16_383)).contains("XFD1048576"));
    }

    #[test]
    fn a_workbook_part_that_unpacks_past_the_limit_is_refused_before_it_is_read() {
        let fixture = |p: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join(p);
        let ods = fixture("tests/fixtures/prompts.ods");
        let xlsx = fixture("examples/prompts.xlsx");
        for book in [&ods, &xlsx] {
            assert_eq!(
                check_part_sizes(book, MAX_PART_BYTES),
                Ok(()),
                "{}",
                book.display()
            );
            let said = check_part_sizes(book, 100).expect_err("a part over 100 bytes");
            assert!(
                said.contains("unpacks to more than") && said.contains("export the sheet as CSV"),
                "{said}"
            );
        }
        // Not a zip: its own reader says what it is.
        assert_eq!(check_part_sizes(&fixture("tests/fixtures/bad.csv"), 1), Ok(()));
    }

    #[test]
    fn cell_names_and_error_spellings() {
        assert_eq!(cell_name(2, 2), "C3");
        assert_eq!(cell_name(0, 26), "AA1");
        assert!(is_error_text("#N/A") && is_error_text("#DIV/0!") && is_error_text("Err:502"));
        assert!(!is_error_text("#draft") && !is_error_text("Err:"));
    }

    #[test]
    fn a_merge_is_named_and_carried_down_its_first_column() {
        let mut g = Grid::default();
        g.set(1, 1, Cell::text("m"));
        g.set(3, 0, Cell::text("x"));
        let m = Merge {
            first: (1, 1),
            last: (5, 2),
        };
        g.merge(m);
        assert_eq!(m.name(), "B2:C6");
        assert!(m.is_across() && m.covers_row(5) && !m.covers_row(0));
        assert_eq!(g.get(3, 1).map(|c| c.text.as_str()), Some("m"));
        assert_eq!(g.get(3, 1).and_then(|c| c.merged_from), Some((1, 1)));
        assert_eq!(g.get(2, 2), None, "the columns beside stay empty");
        assert_eq!(g.rows(), 4, "rows past the last row with content are left out");
        assert_eq!(g.merges(), [m]);
    }
}
