//! `report.html`: the report as one self-contained page; the main structure here is [`Page`].
//!
//! The page is rendered by minijinja from [`Report`] with HTML autoescaping on (prompts, ids
//! and server messages are untrusted text). It needs no network: the styles and the small
//! filter script are inline, and every video and last frame is a relative link into the out
//! dir (`videos/NAME.mp4`), so the page plays the batch in place from `file://` or from any
//! static server. A Content-Security-Policy allows only that script (by its hash), and no
//! request leaves the page.
//!
//! Jobs are cards, failed first, then the unfinished, then the done ones (plan order within
//! each). A bar of state checkboxes and a text search over prompts and ids filter them. With
//! `?selftest` in the URL, the script waits for every video's metadata, exercises the filters
//! and writes what it saw as JSON into `#selftest` (a browser test reads it back).

use std::io::{self, Write};
use std::sync::Arc;

use minijinja::Environment;
use minijinja::value::{Serde, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{JobReport, Report};
use crate::api::Timestamp;

/// The page template (Jinja syntax; autoescaped as HTML).
const TEMPLATE: &str = include_str!("report.html.j2");

/// The page's one script: filters, search, and the `?selftest` mode.
const SCRIPT: &str = include_str!("report.js");

/// Cards whose video loads its metadata with the page; later ones load when played, so a
/// page of thousands of jobs opens quickly.
const PRELOADED: usize = 200;

/// Prompts longer than this are cut in the card (the whole prompt is in the `title`).
const PROMPT_SHOWN: usize = 600;

/// A name and a value shown in a card.
#[derive(Debug, Serialize)]
pub struct Field {
    /// What.
    pub key: String,
    /// Its value as text.
    pub value: String,
}

/// A count of jobs in one state.
#[derive(Debug, Serialize)]
pub struct StateCount {
    /// The state's name, as in `report.json`.
    pub state: String,
    /// `done`, `failed` or `unfinished`: how the state is coloured and sorted.
    pub group: &'static str,
    /// Jobs in it.
    pub count: usize,
}

/// One job's card.
#[derive(Debug, Serialize)]
pub struct Card {
    /// Job id.
    pub id: String,
    /// Output file stem.
    pub name: String,
    /// Final state.
    pub state: String,
    /// `done`, `failed` or `unfinished`.
    pub group: &'static str,
    /// Where the job came from.
    pub source: String,
    /// The jobs it starts from (`job://` references), comma-separated; empty when none.
    pub upstream: String,
    /// The prompt, cut to a readable length.
    pub prompt: String,
    /// The whole prompt, lower-cased, for the search.
    pub search: String,
    /// Model.
    pub model: String,
    /// The other request fields.
    pub params: Vec<Field>,
    /// Link to the video (a relative, percent-encoded path).
    pub video: Option<String>,
    /// The video's `preload`: `metadata` for the first cards, `none` after.
    pub preload: &'static str,
    /// Link to the last frame.
    pub last_frame: Option<String>,
    /// Why the job is not done.
    pub error: Option<String>,
    /// The failure a done job got over.
    pub recovered: Option<String>,
    /// The latest task id.
    pub task_id: Option<String>,
    /// Creates sent, retries, flaky.
    pub attempts: u32,
    /// Retries of any kind.
    pub retries: u32,
    /// Done after a failure or retry.
    pub flaky: bool,
    /// Timings as shown.
    pub timings: Vec<Field>,
    /// Tokens billed.
    pub tokens: Option<u64>,
    /// Video size, as shown.
    pub size: Option<String>,
}

/// Everything the template shows.
#[derive(Debug, Serialize)]
pub struct Page {
    /// The page title.
    pub title: String,
    /// How the run ended (`success`, `some_failed`, ..., `unfinished`).
    pub outcome: String,
    /// `done`, `failed` or `unfinished`, for the outcome's colour.
    pub outcome_group: &'static str,
    /// Jobs in all.
    pub jobs: usize,
    /// Jobs done.
    pub done: usize,
    /// Jobs of the latest run's plan.
    pub planned: usize,
    /// Jobs of earlier runs that the plan no longer has.
    pub not_in_plan: usize,
    /// Why the run stopped submitting early, if it did.
    pub stop_reason: Option<String>,
    /// Jobs per state, failures first.
    pub states: Vec<StateCount>,
    /// Tokens billed.
    pub tokens: u64,
    /// API requests.
    pub requests: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Retries.
    pub retries: u64,
    /// Video bytes, as shown.
    pub bytes: String,
    /// How long the run took, as shown.
    pub duration: String,
    /// When it started.
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// Shard, if any.
    pub shard: Option<String>,
    /// Run id.
    pub run_id: Option<String>,
    /// vidbatch version.
    pub tool_version: String,
    /// Manifest paths.
    pub manifests: Vec<String>,
    /// For a merged report: the shard dirs it was made from.
    pub shards: Vec<String>,
    /// Queue and generation p50/p95.
    pub percentiles: String,
    /// The cards, failed first: a sequence that makes each [`Card`] when the template reaches
    /// it, so a page of thousands of jobs never holds all its cards at once.
    pub cards: Value,
    /// The inline script.
    pub script: &'static str,
    /// The Content-Security-Policy (the script's hash included).
    pub csp: String,
}

/// How a state is grouped: `done`, `failed` (a failure is recorded), `unfinished`, or
/// `not_in_plan` (a job of an earlier run that the plan no longer has).
fn group(job: &JobReport) -> &'static str {
    if job.state == super::NOT_IN_PLAN {
        "not_in_plan"
    } else if job.state == "done" {
        "done"
    } else if job.error.is_some() {
        "failed"
    } else {
        "unfinished"
    }
}

