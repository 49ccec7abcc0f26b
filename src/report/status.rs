//! `vidbatch status`: whether a run is live, how the last one ended and why, and what each
//! state means; the main structure here is [`Status`].
//!
//! Liveness comes from the out dir's lock file (`.vidbatch.lock`, which a run holds locked for
//! its whole life and into which it writes its pid): a lock that is held means a run is live,
//! its pid is the file's content and its start is the file's modification time. Everything
//! else comes from the report, itself built from `state.jsonl`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Report;
use crate::api::Timestamp;
use crate::events::RunOutcome;
use crate::outdir;

/// Whether a run holds the out dir now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Liveness {
    /// A run holds the out dir's lock.
    pub running: bool,
    /// The pid written in the lock file (the live run's, or the last run's).
    pub pid: Option<u32>,
    /// When that run took the lock.
    pub since: Option<Timestamp>,
}

impl Liveness {
    /// Reads the lock file of `out`. Never takes the lock from a live run: the lock is tried
    /// (shared, and let go at once) only when the pid in the file is a live process.
    pub fn of(out: &Path) -> Liveness {
        let path = out.join(outdir::LOCK_FILE);
        let Ok(file) = File::open(&path) else {
            return Liveness {
                running: false,
                pid: None,
                since: None,
            };
        };
        let pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let since = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .map(|t| Timestamp(time::OffsetDateTime::from(t)));
        let process_gone = match pid {
            Some(pid) if Path::new("/proc/self").exists() => !Path::new(&format!("/proc/{pid}")).exists(),
            Some(_) => false,
            None => true,
        };
        let running =
            !process_gone && matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock));
        drop(file);
        Liveness { running, pid, since }
    }
}

/// What a state in `report.json` and `status` means.
pub fn state_meaning(state: &str) -> &'static str {
    match state {
        "done" => "the video is on disk and verified",
        "pending" => "not sent yet",
        "submitting" => {
            "a create was sent and its answer was lost; the next run looks for its task in the \
             server's list before it sends anything again (never twice)"
        }
        "submitted" => "the task is queued or processing on the server (and billed)",
        "generated" => "the task finished on the server; the video is still to be fetched",
        "rejected" => "the API refused the request (see the error); fix the manifest",
        "task_failed" => "the task ended failed on the server; --retry-failed tries it again",
        "expired" => "the task or its asset expired on the server; --retry-failed tries again",
        "cancelled" => "the task was cancelled; --retry-failed tries again",
        "timed_out" => "the job ran past --job-timeout and was cancelled; --retry-failed tries again",
        "submit_failed" => "the create kept failing; --retry-failed tries again",
        "poll_failed" => "the task could not be read; the next run polls it again (no new task)",
        "download_failed" => "the video could not be fetched; the next run fetches it again (no new task)",
        "failed" => "the job failed",
        "not_in_plan" => {
            "a job of an earlier run that this run's plan no longer has: kept in the state (its \
             video too), not counted"
        }
        _ => "",
    }
}

/// The facts `status` shows; `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The out dir.
    pub out: PathBuf,
    /// Id of the out dir's state.
    pub run_id: Option<String>,
    /// `running`, `finished`, or `stopped` (no end recorded and no run holds the dir).
    pub run: &'static str,
    /// The lock: live or not, pid, since.
    pub live: Liveness,
    /// How the last run ended (null while running or when it was killed).
    pub outcome: Option<RunOutcome>,
    /// Exit code of that outcome.
    pub exit_code: Option<i32>,
    /// Why it stopped, in words.
    pub stop_reason: String,
    /// What to do next, when something is left to do.
    pub next_step: Option<String>,
    /// When the latest run started and ended.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Jobs per state with what the state means.
    pub states: Vec<StateLine>,
    /// The report's totals.
    pub summary: super::Summary,
    /// Every job: id, state, latest task, file, error message.
    pub jobs: Vec<serde_json::Value>,
}

