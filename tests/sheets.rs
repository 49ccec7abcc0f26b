//! Sheets as people make them: the same typed data from LibreOffice Calc and Gnumeric, as
//! XLSX, ODS and CSV, must give the same plan; formula errors, merges, the wrong sheet or
//! header row, and legacy encodings give the errors and notes a person can act on.

use std::path::{Path, PathBuf};

use vidbatch::manifest::{Diagnostics, ManifestArgs, Plan, load_plan};

const DIR: &str = "tests/fixtures/sheets";

fn fixture(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn load(name: &str, sheet: Option<&str>) -> Result<Plan, Diagnostics> {
    load_plan(&ManifestArgs {
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
        first.ratio.as_deref(),
        Some("16:9"),
        "a ratio typed 16:9 and stored as a time"
    );
    assert_eq!(first.prompt, "Café terrace at dawn, 12.50% off, budget 1,234,567");
    assert_eq!(p.jobs[2].request.ratio.as_deref(), Some("4:3"));
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
    ] {
        out.push_str(&errors(f, sheet));
        out.push_str("\n\n");
    }
    insta::assert_snapshot!(out);
}
