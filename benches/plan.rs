//! Benchmark (not a timed test): validates and plans 100,000 rows with `load_plan`, from a CSV
//! and from an XLSX holding the same rows (written here by a small writer: shared strings,
//! numbers as numbers), and prints the elapsed times and the peak resident memory (VmHWM).
//! Run: `cargo bench --bench plan`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use vidbatch::manifest::{Inputs, load_plan};

const ROWS: usize = 100_000;

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// CPU time of this process so far, all threads (utime + stime of /proc/self/stat, in clock
/// ticks of 1/100 s), in seconds.
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let ticks = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// The benchmark's rows: header, then `ROWS` rows of cells (numbers where a sheet would hold them).
fn rows() -> (Vec<&'static str>, Vec<Vec<Cell>>) {
    let header = vec![
        "id",
        "model",
        "prompt",
        "duration",
        "ratio",
        "resolution",
        "first_frame",
        "animal",
        "notes",
    ];
    let models = ["seedance-1.5-pro", "seedance-2.0", "seedance-2.0-fast"];
    let ratios = ["16:9", "9:16", "1:1", "4:3"];
    let animals = ["fox", "owl", "cat", "dog", "heron"];
    let rows = (0..ROWS)
        .map(|i| {
            let first = if i % 3 == 0 {
                format!("https://cdn.example.com/frames/{i}.png")
            } else {
                String::new()
            };
            let id = if i % 2 == 0 {
                format!("shot-{i:06}")
            } else {
                String::new()
            };
            vec![
                Cell::Text(id),
                Cell::Text(models[i % 3].into()),
                Cell::Text(format!(
                    "A {{animal}} walking, take {i}, cinematic, \"golden\" hour"
                )),
                Cell::Number((4 + i % 8) as f64),
                Cell::Text(ratios[i % 4].into()),
                Cell::Text(if i % 2 == 0 { "480p" } else { "720p" }.into()),
                Cell::Text(first),
                Cell::Text(animals[i % 5].into()),
                Cell::Text(format!("note {i}")),
            ]
        })
        .collect();
    (header, rows)
}

/// One cell of the benchmark's sheet.
enum Cell {
    Text(String),
    Number(f64),
}

fn write_csv(path: &Path, header: &[&str], rows: &[Vec<Cell>]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "{}", header.join(","))?;
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| match c {
                Cell::Number(n) => n.to_string(),
                Cell::Text(t) if t.contains([',', '"', '\n']) => format!("\"{}\"", t.replace('"', "\"\"")),
                Cell::Text(t) => t.clone(),
            })
            .collect();
        writeln!(f, "{}", cells.join(","))?;
    }
    f.flush()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Column letters of 0-based column `c` (A..Z is enough here).
fn col(c: usize) -> char {
    (b'A' + c as u8) as char
}

/// A minimal XLSX of one sheet, as spreadsheet programs write it: text in the shared-strings
/// table, numbers as numbers, empty cells left out.
fn write_xlsx(path: &Path, header: &[&str], rows: &[Vec<Cell>]) -> Result<(), Box<dyn std::error::Error>> {
    use zip::write::SimpleFileOptions;
    let mut strings: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut sst = |s: &str| -> usize {
        if let Some(&i) = index.get(s) {
            return i;
        }
        strings.push(s.to_string());
        index.insert(s.to_string(), strings.len() - 1);
        strings.len() - 1
    };
    let mut sheet = String::with_capacity(rows.len() * 400);
    sheet.push_str(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#);
    sheet.push_str(
        r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    sheet.push_str(r#"<row r="1">"#);
    for (c, h) in header.iter().enumerate() {
        sheet.push_str(&format!(r#"<c r="{}1" t="s"><v>{}</v></c>"#, col(c), sst(h)));
    }
    sheet.push_str("</row>");
    for (r, row) in rows.iter().enumerate() {
        let r = r + 2;
        sheet.push_str(&format!(r#"<row r="{r}">"#));
        for (c, cell) in row.iter().enumerate() {
            match cell {
                Cell::Text(t) if t.is_empty() => {}
                Cell::Text(t) => {
                    sheet.push_str(&format!(r#"<c r="{}{r}" t="s"><v>{}</v></c>"#, col(c), sst(t)))
                }
                Cell::Number(n) => sheet.push_str(&format!(r#"<c r="{}{r}"><v>{n}</v></c>"#, col(c))),
            }
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    let mut shared = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{0}" uniqueCount="{0}">"#,
        strings.len()
    );
    for s in &strings {
        shared.push_str(&format!("<si><t>{}</t></si>", xml_escape(s)));
    }
    shared.push_str("</sst>");
    let parts: [(&str, String); 6] = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>"#.into(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.into(),
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Prompts" sheetId="1" r:id="rId1"/></sheets></workbook>"#.into(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#.into(),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
        ("xl/sharedStrings.xml", shared),
    ];
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path)?);
    for (name, text) in parts {
        zip.start_file(name, SimpleFileOptions::default())?;
        zip.write_all(text.as_bytes())?;
    }
    zip.finish()?;
    Ok(())
}

/// Plans `path` three times and prints each time; returns the best.
fn bench(label: &str, path: PathBuf) -> Result<f64, Box<dyn std::error::Error>> {
    let size = std::fs::metadata(&path)?.len();
    let args = Inputs {
        manifests: vec![path],
        ..Default::default()
    };
    let before = vm_hwm();
    let mut best = f64::INFINITY;
    for run in 1..=3 {
        let (t, c) = (Instant::now(), cpu_s());
        let plan = load_plan(&args).map_err(|e| e.to_string())?;
        let (elapsed, cpu) = (t.elapsed(), cpu_s() - c);
        best = best.min(elapsed.as_secs_f64());
        println!(
            "{label} run {run}: {} rows ({:.1} MB {label}) -> {} jobs, {} warnings, validated and planned in {:.3} s \
             ({cpu:.3} s CPU, all threads; total estimated tokens {:?})",
            ROWS,
            size as f64 / 1e6,
            plan.jobs.len(),
            plan.warnings.len(),
            elapsed.as_secs_f64(),
            plan.total_tokens()
        );
        if run == 1 {
            println!(
                "{label}: peak RSS after run 1 (VmHWM): {} (before load_plan: {before})",
                vm_hwm()
            );
        }
    }
    Ok(best)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (header, rows) = rows();
    let csv = dir.path().join("big.csv");
    write_csv(&csv, &header, &rows)?;
    let xlsx = dir.path().join("big.xlsx");
    write_xlsx(&xlsx, &header, &rows)?;
    drop(rows);
    let csv_best = bench("CSV", csv)?;
    let xlsx_best = bench("XLSX", xlsx)?;
    println!(
        "best of 3: CSV {csv_best:.3} s{}, XLSX {xlsx_best:.3} s",
        if csv_best < 1.0 {
            " (under 1 s)"
        } else {
            " (OVER the 1 s goal)"
        }
    );
    println!("peak RSS (VmHWM): {}", vm_hwm());
    Ok(())
}
