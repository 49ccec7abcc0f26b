//! What someone watching a run sees: a bar, plain lines, or JSON logs; the main entry here is [`observer`].
//!
//! - On a terminal (or with `--progress always`): [`bar::BarDisplay`], an indicatif bar with
//!   lines for rate limits and failures printed above it.
//! - Without a terminal, or with `--progress never`: [`lines::LineDisplay`], plain lines with
//!   no control characters.
//! - With `--log-format json`: [`log::EventLog`] only; every line on stderr is a JSON object
//!   (no bar, no plain lines), whatever `--progress` says.
//!
//! `-q` keeps failures and the end; `-v` adds every job's steps. Each display is an
//! [`Observer`]: the runner owns the state and hands it over with every event.

pub mod bar;
pub mod eta;
pub mod fit;
pub mod lines;
pub mod log;

use std::io::IsTerminal;

use crate::runner::Observer;

/// How much a display shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Failures and the end (`-q`).
    Quiet,
    /// The default.
    Normal,
    /// Every job's steps too (`-v`).
    Verbose,
}

impl Verbosity {
    /// From the `-q` flag and the count of `-v`.
    pub fn from_flags(quiet: bool, verbose: u8) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, _) => Verbosity::Verbose,
        }
    }
}

/// The level of the text log that `-q` and `-v` (counted) give: the one place the flags map
/// to logging, as [`Verbosity::from_flags`] is for the displays.
pub fn log_level(quiet: bool, verbose: u8) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    }
}

/// When to draw progress (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A bar on a terminal, lines otherwise.
    Auto,
    /// Always a bar.
    Always,
    /// Plain lines.
    Never,
}

impl std::str::FromStr for Progress {
    type Err = String;

    fn from_str(s: &str) -> Result<Progress, String> {
        match s {
            "auto" => Ok(Progress::Auto),
            "always" => Ok(Progress::Always),
            "never" => Ok(Progress::Never),
            _ => Err(format!("`{s}`: expected auto, always or never")),
        }
    }
}

/// Which display watches the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The indicatif bar (`force`: draw it even when stderr does not look like a terminal).
    Bar {
        /// Draw it even when stderr is not a terminal.
        force: bool,
    },
    /// Plain lines.
    Lines,
    /// JSON event logs through `tracing`.
    JsonLog,
}

/// Chooses the display: JSON logs win; then `--progress always` draws a bar, `never` prints
/// lines, and `auto` draws a bar only when stderr is a terminal and `-q` is not given.
pub fn choose(progress: Progress, json_logs: bool, verbosity: Verbosity, stderr_is_terminal: bool) -> Kind {
    match progress {
        _ if json_logs => Kind::JsonLog,
        Progress::Always => Kind::Bar { force: true },
        Progress::Never => Kind::Lines,
        Progress::Auto if stderr_is_terminal && verbosity > Verbosity::Quiet => Kind::Bar { force: false },
        Progress::Auto => Kind::Lines,
    }
}

/// Whether stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// `text` as printed on stderr: on a terminal, each of its lines wrapped at spaces to the
/// terminal's width ([`fit::wrap`]); elsewhere (a pipe, a log file) unchanged.
pub fn for_stderr(text: &str) -> String {
    match console::Term::stderr().size_checked() {
        Some((_, columns)) if stderr_is_terminal() => text
            .split('\n')
            .flat_map(|line| fit::wrap(line, usize::from(columns)))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => text.to_string(),
    }
}

/// The observer that shows the run.
pub fn observer(kind: Kind, verbosity: Verbosity) -> Box<dyn Observer> {
    match kind {
        Kind::Bar { force } => Box::new(bar::BarDisplay::new(verbosity, force)),
        Kind::Lines => Box::new(lines::LineDisplay::new(verbosity)),
        Kind::JsonLog => Box::new(log::EventLog::new(verbosity)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_logs_replace_every_display() {
        for p in [Progress::Auto, Progress::Always, Progress::Never] {
            assert_eq!(choose(p, true, Verbosity::Normal, true), Kind::JsonLog);
        }
    }

    #[test]
    fn auto_draws_a_bar_only_on_a_terminal_and_not_when_quiet() {
        let auto = |tty, v| choose(Progress::Auto, false, v, tty);
        assert_eq!(auto(true, Verbosity::Normal), Kind::Bar { force: false });
        assert_eq!(auto(false, Verbosity::Normal), Kind::Lines);
        assert_eq!(auto(true, Verbosity::Quiet), Kind::Lines);
        assert_eq!(
            choose(Progress::Always, false, Verbosity::Normal, false),
            Kind::Bar { force: true }
        );
        assert_eq!(
            choose(Progress::Never, false, Verbosity::Verbose, true),
            Kind::Lines
        );
    }

    #[test]
    fn lines_lose_control_characters() {
        assert_eq!(lines::clean("a\x1b[2Kb\rc\nd"), "a [2Kb c d");
    }
}
