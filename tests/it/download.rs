//! Downloads against a real local HTTP server: clean, cut and resumed, Range ignored, refused,
//! invalid, truncated, too big, stalled, and disk errors; plus `verify_file`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use vidbatch::download::{
    DownloadError, DownloadRequest, Downloaded, MediaKind, download, part_path, verify_file,
};

const CLIP: &[u8] = include_bytes!("../fixtures/clip.mp4");
const FRAME: &[u8] = include_bytes!("../fixtures/frame.png");

#[derive(Default)]
struct Server {
    /// (path, Range header) of every request, in order.
    hits: Mutex<Vec<(String, Option<String>)>>,
    cut_calls: AtomicUsize,
    stall_calls: AtomicUsize,
}

impl Server {
    fn ranges(&self, path: &str) -> Vec<Option<String>> {
        self.hits
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_range(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let start = v.strip_prefix("bytes=")?.strip_suffix('-')?;
    start.parse().ok()
}

/// Serves `data` honouring `Range: bytes=N-`.
fn serve(data: &'static [u8], headers: &HeaderMap, content_type: &str) -> Response {
    let len = data.len() as u64;
    let builder = Response::builder().header(header::CONTENT_TYPE, content_type);
    let resp = match parse_range(headers) {
        Some(start) if start >= len => builder
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty()),
        Some(start) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", len - 1))
            .body(Body::from(Bytes::from_static(&data[start as usize..]))),
        None => builder
            .status(StatusCode::OK)
            .body(Body::from(Bytes::from_static(data))),
    };
    resp.expect("response")
}

/// A 200 announcing all of `data` but sending only `sent` bytes, then either failing the
/// connection (`then_stall == false`) or going silent.
fn cut_body(data: &'static [u8], sent: usize, then_stall: bool) -> Response {
    let first = Bytes::from_static(&data[..sent]);
    let stream = futures::stream::unfold(0u8, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, std::io::Error>(first), 1)),
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if then_stall {
                        std::future::pending::<()>().await;
                    }
                    Some((Err(std::io::Error::other("server cut the body")), 2))
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, data.len())
        .body(Body::from_stream(stream))
        .expect("response")
}

async fn handler(
    State(s): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.hits.lock().expect("lock").push((name.clone(), range));
    let half = CLIP.len() / 2;
    match name.as_str() {
        "ok.mp4" => serve(CLIP, &headers, "video/mp4"),
        "ok.png" => serve(FRAME, &headers, "image/png"),
        "cut.mp4" => {
            if s.cut_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                cut_body(CLIP, half, false)
            } else {
                serve(CLIP, &headers, "video/mp4")
            }
        }
        "stall.mp4" => {
            if s.stall_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                cut_body(CLIP, half, true)
            } else {
                serve(CLIP, &headers, "video/mp4")
            }
        }
        "trickle.mp4" => {
            // A first chunk, then one byte every 100 ms, for ever (never idle for long).
            let first = Bytes::from_static(&CLIP[..1000]);
            let stream = futures::stream::unfold(0usize, move |i| {
                let first = first.clone();
                async move {
                    if i == 0 {
                        return Some((Ok::<Bytes, std::io::Error>(first), 1000));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let next = CLIP.get(i..=i).map(Bytes::from_static)?;
                    Some((Ok(next), i + 1))
                }
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, CLIP.len())
                .body(Body::from_stream(stream))
                .expect("response")
        }
        "norange.mp4" => Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(Bytes::from_static(CLIP)))
            .expect("response"),
        "chunked.mp4" => {
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                CLIP.chunks(1000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .expect("response")
        }
        "error.html" => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/html")
            .body(Body::from(
                "<!DOCTYPE html><html><body>Access Denied</body></html>",
            ))
            .expect("response"),
        "truncated.mp4" => Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(Bytes::from_static(&CLIP[..CLIP.len() - 100])))
            .expect("response"),
        other => match other.strip_prefix("status-").and_then(|c| c.parse::<u16>().ok()) {
            Some(code) => Response::builder()
                .status(code)
                .body(Body::from("no"))
                .expect("response"),
            None => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::empty())
                .expect("response"),
        },
    }
}

