//! The resume journal `state.jsonl` and the out-dir lock; the main structure here is [`Journal`].
//!
//! One writer thread owns the file and appends one JSON event per line. Durable records (a
//! create's intent, a failure) are fsynced, with every record before them, before
//! [`Journal::append`] returns, with group commit so a burst of them costs one fsync; the
//! others are written in batches and reach the disk with the next fsync. Loading tolerates a
//! torn last line (a crash mid-write). When the file has grown well past what its state
//! needs, [`compact`] rewrites it from the state.
//!
//! Its parts: `load` (reading it back, [`load`]) and `compact` ([`compact`]); this module is
//! the writer and the out dir's lock.

mod compact;
mod load;

pub use compact::{compact, needs_compaction};
use load::trim_line;
pub use load::{Loaded, load};

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::events::Event;

/// A journal failure: the disk refused a write, or the file is unreadable.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing or syncing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A line other than the last is not an event.
    #[error(
        "state file {path}, line {line}: not a vidbatch event ({reason}); the file is damaged. \
         Nothing was changed: mend line {line} (one JSON object per line; copy the file first), \
         or start over with `vidbatch run --fresh`, which keeps this state file and its videos \
         in the out dir's earlier/ folder"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parser message.
        reason: String,
    },
    /// The writer thread is gone (after an earlier error).
    #[error("state file writer stopped after an earlier error")]
    Closed,
}

/// How long a record that need not be synced may wait in memory before it is written.
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// Bytes waiting that wake the writer without waiting for [`WRITE_EVERY`].
const WRITE_AT: usize = 1 << 20;

type Ack = oneshot::Sender<Result<(), String>>;

/// Records waiting for the writer thread, in append order.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Callers waiting until everything up to now is synced.
    acks: Vec<Ack>,
    closed: bool,
}

