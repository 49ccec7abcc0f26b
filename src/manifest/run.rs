//! The manifest's optional `run:` section: run settings that sit between environment variables
//! and built-in defaults.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diag::Diagnostic;
use super::fields::unknown_key;
use super::yaml::{Node, Value};

/// Run settings from a manifest's `run:` block; every one optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// API requests per minute (token bucket rate), at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Token bucket size (requests allowed at once), at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Tasks queued or processing on the server at once, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Downloads at once, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_concurrency: Option<u32>,
    /// Retries of a transient failure per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Time between polls of a task, e.g. `3s` (a number means seconds).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub poll_interval: Option<Duration>,
    /// Longest a job may take from submission to download, e.g. `20m`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub job_timeout: Option<Duration>,
    /// Stop submitting after this many failed jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fail: Option<u64>,
    /// Stop submitting once the estimated tokens would exceed this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Output directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
}

/// The keys of `run:`.
pub const RUN_KEYS: &[&str] = &[
    "rpm",
    "burst",
    "concurrency",
    "download_concurrency",
    "max_retries",
    "poll_interval",
    "job_timeout",
    "max_fail",
    "budget_tokens",
    "out",
];

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn number(n: &Node, key: &str, min: u64, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    let v = match &n.value {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Str(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match v {
        Some(v) if v >= min => Some(v),
        _ => {
            diags.push(Diagnostic::field_error(
                n.loc.clone(),
                format!("run.{key}"),
                n.value.describe(),
                format!("a whole number, at least {min}"),
            ));
            None
        }
    }
}

fn small(n: &Node, key: &str, min: u64, diags: &mut Vec<Diagnostic>) -> Option<u32> {
    let v = number(n, key, min, diags)?;
    match u32::try_from(v) {
        Ok(v) => Some(v),
        Err(_) => {
            diags.push(Diagnostic::field_error(
                n.loc.clone(),
                format!("run.{key}"),
                format!("`{v}`"),
                "at most 4294967295",
            ));
            None
        }
    }
}

/// The longest duration vidbatch accepts anywhere (`--job-timeout`, `--poll-interval`,
/// `--request-timeout`, the manifest's `run:` durations, the simulator's): 365 days. Longer
/// values are refused, so that no deadline computed from one can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration given on the command line (`90s`, `20m`, `1h 30m`): refused when it is not
/// a duration or is longer than [`MAX_DURATION`].
pub fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{e}: expected a duration such as `90s`, `20m` or `1h 30m`, at most 365 days")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "`{}` is longer than the most vidbatch accepts (365 days)",
            s.trim()
        ));
    }
    Ok(d)
}

/// Parses a duration flag of `vidbatch run` as [`parse_duration_arg`] does, refusing zero as the
/// manifest's `run:` section does (a zero request or job timeout fails everything, a zero poll
/// interval spins).
pub fn parse_positive_duration_arg(s: &str) -> Result<Duration, String> {
    let d = parse_duration_arg(s)?;
    if d.is_zero() {
        return Err(format!(
            "`{}` is no time: expected a positive duration such as `3s`, `500ms` or `20m`",
            s.trim()
        ));
    }
    Ok(d)
}

fn duration(n: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Duration> {
    let v = match &n.value {
        Value::Int(i) if *i > 0 => Some(Duration::from_secs(*i as u64)),
        Value::Float(f) if *f > 0.0 && f.is_finite() && *f < 1e12 => Some(Duration::from_secs_f64(*f)),
        Value::Str(s) => humantime::parse_duration(s.trim()).ok().filter(|d| !d.is_zero()),
        _ => None,
    };
    if let Some(d) = v
        && d > MAX_DURATION
    {
        diags.push(Diagnostic::field_error(
            n.loc.clone(),
            format!("run.{key}"),
            n.value.describe(),
            "a positive duration of at most 365 days",
        ));
        return None;
    }
    if v.is_none() {
        diags.push(Diagnostic::field_error(
            n.loc.clone(),
            format!("run.{key}"),
            n.value.describe(),
            "a positive duration such as `3s`, `500ms` or `20m`",
        ));
    }
    v
}

/// Reads a `run:` mapping, reporting bad values and unknown keys.
pub fn parse_run(node: &Node, diags: &mut Vec<Diagnostic>) -> RunSection {
    let mut run = RunSection::default();
    let Value::Map(entries) = &node.value else {
        if node.value != Value::Null {
            diags.push(Diagnostic::field_error(
                node.loc.clone(),
                "run",
                node.value.describe(),
                "a mapping of run settings",
            ));
        }
        return run;
    };
    for (k, v) in entries {
        let key = k.value.scalar_text().unwrap_or_default();
        if v.value == Value::Null {
            continue;
        }
        match key.as_str() {
            "rpm" => run.rpm = small(v, &key, 1, diags),
            "burst" => run.burst = small(v, &key, 1, diags),
            "concurrency" => run.concurrency = small(v, &key, 1, diags),
            "download_concurrency" => run.download_concurrency = small(v, &key, 1, diags),
            "max_retries" => run.max_retries = small(v, &key, 0, diags),
            "poll_interval" => run.poll_interval = duration(v, &key, diags),
            "job_timeout" => run.job_timeout = duration(v, &key, diags),
            "max_fail" => run.max_fail = number(v, &key, 0, diags),
            "budget_tokens" => run.budget_tokens = number(v, &key, 1, diags),
            "out" => match &v.value {
                Value::Str(s) if !s.trim().is_empty() => run.out = Some(s.clone()),
                _ => diags.push(Diagnostic::field_error(
                    v.loc.clone(),
                    "run.out",
                    v.value.describe(),
                    "a directory path",
                )),
            },
            other => diags.push(unknown_key(k.loc.clone(), other, "run", RUN_KEYS.iter().copied())),
        }
    }
    run
}

impl RunSection {
    /// Fills the settings this section leaves unset from `other` (earlier manifests win).
    pub fn merge_from(&mut self, other: RunSection) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            rpm,
            burst,
            concurrency,
            download_concurrency,
            max_retries,
            poll_interval,
            job_timeout,
            max_fail,
            budget_tokens,
            out
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn run(s: &str) -> (RunSection, Vec<Diagnostic>) {
        let n = super::super::yaml::parse(&Arc::from("r.yaml"), s).expect("yaml");
        let mut d = Vec::new();
        (parse_run(&n, &mut d), d)
    }

    #[test]
    fn reads_every_setting() {
        let (r, d) = run(
            "rpm: 60\nburst: 5\nconcurrency: 8\ndownload_concurrency: 4\nmax_retries: 0\npoll_interval: 3s\njob_timeout: 20m\nmax_fail: 3\nbudget_tokens: 1000000\nout: ./o\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(r.poll_interval, Some(Duration::from_secs(3)));
        assert_eq!(r.job_timeout, Some(Duration::from_secs(1200)));
        assert_eq!(r.rpm, Some(60));
        assert_eq!(r.out.as_deref(), Some("./o"));
    }

    #[test]
    fn bad_values_and_unknown_keys() {
        let (_, d) = run("rpm: 0\npoll_interval: soon\nconcurency: 3\n");
        assert_eq!(d.len(), 3);
        assert!(
            d[2].to_string().contains("did you mean `concurrency`?"),
            "{}",
            d[2]
        );
    }
}
