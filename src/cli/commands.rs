//! The commands around a run: `status`, `cancel`, `report`, `man` and `models`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

use crate::display;
use crate::exit;
use crate::report;
use crate::runner::RetryPolicy;

use super::*;
use crate::outdir;

pub(super) fn cmd_status(out: &Path, json: bool) -> anyhow::Result<i32> {
    let state = load_state(out)?;
    let report = report::Report::from_state(&state);
    let status = report::status::Status::of(
        out,
        &report,
        report::status::Liveness::of(out),
        state.stop_reason.as_deref(),
    );
    let mut stdout = std::io::stdout().lock();
    if json {
        write_json(&mut stdout, &status)?;
    } else {
        status.write_text(&mut stdout)?;
    }
    Ok(0)
}

pub(super) async fn cmd_cancel(out: &Path, api: &ApiArgs) -> anyhow::Result<i32> {
    if api.sim {
        return usage(
            "cancel --sim: the embedded simulator starts empty and knows none of this run's tasks; \
             give the --base-url (and key) the run used",
        );
    }
    let state = load_state(out)?;
    let rpm = state
        .settings
        .as_ref()
        .and_then(|s| s.get("rpm"))
        .and_then(|v| v.as_u64())
        .map_or(60, |r| r.clamp(1, u64::from(u32::MAX)) as u32);
    let (client, _sim) = match connect(api).await {
        Ok(c) => c,
        Err(e) => return usage(format!("{e:#}")),
    };
    let summary = match crate::runner::cancel_run(out, &client, rpm, RetryPolicy::new(5)).await {
        Ok(s) => s,
        Err(crate::runner::RunError::Lock(e @ outdir::LockError::Held { .. })) => return usage(e),
        Err(e) => return Err(e.into()),
    };
    let mut stdout = std::io::stdout().lock();
    for (job, task) in &summary.cancelled {
        say(
            &mut stdout,
            &format!("cancelled {job} ({task})"),
            Some((job, task)),
        )?;
    }
    for (job, task, status) in &summary.finished {
        let next = if status == "completed" {
            "a rerun downloads it"
        } else {
            "its own error is kept"
        };
        say(
            &mut stdout,
            &format!("{job} ({task}) had finished ({status}): {next}"),
            Some((job, task)),
        )?;
    }
    for (job, task) in &summary.gone {
        say(
            &mut stdout,
            &format!("{job} ({task}) is no longer on the server (expired)"),
            Some((job, task)),
        )?;
    }
    for job in &summary.unsettled {
        say(
            &mut stdout,
            &format!("{job}: its create's answer was lost; run again to find its task, then cancel"),
            None,
        )?;
    }
    for (job, task, error) in &summary.errors {
        if display::log::json() {
            tracing::warn!(target: display::log::DIAGNOSTICS, job = %job, task_id = %task, "cancel failed: {error}");
        } else {
            eprintln!("{job} ({task}): cancel failed: {error}");
        }
    }
    if summary.cancelled.is_empty() && summary.finished.is_empty() && summary.errors.is_empty() {
        say(
            &mut stdout,
            "nothing to cancel: no task of this run is queued or processing",
            None,
        )?;
    }
    Ok(if summary.errors.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

pub(super) fn cmd_report(out: &Path, merge: &[PathBuf], ci: &CiArgs) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout().lock();
    if merge.is_empty() {
        let state = load_state(out)?;
        report::write_all(out, &state, &ci.outputs())?;
    } else {
        let merged = match report::merge::merge(merge, out) {
            Ok(r) => r,
            Err(e @ (report::merge::MergeError::Io { .. } | report::merge::MergeError::Journal { .. })) => {
                return Err(e.into());
            }
            Err(e) => return usage(e),
        };
        let merged = std::sync::Arc::new(merged);
        report::write_report_files(out, &merged, &ci.outputs())?;
        let s = &merged.summary;
        let done = s.by_state.get("done").copied().unwrap_or(0);
        say(
            &mut stdout,
            &format!("merged {} shard dirs: {} jobs, {done} done", merge.len(), s.jobs),
            None,
        )?;
    }
    let written = [out.join(outdir::REPORT_JSON), out.join(outdir::REPORT_HTML)];
    for path in written.iter().chain(&ci.junit).chain(&ci.summary_md) {
        say(&mut stdout, &format!("wrote {}", path.display()), None)?;
    }
    Ok(exit::SUCCESS)
}

/// Writes the man pages: one per command into `dir`, or the top page to stdout.
pub(super) fn cmd_man(dir: Option<&Path>) -> anyhow::Result<i32> {
    let Some(dir) = dir else {
        clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vidbatch") && n.ends_with(".1"))
        .collect();
    pages.sort();
    writeln!(
        std::io::stdout().lock(),
        "wrote {} pages into {}: {}",
        pages.len(),
        dir.display(),
        pages.join(" ")
    )?;
    Ok(exit::SUCCESS)
}

pub(super) async fn cmd_models(api: &ApiArgs, json: bool) -> anyhow::Result<i32> {
    let (client, _sim) = match connect(api).await {
        Ok(c) => c,
        Err(e) => return usage(format!("{e:#}")),
    };
    // The API error stays typed: a 401 or 402 exits 3, as from `run`.
    let models = client.list_models().await.context("listing the models")?;
    let mut stdout = std::io::stdout().lock();
    if json {
        write_json(&mut stdout, &models)?;
    } else {
        for m in &models.data {
            writeln!(stdout, "{}", m.id)?;
        }
    }
    Ok(exit::SUCCESS)
}
