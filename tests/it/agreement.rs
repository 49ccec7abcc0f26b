//! The exit code, report.json, the JUnit file, the Markdown summary and `status` tell one story
//! for every outcome of a run, and jobs that left the manifest are "not in plan" in all of them,
//! never failures. The real binary against the simulator; each test is named after what it pins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use vidbatch_sim::{Sim, SimConfig, SimHandle};

async fn sim(config: SimConfig) -> SimHandle {
    Sim::start(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.01,
        rpm: 0,
        seed: 5,
        ..config
    })
    .await
    .expect("simulator")
}

/// Where one run's CI files go.
struct Files {
    out: PathBuf,
    junit: PathBuf,
    md: PathBuf,
}

impl Files {
    fn in_dir(dir: &Path) -> Files {
        Files {
            out: dir.join("out"),
            junit: dir.join("junit.xml"),
            md: dir.join("summary.md"),
        }
    }
}

/// `vidbatch run` with `--junit` and `--summary-md`.
fn run(m: &Path, files: &Files, sim: &SimHandle, key: &str, concurrency: &str) -> Command {
    let mut cmd = crate::util::vidbatch_run(m, &files.out, sim, key, concurrency);
    cmd.arg("--junit")
        .arg(&files.junit)
        .arg("--summary-md")
        .arg(&files.md)
        .env_remove("GITHUB_STEP_SUMMARY");
    cmd
}

async fn finish(mut cmd: Command) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(120), cmd.status())
        .await
        .expect("the run ended in time")
        .expect("vidbatch ran")
        .code()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The number in `name="N"` of the first tag that has it.
fn attr(xml: &str, name: &str) -> usize {
    let key = format!(" {name}=\"");
    let start = xml
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or_else(|| panic!("no {name}: {xml}"));
    let end = xml[start..].find('"').map(|i| start + i).unwrap_or(start);
    xml[start..end]
        .parse()
        .unwrap_or_else(|_| panic!("{name} is no number: {xml}"))
}

