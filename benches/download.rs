//! Benchmark: downloads a 1 GiB synthetic MP4 (ftyp + moov + a streamed mdat that is never
//! allocated) from a local axum server with `download`, then prints time, throughput and the
//! process's peak resident memory (VmHWM).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use vidbatch::download::{DownloadRequest, MediaKind, download, verify_file};

const TOTAL: u64 = 1 << 30;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

fn head() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&24u32.to_be_bytes());
    v.extend_from_slice(b"ftypisom");
    v.extend_from_slice(&0x200u32.to_be_bytes());
    v.extend_from_slice(b"isommp41");
    v.extend_from_slice(&116u32.to_be_bytes());
    v.extend_from_slice(b"moov");
    v.extend_from_slice(&108u32.to_be_bytes());
    v.extend_from_slice(b"mvhd");
    v.extend_from_slice(&[0u8; 100]);
    let mdat_len = TOTAL - v.len() as u64;
    v.extend_from_slice(&u32::try_from(mdat_len).expect("fits in 32 bits").to_be_bytes());
    v.extend_from_slice(b"mdat");
    v
}

async fn serve() -> Response {
    let head = Bytes::from(head());
    let body_left = TOTAL - head.len() as u64;
    let first = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(head) });
    let rest = futures::stream::unfold(body_left, |left| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(ZEROS.len() as u64) as usize;
        Some((Ok(Bytes::from_static(&ZEROS[..n])), left - n as u64))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, TOTAL)
        .body(Body::from_stream(futures::StreamExt::chain(first, rest)))
        .expect("response")
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "VmHWM: unavailable".into())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, Router::new().route("/big.mp4", get(serve))).await;
        });
        let tmp = tempfile::tempdir().expect("tmp");
        let dest = tmp.path().join("videos").join("big.mp4");
        let url = format!("http://{addr}/big.mp4?X-Amz-Signature=x");
        let http = vidbatch::api::http_client(Duration::from_secs(5), None).expect("client");
        println!("before: {}", vm_hwm());
        let req = DownloadRequest::new(&url, &dest, MediaKind::Mp4);
        let started = Instant::now();
        let d = download(&http, &req).await.expect("download");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "download: {} bytes in {secs:.2} s = {:.1} MB/s, sha256 {}",
            d.bytes,
            d.bytes as f64 / 1e6 / secs,
            d.sha256
        );
        println!("after download: {}", vm_hwm());
        let started = Instant::now();
        let v = tokio::task::spawn_blocking(move || verify_file(&dest, MediaKind::Mp4))
            .await
            .expect("join")
            .expect("verify");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(v.sha256, d.sha256);
        println!(
            "verify_file: {secs:.2} s = {:.1} MB/s",
            v.bytes as f64 / 1e6 / secs
        );
        println!("peak: {}", vm_hwm());
    });
}
