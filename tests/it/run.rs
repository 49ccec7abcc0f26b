//! End-to-end runs of the runner against the simulator on 127.0.0.1: clean batches, bounds,
//! 429 storms, faults, a 402 mid-run and its resume.

use std::time::{Duration, Instant};

use vidbatch::api::{ApiKey, Client, ClientConfig, CreateRequest, http_client};
use vidbatch::download::{MediaKind, verify_file};
use vidbatch::events::RunOutcome;
use vidbatch::runner::{Concurrency, JobSpec, RunSettings, RunSummary, Runner};
use vidbatch::state::Phase;
use vidbatch_sim::{SimConfig, SimHandle, SimStats};

fn jobs(n: usize, tag: &str) -> Vec<JobSpec> {
    (0..n)
        .map(|i| {
            let request = CreateRequest {
                model: "seedance-1.5-pro".into(),
                prompt: format!("{tag} shot {i}: a fox in the snow"),
                duration: Some(5),
                resolution: Some(vidbatch::api::Resolution::P480),
                ratio: Some(vidbatch::api::Ratio::Landscape),
                ..Default::default()
            };
            JobSpec {
                id: format!("{tag}-{i:03}"),
                name: format!("{tag}-{i:03}"),
                fingerprint: format!("fp-{tag}-{i}"),
                source: format!("test.yaml:{}:1", i + 1),
                estimated_tokens: Some(48_600),
                request,
            }
        })
        .collect()
}

fn fast_sim() -> SimConfig {
    SimConfig {
        time_scale: 0.002,
        rpm: 0,
        seed: 7,
        ..SimConfig::default()
    }
}

async fn run(sim: &SimHandle, settings: RunSettings, jobs: Vec<JobSpec>) -> RunSummary {
    let mut config = ClientConfig::new(sim.base_url(), ApiKey::new("test-key"));
    config.request_timeout = Duration::from_secs(10);
    let client = Client::new(&config).unwrap();
    let http = http_client(Duration::from_secs(5), None).unwrap();
    Runner::new(client, http, settings)
        .run(jobs, vec![], None, std::future::pending())
        .await
        .expect("run")
}

