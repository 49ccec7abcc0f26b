//! The kill test: a batch against the simulator (ambiguous creates, cut downloads and lists
//! that show new tasks late on) is killed with SIGKILL at random moments and resumed each
//! time. At the end every job was created exactly once on the server, every file is present
//! and valid, no `.part` is left, and the report agrees with the state.

use std::path::Path;
use std::time::Duration;

use crate::util::part_files;
use rand::{Rng, SeedableRng};
use vidbatch::events::Event;
use vidbatch::journal;
use vidbatch::outdir;
use vidbatch::state::Phase;
use vidbatch_sim::SimConfig;

const JOBS: usize = 50;
const KILLS: usize = 24;

fn manifest(dir: &Path) -> std::path::PathBuf {
    crate::util::matrix_manifest(dir, "manifest.yaml", "k", "kill test shot", JOBS, "")
}

/// The bytes in `.part` files: they change while a download is under way.
fn part_bytes(out: &Path) -> u64 {
    part_files(out).iter().map(|(_, size)| size).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_and_resumed_every_job_runs_exactly_once() {
    let seed: u64 = std::env::var("VIDBATCH_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill test seed: {seed} (rerun with VIDBATCH_KILL_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.02,
        rpm: 0,
        seed,
        list_lag: Duration::from_millis(500),
        ambiguous_create_rate: 0.15,
        cut_download_rate: 0.2,
        slow_download_rate: 0.5,
        slow_download_bps: 2 * 1024 * 1024,
        video_size: Some(400 * 1024),
        latency: Duration::from_millis(15),
        ..SimConfig::default()
    })
    .await;
    let m = manifest(dir.path());
    let out = dir.path().join("out");
    let run = || crate::util::vidbatch_run(&m, &out, &sim, "kill-test-key", "8");

    let (mut in_create, mut in_download, mut finished_early) = (0, 0, 0);
    for kill in 0..KILLS {
        let mut child = run().spawn().unwrap();
        // Every other kill lands early in the run, while its first creates are on the wire; the
        // others land a moment after a download is under way (its `.part` file grows), or at a
        // random time when none begins, so kills land in downloads however loaded the machine.
        let wait = if kill % 2 == 0 {
            Duration::from_millis(rng.random_range(20..200))
        } else {
            let late = Duration::from_millis(rng.random_range(80..900));
            let started = std::time::Instant::now();
            let before = part_bytes(&out);
            let downloading = || part_bytes(&out) != before;
            while started.elapsed() < Duration::from_secs(10) && !downloading() {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if downloading() {
                Duration::from_millis(rng.random_range(0..20))
            } else {
                late.saturating_sub(started.elapsed())
            }
        };
        match tokio::time::timeout(wait, child.wait()).await {
            Ok(status) => {
                finished_early += 1;
                eprintln!(
                    "kill {kill}: run ended by itself ({:?}) before the kill",
                    status.unwrap().code()
                );
            }
            Err(_) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
            }
        }
        // What the kill interrupted, read from what it left behind.
        let loaded = journal::load(&out.join(outdir::STATE_FILE)).unwrap();
        if loaded.state.jobs.values().any(|j| j.phase == Phase::Submitting) {
            in_create += 1;
        }
        if !part_files(&out).is_empty() {
            in_download += 1;
        }
    }
    eprintln!(
        "kills: {KILLS}, in a create: {in_create}, in a download: {in_download}, ended early: {finished_early}"
    );

    let status = tokio::time::timeout(Duration::from_secs(180), run().status())
        .await
        .expect("the final run finished")
        .unwrap();
    assert_eq!(status.code(), Some(0), "seed {seed}");
    assert!(
        KILLS - finished_early >= 20,
        "seed {seed}: only {} real kills",
        KILLS - finished_early
    );
    assert!(in_create > 0, "seed {seed}: no kill landed in a create");
    assert!(in_download > 0, "seed {seed}: no kill landed in a download");

    let stats = sim.stats();
    assert_eq!(
        stats.tasks_created, JOBS as u64,
        "seed {seed}: a job was created twice or never"
    );
    assert_eq!(stats.duplicate_creates, 0, "seed {seed}");
    assert_eq!(part_files(&out), vec![], "seed {seed}: a .part file was left");

    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    let prompts = sim.task_prompts("kill-test-key");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), JOBS);
    // The killed runs never wrote their request counts; their creates still count.
    let creates = report["summary"]["creates"].as_u64().unwrap();
    assert!(
        creates >= stats.tasks_created,
        "seed {seed}: the report counts {creates} creates for {} tasks",
        stats.tasks_created
    );
    for entry in jobs {
        let id = entry["id"].as_str().unwrap();
        let job = &state.jobs[id];
        assert_eq!(entry["state"], "done", "seed {seed}: {id}");
        assert_eq!(
            entry["sha256"].as_str(),
            job.sha256.as_deref(),
            "seed {seed}: {id}"
        );
        let n = id.trim_start_matches("k-");
        crate::util::assert_done_with_own_task(
            &out,
            job,
            &prompts,
            &format!("kill test shot {n}"),
            &format!("seed {seed}: {id}"),
        );
    }
}