async fn start() -> (SocketAddr, Arc<Server>) {
    let state = Arc::new(Server::default());
    let app = Router::new()
        .route("/{name}", get(handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, state)
}

fn client() -> reqwest::Client {
    vidbatch::api::http_client(Duration::from_secs(5), None).expect("client")
}

fn url(addr: SocketAddr, name: &str) -> String {
    format!("http://{addr}/{name}?X-Amz-Signature=topsecret")
}

fn dest_in(dir: &Path, name: &str) -> PathBuf {
    dir.join("videos").join(name)
}

async fn fetch(
    addr: SocketAddr,
    name: &str,
    dest: &Path,
    kind: MediaKind,
) -> Result<Downloaded, DownloadError> {
    let u = url(addr, name);
    let req = DownloadRequest::new(&u, dest, kind);
    download(&client(), &req).await
}

fn assert_no_secret(e: &DownloadError) {
    let text = format!("{e} {e:?}");
    assert!(!text.contains("topsecret"), "error leaks the signature: {text}");
}

#[tokio::test]
async fn clean_download_of_mp4_and_png() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "a.mp4");
    let d = fetch(addr, "ok.mp4", &dest, MediaKind::Mp4)
        .await
        .expect("download");
    assert_eq!(d.bytes, CLIP.len() as u64);
    assert_eq!(d.sha256, sha(CLIP));
    assert_eq!(d.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).expect("read"), CLIP);
    assert!(!part_path(&dest).exists());

    let png = dest_in(tmp.path(), "a.last.png");
    let d = fetch(addr, "ok.png", &png, MediaKind::Png).await.expect("png");
    assert_eq!(d.sha256, sha(FRAME));
    assert_eq!(std::fs::read(&png).expect("read"), FRAME);
}

#[tokio::test]
async fn download_without_content_length_is_verified() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "c.mp4");
    let d = fetch(addr, "chunked.mp4", &dest, MediaKind::Mp4)
        .await
        .expect("download");
    assert_eq!(d.sha256, sha(CLIP));
}

#[tokio::test]
async fn cut_body_is_transient_then_resumes_with_range() {
    let (addr, s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "cut.mp4");
    let err = fetch(addr, "cut.mp4", &dest, MediaKind::Mp4).await.unwrap_err();
    assert!(matches!(err, DownloadError::Transient { .. }), "{err:?}");
    assert_no_secret(&err);
    assert!(!dest.exists(), "no half file at dest");
    let kept = std::fs::metadata(part_path(&dest)).expect(".part kept").len();
    assert_eq!(kept, (CLIP.len() / 2) as u64);

    let d = fetch(addr, "cut.mp4", &dest, MediaKind::Mp4)
        .await
        .expect("resume");
    assert_eq!(d.resumed_from, kept);
    assert_eq!(d.bytes, CLIP.len() as u64);
    assert_eq!(d.sha256, sha(CLIP));
    assert_eq!(std::fs::read(&dest).expect("read"), CLIP);
    assert!(!part_path(&dest).exists());
    assert_eq!(s.ranges("cut.mp4"), vec![None, Some(format!("bytes={kept}-"))]);
}

#[tokio::test]
async fn stalled_body_times_out_and_resumes_from_a_fresh_url() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "stall.mp4");
    let u = url(addr, "stall.mp4");
    let mut req = DownloadRequest::new(&u, &dest, MediaKind::Mp4);
    req.idle_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let err = download(&client(), &req).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, DownloadError::Transient { ref reason } if reason.contains("no data")),
        "{err:?}"
    );
    assert!(part_path(&dest).exists());
    // A refreshed URL (another path serving the same object) continues the same .part.
    let d = fetch(addr, "ok.mp4", &dest, MediaKind::Mp4)
        .await
        .expect("resume");
    assert_eq!(d.resumed_from, (CLIP.len() / 2) as u64);
    assert_eq!(d.sha256, sha(CLIP));
}

