//! The `validate` and `plan` commands: the plan as a table or JSON, with token estimates.

use std::io::Write;

use serde::Serialize;

use super::estimate;
use super::yaml::excerpt;
use super::{Diagnostic, Job, ManifestArgs, Plan, RunSection, SourceFile, load_plan};
use crate::api::CreateRequest;

/// A job as `plan --json` prints it.
#[derive(Debug, Serialize)]
pub struct JobView<'a> {
    /// Job id.
    pub id: &'a str,
    /// File stem.
    pub name: &'a str,
    /// Video path inside the output directory.
    pub output: String,
    /// Where the job was written.
    pub source: String,
    /// sha256 of the canonical request.
    pub fingerprint: String,
    /// Estimated tokens, `null` when unknown.
    pub estimated_tokens: Option<u64>,
    /// The request.
    pub request: &'a CreateRequest,
}

/// The document `plan --json` prints.
#[derive(Debug, Serialize)]
pub struct PlanView<'a> {
    /// Number of jobs.
    pub count: usize,
    /// Sum of the estimates, `null` if any is unknown.
    pub estimated_tokens_total: Option<u64>,
    /// Sum of the known estimates.
    pub estimated_tokens_known: u64,
    /// Jobs whose estimate is unknown.
    pub estimated_tokens_unknown_jobs: usize,
    /// How estimates are computed.
    pub estimate_formula: &'static str,
    /// The jobs.
    pub jobs: Vec<JobView<'a>>,
    /// Files read.
    pub sources: &'a [SourceFile],
    /// Run settings from the manifests.
    pub run: &'a RunSection,
    /// Warnings.
    pub warnings: &'a [Diagnostic],
    /// Chains of jobs linked by `job://` references; absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<super::refs::Chain>,
}

fn known(plan: &Plan) -> (u64, usize) {
    plan.jobs
        .iter()
        .fold((0u64, 0usize), |(s, u), j| match j.estimated_tokens {
            Some(t) => (s.saturating_add(t), u),
            None => (s, u + 1),
        })
}

/// The plan as `plan --json` prints it.
pub fn plan_view(plan: &Plan) -> PlanView<'_> {
    let (sum, unknown) = known(plan);
    PlanView {
        count: plan.jobs.len(),
        estimated_tokens_total: plan.total_tokens(),
        estimated_tokens_known: sum,
        estimated_tokens_unknown_jobs: unknown,
        estimate_formula: estimate::FORMULA,
        jobs: plan
            .jobs
            .iter()
            .map(|j| JobView {
                id: &j.id,
                name: &j.name,
                output: j.output_file(),
                source: j.source.to_string(),
                fingerprint: j.fingerprint(),
                estimated_tokens: j.estimated_tokens,
                request: &j.request,
            })
            .collect(),
        sources: &plan.sources,
        run: &plan.run,
        warnings: &plan.warnings,
        chains: super::refs::chains(&plan.jobs),
    }
}

fn opt<T: ToString>(v: &Option<T>, default: &str) -> String {
    v.as_ref()
        .map(T::to_string)
        .unwrap_or_else(|| default.to_string())
}

fn row(j: &Job) -> [String; 8] {
    let r = &j.request;
    let dur = match (r.frames, r.duration) {
        (Some(f), _) => format!("{f}f"),
        (None, Some(-1)) => "auto".into(),
        (None, d) => opt(&d, "-"),
    };
    [
        j.id.clone(),
        r.model.clone(),
        dur,
        opt(&r.ratio, "-"),
        opt(&r.resolution, "-"),
        opt(&j.estimated_tokens, "unknown"),
        excerpt(&r.prompt, 40),
        j.output_file(),
    ]
}

/// Writes the plan as a table, then the count and the estimated tokens.
pub fn render_table(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    let header = [
        "ID",
        "MODEL",
        "DURATION",
        "RATIO",
        "RESOLUTION",
        "TOKENS",
        "PROMPT",
        "OUTPUT",
    ];
    let rows: Vec<[String; 8]> = plan.jobs.iter().map(row).collect();
    let mut w = header.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String], out: &mut dyn Write| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.extend(std::iter::repeat_n(' ', w[i] - c.chars().count() + 2));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(&header.map(String::from), out)?;
    for r in &rows {
        line(r, out)?;
    }
    let (sum, unknown) = known(plan);
    let n = plan.jobs.len();
    writeln!(out, "{n} job{}", if n == 1 { "" } else { "s" })?;
    match plan.total_tokens() {
        Some(t) => writeln!(out, "estimated tokens: {t}")?,
        None => writeln!(
            out,
            "estimated tokens: unknown (at least {sum}; {unknown} job(s) unknown)"
        )?,
    }
    writeln!(out, "({})", estimate::FORMULA)?;
    render_chains(plan, out)
}

