//! Downloads of finished videos and frames: streamed to a `.part` file beside the destination,
//! resumed with `Range`, hashed while written, verified, then renamed into place atomically.
//!
//! The main entry points are [`download`] and [`verify_file`]. A file only ever appears at its
//! final path complete and verified; what arrived before a cut stays in `NAME.part`
//! and the next call resumes from it. Resume never trusts memory: the bytes already in the
//! `.part` file are re-read and re-hashed.
//!
//! Use a client made by [`crate::api::http_client`] *without* a total timeout: a whole-request
//! timeout would cut large files. Two bounds guard slow servers instead:
//! [`DownloadRequest::idle_timeout`] (no byte at all for that long) and
//! [`DownloadRequest::min_throughput`] (fewer bytes than that per second, averaged over each
//! [`DownloadRequest::throughput_window`]: a body that trickles a byte every few seconds ends
//! after one window). Either ends the attempt as transient, keeping the `.part` file.

pub(crate) mod media;
mod part;

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_RANGE, RANGE};
use sha2::{Digest, Sha256};

use crate::api::{describe, is_refused_url};
use crate::hex::hex;

/// Default time allowed without a single byte arriving before a download is abandoned.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default slowest accepted body: 16 KiB/s, averaged over [`DEFAULT_THROUGHPUT_WINDOW`].
pub const DEFAULT_MIN_THROUGHPUT: u64 = 16 * 1024;

/// Default span over which throughput is averaged; the first check comes one window in.
pub const DEFAULT_THROUGHPUT_WINDOW: Duration = Duration::from_secs(30);

/// Size of the buffers used to write, re-hash and verify files.
const IO_BUF: usize = 256 * 1024;

pub use media::MediaKind;
pub use part::part_path;
use part::*;

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct DownloadRequest<'a> {
    /// The (presigned) URL. Never shown in errors; logs show it without its query.
    pub url: &'a str,
    /// The final path, e.g. `OUT/videos/NAME.mp4`; bytes arrive in `NAME.mp4.part` first.
    pub dest: &'a Path,
    /// What the bytes must be.
    pub kind: MediaKind,
    /// Largest acceptable file; more is [`DownloadError::Invalid`].
    pub max_bytes: u64,
    /// Longest wait for the answer or for the next bytes of the body.
    pub idle_timeout: Duration,
    /// Slowest accepted body, in bytes per second averaged over each
    /// [`DownloadRequest::throughput_window`]; 0 = no floor.
    pub min_throughput: u64,
    /// Span over which [`DownloadRequest::min_throughput`] is averaged.
    pub throughput_window: Duration,
}

impl<'a> DownloadRequest<'a> {
    /// A request with the kind's default size cap, [`DEFAULT_IDLE_TIMEOUT`],
    /// [`DEFAULT_MIN_THROUGHPUT`] and [`DEFAULT_THROUGHPUT_WINDOW`].
    pub fn new(url: &'a str, dest: &'a Path, kind: MediaKind) -> DownloadRequest<'a> {
        DownloadRequest {
            url,
            dest,
            kind,
            max_bytes: kind.default_max_bytes(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            min_throughput: DEFAULT_MIN_THROUGHPUT,
            throughput_window: DEFAULT_THROUGHPUT_WINDOW,
        }
    }
}

/// A complete, verified file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Length of the file.
    pub bytes: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    /// How many bytes were already in the `.part` file and kept (0 for a fresh download).
    pub resumed_from: u64,
}

