//! Exactly once in the world outside one process: the real binary against a simulator whose
//! lists lag, whose clock is off, where other clients use the same key, with a large share of
//! the creates' answers lost. In each: tasks created = jobs, every job holds the task made for
//! its own prompt, every task this batch paid for belongs to a job, exit 0.

use std::path::Path;
use std::time::Duration;

use vidbatch::journal;
use vidbatch::outdir;
use vidbatch_sim::{Sim, SimConfig, SimHandle};

/// A simulator of 1.2 s generations and no rate limit, with `config` applied over it.
async fn sim(config: SimConfig) -> SimHandle {
    Sim::start(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.02,
        rpm: 0,
        seed: 11,
        ..config
    })
    .await
    .unwrap()
}

/// Runs `vidbatch run` of `m` (optionally one shard) into `out` and returns its exit code.
async fn run(m: &Path, out: &Path, sim: &SimHandle, key: &str, shard: Option<&str>) -> Option<i32> {
    let mut cmd = crate::util::vidbatch_run(m, out, sim, key, "auto");
    if let Some(shard) = shard {
        cmd.args(["--shard", shard]);
    }
    let status = tokio::time::timeout(Duration::from_secs(120), cmd.status())
        .await
        .expect("the run ended")
        .unwrap();
    status.code()
}

/// Every job of `outs` is done with the task made for its own prompt, and every task of the
/// key that is not another client's belongs to exactly one job.
fn assert_exactly_once(sim: &SimHandle, key: &str, outs: &[&Path], jobs: usize) {
    let stats = sim.stats();
    assert_eq!(
        stats.tasks_created - stats.lookalike_tasks,
        jobs as u64,
        "tasks created for {jobs} jobs"
    );
    assert_eq!(stats.duplicate_creates, 0);
    let prompts = sim.task_prompts(key);
    let mut held = Vec::new();
    for out in outs {
        let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
        for job in state.jobs_in_order() {
            let n = job.id.trim_start_matches("w-");
            crate::util::assert_done_with_own_task(out, job, &prompts, &format!("world shot {n}"), &job.id);
            held.extend(job.task_ids.iter().cloned());
        }
    }
    held.sort();
    let mut ours: Vec<String> = prompts
        .iter()
        .filter(|(_, p)| p.starts_with("world shot"))
        .map(|(t, _)| t.clone())
        .collect();
    ours.sort();
    assert_eq!(held, ours, "a paid task belongs to no job, or to two");
}

/// One run of `jobs` jobs against a simulator set up by `config`.
async fn one_run(config: SimConfig, jobs: usize) {
    let sim = sim(config).await;
    let dir = tempfile::tempdir().unwrap();
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "w", "world shot", jobs, "");
    let out = dir.path().join("out");
    assert_eq!(run(&m, &out, &sim, "world-key", None).await, Some(0));
    assert_exactly_once(&sim, "world-key", &[&out], jobs);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    // Durations never mix the two clocks, however far apart they are.
    for job in report["jobs"].as_array().unwrap() {
        let t = &job["timings"];
        let total = t["total_seconds"].as_f64().unwrap();
        let generation = t["generation_seconds"].as_f64().unwrap();
        assert!(total < 120.0 && generation <= total + 2.0, "{t}");
    }
    let summary = &report["summary"];
    assert!(
        summary["ambiguous_creates"].as_u64() > Some(0),
        "no create lost its answer: {summary}"
    );
    assert_eq!(
        summary["creates"].as_u64(),
        Some(
            jobs as u64 + summary["ambiguous_creates"].as_u64().unwrap_or(0)
                - summary["reconciled"].as_u64().unwrap_or(0)
        ),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_shows_new_tasks_two_seconds_late_with_half_the_create_answers_lost() {
    let config = SimConfig {
        list_lag: Duration::from_secs(2),
        ambiguous_create_rate: 0.5,
        ..SimConfig::default()
    };
    one_run(config, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_making_look_alike_tasks_on_the_key_during_the_run() {
    let config = SimConfig {
        lookalike_rate: 1.0,
        ambiguous_create_rate: 0.5,
        list_lag: Duration::from_millis(500),
        ..SimConfig::default()
    };
    one_run(config, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_five_minutes_behind() {
    let config = SimConfig {
        clock_offset_secs: -300.0,
        ambiguous_create_rate: 0.5,
        ..SimConfig::default()
    };
    one_run(config, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_two_hours_behind_shortens_no_job_timeout() {
    let config = SimConfig {
        clock_offset_secs: -7200.0,
        ambiguous_create_rate: 0.5,
        ..SimConfig::default()
    };
    one_run(config, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_two_hours_ahead() {
    let config = SimConfig {
        clock_offset_secs: 7200.0,
        ambiguous_create_rate: 0.5,
        ..SimConfig::default()
    };
    one_run(config, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_of_one_manifest_on_one_key_at_once() {
    let sim = sim(SimConfig {
        ambiguous_create_rate: 0.33,
        list_lag: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "w", "world shot", 30, "");
    let (a, b) = (dir.path().join("shard-1"), dir.path().join("shard-2"));
    let (ra, rb) = tokio::join!(
        run(&m, &a, &sim, "world-key", Some("1/2")),
        run(&m, &b, &sim, "world-key", Some("2/2"))
    );
    assert_eq!((ra, rb), (Some(0), Some(0)));
    assert_exactly_once(&sim, "world-key", &[&a, &b], 30);
}

/// Two runs of different manifests into different out dirs, on one key at once, whose jobs
/// all carry the seed the manifest sets (so their tasks look alike in the lists), with many
/// create answers lost, some before the create made anything. A lost create may not take a
/// task that merely fits: it may be the other run's. Every done job holds the task made for
/// its own prompt, no task is held twice, nothing is paid for twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_whose_manifests_set_one_seed_never_take_each_others_tasks() {
    let sim = sim(SimConfig {
        ambiguous_create_rate: 0.3,
        drop_rate: 0.15,
        list_lag: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Inserted before `jobs:`, the line lands in `defaults`: every job sets seed 42.
    let seed = "  seed: 42\n";
    let m1 = crate::util::matrix_manifest(dir.path(), "m1.yaml", "a", "first batch", 30, seed);
    let m2 = crate::util::matrix_manifest(dir.path(), "m2.yaml", "b", "second batch", 30, seed);
    let (a, b) = (dir.path().join("out-a"), dir.path().join("out-b"));
    let (ra, rb) = tokio::join!(
        run(&m1, &a, &sim, "world-key", None),
        run(&m2, &b, &sim, "world-key", None)
    );
    // A job whose lost create cannot be settled fails (exit 1); none may end otherwise.
    assert!(
        matches!(ra, Some(0 | 1)) && matches!(rb, Some(0 | 1)),
        "{ra:?} {rb:?}"
    );
    assert_eq!(sim.stats().duplicate_creates, 0);
    let prompts = sim.task_prompts("world-key");
    let mut held = std::collections::HashSet::new();
    for (out, prompt_prefix) in [(&a, "first batch"), (&b, "second batch")] {
        let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
        for job in state.jobs_in_order() {
            for task in &job.task_ids {
                assert!(held.insert(task.clone()), "task {task} is held by two jobs");
            }
            if job.phase == vidbatch::state::Phase::Done {
                let n = &job.id[2..];
                let prompt = format!("{prompt_prefix} {n}");
                crate::util::assert_done_with_own_task(out, job, &prompts, &prompt, &job.id);
            }
        }
    }
}
