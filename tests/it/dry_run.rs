//! `run --dry-run` reads the out dir's state and says what the run would really do with each
//! job (skip, poll, fetch again, retry only with `--retry-failed`, send, blocked) and the
//! tokens it would spend, sending nothing. The real binary against the simulator.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;
use vidbatch_sim::{SimConfig, SimHandle};

const TOKENS_PER_JOB: u64 = 48_600;

fn manifest(dir: &Path, jobs: usize) -> std::path::PathBuf {
    crate::util::matrix_manifest(dir, &format!("m{jobs}.yaml"), "d", "dry shot", jobs, "")
}

async fn finish(mut cmd: Command) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(120), cmd.status())
        .await
        .expect("the run ended in time")
        .expect("vidbatch ran")
        .code()
}

/// `run --dry-run` of `m` into `out` (plus `extra`): its stdout; checks that nothing was sent.
/// API requests the simulator has answered, all keys and endpoints.
fn requests(sim: &SimHandle) -> u64 {
    sim.stats().requests.values().flat_map(|by| by.values()).sum()
}

async fn dry_run(sim: &SimHandle, m: &Path, out: &Path, extra: &[&str]) -> String {
    let before = requests(sim);
    let mut cmd = crate::util::vidbatch_run(m, out, sim, "dry-key", "auto");
    cmd.arg("--dry-run")
        .args(extra)
        .stdout(std::process::Stdio::piped());
    let o = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the dry run ended in time")
        .expect("vidbatch ran");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(requests(sim), before, "a dry run sent a request");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The count on the breakdown line that contains `label` (0 when the line is absent).
fn count(text: &str, label: &str) -> usize {
    text.lines()
        .find(|l| l.contains(label))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The closing line's counts: (jobs that would run, creates, tokens).
fn closing(text: &str) -> (usize, usize, u64) {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("dry run: "))
        .unwrap_or_else(|| panic!("no closing line: {text}"));
    // "dry run: N jobs would run into OUT (C creates, about T tokens); nothing was sent"
    let number = |text: &str| -> u64 {
        text.split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no number in {line}"))
    };
    let jobs = number(&line["dry run: ".len()..]);
    let counts = line.rsplit_once(" (").map_or("", |(_, c)| c);
    let (creates, tokens) = counts
        .split_once(", about ")
        .unwrap_or_else(|| panic!("no counts in {line}"));
    (jobs as usize, number(creates) as usize, number(tokens))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reads_the_state_and_says_what_the_run_would_really_do() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.01,
        rpm: 0,
        seed: 9,
        ..SimConfig::default()
    })
    .await;
    let out = dir.path().join("out");
    let (m4, m6, m7) = (
        manifest(dir.path(), 4),
        manifest(dir.path(), 6),
        manifest(dir.path(), 7),
    );

    // No state: every job would be sent.
    let text = dry_run(&sim, &m4, &out, &[]).await;
    assert_eq!(closing(&text), (4, 4, 4 * TOKENS_PER_JOB), "{text}");

    // After a complete run: nothing left to do, no tokens.
    let run = |m: &Path| crate::util::vidbatch_run(m, &out, &sim, "dry-key", "auto");
    assert_eq!(finish(run(&m4)).await, Some(0));
    let text = dry_run(&sim, &m4, &out, &[]).await;
    assert_eq!(closing(&text), (0, 0, 0), "{text}");
    assert_eq!(count(&text, "skip (done"), 4, "{text}");

    // A video gone from disk is fetched again (no new task); two new jobs are sent.
    std::fs::remove_file(out.join("videos/d-01.mp4")).expect("remove a video");
    let text = dry_run(&sim, &m6, &out, &[]).await;
    assert_eq!(count(&text, "skip (done"), 3, "{text}");
    assert_eq!(count(&text, "fetch again"), 1, "{text}");
    assert_eq!(count(&text, "send (new)"), 2, "{text}");
    assert_eq!(closing(&text), (3, 2, 2 * TOKENS_PER_JOB), "{text}");

    // The two new jobs fail: left failed, and retried (and paid) only with --retry-failed.
    sim.update(|c| c.fail_rate = 1.0);
    assert_eq!(finish(run(&m6)).await, Some(1));
    let text = dry_run(&sim, &m6, &out, &[]).await;
    assert_eq!(count(&text, "skip (done"), 4, "{text}");
    assert_eq!(count(&text, "leave failed"), 2, "{text}");
    assert_eq!(closing(&text), (0, 0, 0), "{text}");
    let text = dry_run(&sim, &m6, &out, &["--retry-failed"]).await;
    assert_eq!(count(&text, "retry (failed"), 2, "{text}");
    assert_eq!(closing(&text), (2, 2, 2 * TOKENS_PER_JOB), "{text}");

    // A task still on the server is polled, never sent again.
    sim.update(|c| {
        c.fail_rate = 0.0;
        c.gen_time = Some(Duration::from_secs(100_000));
    });
    let created = sim.stats().tasks_created;
    let mut child = run(&m7).spawn().expect("spawn");
    let code = crate::util::interrupt_once_created(&mut child, &sim, created).await;
    assert_eq!(code, Some(130));
    let text = dry_run(&sim, &m7, &out, &[]).await;
    assert_eq!(count(&text, "poll (a task"), 1, "{text}");
    assert_eq!(closing(&text), (1, 0, 0), "{text}");

    // Jobs of the state that the plan no longer has are kept, untouched.
    let text = dry_run(&sim, &m4, &out, &[]).await;
    assert_eq!(count(&text, "keep, untouched"), 3, "{text}");
    assert_eq!(closing(&text), (0, 0, 0), "{text}");
}