/// Why a download or a verification failed. No variant carries the URL.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The URL answered 401/403/404/410: it expired or was revoked. Re-read the task for a
    /// fresh URL. The `.part` file is kept.
    #[error("download URL refused with HTTP {status} (expired or revoked: fetch a fresh URL)")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// Connection error, timeout, 5xx or other unexpected status, or a body cut short: try
    /// again later; the `.part` file keeps what arrived.
    #[error("download interrupted: {reason}")]
    Transient {
        /// What happened, without the URL.
        reason: String,
    },
    /// The bytes are not a valid file of the expected kind, or too big, or more than the
    /// server promised. The `.part` file has been deleted: try again from zero.
    #[error("downloaded file is invalid: {reason}")]
    Invalid {
        /// What is wrong with the bytes.
        reason: String,
    },
    /// A local disk error (full disk, read-only or missing directory, permissions).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"write"`.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl DownloadError {
    /// Short class name, for logs and reports.
    pub fn class(&self) -> &'static str {
        match self {
            DownloadError::Refused { .. } => "refused",
            DownloadError::Transient { .. } => "transient",
            DownloadError::Invalid { .. } => "invalid",
            DownloadError::Io { .. } => "io",
        }
    }

    /// Whether this is a disk error saying the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DownloadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DownloadError + 'a {
    move |source| DownloadError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn transient(reason: impl Into<String>) -> DownloadError {
    DownloadError::Transient {
        reason: reason.into(),
    }
}

fn invalid(reason: impl Into<String>) -> DownloadError {
    DownloadError::Invalid {
        reason: reason.into(),
    }
}

/// The URL without query, fragment or credentials: safe for logs (a presigned URL's signature
/// lives in its query).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => {
            let end = url.find(['?', '#']).unwrap_or(url.len());
            let head = &url[..end];
            // Drop anything that looks like credentials before the host.
            match (head.find("://"), head.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &head[..s + 3], &head[at + 1..]),
                _ => head.to_string(),
            }
        }
    }
}

/// What one HTTP exchange led to.
enum Step {
    Done(Downloaded),
    /// The `.part` cannot be continued (416, or a 206 for another range): start from zero.
    Restart(&'static str),
}

/// Puts every download under `dir` on disk, renames included: on Linux one `syncfs` of the
/// file system `dir` is on, elsewhere each file and directory under `dir`.
pub fn sync_downloads(dir: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::fs::syncfs(std::fs::File::open(dir)?)?;
    #[cfg(not(target_os = "linux"))]
    {
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d)? {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    std::fs::File::open(&path)?.sync_all()?;
                }
            }
            std::fs::File::open(&d)?.sync_all()?;
        }
    }
    Ok(())
}