/// The chains of the plan, each as a tree with its length and tokens.
fn render_chains(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    let chains = super::refs::chains(&plan.jobs);
    if chains.is_empty() {
        return Ok(());
    }
    let n = chains.len();
    writeln!(
        out,
        "{n} chain{} (a job starts when the jobs it refers to are done):",
        if n == 1 { "" } else { "s" }
    )?;
    for c in &chains {
        let tokens = c
            .estimated_tokens
            .map_or_else(|| "unknown tokens".to_string(), |t| format!("{t} tokens"));
        writeln!(
            out,
            "  {}: {} jobs, {} one after another, {tokens}",
            c.root,
            c.jobs.len(),
            c.length
        )?;
        for line in &c.tree {
            writeln!(out, "    {line}")?;
        }
    }
    Ok(())
}

/// Prints the warnings, or every problem and the count; 2 when the manifests cannot run. With
/// `--log-format json`, each is a JSON record instead, the count too.
fn report(res: &Result<Plan, super::Diagnostics>, err: &mut dyn Write) -> i32 {
    match res {
        Ok(p) => {
            for w in &p.warnings {
                if crate::display::log::json() {
                    crate::display::log::diagnostic(w);
                } else {
                    let _ = writeln!(err, "{w}");
                }
            }
            0
        }
        Err(d) => {
            report_problems(d, err);
            2
        }
    }
}

/// Prints every problem of manifests that cannot run and their count (on `err`, or as JSON
/// records with `--log-format json`, the count as an error with the exit code 2).
pub fn report_problems(d: &super::Diagnostics, err: &mut dyn Write) {
    if !crate::display::log::json() {
        let _ = writeln!(err, "{d}");
        return;
    }
    for each in d.errors.iter().chain(&d.warnings) {
        crate::display::log::diagnostic(each);
    }
    let (e, w) = (d.errors.len(), d.warnings.len());
    crate::display::log::error(&format!("the manifests cannot run: {e} errors, {w} warnings"), 2);
}

/// `vidbatch validate`: 0 when the manifests are valid (warnings printed to `err`), 2 with
/// every error printed to `err`.
pub fn cmd_validate(args: &ManifestArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let res = load_plan(args);
    let code = report(&res, err);
    if let Ok(p) = &res {
        let n = p.jobs.len();
        let message = format!(
            "ok: {n} job{} from {} file{}",
            if n == 1 { "" } else { "s" },
            p.sources.len(),
            if p.sources.len() == 1 { "" } else { "s" }
        );
        crate::display::log::validated(&message, n, p.sources.len(), out);
    }
    code
}

/// `vidbatch plan`: the table (or JSON with `json`) on `out`; 2 with every error on `err`.
pub fn cmd_plan(args: &ManifestArgs, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let res = load_plan(args);
    let code = report(&res, err);
    if let Ok(p) = &res {
        let written = if json {
            // One line when every line of the process is JSON (`--log-format json`).
            let view = plan_view(p);
            if crate::display::log::json() {
                serde_json::to_writer(&mut *out, &view)
            } else {
                serde_json::to_writer_pretty(&mut *out, &view)
            }
            .map_err(|e| match e.io_error_kind() {
                Some(kind) => std::io::Error::from(kind),
                None => std::io::Error::other(e),
            })
            .and_then(|_| writeln!(out))
        } else {
            render_table(p, out)
        };
        if let Err(e) = written {
            // A reader that closed the pipe early (`| head`) got what it wanted.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return code;
            }
            if crate::display::log::json() {
                crate::display::log::error(&format!("cannot write the plan: {e}"), 2);
            } else {
                let _ = writeln!(err, "cannot write the plan: {e}");
            }
            return 2;
        }
    }
    code
}
