//! Shot chains end to end against the simulator: each shot starts from the last frame of the
//! one before, a failed shot blocks the shots after it (never created, never paid),
//! `--retry-failed` finishes the chain, a kill mid-chain and a resume create every task exactly
//! once, drafts are promoted to finals, and bad references fail validation with their places.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vidbatch::journal;
use vidbatch::outdir;
use vidbatch::state::{Phase, RunState};
use vidbatch_sim::{SimConfig, SimHandle, SimTaskRequest};

fn fast_sim(seed: u64) -> SimConfig {
    SimConfig {
        gen_time: Some(Duration::from_secs(20)),
        time_scale: 0.005,
        rpm: 0,
        seed,
        latency: Duration::from_millis(5),
        ..SimConfig::default()
    }
}

/// A YAML manifest whose rows (a CSV beside it) chain `shots` shots with a template
/// (`job://shot-{prev}`), each with prompt `PROMPT_PREFIX N`, plus `extra` YAML jobs.
fn chain_manifest(dir: &Path, shots: usize, prompt: impl Fn(usize) -> String, extra: &str) -> PathBuf {
    let mut csv = String::from("id,prompt,first_frame,prev\n");
    for i in 1..=shots {
        let (frame, prev) = if i == 1 {
            (String::new(), String::new())
        } else {
            ("job://shot-{prev}".to_string(), (i - 1).to_string())
        };
        csv.push_str(&format!("shot-{i},{},{frame},{prev}\n", prompt(i)));
    }
    std::fs::write(dir.join("shots.csv"), csv).unwrap();
    let yaml = format!(
        "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  duration: 5\n  ratio: \"16:9\"\n  resolution: 480p\n\
         rows: shots.csv\n{extra}"
    );
    let path = dir.join("storyboard.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn state(out: &Path) -> RunState {
    journal::load(&out.join(outdir::STATE_FILE)).unwrap().state
}

fn task_of<'a>(state: &'a RunState, id: &str) -> &'a str {
    state.jobs[id]
        .task_id()
        .unwrap_or_else(|| panic!("{id} has no task"))
}

fn request_of<'a>(tasks: &'a [SimTaskRequest], task: &str) -> &'a SimTaskRequest {
    tasks
        .iter()
        .find(|t| t.id == task)
        .unwrap_or_else(|| panic!("no task {task} on the server"))
}

