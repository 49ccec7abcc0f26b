//! `--log-format json` everywhere: `examples/nightly.sh` run as cron runs it (against the
//! simulator) logs nothing but JSON lines, and README's `jq` one-liner finds its failures;
//! usage errors, manifest errors and every command's errors are JSON records with their exit
//! code.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::output;
use serde_json::Value;
use tokio::process::Command;
use vidbatch_sim::SimConfig;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn vidbatch(args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args);
    cmd
}

/// Every line of `bytes` as a JSON object; fails naming the first line that is not one.
fn json_lines(bytes: &[u8], what: &str) -> Vec<Value> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: a line that is not JSON ({e}): {line:?}\n{text}"));
            assert!(v.is_object(), "{what}: not an object: {line}");
            v
        })
        .collect()
}

/// The `jq` filter of README's one-liner (`jq -c 'FILTER' < run.log`).
fn readme_jq_filter() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let at = readme.find("`jq -c '").expect("README has a jq one-liner");
    let rest = &readme[at + "`jq -c '".len()..];
    rest[..rest.find('\'').expect("the filter ends")].to_string()
}

/// The jobs of a manifest with `n` jobs.
fn manifest(dir: &Path, n: usize) -> PathBuf {
    let values: Vec<String> = (0..n).map(|i| format!("\"{i:02}\"")).collect();
    let text = format!(
        "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  duration: 5\n  ratio: \"16:9\"\n  resolution: 480p\n\
         jobs:\n  - id: \"night-{{n}}\"\n    prompt: \"nightly shot {{n}}\"\n    matrix: {{n: [{}]}}\n",
        values.join(", ")
    );
    let path = dir.join("prompts.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_sh_logs_only_json_lines_and_readmes_jq_filter_finds_the_failures() {
    // Some tasks fail, so the log has failures for the filter to find.
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        time_scale: 0.002,
        rpm: 0,
        fail_rate: 0.3,
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    let m = manifest(dir.path(), 10);
    let root = dir.path().join("nights");
    let bin_dir = Path::new(crate::util::BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = crate::util::clean(Command::new("bash"));
    cmd.arg(repo().join("examples/nightly.sh"))
        .arg(&m)
        .arg(&root)
        .env("PATH", path)
        .env("ALLTOKEN_API_KEY", "nightly-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        // A cron environment may tune the run; these keep the test short.
        .env("VIDBATCH_POLL_INTERVAL", "50ms")
        .env("VIDBATCH_RPM", "60000")
        .env("VIDBATCH_BURST", "50");
    let o = output(cmd).await;
    let code = o.status.code();
    let stderr = json_lines(&o.stderr, "nightly.sh's stderr");
    let stdout = json_lines(&o.stdout, "nightly.sh's stdout");
    assert!(matches!(code, Some(0 | 1)), "exit {code:?}: {stderr:?}");

    // validate said ok, the run logged its events, and status is one JSON document.
    assert!(
        stderr
            .iter()
            .any(|r| r["message"] == "ok: 10 jobs from 1 file" && r["jobs"] == 10),
        "no verdict of validate: {stderr:?}"
    );
    let events: Vec<&str> = stderr.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(events.first(), Some(&"run_started"), "{events:?}");
    assert!(events.contains(&"run_finished"), "{events:?}");
    assert!(
        stderr
            .iter()
            .any(|r| r["message"].as_str().is_some_and(|m| m.starts_with("report: "))),
        "no closing line: {stderr:?}"
    );
    assert_eq!(stdout.len(), 1, "{stdout:?}");
    let status = &stdout[0];

    // README's filter, over the log as cron writes it (stdout and stderr), reimplemented.
    let filter = readme_jq_filter();
    assert_eq!(
        filter, r#"select(.event == "job_failed")"#,
        "README's filter changed"
    );
    let mut log = o.stdout.clone();
    log.extend_from_slice(&o.stderr);
    let selected = json_lines(&log, "the log")
        .into_iter()
        .filter(|r| r["event"] == "job_failed")
        .count() as u64;
    let night = std::fs::read_link(root.join("latest")).unwrap();
    let report: Value =
        serde_json::from_slice(&std::fs::read(root.join(night).join("report.json")).unwrap()).unwrap();
    // Failed jobs are counted by kind (`task_failed`, ...): all that are not done.
    let not_done = |summary: &Value| {
        summary["jobs"].as_u64().unwrap() - summary["by_state"]["done"].as_u64().unwrap_or(0)
    };
    let report_failed = not_done(&report["summary"]);
    assert!(report_failed > 0, "the simulator failed no task");
    assert_eq!(selected, report_failed, "one job_failed record per failed job");
    assert_eq!(
        not_done(&status["summary"]),
        report_failed,
        "status says so too: {status}"
    );
    assert_eq!(code, Some(1), "the script exits with vidbatch's code");
    // What `report` and `cancel` did is a record on stderr too; stdout stays empty.
    let night_dir = root.join(std::fs::read_link(root.join("latest")).unwrap());
    let night_dir = night_dir.to_str().unwrap();
    for args in [
        &["report", "--out", night_dir][..],
        &["cancel", "--out", night_dir],
    ] {
        let mut all = vec!["--log-format", "json"];
        all.extend_from_slice(args);
        let mut cmd = vidbatch(&all);
        cmd.env("ALLTOKEN_API_KEY", "nightly-key")
            .env("ALLTOKEN_BASE_URL", sim.base_url());
        let o = output(cmd).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(
            o.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let said = json_lines(&o.stderr, &format!("{args:?}"));
        let expected = if args[0] == "report" {
            format!("wrote {night_dir}/report.json")
        } else {
            "nothing to cancel: no task of this run is queued or processing".to_string()
        };
        assert!(
            said.iter().any(|r| r["message"] == expected.as_str()),
            "{args:?}: {said:?}"
        );
    }
    if std::process::Command::new("jq").arg("--version").output().is_ok() {
        let mut jq = std::process::Command::new("jq")
            .args(["-c", &filter])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        jq.stdin.take().unwrap().write_all(&log).unwrap();
        let found = jq.wait_with_output().unwrap();
        assert!(found.status.success(), "jq failed on the log");
        let lines = json_lines(&found.stdout, "jq's output");
        assert_eq!(lines.len() as u64, report_failed, "jq found other failures");
        assert!(
            lines
                .iter()
                .all(|r| r["job"].is_string() && r["failure"].is_string())
        );
    }
}

/// The records of a command's stderr, which must all be JSON, and its exit code.
async fn records(args: &[&str]) -> (Option<i32>, Vec<Value>, Output) {
    let o = output(vidbatch(args)).await;
    let lines = json_lines(&o.stderr, &format!("vidbatch {args:?}"));
    (o.status.code(), lines, o)
}

#[tokio::test]
async fn usage_errors_are_one_json_line_with_exit_code_2() {
    for (args, with_usage) in [
        (
            &["--log-format", "json", "run", "--no-such-flag", "m.yaml"][..],
            true,
        ),
        (&["run", "m.yaml", "--no-such-flag", "--log-format=json"], true),
        (&["--log-format", "json", "no-such-command"], true),
        (&["--log-format", "json", "run", "m.yaml", "--rpm", "lots"], false),
    ] {
        let (code, lines, o) = records(args).await;
        assert_eq!(code, Some(2), "{args:?}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        let r = &lines[0];
        assert_eq!(r["level"], "ERROR", "{r}");
        assert_eq!(r["exit_code"], 2, "{r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
        if with_usage {
            let usage = r["usage"].as_str().unwrap_or_default();
            assert!(usage.starts_with("vidbatch"), "{r}");
        }
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    // The environment variable asks for JSON too; a flag saying text wins over it.
    let mut cmd = vidbatch(&["run", "--no-such-flag"]);
    cmd.env("VIDBATCH_LOG_FORMAT", "json");
    let o = output(cmd).await;
    assert_eq!(json_lines(&o.stderr, "env").len(), 1);
    let o = output(vidbatch(&["--log-format", "text", "run", "--no-such-flag"])).await;
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: unexpected argument"));
    // Help is no error: text on stdout, exit 0.
    let o = output(vidbatch(&["--log-format", "json", "run", "--help"])).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: vidbatch run"));
}

#[tokio::test]
async fn manifest_errors_are_json_records_with_their_place() {
    let bad = repo().join("tests/fixtures/bad.yaml");
    let bad = bad.to_str().unwrap();
    for command in ["validate", "plan", "run"] {
        let (code, lines, o) = records(&["--log-format", "json", command, bad]).await;
        assert_eq!(code, Some(2), "{command}");
        assert!(o.stdout.is_empty(), "{command}");
        let errors: Vec<&Value> = lines.iter().filter(|r| r["level"] == "ERROR").collect();
        assert!(errors.len() > 3, "{command}: {lines:?}");
        let unknown = lines
            .iter()
            .find(|r| r["field"] == "promt")
            .unwrap_or_else(|| panic!("{command}: no record of the misspelt key: {lines:?}"));
        assert_eq!(unknown["file"], bad, "{unknown}");
        assert_eq!(unknown["line"], 5, "{unknown}");
        assert_eq!(unknown["col"], 3, "{unknown}");
        assert_eq!(unknown["help"], "did you mean `prompt`?", "{unknown}");
        assert!(
            lines
                .iter()
                .any(|r| r["level"] == "WARN" && r["field"] == "model")
        );
        let last = lines.last().unwrap();
        assert_eq!(last["exit_code"], 2, "{command}: {last}");
    }
    // A CSV's problems name the row and the column.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        "prompt,model,duration\nfirst shot,seedance-1.5-pro,5\nsecond shot,seedance-1.5-pro,99\n",
    )
    .unwrap();
    let (code, lines, _) = records(&["--log-format", "json", "validate", csv.to_str().unwrap()]).await;
    assert_eq!(code, Some(2));
    let r = lines
        .iter()
        .find(|r| r["field"] == "duration")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(r["row"], 3, "{r}");
    assert_eq!(r["column"], "duration", "{r}");
    // A good manifest: the verdict is a record, and stdout stays empty.
    let good = repo().join("examples/quickstart.yaml");
    let (code, lines, o) = records(&["--log-format", "json", "validate", good.to_str().unwrap()]).await;
    assert_eq!(code, Some(0));
    assert!(o.stdout.is_empty());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["jobs"], 6);
    // `plan --json` prints its document on one line.
    let o = output(vidbatch(&[
        "--log-format",
        "json",
        "plan",
        "--json",
        good.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json_lines(&o.stdout, "plan --json")[0]["count"], 6);
}

#[tokio::test]
async fn every_commands_errors_are_json_records_with_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-run-here");
    let out = nowhere.to_str().unwrap();
    for args in [
        &["status", "--out", out][..],
        &["report", "--out", out],
        &["cancel", "--out", out],
        &["models"],
        &["run", "--sim", "--shard", "5/2", "examples/quickstart.yaml"],
    ] {
        let mut all = vec!["--log-format", "json"];
        all.extend_from_slice(args);
        let mut cmd = vidbatch(&all);
        cmd.current_dir(repo());
        let o = output(cmd).await;
        let lines = json_lines(&o.stderr, &format!("{args:?}"));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {lines:?}");
        let last = lines.last().unwrap_or_else(|| panic!("{args:?}: nothing said"));
        assert_eq!(last["level"], "ERROR", "{args:?}: {last}");
        assert_eq!(last["exit_code"], 2, "{args:?}: {last}");
    }
}
