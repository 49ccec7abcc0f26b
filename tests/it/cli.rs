//! The real `vidbatch` binary against the simulator: exit codes, shards, dry runs, signals,
//! the out-dir lock, status and report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{fast_sim, output};
use tokio::process::Command;
use vidbatch::journal;
use vidbatch::outdir;
use vidbatch_sim::{Sim, SimConfig, SimHandle};

fn manifest(dir: &Path, jobs: usize) -> PathBuf {
    crate::util::matrix_manifest(dir, "manifest.yaml", "shot", "cli test shot", jobs, "")
}

fn vidbatch(sim: &SimHandle, args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args)
        .env("ALLTOKEN_API_KEY", "cli-test-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .env("VIDBATCH_POLL_INTERVAL", "40ms")
        .env("VIDBATCH_RPM", "60000")
        .env("VIDBATCH_BURST", "50")
        .env("VIDBATCH_CONCURRENCY", "10")
        .env("VIDBATCH_PROGRESS", "never")
        .kill_on_drop(true);
    cmd
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_cover_the_plan_exactly_once() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 30);
    let mut seen: Vec<String> = Vec::new();
    for k in 1..=3 {
        let out = dir.path().join(format!("out{k}"));
        let shard = format!("{k}/3");
        let o = output(vidbatch(
            &sim,
            &[
                "run",
                m.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--shard",
                &shard,
            ],
        ))
        .await;
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let r = report(&out);
        assert_eq!(r["run"]["shard"], shard);
        for job in r["jobs"].as_array().unwrap() {
            assert_eq!(job["state"], "done");
            seen.push(job["id"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a job ran in two shards");
    assert_eq!(seen.len(), 30, "a job ran in no shard");
    assert_eq!(sim.stats().tasks_created, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 4);
    let out = dir.path().join("out");
    let o = output(vidbatch(
        &sim,
        &[
            "run",
            m.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--dry-run",
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("shot-03"), "{stdout}");
    assert!(stdout.contains("nothing was sent"), "{stdout}");
    let stats = sim.stats();
    assert!(stats.requests.is_empty(), "{:?}", stats.requests);
    assert!(!out.join("state.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_exits_2_and_sends_nothing() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = dir.path().join("bad.yaml");
    std::fs::write(
        &m,
        "version: 1\njobs:\n  - prompt: hi\n    model: seedance-1.5-pro\n    duration: 99\n",
    )
    .unwrap();
    let o = output(vidbatch(
        &sim,
        &[
            "run",
            m.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("duration"), "{stderr}");
    assert!(sim.stats().requests.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_saves_state_writes_the_report_and_exits_130_then_resume_finishes() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.05,
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 6);
    let out = dir.path().join("out");
    let args = ["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let child = vidbatch(&sim, &args).spawn().unwrap();
    // Wait until tasks are in flight, then ask it to stop.
    crate::util::wait_for_creates(&sim, 6, Duration::from_secs(30)).await;
    let pid = child.id().unwrap() as i32;
    send_signal(pid, "TERM");
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
    let r = report(&out);
    assert_eq!(r["run"]["outcome"], "interrupted");
    assert_eq!(r["run"]["exit_code"], 130);

    let o = output(vidbatch(&sim, &args)).await;
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sim.stats().tasks_created, 6, "the resumed run submitted again");
    assert_eq!(report(&out)["summary"]["by_state"]["done"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_out_dir_exits_2_naming_the_holder() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.05,
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 2);
    let out = dir.path().join("out");
    let args = ["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let mut first = vidbatch(&sim, &args).spawn().unwrap();
    crate::util::wait_for_creates(&sim, 1, Duration::from_secs(30)).await;
    let o = output(vidbatch(&sim, &args)).await;
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("pid {}", first.id().unwrap())),
        "{stderr}"
    );
    assert_eq!(first.wait().await.unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_report_read_the_state_offline() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 3);
    let out = dir.path().join("out");
    let o = output(vidbatch(
        &sim,
        &["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()],
    ))
    .await;
    assert_eq!(o.status.code(), Some(0));
    std::fs::remove_file(out.join("report.json")).unwrap();
    drop(sim);
    let offline = Sim::start(fast_sim()).await.unwrap();
    let o = output(vidbatch(&offline, &["report", "--out", out.to_str().unwrap()])).await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(report(&out)["summary"]["by_state"]["done"], 3);
    let o = output(vidbatch(
        &offline,
        &["status", "--out", out.to_str().unwrap(), "--json"],
    ))
    .await;
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["summary"]["jobs"], 3);
    assert!(
        offline.stats().requests.is_empty(),
        "status and report are offline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_the_simulated_models() {
    let sim = Sim::start(fast_sim()).await.unwrap();
    let o = output(vidbatch(&sim, &["models"])).await;
    assert_eq!(o.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for model in ["seedance-1.5-pro", "seedance-2.0", "seedance-2.0-fast"] {
        assert!(stdout.lines().any(|l| l == model), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_exits_3() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        api_keys: vec!["the-right-key".into()],
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 2);
    let out = dir.path().join("out");
    let o = output(vidbatch(
        &sim,
        &["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()],
    ))
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("report.json").exists());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("cli-test-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_that_is_not_http_exits_2_before_anything_is_written() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 2);
    let out = dir.path().join("out");
    for base in ["api.example.com/v1", "ftp://api.example.com/v1"] {
        let mut cmd = vidbatch(
            &sim,
            &["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()],
        );
        cmd.env("ALLTOKEN_BASE_URL", base);
        let o = output(cmd).await;
        assert_eq!(o.status.code(), Some(2), "{base}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("is not an http(s) URL") && stderr.contains(base),
            "{stderr}"
        );
        assert!(!out.exists(), "{base}: the out dir was made");
    }
}

/// Sends a signal by name with the system's `kill`.
fn send_signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_are_retried_only_with_retry_failed() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        fail_rate: 1.0,
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 3);
    let out = dir.path().join("out");
    let args = ["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let o = output(vidbatch(&sim, &args)).await;
    assert_eq!(o.status.code(), Some(1));
    sim.update(|c| c.fail_rate = 0.0);
    let o = output(vidbatch(&sim, &args)).await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "failed jobs stay failed without --retry-failed"
    );
    assert_eq!(sim.stats().tasks_created, 3);
    let mut retry = args.to_vec();
    retry.push("--retry-failed");
    let o = output(vidbatch(&sim, &retry)).await;
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sim.stats().tasks_created, 6);
    // The seed of a task that failed is not sent again: the retry is a new request, with a
    // new seed, not the same generation (and the same failure) once more.
    assert_eq!(
        sim.stats().duplicate_creates,
        0,
        "a retry re-sent a failed create"
    );
    let r = report(&out);
    assert_eq!(r["summary"]["by_state"]["done"], 3);
    for job in r["jobs"].as_array().unwrap() {
        assert_eq!(job["recovered_from"]["kind"], "task_failed", "{job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_moves_the_earlier_state_and_its_paid_videos_aside() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 2);
    let out = dir.path().join("out");
    let args = ["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
    assert_eq!(output(vidbatch(&sim, &args)).await.status.code(), Some(0));
    assert_eq!(output(vidbatch(&sim, &args)).await.status.code(), Some(0));
    assert_eq!(
        sim.stats().tasks_created,
        2,
        "a resumed run found nothing left to do"
    );
    let mut fresh = args.to_vec();
    fresh.push("--fresh");
    assert_eq!(output(vidbatch(&sim, &fresh)).await.status.code(), Some(0));
    assert_eq!(sim.stats().tasks_created, 4);
    // The earlier run's state and paid videos are moved aside whole, never overwritten.
    let earlier: Vec<_> = std::fs::read_dir(out.join("earlier"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert_eq!(earlier.len(), 1);
    let kept = journal::load(&earlier[0].join(outdir::STATE_FILE)).unwrap().state;
    assert_eq!(kept.jobs.len(), 2);
    for job in kept.jobs.values() {
        let file = earlier[0].join(job.path.as_ref().unwrap());
        let found = vidbatch::download::verify_file(&file, vidbatch::download::MediaKind::Mp4).unwrap();
        assert_eq!(
            Some(found.sha256),
            job.sha256,
            "{} was overwritten",
            file.display()
        );
    }
    let now = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    assert!(
        now.jobs
            .values()
            .all(|j| !kept.claimed_tasks.contains(j.task_id().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_left_without_their_state_file_are_neither_overwritten_nor_paid_for_again() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 2);
    let out = dir.path().join("out");
    let args = ["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
    assert_eq!(output(vidbatch(&sim, &args)).await.status.code(), Some(0));
    let videos = |dir: &Path| {
        let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(outdir::VIDEOS))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let made = videos(&out);
    assert_eq!(made.len(), 2);
    // The state file emptied (a disk that filled up, a hand edit) and then gone altogether.
    for lost in ["emptied", "deleted"] {
        let state = out.join(outdir::STATE_FILE);
        if lost == "emptied" {
            std::fs::write(&state, b"").unwrap();
        } else {
            std::fs::remove_file(&state).unwrap();
        }
        let o = output(vidbatch(&sim, &args)).await;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "state {lost}: {stderr}");
        assert!(stderr.contains("videos/shot-"), "state {lost}: {stderr}");
        assert!(stderr.contains("--fresh"), "state {lost}: {stderr}");
        assert_eq!(
            sim.stats().tasks_created,
            2,
            "state {lost}: nothing is paid for again"
        );
        assert_eq!(videos(&out), made, "state {lost}: the videos are untouched");
    }
    let mut fresh = args.to_vec();
    fresh.push("--fresh");
    assert_eq!(output(vidbatch(&sim, &fresh)).await.status.code(), Some(0));
    let earlier: Vec<PathBuf> = std::fs::read_dir(out.join("earlier"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(earlier.len(), 1);
    assert_eq!(
        videos(&earlier[0]),
        made,
        "--fresh keeps the earlier videos whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_says_what_it_found_which_settings_it_kept_and_where_the_report_is() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 2);
    let out = dir.path().join("out");
    let args = ["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let mut first = args.to_vec();
    first.extend(["--download-concurrency", "3", "--max-fail", "7"]);
    let o = output(vidbatch(&sim, &first)).await;
    assert_eq!(o.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("resuming:"), "{stderr}");
    let o = output(vidbatch(&sim, &args)).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming: 2 done and verified"), "{stderr}");
    assert!(stderr.contains("settings from the earlier run"), "{stderr}");
    let kept = stderr
        .lines()
        .find(|l| l.contains("settings from the earlier run"))
        .unwrap();
    assert!(kept.contains("--download-concurrency 3"), "{kept}");
    assert!(kept.contains("--max-fail 7"), "{kept}");
    assert!(!kept.contains("--rpm"), "the default rpm is not news: {kept}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with(&format!("report: {}/report.json", out.display())),
        "{stderr}"
    );
}

/// `--sim`, Ctrl-C, and the same command again: the embedded simulator starts empty each run,
/// so the jobs whose tasks the first run's simulator held are made again (and said so), and
/// the rerun finishes instead of failing them as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sim_run_finishes_when_run_again_with_sim() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), 40);
    let out = dir.path().join("out");
    let args = [
        "run",
        m.to_str().unwrap(),
        "--sim",
        "--out",
        out.to_str().unwrap(),
        "--progress",
        "never",
    ];
    let mut first = crate::util::bin();
    first.args(args).stderr(std::process::Stdio::piped());
    let child = first.spawn().unwrap();
    // Interrupted once some of its tasks are on the server and the others not done.
    let on_server = || {
        journal::load(&out.join(outdir::STATE_FILE))
            .map(|l| {
                l.state
                    .jobs
                    .values()
                    .any(|j| j.phase == vidbatch::state::Phase::Submitted)
            })
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !on_server() {
        assert!(std::time::Instant::now() < deadline, "no task reached the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("tasks were on the embedded simulator, which stops with this run"),
        "{stderr}"
    );
    assert!(!stderr.contains("paid for"), "{stderr}");
    let held = journal::load(&out.join(outdir::STATE_FILE))
        .unwrap()
        .state
        .jobs
        .values()
        .filter(|j| j.phase != vidbatch::state::Phase::Done)
        .count();
    assert!(held > 0, "the first run finished before the interrupt");

    let mut again = crate::util::bin();
    again.args(args);
    let o = output(again).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("the simulator of the earlier --sim run stopped with it"),
        "{stderr}"
    );
    assert!(!stderr.contains("expired"), "{stderr}");
    let state = journal::load(&out.join(outdir::STATE_FILE)).unwrap().state;
    assert_eq!(state.jobs.len(), 40);
    assert!(
        state
            .jobs
            .values()
            .all(|j| j.phase == vidbatch::state::Phase::Done && j.task_ids.len() == 1)
    );
}
