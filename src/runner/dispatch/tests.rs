//! Unit tests of the dispatcher, on tokio's paused clock.

use super::*;
use crate::api::{ApiError, ApiKey, ClientConfig, ContentItem, CreateRequest, ErrorCode, ErrorDetail};
use crate::events::FailureKind;
use crate::runner::sweep::PAGE;

/// A dispatcher over `jobs` pending jobs whose client points at a closed port: these tests
/// look at its decisions, never at its requests.
fn dispatcher(dir: &std::path::Path, jobs: usize) -> Dispatcher {
    let ids: Vec<String> = (0..jobs).map(|i| format!("j{i}")).collect();
    let jobs: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
    chained(dir, &jobs)
}

fn task(id: &str, status: &str) -> Task {
    serde_json::from_value(
        serde_json::json!({"id": id, "status": status, "created_at": "2026-12-01T10:00:00Z"}),
    )
    .unwrap()
}

/// Records what the display is told of the throttle.
struct Throttles(std::sync::Arc<std::sync::Mutex<Vec<Option<Throttle>>>>);

impl Observer for Throttles {
    fn on_event(&mut self, event: &Event, _: &RunState, _: &Tally) {
        if let Event::Throttled { by } = event {
            self.0.lock().unwrap().push(*by);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_display_hears_when_requests_are_held_back_and_when_they_flow_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = dispatcher(dir.path(), 3);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    d.observers.push(Box::new(Throttles(seen.clone())));
    let t0 = Instant::now();
    // A token a moment away is no throttle; a second of waiting is.
    d.note_throttle(true, t0);
    d.note_throttle(true, t0 + Duration::from_millis(500));
    assert!(seen.lock().unwrap().is_empty());
    d.note_throttle(true, t0 + Duration::from_millis(1500));
    d.note_throttle(true, t0 + Duration::from_secs(2));
    assert_eq!(*seen.lock().unwrap(), vec![Some(Throttle::Rpm)]);
    // Requests flowing for a moment leave it shown; flowing for a second clear it.
    d.note_throttle(false, t0 + Duration::from_secs(3));
    d.note_throttle(true, t0 + Duration::from_millis(3200));
    d.note_throttle(false, t0 + Duration::from_millis(3400));
    assert_eq!(*seen.lock().unwrap(), vec![Some(Throttle::Rpm)]);
    d.note_throttle(false, t0 + Duration::from_millis(4500));
    assert_eq!(*seen.lock().unwrap(), vec![Some(Throttle::Rpm), None]);
    // A 429's pause shows at once.
    d.answered(&rate_limited("rate_limit_exceeded"));
    d.note_throttle(true, Instant::now());
    assert_eq!(seen.lock().unwrap().last(), Some(&Some(Throttle::RateLimited)));
    assert!(!Event::Throttled { by: None }.is_journaled());
}

fn rate_limited(code: &str) -> Result<(), ApiError> {
    Err(ApiError::RateLimited {
        retry_after: None,
        limit: None,
        detail: Some(Box::new(ErrorDetail {
            code: ErrorCode(code.into()),
            ..Default::default()
        })),
    })
}

#[tokio::test(start_paused = true)]
async fn each_token_goes_to_a_cancel_then_a_create_then_a_sweep_then_url_reads_then_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = dispatcher(dir.path(), 3);
    let now = Instant::now();
    d.fly("other".into(), task("t0", "queued"), now, now);
    d.reads.push_back(("t0".into(), ReadFor::Status));
    d.url_wait.push_back("finished".into());
    d.next_sweep = now;
    assert!(
        matches!(d.next_request(now), Some(Next::Create(0, _))),
        "a create comes first"
    );
    d.cancels.push_back(("x".into(), "t9".into()));
    assert!(
        matches!(d.next_request(now), Some(Next::Cancel(..))),
        "a cancel comes before all"
    );
    d.cancels.clear();
    // With the in-flight target reached, the others are served in their order.
    d.slots = Slots::new(Some(1));
    assert!(matches!(d.next_request(now), Some(Next::List(ListFor::Sweep))));
    d.listing = true;
    assert!(matches!(d.next_request(now), Some(Next::UrlRead(j)) if j == "finished"));
    d.url_wait.clear();
    assert!(matches!(d.next_request(now), Some(Next::Read(t, ReadFor::Status)) if t == "t0"));
    // A slot freed: the create is served before the reads still waiting.
    d.flights.clear();
    assert!(matches!(d.next_request(now), Some(Next::Create(..))));
}

/// A dispatcher over jobs `(id, first_frame)` with the given references.
fn chained(dir: &std::path::Path, jobs: &[(&str, Option<&str>)]) -> Dispatcher {
    let jobs: Vec<_> = jobs.iter().map(|&(id, frame)| (id, frame, Some(100))).collect();
    planned(RunSettings::new(dir), &jobs)
}

/// A dispatcher loaded with a plan of `(id, first frame, estimated tokens)`.
fn planned(settings: RunSettings, jobs: &[(&str, Option<&str>, Option<u64>)]) -> Dispatcher {
    let dir = settings.out_dir.clone();
    let mut state = RunState::default();
    let plan: Vec<String> = jobs.iter().map(|(id, ..)| id.to_string()).collect();
    for &(id, frame, estimated_tokens) in jobs {
        let mut request = CreateRequest {
            model: "seedance-1.5-pro".into(),
            prompt: format!("shot {id}"),
            ..Default::default()
        };
        if let Some(f) = frame {
            request.content.push(ContentItem::ImageUrl {
                image_url: crate::api::MediaUrl { url: f.to_string() },
                role: Some(crate::api::ContentRole::FirstFrame),
            });
        }
        state.apply(&Event::JobPlanned {
            job: id.to_string(),
            name: id.to_string(),
            fingerprint: format!("fp-{id}"),
            request: Box::new(request),
            source: "test".into(),
            estimated_tokens,
        });
    }
    let client = Client::new(&ClientConfig::new("http://127.0.0.1:9/v1", ApiKey::new("k"))).unwrap();
    let mut d = Dispatcher::new(Setup {
        client,
        http: reqwest::Client::new(),
        settings,
        journal: Journal::open(&dir.join("state.jsonl")).unwrap(),
        state,
        observers: Vec::new(),
        run_id: "run_test".into(),
        plan: plan.clone(),
        committed_tokens: 0,
    });
    d.load(&plan);
    d
}

fn done(d: &mut Dispatcher, job: &str, task_id: &str) {
    d.emit(Event::Submitted {
        job: job.into(),
        task_id: task_id.into(),
        at: Timestamp::now(),
        reconciled: false,
    });
    d.emit(Event::JobDone {
        job: job.into(),
        task_id: task_id.into(),
        path: format!("videos/{job}.mp4"),
        bytes: 1,
        sha256: "x".into(),
        last_frame: None,
        at: Timestamp::now(),
    });
    d.release_behind(job);
}

fn finished_task(id: &str, expires_in: i64) -> Task {
    let at = Timestamp(Timestamp::now().0 + time::Duration::seconds(expires_in));
    let mut t = task(id, "completed");
    t.video_url = Some(format!("https://cdn/{id}.mp4"));
    t.last_frame_url = Some(format!("https://cdn/{id}.last.png"));
    t.video_url_expires_at = Some(at);
    t.video_url_ttl = Some(3600.0);
    t
}

#[tokio::test(start_paused = true)]
async fn a_shot_waits_for_the_one_before_and_the_longest_chain_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = chained(
        dir.path(),
        &[
            ("solo", None),
            ("s1", None),
            ("s2", Some("job://s1")),
            ("s3", Some("job://s2")),
        ],
    );
    assert_eq!(d.pending, ["s1", "solo"], "the chain's root first");
    assert_eq!(d.waiting.len(), 2);
    // Done, with no URL at hand (an earlier run): its task is read first.
    d.pending.retain(|j| j != "s1");
    done(&mut d, "s1", "t1");
    assert!(d.waiting.contains("s2"));
    assert_eq!(d.upstream_reads, ["s1"]);
    d.on_upstream_read("s1".into(), Ok(finished_task("t1", 3000)));
    assert_eq!(d.pending, ["s2", "solo"], "the longer chain behind s2 goes first");
    let sent = d.resolve(&d.state.jobs["s2"].request).unwrap();
    assert_eq!(sent[0].url(), Some("https://cdn/t1.last.png"));
    // A URL about to expire is read again before it is handed on.
    d.fresh.insert("s1".into(), (finished_task("t1", 30), true));
    assert!(matches!(d.gap("s2"), Some(Gap::Read(r)) if r == ["s1"]));
}

