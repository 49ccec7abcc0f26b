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

#[test]
fn dump() {
    for f in [
        "typed-lo.xlsx",
        "typed-lo.ods",
        "typed-lo.csv",
        "typed-gnumeric.xlsx",
        "typed-gnumeric.ods",
        "typed-gnumeric.csv",
        "typed-lo-utf16.csv",
        "typed-lo-cp1252.csv",
        "errors-lo.xlsx",
        "errors-gnumeric.ods",
        "errors-lo.csv",
        "layout-lo.xlsx",
        "layout-gnumeric.ods",
    ] {
        match load(f, None) {
            Ok(p) => {
                println!("== {f}: ok");
                for j in &p.jobs {
                    println!(
                        "  {} {} {:?} {:?} {:?}",
                        j.id, j.name, j.request.ratio, j.request.prompt, j.request.duration
                    );
                }
                for w in &p.warnings {
                    println!("  W {w}");
                }
            }
            Err(e) => println!("== {f}: ERR\n{e}"),
        }
    }
    for f in [
        "layout-lo.xlsx",
        "layout-gnumeric.xlsx",
        "layout-lo.ods",
        "layout-gnumeric.ods",
    ] {
        for s in ["Grouped", "Jobs"] {
            match load(f, Some(s)) {
                Ok(p) => {
                    println!("== {f} {s}: ok");
                    for j in &p.jobs {
                        println!("  {} {}", j.id, j.request.model);
                    }
                }
                Err(e) => println!("== {f} {s}: ERR\n{e}"),
            }
        }
    }
}
