//! Security: the API key never leaks (logs, state, report, file names, the process list),
//! hostile ids and names cannot write outside the out dir, and redirects go only to http(s).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::output;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::process::Command;
use vidbatch::api::http_client;
use vidbatch_sim::{Sim, SimConfig, SimHandle};

const SECRET: &str = "sk-test-SECRET-7f3a9c41d2e8b6";

fn manifest(dir: &Path, jobs: usize) -> PathBuf {
    crate::util::matrix_manifest(dir, "manifest.yaml", "sec", "security shot", jobs, "")
}

fn vidbatch(sim: &SimHandle, args: &[&str]) -> Command {
    let mut cmd = crate::util::bin();
    cmd.args(args)
        .env("ALLTOKEN_BASE_URL", sim.base_url())
        .env("VIDBATCH_POLL_INTERVAL", "40ms")
        .env("VIDBATCH_RPM", "60000")
        .env("VIDBATCH_BURST", "50")
        .env("VIDBATCH_PROGRESS", "never")
        .env("VIDBATCH_RETRY_BASE_DELAY", "20ms")
        .env_remove("ALLTOKEN_API_KEY")
        .env_remove("VIDBATCH_OUT")
        .kill_on_drop(true);
    cmd
}

fn fast_sim() -> SimConfig {
    SimConfig {
        time_scale: 0.002,
        rpm: 0,
        // Some 5xx, drops and failures, so error paths get logged too.
        error_rate: 0.1,
        drop_rate: 0.05,
        fail_rate: 0.2,
        short_url_rate: 0.2,
        ..SimConfig::default()
    }
}

