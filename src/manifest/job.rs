//! The job model: the fields of one job (defaults merged under the job's own values) turned
//! into a [`CreateRequest`], with every problem reported at the place it was written.

use std::borrow::Cow;

use super::canonical::fingerprint;
use super::cells::date_ratio_help;
use super::diag::{Diagnostic, Severity, SourceLocation};
use super::expand::{self, TemplateError};
use super::fields::{job_keys, unknown_key};
use super::rules;
use super::yaml::{Node, Value};
use crate::api::{ContentItem, ContentRole, CreateRequest, DraftTaskRef, MediaUrl, Tool};

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

/// One of a closed set of values ([`Ratio`](crate::api::Ratio) and the like), spelled as the
/// API spells it. Whitespace around it is dropped, as around a number or an id: a sheet cell
/// often carries a stray space, tab or no-break space (U+00A0, which Excel and LibreOffice
/// exports write) that the user never sees. `help` gives the help of a value outside the set,
/// when it knows how the value came about.
fn choice<T: std::str::FromStr<Err = String>>(
    n: &Node,
    field: &str,
    vars: &Vars,
    diags: &mut Vec<Diagnostic>,
    help: fn(&str) -> Option<String>,
) -> Option<T> {
    let text = string(n, field, vars, diags)?;
    let value = text.trim();
    match value.parse() {
        Ok(v) => Some(v),
        Err(expected) => {
            let d = Diagnostic::field_error(
                n.loc.clone(),
                field,
                format!("`{}`", super::yaml::excerpt(value, 60)),
                expected,
            );
            diags.push(match help(value) {
                Some(h) => d.with_help(h),
                None => d,
            });
            None
        }
    }
}

/// The `help` of a [`choice`] that has nothing to add.
fn no_help(_: &str) -> Option<String> {
    None
}

/// Whether a text is a number in scientific notation (`1.23457E+09`): how a spreadsheet shows,
/// and exports, a long number in a narrow or General column, rounded to six digits.
fn scientific_notation(text: &str) -> bool {
    let t = text.trim();
    t.contains(['e', 'E']) && t.parse::<f64>().is_ok_and(f64::is_finite)
}

fn int(n: &Node, field: &str, diags: &mut Vec<Diagnostic>) -> Option<i64> {
    if let Value::Str(s) = &n.value
        && scientific_notation(s)
    {
        diags.push(
            type_error(n, field, "a whole number written out in digits").with_help(
                "a number in scientific notation is how a spreadsheet shows a long number in a \
                 narrow column, and it keeps only six digits (1234567890 becomes 1.23457E+09): \
                 format the column as Number with 0 decimals (or as Text) and export again",
            ),
        );
        return None;
    }
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
            // A model id never has spaces around it; a cell's stray ones are dropped.
            "model" => {
                req.model = string(n, key, vars, diags).map_or_else(String::new, |m| m.trim().to_string())
            }
            "prompt" => req.prompt = string(n, key, vars, diags).unwrap_or_default(),
            "ratio" => req.ratio = choice(n, key, vars, diags, date_ratio_help),
            "resolution" => req.resolution = choice(n, key, vars, diags, no_help),
            "callback_url" => req.callback_url = string(n, key, vars, diags),
            "service_tier" => req.service_tier = choice(n, key, vars, diags, no_help),
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
    fn a_cell_in_scientific_notation_is_refused_not_read_rounded() {
        let (m, p, seed) = (
            node(Value::Str("seedance-2.0".into())),
            node(Value::Str("a cat".into())),
            node(Value::Str("1.23457E+09".into())),
        );
        let fields = [("model", &m), ("prompt", &p), ("seed", &seed)];
        let mut diags = Vec::new();
        let b = build(&fields, &Vars::default(), &m.loc, &mut diags);
        assert!(!b.ok);
        let said: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains("seed") && said[0].contains("`1.23457E+09`"),
            "{said:?}"
        );
        assert!(said[0].contains("0 decimals"), "{said:?}");
        assert_eq!(b.request.seed, None);
    }

    #[test]
    fn a_value_outside_a_closed_set_is_an_error_at_its_field_listing_the_set() {
        let (m, p, r, res, t) = (
            node(Value::Str("seedance-2.0".into())),
            node(Value::Str("a cat".into())),
            node(Value::Str("16:10".into())),
            node(Value::Str("4k".into())),
            node(Value::Str("fast".into())),
        );
        let fields = [
            ("model", &m),
            ("prompt", &p),
            ("ratio", &r),
            ("resolution", &res),
            ("service_tier", &t),
        ];
        let mut diags = Vec::new();
        let b = build(&fields, &Vars::default(), &m.loc, &mut diags);
        assert!(!b.ok);
        let said: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(
            said[0].contains("ratio") && said[0].contains("`16:10`"),
            "{said:?}"
        );
        assert!(
            said[0].contains("16:9, 9:16, 4:3, 3:4, 21:9, 1:1, adaptive"),
            "{said:?}"
        );
        assert!(
            said[1].contains("resolution") && said[1].contains("480p, 720p, 1080p"),
            "{said:?}"
        );
        assert!(
            said[2].contains("service_tier") && said[2].contains("default, flex"),
            "{said:?}"
        );
        assert_eq!((b.request.ratio, b.request.resolution), (None, None));
    }
}