/// Downloads `req.url` to `req.dest`, resuming a `.part` file left by an earlier cut.
///
/// On success the file at `dest` is complete, of the expected kind and its SHA-256 is
/// returned; [`sync_downloads`] puts it on disk. On any error nothing is written at `dest`.
pub async fn download(
    http: &reqwest::Client,
    req: &DownloadRequest<'_>,
) -> Result<Downloaded, DownloadError> {
    let part = part_path(req.dest);
    let mut from_zero = false;
    let mut why = "";
    // A restart happens at most once per call: a server that refuses a range request without
    // Range either is not one we can talk to.
    for _ in 0..2 {
        let result = attempt(http, req, &part, from_zero).await;
        match result {
            Ok(Step::Done(d)) => {
                tracing::debug!(
                    url = %redact_url(req.url),
                    dest = %req.dest.display(),
                    bytes = d.bytes,
                    resumed_from = d.resumed_from,
                    "downloaded"
                );
                return Ok(d);
            }
            Ok(Step::Restart(reason)) => {
                tracing::debug!(url = %redact_url(req.url), reason, "restarting download from zero");
                remove_part(&part).await?;
                from_zero = true;
                why = reason;
            }
            Err(e) => {
                if matches!(e, DownloadError::Invalid { .. }) {
                    remove_part(&part).await?;
                }
                tracing::debug!(url = %redact_url(req.url), error = %e, "download failed");
                return Err(e);
            }
        }
    }
    Err(transient(format!(
        "server cannot serve this file from the start: {why}"
    )))
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`), or `bytes */TOTAL` for a 416.
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    range: Option<(u64, u64)>,
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-')?;
            let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
            if b < a {
                return None;
            }
            Some((a, b))
        }
    };
    Some(ContentRange { range, total })
}

fn content_range(resp: &reqwest::Response) -> Option<ContentRange> {
    resp.headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
}

async fn attempt(
    http: &reqwest::Client,
    req: &DownloadRequest<'_>,
    part: &Path,
    from_zero: bool,
) -> Result<Step, DownloadError> {
    let path = part.to_path_buf();
    let max = req.max_bytes;
    let Part {
        mut file,
        mut hasher,
        have,
    } = blocking(move || prepare_part(&path, from_zero, max)).await?;
    let mut builder = http.get(req.url).header(ACCEPT_ENCODING, "identity");
    if have > 0 {
        builder = builder.header(RANGE, format!("bytes={have}-"));
    }
    let idle = req.idle_timeout;
    let mut resp = match tokio::time::timeout(idle, builder.send()).await {
        Err(_) => {
            return Err(transient(format!(
                "no answer within {}",
                humantime::format_duration(idle)
            )));
        }
        Ok(Err(e)) => return Err(transient(describe(&e))),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if is_refused_url(status) {
        return Err(DownloadError::Refused {
            status: status.as_u16(),
        });
    }
    // Where this body starts in the file, and the file's total length when announced.
    let (offset, total) = match status {
        StatusCode::OK => (0, resp.content_length()),
        StatusCode::PARTIAL_CONTENT => match content_range(&resp) {
            Some(ContentRange {
                range: Some((start, _)),
                total,
            }) if start == have => (have, total),
            _ => return Ok(Step::Restart("206 answer for another range than asked")),
        },
        // The .part may already hold the whole file (cut right after the last byte).
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => match content_range(&resp) {
            Some(ContentRange {
                range: None,
                total: Some(t),
            }) if t == have => {
                drop(resp);
                return finish(req, part, file, Vec::new(), hasher, have, have)
                    .await
                    .map(Step::Done);
            }
            _ => return Ok(Step::Restart("416: the .part does not match the file")),
        },
        s => {
            return Err(transient(format!("unexpected HTTP status {}", s.as_u16())));
        }
    };
    if let Some(t) = total
        && t > req.max_bytes
    {
        return Err(invalid(format!(
            "file of {t} bytes exceeds the {}-byte cap",
            req.max_bytes
        )));
    }
    if offset == 0 && have > 0 {
        // The server sent the whole file: start the .part over.
        let path = part.to_path_buf();
        file = blocking(move || {
            file.set_len(0).map_err(io_err("truncate", &path))?;
            file.seek(SeekFrom::Start(0)).map_err(io_err("seek", &path))?;
            Ok(file)
        })
        .await?;
        hasher = Sha256::new();
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut written = offset;
    // Throughput floor: bytes since the window opened, checked as each chunk arrives.
    let window = req.throughput_window.max(Duration::from_millis(1));
    let floor = (req.min_throughput as f64 * window.as_secs_f64()) as u64;
    let mut window_start = tokio::time::Instant::now();
    let mut window_bytes: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(idle, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                keep_part(file, buf, part).await?;
                return Err(transient(format!(
                    "body cut after {written} bytes{}: {}",
                    total.map(|t| format!(" of {t}")).unwrap_or_default(),
                    describe(&e)
                )));
            }
            Err(_) => {
                keep_part(file, buf, part).await?;
                return Err(transient(format!(
                    "no data for {} after {written} bytes",
                    humantime::format_duration(idle)
                )));
            }
        };
        window_bytes += chunk.len() as u64;
        if req.min_throughput > 0 && window_start.elapsed() >= window {
            if window_bytes < floor {
                // The .part keeps what was written before this chunk; the next attempt resumes.
                keep_part(file, buf, part).await?;
                return Err(transient(format!(
                    "slower than the {} bytes/s floor: {window_bytes} bytes in {} (after {written} bytes)",
                    req.min_throughput,
                    humantime::format_duration(Duration::from_millis(
                        window_start.elapsed().as_millis().min(u128::from(u64::MAX)) as u64
                    ))
                )));
            }
            window_start = tokio::time::Instant::now();
            window_bytes = 0;
        }
        let next = written + chunk.len() as u64;
        if next > req.max_bytes {
            return Err(invalid(format!("file exceeds the {}-byte cap", req.max_bytes)));
        }
        if let Some(t) = total
            && next > t
        {
            return Err(invalid(format!(
                "server sent more than the {t} bytes it announced"
            )));
        }
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
        written = next;
        if buf.len() >= IO_BUF {
            (file, buf) = spill(file, buf, part).await?;
        }
    }
    if let Some(t) = total
        && written < t
    {
        keep_part(file, buf, part).await?;
        return Err(transient(format!("body ended after {written} of {t} bytes")));
    }
    finish(req, part, file, buf, hasher, written, offset)
        .await
        .map(Step::Done)
}

/// One blocking hop: writes the tail, verifies (on the same descriptor) and renames the `.part`
/// into place.
async fn finish(
    req: &DownloadRequest<'_>,
    part: &Path,
    file: std::fs::File,
    tail: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
    resumed_from: u64,
) -> Result<Downloaded, DownloadError> {
    use std::io::Write;
    let kind = req.kind;
    let part = part.to_path_buf();
    let dest = req.dest.to_path_buf();
    blocking(move || {
        let mut file = file;
        file.write_all(&tail).map_err(io_err("write", &part))?;
        check_format_open(&mut file, bytes, &part, kind)?;
        drop(file);
        // Not synced file by file: the run calls [`sync_downloads`] once at its end. A power
        // cut before that can lose the bytes or the rename; the next run verifies every file
        // it finds and fetches a bad one again from its task, which costs no tokens.
        std::fs::rename(&part, &dest).map_err(io_err("rename into place", &dest))
    })
    .await?;
    Ok(Downloaded {
        bytes,
        sha256: hex(&hasher.finalize()),
        resumed_from,
    })
}

/// [`check_format`] on an open file of `len` bytes; small files are read whole, once.
fn check_format_open(
    file: &mut std::fs::File,
    len: u64,
    path: &Path,
    kind: MediaKind,
) -> Result<(), DownloadError> {
    file.seek(SeekFrom::Start(0)).map_err(io_err("seek", path))?;
    if len <= IO_BUF as u64 {
        let mut bytes = Vec::with_capacity(len as usize);
        (&mut *file)
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(io_err("read", path))?;
        let mut cur = io::Cursor::new(bytes);
        return check_format_reader(&mut cur, len, path, kind);
    }
    check_format_reader(file, len, path, kind)
}

fn check_format_reader<R: Read + Seek>(
    r: &mut R,
    len: u64,
    path: &Path,
    kind: MediaKind,
) -> Result<(), DownloadError> {
    match media::check(r, len, kind) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(m)) => Err(invalid(format!("not a valid {}: {m}", kind.name()))),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Checks that the file at `path` is a well-formed file of `kind`, reading only its structure.
fn check_format(path: &Path, kind: MediaKind) -> Result<(), DownloadError> {
    let mut file = std::fs::File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("inspect", path))?.len();
    check_format_reader(&mut file, len, path, kind)
}

/// Re-verifies a finished file: checks its structure as `kind` and hashes it, reading with a
/// small buffer. `resumed_from` of the answer is 0.
pub fn verify_file(path: &Path, kind: MediaKind) -> Result<Downloaded, DownloadError> {
    check_format(path, kind)?;
    let mut file = std::fs::File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let bytes = hash_all(&mut file, &mut hasher, path)?;
    Ok(Downloaded {
        bytes,
        sha256: hex(&hasher.finalize()),
        resumed_from: 0,
    })
}

#[cfg(test)]
mod tests;
