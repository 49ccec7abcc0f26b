//! Exit codes of every command, in one place; the main function here is [`code_of`].
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (for `run`: every job of the plan done); also when stdout is closed early (`\| head`) |
//! | 1 | the run finished with jobs of the plan not done; any other failure of a command |
//! | 2 | usage: a bad flag or manifest, no API key, no run state in the out dir, the out dir in use |
//! | 3 | a fatal API condition: 401 (bad key), 402 (balance) |
//! | 4 | a local failure: disk full, a file not writable, a damaged state file |
//! | 130 | interrupted |
//!
//! A run's outcome maps through [`of_run`]; a command's error through
//! [`CommandError::exit_code`], by what the error is, never by its text.

use crate::api::ApiError;
use crate::events::RunOutcome;
use crate::journal::JournalError;
use crate::outdir::LockError;

/// Every job done; or a command that did what it was asked.
pub const SUCCESS: i32 = 0;
/// A run finished with jobs of its plan not done, or a command failed otherwise.
pub const FAILURE: i32 = 1;
/// Usage or manifest error: nothing was submitted.
pub const USAGE: i32 = 2;
/// A fatal API condition (401, 402).
pub const FATAL_API: i32 = 3;
/// A local failure (disk, file permissions, damaged state).
pub const LOCAL_FAILURE: i32 = 4;
/// Interrupted by Ctrl-C or SIGTERM.
pub const INTERRUPTED: i32 = 130;

/// The process exit code SPEC gives a run's outcome.
pub fn of_run(outcome: RunOutcome) -> i32 {
    match outcome {
        RunOutcome::Success => SUCCESS,
        RunOutcome::SomeFailed | RunOutcome::Stopped => FAILURE,
        RunOutcome::Fatal => FATAL_API,
        RunOutcome::Interrupted => INTERRUPTED,
        RunOutcome::LocalFailure => LOCAL_FAILURE,
    }
}

/// A usage error: what the user asked for cannot be done as asked (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// How a command's error ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Stdout was closed by its reader (`vidbatch status | head -1`): end at once, say nothing,
    /// exit 0.
    Quiet,
    /// Print the error and exit with this code.
    Code(i32),
}

/// Whether an I/O error is a closed pipe on the other end.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// A command that could not do what it was asked: the command line's one error type. What
/// caused it, looked up along its chain (a usage mistake, an API refusal, the out dir's lock,
/// the disk, a closed stdout), decides how the process ends in [`CommandError::exit_code`], the
/// only mapping of errors to exit codes.
#[derive(Debug)]
pub struct CommandError(pub anyhow::Error);

impl From<anyhow::Error> for CommandError {
    fn from(e: anyhow::Error) -> CommandError {
        CommandError(e)
    }
}

/// The error and its causes, `: ` between them; a cause whose text the message already holds
/// (an error that names its own source, `state file X: Is a directory`) is said once.
impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        for cause in self.0.chain().skip(1) {
            let text = cause.to_string();
            if !said.contains(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
        }
        f.write_str(&said)
    }
}

impl CommandError {
    /// How the error ends the process.
    pub fn exit_code(&self) -> Ending {
        code_of(&self.0)
    }
}

/// How `error` ends the process: its cause, looked up along its chain.
fn code_of(error: &anyhow::Error) -> Ending {
    for cause in error.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && is_broken_pipe(io)
        {
            return Ending::Quiet;
        }
        if let Some(json) = cause.downcast_ref::<serde_json::Error>()
            && json.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe)
        {
            return Ending::Quiet;
        }
    }
    for cause in error.chain() {
        if cause.is::<Usage>() {
            return Ending::Code(USAGE);
        }
        match cause.downcast_ref::<ApiError>() {
            Some(ApiError::Unauthorized(_) | ApiError::Payment(_)) => return Ending::Code(FATAL_API),
            Some(_) => return Ending::Code(FAILURE),
            None => {}
        }
        match cause.downcast_ref::<LockError>() {
            Some(LockError::Held { .. }) => return Ending::Code(USAGE),
            Some(LockError::Io { .. }) => return Ending::Code(LOCAL_FAILURE),
            None => {}
        }
        if cause.is::<JournalError>() {
            return Ending::Code(LOCAL_FAILURE);
        }
        if cause.is::<std::io::Error>() {
            return Ending::Code(LOCAL_FAILURE);
        }
    }
    Ending::Code(FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_anywhere_in_the_chain_ends_quietly() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the status");
        assert_eq!(code_of(&e), Ending::Quiet);
    }

    #[test]
    fn a_cause_the_message_already_names_is_said_once() {
        let source = std::io::Error::from(std::io::ErrorKind::IsADirectory);
        let cause = source.to_string();
        let io = crate::journal::JournalError::Io {
            path: "out/state.jsonl".into(),
            source,
        };
        let said = CommandError(anyhow::Error::new(io).context("status")).to_string();
        assert_eq!(said.matches(&cause).count(), 1, "{said}");
        assert!(said.starts_with("status: state file out/state.jsonl: "), "{said}");
    }

    #[test]
    fn usage_io_and_other_errors_get_their_codes() {
        let usage = anyhow::Error::new(Usage("no run state".into())).context("status");
        assert_eq!(code_of(&usage), Ending::Code(USAGE));
        let disk = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(code_of(&disk), Ending::Code(LOCAL_FAILURE));
        assert_eq!(code_of(&anyhow::anyhow!("something")), Ending::Code(FAILURE));
    }
}