/// What a power cut right after the journal's last sync leaves behind: the journal up to its
/// last record that is synced before the run goes on (a sync puts every earlier record on disk
/// too), and downloads whose bytes never reached the disk (they are synced at the end of a
/// run): every third file emptied, every third cut to half. Returns the jobs recorded done
/// whose file was damaged.
fn power_cut(out: &Path) -> usize {
    let state_file = out.join(outdir::STATE_FILE);
    let text = std::fs::read_to_string(&state_file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let last_synced = lines
        .iter()
        .rposition(|l| serde_json::from_str::<Event>(l).is_ok_and(|e| e.is_durable()))
        .expect("the journal has a synced record");
    eprintln!(
        "power cut: {} of {} records lost",
        lines.len() - last_synced - 1,
        lines.len()
    );
    std::fs::write(&state_file, lines[..=last_synced].join("\n") + "\n").unwrap();
    let mut files: Vec<_> = std::fs::read_dir(out.join("videos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut damaged = std::collections::HashSet::new();
    for (i, path) in files.iter().enumerate() {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let len = file.metadata().unwrap().len();
        match i % 3 {
            0 => file.set_len(0).unwrap(),
            1 => file.set_len(len / 2).unwrap(),
            _ => continue,
        }
        damaged.insert(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    let state = journal::load(&state_file).unwrap().state;
    state
        .jobs
        .values()
        .filter(|j| j.phase == Phase::Done)
        .filter(|j| {
            j.path
                .as_deref()
                .and_then(|p| Path::new(p).file_name())
                .is_some_and(|name| damaged.contains(name.to_string_lossy().as_ref()))
        })
        .count()
}

fn journal_count(out: &Path, event: &str) -> usize {
    let needle = format!("\"event\":\"{event}\"");
    std::fs::read_to_string(out.join(outdir::STATE_FILE))
        .map(|t| t.lines().filter(|l| l.contains(&needle)).count())
        .unwrap_or(0)
}

/// Power cuts in the middle of a batch whose jobs all look alike to the server: each keeps the
/// journal only up to its last sync and damages the videos not yet synced. The resumed runs
/// create each task exactly once, give each job its own task, and end with every video whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_mid_batch_cost_no_task_and_no_video() {
    const N: usize = 40;
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.005,
        rpm: 0,
        concurrency: 100,
        // Creates that make nothing and creates whose answer is lost, between look-alike ones.
        error_rate: 0.1,
        ambiguous_create_rate: 0.1,
        ..SimConfig::default()
    })
    .await;
    let m = crate::util::matrix_manifest(dir.path(), "manifest.yaml", "p", "power cut shot", N, "");
    let out = dir.path().join("out");
    let run = || crate::util::vidbatch_run(&m, &out, &sim, "power-cut-key", "8");

    let mut damaged_done = 0;
    for done_before_cut in [6, 16, 26] {
        let mut child = run().spawn().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while journal_count(&out, "job_done") < done_before_cut {
            assert!(tokio::time::Instant::now() < deadline, "the run made no progress");
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before the cut"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        damaged_done += power_cut(&out);
    }
    eprintln!("jobs recorded done whose video the cuts damaged: {damaged_done}");
    assert!(damaged_done > 0, "no cut damaged a video recorded as done");

    assert_eq!(run().status().await.unwrap().code(), Some(0));
    let stats = sim.stats();
    assert_eq!(stats.tasks_created, N as u64, "a job was created twice or never");
    assert_eq!(stats.duplicate_creates, 0);
    assert_eq!(part_files(&out), vec![]);
    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    let prompts = sim.task_prompts("power-cut-key");
    for i in 0..N {
        let id = format!("p-{i:02}");
        crate::util::assert_done_with_own_task(
            &out,
            &state.jobs[&id],
            &prompts,
            &format!("power cut shot {i:02}"),
            &id,
        );
    }
}
