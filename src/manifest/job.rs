//! The job model: the fields of one job (defaults merged under the job's own values) turned
//! into a [`CreateRequest`], with every problem reported at the place it was written.

use std::borrow::Cow;
use std::cell::RefCell;

use sha2::{Digest, Sha256};

use super::diag::{Diagnostic, Severity, SourceLocation};
use super::expand::{self, TemplateError};
use super::rules;
use super::yaml::{Node, Value};
use crate::api::{ContentItem, ContentRole, CreateRequest, DraftTaskRef, MediaUrl, Tool};
use crate::hex::hex;

/// The request fields of the API, by their API names.
pub const API_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "content",
    "ratio",
    "duration",
    "resolution",
    "frames",
    "generate_audio",
    "input_has_video",
    "seed",
    "camera_fixed",
    "watermark",
    "callback_url",
    "return_last_frame",
    "service_tier",
    "execution_expires_after",
    "draft",
    "tools",
    "safety_identifier",
];

/// The content shorthands: each becomes one content item (or several, for a list).
pub const SHORTHANDS: &[&str] = &[
    "first_frame",
    "last_frame",
    "reference_image",
    "reference_video",
    "reference_audio",
    "draft_task",
];

/// Job keys that are not request fields.
pub const JOB_EXTRA_KEYS: &[&str] = &["id", "name", "matrix", "repeat"];

/// Whether `key` is a job key (request field, shorthand, or `id`/`name`/`matrix`/`repeat`).
pub fn is_job_key(key: &str) -> bool {
    API_FIELDS.contains(&key) || SHORTHANDS.contains(&key) || JOB_EXTRA_KEYS.contains(&key)
}

/// Every job key, for suggestions.
pub fn job_keys() -> impl Iterator<Item = &'static str> + Clone {
    API_FIELDS.iter().chain(SHORTHANDS).chain(JOB_EXTRA_KEYS).copied()
}

/// The nearest of `candidates` to `key`, if it is near enough to be a likely typo.
pub fn suggest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = key.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The diagnostic of an unknown key, with a suggestion when one is near.
pub fn unknown_key<'a>(
    loc: SourceLocation,
    key: &str,
    what: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> Diagnostic {
    let d = Diagnostic {
        field: Some(key.to_string()),
        ..Diagnostic::error(loc, format!("unknown key `{key}`"))
    };
    match suggest(key, candidates.clone()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(format!(
            "{what} keys are: {}",
            candidates.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Template variables of one job: name → value.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    /// The pairs, in order.
    pub pairs: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Vars<'a> {
    /// The value of a variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    fn names(&self) -> String {
        if self.pairs.is_empty() {
            "no variables are defined here (use `matrix`, or a sheet column)".into()
        } else {
            let mut n: Vec<&str> = self.pairs.iter().map(|(n, _)| *n).collect();
            n.dedup();
            format!("a defined variable: {}", n.join(", "))
        }
    }
}

/// A request built from a job's fields, before its id and file name are set.
#[derive(Debug, Clone)]
pub struct Built {
    /// The request.
    pub request: CreateRequest,
    /// The `id` template and where it was written.
    pub id: Option<(String, SourceLocation)>,
    /// The `name` template and where it was written.
    pub name: Option<(String, SourceLocation)>,
    /// How many copies (`repeat`, default 1).
    pub repeat: u32,
    /// Whether the job is free of errors (ids are still checked when it is not).
    pub ok: bool,
    /// [`fingerprint`] of the request when there is no `id` (it then makes the id), else empty.
    pub fingerprint: String,
    /// Estimated tokens of the request.
    pub estimated_tokens: Option<u64>,
    /// Where each item of `request.content` was written, in content order.
    pub content_locs: Vec<SourceLocation>,
}

/// `s` without surrounding whitespace, reusing its buffer when there is none.
fn trimmed(s: String) -> String {
    if s.trim().len() == s.len() {
        s
    } else {
        s.trim().to_string()
    }
}

fn type_error(n: &Node, field: &str, expected: &str) -> Diagnostic {
    Diagnostic::field_error(n.loc.clone(), field, n.value.describe(), expected)
}

/// Renders a template, reporting unknown variables.
pub fn render_field(
    text: &str,
    field: &str,
    loc: &SourceLocation,
    vars: &Vars,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    match expand::render(text, |n| vars.get(n)) {
        Ok(s) => Some(s),
        Err(TemplateError::Unknown(names)) => {
            for n in names {
                diags.push(Diagnostic::field_error(
                    loc.clone(),
                    field,
                    format!("unknown template variable `{{{n}}}`"),
                    vars.names(),
                ));
            }
            None
        }
    }
}

fn string(n: &Node, field: &str, vars: &Vars, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(render_field(s, field, &n.loc, vars, diags).unwrap_or_else(|| s.clone())),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => n.value.scalar_text(),
        _ => {
            diags.push(type_error(n, field, "text"));
            None
        }
    }
}

fn int(n: &Node, field: &str, diags: &mut Vec<Diagnostic>) -> Option<i64> {
    let v = match &n.value {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Value::Str(s) => {
            let t = s.trim();
            t.parse::<i64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    };
    if v.is_none() {
        diags.push(type_error(n, field, "a whole number"));
    }
    v
}

fn boolean(n: &Node, field: &str, diags: &mut Vec<Diagnostic>) -> Option<bool> {
    let v = match &n.value {
        Value::Bool(b) => Some(*b),
        Value::Int(0) => Some(false),
        Value::Int(1) => Some(true),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "on" => Some(true),
            "false" | "no" | "n" | "0" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    };
    if v.is_none() {
        diags.push(type_error(n, field, "true or false"));
    }
    v
}

/// A list of texts: a list of scalars, or one text (split on whitespace, so a sheet cell may
/// hold several URLs, one per line).
fn text_list(n: &Node, field: &str, vars: &Vars, diags: &mut Vec<Diagnostic>) -> Option<Vec<String>> {
    match &n.value {
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                out.push(string(it, field, vars, diags)?);
            }
            Some(out)
        }
        Value::Str(_) => Some(
            string(n, field, vars, diags)?
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        ),
        _ => {
            diags.push(type_error(n, field, "a URL or a list of URLs"));
            None
        }
    }
}

