//! Outputs you can trust: report.json against its schema, JUnit, the Markdown summary, the
//! offline rebuild, last frames, URL refreshes, corrupted videos and failed downloads, all
//! from real runs against the simulator on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::output;
use tokio::process::Command;
use vidbatch::api::{ApiKey, Client, ClientConfig, CreateRequest, http_client};
use vidbatch::download::{MediaKind, verify_file};
use vidbatch::events::{FailureKind, RunOutcome};
use vidbatch::report::{self, Outputs, Report};
use vidbatch::runner::{JobSpec, RunSettings, RunSummary, Runner};
use vidbatch::state::Phase;
use vidbatch_sim::{SimConfig, SimHandle};

fn jobs(n: usize, tag: &str, last_frame: bool) -> Vec<JobSpec> {
    (0..n)
        .map(|i| JobSpec {
            id: format!("{tag}-{i:03}"),
            name: format!("{tag}-{i:03}"),
            fingerprint: format!("fp-{tag}-{i}"),
            source: format!("shots/{tag}.yaml:{}:3", i + 4),
            estimated_tokens: Some(48_600),
            request: CreateRequest {
                model: "seedance-1.5-pro".into(),
                prompt: format!("{tag} shot {i}: a heron <at> \"dawn\" & dusk"),
                duration: Some(5),
                resolution: Some(vidbatch::api::Resolution::P480),
                ratio: Some(vidbatch::api::Ratio::Landscape),
                return_last_frame: last_frame.then_some(true),
                ..Default::default()
            },
        })
        .collect()
}

fn fast_sim() -> SimConfig {
    SimConfig {
        time_scale: 0.002,
        rpm: 0,
        seed: 5,
        ..SimConfig::default()
    }
}

fn with_retries(mut s: RunSettings, n: u32) -> RunSettings {
    s.max_retries = n;
    s.retry.max_retries = n;
    s
}

async fn run_until(
    sim: &SimHandle,
    settings: RunSettings,
    jobs: Vec<JobSpec>,
    interrupt: impl std::future::Future<Output = ()> + Send + 'static,
) -> RunSummary {
    let mut config = ClientConfig::new(sim.base_url(), ApiKey::new("report-key"));
    config.request_timeout = Duration::from_secs(10);
    let client = Client::new(&config).unwrap();
    let http = http_client(Duration::from_secs(5), None).unwrap();
    Runner::new(client, http, settings)
        .run(jobs, vec![], None, interrupt)
        .await
        .expect("run")
}

async fn run(sim: &SimHandle, settings: RunSettings, jobs: Vec<JobSpec>) -> RunSummary {
    run_until(sim, settings, jobs, std::future::pending()).await
}

/// Writes the report files as `vidbatch run` does and reads report.json back.
fn write_and_read(out: &Path, summary: &RunSummary, outputs: &Outputs) -> serde_json::Value {
    report::write_all(out, &summary.state, outputs).expect("write report");
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn schema() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string("schemas/report.schema.json").unwrap()).unwrap()
}

fn assert_matches_schema(report: &serde_json::Value) {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "report does not match the schema: {errors:#?}");
}

/// The `<testcase ...>...</testcase>` of a job.
fn testcase<'a>(xml: &'a str, id: &str) -> &'a str {
    let start = xml
        .find(&format!("name=\"{id}\""))
        .unwrap_or_else(|| panic!("no testcase {id} in {xml}"));
    let start = xml[..start].rfind("<testcase").unwrap();
    let end = start + xml[start..].find("</testcase>").unwrap();
    &xml[start..end]
}

