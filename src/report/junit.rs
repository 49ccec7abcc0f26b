//! JUnit XML of a run: one testcase per job, for CI test reporters.
//!
//! - `<testsuites>`/`<testsuite name="vidbatch">`; a testcase per job with `classname` = the
//!   manifest file the job came from and `name` = the job id; `time` in seconds from task
//!   creation to the job's end.
//! - A job that is not done and has a failure gets `<failure type=CODE message=MESSAGE>`
//!   (`type` is the API's error code, or the failure kind when the API gave none) whose text
//!   lists kind, HTTP status, code and message.
//! - A job not finished without a failure (pending, interrupted in flight) gets `<skipped/>`,
//!   and so does a job of an earlier run that the latest run's plan no longer has
//!   (`not_in_plan`): it is never a failure.
//! - The suite's `<properties>` carry the run's `outcome`, `exit_code`, `stop_reason` and the
//!   count of jobs `not_in_plan`.
//! - The file fails (failures or errors above 0) exactly when the exit code is not 0: a run
//!   that ended otherwise than `success` or `some_failed` (stopped, fatal, interrupted, local
//!   failure), or `some_failed` without a failed job, adds one testcase `vidbatch`/`run` with
//!   an `<error>` that says how and why it ended.
//! - A job done after a failure or a retry is flaky: it passes, and carries the nextest /
//!   Maven Surefire convention, a `<flakyFailure>` element describing what went wrong first,
//!   plus a `<property name="flaky" value="true"/>` for reporters that only read properties.

use std::fmt::Write;

use super::{JobReport, NOT_IN_PLAN, Report};
use crate::events::RunOutcome;

/// Escapes text for XML content and attribute values; drops characters XML 1.0 forbids.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The manifest file of a job's source location (`file:line:col`, `file: row N, ...`).
pub fn source_file(source: &str) -> &str {
    if let Some((file, _)) = source.split_once(": row ") {
        return file;
    }
    let mut file = source;
    for _ in 0..2 {
        match file.rsplit_once(':') {
            Some((head, tail)) if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => {
                file = head;
            }
            _ => break,
        }
    }
    file
}

/// What a job is in JUnit terms.
enum Verdict {
    Passed,
    Flaky,
    Failed,
    Skipped,
}

fn verdict(j: &JobReport) -> Verdict {
    match (j.state.as_str(), &j.error) {
        (NOT_IN_PLAN, _) => Verdict::Skipped,
        ("done", _) if j.flaky => Verdict::Flaky,
        ("done", _) => Verdict::Passed,
        (_, Some(_)) => Verdict::Failed,
        _ => Verdict::Skipped,
    }
}

fn failure_text(j: &JobReport) -> (String, String, String) {
    match j.error.as_ref().or(j.recovered_from.as_ref()) {
        Some(f) => {
            let kind = f.kind.name();
            let kind_or_code = f.code.clone().unwrap_or_else(|| kind.to_string());
            let mut body = format!("state: {}\nkind: {kind}\n", j.state);
            if j.flaky {
                let _ = writeln!(body, "retries: {}\nfailures: {}", j.retries, j.failures);
            }
            if let Some(s) = f.http_status {
                let _ = writeln!(body, "http status: {s}");
            }
            if let Some(c) = &f.code {
                let _ = writeln!(body, "code: {c}");
            }
            let _ = writeln!(body, "message: {}", f.message);
            (kind_or_code, f.message.clone(), body)
        }
        None => (
            "retried".into(),
            format!("done after {} retries and {} failures", j.retries, j.failures),
            String::new(),
        ),
    }
}

fn seconds(j: &JobReport) -> f64 {
    j.timings.total_seconds.unwrap_or(0.0)
}

/// The run-level error (type, message) that makes the file fail when the exit code is not 0
/// and no job's failure says so already, or when the run ended early.
fn run_error(report: &Report, job_failures: usize) -> Option<(String, String)> {
    let outcome = report.run.outcome?;
    match outcome {
        RunOutcome::Success => return None,
        RunOutcome::SomeFailed if job_failures > 0 => return None,
        _ => {}
    }
    let name = report.outcome_name();
    let code = crate::exit::of_run(outcome);
    let not_done = report.summary.planned - report.summary.by_state.get("done").copied().unwrap_or(0);
    let mut message =
        format!("the run ended {name} (exit code {code}) with {not_done} jobs of the plan not done");
    if let Some(why) = &report.run.stop_reason {
        let _ = write!(message, ": {why}");
    }
    Some((name, message))
}