fn assert_all_done(summary: &RunSummary, out: &std::path::Path) {
    for id in &summary.plan {
        let job = &summary.state.jobs[id];
        assert_eq!(job.phase, Phase::Done, "{id}: {:?}", job.failure);
        let path = out.join(job.path.as_ref().unwrap());
        let found = verify_file(&path, MediaKind::Mp4).expect("valid mp4");
        assert_eq!(Some(&found.sha256), job.sha256.as_ref());
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.join("videos"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_batch_finishes_with_valid_videos_and_no_duplicates() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let summary = run(&sim, crate::util::fast_settings(dir.path()), jobs(20, "clean")).await;
    assert_eq!(summary.outcome, RunOutcome::Success);
    assert_all_done(&summary, dir.path());
    let stats = sim.stats();
    assert_eq!(stats.tasks_created, 20);
    assert_eq!(stats.duplicate_creates, 0);
    // Video bytes are distinct per task.
    let mut hashes: Vec<_> = summary.state.jobs.values().map(|j| j.sha256.clone()).collect();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_flight_and_request_rate_stay_within_bounds() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.005,
        ..fast_sim()
    })
    .await;
    let mut s = crate::util::fast_settings(dir.path());
    s.concurrency = Concurrency::Max(3);
    s.rpm = 1200;
    s.burst = 5;
    s.poll_interval = Duration::from_millis(100);
    let start = Instant::now();
    let summary = run(&sim, s, jobs(12, "bounds")).await;
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(summary.outcome, RunOutcome::Success);
    let stats = sim.stats();
    assert!(
        stats.max_queued_or_processing <= 3,
        "{}",
        stats.max_queued_or_processing
    );
    assert!(stats.max_queued_or_processing >= 2, "concurrency unused");
    let api_requests: u64 = stats
        .requests
        .iter()
        .filter(|(endpoint, _)| endpoint.as_str() != "download")
        .flat_map(|(_, by_status)| by_status.values())
        .sum();
    let allowed = 5.0 + 1200.0 / 60.0 * elapsed;
    assert!(
        (api_requests as f64) <= allowed + 1.0,
        "{api_requests} requests in {elapsed:.2}s exceed rpm 1200 + burst 5 ({allowed:.0})"
    );
    assert_eq!(summary.counters.api_requests, api_requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_still_finishes_every_job_without_duplicates() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        rpm: 600,
        rate_burst: Some(3),
        ..fast_sim()
    })
    .await;
    let mut s = crate::util::fast_settings(dir.path());
    s.rpm = 6000;
    s.burst = 50;
    let summary = run(&sim, s, jobs(15, "storm")).await;
    assert_eq!(summary.outcome, RunOutcome::Success);
    assert_all_done(&summary, dir.path());
    let stats = sim.stats();
    assert!(stats.rate_limited > 0, "the storm never happened");
    assert_eq!(summary.counters.rate_limited, stats.rate_limited);
    assert_eq!(stats.tasks_created, 15);
    assert_eq!(stats.duplicate_creates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_drops_and_ambiguous_creates_cause_no_duplicates() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        error_rate: 0.1,
        drop_rate: 0.1,
        ambiguous_create_rate: 0.1,
        seed: 11,
        ..fast_sim()
    })
    .await;
    let summary = run(&sim, crate::util::fast_settings(dir.path()), jobs(40, "faults")).await;
    assert_eq!(
        summary.outcome,
        RunOutcome::Success,
        "{:?}",
        summary.state.phase_counts()
    );
    assert_all_done(&summary, dir.path());
    let stats = sim.stats();
    assert!(
        stats.faults.ambiguous_creates > 0,
        "no ambiguous create was injected"
    );
    assert!(summary.counters.reconciled > 0);
    assert_eq!(stats.tasks_created, 40, "a create was sent twice");
    let prompts = sim.task_prompts("test-key");
    for job in summary.state.jobs.values() {
        assert_eq!(
            prompts.get(job.task_id().unwrap()),
            Some(&job.request.prompt),
            "{} got another job's task",
            job.id
        );
    }
    assert_eq!(stats.duplicate_creates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_required_stops_with_state_saved_and_a_later_run_finishes() {
    // 480p 16:9 5 s costs 864*480*24*5/1024 = 48,600 tokens: room for four jobs.
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        balance: Some(4 * 48_600 + 100),
        ..fast_sim()
    })
    .await;
    let mut s = crate::util::fast_settings(dir.path());
    s.concurrency = Concurrency::Max(2);
    let first = run(&sim, s.clone(), jobs(10, "pay")).await;
    assert_eq!(first.outcome, RunOutcome::Fatal);
    assert_eq!(first.outcome, vidbatch::events::RunOutcome::Fatal);
    let done_first = first
        .state
        .jobs
        .values()
        .filter(|j| j.phase == Phase::Done)
        .count();
    assert_eq!(done_first, 4, "in-flight tasks are still finished");
    assert!(dir.path().join("state.jsonl").exists());

    sim.update(|c| c.balance = Some(100 * 48_600));
    let second = run(&sim, s, jobs(10, "pay")).await;
    assert_eq!(second.outcome, RunOutcome::Success);
    assert_all_done(&second, dir.path());
    let stats = sim.stats();
    assert_eq!(stats.tasks_created, 10);
    assert_eq!(stats.duplicate_creates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_is_cancelled_on_the_server_and_failed() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(3600)),
        time_scale: 1.0,
        ..fast_sim()
    })
    .await;
    let mut s = crate::util::fast_settings(dir.path());
    s.job_timeout = Duration::from_millis(400);
    let summary = run(&sim, s, jobs(2, "slow")).await;
    assert_eq!(summary.outcome, RunOutcome::SomeFailed);
    for job in summary.state.jobs.values() {
        let failure = job.failure.as_ref().expect("failed");
        assert_eq!(failure.kind, vidbatch::events::FailureKind::TimedOut);
    }
    assert_eq!(sim.stats().tasks_by_status.get("cancelled"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_fail_stops_new_submissions() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        fail_rate: 1.0,
        ..fast_sim()
    })
    .await;
    let mut s = crate::util::fast_settings(dir.path());
    s.concurrency = Concurrency::Max(1);
    s.max_fail = Some(3);
    let summary = run(&sim, s, jobs(10, "doomed")).await;
    assert_eq!(summary.outcome, RunOutcome::Stopped);
    assert_eq!(sim.stats().tasks_created, 3);
    let failed: Vec<_> = summary
        .state
        .jobs
        .values()
        .filter(|j| j.phase == Phase::Failed)
        .collect();
    assert_eq!(failed.len(), 3);
    for j in failed {
        let f = j.failure.as_ref().unwrap();
        assert_eq!(f.kind, vidbatch::events::FailureKind::TaskFailed);
        assert!(f.code.is_some(), "the task's error code is kept");
    }
}

