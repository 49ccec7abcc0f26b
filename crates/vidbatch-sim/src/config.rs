//! Knobs of the simulator: the main structure here is [`SimConfig`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the simulator answers a create whose cost exceeds the account's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BalanceErrorStatus {
    /// `402 Payment Required` with code `insufficient_balance` (the documented answer).
    #[default]
    PaymentRequired,
    /// `429 Too Many Requests` with code `insufficient_quota`: the "quota exhausted" 429 that is not transient.
    QuotaExhausted,
}

/// The form of the `Retry-After` header on rate-limited answers, when one is sent at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryAfterFormat {
    /// Whole seconds, rounded up (`Retry-After: 2`).
    Seconds,
    /// An HTTP date, rounded up to the next whole second (`Retry-After: Sun, 06 Nov 1994 08:49:37 GMT`).
    HttpDate,
}

/// The longest real wait a scaled duration becomes (a year): later instants stay representable.
const LONGEST: Duration = Duration::from_secs(365 * 86_400);

/// Every knob of the simulator. `Default` is a clean, fault-free simulator with sensible limits.
///
/// Rates are fractions in `0.0..=1.0`. Durations marked "simulated" are multiplied by
/// [`SimConfig::time_scale`] before they take effect in real time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Accepted API keys; empty: any non-empty bearer key is accepted (each key is its own account).
    pub api_keys: Vec<String>,
    /// Starting balance of every account in tokens; `None` = unlimited.
    pub balance: Option<u64>,
    /// How a create beyond the balance is answered.
    pub balance_error_status: BalanceErrorStatus,
    /// Requests per real minute per key on `/v1` endpoints; 0 = unlimited.
    pub rpm: u32,
    /// Token-bucket capacity of the rate limiter; `None` = one second's worth of `rpm`, at least 1.
    pub rate_burst: Option<u32>,
    /// A refused request still takes a token: the bucket goes into debt, down to minus one burst,
    /// so a client that keeps sending while refused stays refused, as providers that count
    /// unsuccessful requests against the limit do. `false`: a refusal costs nothing.
    pub charge_refused: bool,
    /// Send `Retry-After` on rate-limited answers, in this form; `None` = never (the default: not promised).
    pub retry_after: Option<RetryAfterFormat>,
    /// Tasks processing at once per account; the rest wait `queued`, first in first out.
    pub concurrency: usize,
    /// Queued (not processing) tasks allowed per account; a create beyond it is `429 too_many_queued_tasks`.
    pub max_queued: usize,
    /// Fixed generation time (simulated); `None` = drawn like the real service (mostly 30-120 s, 1080p longer, clamped to 30..300 s).
    pub gen_time: Option<Duration>,
    /// With [`SimConfig::gen_time`], each task's generation time is drawn uniformly between that
    /// and this (simulated).
    pub gen_time_max: Option<Duration>,
    /// Multiplier from simulated to real time: 1.0 = real durations, tests use 0.001-0.01.
    pub time_scale: f64,
    /// How long a completed task keeps its asset before it becomes `expired` (simulated).
    pub asset_ttl: Duration,
    /// Lifetime of each presigned download URL (simulated).
    pub url_ttl: Duration,
    /// Seed of every random decision (faults, generation times, ids).
    pub seed: u64,
    /// Fraction of tasks that end `failed` (refunded).
    pub fail_rate: f64,
    /// Fraction of `/v1` requests answered 500 or 503 `upstream_error` before doing any work.
    pub error_rate: f64,
    /// Fraction of `/v1` requests whose connection is closed without any answer, before doing any work.
    pub drop_rate: f64,
    /// Fraction of `/v1` requests answered, before any work, by a proxy's HTML `502 Bad Gateway`
    /// page that echoes the request's headers, `Authorization` included (as some proxies'
    /// debug pages do): server text that holds the key.
    pub proxy_echo_rate: f64,
    /// Fraction of accepted creates whose task is recorded (charged, will run) and then the connection is closed without an answer.
    pub ambiguous_create_rate: f64,
    /// Fraction of downloads throttled to [`SimConfig::slow_download_bps`].
    pub slow_download_rate: f64,
    /// Throughput of a slow download in bytes per second.
    pub slow_download_bps: u64,
    /// Fraction of downloads that send the headers with the full `Content-Length`, part of the body, then close the connection.
    pub cut_download_rate: f64,
    /// Fraction of issued download URLs that are already expired when issued (the task still reports the normal TTL).
    pub short_url_rate: f64,
    /// Fraction of answers showing a completed task whose status reads `succeeded` instead of `completed`.
    pub succeeded_rate: f64,
    /// Delay (real time) added to every `/v1` answer, after the work is done.
    pub latency: Duration,
    /// Size in bytes of every served video (padded with a `free` box and streamed); `None` = the small clip.
    pub video_size: Option<u64>,
    /// Honour `Idempotency-Key` on create (a repeated key of the same account returns the original task).
    pub honour_idempotency_key: bool,
    /// List answers carry `video_url` for completed tasks (default: only a task's own GET does, the
    /// harsher case).
    pub list_urls: bool,
    /// List answers show each task's `seed` (default: only a task's own GET does, the harsher
    /// case: a client can tell its task in a list only by reading it).
    pub list_seeds: bool,
    /// Real time a new task takes to show in list answers (lists are eventually consistent).
    pub list_lag: Duration,
    /// Seconds the server's clock is ahead of the real one (negative: behind). Every timestamp
    /// the server gives (tasks, URL expiries, the `Date` header) is on its clock.
    pub clock_offset_secs: f64,
    /// Chance, per create, that another client on the same key makes a look-alike task right
    /// after (same model, ratio, resolution, duration; another prompt and its own seed).
    pub lookalike_rate: f64,
    /// Fraction of completed tasks asked for a last frame that give no `last_frame_url` (the
    /// provider promises none).
    pub missing_last_frame_rate: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_keys: Vec::new(),
            balance: None,
            balance_error_status: BalanceErrorStatus::PaymentRequired,
            rpm: 300,
            rate_burst: None,
            charge_refused: true,
            retry_after: None,
            concurrency: 10,
            max_queued: 120,
            gen_time: None,
            gen_time_max: None,
            time_scale: 1.0,
            asset_ttl: Duration::from_secs(7 * 24 * 3600),
            url_ttl: Duration::from_secs(3600),
            seed: 0,
            fail_rate: 0.0,
            error_rate: 0.0,
            drop_rate: 0.0,
            proxy_echo_rate: 0.0,
            ambiguous_create_rate: 0.0,
            slow_download_rate: 0.0,
            slow_download_bps: 256 * 1024,
            cut_download_rate: 0.0,
            short_url_rate: 0.0,
            succeeded_rate: 0.25,
            latency: Duration::ZERO,
            video_size: None,
            honour_idempotency_key: false,
            list_urls: false,
            list_seeds: false,
            list_lag: Duration::ZERO,
            clock_offset_secs: 0.0,
            lookalike_rate: 0.0,
            missing_last_frame_rate: 0.0,
        }
    }
}

