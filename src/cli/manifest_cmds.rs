//! `vidbatch validate` and `vidbatch plan`, and the manifest flags they share with `run`: the
//! main structure here is [`ManifestArgs`].

use std::io::Write;
use std::path::PathBuf;

use crate::display::log;
use crate::manifest::plan::{plan_view, render_table};
use crate::manifest::{Diagnostics, Inputs, Plan, load_plan};

/// The manifest options shared by `validate`, `plan` and `run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ManifestArgs {
    /// Manifests: YAML (.yaml/.yml), CSV (.csv/.tsv/.txt), or spreadsheets (.xlsx/.xlsm/.xls/.ods).
    #[arg(required = true, num_args = 1.., value_name = "MANIFEST")]
    pub manifests: Vec<PathBuf>,
    /// CSV delimiter: `,` `;` `tab` or one character (default: detected from the header line).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
    /// Sheet of a spreadsheet given on the command line (default: the first).
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// Model of every job that does not name one (overrides manifest defaults).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// A job field for every job that does not set it, e.g. `--set duration=5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl From<ManifestArgs> for Inputs {
    fn from(a: ManifestArgs) -> Inputs {
        Inputs {
            manifests: a.manifests,
            delimiter: a.delimiter,
            sheet: a.sheet,
            model: a.model,
            set: a.set,
        }
    }
}

/// Prints the warnings, or every problem and the count; 2 when the manifests cannot run. With
/// `--log-format json`, each is a JSON record instead, the count too.
fn report(res: &Result<Plan, Diagnostics>, err: &mut dyn Write) -> i32 {
    match res {
        Ok(p) => {
            for w in &p.warnings {
                if log::json() {
                    log::diagnostic(w);
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
pub fn report_problems(d: &Diagnostics, err: &mut dyn Write) {
    if !log::json() {
        let _ = writeln!(err, "{d}");
        return;
    }
    for each in d.errors.iter().chain(&d.warnings) {
        log::diagnostic(each);
    }
    let (e, w) = (d.errors.len(), d.warnings.len());
    log::error(&format!("the manifests cannot run: {e} errors, {w} warnings"), 2);
}

/// `vidbatch validate`: 0 when the manifests are valid (warnings printed to `err`), 2 with
/// every error printed to `err`.
pub fn cmd_validate(args: &Inputs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
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
        log::validated(&message, n, p.sources.len(), out);
    }
    code
}

/// `vidbatch plan`: the table (or JSON with `json`) on `out`; 2 with every error on `err`.
pub fn cmd_plan(args: &Inputs, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let res = load_plan(args);
    let code = report(&res, err);
    if let Ok(p) = &res {
        let written = if json {
            // One line when every line of the process is JSON (`--log-format json`).
            let view = plan_view(p);
            if log::json() {
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
            if log::json() {
                log::error(&format!("cannot write the plan: {e}"), 2);
            } else {
                let _ = writeln!(err, "cannot write the plan: {e}");
            }
            return 2;
        }
    }
    code
}
