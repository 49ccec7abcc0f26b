//! A run's settings: the main structures here are [`RunSettings`] and [`SettingLayer`], the
//! settings one source (flags, the earlier run, the manifest) gives.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RetryPolicy;

/// Settings of a run (never the key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSettings {
    /// Out dir.
    pub out_dir: PathBuf,
    /// API requests per minute.
    pub rpm: u32,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
    /// Tasks queued or processing on the server at once.
    pub concurrency: Concurrency,
    /// Downloads at once.
    pub download_concurrency: usize,
    /// Retries of a transient failure.
    pub max_retries: u32,
    /// Shortest interval between sweeps of the task list.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// Longest a job may take from its create to its video (vidbatch's own clock).
    #[serde(with = "duration_text")]
    pub job_timeout: Duration,
    /// Stop submitting after this many failures.
    pub max_fail: Option<u32>,
    /// Stop submitting when estimated tokens would pass this.
    pub budget_tokens: Option<u64>,
    /// Retry jobs that failed in earlier runs.
    pub retry_failed: bool,
    /// Cancel tasks in flight on Ctrl-C.
    pub cancel_on_interrupt: bool,
    /// Whether the run is against the simulator `--sim` starts in-process, whose tasks live only
    /// as long as the run.
    pub embedded_sim: bool,
    /// Whether the tasks the earlier run left on the server are gone (it too ran against an
    /// embedded simulator): its jobs still on the server are made again.
    #[serde(skip)]
    pub earlier_tasks_gone: bool,
    /// Largest video accepted, in bytes.
    pub max_video_bytes: u64,
    /// Backoff of retries.
    #[serde(skip)]
    pub retry: RetryPolicy,
}

impl RunSettings {
    /// Settings with the documented defaults, writing to `out_dir`.
    pub fn new(out_dir: impl Into<PathBuf>) -> RunSettings {
        RunSettings {
            out_dir: out_dir.into(),
            rpm: 60,
            burst: 5,
            concurrency: Concurrency::Auto,
            download_concurrency: 4,
            max_retries: 5,
            poll_interval: Duration::from_secs(3),
            job_timeout: Duration::from_secs(3600),
            max_fail: None,
            budget_tokens: None,
            retry_failed: false,
            cancel_on_interrupt: false,
            embedded_sim: false,
            earlier_tasks_gone: false,
            max_video_bytes: 4 << 30,
            retry: RetryPolicy::new(5),
        }
    }
}

/// How many tasks a run keeps queued or processing on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Learn the account's processing slots from the lists and keep a small queue ahead.
    Auto,
    /// At most this many, whatever the account could take (still learned below it).
    Max(usize),
}

impl Concurrency {
    /// The hard cap, when one is set.
    pub fn cap(self) -> Option<usize> {
        match self {
            Concurrency::Auto => None,
            Concurrency::Max(n) => Some(n.max(1)),
        }
    }
}

impl std::str::FromStr for Concurrency {
    type Err = String;

    fn from_str(s: &str) -> Result<Concurrency, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Concurrency::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Concurrency::Max(n)),
            _ => Err(format!("`{s}` is not `auto` or a number of tasks above 0")),
        }
    }
}

impl std::fmt::Display for Concurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Concurrency::Auto => f.write_str("auto"),
            Concurrency::Max(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Concurrency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Concurrency, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(usize),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Concurrency::Max(n.max(1))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Concurrency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Concurrency::Auto => s.serialize_str("auto"),
            Concurrency::Max(n) => s.serialize_u64(*n as u64),
        }
    }
}

mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// Some of a run's settings, each one given or not: what the flags say, what the earlier run
/// used, what the manifest's `run:` section says. A run's settings are the first layer that
/// gives each one, over the defaults ([`SettingLayer::over`]). The earlier run's layer is read
/// back from the `settings` it recorded, by the same field names [`RunSettings`] writes (a test
/// holds the two together).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SettingLayer {
    /// `--rpm`.
    #[serde(deserialize_with = "lenient")]
    pub rpm: Option<u32>,
    /// `--burst`.
    #[serde(deserialize_with = "lenient")]
    pub burst: Option<u32>,
    /// `--concurrency`.
    #[serde(deserialize_with = "lenient")]
    pub concurrency: Option<Concurrency>,
    /// `--download-concurrency`.
    #[serde(deserialize_with = "lenient")]
    pub download_concurrency: Option<usize>,
    /// `--max-retries`.
    #[serde(deserialize_with = "lenient")]
    pub max_retries: Option<u32>,
    /// `--poll-interval`.
    #[serde(deserialize_with = "lenient_duration")]
    pub poll_interval: Option<Duration>,
    /// `--job-timeout`.
    #[serde(deserialize_with = "lenient_duration")]
    pub job_timeout: Option<Duration>,
    /// `--max-fail`.
    #[serde(deserialize_with = "lenient")]
    pub max_fail: Option<u32>,
    /// `--budget-tokens`.
    #[serde(deserialize_with = "lenient")]
    pub budget_tokens: Option<u64>,
}

