//! Unit tests of the journal: appends, torn tails, damage, compaction and the lock.
use super::*;
use crate::api::Timestamp;
use crate::outdir::STATE_FILE;
use crate::state::Phase;

fn planned(job: &str) -> Event {
    Event::JobPlanned {
        job: job.into(),
        name: job.into(),
        fingerprint: "f".into(),
        request: Default::default(),
        source: "m.yaml:1:1".into(),
        estimated_tokens: None,
    }
}

#[tokio::test]
async fn appends_load_back_and_torn_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    {
        let j = Journal::open(&path).unwrap();
        j.append(&planned("a")).await.unwrap();
        j.append(&Event::Submitted {
            job: "a".into(),
            task_id: "vgen_1".into(),
            at: Timestamp::now(),
            reconciled: false,
        })
        .await
        .unwrap();
    }
    // A crash mid-write leaves half a line.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"event":"job_done","job":"a","#).unwrap();
    drop(f);
    let loaded = load(&path).unwrap();
    assert!(loaded.torn_tail);
    assert_eq!(loaded.state.jobs["a"].phase, Phase::Submitted);
    assert!(loaded.state.claimed_tasks.contains("vgen_1"));
    // Reopening cuts the torn line so new records start cleanly.
    {
        let j = Journal::open(&path).unwrap();
        j.append(&planned("b")).await.unwrap();
        j.sync().await.unwrap();
    }
    let loaded = load(&path).unwrap();
    assert!(!loaded.torn_tail);
    assert_eq!(loaded.state.jobs.len(), 2);
}

#[tokio::test]
async fn a_complete_garbage_last_line_is_cut_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    for garbage in [
        &b"garbage that is not json\n"[..],
        b"{\"event\":\"job_done\",\"jo\n\n\n",
        b"{\"event\":\"no_such_event\"}\r\n",
        b"\x00\x00\x00\n",
    ] {
        let _ = std::fs::remove_file(&path);
        {
            let j = Journal::open(&path).unwrap();
            j.append(&planned("a")).await.unwrap();
            j.sync().await.unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(garbage).unwrap();
        drop(f);
        // The first resume reads past it...
        let loaded = load(&path).unwrap();
        assert!(loaded.torn_tail);
        assert_eq!(loaded.state.jobs.len(), 1);
        // ...and appends after cutting it, so the next resume reads too.
        for job in ["b", "c"] {
            {
                let j = Journal::open(&path).unwrap();
                j.append(&planned(job)).await.unwrap();
                j.sync().await.unwrap();
            }
            let loaded = load(&path).unwrap_or_else(|e| panic!("{garbage:?}: {e}"));
            assert!(!loaded.torn_tail);
        }
        assert_eq!(load(&path).unwrap().state.jobs.len(), 3);
    }
}

#[tokio::test]
async fn a_bad_line_before_good_ones_is_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    {
        let j = Journal::open(&path).unwrap();
        j.append(&planned("a")).await.unwrap();
        j.sync().await.unwrap();
    }
    let good = std::fs::read(&path).unwrap();
    let mut text = good.clone();
    text.extend_from_slice(b"garbage\n");
    text.extend_from_slice(&good);
    std::fs::write(&path, &text).unwrap();
    drop(Journal::open(&path).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), text);
    let damaged = load(&path).unwrap_err();
    assert!(matches!(damaged, JournalError::Corrupt { line: 2, .. }));
    let said = damaged.to_string();
    assert!(said.contains("mend line 2") && said.contains("--fresh"), "{said}");
}

#[test]
fn a_long_garbage_last_line_is_cut_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    let good = serde_json::to_string(&planned("a")).unwrap() + "\n";
    let text = good.repeat(3) + &"x".repeat(200_000) + "\n";
    std::fs::write(&path, &text).unwrap();
    drop_torn_tail(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), good.repeat(3));
    std::fs::write(&path, "x".repeat(100_000) + "\n").unwrap();
    drop_torn_tail(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap().len(), 0);
}

#[tokio::test]
async fn records_are_written_without_a_sync_and_a_durable_one_writes_those_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
    let j = Journal::open(&path).unwrap();
    // No durable record follows, and the writer is idle: it still writes each one.
    for (n, job) in ["a", "b"].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(50));
        j.append(&planned(job)).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lines() <= n {
            assert!(
                std::time::Instant::now() < deadline,
                "the record was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    j.append(&planned("c")).await.unwrap();
    j.append(&Event::SubmitIntent {
        job: "c".into(),
        attempt: 1,
        idempotency_key: "k".into(),
        seed: None,
        at: Timestamp::now(),
    })
    .await
    .unwrap();
    assert_eq!(
        lines(),
        4,
        "a durable append returned before the records before it were written"
    );
}

#[test]
fn damage_in_the_middle_is_an_error_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    let good = serde_json::to_string(&planned("a")).unwrap();
    std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
    match load(&path) {
        Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn compaction_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATE_FILE);
    {
        let j = Journal::open(&path).unwrap();
        j.append(&planned("a")).await.unwrap();
        for i in 0..50 {
            j.append(&Event::Retrying {
                job: None,
                what: "poll".into(),
                attempt: i,
                error: "x".into(),
                wait_ms: 1,
            })
            .await
            .unwrap();
        }
        j.append(&Event::JobDone {
            job: "a".into(),
            task_id: "vgen_1".into(),
            path: "videos/a.mp4".into(),
            bytes: 10,
            sha256: "abc".into(),
            last_frame: None,
            at: Timestamp::now(),
        })
        .await
        .unwrap();
    }
    let before = load(&path).unwrap();
    compact(&path, &before.state).unwrap();
    let after = load(&path).unwrap();
    assert!(after.lines < before.lines);
    let (a, b) = (&before.state.jobs["a"], &after.state.jobs["a"]);
    assert_eq!((a.phase, &a.sha256, a.bytes), (b.phase, &b.sha256, b.bytes));
}