#[test]
fn schema_file_is_up_to_date() {
    let want = report::report_schema();
    crate::util::assert_schema_file("report.schema.json", &want, "report::schema_file_is_up_to_date");
    let v: serde_json::Value = serde_json::from_str(&want).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    for key in ["run", "summary", "jobs"] {
        assert!(
            v["required"].as_array().unwrap().contains(&key.into()),
            "{key} is required"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_clean_failed_and_interrupted_runs_match_the_schema() {
    // Clean, with last frames.
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let summary = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(6, "clean", true),
    )
    .await;
    assert_eq!(summary.outcome, RunOutcome::Success);
    let r = write_and_read(dir.path(), &summary, &Outputs::default());
    assert_matches_schema(&r);
    assert_eq!(r["run"]["outcome"], "success");
    assert_eq!(r["summary"]["by_state"]["done"], 6);
    assert_eq!(r["summary"]["creates"], 6);
    assert!(r["summary"]["api_requests"].as_u64().unwrap() >= 12);
    assert!(r["summary"]["tokens_used"].as_u64().unwrap() > 0);
    assert_eq!(r["summary"]["generation_seconds"]["count"], 6);
    assert!(r["summary"]["generation_seconds"]["p95"].is_number());
    for j in r["jobs"].as_array().unwrap() {
        assert_eq!(j["state"], "done");
        assert_eq!(j["sha256"].as_str().unwrap().len(), 64);
        assert!(j["bytes"].as_u64().unwrap() > 0);
        assert!(j["video_url_expires_at"].is_string(), "{j}");
        assert!(j["usage"]["total_tokens"].as_u64().unwrap() > 0);
        assert_eq!(j["request"]["model"], "seedance-1.5-pro");
        assert_eq!(j["task_ids"].as_array().unwrap().len(), 1);
        assert!(j["timings"]["created_at"].is_string());
        assert!(j["timings"]["total_seconds"].is_number());
        assert!(j["error"].is_null());
    }

    // Every task fails on the server.
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        fail_rate: 1.0,
        ..fast_sim()
    })
    .await;
    let summary = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(4, "failing", false),
    )
    .await;
    assert_eq!(summary.outcome, RunOutcome::SomeFailed);
    let r = write_and_read(dir.path(), &summary, &Outputs::default());
    assert_matches_schema(&r);
    assert_eq!(r["run"]["exit_code"], 1);
    assert_eq!(r["summary"]["by_state"]["task_failed"], 4);
    for j in r["jobs"].as_array().unwrap() {
        assert_eq!(j["error"]["kind"], "task_failed");
        assert!(j["error"]["code"].is_string(), "{j}");
        assert!(!j["error"]["message"].as_str().unwrap().is_empty());
        assert!(j["file"].is_null());
    }

    // Interrupted while tasks are still generating.
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(3600)),
        time_scale: 1.0,
        ..fast_sim()
    })
    .await;
    let summary = run_until(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(3, "cut-short", false),
        tokio::time::sleep(Duration::from_millis(800)),
    )
    .await;
    assert_eq!(summary.outcome, RunOutcome::Interrupted);
    let r = write_and_read(dir.path(), &summary, &Outputs::default());
    assert_matches_schema(&r);
    assert_eq!(r["run"]["outcome"], "interrupted");
    assert_eq!(r["run"]["exit_code"], 130);
    let by_state = r["summary"]["by_state"].as_object().unwrap();
    assert!(by_state["submitted"].as_u64().unwrap() >= 1, "{by_state:?}");
    let unfinished: u64 = ["pending", "submitting", "submitted"]
        .iter()
        .filter_map(|k| by_state.get(*k).and_then(|v| v.as_u64()))
        .sum();
    assert_eq!(unfinished, 3, "{by_state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_carries_failures_with_code_and_message_and_marks_flaky_jobs() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        fail_rate: 0.4,
        cut_download_rate: 0.5,
        seed: 21,
        ..fast_sim()
    })
    .await;
    let summary = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(12, "mixed", false),
    )
    .await;
    let junit = dir.path().join("junit.xml");
    let md = dir.path().join("summary.md");
    let step = dir.path().join("step-summary.md");
    std::fs::write(&step, "earlier step\n").unwrap();
    let outputs = Outputs {
        junit: Some(junit.clone()),
        summary_md: Some(md.clone()),
        step_summary: Some(step.clone()),
    };
    let r = write_and_read(dir.path(), &summary, &outputs);
    assert_matches_schema(&r);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(xml.contains("<testsuite name=\"vidbatch\" tests=\"12\""), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 12);

    let (mut failed, mut flaky) = (0, 0);
    for job in summary.state.jobs_in_order() {
        let case = testcase(&xml, &job.id);
        assert!(case.contains("classname=\"shots/mixed.yaml\""), "{case}");
        match job.phase {
            Phase::Failed => {
                failed += 1;
                let f = job.failure.as_ref().unwrap();
                assert_eq!(f.kind, FailureKind::TaskFailed);
                let code = f.code.as_deref().expect("the API's code");
                assert!(case.contains(&format!("<failure type=\"{code}\"")), "{case}");
                assert!(case.contains(&format!("code: {code}")), "{case}");
                assert!(case.contains(&report::junit::escape(&f.message)), "{case}");
                assert!(!case.contains("flakyFailure"));
            }
            Phase::Done if job.retries > 0 || job.failures > 0 => {
                flaky += 1;
                assert!(case.contains("<flakyFailure "), "{case}");
                assert!(case.contains("<property name=\"flaky\" value=\"true\"/>"));
                assert!(!case.contains("<failure "), "{case}");
            }
            Phase::Done => {
                assert!(!case.contains("flaky"), "{case}");
                assert!(!case.contains("<failure "), "{case}");
            }
            other => panic!("{}: unexpected phase {other:?}", job.id),
        }
    }
    assert!(failed > 0, "no task failed: pick another seed");
    assert!(flaky > 0, "no download was cut: pick another seed");
    assert!(xml.contains(&format!("failures=\"{failed}\"")), "{xml}");
    assert_eq!(r["summary"]["flaky"], flaky);

    // Markdown: the table, and the same text appended to the step summary.
    let text = std::fs::read_to_string(&md).unwrap();
    let done = 12 - failed;
    assert!(
        text.starts_with(&format!(
            "### vidbatch: {done} of 12 jobs done (some_failed, exit code 1)"
        )),
        "{text}"
    );
    assert!(text.contains("| state | jobs |"), "{text}");
    assert!(text.contains(&format!("| done | {done} |")), "{text}");
    assert!(text.contains(&format!("| task_failed | {failed} |")), "{text}");
    assert!(text.contains("| job | state | source | error |"), "{text}");
    let step_text = std::fs::read_to_string(&step).unwrap();
    assert_eq!(step_text, format!("earlier step\n{text}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_frames_are_saved_as_valid_pngs() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let mut planned = jobs(2, "frame", true);
    planned.extend(jobs(1, "noframe", false));
    let summary = run(&sim, crate::util::fast_settings(dir.path()), planned).await;
    assert_eq!(summary.outcome, RunOutcome::Success);
    for id in ["frame-000", "frame-001"] {
        let job = &summary.state.jobs[id];
        let rel = job.last_frame.as_deref().expect("a last frame");
        assert_eq!(rel, format!("videos/{id}.last.png"));
        let path = dir.path().join(rel);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        verify_file(&path, MediaKind::Png).expect("a valid PNG");
    }
    assert!(summary.state.jobs["noframe-000"].last_frame.is_none());
    assert!(!dir.path().join("videos/noframe-000.last.png").exists());
    let r = serde_json::to_value(Report::from_state(&summary.state)).unwrap();
    assert_eq!(r["jobs"][0]["last_frame"], "videos/frame-000.last.png");
    assert!(r["jobs"][2]["last_frame"].is_null());
}

/// A job that sets no seed gets one drawn by vidbatch; the report shows the request as sent,
/// that seed included, so the video can be made again: the seed its task shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_shows_the_seed_vidbatch_drew_for_each_job() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let summary = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(3, "seedless", false),
    )
    .await;
    assert_eq!(summary.outcome, RunOutcome::Success);
    let client = Client::new(&ClientConfig::new(sim.base_url(), ApiKey::new("report-key"))).unwrap();
    let r = write_and_read(dir.path(), &summary, &Outputs::default());
    for job in r["jobs"].as_array().unwrap() {
        let task = client.get(job["task_ids"][0].as_str().unwrap()).await.unwrap();
        let seed = job["request"]["seed"].as_i64();
        assert!(seed.is_some(), "{} shows no seed", job["id"]);
        assert_eq!(
            seed, task.seed,
            "{} shows another seed than its task's",
            job["id"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_urls_are_refreshed_and_counted_in_the_report() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        // Each refresh may draw another short URL: at 0.2, six in a row (the limit) for one of
        // 30 jobs is about 0.2% likely, and no short URL at all about 0.1%.
        short_url_rate: 0.2,
        seed: 3,
        ..fast_sim()
    })
    .await;
    let summary = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(30, "short", false),
    )
    .await;
    let failures: Vec<_> = summary
        .state
        .jobs
        .values()
        .filter_map(|j| j.failure.as_ref())
        .collect();
    assert_eq!(summary.outcome, RunOutcome::Success, "{failures:?}");
    let r = write_and_read(dir.path(), &summary, &Outputs::default());
    assert_matches_schema(&r);
    let per_job: u64 = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["url_refreshes"].as_u64().unwrap())
        .sum();
    assert!(per_job > 0, "no URL was refreshed");
    assert_eq!(r["summary"]["url_refreshes"], per_job);
    assert_eq!(sim.stats().tasks_created, 30, "a refresh never generates again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_corrupted_between_runs_is_fetched_again_without_a_new_generation() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let first = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(3, "keep", false),
    )
    .await;
    assert_eq!(first.outcome, RunOutcome::Success);
    let job = &first.state.jobs["keep-001"];
    let path = dir.path().join(job.path.as_ref().unwrap());
    let original_sha = job.sha256.clone().unwrap();
    // Flip bytes in the middle: same size, another sha256.
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    // And truncate another one so it no longer parses as MP4.
    let other = dir
        .path()
        .join(first.state.jobs["keep-002"].path.as_ref().unwrap());
    let len = std::fs::metadata(&other).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&other)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let created = sim.stats().tasks_created;
    assert_eq!(created, 3);

    let second = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(3, "keep", false),
    )
    .await;
    assert_eq!(second.outcome, RunOutcome::Success);
    assert_eq!(sim.stats().tasks_created, created, "no new generation");
    for id in ["keep-000", "keep-001", "keep-002"] {
        let j = &second.state.jobs[id];
        assert_eq!(j.phase, Phase::Done);
        assert_eq!(j.task_ids, first.state.jobs[id].task_ids);
        let found =
            verify_file(&dir.path().join(j.path.as_ref().unwrap()), MediaKind::Mp4).expect("valid again");
        assert_eq!(Some(&found.sha256), j.sha256.as_ref());
    }
    assert_eq!(second.state.jobs["keep-001"].sha256.as_ref(), Some(&original_sha));
    // Only the two damaged files were downloaded again.
    assert_eq!(sim.stats().total("download"), 5);
    let r = write_and_read(dir.path(), &second, &Outputs::default());
    assert_matches_schema(&r);
    assert_eq!(r["run"]["runs"], 2);
    assert_eq!(r["summary"]["by_state"]["done"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_cut_downloads_end_download_failed_and_a_later_run_finishes_without_a_new_task() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        cut_download_rate: 1.0,
        ..fast_sim()
    })
    .await;
    let first = run(
        &sim,
        with_retries(crate::util::fast_settings(dir.path()), 2),
        jobs(2, "cut", false),
    )
    .await;
    assert_eq!(first.outcome, RunOutcome::SomeFailed);
    let r = write_and_read(dir.path(), &first, &Outputs::default());
    assert_matches_schema(&r);
    assert_eq!(r["summary"]["by_state"]["download_failed"], 2);
    for j in r["jobs"].as_array().unwrap() {
        assert_eq!(j["state"], "download_failed");
        assert_eq!(j["error"]["kind"], "download_failed");
        assert!(j["file"].is_null());
        assert!(j["retries"].as_u64().unwrap() >= 2);
    }
    for j in first.state.jobs.values() {
        assert!(
            j.failure.as_ref().is_some_and(|f| f.kind.resumes_by_itself()),
            "still resumable"
        );
    }
    let created = sim.stats().tasks_created;
    assert_eq!(created, 2);

    sim.update(|c| c.cut_download_rate = 0.0);
    let second = run(
        &sim,
        crate::util::fast_settings(dir.path()),
        jobs(2, "cut", false),
    )
    .await;
    assert_eq!(second.outcome, RunOutcome::Success);
    assert_eq!(sim.stats().tasks_created, created, "no new generation");
    let junit = dir.path().join("junit.xml");
    let r = write_and_read(
        dir.path(),
        &second,
        &Outputs {
            junit: Some(junit.clone()),
            ..Outputs::default()
        },
    );
    assert_matches_schema(&r);
    let xml = std::fs::read_to_string(&junit).unwrap();
    for j in second.state.jobs.values() {
        assert_eq!(j.phase, Phase::Done);
        verify_file(&dir.path().join(j.path.as_ref().unwrap()), MediaKind::Mp4).expect("valid");
        let case = testcase(&xml, &j.id);
        assert!(case.contains("<flakyFailure type=\"download_failed\""), "{case}");
    }
    assert_eq!(r["summary"]["flaky"], 2);
}

