//! Unit tests of the fold: events applied to a run state.
use super::*;
use crate::api::{CreateRequest, Timestamp};
use crate::events::Event;

fn planned(job: &str) -> Event {
    Event::JobPlanned {
        job: job.into(),
        name: job.into(),
        fingerprint: format!("fp-{job}"),
        request: Box::new(CreateRequest::default()),
        source: "test".into(),
        estimated_tokens: None,
    }
}

/// Applies `event` and moves the tally as the runner does.
fn step(state: &mut RunState, tally: &mut Tally, event: Event) {
    let job = event.job().map(str::to_string);
    let before = job
        .as_deref()
        .and_then(|j| state.jobs.get(j))
        .map(JobState::standing);
    state.apply(&event);
    let after = job
        .as_deref()
        .and_then(|j| state.jobs.get(j))
        .map(JobState::standing);
    if let (Some(b), Some(a)) = (before, after) {
        tally.moved(b, a);
    }
}

#[test]
fn the_tally_moves_with_each_event_and_agrees_with_a_recount() {
    let mut state = RunState::default();
    for job in ["a", "b", "c", "d"] {
        state.apply(&planned(job));
    }
    let mut tally = Tally::of(state.jobs_in_order());
    for (job, task) in [("a", "t1"), ("b", "t2"), ("c", "t3")] {
        let e = Event::Submitted {
            job: job.into(),
            task_id: task.into(),
            at: Timestamp::now(),
            reconciled: false,
        };
        step(&mut state, &mut tally, e);
    }
    for (job, task, status) in [
        ("a", "t1", TaskStatus::Queued),
        ("b", "t2", TaskStatus::Processing),
        ("a", "t1", TaskStatus::Processing),
        ("c", "t3", TaskStatus::Queued),
    ] {
        let e = Event::TaskProgress {
            job: job.into(),
            task_id: task.into(),
            status,
            at: Timestamp::now(),
        };
        step(&mut state, &mut tally, e);
    }
    let failed = Event::JobFailed {
        job: "b".into(),
        task_id: Some("t2".into()),
        failure: crate::events::Failure {
            kind: crate::events::FailureKind::TaskFailed,
            http_status: None,
            code: None,
            message: "x".into(),
        },
        at: Timestamp::now(),
    };
    step(&mut state, &mut tally, failed);
    let expected = Tally {
        total: 4,
        done: 0,
        failed: 1,
        in_flight: 2,
        queued: 1,
    };
    assert_eq!(tally, expected);
    assert_eq!(Tally::of(state.jobs_in_order()), expected);
}

fn failure(kind: crate::events::FailureKind) -> crate::events::Failure {
    crate::events::Failure {
        kind,
        http_status: None,
        code: None,
        message: "x".into(),
    }
}

fn intent(job: &str, seed: Option<i64>) -> Event {
    Event::SubmitIntent {
        job: job.into(),
        attempt: 1,
        idempotency_key: format!("key-{job}"),
        seed,
        at: Timestamp::now(),
    }
}

#[test]
fn a_create_that_made_no_task_puts_the_job_back_and_keeps_its_seed() {
    let mut state = RunState::default();
    state.apply(&planned("a"));
    state.apply(&intent("a", Some(42)));
    assert_eq!(state.jobs["a"].phase, Phase::Submitting);
    state.apply(&Event::SubmitNotCreated {
        job: "a".into(),
        reason: "no task listed".into(),
    });
    assert_eq!(state.jobs["a"].phase, Phase::Pending);
    // A later intent without a drawn seed keeps the one recorded.
    state.apply(&intent("a", None));
    assert_eq!(state.jobs["a"].seed, Some(42));
    // Not-created says nothing to a job that already has its task.
    state.apply(&Event::Submitted {
        job: "a".into(),
        task_id: "t1".into(),
        at: Timestamp::now(),
        reconciled: true,
    });
    state.apply(&Event::SubmitNotCreated {
        job: "a".into(),
        reason: "late".into(),
    });
    assert_eq!(state.jobs["a"].phase, Phase::Submitted);
    assert!(state.claimed_tasks.contains("t1"));
}