/// One state's count and meaning.
#[derive(Debug, Clone, Serialize)]
pub struct StateLine {
    /// The state.
    pub state: String,
    /// Jobs in it.
    pub jobs: usize,
    /// What it means.
    pub meaning: &'static str,
}

fn count(report: &Report, states: &[&str]) -> usize {
    states
        .iter()
        .map(|s| report.summary.by_state.get(*s).copied().unwrap_or(0))
        .sum()
}

impl Status {
    /// The status of the out dir `out`, from its report and lock; `recorded_reason` is why the
    /// state says the latest run stopped submitting, if it did.
    pub fn of(out: &Path, report: &Report, live: Liveness, recorded_reason: Option<&str>) -> Status {
        let not_done = report.summary.planned - count(report, &["done"]);
        let on_server = count(report, &["submitted", "submitting"]);
        let failed: usize = report
            .jobs
            .iter()
            .filter(|j| j.state != "done" && j.error.is_some())
            .count();
        let outcome = if live.running { None } else { report.run.outcome };
        let run = if live.running {
            "running"
        } else if report.run.finished_at.is_some() && report.run.outcome.is_some() {
            "finished"
        } else {
            "stopped"
        };
        let stop_reason = match (run, outcome) {
            ("running", _) => match (live.pid, live.since) {
                (Some(pid), Some(since)) => format!("running now: pid {pid}, since {}", since.to_rfc3339()),
                (Some(pid), None) => format!("running now: pid {pid}"),
                _ => "running now".into(),
            },
            (_, Some(RunOutcome::Success)) => "every job is done and verified".into(),
            (_, Some(RunOutcome::SomeFailed)) => {
                format!(
                    "the run finished with {not_done} of {} jobs not done",
                    report.summary.planned
                )
            }
            (_, Some(RunOutcome::Stopped)) => format!(
                "--max-fail or --budget-tokens stopped submissions: {} jobs were never sent",
                count(report, &["pending"])
            ),
            (_, Some(RunOutcome::Fatal)) => {
                let why = report
                    .jobs
                    .iter()
                    .filter_map(|j| j.error.as_ref())
                    .find(|e| matches!(e.http_status, Some(401..=403)))
                    .map(|e| format!(": {}", e.message))
                    .unwrap_or_default();
                format!("a fatal API condition stopped it (bad key or no balance){why}")
            }
            (_, Some(RunOutcome::Interrupted)) => {
                format!("interrupted (Ctrl-C or SIGTERM) with {on_server} tasks still on the server")
            }
            (_, Some(RunOutcome::LocalFailure)) => {
                "a local failure (disk full, out dir not writable) stopped it; what was sent is recorded"
                    .into()
            }
            (_, None) => "no end recorded: the run was killed or the machine stopped".into(),
        };
        let stop_reason = match recorded_reason {
            Some(why) if run != "running" && !why.is_empty() => format!("{stop_reason} ({why})"),
            _ => stop_reason,
        };
        let dir = out.display();
        let next_step = if run == "running" {
            Some(format!(
                "wait, or stop it with Ctrl-C / kill {}",
                live.pid.map_or_else(|| "PID".into(), |p| p.to_string())
            ))
        } else if not_done == 0 {
            None
        } else if on_server > 0 {
            Some(format!(
                "run again with --out {dir} to resume ({on_server} tasks still on the server), or stop paying for them with `vidbatch cancel --out {dir}`"
            ))
        } else if outcome == Some(RunOutcome::Stopped) && count(report, &["pending"]) > 0 {
            Some(format!(
                "run again with --out {dir} (and a higher --max-fail or --budget-tokens) to send the rest"
            ))
        } else if failed == not_done {
            Some(format!(
                "run again with --out {dir} --retry-failed to try the {failed} failed jobs again"
            ))
        } else {
            Some(format!("run again with --out {dir} to resume"))
        };
        let mut states: Vec<StateLine> = report
            .summary
            .by_state
            .iter()
            .map(|(state, jobs)| StateLine {
                state: state.clone(),
                jobs: *jobs,
                meaning: state_meaning(state),
            })
            .collect();
        states.sort_by_key(|s| (s.state != "done", s.state.clone()));
        Status {
            out: out.to_path_buf(),
            run_id: report.run.run_id.clone(),
            run,
            live,
            outcome,
            exit_code: outcome.map(crate::exit::of_run),
            stop_reason,
            next_step,
            started_at: report.run.started_at,
            finished_at: report.run.finished_at,
            states,
            summary: report.summary.clone(),
            jobs: report
                .jobs
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "id": j.id, "state": j.state, "task_id": j.task_ids.last(), "file": j.file,
                        "error": j.error.as_ref().map(|e| &e.message),
                    })
                })
                .collect(),
        }
    }

    /// The status as lines of text.
    pub fn write_text(&self, w: &mut impl Write) -> std::io::Result<()> {
        let outcome = self
            .outcome
            .and_then(|o| serde_json::to_value(o).ok())
            .and_then(|v| v.as_str().map(str::to_string));
        let head = match (self.run, outcome) {
            ("running", _) => "running".to_string(),
            (run, Some(o)) => format!("{run} ({o}, exit {})", self.exit_code.unwrap_or(1)),
            (run, None) => run.to_string(),
        };
        let left = match self.summary.not_in_plan {
            0 => String::new(),
            n => format!(" (and {n} not in its plan)"),
        };
        writeln!(
            w,
            "{}: {head}, {} jobs{left}",
            self.out.display(),
            self.summary.planned
        )?;
        writeln!(w, "  {}", self.stop_reason)?;
        if self.run != "running" {
            let when = |t: Option<Timestamp>| t.map_or_else(|| "–".into(), |t| t.to_rfc3339());
            let pid = self.live.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            writeln!(
                w,
                "  last run{pid}: started {}, ended {}",
                when(self.started_at),
                when(self.finished_at)
            )?;
        }
        for s in &self.states {
            writeln!(w, "  {:<16} {:>5}  {}", s.state, s.jobs, s.meaning)?;
        }
        let c = &self.summary.counters;
        writeln!(
            w,
            "  requests: {} ({} creates, {} lists, {} reads, {} cancels), {} answered 429{}",
            c.api_requests,
            c.creates,
            c.lists,
            c.reads,
            c.cancels,
            c.rate_limited,
            c.slots
                .map(|s| format!("; the account runs {s} tasks at once (learned from the lists)"))
                .unwrap_or_default()
        )?;
        for j in &self.jobs {
            let state = j["state"].as_str().unwrap_or("");
            if state == "done" {
                continue;
            }
            let detail = j["error"].as_str().unwrap_or("");
            writeln!(
                w,
                "  {:<24} {:<16} {}",
                j["id"].as_str().unwrap_or(""),
                state,
                detail
            )?;
        }
        if let Some(next) = &self.next_step {
            writeln!(w, "next: {next}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_without_a_lock_file_is_not_live() {
        let dir = tempfile::tempdir().expect("temp dir");
        let live = Liveness::of(dir.path());
        assert_eq!((live.running, live.pid), (false, None));
    }

    #[test]
    fn a_held_lock_is_live_with_its_pid_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let _lock = outdir::lock(dir.path()).expect("lock");
            let live = Liveness::of(dir.path());
            assert!(live.running);
            assert_eq!(live.pid, Some(std::process::id()));
            assert!(live.since.is_some());
        }
        let live = Liveness::of(dir.path());
        assert!(!live.running);
        assert_eq!(live.pid, Some(std::process::id()));
    }

    #[test]
    fn every_phase_and_failure_kind_has_a_meaning() {
        for s in [
            "done",
            "pending",
            "submitting",
            "submitted",
            "generated",
            "rejected",
            "task_failed",
            "expired",
            "cancelled",
            "timed_out",
            "submit_failed",
            "poll_failed",
            "download_failed",
        ] {
            assert!(!state_meaning(s).is_empty(), "{s}");
        }
    }
}
