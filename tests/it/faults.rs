//! The fault matrix: the real `vidbatch` binary against the simulator with each fault mode
//! alone, then all at once, and against a full disk and an unwritable out dir.
//!
//! Every case ends with: no task created twice (the simulator counts), every job either done
//! with a valid file whose sha256 the report and the state agree on, or failed with a stated
//! reason; the report agreeing with `state.jsonl`; no `.part` left; and the exit code SPEC
//! gives (0 all done, 1 some failed).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::util::output;
use tokio::process::Command;
use vidbatch::download::{MediaKind, verify_file};
use vidbatch::journal;
use vidbatch::outdir;
use vidbatch::report::job_state_name;
use vidbatch::state::Phase;
use vidbatch_sim::{SimConfig, SimHandle};

const JOBS: usize = 14;

/// A manifest of `jobs` jobs that differ only in their prompt.
fn manifest(dir: &Path, tag: &str, jobs: usize) -> PathBuf {
    crate::util::matrix_manifest(
        dir,
        &format!("{tag}.yaml"),
        tag,
        &format!("fault matrix {tag} shot"),
        jobs,
        "",
    )
}

fn vidbatch(sim: &SimHandle, manifest: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.arg("run")
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .args(["--poll-interval", "40ms", "--rpm", "60000", "--burst", "50"])
        .args(["--concurrency", "8", "--progress", "never"])
        .args(extra)
        .env("VIDBATCH_MAX_RETRIES", "8")
        .env("VIDBATCH_RETRY_BASE_DELAY", "20ms")
        .env("ALLTOKEN_API_KEY", "fault-matrix-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .env_remove("VIDBATCH_OUT")
        .kill_on_drop(true);
    cmd
}

fn sim_config(seed: u64) -> SimConfig {
    SimConfig {
        time_scale: 0.002,
        rpm: 0,
        seed,
        ..SimConfig::default()
    }
}

/// What a finished case must show. Returns how many jobs failed.
fn check_case(case: &str, sim: &SimHandle, out: &Path, o: &Output, jobs: usize) -> usize {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stats = sim.stats();
    assert_eq!(stats.duplicate_creates, 0, "{case}: a task was created twice");
    let state = journal::load(&out.join(outdir::STATE_FILE))
        .unwrap_or_else(|e| panic!("{case}: state does not load: {e}; {stderr}"))
        .state;
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("report.json"))
            .unwrap_or_else(|e| panic!("{case}: no report: {e}; {stderr}")),
    )
    .unwrap();
    let entries = report["jobs"].as_array().unwrap();
    assert_eq!(entries.len(), jobs, "{case}");
    assert_eq!(state.jobs.len(), jobs, "{case}");
    let tasks: usize = state.jobs.values().map(|j| j.task_ids.len()).sum();
    assert_eq!(
        stats.tasks_created, tasks as u64,
        "{case}: the server made tasks no job owns (or the state lost one)"
    );
    let mut failed = 0;
    for entry in entries {
        let id = entry["id"].as_str().unwrap();
        let job = &state.jobs[id];
        assert!(job.task_ids.len() <= 1, "{case}: {id} has several tasks");
        assert_eq!(
            entry["state"],
            job_state_name(job),
            "{case}: {id}: report and state disagree"
        );
        if entry["state"] == "done" {
            assert_eq!(job.phase, Phase::Done, "{case}: {id}");
            let file = entry["file"].as_str().unwrap();
            let found = verify_file(&out.join(file), MediaKind::Mp4)
                .unwrap_or_else(|e| panic!("{case}: {id}: {file}: {e}"));
            assert_eq!(Some(&found.sha256), job.sha256.as_ref(), "{case}: {id}");
            assert_eq!(entry["sha256"].as_str(), job.sha256.as_deref(), "{case}: {id}");
        } else {
            failed += 1;
            assert_eq!(
                job.phase,
                Phase::Failed,
                "{case}: {id} neither done nor failed: {entry}"
            );
            let message = entry["error"]["message"].as_str().unwrap_or("");
            let kind = entry["error"]["kind"].as_str().unwrap_or("");
            assert!(
                !message.is_empty() && !kind.is_empty(),
                "{case}: {id} failed without a reason: {entry}"
            );
        }
    }
    let expected = if failed == 0 { 0 } else { 1 };
    assert_eq!(
        o.status.code(),
        Some(expected),
        "{case}: {failed} failed; {stderr}"
    );
    assert_eq!(report["run"]["exit_code"], expected, "{case}");
    assert!(
        crate::util::part_files(out).is_empty(),
        "{case}: {:?}",
        crate::util::part_files(out)
    );
    failed
}