#[tokio::test]
async fn server_ignoring_range_restarts_cleanly() {
    let (addr, s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "nr.mp4");
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    std::fs::write(part_path(&dest), b"stale bytes from some other attempt").expect("seed part");
    let d = fetch(addr, "norange.mp4", &dest, MediaKind::Mp4)
        .await
        .expect("download");
    assert_eq!(d.resumed_from, 0);
    assert_eq!(d.sha256, sha(CLIP));
    assert_eq!(std::fs::read(&dest).expect("read"), CLIP);
    assert_eq!(s.ranges("norange.mp4"), vec![Some("bytes=35-".to_string())]);
}

#[tokio::test]
async fn complete_part_answered_416_is_finished() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "full.mp4");
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    std::fs::write(part_path(&dest), CLIP).expect("seed part");
    let d = fetch(addr, "ok.mp4", &dest, MediaKind::Mp4)
        .await
        .expect("download");
    assert_eq!(d.resumed_from, CLIP.len() as u64);
    assert_eq!(d.sha256, sha(CLIP));
    assert!(dest.exists() && !part_path(&dest).exists());
}

#[tokio::test]
async fn oversized_part_answered_416_starts_over() {
    let (addr, s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "over.mp4");
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    let mut longer = CLIP.to_vec();
    longer.extend_from_slice(&[0u8; 500]);
    std::fs::write(part_path(&dest), &longer).expect("seed part");
    let d = fetch(addr, "ok.mp4", &dest, MediaKind::Mp4)
        .await
        .expect("download");
    assert_eq!(d.resumed_from, 0);
    assert_eq!(d.sha256, sha(CLIP));
    assert_eq!(
        s.ranges("ok.mp4"),
        vec![Some(format!("bytes={}-", longer.len())), None]
    );
}

#[tokio::test]
async fn refused_statuses() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    for code in [401u16, 403, 404, 410] {
        let dest = dest_in(tmp.path(), &format!("r{code}.mp4"));
        let err = fetch(addr, &format!("status-{code}"), &dest, MediaKind::Mp4)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DownloadError::Refused { status } if status == code),
            "{err:?}"
        );
        assert_no_secret(&err);
        assert!(!dest.exists());
    }
    for code in [500u16, 503, 429] {
        let dest = dest_in(tmp.path(), &format!("t{code}.mp4"));
        let err = fetch(addr, &format!("status-{code}"), &dest, MediaKind::Mp4)
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::Transient { .. }), "{code}: {err:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_transient_without_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let tmp = tempfile::tempdir().expect("tmp");
    let err = fetch(addr, "ok.mp4", &dest_in(tmp.path(), "x.mp4"), MediaKind::Mp4)
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Transient { .. }), "{err:?}");
    assert_no_secret(&err);
}

#[tokio::test]
async fn html_error_page_is_invalid_and_leaves_nothing() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "h.mp4");
    let err = fetch(addr, "error.html", &dest, MediaKind::Mp4)
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Invalid { .. }), "{err:?}");
    assert!(!dest.exists());
    assert!(!part_path(&dest).exists());
    let png = dest_in(tmp.path(), "h.png");
    let err = fetch(addr, "error.html", &png, MediaKind::Png).await.unwrap_err();
    assert!(matches!(err, DownloadError::Invalid { .. }), "{err:?}");
    assert!(!png.exists());
}

#[tokio::test]
async fn truncated_mp4_with_matching_length_is_invalid() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "t.mp4");
    let err = fetch(addr, "truncated.mp4", &dest, MediaKind::Mp4)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownloadError::Invalid { ref reason } if reason.contains("truncated")),
        "{err:?}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[tokio::test]
async fn too_big_is_invalid() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    for name in ["ok.mp4", "chunked.mp4"] {
        let dest = dest_in(tmp.path(), &format!("big-{name}"));
        let u = url(addr, name);
        let mut req = DownloadRequest::new(&u, &dest, MediaKind::Mp4);
        req.max_bytes = 1000;
        let err = download(&client(), &req).await.unwrap_err();
        assert!(
            matches!(err, DownloadError::Invalid { ref reason } if reason.contains("cap")),
            "{name}: {err:?}"
        );
        assert!(!dest.exists() && !part_path(&dest).exists());
    }
}

