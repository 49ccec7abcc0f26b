//! Money safety: the real binary against the simulator in the cases that cost users money or
//! told a pipeline something untrue. Each test is named after what it pins.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;
use vidbatch::journal;
use vidbatch::outdir;
use vidbatch::state::Phase;
use vidbatch_sim::{Sim, SimConfig, SimHandle};

/// A manifest of `n` jobs (480p, 5 s: 48,600 estimated tokens each), with `defaults` YAML
/// lines added to its defaults.
fn manifest(dir: &Path, n: usize, defaults: &str) -> std::path::PathBuf {
    crate::util::matrix_manifest(dir, "m.yaml", "m", "money shot", n, defaults)
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

async fn sim(config: SimConfig) -> SimHandle {
    Sim::start(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.01,
        rpm: 0,
        seed: 3,
        ..config
    })
    .await
    .unwrap()
}

async fn finish(mut cmd: Command) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(120), cmd.status())
        .await
        .expect("the run ended")
        .unwrap()
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_a_last_frame_keeps_its_paid_video() {
    let sim = sim(SimConfig {
        missing_last_frame_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 4, "  return_last_frame: true\n");
    let out = dir.path().join("out");
    let run = || crate::util::vidbatch_run(&m, &out, &sim, "money-key", "auto");
    assert_eq!(finish(run()).await, Some(0));
    let r = report(&out);
    for job in r["jobs"].as_array().unwrap() {
        assert_eq!(job["state"], "done", "{job}");
        assert!(job["file"].is_string(), "{job}");
        assert!(job["last_frame"].is_null(), "{job}");
    }
    // A later run has nothing to do and says success.
    assert_eq!(finish(run()).await, Some(0));
    assert_eq!(sim.stats().tasks_created, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_five_and_a_half_jobs_buys_five_whatever_the_concurrency() {
    let sim = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 12, "");
    let out = dir.path().join("out");
    let mut cmd = crate::util::vidbatch_run(&m, &out, &sim, "money-key", "10");
    cmd.args(["--budget-tokens", &(48_600 * 11 / 2).to_string()]);
    assert_eq!(finish(cmd).await, Some(1));
    assert_eq!(sim.stats().tasks_created, 5);
    let r = report(&out);
    assert_eq!(r["run"]["outcome"], "stopped", "{}", r["run"]);
    assert_eq!(r["summary"]["by_state"]["done"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_interrupt_never_cancels_a_finished_task_and_the_rerun_pays_nothing_more() {
    // Downloads crawl, so tasks finish on the server well before their videos are fetched.
    let sim = sim(SimConfig {
        slow_download_rate: 1.0,
        slow_download_bps: 4 * 1024,
        video_size: Some(32 * 1024),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 12, "");
    let out = dir.path().join("out");
    let mut first = crate::util::vidbatch_run(&m, &out, &sim, "money-key", "4");
    first.arg("--cancel-on-interrupt");
    let mut child = first.spawn().unwrap();
    let pid = child.id().unwrap();
    // Wait until some tasks have finished on the server.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sim.stats().tasks_in("completed") < 3 {
        assert!(std::time::Instant::now() < deadline, "no task finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap()
        .code();
    assert_eq!(code, Some(130));
    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    let completed_on_server = sim.stats().tasks_in("completed");
    let recorded_cancelled = state
        .jobs
        .values()
        .filter(|j| j.failure.as_ref().is_some_and(|f| f.kind.name() == "cancelled"))
        .count() as u64;
    assert!(
        recorded_cancelled <= sim.stats().tasks_in("cancelled"),
        "a job is recorded cancelled though its task was not"
    );
    assert!(completed_on_server >= 3);
    // The rerun fetches every finished task and makes only the ones cancelled.
    sim.update(|c| c.slow_download_rate = 0.0);
    let mut rerun = crate::util::vidbatch_run(&m, &out, &sim, "money-key", "4");
    rerun.arg("--retry-failed");
    assert_eq!(finish(rerun).await, Some(0));
    let stats = sim.stats();
    assert_eq!(
        stats.tasks_in("completed"),
        12,
        "a job's video was generated twice"
    );
    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    assert!(state.jobs.values().all(|j| j.phase == Phase::Done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vidbatch_cancel_paces_itself_keeps_finished_tasks_and_records_each_cancellation() {
    // Generations from 0.3 s to 60 s, a tight rate limit that answers 429 with a wait.
    let sim = sim(SimConfig {
        gen_time: Some(Duration::from_secs(30)),
        gen_time_max: Some(Duration::from_secs(6000)),
        rpm: 600,
        rate_burst: Some(2),
        retry_after: Some(vidbatch_sim::RetryAfterFormat::Seconds),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 8, "");
    let out = dir.path().join("out");
    let mut child = crate::util::vidbatch_run(&m, &out, &sim, "money-key", "8")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sim.stats().tasks_created < 8 {
        assert!(std::time::Instant::now() < deadline, "the creates never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // Let a short one finish on the server after the run is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sim.stats().tasks_in("completed") == 0 {
        assert!(std::time::Instant::now() < deadline, "no task finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let finished_before = sim.stats().tasks_in("completed");

    let sim_refused = crate::util::bin()
        .args(["cancel", "--out", out.to_str().unwrap(), "--sim"])
        .output()
        .await
        .unwrap();
    assert_eq!(sim_refused.status.code(), Some(2), "cancel --sim is refused");

    let o = crate::util::bin()
        .args(["cancel", "--out", out.to_str().unwrap()])
        .env("ALLTOKEN_API_KEY", "money-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stats = sim.stats();
    let cancelled = stdout.lines().filter(|l| l.starts_with("cancelled ")).count() as u64;
    assert_eq!(stats.tasks_in("cancelled"), cancelled, "{stdout}");
    assert!(cancelled > 0, "{stdout}");
    assert!(finished_before > 0, "no task finished before the cancel");
    assert!(
        stdout.contains("had finished (completed): a rerun downloads it"),
        "{stdout}"
    );
    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    let recorded = state
        .jobs
        .values()
        .filter(|j| j.failure.as_ref().is_some_and(|f| f.kind.name() == "cancelled"))
        .count() as u64;
    assert_eq!(recorded, cancelled, "each cancellation is in the state");
    assert!(
        state
            .jobs
            .values()
            .all(|j| j.phase != Phase::Submitted || stats.tasks_in("completed") > 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_another_manifest_cannot_take_the_file_of_a_done_job() {
    let sim = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let first = dir.path().join("first.yaml");
    let second = dir.path().join("second.yaml");
    let yaml = |id: &str, prompt: &str| {
        format!(
            "version: 1\ndefaults:\n  model: seedance-1.5-pro\njobs:\n  - id: {id}\n    name: clip\n    prompt: {prompt}\n"
        )
    };
    std::fs::write(&first, yaml("a", "a fox")).unwrap();
    std::fs::write(&second, yaml("b", "an owl")).unwrap();
    assert_eq!(
        finish(crate::util::vidbatch_run(&first, &out, &sim, "money-key", "auto")).await,
        Some(0)
    );
    let video = std::fs::read(out.join("videos/clip.mp4")).unwrap();
    let o = crate::util::vidbatch_run(&second, &out, &sim, "money-key", "auto")
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`b`") && stderr.contains("`a`") && stderr.contains("videos/clip.mp4"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(out.join("videos/clip.mp4")).unwrap(),
        video,
        "the paid video was overwritten"
    );
    assert_eq!(sim.stats().tasks_created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_videos_cannot_be_written_exits_4_and_its_report_says_what_was_sent() {
    let sim = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 3, "");
    let out = dir.path().join("out");
    // A directory where a video's partial file must go: writing it fails after its task is paid.
    std::fs::create_dir_all(out.join("videos/m-01.mp4.part")).unwrap();
    let o = crate::util::vidbatch_run(&m, &out, &sim, "money-key", "auto")
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("m-01.mp4.part"), "{stderr}");
    let r = report(&out);
    assert_eq!(r["run"]["outcome"], "local_failure", "{}", r["run"]);
    assert_eq!(r["run"]["exit_code"], 4);
    assert!(r["run"]["finished_at"].is_string());
    assert_eq!(r["summary"]["creates"].as_u64(), Some(sim.stats().tasks_created));
    assert!(sim.stats().tasks_created > 0);
}

/// A job made again (here with `--retry-failed`) gets a new task; a `.part` an earlier task
/// left (a download cut off, then the task expired) holds that task's bytes. The new task's
/// video is downloaded whole, never stitched onto them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_made_again_never_finishes_the_download_an_earlier_task_began() {
    let sim = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 2, "");
    let (first, out) = (dir.path().join("first"), dir.path().join("out"));
    // A real video of another task, for the bytes an earlier task's download left.
    let first_run = crate::util::vidbatch_run(&m, &first, &sim, "money-key", "auto");
    assert_eq!(finish(first_run).await, Some(0));
    let earlier = journal::load(&first.join(outdir::STATE_FILE)).unwrap().state;
    let earlier_task = earlier.jobs["m-00"].task_id().unwrap().to_string();
    let earlier_video = std::fs::read(first.join("videos/m-00.mp4")).unwrap();
    sim.update(|c| c.fail_rate = 1.0);
    let run = || crate::util::vidbatch_run(&m, &out, &sim, "money-key", "auto");
    assert_eq!(finish(run()).await, Some(1));
    sim.update(|c| c.fail_rate = 0.0);
    let cut = &earlier_video[..earlier_video.len() - 8];
    std::fs::write(out.join("videos/m-00.mp4.part"), cut).unwrap();
    let mut retry = run();
    retry.arg("--retry-failed");
    assert_eq!(finish(retry).await, Some(0));
    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    let task = state.jobs["m-00"].task_id().unwrap();
    let video = std::fs::read(out.join("videos/m-00.mp4")).unwrap();
    let names = |task: &str| video.windows(task.len()).any(|w| w == task.as_bytes());
    assert!(
        names(task) && !names(&earlier_task),
        "the video of {task} was stitched onto the bytes of {earlier_task}"
    );
}