fn tools(n: &Node, vars: &Vars, diags: &mut Vec<Diagnostic>) -> Option<Vec<Tool>> {
    let one = |it: &Node, diags: &mut Vec<Diagnostic>| -> Option<Tool> {
        match &it.value {
            Value::Map(m) => {
                let mut kind = None;
                for (k, v) in m {
                    match k.value.scalar_text().as_deref() {
                        Some("type") => kind = string(v, "tools.type", vars, diags),
                        other => {
                            diags.push(unknown_key(k.loc.clone(), other.unwrap_or("?"), "tool", ["type"]));
                            return None;
                        }
                    }
                }
                match kind {
                    Some(kind) => Some(Tool { kind }),
                    None => {
                        diags.push(type_error(
                            it,
                            "tools",
                            "a mapping with `type`, e.g. {type: web_search}",
                        ));
                        None
                    }
                }
            }
            Value::Str(s) => Some(Tool {
                kind: s.trim().to_string(),
            }),
            _ => {
                diags.push(type_error(it, "tools", "a tool type or {type: ...}"));
                None
            }
        }
    };
    match &n.value {
        Value::Seq(items) => items.iter().map(|it| one(it, diags)).collect(),
        Value::Str(s) => Some(
            s.split([',', ' ', '\n'])
                .filter(|t| !t.is_empty())
                .map(|t| Tool { kind: t.to_string() })
                .collect(),
        ),
        _ => {
            diags.push(type_error(
                n,
                "tools",
                "a list of tools, e.g. [{type: web_search}]",
            ));
            None
        }
    }
}

fn content(n: &Node, vars: &Vars, diags: &mut Vec<Diagnostic>) -> Option<Vec<ContentItem>> {
    let items: Vec<serde_json::Value> = match &n.value {
        Value::Seq(items) => items
            .iter()
            .map(|it| {
                let mut j = it.value.to_json();
                render_json(&mut j, &it.loc, vars, diags);
                j
            })
            .collect(),
        Value::Str(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Array(a)) => a,
            Ok(other) => vec![other],
            Err(e) => {
                diags.push(type_error(
                    n,
                    "content",
                    &format!("a JSON list of content items ({e})"),
                ));
                return None;
            }
        },
        _ => {
            diags.push(type_error(n, "content", "a list of content items"));
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, j) in items.into_iter().enumerate() {
        let loc = match &n.value {
            Value::Seq(s) => s.get(i).map(|x| x.loc.clone()).unwrap_or_else(|| n.loc.clone()),
            _ => n.loc.clone(),
        };
        match serde_json::from_value::<ContentItem>(j) {
            Ok(item) => out.push(item),
            Err(e) => {
                ok = false;
                diags.push(Diagnostic::field_error(
                    loc,
                    format!("content[{i}]"),
                    format!("an invalid item ({e})"),
                    "{type: image_url|video_url|audio_url|draft_task, <type>: {url|id: ...}, role: ...}",
                ));
            }
        }
    }
    ok.then_some(out)
}