// ---- The binary ----

fn manifest(dir: &Path, jobs: usize) -> PathBuf {
    crate::util::matrix_manifest(dir, "manifest.yaml", "clip", "report test clip", jobs, "")
}

fn vidbatch(base_url: &str, args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args)
        .env("ALLTOKEN_API_KEY", "report-test-key")
        .env("ALLTOKEN_BASE_URL", base_url)
        .env("VIDBATCH_POLL_INTERVAL", "40ms")
        .env("VIDBATCH_RPM", "60000")
        .env("VIDBATCH_BURST", "50")
        .env("VIDBATCH_CONCURRENCY", "10")
        .env("VIDBATCH_PROGRESS", "never")
        .env_remove("VIDBATCH_JUNIT")
        .env_remove("VIDBATCH_SUMMARY_MD")
        .env_remove("GITHUB_STEP_SUMMARY")
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_junit_and_summary_and_report_rebuilds_all_three_from_state() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        fail_rate: 0.3,
        short_url_rate: 0.3,
        seed: 9,
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 8);
    let out = dir.path().join("out");
    let junit = dir.path().join("ci/junit.xml");
    std::fs::create_dir_all(junit.parent().unwrap()).unwrap();
    let md = dir.path().join("summary.md");
    let step = dir.path().join("step.md");
    let mut cmd = vidbatch(
        &sim.base_url(),
        &[
            "run",
            m.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--summary-md",
            md.to_str().unwrap(),
        ],
    );
    cmd.env("VIDBATCH_JUNIT", &junit)
        .env("GITHUB_STEP_SUMMARY", &step);
    let o = output(cmd).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let report_json = std::fs::read(out.join("report.json")).unwrap();
    let r: serde_json::Value = serde_json::from_slice(&report_json).unwrap();
    assert_matches_schema(&r);
    assert!(r["summary"]["by_state"]["task_failed"].as_u64().unwrap() > 0);
    assert_eq!(r["run"]["manifests"][0]["sha256"].as_str().unwrap().len(), 64);
    assert!(r["run"]["settings"]["rpm"].is_number());
    let settings_text = r["run"]["settings"].to_string();
    assert!(!settings_text.contains("report-test-key"), "the key leaked");
    if r["summary"]["url_refreshes"].as_u64().unwrap() > 0 {
        assert!(
            stderr.contains("reading the task for a fresh one"),
            "the log says when a URL is refreshed: {stderr}"
        );
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 8);
    assert!(
        xml.contains("classname=\"") && xml.contains("manifest.yaml\""),
        "{xml}"
    );
    assert!(xml.contains("<failure type=\""), "{xml}");
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("| state | jobs |"), "{text}");
    assert_eq!(std::fs::read_to_string(&step).unwrap(), text);

    // The simulator is gone: `vidbatch report` works from state.jsonl alone.
    let base_url = sim.base_url();
    drop(sim);
    for f in [out.join("report.json"), junit.clone(), md.clone()] {
        std::fs::remove_file(f).unwrap();
    }
    let o = output(vidbatch(
        &base_url,
        &[
            "report",
            "--out",
            out.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--summary-md",
            md.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(out.join("report.json")).unwrap()),
        String::from_utf8_lossy(&report_json),
        "report rebuilt from state differs from the run's"
    );
    assert_eq!(std::fs::read_to_string(&junit).unwrap(), xml);
    assert_eq!(std::fs::read_to_string(&md).unwrap(), text);
    // GITHUB_STEP_SUMMARY was unset for `report`: the step summary is untouched.
    assert_eq!(std::fs::read_to_string(&step).unwrap(), text);
}