fn rank(group: &str) -> u8 {
    match group {
        "failed" => 0,
        "unfinished" => 1,
        "done" => 2,
        _ => 3,
    }
}

/// Percent-encodes a relative path for `src`/`href`, keeping `/` between segments.
pub fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Seconds as `4.2 s`, `3m 05s`, or `1h 02m`.
fn human_seconds(s: f64) -> String {
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s.round() as u64;
    if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "–".to_string(), |t| t.to_rfc3339())
}

fn failure_text(f: &crate::events::Failure) -> String {
    let mut text = f.kind.name().to_string();
    if let Some(status) = f.http_status {
        text.push_str(&format!(" (HTTP {status})"));
    }
    if let Some(code) = &f.code {
        text.push_str(&format!(" [{code}]"));
    }
    text.push_str(": ");
    text.push_str(&f.message);
    text
}

/// The request fields other than the model, the prompt and the content, as text.
fn params(job: &JobReport) -> Vec<Field> {
    let mut fields = Vec::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&job.request) {
        for (key, value) in map {
            if matches!(key.as_str(), "model" | "prompt" | "content") || value.is_null() {
                continue;
            }
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            fields.push(Field { key, value });
        }
    }
    for item in &job.request.content {
        let role = item
            .role()
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "input".into());
        let value = item
            .url()
            .map_or_else(|| serde_json::to_string(item).unwrap_or_default(), str::to_string);
        let value = if value.chars().count() > 120 {
            format!("{}…", value.chars().take(120).collect::<String>())
        } else {
            value
        };
        fields.push(Field { key: role, value });
    }
    fields
}

fn card(job: &JobReport) -> Card {
    let t = &job.timings;
    let mut timings = Vec::new();
    for (key, value) in [
        ("queued", t.queue_seconds),
        ("generation", t.generation_seconds),
        ("total", t.total_seconds),
    ] {
        if let Some(s) = value {
            timings.push(Field {
                key: key.into(),
                value: human_seconds(s),
            });
        }
    }
    if let Some(at) = t.created_at {
        timings.push(Field {
            key: "created".into(),
            value: at.to_rfc3339(),
        });
    }
    if let Some(at) = t.finished_at {
        timings.push(Field {
            key: "finished".into(),
            value: at.to_rfc3339(),
        });
    }
    let prompt = &job.request.prompt;
    let shown = if prompt.chars().count() > PROMPT_SHOWN {
        format!("{}…", prompt.chars().take(PROMPT_SHOWN).collect::<String>())
    } else {
        prompt.clone()
    };
    Card {
        id: job.id.clone(),
        name: job.name.clone(),
        state: job.state.clone(),
        group: group(job),
        source: job.source.clone(),
        upstream: job.upstream.join(", "),
        prompt: shown,
        search: format!("{} {}", job.id, prompt).to_lowercase(),
        model: job.request.model.clone(),
        params: params(job),
        video: job.file.as_deref().map(href),
        preload: "metadata",
        last_frame: job.last_frame.as_deref().map(href),
        error: job.error.as_ref().map(failure_text),
        recovered: job.recovered_from.as_ref().map(failure_text),
        task_id: job.task_ids.last().cloned(),
        attempts: job.attempts,
        retries: job.retries,
        flaky: job.flaky,
        timings,
        tokens: job.usage.map(|u| u.total_tokens),
        size: job.bytes.map(human_bytes),
    }
}

