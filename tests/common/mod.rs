//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio::process::Command;
use vidbatch::download::{MediaKind, verify_file};
use vidbatch::state::{JobState, Phase};
use vidbatch_sim::SimHandle;

/// Writes `DIR/FILE`: a YAML manifest of `jobs` distinct jobs (seedance-1.5-pro, 5 s, 16:9,
/// 480p) made by one matrix over `n` = "00", "01", ..., with ids `ID_PREFIX-NN` and prompts
/// `PROMPT_PREFIX NN`; `run_section` (YAML, may be empty) goes before `jobs:`.
#[allow(dead_code)] // not every test binary writes this manifest
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
#[allow(dead_code)] // not every test binary runs the binary this way
pub fn vidbatch_run(m: &Path, out: &Path, sim: &SimHandle, key: &str, concurrency: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidbatch"));
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
#[allow(dead_code)] // not every test binary checks tasks this way
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