/// 150 tasks in flight at once (1.2 s each, 60 ms polls), all finished and valid; returns the
/// run's summary and the simulator's stats.
async fn sweep_batch(list_urls: bool, tag: &str) -> (RunSummary, SimStats) {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.02,
        concurrency: 200,
        max_queued: 500,
        list_urls,
        ..fast_sim()
    })
    .await;
    let mut s = crate::util::fast_settings(dir.path());
    s.concurrency = Concurrency::Max(150);
    s.poll_interval = Duration::from_millis(60);
    let summary = run(&sim, s, jobs(150, tag)).await;
    assert_eq!(summary.outcome, RunOutcome::Success);
    assert_all_done(&summary, dir.path());
    let stats = sim.stats();
    assert_eq!(stats.tasks_created, 150);
    (summary, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_in_flight_are_polled_by_list_sweeps_not_one_get_each() {
    let (summary, stats) = sweep_batch(false, "sweep").await;
    assert!(stats.total("list") > 0, "no sweep ran");
    let per_job = summary.counters.api_requests as f64 / 150.0;
    eprintln!(
        "{per_job:.2} API requests per job ({} lists)",
        stats.total("list")
    );
    // A GET per task per poll would be ~20 requests per job here (1.2 s at 60 ms).
    assert!(per_job <= 3.0, "{per_job:.2} API requests per job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_listed_as_completed_with_their_urls_are_downloaded_without_a_read() {
    let (_, stats) = sweep_batch(true, "listed").await;
    eprintln!(
        "{} creates, {} reads, {} lists",
        stats.total("create"),
        stats.total("get"),
        stats.total("list")
    );
    // Without URLs in the lists every job needs its own read; with them, only the tasks no
    // page could speak for (ties with a full page's oldest) are read.
    assert!(
        stats.total("get") < 75,
        "{} reads for 150 jobs",
        stats.total("get")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_notice_failed_tasks_and_report_their_codes() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.01,
        concurrency: 100,
        fail_rate: 0.3,
        seed: 5,
        ..fast_sim()
    })
    .await;
    let mut s = crate::util::fast_settings(dir.path());
    s.concurrency = Concurrency::Max(40);
    let summary = run(&sim, s, jobs(40, "mixed")).await;
    assert_eq!(summary.outcome, RunOutcome::SomeFailed);
    let stats = sim.stats();
    let failed: Vec<_> = summary
        .state
        .jobs
        .values()
        .filter(|j| j.phase == Phase::Failed)
        .collect();
    assert_eq!(failed.len() as u64, stats.faults.failed_tasks);
    assert!(!failed.is_empty());
    for j in failed {
        assert_eq!(
            j.failure.as_ref().unwrap().kind,
            vidbatch::events::FailureKind::TaskFailed
        );
    }
    let done = summary
        .state
        .jobs
        .values()
        .filter(|j| j.phase == Phase::Done)
        .count();
    assert_eq!(done as u64 + stats.faults.failed_tasks, 40);
    assert_eq!(stats.tasks_created, 40);
}
