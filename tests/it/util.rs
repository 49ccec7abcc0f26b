//! Helpers shared by the integration tests: running the binary with a clean environment,
//! manifests, simulators and checks of a finished run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;
use vidbatch::download::{MediaKind, verify_file};
use vidbatch::state::{JobState, Phase};
use vidbatch_sim::{SimConfig, SimHandle};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_vidbatch");

/// The names of the variables in this process's environment that would change what vidbatch
/// does (`VIDBATCH_*`, `ALLTOKEN_*`): a developer's own settings must not reach a test.
pub fn vidbatch_env() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("VIDBATCH_") || k.starts_with("ALLTOKEN_"))
        .collect()
}

/// `cmd` with none of the caller's vidbatch settings, killed if dropped.
pub fn clean(mut cmd: Command) -> Command {
    for var in vidbatch_env() {
        cmd.env_remove(var);
    }
    cmd.kill_on_drop(true);
    cmd
}

/// The binary with none of the caller's vidbatch settings, killed if dropped.
pub fn bin() -> Command {
    clean(Command::new(BIN))
}

/// [`bin`] for a test that runs it synchronously.
pub fn std_bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    for var in vidbatch_env() {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to its end (three minutes at most) and gives what it printed.
pub async fn output(mut cmd: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("vidbatch finished in time")
        .expect("vidbatch ran")
}

/// Bytes as text, for messages and checks.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits (`within` at most) until `sim` has created at least `count` tasks.
pub async fn wait_for_creates(sim: &SimHandle, count: u64, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while sim.stats().tasks_created < count {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {count} tasks were created"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (30 s at most) until `sim` has created more than `after` tasks, then interrupts
/// `child` as Ctrl-C would and gives the exit code it ends with (30 s at most).
pub async fn interrupt_once_created(
    child: &mut tokio::process::Child,
    sim: &SimHandle,
    after: u64,
) -> Option<i32> {
    let pid = child.id().expect("pid");
    wait_for_creates(sim, after + 1, Duration::from_secs(30)).await;
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the run ended in time")
        .expect("wait")
        .code()
}

/// The `.part` files in the out dir's videos folder, by name, with their sizes (a size changes
/// while a download is under way).
pub fn part_files(out: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(out.join("videos"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e))
                .filter(|(name, _)| name.ends_with(".part"))
                .map(|(name, e)| (name, e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default()
}

/// A simulator started with `config`, and a temporary directory for the test's files.
pub async fn sim_and_dir(config: SimConfig) -> (SimHandle, tempfile::TempDir) {
    let sim = vidbatch_sim::Sim::start(config)
        .await
        .expect("the simulator starts");
    (sim, tempfile::tempdir().expect("a temporary directory"))
}

/// Run settings for a test against a fast simulator: no real rate limit, short polls and
/// timeouts, quick retries.
pub fn fast_settings(out: &Path) -> vidbatch::runner::RunSettings {
    use vidbatch::runner::{Concurrency, RetryPolicy, RunSettings};
    let mut s = RunSettings::new(out);
    s.rpm = 60_000;
    s.burst = 50;
    s.concurrency = Concurrency::Max(10);
    s.poll_interval = Duration::from_millis(40);
    s.job_timeout = Duration::from_secs(120);
    s.max_retries = 8;
    s.retry = RetryPolicy {
        max_retries: 8,
        ..RetryPolicy::for_tests()
    };
    s
}

/// Checks a schema file in `schemas/` against `want`, or writes it with `UPDATE_SCHEMAS=1`.
pub fn assert_schema_file(file: &str, want: &str, test: &str) {
    let path = Path::new("schemas").join(file);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all("schemas").expect("mkdir");
        std::fs::write(&path, want).expect("write schema");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date; regenerate with: UPDATE_SCHEMAS=1 cargo test --test it {test}",
        path.display()
    );
}

/// A fast, clean simulator: no rate limit, generations of a few milliseconds.
pub fn fast_sim() -> SimConfig {
    SimConfig {
        time_scale: 0.002,
        rpm: 0,
        ..SimConfig::default()
    }
}

/// Writes `DIR/FILE`: a YAML manifest of `jobs` distinct jobs (seedance-1.5-pro, 5 s, 16:9,
/// 480p) made by one matrix over `n` = "00", "01", ..., with ids `ID_PREFIX-NN` and prompts
/// `PROMPT_PREFIX NN`; `run_section` (YAML, may be empty) goes before `jobs:`.
pub fn matrix_manifest(
    dir: &Path,
    file: &str,
    id_prefix: &str,
    prompt_prefix: &str,
    jobs: usize,
    run_section: &str,
) -> PathBuf {
    let values: Vec<String> = (0..jobs).map(|i| format!("\"{i:02}\"")).collect();
    let text = format!(
        "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  duration: 5\n  ratio: \"16:9\"\n  resolution: 480p\n\
         {run_section}jobs:\n  - id: \"{id_prefix}-{{n}}\"\n    prompt: \"{prompt_prefix} {{n}}\"\n    \
         matrix: {{n: [{}]}}\n",
        values.join(", ")
    );
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write the manifest");
    path
}

/// `vidbatch run` of manifest `m` into `out` against `sim`, quiet, killed if dropped.
pub fn vidbatch_run(m: &Path, out: &Path, sim: &SimHandle, key: &str, concurrency: &str) -> Command {
    let mut cmd = bin();
    cmd.args(["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--poll-interval", "50ms", "--rpm", "60000", "--burst", "50"])
        .args(["--concurrency", concurrency, "--progress", "never", "-q"])
        .env("ALLTOKEN_API_KEY", key)
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Checks that `job` is done with exactly one task, made from `prompt` (so no other job's),
/// and that its video is whole and the one recorded; `context` names the job in failures.
pub fn assert_done_with_own_task(
    out: &Path,
    job: &JobState,
    prompts: &HashMap<String, String>,
    prompt: &str,
    context: &str,
) {
    assert_eq!(job.phase, Phase::Done, "{context}");
    assert_eq!(job.task_ids.len(), 1, "{context} had several tasks");
    assert_eq!(
        prompts.get(&job.task_ids[0]).map(String::as_str),
        Some(prompt),
        "{context} was given another job's task"
    );
    let file = verify_file(&out.join(job.path.as_ref().unwrap()), MediaKind::Mp4).unwrap();
    assert_eq!(Some(file.sha256), job.sha256, "{context}");
}
