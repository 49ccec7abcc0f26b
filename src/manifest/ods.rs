//! The ODS reader: one sheet of an OpenDocument spreadsheet as the app shows it, from the
//! cells' own displayed text (`<text:p>`), with merged ranges filled and formula errors kept as
//! errors. The main function here is [`read_ods`].
//!
//! vidbatch reads ODS itself rather than through calamine: calamine gives numbers without
//! their format (`007` reads `7`, `12.50%` reads `0.125`, a time reads `PT16H09M00S`), and
//! calamine 0.38 refuses a `content.xml` with whitespace between cells, which Gnumeric writes.

use std::io::Read;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use super::grid::{Cell, MAX_PART_BYTES, MAX_SPAN_CELLS, Merge, Workbook, part_too_large, span_message};

/// The most rows and columns read from one sheet (the ODS limits of LibreOffice).
const MAX_ROWS: u32 = 1_048_576;
const MAX_COLS: u32 = 16_384;

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

fn count(e: &BytesStart, name: &str) -> u32 {
    attr(e, name)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .max(1)
}

/// Reads the sheet named `sheet` (else the first) of the ODS at `path`; `Err` is a message.
pub fn read_ods(path: &std::path::Path, sheet: Option<&str>) -> Result<Workbook, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not an ODS file ({e})"))?;
    let mut xml = String::new();
    // Bounded whatever the zip says of the part's size.
    zip.by_name("content.xml")
        .map_err(|e| format!("not an ODS file (content.xml: {e})"))?
        .take(MAX_PART_BYTES + 1)
        .read_to_string(&mut xml)
        .map_err(|e| format!("cannot read content.xml: {e}"))?;
    if xml.len() as u64 > MAX_PART_BYTES {
        return Err(part_too_large("content.xml", MAX_PART_BYTES));
    }
    parse_content(&xml, sheet)
}

/// One cell being read: its value, how many columns it repeats, and what it spans.
struct Pending {
    cell: Cell,
    repeat: u32,
    span_rows: u32,
    span_cols: u32,
    paragraphs: u32,
}

fn start_cell(e: &BytesStart) -> Pending {
    let mut cell = Cell::default();
    let kind = attr(e, "calcext:value-type").or_else(|| attr(e, "office:value-type"));
    match kind.as_deref() {
        Some("float" | "currency") => cell.raw = attr(e, "office:value"),
        Some("date") => cell.date = attr(e, "office:date-value").map(|d| d.replace('T', " ")),
        Some("time") => cell.time = true,
        Some("error") => cell.error = true,
        _ => {}
    }
    cell.formula = attr(e, "table:formula").is_some();
    Pending {
        cell,
        repeat: count(e, "table:number-columns-repeated"),
        span_rows: count(e, "table:number-rows-spanned"),
        span_cols: count(e, "table:number-columns-spanned"),
        paragraphs: 0,
    }
}

/// The row being read: its cells by column, the next column, and how often it repeats.
#[derive(Default)]
struct Row {
    cells: Vec<(u32, Cell)>,
    col: u32,
    repeat: u32,
}

/// The bytes of sheet cells the reader may still make, repeats and all (the cells'
/// [`MAX_SPAN_CELLS`] at 100 bytes each): a few bytes of `number-rows-repeated` or
/// `number-columns-repeated` on a filled cell would otherwise make billions of copies of it.
struct Budget(u64);

impl Budget {
    fn new() -> Budget {
        Budget(MAX_SPAN_CELLS * 100)
    }

    /// Takes `copies` of `cell` (whose last copy lands at `last`), or says the sheet is too large.
    fn take(&mut self, cell: &Cell, copies: u64, last: (u32, u32)) -> Result<(), String> {
        let each = (std::mem::size_of::<Cell>() + cell.text.len()) as u64;
        match self.0.checked_sub(each.saturating_mul(copies)) {
            Some(left) => {
                self.0 = left;
                Ok(())
            }
            None => Err(span_message(last)),
        }
    }
}

