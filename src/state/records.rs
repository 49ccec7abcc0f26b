//! The records a run state holds and events carry: failures, outcomes, counters and the
//! manifests a run read.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A manifest file and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceRecord {
    /// Path as given.
    pub path: String,
    /// sha256 of its bytes.
    pub sha256: String,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// HTTP status, when an answer carried it.
    pub http_status: Option<u16>,
    /// The API's error code, when it gave one.
    pub code: Option<String>,
    /// What happened.
    pub message: String,
}

/// The kinds of job failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The API refused the request (400, 404, ...).
    Rejected,
    /// The task ended `failed` on the server.
    TaskFailed,
    /// The task or its asset expired.
    Expired,
    /// The task was cancelled.
    Cancelled,
    /// The job ran past `--job-timeout` and was cancelled.
    TimedOut,
    /// Create kept failing.
    SubmitFailed,
    /// The task could not be read; it still exists and a later run polls it again.
    PollFailed,
    /// The video could not be fetched; it still exists and a later run fetches it again.
    DownloadFailed,
    /// Never created: a job it refers to (`job://`) failed or cannot give what it needs.
    Blocked,
}

impl FailureKind {
    /// Whether a later run picks the job up again by itself (no new generation needed).
    pub fn resumes_by_itself(self) -> bool {
        matches!(self, FailureKind::PollFailed | FailureKind::DownloadFailed)
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Rejected => "rejected",
            FailureKind::TaskFailed => "task_failed",
            FailureKind::Expired => "expired",
            FailureKind::Cancelled => "cancelled",
            FailureKind::TimedOut => "timed_out",
            FailureKind::SubmitFailed => "submit_failed",
            FailureKind::PollFailed => "poll_failed",
            FailureKind::DownloadFailed => "download_failed",
            FailureKind::Blocked => "blocked",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every job of the plan is done.
    Success,
    /// The run finished but some jobs are not done.
    SomeFailed,
    /// `--max-fail` or `--budget-tokens` stopped submissions before every job was submitted.
    Stopped,
    /// A fatal API condition (401, 402) stopped it.
    Fatal,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// A local failure (disk full, out dir not writable) stopped it; what was sent is recorded
    /// as far as the disk allowed.
    LocalFailure,
}

/// Counts a run keeps for its report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counters {
    /// API requests sent (downloads excluded).
    pub api_requests: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Requests and downloads tried again.
    pub retries: u64,
    /// Creates sent.
    pub creates: u64,
    /// Creates whose answer was lost.
    pub ambiguous_creates: u64,
    /// Tasks found by listing after a lost answer.
    pub reconciled: u64,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
    /// List requests (status sweeps and searches for lost creates).
    #[serde(default)]
    pub lists: u64,
    /// Reads of one task (status, fresh URL).
    #[serde(default)]
    pub reads: u64,
    /// Cancels sent.
    #[serde(default)]
    pub cancels: u64,
    /// The account's processing slots, as learned from the lists (the latest run's).
    #[serde(default)]
    pub slots: Option<u64>,
}

impl Counters {
    /// Adds `other`'s counts to these. The learned slots are the caller's to choose: a later
    /// run's replace an earlier one's, and shards of one account share theirs.
    pub fn add_counts(&mut self, other: &Counters) {
        self.api_requests += other.api_requests;
        self.rate_limited += other.rate_limited;
        self.retries += other.retries;
        self.creates += other.creates;
        self.ambiguous_creates += other.ambiguous_creates;
        self.reconciled += other.reconciled;
        self.bytes_downloaded += other.bytes_downloaded;
        self.lists += other.lists;
        self.reads += other.reads;
        self.cancels += other.cancels;
    }
}
