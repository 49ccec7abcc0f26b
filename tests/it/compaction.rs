//! Compaction keeps history: a journal compacted to snapshot records loads back to the same
//! state and the same report as the events it replaced, for states reached by random event
//! sequences (attempts, retries, flaky marks, URL refreshes, send times and run counts included).

use proptest::prelude::*;
use vidbatch::api::{CreateRequest, TaskStatus, Timestamp, Usage};
use vidbatch::events::{Counters, Event, Failure, FailureKind, RunOutcome};
use vidbatch::journal;
use vidbatch::outdir;
use vidbatch::report::Report;
use vidbatch::state::RunState;

const JOBS: [&str; 3] = ["a", "b", "c"];

fn at(secs: i64) -> Timestamp {
    Timestamp(time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap())
}

/// One event of kind `kind` about job `job`, with `n` to vary its values.
fn event(kind: u8, job: usize, n: i64) -> Event {
    let job = JOBS[job % JOBS.len()].to_string();
    let task = format!("vgen_{job}{}", n % 3);
    match kind % 13 {
        0 => Event::JobPlanned {
            job: job.clone(),
            name: job.clone(),
            fingerprint: format!("fp-{job}-{}", n % 2),
            request: Box::new(CreateRequest {
                model: "seedance-1.5-pro".into(),
                prompt: format!("shot {job}"),
                ..Default::default()
            }),
            source: "m.yaml:1:1".into(),
            estimated_tokens: Some(100),
        },
        1 => Event::SubmitIntent {
            job,
            attempt: (n % 4) as u32 + 1,
            idempotency_key: format!("k{n}"),
            seed: Some(n),
            at: at(n),
        },
        2 => Event::SubmitNotCreated {
            job,
            reason: "lost".into(),
        },
        3 => Event::Submitted {
            job,
            task_id: task,
            at: at(n),
            reconciled: n % 2 == 0,
        },
        4 => Event::TaskProgress {
            job,
            task_id: task,
            status: if n % 2 == 0 {
                TaskStatus::Processing
            } else {
                TaskStatus::Queued
            },
            at: at(n),
        },
        5 => Event::TaskCompleted {
            job,
            task_id: task,
            usage: Some(Usage {
                completion_tokens: 90,
                total_tokens: 90,
            }),
            completed_at: Some(at(n + 5)),
            created_at: Some(at(n)),
            video_url_expires_at: Some(at(n + 3600)),
            at: at(n + 6),
        },
        6 => Event::Retrying {
            job: Some(job),
            what: "poll".into(),
            attempt: 1,
            error: "503".into(),
            wait_ms: 10,
        },
        7 => Event::UrlRefreshed { job, status: 403 },
        8 => Event::JobDone {
            job: job.clone(),
            task_id: task,
            path: format!("videos/{job}.mp4"),
            bytes: 100 + n.unsigned_abs(),
            sha256: format!("{n:064}"),
            last_frame: None,
            at: at(n + 10),
        },
        9 => Event::JobFailed {
            job,
            task_id: Some(task),
            failure: Failure {
                kind: [
                    FailureKind::TaskFailed,
                    FailureKind::PollFailed,
                    FailureKind::DownloadFailed,
                ][(n % 3) as usize],
                http_status: None,
                code: Some("x".into()),
                message: "failed".into(),
            },
            at: at(n + 10),
        },
        10 => Event::FileInvalid {
            job,
            reason: "changed".into(),
        },
        11 => Event::JobReopened { job },
        _ => {
            if n % 2 == 0 {
                Event::RunStarted {
                    run_id: "run_1".into(),
                    at: at(n),
                    tool_version: "test".into(),
                    settings: serde_json::json!({"rpm": n}),
                    manifests: Vec::new(),
                    total_jobs: 3,
                    shard: None,
                    plan: (n % 4 == 0).then(|| vec!["a".to_string(), "c".to_string()]),
                }
            } else {
                Event::RunFinished {
                    at: at(n),
                    outcome: RunOutcome::SomeFailed,
                    counters: Counters {
                        api_requests: n.unsigned_abs(),
                        creates: 2,
                        ..Default::default()
                    },
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_compacted_journal_loads_back_to_the_same_state_and_report(
        ops in proptest::collection::vec((0u8..13, 0usize..3, 0i64..50), 1..60)
    ) {
        let mut state = RunState::default();
        state.apply(&event(12, 0, 0));
        for (kind, job, n) in ops {
            state.apply(&event(kind, job, n));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(outdir::STATE_FILE);
        journal::compact(&path, &state).unwrap();
        let loaded = journal::load(&path).unwrap();
        prop_assert_eq!(&loaded.state, &state);
        prop_assert_eq!(loaded.lines, state.jobs.len() + 1);
        let report = |s: &RunState| serde_json::to_value(Report::from_state(s)).unwrap();
        prop_assert_eq!(report(&loaded.state), report(&state));
    }
}
