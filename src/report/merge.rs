//! One report over the out dirs of several shards (`vidbatch report --merge`); the main
//! function here is [`merge`].
//!
//! Each shard's report is rebuilt from its own `state.jsonl`, and its jobs' file paths are
//! rewritten relative to the merged out dir, so the merged `report.html` plays the videos
//! where the shards left them. Totals are recomputed over all jobs; request counts are
//! summed; the outcome is the worst of the shards' (an unfinished shard makes it unfinished).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use super::{Report, RunInfo};
use crate::events::{Counters, RunOutcome, SourceRecord};
use crate::journal;
use crate::outdir;

/// A shard a merged report was made from.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MergedShard {
    /// The shard's out dir, relative to the merged report's dir.
    pub dir: String,
    /// Its `--shard K/N`, if it had one.
    pub shard: Option<String>,
    /// Its run id.
    pub run_id: Option<String>,
    /// How it ended (null when it has not finished).
    pub outcome: Option<RunOutcome>,
    /// Its jobs.
    pub jobs: usize,
}

/// Why shards could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("--merge needs at least one shard out dir")]
    Empty,
    /// A shard dir has no state.
    #[error("{0}: no run state here (is it a vidbatch out dir?)")]
    NoState(PathBuf),
    /// A dir is named twice.
    #[error("{0} is named twice")]
    Twice(PathBuf),
    /// The merged dir is one of the shards.
    #[error("--out {0} is one of the shard dirs; merge into a dir of its own")]
    OutIsShard(PathBuf),
    /// Two shards have a job with the same id.
    #[error("job {id} is in both {first} and {second}: are these shards of one plan?")]
    DuplicateJob {
        /// The job id.
        id: String,
        /// The first dir holding it.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
    /// The state could not be read.
    #[error("{path}: {source}")]
    Journal {
        /// The shard dir.
        path: PathBuf,
        /// What went wrong.
        source: journal::JournalError,
    },
    /// A dir could not be made or resolved.
    #[error("{path}: {source}")]
    Io {
        /// The dir.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// `target` relative to `base` (both absolute and canonical), with `/` separators.
pub fn relative_to(base: &Path, target: &Path) -> PathBuf {
    let base: Vec<Component> = base.components().collect();
    let target: Vec<Component> = target.components().collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    if common == 0 {
        // Nothing shared (another drive): the absolute path is the only link that works.
        return target.iter().collect();
    }
    let mut rel = PathBuf::new();
    for _ in common..base.len() {
        rel.push("..");
    }
    for c in &target[common..] {
        rel.push(c.as_os_str());
    }
    rel
}

/// A path as a link: `/` between its parts.
fn link(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let joined = parts.join("/");
    if path.has_root() && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined.replace("//", "/")
    }
}

/// The worse of two outcomes; `None` (a shard not finished) wins over all but `Fatal` and a
/// local failure.
fn worse(a: Option<RunOutcome>, b: Option<RunOutcome>) -> Option<RunOutcome> {
    let rank = |o: Option<RunOutcome>| match o {
        Some(RunOutcome::Success) => 0,
        Some(RunOutcome::SomeFailed) => 1,
        Some(RunOutcome::Stopped) => 2,
        Some(RunOutcome::Interrupted) => 3,
        None => 4,
        Some(RunOutcome::Fatal) => 5,
        Some(RunOutcome::LocalFailure) => 6,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn add(total: &mut Counters, c: &Counters) {
    total.add_counts(c);
    // The shards share one account: the slots are the account's, not a sum.
    total.slots = total.slots.max(c.slots);
}

/// Merges the reports of the shard out dirs `dirs` into one report for the dir `out` (made if
/// missing); the jobs' files are linked relative to `out`, and `run.merged_from` lists the
/// shards.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Report, MergeError> {
    if dirs.is_empty() {
        return Err(MergeError::Empty);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let out_abs = out.canonicalize().map_err(io(out))?;
    let mut seen_dirs: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut seen_jobs: HashMap<String, PathBuf> = HashMap::new();
    let mut jobs = Vec::new();
    let mut counters = Counters::default();
    let mut manifests: Vec<SourceRecord> = Vec::new();
    let mut shards = Vec::new();
    let mut outcome = Some(RunOutcome::Success);
    let mut started_at = None;
    let mut finished_at = None;
    let mut all_finished = true;
    let mut runs = 0;
    let mut stop_reasons: Vec<String> = Vec::new();
    for dir in dirs {
        let state_path = dir.join(outdir::STATE_FILE);
        if !state_path.is_file() {
            return Err(MergeError::NoState(dir.clone()));
        }
        let abs = dir.canonicalize().map_err(io(dir))?;
        if abs == out_abs {
            return Err(MergeError::OutIsShard(dir.clone()));
        }
        if seen_dirs.insert(abs.clone(), dir.clone()).is_some() {
            return Err(MergeError::Twice(dir.clone()));
        }
        let state = journal::load(&state_path)
            .map_err(|source| MergeError::Journal {
                path: dir.clone(),
                source,
            })?
            .state;
        let report = Report::from_state(&state);
        let prefix = relative_to(&out_abs, &abs);
        shards.push(MergedShard {
            dir: link(&prefix),
            shard: report.run.shard.clone(),
            run_id: report.run.run_id.clone(),
            outcome: report.run.outcome,
            jobs: report.jobs.len(),
        });
        outcome = worse(outcome, report.run.outcome);
        started_at = match (started_at, report.run.started_at) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
        match report.run.finished_at {
            Some(b) => finished_at = Some(finished_at.map_or(b, |a: crate::api::Timestamp| a.max(b))),
            None => all_finished = false,
        }
        runs += report.run.runs;
        if let Some(why) = &report.run.stop_reason {
            stop_reasons.push(format!("{}: {why}", dir.display()));
        }
        add(&mut counters, &report.summary.counters);
        for m in &report.run.manifests {
            if !manifests.contains(m) {
                manifests.push(m.clone());
            }
        }
        for mut job in report.jobs {
            if let Some(first) = seen_jobs.insert(job.id.clone(), dir.clone()) {
                return Err(MergeError::DuplicateJob {
                    id: job.id,
                    first,
                    second: dir.clone(),
                });
            }
            job.file = job.file.map(|f| link(&prefix.join(f)));
            job.last_frame = job.last_frame.map(|f| link(&prefix.join(f)));
            jobs.push(job);
        }
    }
    let run = RunInfo {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        run_id: None,
        manifests,
        started_at,
        finished_at: finished_at.filter(|_| all_finished),
        outcome,
        exit_code: outcome.map(crate::exit::of_run),
        stop_reason: (!stop_reasons.is_empty()).then(|| stop_reasons.join("; ")),
        settings: None,
        shard: None,
        runs,
        merged_from: shards,
    };
    Ok(Report::from_jobs(run, jobs, counters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_then_descend() {
        let rel = relative_to(Path::new("/ci/merged"), Path::new("/ci/shards/1"));
        assert_eq!(link(&rel), "../shards/1");
        let rel = relative_to(Path::new("/ci/merged"), Path::new("/ci/merged/inner"));
        assert_eq!(link(&rel), "inner");
        assert_eq!(
            link(&Path::new("../s 1").join("videos/a.mp4")),
            "../s 1/videos/a.mp4"
        );
    }

    #[test]
    fn the_worst_outcome_wins() {
        use RunOutcome::*;
        assert_eq!(worse(Some(Success), Some(SomeFailed)), Some(SomeFailed));
        assert_eq!(worse(Some(SomeFailed), None), None);
        assert_eq!(worse(None, Some(Fatal)), Some(Fatal));
        assert_eq!(worse(Some(Interrupted), Some(Success)), Some(Interrupted));
        assert_eq!(worse(Some(SomeFailed), Some(Stopped)), Some(Stopped));
    }
}
