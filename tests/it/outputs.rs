//! What people look at after a run: `report.html` opened by a real headless Chromium (every
//! video decoded, one card per job, filters that filter), `report --merge` over shard dirs,
//! `status` of a live and an interrupted run, the man pages rendered by `man -l`, and README's
//! flag tables against `run --help`. All against the simulator on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{output, text};
use tokio::process::Command;
use vidbatch_sim::{Sim, SimConfig, SimHandle};

/// A prompt prefix with markup in it: the page must show it as text.
const HOSTILE: &str = "<script>document.title='owned'</script> <b>heron</b> & dusk";

fn vidbatch(sim: &SimHandle, args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args)
        .env("ALLTOKEN_API_KEY", "outputs-test-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .env("VIDBATCH_POLL_INTERVAL", "40ms")
        .env("VIDBATCH_RPM", "60000")
        .env("VIDBATCH_BURST", "50")
        .env("VIDBATCH_CONCURRENCY", "10")
        .env("VIDBATCH_PROGRESS", "never")
        .env_remove("VIDBATCH_OUT")
        .env_remove("VIDBATCH_JUNIT")
        .env_remove("VIDBATCH_SUMMARY_MD")
        .env_remove("GITHUB_STEP_SUMMARY")
        .kill_on_drop(true);
    cmd
}