fn render_json(j: &mut serde_json::Value, loc: &SourceLocation, vars: &Vars, diags: &mut Vec<Diagnostic>) {
    match j {
        serde_json::Value::String(s) => {
            if let Some(r) = render_field(s, "content", loc, vars, diags) {
                *s = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| render_json(x, loc, vars, diags)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| render_json(x, loc, vars, diags)),
        _ => {}
    }
}

/// The node of a field among merged fields (later entries win).
pub fn lookup<'n>(fields: &[(&str, &'n Node)], key: &str) -> Option<&'n Node> {
    fields.iter().rev().find(|(k, _)| *k == key).map(|(_, n)| *n)
}

/// Builds the request of one job from its merged fields (each key at most once, defaults
/// already overridden). Pushes every problem to `diags`; [`Built::ok`] says whether there was
/// an error.
pub fn build(
    fields: &[(&str, &Node)],
    vars: &Vars,
    job_loc: &SourceLocation,
    diags: &mut Vec<Diagnostic>,
) -> Built {
    let before = diags.iter().filter(|d| d.is_error()).count();
    let mut req = CreateRequest::default();
    let mut content_src: Vec<(SourceLocation, Option<&str>)> = Vec::new();
    let mut shorthand: Vec<(ContentItem, SourceLocation, &str)> = Vec::new();
    let mut built = Built {
        request: CreateRequest::default(),
        id: None,
        name: None,
        repeat: 1,
        ok: true,
        fingerprint: String::new(),
        estimated_tokens: None,
        content_locs: Vec::new(),
    };
    for &(key, n) in fields {
        if n.value == Value::Null {
            continue;
        }
        match key {
            "model" => req.model = string(n, key, vars, diags).unwrap_or_default(),
            "prompt" => req.prompt = string(n, key, vars, diags).unwrap_or_default(),
            "ratio" => req.ratio = string(n, key, vars, diags),
            "resolution" => req.resolution = string(n, key, vars, diags),
            "callback_url" => req.callback_url = string(n, key, vars, diags),
            "service_tier" => req.service_tier = string(n, key, vars, diags),
            "safety_identifier" => req.safety_identifier = string(n, key, vars, diags),
            "duration" => req.duration = int(n, key, diags),
            "frames" => req.frames = int(n, key, diags),
            "seed" => req.seed = int(n, key, diags),
            "execution_expires_after" => req.execution_expires_after = int(n, key, diags),
            "generate_audio" => req.generate_audio = boolean(n, key, diags),
            "input_has_video" => req.input_has_video = boolean(n, key, diags),
            "camera_fixed" => req.camera_fixed = boolean(n, key, diags),
            "watermark" => req.watermark = boolean(n, key, diags),
            "return_last_frame" => req.return_last_frame = boolean(n, key, diags),
            "draft" => req.draft = boolean(n, key, diags),
            "tools" => req.tools = tools(n, vars, diags),
            "content" => {
                if let Some(items) = content(n, vars, diags) {
                    content_src.extend(std::iter::repeat_n((n.loc.clone(), None), items.len()));
                    req.content = items;
                }
            }
            "id" | "name" => match n.value.scalar_text() {
                Some(t) if key == "id" => built.id = Some((trimmed(t), n.loc.clone())),
                Some(t) => built.name = Some((trimmed(t), n.loc.clone())),
                None => diags.push(type_error(n, key, "text (may use {variables})")),
            },
            "repeat" => {
                if let Some(r) = int(n, key, diags) {
                    if (1..=expand::MAX_REPEAT).contains(&r) {
                        built.repeat = r as u32;
                    } else {
                        diags.push(Diagnostic::field_error(
                            n.loc.clone(),
                            key,
                            format!("`{r}`"),
                            format!("1..{}", expand::MAX_REPEAT),
                        ));
                    }
                }
            }
            "matrix" => {}
            "first_frame" | "last_frame" | "reference_image" | "reference_video" | "reference_audio" => {
                let role = match key {
                    "first_frame" => ContentRole::FirstFrame,
                    "last_frame" => ContentRole::LastFrame,
                    "reference_image" => ContentRole::ReferenceImage,
                    "reference_video" => ContentRole::ReferenceVideo,
                    _ => ContentRole::ReferenceAudio,
                };
                let urls = if matches!(key, "first_frame" | "last_frame") {
                    string(n, key, vars, diags).map(|s| vec![trimmed(s)])
                } else {
                    text_list(n, key, vars, diags)
                };
                for url in urls.unwrap_or_default() {
                    let media = MediaUrl { url };
                    let item = match role {
                        ContentRole::ReferenceVideo => ContentItem::VideoUrl {
                            video_url: media,
                            role: Some(role),
                        },
                        ContentRole::ReferenceAudio => ContentItem::AudioUrl {
                            audio_url: media,
                            role: Some(role),
                        },
                        _ => ContentItem::ImageUrl {
                            image_url: media,
                            role: Some(role),
                        },
                    };
                    shorthand.push((item, n.loc.clone(), key));
                }
            }
            "draft_task" => {
                if let Some(id) = string(n, key, vars, diags) {
                    shorthand.push((
                        ContentItem::DraftTask {
                            draft_task: DraftTaskRef { id: trimmed(id) },
                            role: None,
                        },
                        n.loc.clone(),
                        key,
                    ));
                }
            }
            other => diags.push(unknown_key(n.loc.clone(), other, "job", job_keys())),
        }
    }
    for (item, loc, key) in shorthand {
        req.content.push(item);
        content_src.push((loc, Some(key)));
    }
    if req.input_has_video.is_none()
        && req
            .content
            .iter()
            .any(|c| matches!(c, ContentItem::VideoUrl { .. }))
    {
        req.input_has_video = Some(true);
    }
    for p in rules::check_request(&req) {
        let mut field = p.field;
        let loc = if let Some(rest) = field.strip_prefix("content[") {
            let idx: Option<usize> = rest.split(']').next().and_then(|i| i.parse().ok());
            let src = idx.and_then(|i| content_src.get(i).cloned());
            if let Some((_, Some(short))) = &src {
                field = short.to_string();
            }
            src.map(|(l, _)| l)
                .or_else(|| lookup(fields, "content").map(|n| n.loc.clone()))
                .unwrap_or_else(|| job_loc.clone())
        } else {
            let base = field.split(['[', '.']).next().unwrap_or(&field);
            lookup(fields, base)
                .map(|n| n.loc.clone())
                .unwrap_or_else(|| job_loc.clone())
        };
        let d = match (field.as_str(), p.found.as_str()) {
            ("model", "nothing") => Diagnostic {
                field: Some(field),
                ..Diagnostic::error(loc, "field `model` is empty")
            }
            .with_help(
                "add a model column (or `model:` to the job), set `defaults.model`, or pass `--model`",
            ),
            ("prompt", "nothing") => Diagnostic {
                field: Some(field),
                ..Diagnostic::error(loc, "field `prompt` is empty")
            }
            .with_help("write the prompt in a prompt column (or `prompt:`), or set `defaults.prompt`"),
            _ => Diagnostic::field_error(loc, field, p.found, p.expected),
        };
        diags.push(if p.warning {
            d.with_severity(Severity::Warning)
        } else {
            d
        });
    }
    if built.id.is_none() {
        built.fingerprint = fingerprint(&req);
    }
    built.estimated_tokens = super::estimate::estimate_tokens(&req);
    built.content_locs = content_src.into_iter().map(|(l, _)| l).collect();
    built.request = req;
    built.ok = diags.iter().filter(|d| d.is_error()).count() == before;
    built
}

