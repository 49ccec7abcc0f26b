//! What the simulator counts: the main structure here is [`SimStats`], also served as `GET /_sim/stats`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts of each injected fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Injected 500/503 answers.
    pub errors: u64,
    /// Connections closed without an answer (nothing done).
    pub drops: u64,
    /// Creates whose task was recorded, then the connection closed without an answer.
    pub ambiguous_creates: u64,
    /// Downloads cut off mid-body.
    pub cut_downloads: u64,
    /// Downloads throttled.
    pub slow_downloads: u64,
    /// Issued video URLs that were already expired.
    pub short_urls: u64,
    /// Tasks that ended `failed`.
    pub failed_tasks: u64,
    /// Proxy 502 pages sent that echo the request headers.
    #[serde(default)]
    pub proxy_echoes: u64,
}

/// A snapshot of the simulator's counters. All counts are exact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// The seed of every random decision.
    pub seed: u64,
    /// Requests by endpoint (`models`, `create`, `get`, `list`, `cancel`, `download`, `other`) and
    /// answer status (`"202"`, `"429"`, ...); `"dropped"` counts connections closed without an answer
    /// (dropped requests and ambiguous creates).
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// 429s sent by the request rate limiter (`rate_limit_exceeded` only).
    pub rate_limited: u64,
    /// 429s sent because the account had too many queued tasks (`too_many_queued_tasks`).
    pub queue_full: u64,
    /// Creates refused for lack of balance (402 `insufficient_balance` or 429 `insufficient_quota`).
    pub balance_refusals: u64,
    /// Tasks created (including ambiguous creates; not idempotent replays).
    pub tasks_created: u64,
    /// Current tasks by internal status (`completed` also covers answers that read `succeeded`).
    pub tasks_by_status: BTreeMap<String, u64>,
    /// Created tasks whose canonical JSON body equals an earlier created task's body of the same key.
    pub duplicate_creates: u64,
    /// Creates answered with an earlier task because of a repeated `Idempotency-Key` (when honoured).
    pub idempotent_replays: u64,
    /// Most tasks processing at once in one account.
    pub max_processing: u64,
    /// Most tasks queued or processing at once in one account.
    pub max_queued_or_processing: u64,
    /// Tasks made by the simulated other client on the same key (`lookalike_rate`), counted in
    /// `tasks_created` too.
    #[serde(default)]
    pub lookalike_tasks: u64,
    /// Real seconds of generation of every task created (for the benchmarks' lower bounds).
    #[serde(default)]
    pub generation_seconds: f64,
    /// Body bytes of downloads handed to connections.
    pub bytes_served: u64,
    /// Counts of each injected fault.
    pub faults: FaultStats,
    /// Remaining balance per account (`acct_` + 8 hex digits of the key's SHA-256); `null` = unlimited.
    pub balances: BTreeMap<String, Option<u64>>,
}

impl SimStats {
    /// Requests of `endpoint` answered with `status` (`"dropped"` for no answer).
    pub fn count(&self, endpoint: &str, status: &str) -> u64 {
        self.requests
            .get(endpoint)
            .and_then(|m| m.get(status))
            .copied()
            .unwrap_or(0)
    }

    /// All requests of `endpoint`, whatever the answer.
    pub fn total(&self, endpoint: &str) -> u64 {
        self.requests.get(endpoint).map_or(0, |m| m.values().sum())
    }

    /// Tasks currently in `status` (`queued`, `processing`, `completed`, `failed`, `expired`, `cancelled`).
    pub fn tasks_in(&self, status: &str) -> u64 {
        self.tasks_by_status.get(status).copied().unwrap_or(0)
    }

    pub(crate) fn record(&mut self, endpoint: &str, status: &str) {
        *self
            .requests
            .entry(endpoint.to_string())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
    }
}