/// A field of an earlier run's settings that no longer reads is taken as not given, and the
/// other fields still apply.
fn lenient<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// A duration as [`RunSettings`] writes it (`"3s"`), capped like one given on the command line.
fn lenient_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value
        .as_str()
        .and_then(|s| humantime::parse_duration(s).ok())
        .map(|d| d.min(crate::manifest::run::MAX_DURATION)))
}

impl SettingLayer {
    /// The layer an earlier run recorded in its `run_started` event.
    pub fn recorded(settings: &serde_json::Value) -> SettingLayer {
        SettingLayer::deserialize(settings).unwrap_or_default()
    }

    /// Each setting from `self`, else from `below`.
    pub fn or(self, below: SettingLayer) -> SettingLayer {
        SettingLayer {
            rpm: self.rpm.or(below.rpm),
            burst: self.burst.or(below.burst),
            concurrency: self.concurrency.or(below.concurrency),
            download_concurrency: self.download_concurrency.or(below.download_concurrency),
            max_retries: self.max_retries.or(below.max_retries),
            poll_interval: self.poll_interval.or(below.poll_interval),
            job_timeout: self.job_timeout.or(below.job_timeout),
            max_fail: self.max_fail.or(below.max_fail),
            budget_tokens: self.budget_tokens.or(below.budget_tokens),
        }
    }

    /// The settings of `self` that `above` does not give.
    pub fn hidden_by(self, above: &SettingLayer) -> SettingLayer {
        fn keep<T>(mine: Option<T>, theirs: &Option<impl Sized>) -> Option<T> {
            mine.filter(|_| theirs.is_none())
        }
        SettingLayer {
            rpm: keep(self.rpm, &above.rpm),
            burst: keep(self.burst, &above.burst),
            concurrency: keep(self.concurrency, &above.concurrency),
            download_concurrency: keep(self.download_concurrency, &above.download_concurrency),
            max_retries: keep(self.max_retries, &above.max_retries),
            poll_interval: keep(self.poll_interval, &above.poll_interval),
            job_timeout: keep(self.job_timeout, &above.job_timeout),
            max_fail: keep(self.max_fail, &above.max_fail),
            budget_tokens: keep(self.budget_tokens, &above.budget_tokens),
        }
    }

    /// The settings of `self` that differ from `settings`.
    pub fn unlike(self, settings: &RunSettings) -> SettingLayer {
        fn keep<T: PartialEq>(mine: Option<T>, theirs: T) -> Option<T> {
            mine.filter(|v| *v != theirs)
        }
        SettingLayer {
            rpm: keep(self.rpm, settings.rpm),
            burst: keep(self.burst, settings.burst),
            concurrency: keep(self.concurrency, settings.concurrency),
            download_concurrency: keep(self.download_concurrency, settings.download_concurrency),
            max_retries: keep(self.max_retries, settings.max_retries),
            poll_interval: keep(self.poll_interval, settings.poll_interval),
            job_timeout: keep(self.job_timeout, settings.job_timeout),
            max_fail: self.max_fail.filter(|v| Some(*v) != settings.max_fail),
            budget_tokens: self.budget_tokens.filter(|v| Some(*v) != settings.budget_tokens),
        }
    }

