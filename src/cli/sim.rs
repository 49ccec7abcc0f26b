//! `vidbatch sim`: the main structure here is [`SimArgs`], the flags that become a [`SimConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use vidbatch_sim::{BalanceErrorStatus, RetryAfterFormat, Sim, SimConfig, SimHandle};

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("a rate must be between 0 and 1".to_string())
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::manifest::run::parse_duration_arg(s)
}

fn parse_retry_after(s: &str) -> Result<RetryAfterFormat, String> {
    match s {
        "seconds" => Ok(RetryAfterFormat::Seconds),
        "http-date" => Ok(RetryAfterFormat::HttpDate),
        _ => Err("must be seconds or http-date".to_string()),
    }
}

fn parse_balance_status(s: &str) -> Result<BalanceErrorStatus, String> {
    match s {
        "402" => Ok(BalanceErrorStatus::PaymentRequired),
        "429" => Ok(BalanceErrorStatus::QuotaExhausted),
        _ => Err("must be 402 or 429".to_string()),
    }
}

fn parse_time_scale(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a positive number".to_string())
    }
}

/// Command-line flags of `vidbatch sim`; [`SimArgs::config`] turns them into a [`SimConfig`].
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port; the base URL is printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Accepted API key (repeatable); none given: any non-empty bearer key is accepted.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// Starting balance of every account in tokens (default unlimited).
    #[arg(long, value_name = "TOKENS")]
    pub balance: Option<u64>,
    /// Status of the answer to a create beyond the balance: 402 (insufficient_balance) or 429 (insufficient_quota).
    #[arg(long, value_name = "402|429", default_value = "402", value_parser = parse_balance_status)]
    pub balance_error_status: BalanceErrorStatus,
    /// Requests per real minute per key on /v1 endpoints (0 = unlimited).
    #[arg(long, default_value_t = 300)]
    pub rpm: u32,
    /// Rate limiter burst (token-bucket capacity); default one second's worth of --rpm, at least 1.
    #[arg(long, value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Let refused requests cost nothing (by default a refused request still takes a token, as
    /// with providers that count unsuccessful requests against the limit)
    #[arg(long)]
    pub forgive_refused: bool,
    /// Send Retry-After on rate-limited answers, as whole seconds or an HTTP date (default: never).
    #[arg(long, value_name = "seconds|http-date", value_parser = parse_retry_after)]
    pub retry_after: Option<RetryAfterFormat>,
    /// Tasks processing at once per account; the rest wait queued (FIFO).
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Queued tasks allowed per account; more is 429 too_many_queued_tasks.
    #[arg(long, default_value_t = 120)]
    pub max_queued: usize,
    /// Fixed generation time (simulated), e.g. 60s; default drawn like the real service.
    #[arg(long, value_parser = parse_duration)]
    pub gen_time: Option<Duration>,
    /// With --gen-time: each task's generation time is drawn uniformly up to this (simulated).
    #[arg(long, value_parser = parse_duration, requires = "gen_time")]
    pub gen_time_max: Option<Duration>,
    /// Multiplier from simulated to real time (1.0 = real durations).
    #[arg(long, default_value_t = 1.0, value_parser = parse_time_scale)]
    pub time_scale: f64,
    /// How long completed tasks keep their video before turning expired (simulated).
    #[arg(long, default_value = "7days", value_parser = parse_duration)]
    pub asset_ttl: Duration,
    /// Lifetime of a presigned video URL (simulated).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub url_ttl: Duration,
    /// Seed of every random decision.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of tasks that end failed.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,
    /// Fraction of /v1 requests answered 500/503 upstream_error.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,
    /// Fraction of /v1 requests whose connection is closed without an answer.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub drop_rate: f64,
    /// Fraction of /v1 requests answered by a proxy's HTML 502 page that echoes the request
    /// headers (the API key included).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub proxy_echo_rate: f64,
    /// Fraction of creates that record the task, then close the connection without an answer.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub ambiguous_create_rate: f64,
    /// Fraction of downloads throttled to --slow-download-bps.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub slow_download_rate: f64,
    /// Throughput of a slow download, bytes per second.
    #[arg(long, default_value_t = 256 * 1024)]
    pub slow_download_bps: u64,
    /// Fraction of downloads cut off mid-body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub cut_download_rate: f64,
    /// Fraction of issued video URLs that are already expired.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub short_url_rate: f64,
    /// Fraction of answers where a completed task reads "succeeded".
    #[arg(long, default_value_t = 0.25, value_parser = parse_rate)]
    pub succeeded_rate: f64,
    /// Delay added to every /v1 answer (real time), e.g. 2s.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub latency: Duration,
    /// Size of every served video in bytes (padded, streamed), e.g. 1000000000.
    #[arg(long, value_name = "BYTES")]
    pub video_size: Option<u64>,
    /// Honour the Idempotency-Key header on create (default: ignored, the harsher case).
    #[arg(long)]
    pub honour_idempotency_key: bool,
    /// List answers carry video URLs for completed tasks (default: only a task's own read does).
    #[arg(long)]
    pub list_urls: bool,
    /// List answers show each task's seed (default: only a task's own read does).
    #[arg(long)]
    pub list_seeds: bool,
    /// Real time a new task takes to show in lists, e.g. 2s (lists are eventually consistent).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub list_lag: Duration,
    /// Seconds the server's clock runs ahead of the real one (negative: behind), e.g. -7200.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub clock_offset: f64,
    /// Chance per create that another client on the key makes a look-alike task right after.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub lookalike_rate: f64,
    /// Fraction of completed tasks asked for a last frame that give none.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub missing_last_frame_rate: f64,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            api_keys: self.api_keys.clone(),
            balance: self.balance,
            balance_error_status: self.balance_error_status,
            rpm: self.rpm,
            rate_burst: self.rate_burst,
            charge_refused: !self.forgive_refused,
            retry_after: self.retry_after,
            concurrency: self.concurrency.max(1),
            max_queued: self.max_queued,
            gen_time: self.gen_time,
            gen_time_max: self.gen_time_max,
            time_scale: self.time_scale,
            asset_ttl: self.asset_ttl,
            url_ttl: self.url_ttl,
            seed: self.seed,
            fail_rate: self.fail_rate,
            error_rate: self.error_rate,
            drop_rate: self.drop_rate,
            proxy_echo_rate: self.proxy_echo_rate,
            ambiguous_create_rate: self.ambiguous_create_rate,
            slow_download_rate: self.slow_download_rate,
            slow_download_bps: self.slow_download_bps.max(1),
            cut_download_rate: self.cut_download_rate,
            short_url_rate: self.short_url_rate,
            succeeded_rate: self.succeeded_rate,
            latency: self.latency,
            video_size: self.video_size,
            honour_idempotency_key: self.honour_idempotency_key,
            list_urls: self.list_urls,
            list_seeds: self.list_seeds,
            list_lag: self.list_lag,
            clock_offset_secs: self.clock_offset,
            lookalike_rate: self.lookalike_rate,
            missing_last_frame_rate: self.missing_last_frame_rate,
        }
    }
}

/// Run `vidbatch sim`: listen, print the base URL as the first line of stdout, serve until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let handle = Sim::bind(args.listen, args.config()).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", handle.base_url())?;
        out.flush()?;
    }
    tracing::info!(addr = %handle.addr(), "simulator listening");
    super::wait_signal().await;
    handle.shutdown().await;
    Ok(())
}

/// What keeps the simulator `--sim` started serving while a command runs.
pub(super) type EmbeddedSim = SimHandle;

/// Starts the simulator `--sim` runs against (fast, roomy, fault-free): its base URL and handle.
pub(super) async fn start_embedded() -> anyhow::Result<(String, EmbeddedSim)> {
    let config = SimConfig {
        time_scale: 0.01,
        rpm: 1200,
        concurrency: 10,
        ..SimConfig::default()
    };
    let sim = Sim::start(config)
        .await
        .context("starting the embedded simulator")?;
    Ok((sim.base_url(), sim))
}