#[tokio::test(start_paused = true)]
async fn a_failed_shot_blocks_every_shot_behind_it_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = chained(
        dir.path(),
        &[
            ("s1", None),
            ("s2", Some("job://s1")),
            ("s3", Some("job://s2")),
            ("solo", None),
        ],
    );
    d.pending.retain(|j| j != "s1");
    d.fail("s1", None, plain(FailureKind::TaskFailed, "boom".into()));
    for (id, waits) in [("s2", "s1"), ("s3", "s2")] {
        let j = &d.state.jobs[id];
        assert!(j.is_blocked(), "{id}");
        assert!(
            j.failure
                .as_ref()
                .unwrap()
                .message
                .contains(&format!("`{waits}`"))
        );
    }
    assert!(d.waiting.is_empty());
    assert_eq!(d.pending, ["solo"]);
    assert_eq!(d.failed_this_run, 1, "blocked jobs are not failures of their own");
}

#[tokio::test(start_paused = true)]
async fn a_queue_full_429_lowers_the_queue_and_not_the_request_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = dispatcher(dir.path(), 0);
    d.slots.observe(8, 4);
    for _ in 0..20 {
        d.slots.on_finished(Instant::now());
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    let target = d.target();
    let rpm = d.pacer.rpm_now();
    d.answered(&rate_limited("too_many_queued_tasks"));
    assert_eq!(d.pacer.rpm_now(), rpm);
    assert!(!d.pacer.is_paused());
    assert!(d.target() < target, "{} !< {target}", d.target());
    assert_eq!(d.counters.rate_limited, 1);
    // A 429 about the rate does hold every request.
    d.answered(&rate_limited("rate_limit_exceeded"));
    assert!(d.pacer.is_paused());
    assert!(d.pacer.rpm_now() < rpm);
}

