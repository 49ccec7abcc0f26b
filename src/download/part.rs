//! The `.part` file beside a destination: made or resumed (its bytes re-read and re-hashed),
//! filled, kept after a cut, removed.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;

/// The `.part` path of a destination: the same name with `.part` appended, same directory.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub(super) async fn remove_part(part: &Path) -> Result<(), DownloadError> {
    match tokio::fs::remove_file(part).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("delete", part)(e)),
    }
}

/// The open `.part`, positioned at its end, with the hash of what it holds.
pub(super) struct Part {
    pub(super) file: std::fs::File,
    pub(super) hasher: Sha256,
    pub(super) have: u64,
}

/// One blocking hop: open (creating the directory only when missing) the `.part`, keep at
/// most `max` bytes of it (none with `from_zero`), hash them, and seek to the end.
pub(super) fn prepare_part(part: &Path, from_zero: bool, max: u64) -> Result<Part, DownloadError> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(part)
    };
    let mut file = match open() {
        Ok(f) => f,
        // Missing directory (or a file in its place): create_dir_all names the directory.
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            let dir = parent_dir(part);
            std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
            open().map_err(io_err("open", part))?
        }
        Err(e) => return Err(io_err("open", part)(e)),
    };
    let len = file.metadata().map_err(io_err("inspect", part))?.len();
    let keep = if from_zero || len > max { 0 } else { len };
    let mut hasher = Sha256::new();
    let kept = if keep > 0 {
        hash_all(&mut (&mut file).take(keep), &mut hasher, part)?
    } else {
        0
    };
    if kept != len {
        file.set_len(kept).map_err(io_err("truncate", part))?;
    }
    if kept > 0 {
        file.seek(SeekFrom::Start(kept)).map_err(io_err("seek", part))?;
    }
    Ok(Part {
        file,
        hasher,
        have: kept,
    })
}

/// Feeds everything `r` holds to `hasher`; returns how many bytes that was.
pub(super) fn hash_all(r: &mut impl Read, hasher: &mut Sha256, path: &Path) -> Result<u64, DownloadError> {
    let mut buf = vec![0u8; IO_BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", path)(e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Runs file work on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DownloadError> + Send + 'static,
) -> Result<T, DownloadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| transient(format!("file task failed: {e}")))?
}

/// Writes `buf` out in a blocking hop, giving back the file and the (emptied) buffer.
pub(super) async fn spill(
    mut file: std::fs::File,
    mut buf: Vec<u8>,
    part: &Path,
) -> Result<(std::fs::File, Vec<u8>), DownloadError> {
    use std::io::Write;
    let path = part.to_path_buf();
    blocking(move || {
        file.write_all(&buf).map_err(io_err("write", &path))?;
        buf.clear();
        Ok((file, buf))
    })
    .await
}

/// Flushes and syncs what arrived so that a later call can resume from it.
pub(super) async fn keep_part(file: std::fs::File, buf: Vec<u8>, part: &Path) -> Result<(), DownloadError> {
    use std::io::Write;
    let path = part.to_path_buf();
    blocking(move || {
        let mut file = file;
        file.write_all(&buf).map_err(io_err("write", &path))?;
        file.sync_data().map_err(io_err("sync", &path))
    })
    .await
}