impl Row {
    fn finish_cell(
        &mut self,
        mut p: Pending,
        row: u32,
        merges: &mut Vec<(u32, u32, u32, u32)>,
        budget: &mut Budget,
    ) -> Result<(), String> {
        // a date shown without its time of day (Excel writes `2016-10-20T00:00:00` behind
        // `10/20/2016`) reads as the day, as from an XLSX
        if let Some(d) = p.cell.date.as_mut()
            && !p.cell.text.contains(':')
            && let Some(at) = d.find(' ')
        {
            d.truncate(at);
        }
        if p.span_rows > 1 || p.span_cols > 1 {
            merges.push((row, self.col, p.span_rows, p.span_cols));
        }
        if p.cell.is_blank() {
            self.col = self.col.saturating_add(p.repeat);
        } else {
            let copies = p.repeat.min(MAX_COLS.saturating_sub(self.col));
            let last_col = self.col.saturating_add(copies).saturating_sub(1);
            budget.take(&p.cell, u64::from(copies), (row, last_col))?;
            for _ in 0..p.repeat {
                if self.col >= MAX_COLS {
                    break;
                }
                self.cells.push((self.col, p.cell.clone()));
                self.col += 1;
            }
        }
        Ok(())
    }
}

fn damaged(e: impl std::fmt::Display) -> String {
    format!("damaged content.xml: {e}")
}

