//! Compaction: when the journal holds far more lines than its state needs, [`compact`]
//! rewrites it as snapshot records that fold to the same state.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::events::Event;
use crate::state::RunState;

use super::JournalError;
use super::load::Loaded;
use crate::outdir::sync_dir;

/// Whether the journal holds many more lines than its state needs.
pub fn needs_compaction(loaded: &Loaded) -> bool {
    let live = compacted_events(&loaded.state).len();
    loaded.lines > 1000 && loaded.lines > live * 4
}

/// Rewrites the journal at `path` as snapshot records that fold to `state`:
/// written to a temporary file, synced, then renamed over the old one.
pub fn compact(path: &Path, state: &RunState) -> Result<(), JournalError> {
    let io_err = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("jsonl.compact");
    {
        let mut out = BufWriter::new(File::create(&tmp).map_err(io_err)?);
        for event in compacted_events(state) {
            serde_json::to_writer(&mut out, &event).map_err(|e| io_err(io::Error::other(e)))?;
            out.write_all(b"\n").map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
        out.get_ref().sync_all().map_err(io_err)?;
    }
    std::fs::rename(&tmp, path).map_err(io_err)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// The records that rebuild `state` exactly: one snapshot of the run and one of each job,
/// in the order the jobs were first planned.
fn compacted_events(state: &RunState) -> Vec<Event> {
    std::iter::once(Event::Snapshot {
        version: crate::events::SNAPSHOT_VERSION,
        run: Box::new(state.snapshot()),
    })
    .chain(state.jobs_in_order().map(|j| Event::JobSnapshot {
        state: Box::new(j.clone()),
    }))
    .collect()
}
