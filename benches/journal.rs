//! Journal benchmark: the cost of one event stays flat from 1,000 to 100,000 jobs (appends
//! never rewrite the file), and loading a 100,000-job state takes well under a second.
//!
//! Run: `cargo bench --bench journal`. Each job writes the events a real job writes (planned,
//! intent, submitted, progress, completed, done), with the money records fsynced as in a run.

use std::time::Instant;

use vidbatch::api::{CreateRequest, TaskStatus, Timestamp, Usage};
use vidbatch::events::Event;
use vidbatch::journal::{self, Journal};
use vidbatch::outdir;

fn job_events(i: usize) -> Vec<Event> {
    let job = format!("job-{i:06}");
    let task_id = format!("vgen_{i:026}");
    let now = Timestamp::now();
    vec![
        Event::JobPlanned {
            job: job.clone(),
            name: job.clone(),
            fingerprint: format!("{i:064x}"),
            request: Box::new(CreateRequest {
                model: "seedance-1.5-pro".into(),
                prompt: format!("shot {i}: a fox walking through a snowy forest at dawn, cinematic"),
                duration: Some(5),
                ratio: Some(vidbatch::api::Ratio::Landscape),
                resolution: Some(vidbatch::api::Resolution::P720),
                ..Default::default()
            }),
            source: format!("manifest.csv row {}", i + 2),
            estimated_tokens: Some(108_000),
        },
        Event::SubmitIntent {
            job: job.clone(),
            attempt: 1,
            idempotency_key: format!("vidbatch-{i:032x}"),
            seed: Some(i as i64),
            at: now,
        },
        Event::Submitted {
            job: job.clone(),
            task_id: task_id.clone(),
            at: now,
            reconciled: false,
        },
        Event::TaskProgress {
            job: job.clone(),
            task_id: task_id.clone(),
            status: TaskStatus::Processing,
            at: now,
        },
        Event::TaskCompleted {
            job: job.clone(),
            task_id: task_id.clone(),
            usage: Some(Usage {
                completion_tokens: 108_000,
                total_tokens: 108_000,
            }),
            completed_at: Some(now),
            created_at: Some(now),
            video_url_expires_at: Some(now),
            at: now,
        },
        Event::JobDone {
            job: job.clone(),
            task_id,
            path: format!("videos/{job}.mp4"),
            bytes: 5_834,
            sha256: format!("{i:064x}"),
            last_frame: None,
            at: now,
        },
    ]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "{:>8} {:>9} {:>12} {:>14} {:>12}",
        "jobs", "events", "write s", "us per event", "load s"
    );
    for jobs in [1_000usize, 10_000, 100_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(outdir::STATE_FILE);
        let journal = Journal::open(&path).expect("open");
        let events: Vec<Event> = (0..jobs).flat_map(job_events).collect();
        // Jobs run concurrently in a real run: 16 writers share the journal (group commit).
        let start = Instant::now();
        let journal = std::sync::Arc::new(journal);
        let chunk = events.len().div_ceil(16);
        let mut writers = Vec::new();
        for part in events.chunks(chunk).map(|c| c.to_vec()) {
            let j = journal.clone();
            writers.push(tokio::spawn(async move {
                for e in &part {
                    j.append(e).await.expect("append");
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        journal.sync().await.expect("sync");
        let write = start.elapsed().as_secs_f64();
        drop(journal);
        let start = Instant::now();
        let loaded = journal::load(&path).expect("load");
        let load = start.elapsed().as_secs_f64();
        assert_eq!(loaded.state.jobs.len(), jobs);
        println!(
            "{jobs:>8} {:>9} {write:>12.3} {:>14.2} {load:>12.3}",
            events.len(),
            write * 1e6 / events.len() as f64
        );
    }
    println!("peak RSS {:.1} MB", peak_rss_mb());
}
