//! Batch benchmark: real `vidbatch run` processes against the simulator with time scaled,
//! measured against the limits the provider sets. See BENCHMARKS.md for the method.
//!
//! Run: `cargo bench --bench batch` (all scenarios) or `cargo bench --bench batch -- NAME`
//! with NAME one of `engine`, `chains`, `mixed`, `large`, `rate`, `adapt`, `makespan`, `requests`,
//! `overhead`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vidbatch_sim::{Sim, SimConfig, SimHandle};

/// Writes a manifest of `jobs` distinct jobs (one matrix) and returns its path.
fn manifest(dir: &Path, jobs: usize) -> std::path::PathBuf {
    let values: Vec<String> = (0..jobs).map(|i| i.to_string()).collect();
    let text = format!(
        "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  duration: 5\n  ratio: \"16:9\"\n  resolution: 480p\n\
         jobs:\n  - id: \"b-{{n}}\"\n    prompt: \"benchmark shot {{n}}\"\n    matrix: {{n: [{}]}}\n",
        values.join(", ")
    );
    let path = dir.join("bench.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

struct Outcome {
    /// The run's directory (manifest, out dir), deleted when the outcome is dropped.
    _dir: tempfile::TempDir,
    wall: f64,
    exit: Option<i32>,
    user_cpu: f64,
    sys_cpu: f64,
    max_rss_mb: f64,
    api_requests: u64,
    rate_limited: u64,
    jobs: usize,
    done: u64,
    stderr: String,
}

/// Where runs put their files: `VIDBATCH_BENCH_DIR` when set, else the system's temp dir.
fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("VIDBATCH_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

/// The `vidbatch` binary this benchmark was built with.
const VIDBATCH: &str = env!("CARGO_BIN_EXE_vidbatch");

/// The binaries a side-by-side scenario runs, each with its label: this build, then
/// `VIDBATCH_BENCH_BASELINE` (an earlier build) when set.
fn binaries() -> Vec<(&'static str, std::path::PathBuf)> {
    std::iter::once(("", std::path::PathBuf::from(VIDBATCH)))
        .chain(std::env::var_os("VIDBATCH_BENCH_BASELINE").map(|b| ("baseline ", b.into())))
        .collect()
}

/// Runs `vidbatch run` of `jobs` distinct jobs under GNU time against `sim` and reads its report.
fn run(sim: &SimHandle, jobs: usize, args: &[&str]) -> Outcome {
    run_manifest(sim, |dir| manifest(dir, jobs), args)
}

/// Runs `vidbatch run` of the manifest `write` puts in a fresh directory (and returns the path
/// of) under GNU time against `sim`, and reads its report.
fn run_manifest(sim: &SimHandle, write: impl FnOnce(&Path) -> std::path::PathBuf, args: &[&str]) -> Outcome {
    run_binary(Path::new(VIDBATCH), sim, write, args)
}

/// Runs `bin run` of the manifest `write` puts in a fresh directory under GNU time against
/// `sim`, and reads its report.
fn run_binary(
    bin: &Path,
    sim: &SimHandle,
    write: impl FnOnce(&Path) -> std::path::PathBuf,
    args: &[&str],
) -> Outcome {
    let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
    let m = write(dir.path());
    let out = dir.path().join("out");
    let times = dir.path().join("time.txt");
    let start = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-o")
        .arg(&times)
        .args(["-f", "%U %S %M"])
        .arg(bin)
        .args([
            "run",
            m.to_str().unwrap_or_default(),
            "--out",
            out.to_str().unwrap_or_default(),
        ])
        .args(["--progress", "never"])
        .args(args)
        .env("ALLTOKEN_API_KEY", "bench-key")
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .output()
        .expect("run vidbatch under /usr/bin/time");
    let status = output.status;
    let wall = start.elapsed().as_secs_f64();
    let t = std::fs::read_to_string(&times).unwrap_or_default();
    let nums: Vec<f64> = t
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap_or_default())
            .unwrap_or_default();
    let counters = &report["summary"];
    Outcome {
        _dir: dir,
        wall,
        exit: status.code(),
        user_cpu: nums.first().copied().unwrap_or(0.0),
        sys_cpu: nums.get(1).copied().unwrap_or(0.0),
        max_rss_mb: nums.get(2).copied().unwrap_or(0.0) / 1024.0,
        api_requests: counters["api_requests"].as_u64().unwrap_or(0),
        rate_limited: counters["rate_limited"].as_u64().unwrap_or(0),
        jobs: report["jobs"].as_array().map(|a| a.len()).unwrap_or(0),
        done: counters["by_state"]["done"].as_u64().unwrap_or(0),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// API requests the simulator answered, by endpoint.
fn by_endpoint(sim: &SimHandle) -> String {
    let stats = sim.stats();
    let parts: Vec<String> = stats
        .requests
        .iter()
        .filter(|(e, _)| e.as_str() != "download")
        .map(|(e, s)| format!("{e} {}", s.values().sum::<u64>()))
        .collect();
    parts.join(", ")
}

fn sim_config() -> SimConfig {
    SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.01,
        rpm: 0,
        concurrency: 1000,
        max_queued: 100_000,
        ..SimConfig::default()
    }
}

async fn start(config: SimConfig) -> SimHandle {
    Sim::start(config).await.expect("start simulator")
}

/// The provider of the engine scenarios: 8 processing slots, generations drawn uniformly from
/// 1 to 2 s (50-100 s scaled by 0.02), 600 requests/minute, 120 queued tasks at most.
fn engine_sim(list_urls: bool) -> SimConfig {
    SimConfig {
        gen_time: Some(Duration::from_secs(50)),
        gen_time_max: Some(Duration::from_secs(100)),
        time_scale: 0.02,
        rpm: 600,
        concurrency: 8,
        max_queued: 120,
        list_urls,
        ..SimConfig::default()
    }
}

/// The lower bound of a batch: the larger of (generation seconds ÷ slots) and (jobs × the
/// fewest requests a job takes ÷ the request rate).
fn bound(stats: &vidbatch_sim::SimStats, slots: usize, jobs: usize, per_job: f64, rpm: u32) -> f64 {
    (stats.generation_seconds / slots as f64).max(jobs as f64 * per_job / (f64::from(rpm) / 60.0))
}

/// R1, R2, R4: 150 jobs against 8 slots at 600 requests/minute, given only `--rpm 600
/// --poll-interval 0.2s`; the same batch by a typical script; and with `--concurrency 8`.
async fn engine() {
    let jobs = 150;
    let (mut r1_urls, mut r1_bare) = (None, None);
    for list_urls in [true, false] {
        let sim = start(engine_sim(list_urls)).await;
        let o = run(&sim, jobs, &["--rpm", "600", "--poll-interval", "0.2s"]);
        let stats = sim.stats();
        let per_job = if list_urls { 1.0 } else { 2.0 };
        let b = bound(&stats, 8, jobs, per_job, 600);
        println!(
            "engine    R1 {}: {jobs} jobs in {:.1}s over a bound of {b:.1}s = {:.3}; {:.2} requests per job [{}]; 429s {}; {} done (exit {:?})",
            if list_urls {
                "URLs in lists"
            } else {
                "no URLs in lists"
            },
            o.wall,
            o.wall / b,
            o.api_requests as f64 / jobs as f64,
            by_endpoint(&sim),
            stats.rate_limited,
            o.done,
            o.exit
        );
        if list_urls {
            r1_urls = Some(o.wall);
        } else {
            r1_bare = Some(o.wall);
        }
    }
    // The script against a limiter that forgives refused requests (as the server the issue
    // measured on did: its script finished), then against the default one that charges them.
    for charge_refused in [false, true] {
        let sim = start(SimConfig {
            charge_refused,
            ..engine_sim(false)
        })
        .await;
        let (wall, requests, done) = script(&sim, jobs, SCRIPT_GIVE_UP).await;
        let stats = sim.stats();
        let limiter = if charge_refused {
            "refusals charged"
        } else {
            "refusals forgiven"
        };
        let verdict = if done < jobs {
            format!("the script gave up after {wall:.0}s with {done} of {jobs} done")
        } else {
            format!(
                "vidbatch is {:.2}x faster ({:.2}x with URLs in lists)",
                wall / r1_bare.unwrap_or(f64::NAN),
                wall / r1_urls.unwrap_or(f64::NAN)
            )
        };
        println!(
            "engine    R2 script (16 threads: create, poll every 0.2s, download, sleep 1s on 429), {limiter}: {wall:.1}s, {:.2} requests per job, 429s {}, {done} done; {verdict}",
            requests as f64 / jobs as f64,
            stats.rate_limited,
        );
    }
    let sim = start(engine_sim(true)).await;
    let o = run(
        &sim,
        jobs,
        &["--rpm", "600", "--poll-interval", "0.2s", "--concurrency", "8"],
    );
    let stats = sim.stats();
    let b = bound(&stats, 8, jobs, 1.0, 600);
    let warning = o
        .stderr
        .lines()
        .find(|l| l.contains("holds this run back"))
        .unwrap_or("(no warning)");
    println!(
        "engine    R4 --concurrency 8 (URLs in lists): {:.1}s over a bound of {b:.1}s = {:.3}; {} done (exit {:?}); said: {warning}",
        o.wall,
        o.wall / b,
        o.done,
        o.exit
    );
}

/// Writes a manifest of `small` 480p 5 s drafts followed by `large` 1080p 10 s finals, the
/// order of a sheet that lists drafts first.
fn mixed_manifest(dir: &Path, small: usize, large: usize) -> std::path::PathBuf {
    let mut text =
        String::from("version: 1\ndefaults:\n  model: seedance-1.5-pro\n  ratio: \"16:9\"\njobs:\n");
    for i in 0..small {
        text.push_str(&format!(
            "  - id: draft-{i}\n    prompt: \"draft shot {i}\"\n    duration: 5\n    resolution: 480p\n"
        ));
    }
    for i in 0..large {
        text.push_str(&format!(
            "  - id: final-{i}\n    prompt: \"final shot {i}\"\n    duration: 10\n    resolution: 1080p\n"
        ));
    }
    let path = dir.join("mixed.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// Mixed sizes: 80 drafts (480p, 5 s) listed before 16 finals (1080p, 10 s) against 8 slots,
/// generation times drawn like the real service's (a final takes about 5 times a draft),
/// scaled by 0.01, the rate no limit, URLs in lists. Bound: the generation seconds drawn ÷ 8.
/// Three runs, each followed by the same run of
/// `VIDBATCH_BENCH_BASELINE` when set.
async fn mixed() {
    let bins = binaries();
    for _ in 0..3 {
        for (label, bin) in &bins {
            let sim = start(SimConfig {
                gen_time: None,
                time_scale: 0.01,
                rpm: 6000,
                concurrency: 8,
                max_queued: 120,
                list_urls: true,
                ..SimConfig::default()
            })
            .await;
            let o = run_binary(
                bin,
                &sim,
                |dir| mixed_manifest(dir, 80, 16),
                &["--rpm", "6000", "--poll-interval", "100ms"],
            );
            let stats = sim.stats();
            let b = stats.generation_seconds / 8.0;
            println!(
                "mixed     {label}80 drafts then 16 finals, 8 slots: {:.1}s over a bound of {b:.1}s = {:.3}; {} done (exit {:?})",
                o.wall,
                o.wall / b,
                o.done,
                o.exit
            );
        }
    }
}

/// How long the typical script is given before the benchmark stops it.
const SCRIPT_GIVE_UP: Duration = Duration::from_secs(180);

/// A typical script: 16 threads take jobs in turn; each creates, polls its task every 0.2 s,
/// downloads the video, and sleeps 1 s on any 429. Stopped after `give_up`. Returns wall
/// seconds, API requests and videos downloaded.
async fn script(sim: &SimHandle, jobs: usize, give_up: Duration) -> (f64, u64, usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let base = sim.base_url().to_string();
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (http, next, requests, done, base) = (
            http.clone(),
            next.clone(),
            requests.clone(),
            done.clone(),
            base.clone(),
        );
        workers.spawn(async move {
            let call = |req: reqwest::RequestBuilder| {
                let requests = requests.clone();
                async move {
                    loop {
                        requests.fetch_add(1, Ordering::Relaxed);
                        let r = req.try_clone()?;
                        match r.bearer_auth("script-key").send().await {
                            Ok(resp) if resp.status() == 429 => tokio::time::sleep(Duration::from_secs(1)).await,
                            Ok(resp) => return resp.json::<serde_json::Value>().await.ok(),
                            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                        }
                    }
                }
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return;
                }
                let body = serde_json::json!({"model": "seedance-1.5-pro", "prompt": format!("script shot {i}"), "duration": 5, "ratio": "16:9", "resolution": "480p"});
                let Some(task) = call(http.post(format!("{base}/videos/generations")).json(&body)).await else { continue };
                let Some(id) = task["id"].as_str().map(str::to_string) else { continue };
                let url = loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let Some(t) = call(http.get(format!("{base}/videos/generations/{id}"))).await else { continue };
                    match t["status"].as_str() {
                        Some("completed" | "succeeded") => break t["video_url"].as_str().map(str::to_string),
                        Some("queued" | "processing") => {}
                        _ => break None,
                    }
                };
                if let Some(url) = url
                    && let Ok(resp) = http.get(url).send().await
                    && resp.bytes().await.is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let all_joined = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(give_up, all_joined).await.is_err() {
        workers.abort_all();
    }
    (
        start.elapsed().as_secs_f64(),
        requests.load(Ordering::Relaxed),
        done.load(Ordering::Relaxed),
    )
}

/// Writes a manifest of `chains` chains of `shots` shots (each shot starts from the last frame
/// of the one before) and `single` independent jobs.
fn chain_manifest(dir: &Path, chains: usize, shots: usize, single: usize) -> std::path::PathBuf {
    let mut text = String::from(
        "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  duration: 5\n  ratio: \"16:9\"\n  resolution: 480p\njobs:\n",
    );
    for c in 0..chains {
        for k in 0..shots {
            text.push_str(&format!("  - id: c{c}-{k}\n    prompt: \"chain {c} shot {k}\"\n"));
            if k > 0 {
                text.push_str(&format!("    first_frame: job://c{c}-{}\n", k - 1));
            }
        }
    }
    for i in 0..single {
        text.push_str(&format!("  - id: s-{i}\n    prompt: \"single shot {i}\"\n"));
    }
    let path = dir.join("chains.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// The chain row: 20 chains of 5 shots and 100 independent jobs against 8 slots, generations of
/// 1 to 2 s, 600 requests/minute, URLs in lists. Bound: the larger of the longest chain's
/// generation time (at most 5 × 2 s) and the generation seconds drawn ÷ 8.
async fn chains() {
    let sim = start(engine_sim(true)).await;
    let o = run_manifest(
        &sim,
        |dir| chain_manifest(dir, 20, 5, 100),
        &["--rpm", "600", "--poll-interval", "0.2s"],
    );
    let stats = sim.stats();
    let b = (stats.generation_seconds / 8.0).max(5.0 * 2.0);
    println!(
        "chains    20 chains of 5 and 100 single jobs, 8 slots: {:.1}s over a bound of {b:.1}s = {:.3}; {:.2} requests per job [{}]; 429s {}; {} done (exit {:?})",
        o.wall,
        o.wall / b,
        o.api_requests as f64 / 200.0,
        by_endpoint(&sim),
        stats.rate_limited,
        o.done,
        o.exit
    );
}

/// R3: 1,000 jobs of 60 s against 50 slots, 600 requests/minute and 3 s polls, scaled by 0.05,
/// with URLs in lists, nothing else set.
async fn large() {
    let jobs = 1000;
    let sim = start(SimConfig {
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.05,
        rpm: 12_000,
        concurrency: 50,
        max_queued: 120,
        list_urls: true,
        ..SimConfig::default()
    })
    .await;
    let o = run(&sim, jobs, &["--rpm", "12000", "--poll-interval", "150ms"]);
    let stats = sim.stats();
    let b = bound(&stats, 50, jobs, 1.0, 12_000);
    println!(
        "large     R3 {jobs} jobs, 50 slots, 3s each: {:.1}s over a bound of {b:.1}s = {:.3}; {:.2} requests per job [{}]; 429s {}; {} done (exit {:?})",
        o.wall,
        o.wall / b,
        o.api_requests as f64 / jobs as f64,
        by_endpoint(&sim),
        stats.rate_limited,
        o.done,
        o.exit
    );
}

/// 1. Rate use: requests per second achieved over --rpm, at the simulator's own limit.
async fn rate() {
    let rpm = 1200;
    let sim = start(SimConfig {
        rpm,
        rate_burst: Some(20),
        ..sim_config()
    })
    .await;
    let o = run(
        &sim,
        400,
        &[
            "--rpm",
            "1200",
            "--burst",
            "20",
            "--concurrency",
            "1000",
            "--poll-interval",
            "200ms",
        ],
    );
    let use_ = o.api_requests as f64 / o.wall / (f64::from(rpm) / 60.0);
    println!(
        "rate      rpm {rpm}: {} requests in {:.1}s = {:.2} of --rpm; 429s {} (exit {:?})",
        o.api_requests, o.wall, use_, o.rate_limited, o.exit
    );
}

/// 2. Adaptation: --rpm twice the simulator's limit.
async fn adapt() {
    let limit = 600;
    let sim = start(SimConfig {
        rpm: limit,
        rate_burst: Some(10),
        ..sim_config()
    })
    .await;
    let o = run(
        &sim,
        300,
        &[
            "--rpm",
            "1200",
            "--burst",
            "20",
            "--concurrency",
            "1000",
            "--poll-interval",
            "200ms",
        ],
    );
    let stats = sim.stats();
    let answered: u64 = stats
        .requests
        .iter()
        .filter(|(e, _)| e.as_str() != "download")
        .flat_map(|(_, s)| s.values())
        .sum();
    let accepted = answered - stats.rate_limited;
    let throughput = accepted as f64 / o.wall / (f64::from(limit) / 60.0);
    println!(
        "adapt     limit {limit}, --rpm 1200: throughput {:.2} of the limit; 429s {:.1}% of {} requests (exit {:?})",
        throughput,
        100.0 * stats.rate_limited as f64 / answered.max(1) as f64,
        answered,
        o.exit
    );
}

/// 3. Makespan over its lower bound for 1,000 jobs.
///
/// The provider: 50 tasks processing at once, 60 s each, 600 requests/min, polled every 3 s,
/// all scaled by 0.05 (3 s tasks, 12,000 requests/min, 150 ms polls), so the generation cap
/// sets the floor, as it does for real video models. Then the same batch against a rate limit
/// that binds (0.6 s tasks at 6,000 requests/min), once with list answers carrying no video
/// URL (every job needs its create and one read) and once with URLs in the lists.
async fn makespan() {
    makespan_case("cap-bound", 0.05, 12_000, "150ms", false).await;
    makespan_case("rate-bound", 0.01, 6_000, "100ms", false).await;
    makespan_case("rate-bound, URLs listed", 0.01, 6_000, "100ms", true).await;
}

async fn makespan_case(name: &str, scale: f64, rpm: u32, poll: &str, list_urls: bool) {
    let cap = 50;
    let gen_real = 60.0 * scale;
    let sim = start(SimConfig {
        concurrency: cap,
        time_scale: scale,
        list_urls,
        ..sim_config()
    })
    .await;
    let jobs = 1000;
    let rpm_arg = rpm.to_string();
    let o = run(
        &sim,
        jobs,
        &[
            "--rpm",
            &rpm_arg,
            "--burst",
            "100",
            "--concurrency",
            "100",
            "--poll-interval",
            poll,
        ],
    );
    let bound = (jobs as f64 * gen_real / cap as f64).max(jobs as f64 / (f64::from(rpm) / 60.0));
    println!(
        "makespan  {name}: {jobs} jobs, cap {cap}, {gen_real:.1}s each, --rpm {rpm}: {:.1}s over a bound of {bound:.1}s = {:.3}; {} requests, {:.2} per job (exit {:?})",
        o.wall,
        o.wall / bound,
        o.api_requests,
        o.api_requests as f64 / jobs as f64,
        o.exit
    );
}

/// 4. API requests per finished job with 500 tasks in flight, 60 s jobs, 3 s polls.
///
/// Run in real time, then scaled by 0.05 (3 s jobs, 150 ms polls), where 20 times as many
/// tasks share each whole-second timestamp.
async fn requests() {
    if std::env::var("REQ_DEBUG").is_ok() {
        requests_case(0.1, "300ms", 30_000).await;
        return;
    }
    requests_case(1.0, "3s", 3_000).await;
    requests_case(0.05, "150ms", 60_000).await;
}

async fn requests_case(scale: f64, poll: &str, rpm: u32) {
    let sim = start(SimConfig {
        time_scale: scale,
        ..sim_config()
    })
    .await;
    let rpm_arg = rpm.to_string();
    let o = run(
        &sim,
        500,
        &[
            "--rpm",
            &rpm_arg,
            "--burst",
            "200",
            "--concurrency",
            "500",
            "--poll-interval",
            poll,
        ],
    );
    println!(
        "requests  500 in flight, {:.0}s jobs, {poll} polls, --rpm {rpm}: {} API requests for {} jobs = {:.2} per job [{}] in {:.1}s (exit {:?})",
        60.0 * scale,
        o.api_requests,
        o.jobs,
        o.api_requests as f64 / o.jobs.max(1) as f64,
        by_endpoint(&sim),
        o.wall,
        o.exit
    );
}

/// The machine's CPU time counters (`/proc/stat`, in ticks): total and stolen by the host.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((fields.iter().sum(), *fields.get(7)?))
}

/// 5. Overhead: CPU per job and peak RSS at 10,000 jobs, in three runs.
///
/// The host of a VM takes a varying share of its CPUs, so each run shows the share stolen
/// while it ran. With `VIDBATCH_BENCH_BASELINE` set to another `vidbatch` binary (an earlier
/// build), each run is followed by the same run of that binary, so the two are compared side
/// by side under the same load.
async fn overhead() {
    let jobs = 10_000;
    let bins = binaries();
    // Kept until all runs are done: on ext4 without a journal, files deleted in the last
    // minutes slow the creation of new ones.
    let mut outcomes: Vec<Vec<Outcome>> = bins.iter().map(|_| Vec::new()).collect();
    for _ in 0..3 {
        for ((label, bin), outcomes) in bins.iter().zip(&mut outcomes) {
            overhead_run(label, bin, jobs, outcomes).await;
        }
    }
    for ((label, _), outcomes) in bins.iter().zip(&outcomes) {
        let mut per_job: Vec<f64> = outcomes
            .iter()
            .map(|o| (o.user_cpu + o.sys_cpu) * 1000.0 / jobs as f64)
            .collect();
        per_job.sort_by(f64::total_cmp);
        let rss = outcomes.iter().map(|o| o.max_rss_mb).fold(0.0, f64::max);
        println!(
            "overhead  {label}median {:.3} ms CPU per job (best {:.3}), highest peak RSS {rss:.1} MB",
            per_job[per_job.len() / 2],
            per_job[0]
        );
    }
}

/// One overhead run of `bin` against a fresh simulator; its outcome is kept in `outcomes`.
async fn overhead_run(label: &str, bin: &Path, jobs: usize, outcomes: &mut Vec<Outcome>) {
    let sim = start(SimConfig {
        time_scale: 0.001,
        ..sim_config()
    })
    .await;
    let before = cpu_ticks();
    let o = run_binary(
        bin,
        &sim,
        |dir| manifest(dir, jobs),
        &[
            "--rpm",
            "600000",
            "--burst",
            "500",
            "--concurrency",
            "500",
            "--poll-interval",
            "50ms",
        ],
    );
    let steal = match (before, cpu_ticks()) {
        (Some((t0, s0)), Some((t1, s1))) if t1 > t0 => {
            format!("{:.0} %", (s1 - s0) as f64 * 100.0 / (t1 - t0) as f64)
        }
        _ => "unknown".into(),
    };
    println!(
        "overhead  {label}{jobs} jobs in {:.1}s: {:.3} ms CPU per job ({:.1}s user, {:.1}s sys), peak RSS {:.1} MB, CPU stolen by the host {steal} [{}] (exit {:?})",
        o.wall,
        (o.user_cpu + o.sys_cpu) * 1000.0 / jobs as f64,
        o.user_cpu,
        o.sys_cpu,
        o.max_rss_mb,
        by_endpoint(&sim),
        o.exit
    );
    outcomes.push(o);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wants("engine") {
        engine().await;
    }
    if wants("chains") {
        chains().await;
    }
    if wants("mixed") {
        mixed().await;
    }
    if wants("large") {
        large().await;
    }
    if wants("rate") {
        rate().await;
    }
    if wants("adapt") {
        adapt().await;
    }
    if wants("makespan") {
        makespan().await;
    }
    if wants("requests") {
        requests().await;
    }
    if wants("overhead") {
        overhead().await;
    }
}