impl SimConfig {
    /// Scale a simulated duration to real time.
    pub fn scaled(&self, simulated: Duration) -> Duration {
        Duration::try_from_secs_f64((simulated.as_secs_f64() * self.time_scale).max(0.0)).unwrap_or(LONGEST)
    }

    /// The rate limiter's bucket capacity.
    pub fn effective_burst(&self) -> u32 {
        self.rate_burst.unwrap_or(self.rpm / 60).max(1)
    }
}

/// A partial update of the running simulator's knobs (`POST /_sim/config`); absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfigPatch {
    /// New balance of every account (and of accounts yet to appear); `null` is not accepted, use a large number.
    pub balance: Option<u64>,
    /// New requests per minute per key (0 = unlimited).
    pub rpm: Option<u32>,
    /// New task failure rate.
    pub fail_rate: Option<f64>,
    /// New 5xx rate.
    pub error_rate: Option<f64>,
    /// New dropped-connection rate.
    pub drop_rate: Option<f64>,
    /// New ambiguous-create rate.
    pub ambiguous_create_rate: Option<f64>,
    /// New slow-download rate.
    pub slow_download_rate: Option<f64>,
    /// New cut-download rate.
    pub cut_download_rate: Option<f64>,
    /// New short-URL rate.
    pub short_url_rate: Option<f64>,
    /// New per-account processing cap.
    pub concurrency: Option<usize>,
}

impl SimConfigPatch {
    /// Apply the present fields to `cfg`.
    pub fn apply(&self, cfg: &mut SimConfig) {
        if let Some(v) = self.balance {
            cfg.balance = Some(v);
        }
        if let Some(v) = self.rpm {
            cfg.rpm = v;
        }
        let rates = [
            (self.fail_rate, &mut cfg.fail_rate),
            (self.error_rate, &mut cfg.error_rate),
            (self.drop_rate, &mut cfg.drop_rate),
            (self.ambiguous_create_rate, &mut cfg.ambiguous_create_rate),
            (self.slow_download_rate, &mut cfg.slow_download_rate),
            (self.cut_download_rate, &mut cfg.cut_download_rate),
            (self.short_url_rate, &mut cfg.short_url_rate),
        ];
        for (new, slot) in rates {
            if let Some(v) = new {
                *slot = v.clamp(0.0, 1.0);
            }
        }
        if let Some(v) = self.concurrency {
            cfg.concurrency = v.max(1);
        }
    }
}
