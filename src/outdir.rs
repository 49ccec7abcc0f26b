//! The out dir: the one place that names its files (the state, the lock, the videos and last
//! frames, the reports), takes its lock, and writes its files atomically.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use std::path::PathBuf;

/// Why the out dir's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the out dir.
    #[error("out dir {dir} is in use by another vidbatch run (pid {pid}); wait for it or use another --out")]
    Held {
        /// The out dir.
        dir: PathBuf,
        /// The holder's pid, as it wrote it.
        pid: String,
    },
    /// The lock file could not be opened or written.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The journal's file name inside the out dir.
pub const STATE_FILE: &str = "state.jsonl";
/// The lock file's name inside the out dir.
pub const LOCK_FILE: &str = ".vidbatch.lock";
/// The folder of the videos and last frames.
pub const VIDEOS: &str = "videos";
/// The JSON report's file name.
pub const REPORT_JSON: &str = "report.json";
/// The HTML report's file name.
pub const REPORT_HTML: &str = "report.html";

/// Where a job's video goes, relative to the out dir: `videos/NAME.mp4`.
pub fn video_file(name: &str) -> String {
    format!("{VIDEOS}/{name}.mp4")
}

/// Where a job's last frame goes, relative to the out dir: `videos/NAME.last.png`.
pub fn last_frame_file(name: &str) -> String {
    format!("{VIDEOS}/{name}.last.png")
}

/// The buffer between a report's renderer and its file.
const WRITE_BUF: usize = 64 * 1024;

/// Writes `contents` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(contents))
}

/// Writes `path` atomically with what `fill` writes: through a buffer into a temporary file
/// beside it, then fsync and rename, so contents made as they are written are never held in
/// memory whole.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut w = BufWriter::with_capacity(WRITE_BUF, tmp.as_file());
        fill(&mut w)?;
        w.flush()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// fsyncs a directory so a rename in it is durable (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// An exclusive lock on an out dir, held for the life of the value.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Takes the out dir's lock, or says who holds it.
pub fn lock(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io_err)?;
            writeln!(file, "{}", std::process::id()).map_err(io_err)?;
            Ok(DirLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
            Err(LockError::Held {
                dir: dir.to_path_buf(),
                pid,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        match lock(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("{other:?}"),
        }
    }
}
