//! The plan as people and programs read it: a table with chains and token estimates, or JSON.

use std::io::Write;

use serde::Serialize;

use super::estimate;
use super::yaml::excerpt;
use super::{Diagnostic, Job, Plan, RunSection, SourceFile};
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
