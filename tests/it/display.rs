//! The operator's side of the binary: the display with and without a terminal, JSON logs, help,
//! completions, the man page, settings precedence, `cancel`, and the examples.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{fast_sim, output, text};
use tokio::process::Command;
use vidbatch_sim::{SimConfig, SimHandle};

fn manifest(dir: &Path, jobs: usize, run_section: &str) -> PathBuf {
    crate::util::matrix_manifest(
        dir,
        "manifest.yaml",
        "shot",
        "display test shot",
        jobs,
        run_section,
    )
}

/// The binary with a clean environment of settings.
fn bare(args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args);
    cmd
}

/// The binary pointed at `sim`, fast, with the display left to choose (stderr is a pipe).
fn vidbatch(sim: &SimHandle, args: &[&str]) -> Command {
    let mut cmd = bare(args);
    cmd.env("ALLTOKEN_API_KEY", "display-test-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .env("VIDBATCH_POLL_INTERVAL", "40ms")
        .env("VIDBATCH_RPM", "60000")
        .env("VIDBATCH_BURST", "50")
        .env("VIDBATCH_CONCURRENCY", "10");
    cmd
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn assert_no_control_characters(stderr: &str) {
    assert!(!stderr.contains('\x1b'), "escape sequence in {stderr:?}");
    assert!(!stderr.contains('\r'), "carriage return in {stderr:?}");
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "control character in {stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_the_display_is_plain_lines_with_no_control_characters() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        fail_rate: 0.3,
        seed: 11,
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 10, "");
    for (i, extra) in [&[][..], &["--progress", "never"], &["-v"], &["-q"]]
        .iter()
        .enumerate()
    {
        let out = dir.path().join(format!("out{i}"));
        let mut args = vec!["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = output(vidbatch(&sim, &args)).await;
        let stderr = text(&o.stderr);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{stderr}");
        assert_no_control_characters(&stderr);
        // The end: how the run finished, then where the report is (and the next step).
        let end: Vec<&str> = stderr.lines().rev().take(2).collect();
        assert!(end[1].starts_with("run finished ("), "{extra:?}: {stderr}");
        assert!(
            end[0].starts_with(&format!("report: {}/report.json", out.display())),
            "{extra:?}: {stderr}"
        );
        let summary = &report(&out)["summary"];
        let done = summary["by_state"]["done"].as_u64().unwrap_or(0);
        let failed = summary["jobs"].as_u64().unwrap() - done;
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("FAILED job ")).count() as u64,
            failed,
            "{extra:?}: a line per failed job: {stderr}"
        );
        match *extra {
            ["-q"] => assert!(!stderr.contains("submitted"), "-q: {stderr}"),
            ["-v"] => assert!(
                stderr.contains(" is queued") || stderr.contains(" is processing"),
                "-v: {stderr}"
            ),
            _ => {
                assert!(stderr.contains("] done shot-"), "{stderr}");
                assert!(
                    !stderr.contains(" is processing") && !stderr.contains(" is queued"),
                    "{stderr}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_carrying_job_task_and_event() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 4, "");
    let out = dir.path().join("out");
    let o = output(vidbatch(
        &sim,
        &[
            "run",
            m.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--log-format",
            "json",
            "--progress",
            "always",
        ],
    ))
    .await;
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let mut events = BTreeSet::new();
    let mut with_job_and_task = 0;
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?} in\n{stderr}"));
        assert!(v.is_object(), "{line}");
        if let Some(event) = v["event"].as_str() {
            events.insert(event.to_string());
            if v["job"].is_string() && v["task_id"].is_string() {
                with_job_and_task += 1;
            }
        }
    }
    for expected in ["run_started", "submitted", "job_done", "run_finished"] {
        assert!(events.contains(expected), "{expected} missing: {events:?}");
    }
    assert!(with_job_and_task >= 8, "{stderr}");
    assert_no_control_characters(&stderr);
}

#[tokio::test]
async fn run_help_shows_the_environment_variable_and_default_of_every_option() {
    let o = output(bare(&["run", "--help"])).await;
    assert_eq!(o.status.code(), Some(0));
    let help = text(&o.stdout);
    // One block per option: its first line starts with `-x, --name` or `--name`.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let starts_option = trimmed.starts_with('-') && line.len() - trimmed.len() <= 6;
        if starts_option {
            let name = trimmed
                .split([' ', ',', '='])
                .find(|w| w.starts_with("--"))
                .unwrap_or(trimmed)
                .to_string();
            blocks.push((name, trimmed.to_string()));
        } else if let Some((_, body)) = blocks.last_mut() {
            body.push(' ');
            body.push_str(trimmed);
        }
    }
    let body = |name: &str| -> String {
        let b = &blocks
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not in\n{help}"))
            .1;
        b.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(
        body("--rpm").contains("[env: VIDBATCH_RPM=]"),
        "{}",
        body("--rpm")
    );
    assert!(body("--rpm").contains("[default: 60]"), "{}", body("--rpm"));
    // The manifest's own options (shared with validate and plan) come from the command line only.
    let manifest_options = ["--delimiter", "--sheet", "--model", "--set"];
    let mut checked = 0;
    for (name, _) in &blocks {
        let b = body(name);
        let takes_value = b
            .split_whitespace()
            .nth(if b.starts_with("--") { 1 } else { 2 })
            .is_some_and(|w| w.starts_with('<'));
        if !takes_value || manifest_options.contains(&name.as_str()) || name == "--help" {
            continue;
        }
        assert!(b.contains("[env: "), "{name} shows no environment variable: {b}");
        assert!(b.contains("[default: "), "{name} shows no default: {b}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} options checked in\n{help}");
}

#[tokio::test]
async fn completions_and_the_man_page_are_printed() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = output(bare(&["completions", shell])).await;
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", text(&o.stderr));
        let script = text(&o.stdout);
        assert!(script.contains("vidbatch"), "{shell}: {script}");
        assert!(script.contains("--rpm"), "{shell} completes no run flags");
    }
    let o = output(bare(&["man"])).await;
    assert_eq!(o.status.code(), Some(0));
    let roff = text(&o.stdout);
    assert!(roff.starts_with(".ie") || roff.contains("\n.TH "), "{roff}");
    assert!(roff.contains(".TH vidbatch"), "{roff}");
    assert!(roff.contains("completions"), "{roff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_comes_from_the_flag_then_the_environment_then_the_manifest_then_the_default() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim()).await;
    let m = manifest(dir.path(), 1, "run:\n  rpm: 6000\n  concurrency: 3\n");
    let m = m.to_str().unwrap();
    let settings = |out: &Path| report(out)["run"]["settings"].clone();
    let run = |out: PathBuf, env_rpm: Option<&str>, flag_rpm: Option<&str>| {
        let mut args = vec!["run".to_string(), m.to_string(), "--out".into()];
        args.push(out.to_str().unwrap().to_string());
        if let Some(r) = flag_rpm {
            args.extend(["--rpm".to_string(), r.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = bare(&args);
        cmd.env("ALLTOKEN_API_KEY", "display-test-key")
            .env("ALLTOKEN_BASE_URL", sim.base_url())
            .env("VIDBATCH_POLL_INTERVAL", "40ms");
        if let Some(r) = env_rpm {
            cmd.env("VIDBATCH_RPM", r);
        }
        cmd
    };
    let cases = [
        (None, None, 6000), // the manifest's run: section
        (Some("7000"), None, 7000),
        (Some("7000"), Some("8000"), 8000),
    ];
    for (i, (env_rpm, flag_rpm, expected)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let o = output(run(out.clone(), env_rpm, flag_rpm)).await;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let s = settings(&out);
        assert_eq!(s["rpm"], expected, "env {env_rpm:?} flag {flag_rpm:?}: {s}");
        assert_eq!(s["concurrency"], 3, "{s}");
        assert_eq!(s["burst"], 5, "the default: {s}");
        assert_eq!(s["poll_interval"], "40ms", "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_cancels_every_task_in_flight_of_a_killed_run() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        gen_time: Some(Duration::from_secs(3600)),
        time_scale: 0.05,
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 4, "");
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let mut child = vidbatch(&sim, &["run", m.to_str().unwrap(), "--out", out_arg])
        .spawn()
        .unwrap();
    // Wait until every task is created and journaled, then kill the run outright.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let journaled = std::fs::read_to_string(out.join("state.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"event\":\"submitted\""))
            .count();
        if journaled == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "tasks were not submitted in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert_eq!(sim.stats().tasks_by_status.get("cancelled"), None);

    let o = output(vidbatch(&sim, &["cancel", "--out", out_arg])).await;
    let stdout = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}{}", text(&o.stderr));
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("cancelled shot-"))
            .count(),
        4,
        "{stdout}"
    );
    let stats = sim.stats();
    assert_eq!(stats.tasks_by_status.get("cancelled"), Some(&4), "{stats:?}");
    assert_eq!(stats.tasks_created, 4);

    // Status reads the state offline; the killed run's jobs are still submitted there.
    let o = output(vidbatch(&sim, &["status", "--out", out_arg, "--json"])).await;
    assert_eq!(o.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["summary"]["jobs"], 4);
    let o = output(vidbatch(&sim, &["status", "--out", out_arg])).await;
    assert!(text(&o.stdout).contains("4 jobs"), "{}", text(&o.stdout));
}

/// Flags the workflow uses that another change adds (`run --junit`, `run --summary-md`);
/// accepted while this binary does not have them yet.
/// Every `vidbatch SUBCOMMAND --flag` in `script` names a flag that `SUBCOMMAND --help` shows.
async fn check_vidbatch_flags(script: &str, origin: &str) -> usize {
    let joined = script.replace("\\\n", " ");
    let mut checked = 0;
    for line in joined.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "vidbatch") else {
            continue;
        };
        let Some(sub) = words.get(at + 1).filter(|w| !w.starts_with('-')) else {
            continue;
        };
        let o = output(bare(&[sub, "--help"])).await;
        assert_eq!(
            o.status.code(),
            Some(0),
            "{origin}: `vidbatch {sub}` is no command"
        );
        let help = text(&o.stdout);
        for word in &words[at + 2..] {
            if *word == "||" || *word == ">>" || *word == "|" {
                break;
            }
            let Some(flag) = word.strip_prefix("--").map(|f| f.split('=').next().unwrap_or(f)) else {
                continue;
            };
            let flag = format!("--{flag}");
            let known = help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
                .any(|w| w == flag);
            assert!(known, "{origin}: `vidbatch {sub}` has no {flag}");
            checked += 1;
        }
    }
    checked
}

/// The YAML document in `path` (an example manifest or a CI workflow).
fn yaml(path: &Path) -> yaml_rust2::Yaml {
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs =
        yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs.swap_remove(0)
}

#[tokio::test]
async fn every_example_parses_and_validates() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // Row files a YAML manifest pulls in are validated through that manifest.
    let mut row_files = BTreeSet::new();
    for f in &files {
        if f.extension().is_some_and(|e| e == "yaml") {
            let doc = yaml(f);
            if let Some(rows) = doc["rows"].as_str() {
                row_files.insert(examples.join(rows));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let ext = name.rsplit('.').next().unwrap_or("").to_string();
        match ext.as_str() {
            "yaml" | "csv" | "xlsx" | "ods" => {
                if row_files.contains(f) {
                    seen.insert(ext);
                    continue;
                }
                let o = output(bare(&["validate", f.to_str().unwrap()])).await;
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{name}: {}{}",
                    text(&o.stdout),
                    text(&o.stderr)
                );
            }
            "sh" => {
                let o = output({
                    let mut c = Command::new("bash");
                    c.arg("-n").arg(f);
                    c
                })
                .await;
                assert!(o.status.success(), "{name}: {}", text(&o.stderr));
                let script = std::fs::read_to_string(f).unwrap();
                assert!(check_vidbatch_flags(&script, &name).await >= 3, "{name}");
            }
            "yml" => {
                let doc = yaml(f);
                let mut flags = 0;
                let mut shard_flag = false;
                let mut merged = false;
                for job in doc["jobs"].as_hash().expect("jobs").values() {
                    let mut merges = false;
                    for step in job["steps"].as_vec().expect("steps") {
                        if let Some(run) = step["run"].as_str() {
                            flags += check_vidbatch_flags(run, &name).await;
                            shard_flag |= run.contains("--shard");
                            merges |= run.contains("vidbatch report --merge");
                            for word in run.split_whitespace() {
                                if word.starts_with("examples/") {
                                    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(word);
                                    assert!(path.exists(), "{name}: no {word}");
                                }
                            }
                        }
                    }
                    // Every job is a shard of the matrix, but the one that merges their reports.
                    assert!(
                        merges || job["strategy"]["matrix"]["shard"].is_array(),
                        "{name}: no shard matrix"
                    );
                    merged |= merges;
                }
                assert!(shard_flag && flags >= 5, "{name}: {flags} flags");
                assert!(merged, "{name}: no job merges the shards' reports");
            }
            _ => panic!("{name}: an example nothing checks"),
        }
        seen.insert(ext);
    }
    for kind in ["yaml", "csv", "xlsx", "sh", "yml"] {
        assert!(seen.contains(kind), "no {kind} example");
    }
}
