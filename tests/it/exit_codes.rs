//! Every command maps its outcome to the exit code the same way (README "Exit codes"): a
//! missing key is a usage error (2) from `run`, `models` and `cancel`; a bad key is a fatal API
//! condition (3) from `run` and `models`; `status`, `report` and `cancel` on an out dir without
//! a run state are usage errors (2); a reader that closes stdout early ends the command quietly
//! with 0. The real binary against the simulator; each test is named after what it pins.

use std::path::Path;
use std::process::{Output, Stdio};

use crate::util::output;
use tokio::process::Command;
use vidbatch_sim::{Sim, SimConfig, SimHandle};

/// The binary with no key, base URL or out dir from the environment.
fn bare(args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args)
        .env_remove("ALLTOKEN_API_KEY")
        .env_remove("ALLTOKEN_BASE_URL")
        .env_remove("VIDBATCH_API_KEY_FILE")
        .env_remove("VIDBATCH_OUT")
        .env_remove("VIDBATCH_JUNIT")
        .env_remove("VIDBATCH_SUMMARY_MD")
        .env("VIDBATCH_PROGRESS", "never")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn picky_sim() -> SimHandle {
    Sim::start(SimConfig {
        api_keys: vec!["the-right-key".into()],
        time_scale: 0.01,
        rpm: 0,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// An out dir with the state of a finished run (made with `--sim`).
async fn finished_out(dir: &Path) -> std::path::PathBuf {
    let m = crate::util::matrix_manifest(dir, "m.yaml", "x", "exit shot", 1, "");
    let out = dir.join("out");
    let o = output(bare(&[
        "run",
        m.to_str().expect("utf-8 path"),
        "--sim",
        "--out",
        out.to_str().expect("utf-8 path"),
        "-q",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_exits_2_from_run_models_and_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = finished_out(dir.path()).await;
    let m = dir.path().join("m.yaml");
    let out_s = out.to_str().expect("utf-8 path");
    for args in [
        vec!["run", m.to_str().expect("utf-8 path"), "--out", out_s],
        vec!["models"],
        vec!["cancel", "--out", out_s],
    ] {
        let o = output(bare(&args)).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no API key"), "{args:?}: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_exits_3_from_run_and_models() {
    let sim = picky_sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "k", "key shot", 1, "");
    let out = dir.path().join("out");
    for args in [
        vec![
            "run",
            m.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
        vec!["models"],
    ] {
        let mut cmd = bare(&args);
        cmd.env("ALLTOKEN_API_KEY", "a-wrong-key")
            .env("ALLTOKEN_BASE_URL", sim.base_url());
        let o = output(cmd).await;
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
    }
    // The right key lists the models: exit 0.
    let mut cmd = bare(&["models"]);
    cmd.env("ALLTOKEN_API_KEY", "the-right-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url());
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_report_and_cancel_on_a_missing_out_dir_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    let missing = missing.to_str().expect("utf-8 path");
    for args in [
        vec!["status", "--out", missing],
        vec!["status", "--out", missing, "--json"],
        vec!["report", "--out", missing],
        vec!["cancel", "--out", missing],
    ] {
        let mut cmd = bare(&args);
        cmd.env("ALLTOKEN_API_KEY", "some-key");
        let o = output(cmd).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no run state"), "{args:?}: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_rate_count_or_duration_flag_exits_2_as_in_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "zero", "zero flag", 1, "");
    let out = dir.path().join("out");
    let (m, out) = (m.to_str().expect("utf-8 path"), out.to_str().expect("utf-8 path"));
    // Each of these ran: --rpm 0 at one request a minute, --request-timeout 0s failing every
    // request until killed, --job-timeout 0s failing jobs it had paid for.
    for flag in [
        ["--rpm", "0"],
        ["--burst", "0"],
        ["--download-concurrency", "0"],
        ["--poll-interval", "0s"],
        ["--job-timeout", "0s"],
        ["--request-timeout", "0ms"],
    ] {
        let o = output(bare(&["run", m, "--sim", "--out", out, flag[0], flag[1]])).await;
        assert_eq!(o.status.code(), Some(2), "{flag:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag[0]), "{flag:?}: {}", stderr(&o));
    }
    assert!(!Path::new(out).join("state.jsonl").exists(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_where_the_out_dir_or_its_videos_folder_belongs_is_named_and_exits_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = crate::util::matrix_manifest(dir.path(), "m.yaml", "in-the-way", "a file in the way", 1, "");
    let m = m.to_str().expect("utf-8 path");
    let out_is_a_file = dir.path().join("out-file");
    std::fs::write(&out_is_a_file, b"notes").expect("write");
    let videos_is_a_file = dir.path().join("out");
    std::fs::create_dir(&videos_is_a_file).expect("mkdir");
    std::fs::write(videos_is_a_file.join("videos"), b"notes").expect("write");
    for out in [&out_is_a_file, &videos_is_a_file] {
        let o = output(bare(&[
            "run",
            m,
            "--sim",
            "--out",
            out.to_str().expect("utf-8 path"),
        ]))
        .await;
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("a file is where this folder belongs") && !stderr(&o).contains("File exists"),
            "{}",
            stderr(&o)
        );
    }
}

/// Runs `args` with a stdout whose reader has gone away: every write fails with a broken pipe.
async fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = bare(args);
    cmd.stdout(writer).stderr(Stdio::piped());
    output(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = finished_out(dir.path()).await;
    let out_s = out.to_str().expect("utf-8 path");
    let m = dir.path().join("m.yaml");
    let m_s = m.to_str().expect("utf-8 path");
    for args in [
        vec!["status", "--out", out_s],
        vec!["status", "--out", out_s, "--json"],
        vec!["report", "--out", out_s],
        vec!["models", "--sim"],
        vec!["models", "--sim", "--json"],
        vec!["plan", m_s],
        vec!["plan", m_s, "--json"],
        vec!["run", m_s, "--dry-run", "--out", out_s],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        let o = with_closed_stdout(&args).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.to_lowercase().contains("broken pipe"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_piped_into_head_prints_its_first_line_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = finished_out(dir.path()).await;
    let script = format!(
        "set -o pipefail; '{}' status --out '{}' | head -1",
        env!("CARGO_BIN_EXE_vidbatch"),
        out.display()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]).kill_on_drop(true);
    let o = output(cmd).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let first = String::from_utf8_lossy(&o.stdout);
    assert_eq!(first.lines().count(), 1, "{first}");
    assert!(first.contains("finished (success, exit 0)"), "{first}");
}
