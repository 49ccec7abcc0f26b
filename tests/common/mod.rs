//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

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
