//! Sheets as people make them: the same typed data from LibreOffice Calc and Gnumeric, as
//! XLSX, ODS and CSV, must give the same plan; formula errors, merges (down and across), the
//! wrong sheet or header row, Gnumeric's default and raw CSV exports, and legacy encodings give
//! the errors and notes a person can act on; workbooks saved by Excel read as Excel shows them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vidbatch::manifest::sheet::{Table, read_sheet};
use vidbatch::manifest::{Diagnostics, Inputs, Plan, load_plan};

const DIR: &str = "tests/fixtures/sheets";

fn fixture(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn load(name: &str, sheet: Option<&str>) -> Result<Plan, Diagnostics> {
    load_plan(&Inputs {
        manifests: vec![fixture(name)],
        sheet: sheet.map(str::to_string),
        ..Default::default()
    })
}

fn errors(name: &str, sheet: Option<&str>) -> String {
    match load(name, sheet) {
        Ok(_) => panic!("{name}: expected errors"),
        Err(e) => e.to_string(),
    }
}

/// What a plan is made of: ids, file names and requests.
fn shape(p: &Plan) -> Vec<(String, String, String)> {
    p.jobs
        .iter()
        .map(|j| {
            let req = serde_json::to_string(&j.request).expect("json");
            (j.id.clone(), j.output_file(), req)
        })
        .collect()
}

const APPS: [&str; 2] = ["lo", "gnumeric"];

#[test]
fn typed_data_gives_one_plan_from_every_app_and_format() {
    let want = shape(&load("typed-lo.xlsx", None).unwrap_or_else(|e| panic!("{e}")));
    let ids: Vec<&str> = want.iter().map(|(i, _, _)| i.as_str()).collect();
    assert_eq!(ids, ["007", "012", "003"], "ids formatted 000 read as shown");
    assert_eq!(
        want[0].1, "videos/2024-03-15-007.mp4",
        "a date in a name reads as its ISO date"
    );
    let p = load("typed-lo.xlsx", None).expect("plan");
    let first = &p.jobs[0].request;
    assert_eq!(
        first.ratio.map(|r| r.as_str()),
        Some("16:9"),
        "a ratio typed 16:9 and stored as a time"
    );
    assert_eq!(first.prompt, "Café terrace at dawn, 12.50% off, budget 1,234,567");
    assert_eq!(p.jobs[2].request.ratio.map(|r| r.as_str()), Some("4:3"));
    assert_eq!(p.jobs[1].request.duration, Some(4));
    for app in APPS {
        for ext in ["xlsx", "ods", "csv"] {
            let f = format!("typed-{app}.{ext}");
            let got = shape(&load(&f, None).unwrap_or_else(|e| panic!("{f}: {e}")));
            assert_eq!(got, want, "{f}");
        }
    }
    let utf16 = shape(&load("typed-lo-utf16.csv", None).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(utf16, want, "UTF-16 with a BOM is decoded");
}

#[test]
fn a_ratio_that_became_a_time_is_a_warning_saying_how_to_keep_it() {
    for f in [
        "typed-lo.xlsx",
        "typed-lo.ods",
        "typed-lo.csv",
        "typed-gnumeric.xlsx",
    ] {
        let p = load(f, None).unwrap_or_else(|e| panic!("{f}: {e}"));
        let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
        assert!(
            w.iter().any(
                |w| w.contains("row 2, column `ratio`: warning: the cell holds the time")
                    && w.contains("read as the ratio 16:9")
                    && w.contains("format the ratio column as Text")
            ),
            "{f}: {w:?}"
        );
    }
}

#[test]
fn formula_errors_are_errors_naming_sheet_cell_and_error() {
    for app in APPS {
        for ext in ["xlsx", "ods"] {
            let f = format!("errors-{app}.{ext}");
            let e = errors(&f, None);
            assert!(
                e.contains(
                    "row 3, column `prompt`: error: cell C3 of sheet `Jobs` shows the formula error #N/A"
                ),
                "{f}: {e}"
            );
            assert!(
                e.contains("row 4, column `id`: error: cell A4 of sheet `Jobs` shows the formula error #N/A"),
                "{f}: {e}"
            );
            assert!(
                e.contains("cell C5 of sheet `Jobs` shows the formula error #DIV/0!"),
                "{f}: {e}"
            );
            assert!(e.contains("3 errors"), "{f}: {e}");
        }
        let f = format!("errors-{app}.csv");
        let e = errors(&f, None);
        assert!(
            e.contains("row 4, column `id`: error: cell A4 shows the formula error #N/A"),
            "{f}: {e}"
        );
        assert!(e.contains("3 errors"), "{f}: {e}");
    }
}

#[test]
fn merged_cells_carry_their_value_down() {
    for app in APPS {
        for ext in ["xlsx", "ods"] {
            let f = format!("layout-{app}.{ext}");
            let p = load(&f, Some("Jobs")).unwrap_or_else(|e| panic!("{f}: {e}"));
            let models: Vec<&str> = p.jobs.iter().map(|j| j.request.model.as_str()).collect();
            assert_eq!(models, ["seedance-2.0"; 3], "{f}");
        }
        // a CSV export keeps the value in the first row only: the rows below say what is missing
        let e = errors(&format!("layout-{app}.csv"), None);
        assert!(
            e.contains("rows 3–4: error: field `model` is empty; add a model column"),
            "{app}: {e}"
        );
    }
}

#[test]
fn a_cell_merged_across_two_fields_is_an_error_naming_the_merge() {
    for app in APPS {
        for ext in ["xlsx", "ods"] {
            let f = format!("merges-{app}.{ext}");
            let e = errors(&f, Some("Across"));
            assert!(
                e.contains("row 2, column `model`: error: cells B2:C2 of sheet `Across` are merged into one cell across `model` and `prompt`: its value `A fox in the snow` would be read for `model` only")
                    && e.contains("unmerge B2:C2 and type each field's value in its own cell")
                    && e.contains("row 2 is not read"),
                "{f}: {e}"
            );
            assert!(e.contains("1 error,"), "{f}: {e}");
            let e = errors(&f, Some("Block"));
            assert!(
                e.contains("row 2, column `prompt`: error: cells C2:D4 of sheet `Block` are merged into one cell across `prompt` and `ratio`: its value `A heron at dawn` would be read for `prompt` only")
                    && e.contains("rows 2–4 are not read"),
                "{f}: {e}"
            );
            assert!(e.contains("1 error,"), "{f}: {e}");
        }
    }
}

#[test]
fn merged_comment_rows_and_a_wide_prompt_read_as_the_csv_export() {
    let want = shape(&load("merges-lo.csv", None).unwrap_or_else(|e| panic!("{e}")));
    let ids: Vec<&str> = want.iter().map(|(i, _, _)| i.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(
        want[0].2.contains("A fox crossing a wide snowy field"),
        "{want:?}"
    );
    for app in APPS {
        for ext in ["xlsx", "ods", "csv"] {
            let f = format!("merges-{app}.{ext}");
            let sheet = (ext != "csv").then_some("Jobs");
            let got = shape(&load(&f, sheet).unwrap_or_else(|e| panic!("{f}: {e}")));
            assert_eq!(got, want, "{f}");
        }
    }
}

#[test]
fn gnumeric_default_csv_reads_ratios_and_says_why_a_date_breaks_a_name() {
    // `ssconvert x.gnumeric x.csv` writes the time 16:09 as 16:09:00 and the date as 2024/03/15
    let e = errors("typed-gnumeric-default.csv", None);
    assert!(
        e.contains(
            "row 2, column `ratio`: warning: the cell holds the time `16:09:00`: read as the ratio 16:9"
        ),
        "{e}"
    );
    assert!(
        e.contains("field `name`: found `2024/03/15-7` (the character `/` is not allowed)")
            && e.contains("the variable `day` holds the date `2024/03/15`, written with `/`: format the day column as Text or as YYYY-MM-DD")
            && e.contains("export the CSV with the cells as shown"),
        "{e}"
    );
    assert!(e.contains("3 errors"), "{e}");
}

#[test]
fn gnumeric_raw_csv_reads_a_time_written_as_a_fraction_of_a_day_as_the_ratio() {
    // `format=raw` writes the time 16:09 as 0.67291666666666666665
    let p = load("typed-gnumeric-raw.csv", None).unwrap_or_else(|e| panic!("{e}"));
    let typed = load("typed-lo.xlsx", None).unwrap_or_else(|e| panic!("{e}"));
    let ratios = |p: &Plan| -> Vec<Option<String>> {
        p.jobs
            .iter()
            .map(|j| j.request.ratio.map(|r| r.to_string()))
            .collect()
    };
    assert_eq!(ratios(&p), ratios(&typed));
    assert_eq!(ratios(&p)[0].as_deref(), Some("16:9"));
    let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(|w| w.contains(
            "row 2, column `ratio`: warning: the cell holds `0.67291666666666666665`, the time 16:09 as a fraction of a day: read as the ratio 16:9"
        ) && w.contains("format the ratio column as Text")),
        "{w:?}"
    );
    assert_eq!(w.len(), 3, "{w:?}");
}

/// An Excel-made workbook of tests/fixtures/excel read with vidbatch's reader: the table and
/// the messages.
fn read_excel(name: &str, sheet: &str) -> (Option<Table>, Vec<String>) {
    let mut d = Vec::new();
    let path = Path::new("tests/fixtures/excel").join(name);
    let t = read_sheet(&path, &Arc::from(name), Some(sheet), &mut d);
    (t, d.iter().map(ToString::to_string).collect())
}

/// Column `c` of a table: the header, then every data row.
fn column(t: &Table, c: usize) -> Vec<String> {
    std::iter::once(t.headers[c].to_string())
        .chain((0..t.len()).map(|r| t.cell(r, c).to_string()))
        .collect()
}

#[test]
fn excel_made_workbooks_read_as_excel_shows_them() {
    // calamine's tests: Float(1.), Float(1.5), String("ab"), Bool(false), String("test"), and
    // the date 2016-10-20 (shown by Excel as 10/20/2016)
    for f in ["issues.xlsx", "issues.ods"] {
        let (t, d) = read_excel(f, "datatypes");
        assert!(d.is_empty(), "{f}: {d:?}");
        let t = t.unwrap_or_else(|| panic!("{f}: no table"));
        assert_eq!(
            column(&t, 0),
            ["1", "1.5", "ab", "FALSE", "test", "2016-10-20"],
            "{f}"
        );
    }
    // calamine's error_file test: Div0, Name, Value, Null, Ref, Num, NA in A1:A7 of Feuil1
    let (_, d) = read_excel("errors.xlsx", "Feuil1");
    let shown: Vec<&str> = d
        .iter()
        .filter_map(|m| m.split("shows the formula error ").nth(1))
        .map(|m| m.split([';', ' ']).next().unwrap_or(""))
        .collect();
    assert_eq!(
        shown,
        ["#DIV/0!", "#NAME?", "#VALUE!", "#NULL!", "#REF!", "#NUM!", "#N/A"],
        "{d:?}"
    );
    assert!(d[0].contains("cell A1 of sheet `Feuil1`"), "{d:?}");
    assert_eq!(d.len(), 8, "{d:?}");
    assert!(
        d[7].contains("no header row: each row of sheet `Feuil1` that holds values shows a formula error"),
        "{d:?}"
    );
    // numbers in the formats 0.00 (built-in 2) and 0.0000: B2 1.5, P2 12.618328720000001
    let (t, d) = read_excel("strict_iso_paths.xlsx", "ml_out");
    let t = t.unwrap_or_else(|| panic!("strict_iso_paths.xlsx: {d:?}"));
    assert_eq!((t.cell(0, 1), t.cell(0, 15)), ("1.50", "12.6183"));
    assert_eq!(t.cell(0, 2), "7");
}

#[test]
fn an_excel_block_merged_across_a_named_column_is_an_error() {
    // calamine's merge_cells_by_sheet_name_xlsx test: A1:B1, A2:A4, B2:D4
    let (t, d) = read_excel("merge_cells.xlsx", "Sheet1");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].contains("row 2: error: cells B2:D4 of sheet `Sheet1` are merged into one cell across column B (no header), `Not Merged` and column D (no header): its value `Chunk Merged` would be read for column B only"),
        "{d:?}"
    );
    let t = t.expect("the header is read");
    assert_eq!(
        &*t.headers[0], "Row Merge",
        "a header merged across is the header"
    );
    assert_eq!(t.len(), 0, "rows 2–4 are not read");
}