fn bare(args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args).kill_on_drop(true);
    cmd
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A simulator where about a third of the tasks fail, fast.
async fn failing_sim() -> SimHandle {
    Sim::start(SimConfig {
        time_scale: 0.002,
        rpm: 0,
        fail_rate: 0.3,
        seed: 18,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// Writes a manifest of `jobs` jobs with last frames and markup in every prompt.
fn manifest(dir: &Path, jobs: usize) -> PathBuf {
    crate::util::matrix_manifest(
        dir,
        "manifest.yaml",
        "clip",
        HOSTILE,
        jobs,
        "  return_last_frame: true\n",
    )
}

fn assert_matches_schema(report: &serde_json::Value) {
    let schema = read_json(Path::new("schemas/report.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "report does not match the schema: {errors:#?}");
}

// ---- The browser ----

/// The Chromium to drive: `VIDBATCH_TEST_CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VIDBATCH_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn skip_without_browser(test: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        eprintln!(
            "\n!!!!!!!!\n!!! SKIPPED {test}: no chromium on PATH (apt-get install chromium, or set \
             VIDBATCH_TEST_CHROMIUM); .ci/run installs it, so CI runs this test\n!!!!!!!!\n"
        );
    }
    found
}

/// Headless Chromium with a fresh profile and nothing that reaches the network.
fn headless(browser: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .kill_on_drop(true);
    cmd
}

/// Opens `page?selftest&q=PROBE` and returns what its self-test wrote into `#selftest`.
async fn selftest(browser: &Path, page: &Path, probe: &str) -> serde_json::Value {
    let profile = tempfile::tempdir().expect("profile dir");
    let page = page.canonicalize().expect("page path");
    let url = format!("file://{}?selftest&q={probe}", page.display());
    let mut cmd = headless(browser, profile.path());
    // Virtual time runs the page's timers without waiting in real time; the budget only
    // bounds the wait for the videos' metadata.
    cmd.args(["--virtual-time-budget=60000", "--dump-dom"]).arg(&url);
    let o = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finished in time")
        .expect("chromium ran");
    let dom = text(&o.stdout);
    let start = dom
        .find("<pre id=\"selftest\">")
        .unwrap_or_else(|| panic!("no #selftest in the DOM; stderr: {}\n{dom}", text(&o.stderr)))
        + "<pre id=\"selftest\">".len();
    let end = start + dom[start..].find("</pre>").expect("end of #selftest");
    let json = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    assert!(!json.is_empty(), "the self-test wrote nothing: {dom}");
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("");
    assert_eq!(
        title, "selftest done",
        "a prompt's markup ran as script, or the test did not end"
    );
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Checks a self-test's findings against the report the page was made from.
fn check_selftest(result: &serde_json::Value, report: &serde_json::Value, probe_id: &str) {
    let jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(
        result["cards"].as_u64(),
        Some(jobs.len() as u64),
        "one card per job"
    );
    let done: BTreeSet<String> = jobs
        .iter()
        .filter(|j| j["state"] == "done")
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let not_done: BTreeSet<String> = jobs
        .iter()
        .filter(|j| j["state"] != "done")
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect();

    // Failed (and unfinished) first.
    let order: Vec<&str> = result["order"]
        .as_array()
        .expect("order")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    let first_done = order.iter().position(|s| *s == "done").unwrap_or(order.len());
    assert!(
        order[first_done..].iter().all(|s| *s == "done"),
        "jobs not done come first: {order:?}"
    );
    assert_eq!(first_done, not_done.len());

    // Every video decoded: a finite, positive duration, the file of a done job.
    let videos = result["videos"].as_array().expect("videos");
    assert_eq!(videos.len(), done.len(), "one video per done job: {videos:?}");
    let files: BTreeSet<&str> = jobs.iter().filter_map(|j| j["file"].as_str()).collect();
    for v in videos {
        let duration = v["duration"].as_f64();
        assert!(
            duration.is_some_and(|d| d.is_finite() && d > 0.0),
            "the browser could not decode {v}"
        );
        assert!(v["error"].is_null(), "{v}");
        let src = v["src"].as_str().unwrap_or_default().replace("%20", " ");
        assert!(
            files.contains(src.as_str()),
            "{src} is not a file of the report: {files:?}"
        );
    }

    // The filters change what is shown.
    let steps = result["filters"].as_array().expect("filters");
    let ids = |i: usize| -> BTreeSet<String> {
        steps[i]["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(steps.len(), 6, "{steps:?}");
    assert_eq!(steps[0]["shown"].as_u64(), Some(jobs.len() as u64));
    assert_eq!(ids(1), not_done, "states other than done");
    assert_eq!(ids(2), done, "done only");
    assert_eq!(
        ids(3),
        BTreeSet::from([probe_id.to_string()]),
        "search {probe_id}"
    );
    assert_eq!(
        steps[4]["shown"].as_u64(),
        Some(0),
        "a search that matches nothing"
    );
    assert_eq!(steps[5]["shown"].as_u64(), Some(jobs.len() as u64), "all again");
    assert_eq!(
        steps[1]["label"].as_str(),
        Some(format!("{} of {} shown", not_done.len(), jobs.len()).as_str())
    );
}

/// Checks the page's markup without a browser: one card per job, markup escaped.
fn check_page_text(html: &str, report: &serde_json::Value) {
    let jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(html.matches("<article class=\"card").count(), jobs.len());
    assert!(
        !html.contains("<script>document.title"),
        "a prompt's markup is in the page raw"
    );
    assert!(
        !html.contains("<b>heron</b>"),
        "a prompt's markup is in the page raw"
    );
    assert!(html.contains("&lt;b&gt;heron&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;heron&lt;/b&gt;"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page links outside"
    );
    assert_eq!(html.matches("<script>").count(), 1, "one inline script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_plays_every_video_of_the_report_and_its_filters_filter() {
    let sim = failing_sim().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let m = manifest(dir.path(), 20);
    let out = dir.path().join("out");
    let o = output(vidbatch(
        &sim,
        &[
            "run",
            m.to_str().unwrap_or_default(),
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    ))
    .await;
    assert_eq!(o.status.code(), Some(1), "some jobs fail: {}", text(&o.stderr));
    let report = read_json(&out.join("report.json"));
    let by_state = &report["summary"]["by_state"];
    assert!(by_state["done"].as_u64().unwrap_or(0) >= 5, "{by_state}");
    assert!(by_state["task_failed"].as_u64().unwrap_or(0) >= 1, "{by_state}");
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html is written with report.json");
    check_page_text(&html, &report);
    let frames = report["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["last_frame"].as_str());
    for f in frames {
        assert!(html.contains(&format!("src=\"{f}\"")), "last frame {f} not shown");
        assert!(out.join(f).is_file(), "{f}");
    }

    // `vidbatch report` rebuilds the same page from the state alone.
    std::fs::remove_file(&page).expect("remove the page");
    let o = output(vidbatch(
        &sim,
        &["report", "--out", out.to_str().unwrap_or_default()],
    ))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(&page).expect("rebuilt page"), html);

    let Some(browser) =
        skip_without_browser("a_real_browser_plays_every_video_of_the_report_and_its_filters_filter")
    else {
        return;
    };
    let result = selftest(&browser, &page, "clip-07").await;
    check_selftest(&result, &report, "clip-07");

    // A picture of the page, for people (VIDBATCH_TEST_SCREENSHOT=path.png keeps it).
    let shot = std::env::var_os("VIDBATCH_TEST_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("report.png"));
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = headless(&browser, profile.path());
    cmd.args([
        "--window-size=1400,1800",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--screenshot={}", shot.display()))
    .arg(format!("file://{}", page.canonicalize().expect("page").display()));
    let o = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("screenshot in time")
        .expect("chromium ran");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", text(&o.stderr)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

// ---- Merging shards ----

fn counts(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_three_shard_dirs_adds_up_their_reports_and_links_to_their_videos() {
    let sim = failing_sim().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let m = manifest(dir.path(), 24);
    let shards: Vec<PathBuf> = (1..=3)
        .map(|k| dir.path().join(format!("shards/s {k}")))
        .collect();
    let mut shard_reports = Vec::new();
    for (k, out) in shards.iter().enumerate() {
        let shard = format!("{}/3", k + 1);
        let o = output(vidbatch(
            &sim,
            &[
                "run",
                m.to_str().unwrap_or_default(),
                "--out",
                out.to_str().unwrap_or_default(),
                "--shard",
                &shard,
            ],
        ))
        .await;
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o.stderr));
        shard_reports.push(read_json(&out.join("report.json")));
    }
    let merged = dir.path().join("merged");
    let junit = merged.join("junit.xml");
    let summary = merged.join("summary.md");
    let mut args = vec!["report".to_string(), "--merge".into()];
    args.extend(shards.iter().map(|s| s.display().to_string()));
    args.extend(["--out".into(), merged.display().to_string()]);
    args.extend(["--junit".into(), junit.display().to_string()]);
    args.extend(["--summary-md".into(), summary.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = output(vidbatch(&sim, &args)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let r = read_json(&merged.join("report.json"));
    assert_matches_schema(&r);

    // Counts are the sums of the shards' own.
    let total: u64 = shard_reports
        .iter()
        .map(|s| s["summary"]["jobs"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 24);
    assert_eq!(r["summary"]["jobs"].as_u64(), Some(total));
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for s in &shard_reports {
        for (k, n) in counts(&s["summary"]["by_state"]) {
            *by_state.entry(k).or_insert(0) += n;
        }
    }
    assert_eq!(counts(&r["summary"]["by_state"]), by_state);
    for key in [
        "tokens_used",
        "bytes",
        "api_requests",
        "rate_limited",
        "creates",
        "flaky",
    ] {
        let sum: u64 = shard_reports
            .iter()
            .map(|s| s["summary"][key].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(r["summary"][key].as_u64(), Some(sum), "{key}");
    }
    let expected_outcome = if by_state.get("done") == Some(&total) {
        "success"
    } else {
        "some_failed"
    };
    assert_eq!(r["run"]["outcome"], expected_outcome);
    let merged_from = r["run"]["merged_from"].as_array().expect("merged_from");
    assert_eq!(merged_from.len(), 3);
    for (k, m) in merged_from.iter().enumerate() {
        assert_eq!(m["dir"], format!("../shards/s {}", k + 1));
        assert_eq!(m["shard"], format!("{}/3", k + 1));
    }

    // Every job is there once, and its links lead to the shard's own files.
    let jobs = r["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len() as u64, total);
    let html = std::fs::read_to_string(merged.join("report.html")).expect("merged report.html");
    for (k, s) in shard_reports.iter().enumerate() {
        for job in s["jobs"].as_array().expect("shard jobs") {
            let id = &job["id"];
            let mine = jobs
                .iter()
                .find(|j| &j["id"] == id)
                .unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(mine["state"], job["state"], "{id}");
            for key in ["file", "last_frame"] {
                match job[key].as_str() {
                    Some(f) => {
                        let link = mine[key].as_str().unwrap_or_else(|| panic!("{id}: no {key}"));
                        assert_eq!(link, format!("../shards/s {}/{f}", k + 1));
                        assert!(merged.join(link).is_file(), "{link} leads nowhere");
                        let href = format!("../shards/s%20{}/{f}", k + 1);
                        assert!(html.contains(&href), "{href} not in the page");
                    }
                    None => assert!(mine[key].is_null(), "{id}: {key}"),
                }
            }
        }
    }
    assert_eq!(html.matches("<article class=\"card").count() as u64, total);
    let xml = std::fs::read_to_string(&junit).expect("merged junit");
    assert_eq!(xml.matches("<testcase ").count() as u64, total);
    let md = std::fs::read_to_string(&summary).expect("merged summary");
    let done = by_state.get("done").copied().unwrap_or(0);
    assert!(md.contains(&format!("{done} of {total} jobs done")), "{md}");

    // The merged page plays the shards' videos through its relative links.
    if let Some(browser) = skip_without_browser("merged report in a browser") {
        let probe = jobs[0]["id"].as_str().unwrap_or_default().to_string();
        let result = selftest(&browser, &merged.join("report.html"), &probe).await;
        check_selftest(&result, &r, &probe);
    }

    // Mistakes are usage errors that write nothing.
    let s1 = shards[0].display().to_string();
    let elsewhere = dir.path().join("elsewhere").display().to_string();
    for (bad, why) in [
        (
            vec!["report", "--merge", &s1, &s1, "--out", &elsewhere],
            "is named twice",
        ),
        (
            vec!["report", "--merge", &s1, "--out", &s1],
            "one of the shard dirs",
        ),
        (
            vec!["report", "--merge", &elsewhere, "--out", &s1],
            "no run state",
        ),
    ] {
        let o = output(vidbatch(&sim, &bad)).await;
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(why), "{bad:?}: {}", text(&o.stderr));
    }
    assert!(!dir.path().join("elsewhere/report.json").exists());
}

// ---- status ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tells_a_live_run_from_an_interrupted_one_and_says_what_to_do() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.05,
        rpm: 0,
        ..SimConfig::default()
    })
    .await;
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "slow", "a slow shot", 4, "");
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap_or_default().to_string();
    let child = vidbatch(&sim, &["run", m.to_str().unwrap_or_default(), "--out", &out_s])
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    crate::util::wait_for_creates(&sim, 4, Duration::from_secs(30)).await;
    let o = output(vidbatch(&sim, &["status", "--out", &out_s, "--json"])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
    assert_eq!(s["run"], "running", "{s}");
    assert_eq!(s["live"]["running"], true);
    assert_eq!(s["live"]["pid"].as_u64(), Some(u64::from(pid)));
    assert!(s["live"]["since"].is_string(), "{s}");
    let o = output(vidbatch(&sim, &["status", "--out", &out_s])).await;
    let t = text(&o.stdout);
    assert!(t.contains(&format!("running now: pid {pid}")), "{t}");

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let o = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stopped in time")
        .expect("wait");
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));

    let o = output(vidbatch(&sim, &["status", "--out", &out_s, "--json"])).await;
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
    assert_eq!(s["run"], "finished", "{s}");
    assert_eq!(s["live"]["running"], false);
    assert_eq!(s["outcome"], "interrupted");
    assert_eq!(s["exit_code"], 130);
    let reason = s["stop_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("interrupted") && reason.contains("still on the server"),
        "{reason}"
    );
    let next = s["next_step"].as_str().unwrap_or_default();
    assert!(
        next.contains("vidbatch cancel --out") && next.contains("resume"),
        "{next}"
    );
    let states = s["states"].as_array().expect("states");
    assert!(!states.is_empty());
    for st in states {
        assert!(!st["meaning"].as_str().unwrap_or_default().is_empty(), "{st}");
    }
    let o = output(vidbatch(&sim, &["status", "--out", &out_s])).await;
    let t = text(&o.stdout);
    assert!(t.contains("finished (interrupted, exit 130)"), "{t}");
    assert!(t.contains("queued or processing on the server"), "{t}");
    assert!(t.contains("next: run again"), "{t}");
}

// ---- Help, man pages, README ----

/// Every `--flag` and environment variable that `run --help` shows.
fn help_flags_and_envs(help: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with('-') && line.len() - t.len() <= 6 {
            for word in t.split([' ', ',', '=', '<']) {
                let word = word.trim_end_matches(['.', ']']);
                let long = word.starts_with("--") && word.len() > 2;
                let short = word.len() == 2 && word.starts_with('-');
                if long || short {
                    flags.insert(word.to_string());
                }
            }
        }
        if let Some(rest) = t.split("[env: ").nth(1) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            envs.insert(name);
        }
    }
    flags.remove("--help");
    flags.remove("-h");
    (flags, envs)
}

#[tokio::test]
async fn readme_flag_tables_list_every_flag_and_variable_of_run_help() {
    let o = output(bare(&["run", "--help"])).await;
    assert_eq!(o.status.code(), Some(0));
    let help = text(&o.stdout);
    for heading in [
        "Manifest:",
        "Rate and concurrency:",
        "Polling and retries:",
        "API:",
        "Outputs:",
        "Run control:",
        "Global options:",
    ] {
        assert!(
            help.lines().any(|l| l == heading),
            "no heading {heading} in\n{help}"
        );
    }
    let (flags, envs) = help_flags_and_envs(&help);
    assert!(flags.len() >= 30, "{flags:?}");
    assert!(envs.len() >= 18, "{envs:?}");
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    // Table rows only: a flag named in prose does not count.
    let rows: String = readme
        .lines()
        .filter(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let listed = |f: &str| {
        ["`", " ", "="]
            .iter()
            .any(|end| rows.contains(&format!("`{f}{end}")))
    };
    let missing_flags: Vec<&String> = flags.iter().filter(|f| !listed(f)).collect();
    let missing_envs: Vec<&String> = envs
        .iter()
        .filter(|e| !rows.contains(&format!("`{e}`")))
        .collect();
    assert!(
        missing_flags.is_empty(),
        "README's tables miss flags {missing_flags:?}"
    );
    assert!(
        missing_envs.is_empty(),
        "README's tables miss variables {missing_envs:?}"
    );
    // The --sim defaults are shown.
    assert!(help.contains("[with --sim: 600]"), "{help}");
}

#[tokio::test]
async fn man_writes_one_page_per_command_and_each_renders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pages = dir.path().join("man1");
    let o = output(bare(&["man", pages.to_str().unwrap_or_default()])).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .expect("pages dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for command in [
        "vidbatch.1",
        "vidbatch-run.1",
        "vidbatch-validate.1",
        "vidbatch-plan.1",
        "vidbatch-status.1",
        "vidbatch-cancel.1",
        "vidbatch-report.1",
        "vidbatch-models.1",
        "vidbatch-sim.1",
        "vidbatch-completions.1",
        "vidbatch-man.1",
    ] {
        assert!(names.iter().any(|n| n == command), "{command} not in {names:?}");
    }
    // The top page refers to pages that exist.
    let top = std::fs::read_to_string(pages.join("vidbatch.1")).expect("vidbatch.1");
    assert!(
        top.contains("vidbatch\\-run(1)") || top.contains("vidbatch-run(1)"),
        "{top}"
    );

    let man = std::process::Command::new("man").arg("--version").output();
    if !man.is_ok_and(|o| o.status.success()) {
        eprintln!("\n!!! SKIPPED rendering the man pages: no `man` (apt-get install man-db; .ci/run does)\n");
        return;
    }
    for name in &names {
        let o = output({
            let mut c = Command::new("man");
            c.arg("-l")
                .arg(pages.join(name))
                .env("MANWIDTH", "100")
                .env("MAN_KEEP_FORMATTING", "0");
            c.env("PAGER", "cat").env("MANPAGER", "cat");
            c
        })
        .await;
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o.stderr));
        // Bold and underline come as overstrikes (`N\bN`): keep the last character of each.
        let mut page = String::new();
        for c in text(&o.stdout).chars() {
            if c == '\u{8}' {
                page.pop();
            } else {
                page.push(c);
            }
        }
        let page = page.replace('\u{2010}', "-");
        assert!(
            page.contains("NAME") && page.contains("SYNOPSIS"),
            "{name}:\n{page}"
        );
        assert!(
            !text(&o.stderr).contains("warning"),
            "{name}: {}",
            text(&o.stderr)
        );
        if name == "vidbatch-run.1" {
            assert!(
                page.contains("--rpm") && page.contains("RATE AND CONCURRENCY"),
                "{page}"
            );
        }
    }
}