/// The canonical JSON of a request: keys sorted at every level, no spaces, unset fields left
/// out (the same text as serializing the request to a `serde_json::Value` and printing it).
///
/// Written by hand for speed; the exhaustive destructuring below makes a new field of
/// [`CreateRequest`] a compile error here, and a test compares with the generic path.
pub fn canonical_json(req: &CreateRequest) -> String {
    let mut buf = String::with_capacity(256);
    write_canonical(req, &mut buf);
    buf
}

/// Appends the canonical JSON of a request to `buf` (see [`canonical_json`]).
pub fn write_canonical(req: &CreateRequest, buf: &mut String) {
    let CreateRequest {
        model,
        prompt,
        content,
        ratio,
        duration,
        resolution,
        frames,
        generate_audio,
        input_has_video,
        seed,
        camera_fixed,
        watermark,
        callback_url,
        return_last_frame,
        service_tier,
        execution_expires_after,
        draft,
        tools,
        safety_identifier,
    } = req;
    let mut w = Canon { buf, first: true };
    w.buf.push('{');
    w.opt_str("callback_url", callback_url.as_deref());
    w.opt_bool("camera_fixed", *camera_fixed);
    if !content.is_empty() {
        w.key("content");
        w.buf.push('[');
        for (i, item) in content.iter().enumerate() {
            if i > 0 {
                w.buf.push(',');
            }
            w.content(item);
        }
        w.buf.push(']');
    }
    w.opt_bool("draft", *draft);
    w.opt_int("duration", *duration);
    w.opt_int("execution_expires_after", *execution_expires_after);
    w.opt_int("frames", *frames);
    w.opt_bool("generate_audio", *generate_audio);
    w.opt_bool("input_has_video", *input_has_video);
    w.opt_str("model", Some(model));
    w.opt_str("prompt", Some(prompt));
    w.opt_str("ratio", ratio.as_deref());
    w.opt_str("resolution", resolution.as_deref());
    w.opt_bool("return_last_frame", *return_last_frame);
    w.opt_str("safety_identifier", safety_identifier.as_deref());
    w.opt_int("seed", *seed);
    w.opt_str("service_tier", service_tier.as_deref());
    if let Some(tools) = tools {
        w.key("tools");
        w.buf.push('[');
        for (i, Tool { kind }) in tools.iter().enumerate() {
            if i > 0 {
                w.buf.push(',');
            }
            w.buf.push('{');
            w.first = true;
            w.opt_str("type", Some(kind));
            w.buf.push('}');
        }
        w.buf.push(']');
        w.first = false;
    }
    w.opt_bool("watermark", *watermark);
    w.buf.push('}');
}

