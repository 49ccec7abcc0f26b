//! Bounds on what the command line and manifests can ask for: durations that would overflow a
//! deadline are refused, and `run --dry-run` costs what `plan` costs.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn vidbatch(args: &[&str], cwd: &Path) -> Output {
    crate::util::std_bin()
        .args(args)
        .current_dir(cwd)
        .env_remove("ALLTOKEN_API_KEY")
        .env("VIDBATCH_PROGRESS", "never")
        .output()
        .expect("vidbatch ran")
}

fn small_manifest(dir: &Path) {
    std::fs::write(
        dir.join("m.yaml"),
        "version: 1\ndefaults:\n  model: seedance-2.0\n  duration: 5\njobs:\n  - prompt: A cat\n",
    )
    .expect("write");
}

#[test]
fn job_timeout_of_500000000000_years_is_refused_with_exit_2_not_a_panic() {
    let d = tempfile::tempdir().expect("tmp");
    small_manifest(d.path());
    for flag in ["--job-timeout", "--poll-interval", "--request-timeout"] {
        let out = vidbatch(
            &["run", "m.yaml", "--sim", "--out", "out", flag, "500000000000y"],
            d.path(),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains("365 days"), "{flag}: {err}");
        assert!(!err.contains("panicked"), "{flag}: {err}");
    }
    // Past u64 seconds: humantime's own error, still exit 2.
    let out = vidbatch(
        &["run", "m.yaml", "--sim", "--job-timeout", "99999999999999999999y"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    // The simulator's durations too.
    let out = vidbatch(
        &["sim", "--listen", "127.0.0.1:0", "--asset-ttl", "500000000000y"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn manifest_job_timeout_past_the_maximum_is_a_validation_error() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(
        d.path().join("m.yaml"),
        "version: 1\nrun:\n  job_timeout: 500000000000y\ndefaults:\n  model: seedance-2.0\njobs:\n  - prompt: A cat\n",
    )
    .expect("write");
    let out = vidbatch(&["validate", "m.yaml"], d.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("run.job_timeout") && err.contains("365 days"),
        "{err}"
    );
}

#[test]
fn a_job_timeout_of_365_days_runs() {
    let d = tempfile::tempdir().expect("tmp");
    small_manifest(d.path());
    let out = vidbatch(
        &[
            "run",
            "m.yaml",
            "--dry-run",
            "--job-timeout",
            "365days",
            "--poll-interval",
            "365days",
        ],
        d.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_dry_run_costs_what_plan_costs() {
    let d = tempfile::tempdir().expect("tmp");
    let mut csv = String::from("prompt,model,duration\n");
    for i in 0..60_000 {
        csv.push_str(&format!("take {i} of a cat,seedance-2.0,5\n"));
    }
    std::fs::write(d.path().join("big.csv"), csv).expect("write");
    let t = Instant::now();
    let plan = vidbatch(&["plan", "big.csv"], d.path());
    let plan_time = t.elapsed();
    assert_eq!(plan.status.code(), Some(0));
    let t = Instant::now();
    let dry = vidbatch(&["run", "big.csv", "--dry-run", "--out", "out"], d.path());
    let dry_time = t.elapsed();
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("dry run: 60000 jobs would run"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    // The quadratic dry run took many times as long as the plan on this many rows.
    assert!(
        dry_time < plan_time * 2 + Duration::from_secs(1),
        "dry run {dry_time:?} against plan {plan_time:?}"
    );
    // A shard shows only its own jobs.
    let dry = vidbatch(&["run", "big.csv", "--dry-run", "--shard", "1/2"], d.path());
    let text = String::from_utf8_lossy(&dry.stdout);
    let n: usize = text
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("dry run: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("count line");
    assert!(n > 25_000 && n < 35_000, "{n}");
}