/// The JUnit XML of a report.
pub fn render(report: &Report) -> String {
    let (mut failures, mut skipped) = (0, 0);
    for j in &report.jobs {
        match verdict(j) {
            Verdict::Failed => failures += 1,
            Verdict::Skipped => skipped += 1,
            Verdict::Passed | Verdict::Flaky => {}
        }
    }
    let run_error = run_error(report, failures);
    let errors = usize::from(run_error.is_some());
    let tests = report.jobs.len() + errors;
    let total: f64 = report.jobs.iter().map(seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"vidbatch\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total:.3}\">"
    );
    let timestamp = report
        .run
        .started_at
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(|s| format!(" timestamp=\"{}\"", escape(s))))
        .unwrap_or_default();
    let _ = writeln!(
        x,
        "  <testsuite name=\"vidbatch\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total:.3}\"{timestamp}>"
    );
    x.push_str("    <properties>\n");
    let mut property = |name: &str, value: &str| {
        let _ = writeln!(
            x,
            "      <property name=\"{}\" value=\"{}\"/>",
            escape(name),
            escape(value)
        );
    };
    property("outcome", &report.outcome_name());
    if let Some(code) = report.run.exit_code {
        property("exit_code", &code.to_string());
    }
    if let Some(why) = &report.run.stop_reason {
        property("stop_reason", why);
    }
    property("not_in_plan", &report.summary.not_in_plan.to_string());
    x.push_str("    </properties>\n");
    if let Some((kind, message)) = &run_error {
        let _ = writeln!(
            x,
            "    <testcase classname=\"vidbatch\" name=\"run\" time=\"0.000\">\n      <error type=\"{}\" message=\"{}\">{}</error>\n    </testcase>",
            escape(kind),
            escape(message),
            escape(message)
        );
    }
    for j in &report.jobs {
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            escape(source_file(&j.source)),
            escape(&j.id),
            seconds(j)
        );
        let mut out = format!("source: {}\nstate: {}\n", j.source, j.state);
        if !j.upstream.is_empty() {
            let _ = writeln!(out, "after: {}", j.upstream.join(", "));
        }
        if !j.task_ids.is_empty() {
            let _ = writeln!(out, "task ids: {}", j.task_ids.join(", "));
        }
        if let Some(file) = &j.file {
            let _ = writeln!(out, "file: {file}");
        }
        if let Some(sha) = &j.sha256 {
            let _ = writeln!(out, "sha256: {sha}");
        }
        match verdict(j) {
            Verdict::Passed => {}
            Verdict::Flaky => {
                let (kind, message, body) = failure_text(j);
                x.push_str("\n      <properties><property name=\"flaky\" value=\"true\"/></properties>");
                let _ = write!(
                    x,
                    "\n      <flakyFailure type=\"{}\" message=\"{}\">{}</flakyFailure>",
                    escape(&kind),
                    escape(&message),
                    escape(&body)
                );
            }
            Verdict::Failed => {
                let (kind, message, body) = failure_text(j);
                let _ = write!(
                    x,
                    "\n      <failure type=\"{}\" message=\"{}\">{}</failure>",
                    escape(&kind),
                    escape(&message),
                    escape(&body)
                );
            }
            Verdict::Skipped => {
                let message = match &j.last_state {
                    Some(was) if j.state == NOT_IN_PLAN => {
                        format!("not in this run's plan (left as {was} by an earlier run)")
                    }
                    _ => format!("not finished: {}", j.state),
                };
                let _ = write!(x, "\n      <skipped message=\"{}\"/>", escape(&message));
            }
        }
        let _ = write!(
            x,
            "\n      <system-out>{}</system-out>\n    </testcase>\n",
            escape(&out)
        );
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(escape("a<b>&\"c'\n\u{1}d"), "a&lt;b&gt;&amp;&quot;c&apos;&#10;d");
    }

    #[test]
    fn source_file_strips_the_position() {
        assert_eq!(source_file("shots.yaml:12:5"), "shots.yaml");
        assert_eq!(
            source_file("dir/rows.csv: row 3, column `prompt`"),
            "dir/rows.csv"
        );
        assert_eq!(source_file("dir/rows.csv: row 3"), "dir/rows.csv");
        assert_eq!(source_file("C:/x/a.yaml:3:1"), "C:/x/a.yaml");
        assert_eq!(source_file("plain.yaml"), "plain.yaml");
    }
}