/// A writer of canonical JSON objects.
struct Canon<'b> {
    buf: &'b mut String,
    first: bool,
}

impl Canon<'_> {
    fn string(&mut self, s: &str) {
        self.buf.push('"');
        for c in s.chars() {
            match c {
                '"' => self.buf.push_str("\\\""),
                '\\' => self.buf.push_str("\\\\"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                '\t' => self.buf.push_str("\\t"),
                '\u{8}' => self.buf.push_str("\\b"),
                '\u{c}' => self.buf.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    use std::fmt::Write as _;
                    let _ = write!(self.buf, "\\u{:04x}", c as u32);
                }
                c => self.buf.push(c),
            }
        }
        self.buf.push('"');
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        self.string(k);
        self.buf.push(':');
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.key(k);
            self.string(v);
        }
    }

    fn opt_int(&mut self, k: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.key(k);
            use std::fmt::Write as _;
            let _ = write!(self.buf, "{v}");
        }
    }

    fn opt_bool(&mut self, k: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.key(k);
            self.buf.push_str(if v { "true" } else { "false" });
        }
    }

    fn media(&mut self, key: &str, inner_key: &str, inner: &str) {
        self.key(key);
        self.buf.push('{');
        self.first = true;
        self.opt_str(inner_key, Some(inner));
        self.buf.push('}');
        self.first = false;
    }

    fn content(&mut self, item: &ContentItem) {
        let (key, inner_key, inner, role, kind) = match item {
            ContentItem::ImageUrl {
                image_url: MediaUrl { url },
                role,
            } => ("image_url", "url", url, role, "image_url"),
            ContentItem::VideoUrl {
                video_url: MediaUrl { url },
                role,
            } => ("video_url", "url", url, role, "video_url"),
            ContentItem::AudioUrl {
                audio_url: MediaUrl { url },
                role,
            } => ("audio_url", "url", url, role, "audio_url"),
            ContentItem::DraftTask {
                draft_task: DraftTaskRef { id },
                role,
            } => ("draft_task", "id", id, role, "draft_task"),
        };
        let outer_first = self.first;
        self.buf.push('{');
        self.first = true;
        let role = role.map(|r| match r {
            ContentRole::FirstFrame => "first_frame",
            ContentRole::LastFrame => "last_frame",
            ContentRole::ReferenceImage => "reference_image",
            ContentRole::ReferenceVideo => "reference_video",
            ContentRole::ReferenceAudio => "reference_audio",
        });
        // keys in sorted order: the media key sorts before `role` except `video_url`
        let media_last = key > "type";
        if !media_last {
            self.media(key, inner_key, inner);
        }
        self.opt_str("role", role);
        self.opt_str("type", Some(kind));
        if media_last {
            self.media(key, inner_key, inner);
        }
        self.buf.push('}');
        self.first = outer_first;
    }
}