#[test]
fn the_wrong_sheet_names_the_sheet_read_and_the_others() {
    for f in ["layout-lo.xlsx", "layout-gnumeric.ods"] {
        let e = errors(f, None);
        assert!(
            e.contains("row 1: error: the header (row 1 of sheet `Notes`: `Shots for the March campaign`) names no job field")
                && e.contains("the workbook also has `Grouped`, `Jobs`: choose one with `sheet:` under `rows:` or `--sheet`"),
            "{f}: {e}"
        );
        assert!(e.contains("1 error,"), "{f}: {e}");
    }
}

#[test]
fn a_group_header_above_the_header_shows_the_row_that_looks_like_it() {
    for f in [
        "layout-lo.xlsx",
        "layout-gnumeric.xlsx",
        "layout-lo.ods",
        "layout-gnumeric.ods",
    ] {
        let e = errors(f, Some("Grouped"));
        assert!(
            e.contains("row 2 looks like the header (id, prompt, model, duration): delete the rows above it"),
            "{f}: {e}"
        );
        assert!(e.contains("1 error,"), "{f}: {e}");
    }
}

#[test]
fn a_legacy_encoding_is_one_error_naming_the_byte() {
    for app in APPS {
        let f = format!("typed-{app}-cp1252.csv");
        let e = errors(&f, None);
        assert!(
            e.contains(&format!("typed-{app}-cp1252.csv: error: not UTF-8: byte 0xE9 (`é` in Latin-1 and Windows-1252) at line 2")),
            "{f}: {e}"
        );
        assert!(e.contains("1 error,"), "{f}: {e}");
    }
}

#[test]
fn snapshot_sheet_errors() {
    let mut out = String::new();
    for (f, sheet) in [
        ("errors-lo.xlsx", None),
        ("errors-gnumeric.csv", None),
        ("layout-lo.ods", None),
        ("layout-gnumeric.xlsx", Some("Grouped")),
        ("layout-lo.csv", None),
        ("typed-gnumeric-cp1252.csv", None),
        ("merges-gnumeric.xlsx", Some("Across")),
        ("merges-lo.ods", Some("Block")),
        ("typed-gnumeric-default.csv", None),
    ] {
        out.push_str(&errors(f, sheet));
        out.push_str("\n\n");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn a_stray_value_far_from_the_data_is_refused_naming_its_cell_not_read_whole() {
    // One job, and a value left in IV65536: the sheet spans 16.7 million cells, which the XLSX
    // reader would allocate whole (at XFD1048576, 17 billion: the process was killed).
    let said = errors("stray-cell-gnumeric.xlsx", None);
    assert!(
        said.contains("stray-cell-gnumeric.xlsx")
            && said.contains("reach IV65536")
            && said.contains("export the used range as CSV"),
        "{said}"
    );
}
