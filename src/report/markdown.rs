//! A short Markdown summary of a run: a headline (jobs of the plan done, outcome, exit code),
//! why the run stopped early, a table of jobs by state, the totals, and a table of the jobs of
//! the plan that are not done (for `--summary-md` and `$GITHUB_STEP_SUMMARY`). Jobs of earlier
//! runs that the plan no longer has are counted apart, never as failures.

use std::fmt::Write;

use super::{NOT_IN_PLAN, Percentiles, Report};

/// Jobs listed in the table of jobs not done; the rest are counted.
const MAX_ROWS: usize = 50;

/// Makes text safe inside a table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |s| format!("{s:.1} s"))
}

fn pair(p: &Percentiles) -> String {
    format!("{} / {}", secs(p.p50), secs(p.p95))
}

/// The Markdown summary of a report.
pub fn render(report: &Report) -> String {
    let s = &report.summary;
    let done = s.by_state.get("done").copied().unwrap_or(0);
    let outcome = report.outcome_name();
    let exit = report
        .run
        .exit_code
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default();
    let mut m = String::new();
    let _ = writeln!(
        m,
        "### vidbatch: {done} of {} jobs done ({outcome}{exit})\n",
        s.planned
    );
    if let Some(why) = &report.run.stop_reason {
        let _ = writeln!(m, "Stopped early: {}\n", cell(why));
    }
    if s.not_in_plan > 0 {
        let _ = writeln!(
            m,
            "{} jobs of earlier runs are not in this run's plan: kept in the state, not counted.\n",
            s.not_in_plan
        );
    }
    m.push_str("| state | jobs |\n|---|---:|\n");
    for (state, n) in &s.by_state {
        let _ = writeln!(m, "| {} | {n} |", cell(state));
    }
    let c = &s.counters;
    let _ = writeln!(
        m,
        "\nTokens used: {} · video bytes: {} · API requests: {} · 429s: {} · retries: {} · URL refreshes: {} · flaky: {}",
        s.tokens_used, s.bytes, c.api_requests, c.rate_limited, c.retries, s.url_refreshes, s.flaky
    );
    let _ = writeln!(
        m,
        "Queue time p50 / p95: {} · generation time p50 / p95: {}",
        pair(&s.queue_seconds),
        pair(&s.generation_seconds)
    );
    let not_done: Vec<_> = report
        .jobs
        .iter()
        .filter(|j| j.state != "done" && j.state != NOT_IN_PLAN)
        .collect();
    if !not_done.is_empty() {
        m.push_str("\n| job | state | source | error |\n|---|---|---|---|\n");
        for j in not_done.iter().take(MAX_ROWS) {
            let error = match &j.error {
                Some(f) => {
                    let mut e = String::new();
                    if let Some(code) = &f.code {
                        let _ = write!(e, "`{code}` ");
                    }
                    if let Some(status) = f.http_status {
                        let _ = write!(e, "(HTTP {status}) ");
                    }
                    e.push_str(&f.message);
                    e
                }
                None => String::new(),
            };
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} |",
                cell(&if j.upstream.is_empty() {
                    j.id.clone()
                } else {
                    format!("{} (after {})", j.id, j.upstream.join(", "))
                }),
                cell(&j.state),
                cell(&j.source),
                cell(&error)
            );
        }
        if not_done.len() > MAX_ROWS {
            let _ = writeln!(m, "\n…and {} more jobs not done.", not_done.len() - MAX_ROWS);
        }
    }
    m.push('\n');
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_keep_the_table_intact() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