/// The sha256 (hex) of a request's canonical JSON.
pub fn fingerprint(req: &CreateRequest) -> String {
    thread_local! {
        static BUF: RefCell<String> = RefCell::new(String::with_capacity(1024));
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        write_canonical(req, &mut b);
        hex(&Sha256::digest(b.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn node(v: Value) -> Node {
        Node {
            value: v,
            loc: SourceLocation::File { file: Arc::from("f") },
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("promt", job_keys()), Some("prompt"));
        assert_eq!(suggest("durations", job_keys()), Some("duration"));
        assert_eq!(suggest("Model", job_keys()), Some("model"));
        assert_eq!(suggest("zzzzzzzz", job_keys()), None);
    }

    #[test]
    fn lenient_scalars_from_cells() {
        let (m, p, d, a) = (
            node(Value::Str("seedance-2.0".into())),
            node(Value::Str("a {x}".into())),
            node(Value::Str(" 5 ".into())),
            node(Value::Str("Yes".into())),
        );
        let fields = [
            ("model", &m),
            ("prompt", &p),
            ("duration", &d),
            ("generate_audio", &a),
        ];
        let vars = Vars {
            pairs: vec![("x", Cow::Borrowed("cat"))],
        };
        let mut diags = Vec::new();
        let b = build(&fields, &vars, &m.loc, &mut diags);
        assert!(b.ok);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(b.request.prompt, "a cat");
        assert_eq!(b.request.duration, Some(5));
        assert_eq!(b.request.generate_audio, Some(true));
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let r = CreateRequest {
            model: "m".into(),
            prompt: "p".into(),
            duration: Some(5),
            ..Default::default()
        };
        assert_eq!(canonical_json(&r), r#"{"duration":5,"model":"m","prompt":"p"}"#);
        let mut r2 = r.clone();
        r2.content = vec![ContentItem::ImageUrl {
            image_url: MediaUrl { url: "u".into() },
            role: Some(ContentRole::FirstFrame),
        }];
        assert_eq!(
            canonical_json(&r2),
            r#"{"content":[{"image_url":{"url":"u"},"role":"first_frame","type":"image_url"}],"duration":5,"model":"m","prompt":"p"}"#
        );
    }

    #[test]
    fn canonical_json_matches_the_generic_sorted_serialization() {
        let media = |u: &str| MediaUrl { url: u.into() };
        let full = CreateRequest {
            model: "m\"q".into(),
            prompt: "p\n\u{1}é\\".into(),
            content: vec![
                ContentItem::ImageUrl {
                    image_url: media("https://a"),
                    role: Some(ContentRole::FirstFrame),
                },
                ContentItem::VideoUrl {
                    video_url: media("https://v"),
                    role: Some(ContentRole::ReferenceVideo),
                },
                ContentItem::AudioUrl {
                    audio_url: media("https://s"),
                    role: None,
                },
                ContentItem::DraftTask {
                    draft_task: DraftTaskRef { id: "vgen_1".into() },
                    role: Some(ContentRole::LastFrame),
                },
            ],
            ratio: Some("16:9".into()),
            duration: Some(-1),
            resolution: Some("720p".into()),
            frames: Some(29),
            generate_audio: Some(true),
            input_has_video: Some(false),
            seed: Some(4_294_967_295),
            camera_fixed: Some(false),
            watermark: Some(true),
            callback_url: Some("https://cb".into()),
            return_last_frame: Some(true),
            service_tier: Some("flex".into()),
            execution_expires_after: Some(3600),
            draft: Some(false),
            tools: Some(vec![
                Tool {
                    kind: "web_search".into(),
                },
                Tool { kind: "x".into() },
            ]),
            safety_identifier: Some("s".into()),
        };
        fn sorted(v: &serde_json::Value) -> String {
            match v {
                serde_json::Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    let parts: Vec<String> = keys
                        .into_iter()
                        .map(|k| format!("{}:{}", serde_json::Value::String(k.clone()), sorted(&m[k])))
                        .collect();
                    format!("{{{}}}", parts.join(","))
                }
                serde_json::Value::Array(a) => {
                    format!("[{}]", a.iter().map(sorted).collect::<Vec<_>>().join(","))
                }
                other => other.to_string(),
            }
        }
        for r in [
            full.clone(),
            CreateRequest::default(),
            CreateRequest {
                tools: Some(vec![]),
                ..full
            },
        ] {
            let generic = sorted(&serde_json::to_value(&r).expect("value"));
            assert_eq!(canonical_json(&r), generic);
            assert_eq!(fingerprint(&r).len(), 64);
        }
    }
}