    /// The settings given, as the flags that give them: `--rpm 77`.
    pub fn as_flags(&self) -> Vec<String> {
        let duration = |d: &Duration| humantime::format_duration(*d).to_string();
        [
            ("--rpm", self.rpm.map(|v| v.to_string())),
            ("--burst", self.burst.map(|v| v.to_string())),
            ("--concurrency", self.concurrency.map(|v| v.to_string())),
            (
                "--download-concurrency",
                self.download_concurrency.map(|v| v.to_string()),
            ),
            ("--max-retries", self.max_retries.map(|v| v.to_string())),
            ("--poll-interval", self.poll_interval.as_ref().map(duration)),
            ("--job-timeout", self.job_timeout.as_ref().map(duration)),
            ("--max-fail", self.max_fail.map(|v| v.to_string())),
            ("--budget-tokens", self.budget_tokens.map(|v| v.to_string())),
        ]
        .into_iter()
        .filter_map(|(flag, value)| Some(format!("{flag} {}", value?)))
        .collect()
    }

    /// `defaults` with every setting this layer gives.
    pub fn over(self, defaults: RunSettings) -> RunSettings {
        let max_retries = self.max_retries.unwrap_or(defaults.max_retries);
        RunSettings {
            rpm: self.rpm.unwrap_or(defaults.rpm),
            burst: self.burst.unwrap_or(defaults.burst),
            concurrency: self.concurrency.unwrap_or(defaults.concurrency),
            download_concurrency: self.download_concurrency.unwrap_or(defaults.download_concurrency),
            max_retries,
            poll_interval: self.poll_interval.unwrap_or(defaults.poll_interval),
            job_timeout: self.job_timeout.unwrap_or(defaults.job_timeout),
            max_fail: self.max_fail.or(defaults.max_fail),
            budget_tokens: self.budget_tokens.or(defaults.budget_tokens),
            retry: RetryPolicy {
                max_retries,
                ..defaults.retry
            },
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_setting() -> SettingLayer {
        SettingLayer {
            rpm: Some(77),
            burst: Some(3),
            concurrency: Some(Concurrency::Max(12)),
            download_concurrency: Some(2),
            max_retries: Some(9),
            poll_interval: Some(Duration::from_millis(1500)),
            job_timeout: Some(Duration::from_secs(5400)),
            max_fail: Some(4),
            budget_tokens: Some(1_000_000),
        }
    }

    #[test]
    fn every_setting_a_run_records_reads_back_the_same() {
        let settings = every_setting().over(RunSettings::new("out"));
        let recorded = serde_json::to_value(&settings).unwrap();
        assert_eq!(SettingLayer::recorded(&recorded), every_setting());
    }

    #[test]
    fn one_setting_that_no_longer_reads_leaves_the_others() {
        let recorded = serde_json::json!({"rpm": "fast", "burst": 4, "concurrency": "auto",
            "poll_interval": "1 fortnight", "job_timeout": "2h", "max_fail": -1});
        let layer = SettingLayer::recorded(&recorded);
        assert_eq!(layer.rpm, None);
        assert_eq!(layer.burst, Some(4));
        assert_eq!(layer.concurrency, Some(Concurrency::Auto));
        assert_eq!(layer.poll_interval, None);
        assert_eq!(layer.job_timeout, Some(Duration::from_secs(7200)));
        assert_eq!(layer.max_fail, None);
        assert_eq!(
            SettingLayer::recorded(&serde_json::json!("not a map")),
            SettingLayer::default()
        );
    }

    #[test]
    fn the_first_layer_giving_a_setting_wins_and_says_what_it_hid() {
        let flags = SettingLayer {
            rpm: Some(100),
            ..SettingLayer::default()
        };
        let earlier = every_setting();
        let manifest = SettingLayer {
            rpm: Some(5),
            burst: Some(1),
            ..SettingLayer::default()
        };
        let settings = flags
            .clone()
            .or(earlier.clone())
            .or(manifest)
            .over(RunSettings::new("out"));
        assert_eq!((settings.rpm, settings.burst), (100, 3));
        assert_eq!(settings.max_fail, Some(4));
        assert_eq!(settings.retry, RetryPolicy::new(9));
        let kept = earlier.clone().hidden_by(&flags).as_flags();
        assert_eq!(kept.len(), 8, "{kept:?}");
        assert!(kept.contains(&"--poll-interval 1s 500ms".to_string()), "{kept:?}");
        assert!(!kept.iter().any(|f| f.starts_with("--rpm")));
        let mut defaults = RunSettings::new("out");
        defaults.burst = 3;
        defaults.max_fail = Some(4);
        let changed = earlier.hidden_by(&flags).unlike(&defaults).as_flags();
        assert_eq!(
            changed.len(),
            6,
            "what the defaults give anyway is not news: {changed:?}"
        );
    }
}