/// What the appenders and the writer thread share.
#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The single writer of a journal file.
pub struct Journal {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Journal {
    /// Opens `path` for appending (creating it), dropping a torn last line first.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        drop_torn_tail(path).map_err(io_err)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let thread = thread::Builder::new()
            .name("vidbatch-journal".into())
            .spawn(move || writer_loop(file, &writer))
            .map_err(io_err)?;
        Ok(Journal {
            path: path.to_path_buf(),
            shared,
            thread: Some(thread),
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event; a durable one is on disk (fsynced) when this returns, together with
    /// every event appended before it. The others are written within [`WRITE_EVERY`].
    pub async fn append(&self, event: &Event) -> Result<(), JournalError> {
        match self.enqueue(event)? {
            Some(durable) => durable.wait().await,
            None => Ok(()),
        }
    }

    /// Hands an event to the writer without waiting. A durable event comes with a [`Durable`]
    /// that resolves once it (and every event before it) is on disk.
    pub fn enqueue(&self, event: &Event) -> Result<Option<Durable>, JournalError> {
        let (done, wake) = {
            let mut pending = self.shared.lock();
            if pending.closed {
                return Err(JournalError::Closed);
            }
            let start = pending.bytes.len();
            if let Err(e) = serde_json::to_writer(&mut pending.bytes, event) {
                pending.bytes.truncate(start);
                return Err(JournalError::Io {
                    path: self.path.clone(),
                    source: io::Error::other(e),
                });
            }
            pending.bytes.push(b'\n');
            if event.is_durable() {
                let (ack, done) = oneshot::channel();
                pending.acks.push(ack);
                (Some(done), true)
            } else {
                // The first record waiting starts the writer's clock; a full buffer ends it.
                (None, start == 0 || pending.bytes.len() >= WRITE_AT)
            }
        };
        // Woken after the lock is let go, so the writer does not wake only to wait for it.
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(done.map(|done| Durable {
            done,
            path: self.path.clone(),
        }))
    }

    /// Waits until everything appended so far is on disk.
    pub async fn sync(&self) -> Result<(), JournalError> {
        let done = {
            let mut pending = self.shared.lock();
            if pending.closed {
                return Err(JournalError::Closed);
            }
            let (ack, done) = oneshot::channel();
            pending.acks.push(ack);
            done
        };
        self.shared.wake.notify_one();
        Durable {
            done,
            path: self.path.clone(),
        }
        .wait()
        .await
    }
}

/// A durable record on its way to the disk; [`Durable::wait`] resolves once it is there.
#[derive(Debug)]
pub struct Durable {
    done: oneshot::Receiver<Result<(), String>>,
    path: PathBuf,
}

impl Durable {
    /// Waits until the record is on disk.
    pub async fn wait(self) -> Result<(), JournalError> {
        match self.done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(JournalError::Io {
                path: self.path,
                source: io::Error::other(msg),
            }),
            Err(_) => Err(JournalError::Closed),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes what is pending: at once when someone waits for a sync (one sync then serves every
/// waiter: group commit), otherwise within [`WRITE_EVERY`], so records that need no sync cost
/// no wake-up of their own.
fn writer_loop(mut file: File, shared: &Shared) {
    let mut failed: Option<String> = None;
    let mut bytes = Vec::new();
    loop {
        let (acks, closed) = {
            let mut pending = shared.lock();
            loop {
                if !pending.acks.is_empty() || pending.closed || pending.bytes.len() >= WRITE_AT {
                    break;
                }
                if pending.bytes.is_empty() {
                    pending = shared.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
                } else {
                    let (guard, waited) = shared
                        .wake
                        .wait_timeout(pending, WRITE_EVERY)
                        .unwrap_or_else(|p| p.into_inner());
                    pending = guard;
                    if waited.timed_out() {
                        break;
                    }
                }
            }
            std::mem::swap(&mut bytes, &mut pending.bytes);
            (std::mem::take(&mut pending.acks), pending.closed)
        };
        if failed.is_none() {
            let result = file.write_all(&bytes).and_then(|()| {
                if acks.is_empty() && !closed {
                    Ok(())
                } else {
                    file.sync_data()
                }
            });
            if let Err(e) = result {
                failed = Some(e.to_string());
            }
        }
        bytes.clear();
        for ack in acks {
            let _ = ack.send(match &failed {
                None => Ok(()),
                Some(msg) => Err(msg.clone()),
            });
        }
        if closed {
            return;
        }
    }
}

/// Cuts a bad last line off the file, so appends start on a fresh line after a good record:
/// an unterminated one (a crash mid-write), and then a complete last line that is not an
/// event (garbage, or a record cut and later followed by a newline). [`load`] skips such a
/// last line; left in place, it would be damage in the middle of the file after the next append.
/// Only the last (non-blank) line is judged: a bad line before good ones is damage that
/// [`load`] reports.
fn drop_torn_tail(path: &Path) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Read back, a block at a time, until the bytes read hold the whole last non-blank
    // complete line (or the file's start).
    const BLOCK: u64 = 64 * 1024;
    /// Longest last line judged; a longer one is left to `load`.
    const MAX_TAIL: usize = 64 * 1024 * 1024;
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    let whole_last_line = |tail: &[u8], at_start: bool| {
        let Some(nl) = tail.iter().rposition(|&b| b == b'\n') else {
            return at_start;
        };
        let body = trim_line(&tail[..=nl]);
        !body.is_empty() && (at_start || body.contains(&b'\n'))
    };
    while start > 0 && !whole_last_line(&tail, false) && tail.len() < MAX_TAIL {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        start = from;
    }
    // `tail` is the file from byte `start` on. Keep up to the last newline.
    let mut keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(nl) => start + nl as u64 + 1,
        None if start == 0 => 0,
        None => len,
    };
    if start == 0 || whole_last_line(&tail, false) {
        let upto = (keep - start) as usize;
        let body = trim_line(&tail[..upto]);
        if !body.is_empty() {
            let line_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            if serde_json::from_slice::<Event>(&body[line_start..]).is_err() {
                keep = start + line_start as u64;
            }
        }
    }
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