/// `'sha256-BASE64'` of a script, for the Content-Security-Policy.
fn script_hash(script: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = Sha256::digest(script.as_bytes());
    let mut b64 = String::new();
    for chunk in digest.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    format!("'sha256-{b64}'")
}

/// The cards of a report in page order (failed, unfinished, done, not in plan; plan order
/// within each), each made as the template asks for the next.
fn cards(report: &Arc<Report>) -> Value {
    Value::make_object_iterable(Arc::clone(report), |report| {
        Box::new(
            // Every rank in order (rank gives 0 to 3).
            (0..=3)
                .flat_map(move |r| report.jobs.iter().filter(move |job| rank(group(job)) == r))
                .enumerate()
                .map(|(i, job)| {
                    let mut card = card(job);
                    if i >= PRELOADED {
                        card.preload = "none";
                    }
                    Value::from(Serde(card))
                }),
        )
    })
}

impl Page {
    /// What the page shows of a report.
    pub fn of(report: &Arc<Report>) -> Page {
        let s = &report.summary;
        let mut states: Vec<StateCount> = s
            .by_state
            .iter()
            .map(|(state, count)| StateCount {
                state: state.clone(),
                group: report
                    .jobs
                    .iter()
                    .find(|j| &j.state == state)
                    .map_or("unfinished", group),
                count: *count,
            })
            .collect();
        states.sort_by_key(|c| rank(c.group));
        let outcome = report
            .run
            .outcome
            .and_then(|o| serde_json::to_value(o).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unfinished".into());
        let outcome_group = match outcome.as_str() {
            "success" => "done",
            "some_failed" | "stopped" | "fatal" | "local_failure" => "failed",
            _ => "unfinished",
        };
        let duration = match (report.run.started_at, report.run.finished_at) {
            (Some(a), Some(b)) => human_seconds((b.0 - a.0).as_seconds_f64().max(0.0)),
            (Some(_), None) => "not finished".into(),
            _ => "–".into(),
        };
        let pair = |p: &super::Percentiles| {
            let f = |v: Option<f64>| v.map_or_else(|| "–".to_string(), human_seconds);
            format!("{} / {}", f(p.p50), f(p.p95))
        };
        let done = s.by_state.get("done").copied().unwrap_or(0);
        Page {
            title: format!("vidbatch: {done} of {} jobs done", s.planned),
            outcome,
            outcome_group,
            jobs: s.jobs,
            done,
            planned: s.planned,
            not_in_plan: s.not_in_plan,
            stop_reason: report.run.stop_reason.clone(),
            states,
            tokens: s.tokens_used,
            requests: s.counters.api_requests,
            rate_limited: s.counters.rate_limited,
            retries: s.counters.retries,
            bytes: human_bytes(s.bytes),
            duration,
            started: when(report.run.started_at),
            finished: when(report.run.finished_at),
            shard: report.run.shard.clone(),
            run_id: report.run.run_id.clone(),
            tool_version: report.run.tool_version.clone(),
            manifests: report.run.manifests.iter().map(|m| m.path.clone()).collect(),
            shards: report
                .run
                .merged_from
                .iter()
                .map(|m| match &m.shard {
                    Some(k) => format!("{} (shard {k}, {} jobs)", m.dir, m.jobs),
                    None => format!("{} ({} jobs)", m.dir, m.jobs),
                })
                .collect(),
            percentiles: format!(
                "queue p50/p95 {} · generation p50/p95 {}",
                pair(&s.queue_seconds),
                pair(&s.generation_seconds)
            ),
            cards: cards(report),
            script: SCRIPT,
            csp: format!(
                "default-src 'none'; script-src {}; style-src 'unsafe-inline'; \
                 img-src 'self' file: data: blob:; media-src 'self' file: blob:; \
                 connect-src 'none'; form-action 'none'; base-uri 'none'",
                script_hash(SCRIPT)
            ),
        }
    }
}

/// Writes the page of a report to `w` as it is rendered.
pub fn render_to(report: &Arc<Report>, w: impl Write) -> io::Result<()> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // The name's `.html` turns HTML autoescaping on.
    env.add_template("report.html", TEMPLATE).map_err(io_error)?;
    let page = Value::from(Serde(Page::of(report)));
    env.get_template("report.html")
        .and_then(|t| t.render_captured_to(page, w))
        .map(drop)
        .map_err(io_error)
}

