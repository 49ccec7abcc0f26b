//! Benchmark (not a timed test): validates and plans a 100,000-row CSV with `load_plan` and
//! prints the elapsed time and the peak resident memory (VmHWM). Run: `cargo bench --bench plan`.

use std::io::Write;
use std::time::Instant;

use vidbatch::manifest::{ManifestArgs, load_plan};

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(
        f,
        "id,model,prompt,duration,ratio,resolution,first_frame,animal,notes"
    )?;
    let models = ["seedance-1.5-pro", "seedance-2.0", "seedance-2.0-fast"];
    let ratios = ["16:9", "9:16", "1:1", "4:3"];
    let animals = ["fox", "owl", "cat", "dog", "heron"];
    for i in 0..ROWS {
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
        writeln!(
            f,
            "{id},{},\"A {{animal}} walking, take {i}, cinematic, \"\"golden\"\" hour\",{},{},{},{first},{},note {i}",
            models[i % 3],
            4 + i % 8,
            ratios[i % 4],
            if i % 2 == 0 { "480p" } else { "720p" },
            animals[i % 5],
        )?;
    }
    f.flush()?;
    drop(f);
    let size = std::fs::metadata(&path)?.len();
    let args = ManifestArgs {
        manifests: vec![path],
        ..Default::default()
    };
    let before = vm_hwm();
    for run in 1..=3 {
        let (t, c) = (Instant::now(), cpu_s());
        let plan = load_plan(&args).map_err(|e| e.to_string())?;
        let (elapsed, cpu) = (t.elapsed(), cpu_s() - c);
        println!(
            "run {run}: {} rows ({:.1} MB CSV) -> {} jobs, {} warnings, validated and planned in {:.3} s \
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
                "peak RSS after run 1 (VmHWM): {} (before load_plan: {before})",
                vm_hwm()
            );
        }
    }
    println!("peak RSS (VmHWM): {}", vm_hwm());
    Ok(())
}