/// Every file under `dir`, with its contents.
fn walk(dir: &Path, found: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found);
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            found.push((path, bytes));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    assert!(!contains(bytes, SECRET), "the API key appears in {what}");
    assert!(
        !contains(bytes, "7f3a9c41d2e8b6"),
        "part of the API key appears in {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_appears_in_no_output_file_or_log() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        api_keys: vec![SECRET.into()],
        ..fast_sim()
    })
    .await;
    let m = manifest(dir.path(), 8);
    let out = dir.path().join("out");
    for format in ["json", "text"] {
        let mut cmd = vidbatch(
            &sim,
            &[
                "run",
                m.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "-vvv",
                "--log-format",
                format,
                "--retry-failed",
            ],
        );
        cmd.env("ALLTOKEN_API_KEY", SECRET);
        let o = output(cmd).await;
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stderr.is_empty(), "-vvv logs something");
        assert_no_secret(&format!("stdout ({format})"), &o.stdout);
        assert_no_secret(&format!("stderr ({format})"), &o.stderr);
    }
    // Every other command that takes the key.
    for args in [
        vec!["models"],
        vec!["status", "--out", out.to_str().unwrap()],
        vec!["report", "--out", out.to_str().unwrap()],
        vec!["cancel", "--out", out.to_str().unwrap()],
    ] {
        let mut cmd = vidbatch(&sim, &args);
        cmd.env("ALLTOKEN_API_KEY", SECRET)
            .args(["-vvv", "--log-format", "json"]);
        let o = output(cmd).await;
        assert_no_secret(&format!("{args:?} stdout"), &o.stdout);
        assert_no_secret(&format!("{args:?} stderr"), &o.stderr);
    }
    let mut files = Vec::new();
    walk(&out, &mut files);
    assert!(files.iter().any(|(p, _)| p.ends_with("state.jsonl")));
    assert!(files.iter().any(|(p, _)| p.ends_with("report.json")));
    for (path, bytes) in &files {
        assert_no_secret(&path.display().to_string(), bytes);
        assert_no_secret("a file name", path.to_string_lossy().as_bytes());
    }

    // A wrong key: the error says so without quoting it.
    let mut cmd = vidbatch(&sim, &["models", "-vvv"]);
    cmd.env("ALLTOKEN_API_KEY", "sk-test-WRONG-0000");
    let o = output(cmd).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(!contains(&o.stderr, "sk-test-WRONG-0000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_can_come_from_a_file_and_never_shows_in_the_process_list() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        api_keys: vec![SECRET.into()],
        gen_time: Some(Duration::from_secs(60)),
        time_scale: 0.01,
        rpm: 0,
        ..SimConfig::default()
    })
    .await;
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap();
    let m = manifest(dir.path(), 3);
    let out = dir.path().join("out");
    let child = vidbatch(
        &sim,
        &[
            "run",
            m.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--api-key-file",
            key_file.to_str().unwrap(),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id().unwrap();
    // While it runs, its command line and environment as others see them.
    crate::util::wait_for_creates(&sim, 1, Duration::from_secs(30)).await;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert_no_secret("the process's command line", &cmdline);
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output();
    if let Ok(ps) = ps {
        assert_no_secret("ps output", &ps.stdout);
    }
    let o = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_no_secret("stderr", &o.stderr);
    assert_eq!(sim.stats().tasks_created, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_names_are_refused_and_nothing_is_written_outside_the_out_dir() {
    let sim = Sim::start(fast_sim()).await.unwrap();
    for (i, (field, value)) in [
        ("id", "../../etc/x"),
        ("id", "/etc/passwd"),
        ("id", "a/b"),
        ("id", "..\\\\..\\\\x"),
        ("id", "CON"),
        ("id", "nul"),
        ("id", ".."),
        ("id", "."),
        ("id", ""),
        ("id", "x\\u0000y"),
        ("name", "../escape"),
        ("name", "/tmp/vidbatch-escape"),
        ("name", "sub/dir"),
        ("name", "COM1"),
        ("name", "{v}"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let work = root.join("a/b/c");
        std::fs::create_dir_all(&work).unwrap();
        let m = work.join("m.yaml");
        let extra = if value == "{v}" {
            "    matrix: {v: [\"../../../x\"]}\n"
        } else {
            ""
        };
        std::fs::write(
            &m,
            format!(
                "version: 1\ndefaults: {{model: seedance-1.5-pro, duration: 5}}\njobs:\n  \
                 - {field}: \"{value}\"\n    prompt: hostile {i}\n{extra}"
            ),
        )
        .unwrap();
        let out = work.join("out");
        let o = output(vidbatch(
            &sim,
            &["run", m.to_str().unwrap(), "--out", out.to_str().unwrap()],
        ))
        .await;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{field} {value:?} was not refused: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        let mut files = Vec::new();
        walk(&root, &mut files);
        let outside: Vec<_> = files
            .iter()
            .map(|(p, _)| p)
            .filter(|p| !p.starts_with(&out) && **p != m)
            .collect();
        assert!(outside.is_empty(), "{field} {value:?} wrote {outside:?}");
    }
    assert!(!Path::new("/tmp/vidbatch-escape.mp4").exists());
    assert_eq!(sim.stats().tasks_created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_only_to_http() {
    let app = Router::new()
        .route(
            "/file",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "file:///etc/passwd")]).into_response() }),
        )
        .route(
            "/ftp",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "ftp://127.0.0.1/x")]).into_response() }),
        )
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response() }),
        )
        .route(
            "/http",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response() }),
        )
        .route("/ok", get(|| async { "fine" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = http_client(Duration::from_secs(5), Some(Duration::from_secs(5))).unwrap();
    for path in ["file", "ftp"] {
        let r = http.get(format!("http://{addr}/{path}")).send().await;
        // Either an error, or the 302 itself handed back unfollowed: never the target.
        match r {
            Ok(resp) => {
                assert_eq!(resp.status(), StatusCode::FOUND, "{path}");
                let body = resp.text().await.unwrap_or_default();
                assert!(!body.contains("root:"), "{path}: followed to {body}");
            }
            Err(e) => assert!(e.is_redirect() || e.is_builder() || e.is_request(), "{path}: {e}"),
        }
    }
    let r = http.get(format!("http://{addr}/loop")).send().await;
    assert!(r.is_err_and(|e| e.is_redirect()), "a redirect loop is cut");
    let r = http.get(format!("http://{addr}/http")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "fine");

    // And the downloader, given such a URL, neither follows it nor writes outside its dest.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("v.mp4");
    let url = format!("http://{addr}/file");
    let result = vidbatch::download::download(
        &http,
        &vidbatch::download::DownloadRequest::new(&url, &dest, vidbatch::download::MediaKind::Mp4),
    )
    .await;
    assert!(result.is_err());
    assert!(!dest.exists());
}

/// Panics would print their message: none of the code that holds the key may panic on input.
/// The key is only ever in `ApiKey` (whose `Debug` is redacted) and in a sensitive header.
#[test]
fn the_key_is_held_only_where_it_cannot_be_printed() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/client.rs")).unwrap();
    let uses: Vec<&str> = src
        .lines()
        .filter(|l| l.contains(".expose()") && !l.contains("Scrubber::new("))
        .collect();
    // The bearer header (marked sensitive) and the idempotency header, besides the scrubber
    // (which looks for the key in server text and never prints it): nowhere else.
    assert!(uses.len() <= 3, "{uses:#?}");
    let scrubber = vidbatch::api::Scrubber::new(SECRET);
    assert!(!format!("{scrubber:?}").contains("SECRET"));
    assert!(src.contains("auth.set_sensitive(true)"));
    let cli = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/cli/mod.rs")).unwrap();
    assert!(
        cli.contains("hide_env_values = true"),
        "clap would print the key's env value in --help"
    );
    let key = vidbatch::api::ApiKey::new(SECRET);
    assert!(!format!("{key:?}").contains("SECRET"));
}

/// A proxy's 502 page that echoes the request headers (the key among them) reaches no file,
/// report or log: server text is scrubbed where it enters vidbatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_page_echoing_the_key_leaves_it_in_no_state_report_junit_summary_or_stderr() {
    let (sim, dir) = crate::util::sim_and_dir(SimConfig {
        api_keys: vec![SECRET.into()],
        time_scale: 0.002,
        rpm: 0,
        proxy_echo_rate: 0.35,
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    let m = manifest(dir.path(), 12);
    let out = dir.path().join("out");
    let junit = dir.path().join("junit.xml");
    let summary = dir.path().join("summary.md");
    for format in ["text", "json"] {
        let mut cmd = vidbatch(
            &sim,
            &[
                "run",
                m.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--junit",
                junit.to_str().unwrap(),
                "--summary-md",
                summary.to_str().unwrap(),
                "--max-retries",
                "1",
                "--retry-failed",
                "-vv",
                "--log-format",
                format,
            ],
        );
        cmd.env("ALLTOKEN_API_KEY", SECRET)
            .env_remove("GITHUB_STEP_SUMMARY");
        let o = output(cmd).await;
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_no_secret(&format!("stdout ({format})"), &o.stdout);
        assert_no_secret(&format!("stderr ({format})"), &o.stderr);
    }
    assert!(sim.stats().faults.proxy_echoes > 0, "the proxy page was sent");
    let state = std::fs::read(out.join("state.jsonl")).unwrap();
    assert!(
        contains(&state, "502"),
        "the proxy's answers are journaled (else this test proves nothing)"
    );
    for (what, path) in [
        ("state.jsonl", out.join("state.jsonl")),
        ("report.json", out.join("report.json")),
        ("the JUnit file", junit.clone()),
        ("the summary", summary.clone()),
    ] {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_no_secret(what, &bytes);
    }
    let mut files = Vec::new();
    walk(&out, &mut files);
    for (path, bytes) in &files {
        assert_no_secret(&path.display().to_string(), bytes);
    }
}