#[tokio::test]
async fn destination_under_a_file_is_io_naming_the_path() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let blocker = tmp.path().join("videos");
    std::fs::write(&blocker, b"a file where the directory should be").expect("write");
    let dest = blocker.join("x.mp4");
    let err = fetch(addr, "ok.mp4", &dest, MediaKind::Mp4).await.unwrap_err();
    match &err {
        DownloadError::Io { path, .. } => assert_eq!(path, &blocker),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains(&blocker.display().to_string()), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn unwritable_directory_is_io_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ro");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    if std::fs::write(dir.join("probe"), b"x").is_ok() {
        eprintln!("skipping: running with privileges that ignore directory permissions");
        return;
    }
    let dest = dir.join("x.mp4");
    let err = fetch(addr, "ok.mp4", &dest, MediaKind::Mp4).await.unwrap_err();
    match &err {
        DownloadError::Io { path, .. } => assert_eq!(path, &part_path(&dest)),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("x.mp4.part"), "{err}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[test]
fn verify_file_good_truncated_and_corrupted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = tmp.path().join("good.mp4");
    std::fs::write(&good, CLIP).expect("write");
    let d = verify_file(&good, MediaKind::Mp4).expect("good file");
    assert_eq!(d.bytes, CLIP.len() as u64);
    assert_eq!(d.sha256, sha(CLIP));

    let truncated = tmp.path().join("truncated.mp4");
    std::fs::write(&truncated, &CLIP[..CLIP.len() - 1]).expect("write");
    let err = verify_file(&truncated, MediaKind::Mp4).unwrap_err();
    assert!(matches!(err, DownloadError::Invalid { .. }), "{err:?}");

    // Corrupt the size of the second top-level box (moov, at offset 32 in the fixture).
    let mut bad = CLIP.to_vec();
    let first = u32::from_be_bytes([bad[0], bad[1], bad[2], bad[3]]) as usize;
    assert_eq!(&bad[first + 4..first + 8], b"moov");
    bad[first..first + 4].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
    let corrupted = tmp.path().join("corrupted.mp4");
    std::fs::write(&corrupted, &bad).expect("write");
    let err = verify_file(&corrupted, MediaKind::Mp4).unwrap_err();
    assert!(matches!(err, DownloadError::Invalid { .. }), "{err:?}");

    let png = tmp.path().join("f.png");
    std::fs::write(&png, FRAME).expect("write");
    assert_eq!(verify_file(&png, MediaKind::Png).expect("png").sha256, sha(FRAME));
    assert!(matches!(
        verify_file(&png, MediaKind::Mp4),
        Err(DownloadError::Invalid { .. })
    ));

    let missing = verify_file(&tmp.path().join("missing.mp4"), MediaKind::Mp4).unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
}

/// A body that trickles (a byte every 100 ms: never idle long enough for the idle timeout)
/// ends once a throughput window shows it below the floor, keeping the `.part`.
#[tokio::test]
async fn trickling_body_ends_at_the_throughput_floor() {
    let (addr, _s) = start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = dest_in(tmp.path(), "trickle.mp4");
    let u = url(addr, "trickle.mp4");
    let req = DownloadRequest {
        idle_timeout: Duration::from_secs(2),
        min_throughput: 1024,
        throughput_window: Duration::from_millis(800),
        ..DownloadRequest::new(&u, &dest, MediaKind::Mp4)
    };
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), download(&client(), &req))
        .await
        .expect("the trickle ends")
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, DownloadError::Transient { ref reason } if reason.contains("floor")),
        "{err:?}"
    );
    assert!(part_path(&dest).exists());
    // The defaults hold a floor too.
    let d = DownloadRequest::new(&u, &dest, MediaKind::Mp4);
    assert!(d.min_throughput > 0 && !d.throughput_window.is_zero());
}
