//! Reading a journal back: [`load`] parses its lines on every core and folds them, in order,
//! into the run state; a torn last line is dropped, damage before the end is an error.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use crate::events::Event;
use crate::state::RunState;

use super::JournalError;

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The folded state.
    pub state: RunState,
    /// Lines read.
    pub lines: usize,
    /// Whether a torn last line was dropped.
    pub torn_tail: bool,
}

/// Bytes of whole lines handed to a parser thread at once.
const CHUNK_BYTES: usize = 1 << 20;

/// One non-empty line, parsed.
struct ParsedLine {
    number: usize,
    complete: bool,
    event: Result<Event, String>,
}

/// What the reader and parser threads tell the folding thread.
enum Parsed {
    Chunk(usize, Vec<ParsedLine>),
    End { chunks: usize, lines: usize },
    Failed(io::Error),
}

fn parse_chunk(first_line: usize, bytes: &[u8]) -> Vec<ParsedLine> {
    let mut out = Vec::new();
    for (number, raw) in (first_line..).zip(bytes.split_inclusive(|&b| b == b'\n')) {
        let text = trim_line(raw);
        if !text.is_empty() {
            out.push(ParsedLine {
                number,
                complete: raw.last() == Some(&b'\n'),
                event: serde_json::from_slice::<Event>(text).map_err(|e| e.to_string()),
            });
        }
    }
    out
}

/// Reads whole lines in chunks, numbering them, and deals the chunks out to the parsers.
fn read_chunks(mut reader: BufReader<File>, parsers: &[mpsc::SyncSender<(usize, usize, Vec<u8>)>]) -> Parsed {
    let mut seq = 0;
    let mut lines = 0;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        let first = lines + 1;
        while chunk.len() < CHUNK_BYTES {
            match reader.read_until(b'\n', &mut chunk) {
                Ok(0) => break,
                Ok(_) => lines += 1,
                Err(e) => return Parsed::Failed(e),
            }
        }
        if chunk.is_empty() {
            return Parsed::End { chunks: seq, lines };
        }
        if parsers[seq % parsers.len()].send((seq, first, chunk)).is_err() {
            return Parsed::End { chunks: seq, lines };
        }
        seq += 1;
    }
}

/// Reads a journal. A missing file is an empty state; a torn last line is dropped.
///
/// Lines are parsed on every core while this thread folds them into the state in order.
pub fn load(path: &Path) -> Result<Loaded, JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(io_err(e)),
    };
    let reader = BufReader::with_capacity(1 << 20, file);
    let workers = thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::sync_channel::<Parsed>(workers * 2);
        let mut parsers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::sync_channel::<(usize, usize, Vec<u8>)>(1);
            let done = done_tx.clone();
            scope.spawn(move || {
                for (seq, first, bytes) in rx {
                    if done.send(Parsed::Chunk(seq, parse_chunk(first, &bytes))).is_err() {
                        return;
                    }
                }
            });
            parsers.push(tx);
        }
        scope.spawn(move || {
            let end = read_chunks(reader, &parsers);
            drop(parsers);
            let _ = done_tx.send(end);
        });

        let mut loaded = Loaded::default();
        let mut waiting: std::collections::BTreeMap<usize, Vec<ParsedLine>> = Default::default();
        let mut next = 0;
        let mut total: Option<usize> = None;
        let mut pending_error: Option<(usize, String)> = None;
        while total.is_none_or(|t| next < t) {
            match done_rx.recv() {
                Ok(Parsed::Chunk(seq, lines)) => {
                    waiting.insert(seq, lines);
                }
                Ok(Parsed::End { chunks, lines }) => {
                    total = Some(chunks);
                    loaded.lines = lines;
                }
                Ok(Parsed::Failed(e)) => return Err(io_err(e)),
                Err(_) => break,
            }
            while let Some(lines) = waiting.remove(&next) {
                next += 1;
                for line in lines {
                    if let Some((at, reason)) = pending_error.take() {
                        // A bad line followed by more lines is damage, not a torn tail.
                        return Err(JournalError::Corrupt {
                            path: path.to_path_buf(),
                            line: at,
                            reason,
                        });
                    }
                    match line.event {
                        Ok(event) if line.complete => loaded.state.apply(&event),
                        Ok(_) => loaded.torn_tail = true,
                        Err(reason) => pending_error = Some((line.number, reason)),
                    }
                }
            }
        }
        if pending_error.is_some() {
            loaded.torn_tail = true;
        }
        Ok(loaded)
    })
}

/// A line without its line ending and trailing spaces.
pub(super) fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ') {
        end -= 1;
    }
    &line[..end]
}