/// Runs one case: a fresh simulator with `config`, one run of the binary, and the checks.
async fn case(name: &str, config: SimConfig, extra: &[&str]) -> (SimHandle, usize) {
    let (sim, dir) = crate::util::sim_and_dir(config).await;
    let m = manifest(dir.path(), name, JOBS);
    let out = dir.path().join("out");
    let o = output(vidbatch(&sim, &m, &out, extra)).await;
    let failed = check_case(name, &sim, &out, &o, JOBS);
    eprintln!("{name}: {failed} failed, stats {:?}", sim.stats().faults);
    (sim, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_alone() {
    let (sim, failed) = case(
        "errors",
        SimConfig {
            error_rate: 0.25,
            ..sim_config(1)
        },
        &[],
    )
    .await;
    assert!(sim.stats().faults.errors > 0);
    assert_eq!(failed, 0, "5xx are retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_alone() {
    let (sim, failed) = case(
        "drops",
        SimConfig {
            drop_rate: 0.2,
            ..sim_config(2)
        },
        &[],
    )
    .await;
    assert!(sim.stats().faults.drops > 0);
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_creates_alone() {
    let (sim, failed) = case(
        "ambiguous",
        SimConfig {
            ambiguous_create_rate: 0.4,
            ..sim_config(3)
        },
        &[],
    )
    .await;
    let stats = sim.stats();
    assert!(stats.faults.ambiguous_creates > 0);
    assert_eq!(
        stats.tasks_created, JOBS as u64,
        "every job made exactly one task"
    );
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_alone() {
    let (sim, failed) = case(
        "storm",
        SimConfig {
            rpm: 900,
            rate_burst: Some(2),
            ..sim_config(4)
        },
        &[],
    )
    .await;
    let stats = sim.stats();
    assert!(stats.rate_limited > 0, "the storm happened");
    assert_eq!(stats.tasks_created, JOBS as u64);
    assert_eq!(failed, 0, "429s are never a job's failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tasks_alone_exit_1_and_are_not_resubmitted() {
    let (sim, failed) = case(
        "failing",
        SimConfig {
            fail_rate: 0.35,
            ..sim_config(5)
        },
        &[],
    )
    .await;
    let stats = sim.stats();
    assert!(failed > 0, "some tasks failed");
    assert_eq!(stats.faults.failed_tasks, failed as u64);
    // Without --retry-failed a failed task is not sent again.
    assert_eq!(stats.tasks_created, JOBS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_downloads_alone() {
    let (sim, failed) = case(
        "cut",
        SimConfig {
            cut_download_rate: 0.35,
            video_size: Some(96 * 1024),
            ..sim_config(6)
        },
        &[],
    )
    .await;
    assert!(sim.stats().faults.cut_downloads > 0);
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_urls_alone() {
    let (sim, failed) = case(
        "expired-urls",
        SimConfig {
            short_url_rate: 0.35,
            ..sim_config(7)
        },
        &[],
    )
    .await;
    assert!(sim.stats().faults.short_urls > 0);
    assert_eq!(failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_alone() {
    let (sim, failed) = case(
        "slow",
        SimConfig {
            latency: Duration::from_millis(60),
            slow_download_rate: 0.5,
            slow_download_bps: 400 * 1024,
            video_size: Some(64 * 1024),
            ..sim_config(8)
        },
        &["--request-timeout", "5s"],
    )
    .await;
    assert!(sim.stats().faults.slow_downloads > 0);
    assert_eq!(failed, 0);
}

/// The double-billing trap: the server makes the task, then answers after the client has
/// given up. Each such create is reconciled (first run, then the resumed one), never re-sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_slower_than_the_request_timeout_never_bill_twice() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        latency: Duration::from_millis(400),
        ..sim_config(9)
    })
    .await;
    let m = manifest(dir.path(), "timeout", 6);
    let out = dir.path().join("out");
    let child = vidbatch(&sim, &m, &out, &["--request-timeout", "150ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Every request times out, so the run cannot finish: let a few creates land, then stop it.
    crate::util::wait_for_creates(&sim, 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let first = sim.stats().tasks_created;
    assert!(first >= 1);
    assert_eq!(sim.stats().duplicate_creates, 0);
    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    assert!(
        state.jobs.values().any(|j| j.phase == Phase::Submitting),
        "a create with a lost answer is kept as such"
    );

    // Resumed with a timeout the server can meet: the lost creates are found, not re-sent.
    let o = output(vidbatch(&sim, &m, &out, &["--request-timeout", "10s"])).await;
    let failed = check_case("timeout", &sim, &out, &o, 6);
    assert_eq!(failed, 0);
    assert_eq!(sim.stats().tasks_created, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_once() {
    let (sim, _failed) = case(
        "all",
        SimConfig {
            error_rate: 0.1,
            drop_rate: 0.1,
            ambiguous_create_rate: 0.1,
            fail_rate: 0.1,
            cut_download_rate: 0.1,
            short_url_rate: 0.1,
            slow_download_rate: 0.1,
            slow_download_bps: 400 * 1024,
            video_size: Some(64 * 1024),
            latency: Duration::from_millis(10),
            rpm: 1500,
            rate_burst: Some(4),
            ..sim_config(10)
        },
        &["--max-retries", "12"],
    )
    .await;
    let stats = sim.stats();
    assert_eq!(stats.tasks_created, JOBS as u64);
    let f = &stats.faults;
    assert!(
        f.errors + f.drops + f.ambiguous_creates + f.cut_downloads + f.short_urls > 0,
        "{f:?}"
    );
}

// ---- the disk ----

/// A run whose out dir cannot be created stops with a clear error naming the path, sends
/// nothing, and leaves no state to corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_out_dir_is_a_clear_error() {
    let (sim, dir) = crate::util::sim_and_dir(sim_config(11)).await;
    let m = manifest(dir.path(), "unwritable", 3);
    // A file where the out dir should be: even root cannot make a directory there.
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out = blocker.join("out");
    let o = output(vidbatch(&sim, &m, &out, &[])).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&*out.to_string_lossy()),
        "the error names the path: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(sim.stats().tasks_created, 0);
}

/// Mounts a tmpfs of `size` at `dir`; false where the machine does not allow it.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn remount(dir: &Path, options: &str) {
    let ok = std::process::Command::new("mount")
        .args(["-o", &format!("remount,{options}")])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "remount {options}");
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills mid-run: the run stops with a clear error, the state stays loadable,
/// and with room again a resumed run finishes without creating any task twice. Then the
/// same disk read-only: a clear error, the state untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_cleanly_and_resumes_without_duplicates() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        video_size: Some(160 * 1024),
        ..sim_config(12)
    })
    .await;
    let m = manifest(dir.path(), "disk", 6);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    if !mount_tmpfs(&out, "400k") {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root, or no mount permission)");
        return;
    }
    let _unmount = Unmount(out.clone());
    let o = output(vidbatch(&sim, &m, &out, &[])).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_ne!(
        o.status.code(),
        Some(0),
        "the disk cannot hold six videos: {stderr}"
    );
    assert!(
        stderr.contains("No space left on device") && stderr.contains(&*out.to_string_lossy()),
        "a clear error naming the path: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let loaded = journal::load(&out.join(outdir::STATE_FILE)).expect("the state still loads");
    let created = sim.stats().tasks_created;
    let owned: usize = loaded.state.jobs.values().map(|j| j.task_ids.len()).sum();
    assert_eq!(created, owned as u64, "every task made is in the state");

    // Read-only: refused with a clear error, the state file untouched.
    let before = std::fs::read(out.join(outdir::STATE_FILE)).unwrap();
    remount(&out, "ro");
    let o = output(vidbatch(&sim, &m, &out, &[])).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(out.join(outdir::STATE_FILE)).unwrap(), before);

    // With room again the run resumes and finishes; no task is created twice.
    remount(&out, "rw,size=8m");
    let o = output(vidbatch(&sim, &m, &out, &[])).await;
    check_case("disk", &sim, &out, &o, 6);
    assert_eq!(sim.stats().tasks_created, 6);
}