/// Checks that shot `i` (2..=shots) was created once, from the last frame of shot `i - 1`'s
/// task, and that the last frames were downloaded.
fn assert_chained(sim: &SimHandle, key: &str, out: &Path, shots: usize) {
    let st = state(out);
    let tasks = sim.task_requests(key);
    for i in 1..=shots {
        let id = format!("shot-{i}");
        let job = &st.jobs[&id];
        assert_eq!(job.phase, Phase::Done, "{id}: {:?}", job.failure);
        assert_eq!(job.task_ids.len(), 1, "{id} was created more than once");
        let sent = request_of(&tasks, task_of(&st, &id));
        if i == 1 {
            assert!(sent.inputs.is_empty(), "{id}: {:?}", sent.inputs);
            continue;
        }
        let prev = task_of(&st, &format!("shot-{}", i - 1));
        assert_eq!(sent.inputs.len(), 1, "{id}: {:?}", sent.inputs);
        let input = &sent.inputs[0];
        assert!(
            input.starts_with("first_frame=http") && input.contains(&format!("/files/{prev}.last.png")),
            "{id} did not start from shot-{}'s last frame: {input}",
            i - 1
        );
    }
    for i in 1..shots {
        let frame = out.join(format!("videos/shot-{i}.last.png"));
        assert!(frame.is_file(), "{} missing", frame.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shot_starts_from_the_last_frame_of_the_shot_before() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim(11)).await;
    let extra = "jobs:\n  - id: solo\n    prompt: an unrelated shot of the sea\n";
    let m = chain_manifest(
        dir.path(),
        5,
        |i| format!("Shot {i}: the fox crosses the valley"),
        extra,
    );
    let out = dir.path().join("out");
    let status = crate::util::vidbatch_run(&m, &out, &sim, "chain-key", "8")
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_chained(&sim, "chain-key", &out, 5);
    let stats = sim.stats();
    assert_eq!(stats.tasks_created, 6);
    assert_eq!(stats.duplicate_creates, 0);
    // Only the shots whose last frame is used asked for one.
    let st = state(&out);
    for i in 1..=4 {
        assert_eq!(
            st.jobs[&format!("shot-{i}")].request.return_last_frame,
            Some(true)
        );
    }
    assert_eq!(st.jobs["shot-5"].request.return_last_frame, None);
    // The report names each job's upstream.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let jobs = report["jobs"].as_array().unwrap();
    let upstream = |id: &str| {
        jobs.iter()
            .find(|j| j["id"] == id)
            .map(|j| j.get("upstream").cloned().unwrap_or_default())
            .unwrap()
    };
    assert_eq!(upstream("shot-3"), serde_json::json!(["shot-2"]));
    assert_eq!(upstream("shot-1"), serde_json::Value::Null);
    // A second run finds nothing to do and creates nothing.
    let again = crate::util::vidbatch_run(&m, &out, &sim, "chain-key", "8")
        .status()
        .await
        .unwrap();
    assert_eq!(again.code(), Some(0));
    assert_eq!(sim.stats().tasks_created, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_shot_blocks_the_shots_after_it_and_retry_failed_finishes_the_chain() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim(12)).await;
    let extra = "jobs:\n  - id: solo\n    prompt: an unrelated shot of the sea\n";
    let prompt = |i: usize| {
        if i == 2 {
            "Shot 2: the fox stumbles sim:fails-once".to_string()
        } else {
            format!("Shot {i}: the fox crosses the valley")
        }
    };
    let m = chain_manifest(dir.path(), 5, prompt, extra);
    let out = dir.path().join("out");
    let (junit, summary) = (dir.path().join("junit.xml"), dir.path().join("summary.md"));
    let status = crate::util::vidbatch_run(&m, &out, &sim, "fail-key", "8")
        .args([
            "--junit",
            junit.to_str().unwrap(),
            "--summary-md",
            summary.to_str().unwrap(),
        ])
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "a blocked chain is not a success");
    // JUnit, the summary and report.html name the job each blocked shot waits for.
    let junit = std::fs::read_to_string(&junit).unwrap();
    let summary = std::fs::read_to_string(&summary).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(junit.contains("after: shot-2"), "{junit}");
    assert!(summary.contains("shot-3 (after shot-2)"), "{summary}");
    assert!(
        html.contains("<dt>after</dt><dd>shot-2</dd>"),
        "report.html names no upstream"
    );
    let st = state(&out);
    assert_eq!(st.jobs["shot-1"].phase, Phase::Done);
    assert_eq!(st.jobs["solo"].phase, Phase::Done);
    assert_eq!(st.jobs["shot-2"].phase, Phase::Failed);
    assert!(!st.jobs["shot-2"].is_blocked());
    for (i, waits_for) in [(3, "shot-2"), (4, "shot-3"), (5, "shot-4")] {
        let job = &st.jobs[&format!("shot-{i}")];
        assert!(job.is_blocked(), "shot-{i}: {:?}", job.failure);
        assert!(job.task_ids.is_empty() && job.attempts == 0, "shot-{i} was sent");
        let why = &job.failure.as_ref().unwrap().message;
        assert!(why.contains(&format!("`{waits_for}`")), "shot-{i}: {why}");
    }
    // Nothing was created, so nothing paid, for the blocked shots.
    assert_eq!(sim.stats().tasks_created, 3);
    assert_eq!(st.phase_counts().get("blocked"), Some(&3));
    let status_out = crate::util::bin()
        .args(["status", "--out", out.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&status_out.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("blocked") && l.trim_end().ends_with('3')),
        "status does not count the blocked jobs:\n{text}"
    );

    // Without --retry-failed nothing moves.
    let again = crate::util::vidbatch_run(&m, &out, &sim, "fail-key", "8")
        .status()
        .await
        .unwrap();
    assert_eq!(again.code(), Some(1));
    assert_eq!(sim.stats().tasks_created, 3);

    let retried = crate::util::vidbatch_run(&m, &out, &sim, "fail-key", "8")
        .arg("--retry-failed")
        .status()
        .await
        .unwrap();
    assert_eq!(retried.code(), Some(0));
    let st = state(&out);
    assert_eq!(st.jobs["shot-2"].task_ids.len(), 2, "shot-2 retried once");
    assert_eq!(sim.stats().tasks_created, 3 + 4);
    let tasks = sim.task_requests("fail-key");
    for i in 3..=5 {
        let sent = request_of(&tasks, task_of(&st, &format!("shot-{i}")));
        let prev = task_of(&st, &format!("shot-{}", i - 1));
        assert!(
            sent.inputs[0].contains(&format!("/files/{prev}.last.png")),
            "shot-{i}: {:?}",
            sent.inputs
        );
    }
    assert_eq!(sim.stats().duplicate_creates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_promoted_to_a_final_carries_the_drafts_task_id() {
    let (sim, dir) = crate::util::sim_and_dir(fast_sim(13)).await;
    let extra = "jobs:\n  - id: draft-1\n    prompt: a lighthouse in a storm\n    draft: true\n\
                 \x20 - id: final-1\n    prompt: a lighthouse in a storm\n    draft_task: job://draft-1\n";
    let m = chain_manifest(dir.path(), 2, |i| format!("Shot {i}: rain"), extra);
    let out = dir.path().join("out");
    let status = crate::util::vidbatch_run(&m, &out, &sim, "draft-key", "8")
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let st = state(&out);
    let tasks = sim.task_requests("draft-key");
    let draft = task_of(&st, "draft-1");
    assert!(request_of(&tasks, draft).draft);
    let fin = request_of(&tasks, task_of(&st, "final-1"));
    assert_eq!(fin.inputs, vec![format!("draft_task={draft}")]);
    assert!(!fin.draft);
    assert_eq!(sim.stats().tasks_created, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_chain_and_resumed_every_shot_is_created_exactly_once() {
    let seed: u64 = std::env::var("VIDBATCH_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chain kill test seed: {seed} (rerun with VIDBATCH_KILL_SEED={seed})");
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        ambiguous_create_rate: 0.15,
        cut_download_rate: 0.2,
        ..fast_sim(seed)
    })
    .await;
    let shots = 8;
    let m = chain_manifest(dir.path(), shots, |i| format!("Shot {i}: the long road"), "");
    let out = dir.path().join("out");
    let run = || crate::util::vidbatch_run(&m, &out, &sim, "kill-key", "4");
    let mut mid_chain = 0;
    let done_now = || {
        let st = state(&out);
        st.jobs.values().filter(|j| j.phase == Phase::Done).count()
    };
    for kill in 0..12u64 {
        // Each run is killed a moment (0-250 ms, from the seed) after it finishes a shot more
        // than the runs before it, so kills land mid-chain however loaded the machine is.
        let before = done_now();
        let mut child = run().spawn().unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if done_now() > before || started.elapsed() > Duration::from_secs(10) {
                let jitter = seed.wrapping_mul(31).wrapping_add(kill * 97) % 250;
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if child.try_wait().unwrap().is_none() {
            child.start_kill().unwrap();
        }
        child.wait().await.unwrap();
        let done = done_now();
        if done > 0 && done < shots {
            mid_chain += 1;
        }
    }
    eprintln!("kills that landed mid-chain: {mid_chain}");
    let status = tokio::time::timeout(Duration::from_secs(120), run().status())
        .await
        .expect("the final run finished")
        .unwrap();
    assert_eq!(status.code(), Some(0), "seed {seed}");
    assert!(mid_chain > 0, "seed {seed}: no kill landed mid-chain");
    assert_chained(&sim, "kill-key", &out, shots);
    let stats = sim.stats();
    assert_eq!(
        stats.tasks_created, shots as u64,
        "seed {seed}: a shot was created twice"
    );
    assert_eq!(stats.duplicate_creates, 0, "seed {seed}");
}

#[tokio::test]
async fn a_cycle_and_bad_references_fail_validation_with_their_places() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("bad.yaml");
    std::fs::write(
        &m,
        "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  resolution: 480p\njobs:\n\
         \x20 - id: a\n    prompt: shot a\n    first_frame: job://c\n\
         \x20 - id: b\n    prompt: shot b\n    first_frame: job://a\n\
         \x20 - id: c\n    prompt: shot c\n    first_frame: job://b\n\
         \x20 - id: me\n    prompt: me\n    first_frame: job://me\n\
         \x20 - id: lost\n    prompt: lost\n    reference_image: job://shot-9\n\
         \x20 - id: promo\n    prompt: promote\n    draft_task: job://lost\n",
    )
    .unwrap();
    let out = crate::util::bin()
        .args(["validate", m.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    let file = m.display().to_string();
    let line_of = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
            .to_string()
    };
    let cycle = line_of("cycle");
    assert!(cycle.starts_with(&format!("{file}:6:")), "{cycle}");
    assert!(cycle.contains("`a` → `b` → `c` → `a`"), "{cycle}");
    assert!(line_of("to itself").starts_with(&format!("{file}:17:")));
    let unknown = line_of("job://shot-9");
    assert!(
        unknown.starts_with(&format!("{file}:20:")) && unknown.contains("names no job"),
        "{unknown}"
    );
    let draft = line_of("not a draft");
    assert!(draft.starts_with(&format!("{file}:23:")), "{draft}");

    // The same checks in a sheet name the row.
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        "id,model,prompt,first_frame\nx,seedance-1.5-pro,shot x,\ny,seedance-1.5-pro,shot y,job://z\n",
    )
    .unwrap();
    let out = crate::util::bin()
        .args(["validate", csv.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("row 3, column `first_frame`") && text.contains("job://z"),
        "{text}"
    );
}