#[tokio::test(start_paused = true)]
async fn a_429_that_never_clears_ends_the_run_after_ten_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = dispatcher(dir.path(), 0);
    for _ in 0..60 {
        d.answered(&rate_limited("rate_limit_exceeded"));
        assert!(!d.halted, "gave up too soon");
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    d.answered(&Ok(()));
    tokio::time::advance(Duration::from_secs(9 * 60)).await;
    d.answered(&rate_limited("rate_limit_exceeded"));
    assert!(!d.halted, "an answer in between starts the count again");
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    d.answered(&rate_limited("rate_limit_exceeded"));
    assert!(d.halted);
    assert_eq!(d.stop, Some(StopKind::Fatal));
}

#[tokio::test(start_paused = true)]
async fn a_task_past_its_deadline_is_read_first_and_cancelled_only_when_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = dispatcher(dir.path(), 0);
    let now = Instant::now();
    d.fly("a".into(), task("ta", "processing"), now, now);
    d.fly("b".into(), task("tb", "processing"), now, now);
    d.reads.push_back(("tb".into(), ReadFor::Status));
    tokio::time::advance(d.settings.job_timeout + Duration::from_secs(1)).await;
    let now = Instant::now();
    d.tick(now);
    assert!(matches!(d.reads.front(), Some((t, ReadFor::Deadline)) if t == "ta" || t == "tb"));
    // Finished after all: kept, not cancelled.
    d.on_read("ta".into(), ReadFor::Deadline, Ok(task("ta", "completed")), now);
    assert!(d.cancels.is_empty());
    assert!(!d.flights.contains_key("ta"));
    // Still running: cancelled.
    d.on_read("tb".into(), ReadFor::Deadline, Ok(task("tb", "processing")), now);
    assert_eq!(d.cancels.front().map(|(_, t)| t.as_str()), Some("tb"));
    assert!(d.flights.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_task_the_lists_cannot_cover_is_read_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = dispatcher(dir.path(), 0);
    let now = Instant::now();
    d.fly("a".into(), task("ta", "processing"), now, now);
    // A full page of newer tasks of another client: it cannot speak for ours.
    let items: Vec<Task> = (0..PAGE)
        .map(|i| {
            let mut t = task(&format!("other{i}"), "processing");
            t.created_at = Some(Timestamp(time::macros::datetime!(2026-12-01 11:00 UTC)));
            t
        })
        .collect();
    d.on_sweep(
        TaskList {
            items,
            total: Some(500),
        },
        now,
    );
    tokio::time::advance(Duration::from_millis(10)).await;
    d.tick(Instant::now());
    assert!(matches!(d.reads.front(), Some((t, ReadFor::Status)) if t == "ta"));
}

#[tokio::test(start_paused = true)]
async fn the_jobs_that_hold_up_the_most_work_are_created_first() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = [
        ("small", None, Some(100)),
        ("unknown", None, None),
        ("large", None, Some(900)),
        ("root", None, Some(100)),
        ("next", Some("job://root"), Some(100)),
        ("medium", None, Some(400)),
    ];
    let d = planned(RunSettings::new(dir.path()), &jobs);
    // root holds up 200 tokens with its shot; a job without an estimate counts the mean (320).
    assert_eq!(d.pending, ["large", "medium", "unknown", "root", "small"]);
    // Under a budget the plan's order decides what it pays for: only chains go first.
    let mut budgeted = RunSettings::new(dir.path());
    budgeted.budget_tokens = Some(10_000);
    let d = planned(budgeted, &jobs);
    assert_eq!(d.pending, ["root", "small", "unknown", "large", "medium"]);
}