#[test]
fn a_failure_a_later_run_resumes_keeps_the_phase_and_others_end_the_job() {
    use crate::events::FailureKind;
    let mut state = RunState::default();
    for job in ["poll", "dl", "gen"] {
        state.apply(&planned(job));
        state.apply(&Event::Submitted {
            job: job.into(),
            task_id: format!("t-{job}"),
            at: Timestamp::now(),
            reconciled: false,
        });
    }
    for (job, kind) in [
        ("poll", FailureKind::PollFailed),
        ("dl", FailureKind::DownloadFailed),
        ("gen", FailureKind::TaskFailed),
    ] {
        state.apply(&Event::JobFailed {
            job: job.into(),
            task_id: None,
            failure: failure(kind),
            at: Timestamp::now(),
        });
    }
    assert_eq!(state.jobs["poll"].phase, Phase::Submitted);
    assert_eq!(state.jobs["dl"].phase, Phase::Submitted);
    assert_eq!(state.jobs["gen"].phase, Phase::Failed);
    assert!(
        state
            .jobs
            .values()
            .all(|j| j.failures == 1 && j.failure.is_some())
    );
    // Only a failed job is reopened.
    for job in ["poll", "gen"] {
        state.apply(&Event::JobReopened { job: job.into() });
    }
    assert_eq!(state.jobs["poll"].phase, Phase::Submitted);
    assert_eq!(state.jobs["gen"].phase, Phase::Pending);
}

#[test]
fn an_invalid_file_takes_a_done_job_back_to_generated_and_a_new_plan_keeps_its_phase() {
    let mut state = RunState::default();
    state.apply(&planned("a"));
    state.apply(&Event::JobDone {
        job: "a".into(),
        task_id: "t1".into(),
        path: "videos/a.mp4".into(),
        bytes: 10,
        sha256: "00".into(),
        last_frame: None,
        at: Timestamp::now(),
    });
    assert_eq!(state.jobs["a"].phase, Phase::Done);
    // Planning the same job again (a resumed run) changes its plan, not its phase.
    let Event::JobPlanned { request, .. } = planned("a") else {
        unreachable!("planned() makes a JobPlanned")
    };
    state.apply(&Event::JobPlanned {
        job: "a".into(),
        name: "renamed".into(),
        fingerprint: "fp-2".into(),
        request,
        source: "test".into(),
        estimated_tokens: Some(7),
    });
    assert_eq!(
        (state.jobs["a"].phase, state.jobs["a"].name.as_str()),
        (Phase::Done, "renamed")
    );
    assert_eq!(state.order, vec!["a".to_string()]);
    state.apply(&Event::FileInvalid {
        job: "a".into(),
        reason: "sha256 differs".into(),
    });
    assert_eq!(state.jobs["a"].phase, Phase::Generated);
}

#[test]
fn counters_add_up_over_runs_and_the_first_stop_reason_stays() {
    use crate::events::{Counters, RunOutcome};
    let mut state = RunState::default();
    let finished = |requests, slots| Event::RunFinished {
        at: Timestamp::now(),
        outcome: RunOutcome::Success,
        counters: Counters {
            api_requests: requests,
            creates: 1,
            slots,
            ..Counters::default()
        },
    };
    state.apply(&finished(10, Some(8)));
    state.apply(&finished(5, None));
    assert_eq!(state.counters.api_requests, 15);
    assert_eq!(state.counters.creates, 2);
    assert_eq!(
        state.counters.slots,
        Some(8),
        "a run that learned nothing keeps the slots"
    );
    for reason in ["budget", "max-fail"] {
        state.apply(&Event::SubmissionsStopped {
            reason: reason.into(),
        });
    }
    assert_eq!(state.stop_reason.as_deref(), Some("budget"));
}

#[test]
fn a_task_gone_with_its_simulator_puts_the_job_back_without_that_task() {
    let mut state = RunState::default();
    for job in ["a", "b"] {
        state.apply(&planned(job));
    }
    state.apply(&Event::Submitted {
        job: "a".into(),
        task_id: "t1".into(),
        at: Timestamp::now(),
        reconciled: false,
    });
    state.apply(&Event::TaskGone {
        job: "a".into(),
        task_id: Some("t1".into()),
    });
    assert_eq!(state.jobs["a"].phase, Phase::Pending);
    assert!(state.jobs["a"].task_ids.is_empty());
    // A done job keeps its video and its task.
    state.apply(&Event::JobDone {
        job: "b".into(),
        task_id: "t2".into(),
        path: "videos/b.mp4".into(),
        bytes: 1,
        sha256: "00".into(),
        last_frame: None,
        at: Timestamp::now(),
    });
    state.apply(&Event::TaskGone {
        job: "b".into(),
        task_id: Some("t2".into()),
    });
    assert_eq!(state.jobs["b"].phase, Phase::Done);
}