/// Checks that the exit code `code`, report.json, JUnit, the summary and `status --json` agree,
/// and that the outcome is `outcome`; returns the report.
async fn assert_agree(code: Option<i32>, outcome: &str, files: &Files) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&read(&files.out.join("report.json"))).expect("report.json is JSON");
    let run = &report["run"];
    let summary = &report["summary"];
    assert_eq!(run["outcome"], outcome, "{run}");
    assert_eq!(run["exit_code"].as_i64().map(|c| c as i32), code, "{run}");
    let code = code.expect("an exit code");
    let jobs = report["jobs"].as_array().expect("jobs");
    let planned: Vec<_> = jobs.iter().filter(|j| j["state"] != "not_in_plan").collect();
    let done = planned.iter().filter(|j| j["state"] == "done").count();
    let failed = planned.iter().filter(|j| !j["error"].is_null()).count();
    let not_in_plan = jobs.len() - planned.len();
    assert_eq!(summary["planned"], planned.len(), "{summary}");
    assert_eq!(summary["not_in_plan"], not_in_plan, "{summary}");
    assert_eq!(
        done == planned.len(),
        code == 0,
        "every job of the plan done iff exit 0"
    );

    // JUnit: red exactly when the exit code is not 0; failures are the plan's failed jobs.
    let xml = read(&files.junit);
    let (failures, errors, skipped) = (
        attr(&xml, "failures"),
        attr(&xml, "errors"),
        attr(&xml, "skipped"),
    );
    assert_eq!(failures, failed, "{xml}");
    assert_eq!(failures + errors > 0, code != 0, "{xml}");
    assert_eq!(skipped, jobs.len() - done - failed, "{xml}");
    assert!(
        xml.contains(&format!("<property name=\"outcome\" value=\"{outcome}\"/>")),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("<property name=\"exit_code\" value=\"{code}\"/>")),
        "{xml}"
    );
    if let Some(why) = run["stop_reason"].as_str() {
        assert!(xml.contains("<property name=\"stop_reason\""), "{xml}");
        assert!(
            read(&files.md).contains(why),
            "the summary lacks the stop reason {why}"
        );
    }

    // The summary's headline.
    let md = read(&files.md);
    let headline = format!(
        "### vidbatch: {done} of {} jobs done ({outcome}, exit code {code})",
        planned.len()
    );
    assert!(md.starts_with(&headline), "{md}");

    // `status --json`.
    let o = crate::util::bin()
        .args(["status", "--json", "--out"])
        .arg(&files.out)
        .output()
        .await
        .expect("status ran");
    assert_eq!(o.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json is JSON");
    assert_eq!(status["outcome"], outcome, "{status}");
    assert_eq!(status["exit_code"].as_i64(), Some(i64::from(code)), "{status}");
    if let Some(why) = run["stop_reason"].as_str() {
        let said = status["stop_reason"].as_str().unwrap_or_default();
        assert!(said.contains(why), "{said}");
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_agree_on_success() {
    let sim = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "ok", "fine shot", 3, "");
    let files = Files::in_dir(dir.path());
    let code = finish(run(&m, &files, &sim, "agree-key", "auto")).await;
    assert_eq!(code, Some(0));
    assert_agree(code, "success", &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_agree_on_some_failed() {
    let sim = sim(SimConfig {
        fail_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "bad", "failing shot", 2, "");
    let files = Files::in_dir(dir.path());
    let code = finish(run(&m, &files, &sim, "agree-key", "auto")).await;
    assert_eq!(code, Some(1));
    let r = assert_agree(code, "some_failed", &files).await;
    assert_eq!(r["summary"]["by_state"]["task_failed"], 2, "{}", r["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_agree_on_a_run_stopped_by_the_budget_and_name_the_reason() {
    let sim = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "b", "budget shot", 4, "");
    let files = Files::in_dir(dir.path());
    let mut cmd = run(&m, &files, &sim, "agree-key", "1");
    cmd.args(["--budget-tokens", &(48_600 * 3 / 2).to_string()]);
    let code = finish(cmd).await;
    assert_eq!(code, Some(1));
    let r = assert_agree(code, "stopped", &files).await;
    let why = r["run"]["stop_reason"].as_str().unwrap_or_default();
    assert!(why.contains("budget"), "{}", r["run"]);
    // Nothing failed, yet the JUnit file is red: a run-level error says why.
    let xml = read(&files.junit);
    assert!(xml.contains("name=\"run\""), "{xml}");
    assert_eq!(attr(&xml, "errors"), 1, "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_agree_on_a_fatal_bad_key() {
    let sim = sim(SimConfig {
        api_keys: vec!["the-right-key".into()],
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "k", "keyed shot", 2, "");
    let files = Files::in_dir(dir.path());
    let code = finish(run(&m, &files, &sim, "a-wrong-key", "auto")).await;
    assert_eq!(code, Some(3));
    let r = assert_agree(code, "fatal", &files).await;
    assert!(r["run"]["stop_reason"].is_string(), "{}", r["run"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_agree_on_an_interrupted_run() {
    let sim = sim(SimConfig {
        gen_time: Some(Duration::from_secs(600)),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "i", "long shot", 3, "");
    let files = Files::in_dir(dir.path());
    let mut child = run(&m, &files, &sim, "agree-key", "auto").spawn().expect("spawn");
    let code = crate::util::interrupt_once_created(&mut child, &sim, 2).await;
    assert_eq!(code, Some(130));
    assert_agree(code, "interrupted", &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_agree_on_a_local_failure() {
    let sim = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "l", "local shot", 3, "");
    let files = Files::in_dir(dir.path());
    // A directory where a video's partial file must go: writing it fails.
    std::fs::create_dir_all(files.out.join("videos/l-01.mp4.part")).expect("mkdir");
    let code = finish(run(&m, &files, &sim, "agree-key", "auto")).await;
    assert_eq!(code, Some(4));
    assert_agree(code, "local_failure", &files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_left_the_manifest_are_not_in_plan_and_never_turn_a_green_run_red() {
    let sim = sim(SimConfig {
        fail_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = Files::in_dir(dir.path());
    // A first manifest whose jobs all fail.
    let first = crate::util::matrix_manifest(dir.path(), "a.yaml", "old", "wrong shot", 3, "");
    assert_eq!(
        finish(run(&first, &files, &sim, "agree-key", "auto")).await,
        Some(1)
    );
    // The manifest is fixed: new ids, and every new job succeeds.
    sim.update(|c| c.fail_rate = 0.0);
    let second = crate::util::matrix_manifest(dir.path(), "b.yaml", "new", "right shot", 3, "");
    let code = finish(run(&second, &files, &sim, "agree-key", "auto")).await;
    assert_eq!(code, Some(0));
    let r = assert_agree(code, "success", &files).await;
    assert_eq!(r["summary"]["not_in_plan"], 3, "{}", r["summary"]);
    assert_eq!(r["summary"]["by_state"]["not_in_plan"], 3, "{}", r["summary"]);
    assert!(
        r["summary"]["by_state"].get("task_failed").is_none(),
        "{}",
        r["summary"]
    );
    for job in r["jobs"].as_array().expect("jobs") {
        let id = job["id"].as_str().unwrap_or_default();
        if id.starts_with("old-") {
            assert_eq!(job["state"], "not_in_plan", "{job}");
            assert_eq!(job["last_state"], "task_failed", "{job}");
            assert!(job["error"].is_null(), "{job}");
        }
    }
    let xml = read(&files.junit);
    assert_eq!(attr(&xml, "failures"), 0, "{xml}");
    assert_eq!(attr(&xml, "skipped"), 3, "{xml}");
    assert!(xml.contains("not in this run&apos;s plan"), "{xml}");
    let md = read(&files.md);
    assert!(
        md.contains("3 jobs of earlier runs are not in this run's plan"),
        "{md}"
    );
    assert!(
        !md.contains("| old-"),
        "a job not in the plan is listed as not done: {md}"
    );
    let html = read(&files.out.join("report.html"));
    assert!(html.contains("3 of 3 jobs done"), "report.html title");
    assert!(html.contains("not in plan"), "report.html");
    let o = crate::util::bin()
        .args(["status", "--out"])
        .arg(&files.out)
        .output()
        .await
        .expect("status ran");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("3 jobs (and 3 not in its plan)"), "{text}");
    assert!(text.contains("not_in_plan"), "{text}");
    // `report` rebuilds the same from the state alone.
    let before = read(&files.out.join("report.json"));
    let o = crate::util::bin()
        .args(["report", "--out"])
        .arg(&files.out)
        .output()
        .await
        .expect("report ran");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(read(&files.out.join("report.json")), before);
}