/// Parses `content.xml`: every sheet's name, and the grid of the wanted one.
pub fn parse_content(xml: &str, sheet: Option<&str>) -> Result<Workbook, String> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut wb = Workbook::default();
    let mut reading = false;
    let mut row = 0u32;
    let mut cur = Row::default();
    let mut cell: Option<Pending> = None;
    let mut merges: Vec<(u32, u32, u32, u32)> = Vec::new();
    let mut budget = Budget::new();
    // depth inside a cell's comment (`office:annotation`), whose text is not the cell's
    let mut note = 0u32;
    loop {
        let ev = r.read_event().map_err(damaged)?;
        if note > 0 || matches!(&ev, Event::Start(e) if e.name().as_ref() == "office:annotation") {
            match &ev {
                Event::Start(_) => note += 1,
                Event::End(_) => note -= 1,
                Event::Eof => break,
                _ => {}
            }
            continue;
        }
        match ev {
            Event::Start(e) if e.name().as_ref() == "table:table" => {
                reading = add_sheet(&mut wb, &e, sheet);
            }
            Event::Empty(e) if e.name().as_ref() == "table:table" => {
                add_sheet(&mut wb, &e, sheet);
            }
            Event::End(e) if e.name().as_ref() == "table:table" => reading = false,
            Event::Start(e) if reading && e.name().as_ref() == "table:table-row" => {
                cur = Row {
                    repeat: count(&e, "table:number-rows-repeated"),
                    ..Row::default()
                };
            }
            Event::Empty(e) if reading && e.name().as_ref() == "table:table-row" => {
                row = row
                    .saturating_add(count(&e, "table:number-rows-repeated"))
                    .min(MAX_ROWS);
            }
            Event::End(e) if reading && e.name().as_ref() == "table:table-row" => {
                let mut n = cur.repeat;
                if !cur.cells.is_empty() {
                    n = n.min(MAX_ROWS.saturating_sub(row));
                    // The row was taken once as its cells were read; its repeats are taken here.
                    let last = (row.saturating_add(n).saturating_sub(1), cur.col.saturating_sub(1));
                    for (_, v) in &cur.cells {
                        budget.take(v, u64::from(n.saturating_sub(1)), last)?;
                    }
                    for k in 0..n {
                        for (c, v) in &cur.cells {
                            wb.grid.set(row + k, *c, v.clone());
                        }
                    }
                }
                row = row.saturating_add(n).min(MAX_ROWS);
            }
            Event::Start(e) if reading && is_cell(&e) => cell = Some(start_cell(&e)),
            Event::Empty(e) if reading && is_cell(&e) => {
                cur.finish_cell(start_cell(&e), row, &mut merges, &mut budget)?;
            }
            Event::End(e)
                if reading
                    && matches!(e.name().as_ref(), "table:table-cell" | "table:covered-table-cell") =>
            {
                if let Some(p) = cell.take() {
                    cur.finish_cell(p, row, &mut merges, &mut budget)?;
                }
            }
            Event::Start(e) if e.name().as_ref() == "text:p" => {
                if let Some(p) = cell.as_mut() {
                    if p.paragraphs > 0 {
                        p.cell.text.push('\n');
                    }
                    p.paragraphs += 1;
                }
            }
            Event::Empty(e) => {
                if let Some(p) = cell.as_mut().filter(|p| p.paragraphs > 0) {
                    match e.name().as_ref() {
                        "text:s" => {
                            let n = attr(&e, "text:c")
                                .and_then(|c| c.parse::<usize>().ok())
                                .unwrap_or(1);
                            p.cell.text.extend(std::iter::repeat_n(' ', n.min(1000)));
                        }
                        "text:tab" => p.cell.text.push('\t'),
                        "text:line-break" => p.cell.text.push('\n'),
                        _ => {}
                    }
                }
            }
            Event::Text(t) => {
                if let Some(p) = cell.as_mut().filter(|p| p.paragraphs > 0) {
                    p.cell.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(g) => {
                if let Some(p) = cell.as_mut().filter(|p| p.paragraphs > 0) {
                    match g.resolve_char_ref().map_err(damaged)? {
                        Some(c) => p.cell.text.push(c),
                        None => p.cell.text.push_str(
                            quick_xml::escape::resolve_predefined_entity(&g)
                                .ok_or_else(|| damaged(format!("unknown entity &{};", &*g)))?,
                        ),
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    for (r0, c0, rows, cols) in merges {
        wb.grid.merge(Merge {
            first: (r0, c0),
            last: (r0.saturating_add(rows - 1), c0.saturating_add(cols - 1)),
        });
    }
    Ok(wb)
}

/// Notes a sheet's name; whether it is the sheet to read.
fn add_sheet(wb: &mut Workbook, e: &BytesStart, sheet: Option<&str>) -> bool {
    let name = attr(e, "table:name").unwrap_or_default();
    let want = wb.sheet.is_none()
        && match sheet {
            Some(s) => s == name,
            None => wb.sheets.is_empty(),
        };
    if want {
        wb.sheet = Some(name.clone());
    }
    wb.sheets.push(name);
    want
}

fn is_cell(e: &BytesStart) -> bool {
    matches!(e.name().as_ref(), "table:table-cell" | "table:covered-table-cell")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = r#"xmlns:office="o" xmlns:table="t" xmlns:text="x""#;

    fn doc(body: &str) -> String {
        format!(
            r#"<office:document-content {NS}><office:body><office:spreadsheet>{body}</office:spreadsheet></office:body></office:document-content>"#
        )
    }

    #[test]
    fn whitespace_between_cells_spaces_entities_and_repeats() {
        let xml = doc(r#"
            <table:table table:name="A">
              <table:table-row>
                <table:table-cell office:value-type="string"><text:p>a<text:s text:c="2"/>b &amp; c</text:p></table:table-cell>
                <table:table-cell table:number-columns-repeated="2"/>
                <table:table-cell office:value-type="float" office:value="7"><text:p>007</text:p></table:table-cell>
              </table:table-row>
              <table:table-row table:number-rows-repeated="1000000"><table:table-cell/></table:table-row>
            </table:table>
            <table:table table:name="B"/>"#);
        let wb = parse_content(&xml, None).expect("parses");
        assert_eq!(wb.sheets, ["A", "B"]);
        assert_eq!(wb.grid.get(0, 0).map(|c| c.text.as_str()), Some("a  b & c"));
        let c = wb.grid.get(0, 3).expect("cell");
        assert_eq!((c.text.as_str(), c.raw.as_deref()), ("007", Some("7")));
        assert_eq!(wb.grid.rows(), 1);
    }

    #[test]
    fn repeats_that_would_copy_a_filled_cell_billions_of_times_are_refused() {
        let filled = r#"<table:table-cell table:number-columns-repeated="2000" office:value-type="string"><text:p>x</text:p></table:table-cell>"#;
        let rows = doc(&format!(
            r#"<table:table table:name="A"><table:table-row table:number-rows-repeated="1000000">{filled}</table:table-row></table:table>"#
        ));
        let Err(said) = parse_content(&rows, None) else {
            panic!("a span of 2 billion cells was read")
        };
        assert!(
            said.contains("BXX1000000") && said.contains("export the used range as CSV"),
            "{said}"
        );
        let long = "x".repeat(1 << 20);
        let wide = doc(&format!(
            r#"<table:table table:name="A"><table:table-row><table:table-cell table:number-columns-repeated="16384" office:value-type="string"><text:p>{long}</text:p></table:table-cell></table:table-row></table:table>"#
        ));
        assert!(parse_content(&wide, None).is_err());
        // A filled row repeated a thousand times, as LibreOffice writes identical rows, is read.
        let fine = doc(
            r#"<table:table table:name="A"><table:table-row table:number-rows-repeated="1000"><table:table-cell office:value-type="string"><text:p>x</text:p></table:table-cell></table:table-row></table:table>"#,
        );
        assert_eq!(parse_content(&fine, None).expect("parses").grid.rows(), 1000);
    }

    #[test]
    fn merged_cells_carry_their_value() {
        let xml = doc(r#"<table:table table:name="A">
              <table:table-row><table:table-cell table:number-rows-spanned="3" office:value-type="string"><text:p>m</text:p></table:table-cell><table:table-cell office:value-type="string"><text:p>a</text:p></table:table-cell></table:table-row>
              <table:table-row><table:covered-table-cell/><table:table-cell office:value-type="string"><text:p>b</text:p></table:table-cell></table:table-row>
              <table:table-row><table:covered-table-cell/><table:table-cell office:value-type="string"><text:p>c</text:p></table:table-cell></table:table-row>
            </table:table>"#);
        let wb = parse_content(&xml, None).expect("parses");
        assert_eq!(wb.grid.get(2, 0).map(|c| c.text.as_str()), Some("m"));
        assert!(wb.grid.get(2, 0).is_some_and(|c| c.merged_from == Some((0, 0))));
        let across = doc(r#"<table:table table:name="A">
              <table:table-row><table:table-cell table:number-columns-spanned="2" table:number-rows-spanned="2" office:value-type="string"><text:p>w</text:p></table:table-cell><table:covered-table-cell/></table:table-row>
              <table:table-row><table:covered-table-cell table:number-columns-repeated="2"/></table:table-row>
            </table:table>"#);
        let wb = parse_content(&across, None).expect("parses");
        assert_eq!(
            wb.grid.merges(),
            [Merge {
                first: (0, 0),
                last: (1, 1)
            }]
        );
    }

    #[test]
    fn a_date_shown_without_its_time_reads_as_the_day() {
        let xml = doc(r#"<table:table table:name="A"><table:table-row>
              <table:table-cell office:value-type="date" office:date-value="2016-10-20T00:00:00"><text:p>10/20/2016</text:p></table:table-cell>
              <table:table-cell office:value-type="date" office:date-value="2016-10-20T09:30:00"><text:p>10/20/2016 09:30</text:p></table:table-cell>
            </table:table-row></table:table>"#);
        let wb = parse_content(&xml, None).expect("parses");
        assert_eq!(wb.grid.get(0, 0).map(Cell::display), Some("2016-10-20"));
        assert_eq!(wb.grid.get(0, 1).map(Cell::display), Some("2016-10-20 09:30:00"));
    }
}