/// A rendering error as an I/O error: a failed write is that write's error (a full disk stays
/// one), anything else is the template's.
fn io_error(e: minijinja::Error) -> io::Error {
    match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(io) => io::Error::new(io.kind(), io.to_string()),
        None => io::Error::other(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_keep_slashes_and_encode_the_rest() {
        assert_eq!(href("videos/a-b_c.mp4"), "videos/a-b_c.mp4");
        assert_eq!(href("../shard 1/videos/x#1.mp4"), "../shard%201/videos/x%231.mp4");
        assert_eq!(href("javascript:alert(1)"), "javascript%3Aalert%281%29");
    }

    #[test]
    fn the_script_hash_is_base64_of_sha256() {
        // sha256("") = e3b0c442...; its base64 is well known.
        assert_eq!(
            script_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
        assert_eq!(
            script_hash("abc"),
            "'sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='"
        );
    }

    #[test]
    fn cards_come_failed_first_then_unfinished_then_done_and_only_the_first_preload() {
        use crate::api::CreateRequest;
        use crate::events::{Event, Failure, FailureKind};
        use crate::state::{Phase, RunState};

        let mut state = RunState::default();
        let ids: Vec<String> = (0..PRELOADED + 3).map(|i| format!("j{i}")).collect();
        for id in &ids {
            state.apply(&Event::JobPlanned {
                job: id.clone(),
                name: id.clone(),
                fingerprint: format!("fp-{id}"),
                request: Box::new(CreateRequest::default()),
                source: "test".into(),
                estimated_tokens: None,
            });
        }
        // Plan order: done jobs, then one pending, then one failed.
        let (pending, failed) = (&ids[PRELOADED + 1], &ids[PRELOADED + 2]);
        for (id, job) in &mut state.jobs {
            if id == failed {
                job.phase = Phase::Failed;
                job.failure = Some(Failure {
                    kind: FailureKind::TaskFailed,
                    http_status: None,
                    code: None,
                    message: "no".into(),
                });
            } else if id != pending {
                job.phase = Phase::Done;
            }
        }
        let page = Page::of(&Arc::new(Report::from_state(&state)));
        let cards: Vec<(String, String)> = page
            .cards
            .try_iter()
            .expect("a sequence")
            .map(|c| {
                let field = |k: &str| c.get_attr(k).expect("a field").to_string();
                (field("id"), field("preload"))
            })
            .collect();
        let order: Vec<&str> = cards.iter().map(|(id, _)| id.as_str()).collect();
        let mut expected = vec![failed.as_str(), pending.as_str()];
        expected.extend(ids[..=PRELOADED].iter().map(String::as_str));
        assert_eq!(order, expected);
        let preloaded = cards.iter().filter(|(_, p)| p == "metadata").count();
        assert_eq!(preloaded, PRELOADED);
        assert!(cards[..PRELOADED].iter().all(|(_, p)| p == "metadata"));
        // The sequence is made again each time it is read.
        assert_eq!(page.cards.try_iter().expect("a sequence").count(), ids.len());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_seconds(4.25), "4.2 s");
        assert_eq!(human_seconds(185.0), "3m 05s");
        assert_eq!(human_seconds(3720.0), "1h 02m");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
