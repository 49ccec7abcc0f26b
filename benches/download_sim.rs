//! Benchmark: generates one task on the in-process simulator with `video_size` 1 GiB, then
//! downloads its video through `vidbatch::download::download` (streamed to disk, sha256 on
//! the way, MP4 boxes checked) and prints time, throughput and the process's peak resident
//! memory (VmHWM: the simulator serving the file and the client fetching it, together).
//!
//! Run: `cargo bench --bench download_sim` (add `--profile dev` to reuse debug artifacts).

use std::time::{Duration, Instant};

use vidbatch::api::{ApiKey, Client, ClientConfig, CreateRequest, IdempotencyKey, TaskStatus};
use vidbatch::download::{DownloadRequest, MediaKind, download, verify_file};
use vidbatch_sim::{Sim, SimConfig};

const SIZE: u64 = 1 << 30;

fn vm(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unavailable".into())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = Sim::start(SimConfig {
            video_size: Some(SIZE),
            time_scale: 0.001,
            gen_time: Some(Duration::from_secs(30)),
            rpm: 0,
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let client =
            Client::new(&ClientConfig::new(sim.base_url(), ApiKey::new("bench-key"))).expect("client");
        let request = CreateRequest {
            model: "seedance-1.5-pro".into(),
            prompt: "a 1 GiB benchmark clip".into(),
            duration: Some(5),
            resolution: Some(vidbatch::api::Resolution::P480),
            ratio: Some(vidbatch::api::Ratio::Landscape),
            ..Default::default()
        };
        let task = client
            .create(&request, &IdempotencyKey::new("bench-1gib"))
            .await
            .expect("create");
        let task = loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let t = client.get(&task.id).await.expect("get");
            if t.status == TaskStatus::Completed {
                break t;
            }
        };
        let url = task.video_url.expect("video_url");
        let tmp = tempfile::tempdir().expect("tmp");
        let dest = tmp.path().join("videos").join("big.mp4");
        let http = vidbatch::api::http_client(Duration::from_secs(5), None).expect("http client");
        println!("before: VmHWM {} (VmRSS {})", vm("VmHWM:"), vm("VmRSS:"));
        let req = DownloadRequest {
            max_bytes: SIZE * 2,
            ..DownloadRequest::new(&url, &dest, MediaKind::Mp4)
        };
        let started = Instant::now();
        let d = download(&http, &req).await.expect("download");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(d.bytes, SIZE);
        println!(
            "download from the simulator: {} bytes in {secs:.2} s = {:.1} MB/s, sha256 {}",
            d.bytes,
            d.bytes as f64 / 1e6 / secs,
            d.sha256
        );
        println!("after download: VmHWM {}", vm("VmHWM:"));
        let v = tokio::task::spawn_blocking(move || verify_file(&dest, MediaKind::Mp4))
            .await
            .expect("join")
            .expect("verify");
        assert_eq!(v.sha256, d.sha256);
        let peak = vm("VmHWM:");
        println!("peak (download + verify): VmHWM {peak}");
        let kb: u64 = peak.trim_end_matches(" kB").parse().unwrap_or(0);
        assert!(kb < 50 * 1024, "peak RSS {peak} is not under 50 MB");
    });
}
