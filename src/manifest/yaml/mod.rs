//! The YAML reader: a tree of located values built from yaml-rust2's marked events, with
//! anchors, aliases and `<<` merge keys resolved, and alias expansion capped.

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diag::{Diagnostic, SourceLocation};

/// The most nodes one YAML document may expand to (aliases included); guards against alias bombs.
pub const MAX_NODES: usize = 2_000_000;
/// The most bytes of text that aliases may add to one YAML document (each use of an alias adds
/// the text of what it names); guards against alias bombs built from long strings.
pub const MAX_ALIAS_BYTES: usize = 64 * 1024 * 1024;
/// The deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub loc: SourceLocation,
}

/// A YAML (or cell) value. Plain scalars are resolved with the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order; keys are rendered as text.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// A short description of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The scalar as text, if it is a scalar other than null.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The value rendered for a message: scalars quoted and cut to 60 characters.
    pub fn describe(&self) -> String {
        match self {
            Value::Str(s) => format!("`{}`", excerpt(s, 60)),
            Value::Seq(_) | Value::Map(_) | Value::Null => self.kind().to_string(),
            other => format!("`{}`", other.scalar_text().unwrap_or_default()),
        }
    }

    /// Converts to JSON (mapping keys as text).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.clone().into(),
            Value::Seq(v) => v.iter().map(|n| n.value.to_json()).collect(),
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (k.value.scalar_text().unwrap_or_default(), v.value.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

/// `s` cut to at most `max` characters, with `…` when cut; newlines shown as spaces.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max {
        out.pop();
        out.push('…');
    }
    out
}

/// Whether a plain scalar is a whole number written with leading zeros (`007`, `-01`): text
/// such as a shot number, whose zeros an id, a name or a prompt keeps.
fn zero_padded(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|c| c.is_ascii_digit())
}

/// Resolves a plain scalar by the YAML 1.2 core schema, except that a zero-padded whole number
/// stays text (a number field still reads it as its number).
fn resolve_plain(s: String) -> Value {
    match s.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ if zero_padded(&s) => return Value::Str(s),
        _ => {}
    }
    let b = s.as_bytes();
    if b[0].is_ascii_digit() || ((b[0] == b'-' || b[0] == b'+') && b.len() > 1) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Int(i);
        }
        if let Some(h) = s.strip_prefix("0x")
            && let Ok(i) = i64::from_str_radix(h, 16)
        {
            return Value::Int(i);
        }
        if let Some(o) = s.strip_prefix("0o")
            && let Ok(i) = i64::from_str_radix(o, 8)
        {
            return Value::Int(i);
        }
        if s.bytes().all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
            && let Ok(f) = s.parse::<f64>()
        {
            return Value::Float(f);
        }
    }
    match s.as_str() {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        _ => Value::Str(s),
    }
}

/// A node under construction.
enum Frame {
    Seq(Vec<Node>, SourceLocation, usize),
    Map(Vec<(Node, Node)>, Option<Node>, SourceLocation, usize),
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, Size)>,
    root: Option<Node>,
    nodes: usize,
    alias_bytes: usize,
    error: Option<Box<Diagnostic>>,
    done: bool,
}

/// The size of a tree: its nodes and the bytes of its text.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    fn add(self, o: Size) -> Size {
        Size {
            nodes: self.nodes.saturating_add(o.nodes),
            bytes: self.bytes.saturating_add(o.bytes),
        }
    }
}

/// Measures a tree.
fn measure(n: &Node) -> Size {
    let one = Size { nodes: 1, bytes: 0 };
    match &n.value {
        Value::Seq(v) => v.iter().map(measure).fold(one, Size::add),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| measure(k).add(measure(v)))
            .fold(one, Size::add),
        Value::Str(s) => Size {
            nodes: 1,
            bytes: s.len(),
        },
        _ => one,
    }
}

impl Builder {
    fn loc(&self, m: &Marker) -> SourceLocation {
        SourceLocation::Yaml {
            file: self.file.clone(),
            line: m.line() as u32,
            col: m.col() as u32 + 1,
        }
    }

    fn push_frame(&mut self, frame: Frame, mark: &Marker) {
        if self.stack.len() >= MAX_DEPTH {
            self.error = Some(Box::new(Diagnostic::error(
                self.loc(mark),
                format!("nesting deeper than {MAX_DEPTH} levels"),
            )));
        } else {
            self.stack.push(frame);
        }
    }

    fn add_nodes(&mut self, n: usize, mark: &Marker) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.error = Some(Box::new(Diagnostic::error(
                self.loc(mark),
                format!("the document expands to more than {MAX_NODES} nodes (aliases included)"),
            )));
            return false;
        }
        true
    }

    fn add_alias_bytes(&mut self, n: usize, mark: &Marker) -> bool {
        self.alias_bytes = self.alias_bytes.saturating_add(n);
        if self.alias_bytes > MAX_ALIAS_BYTES {
            self.error = Some(Box::new(
                Diagnostic::error(
                    self.loc(mark),
                    format!(
                        "the document's aliases expand to more than {} MiB of text",
                        MAX_ALIAS_BYTES / (1024 * 1024)
                    ),
                )
                .with_help("an alias copies all the text of its anchor each time it is used"),
            ));
            return false;
        }
        true
    }

    fn finish_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = measure(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, key, _, _)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
        }
    }
}

/// A set of mapping keys, hashed by kind and text so that merges stay linear; keys that are
/// lists or mappings (rare) are compared one by one.
#[derive(Default)]
struct KeySet {
    scalars: std::collections::HashSet<(u8, String)>,
    others: Vec<Value>,
}

impl KeySet {
    fn scalar(v: &Value) -> Option<(u8, String)> {
        match v {
            Value::Null => Some((0, String::new())),
            Value::Bool(b) => Some((1, b.to_string())),
            Value::Int(i) => Some((2, i.to_string())),
            Value::Float(f) => Some((3, f.to_bits().to_string())),
            Value::Str(s) => Some((4, s.clone())),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    fn contains(&self, v: &Value) -> bool {
        match Self::scalar(v) {
            Some(k) => self.scalars.contains(&k),
            None => self.others.contains(v),
        }
    }

    /// Adds `v`; false when it was there already.
    fn insert(&mut self, v: &Value) -> bool {
        match Self::scalar(v) {
            Some(k) => self.scalars.insert(k),
            None if self.others.contains(v) => false,
            None => {
                self.others.push(v.clone());
                true
            }
        }
    }
}

/// A key written twice in one mapping is an error at the second, naming the first: YAML does not
/// allow it, and reading either one would drop what the other says without a word (a second
/// `jobs:` would drop every job of the first). `<<` merge keys may repeat.
fn check_unique_keys(entries: &[(Node, Node)]) -> Result<(), Box<Diagnostic>> {
    let mut first: HashMap<(u8, String), &SourceLocation> = HashMap::new();
    for (k, _) in entries {
        if matches!(&k.value, Value::Str(s) if s == "<<") {
            continue;
        }
        let Some(key) = KeySet::scalar(&k.value) else {
            continue;
        };
        let text = key.1.clone();
        if let Some(earlier) = first.insert(key, &k.loc) {
            return Err(Box::new(
                Diagnostic::error(
                    k.loc.clone(),
                    format!(
                        "the key `{}` is given twice in one mapping (first at {earlier})",
                        excerpt(&text, 60)
                    ),
                )
                .with_help(if text == "jobs" {
                    "move the jobs of the second `jobs:` list into the first"
                } else {
                    "keep one of them, with what the two say"
                }),
            ));
        }
    }
    Ok(())
}

/// Applies `<<` merge keys: entries of the merged mappings are added where the mapping does not
/// set the key itself (the first of several merged mappings wins).
fn apply_merges(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, Box<Diagnostic>> {
    if !entries
        .iter()
        .any(|(k, _)| matches!(&k.value, Value::Str(s) if s == "<<"))
    {
        return Ok(entries);
    }
    let mut own = Vec::with_capacity(entries.len());
    let mut merged: Vec<(Node, Node)> = Vec::new();
    let mut seen_merged = KeySet::default();
    for (k, v) in entries {
        if matches!(&k.value, Value::Str(s) if s == "<<") {
            let sources = match v.value {
                Value::Map(m) => vec![m],
                Value::Seq(items) => {
                    let mut maps = Vec::new();
                    for item in items {
                        match item.value {
                            Value::Map(m) => maps.push(m),
                            other => {
                                return Err(Box::new(Diagnostic::field_error(
                                    item.loc,
                                    "<<",
                                    other.describe(),
                                    "a mapping or a list of mappings to merge",
                                )));
                            }
                        }
                    }
                    maps
                }
                other => {
                    return Err(Box::new(Diagnostic::field_error(
                        v.loc,
                        "<<",
                        other.describe(),
                        "a mapping or a list of mappings to merge",
                    )));
                }
            };
            for m in sources {
                for (mk, mv) in m {
                    if seen_merged.insert(&mk.value) {
                        merged.push((mk, mv));
                    }
                }
            }
        } else {
            own.push((k, v));
        }
    }
    let mut own_keys = KeySet::default();
    for (k, _) in &own {
        own_keys.insert(&k.value);
    }
    for (mk, mv) in merged {
        if !own_keys.contains(&mk.value) {
            own.push((mk, mv));
        }
    }
    Ok(own)
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() || self.done {
            return;
        }
        match ev {
            Event::DocumentEnd if self.root.is_some() => self.done = true,
            Event::Scalar(text, style, anchor, tag) => {
                if !self.add_nodes(1, &mark) {
                    return;
                }
                let value = if style == TScalarStyle::Plain && tag.is_none() {
                    resolve_plain(text)
                } else {
                    Value::Str(text)
                };
                let node = Node {
                    value,
                    loc: self.loc(&mark),
                };
                self.finish_node(node, anchor);
            }
            Event::SequenceStart(anchor, _) if self.add_nodes(1, &mark) => {
                let loc = self.loc(&mark);
                self.push_frame(Frame::Seq(Vec::new(), loc, anchor), &mark);
            }
            Event::MappingStart(anchor, _) if self.add_nodes(1, &mark) => {
                let loc = self.loc(&mark);
                self.push_frame(Frame::Map(Vec::new(), None, loc, anchor), &mark);
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, loc, anchor)) = self.stack.pop() {
                    self.finish_node(
                        Node {
                            value: Value::Seq(items),
                            loc,
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, loc, anchor)) = self.stack.pop() {
                    match check_unique_keys(&entries).and_then(|()| apply_merges(entries)) {
                        Ok(entries) => self.finish_node(
                            Node {
                                value: Value::Map(entries),
                                loc,
                            },
                            anchor,
                        ),
                        Err(d) => self.error = Some(d),
                    }
                }
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    self.error = Some(Box::new(Diagnostic::error(
                        self.loc(&mark),
                        "alias to an unknown anchor",
                    )));
                    return;
                };
                if self.add_nodes(size.nodes, &mark) && self.add_alias_bytes(size.bytes, &mark) {
                    self.finish_node(node, 0);
                }
            }
            _ => {}
        }
    }
}

/// The diagnostic of a YAML syntax error at 1-based `line`, 0-based `col` (in characters): the
/// parser's words, a hint for the usual causes, and the source lines with a caret.
fn syntax_error(file: &Arc<str>, text: &str, line: usize, col: usize, info: &str) -> Diagnostic {
    let lines: Vec<&str> = text.lines().collect();
    // The parser may stop at the end of the text, a line past the last one.
    let line = line.clamp(1, lines.len().max(1));
    let at = |n: usize| lines.get(n.wrapping_sub(1)).copied().unwrap_or("");
    let here = at(line);
    let col = col.min(here.chars().count());
    let d = Diagnostic::error(
        SourceLocation::Yaml {
            file: file.clone(),
            line: line as u32,
            col: col as u32 + 1,
        },
        format!("YAML syntax error: {info}"),
    );
    let d = match syntax_hint(&lines, line, info) {
        Some(h) => d.with_help(h),
        None => d,
    };
    d.with_snippet(snippet(&lines, line, col))
}

/// The line before the error (when there is one and it is not blank) and the error's line, with
/// a caret under column `col` (0-based, in characters), rendered without colour.
fn snippet(lines: &[&str], line: usize, col: usize) -> String {
    use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
    let here = lines.get(line.wrapping_sub(1)).copied().unwrap_or("");
    let prev = (line > 1)
        .then(|| lines.get(line - 2).copied())
        .flatten()
        .filter(|l| !l.trim().is_empty());
    // Very long lines are cut around the caret so the snippet stays readable.
    let (here, col) = cut_around(here, col, 100);
    let prev = prev.map(|p| cut_around(p, 0, 100).0);
    let mut source = String::new();
    let mut first = line;
    if let Some(p) = &prev {
        source.push_str(p);
        source.push('\n');
        first -= 1;
    }
    let start = source.len() + here.char_indices().nth(col).map_or(here.len(), |(i, _)| i);
    let end = here[start - source.len()..]
        .chars()
        .next()
        .map_or(start, |c| start + c.len_utf8());
    source.push_str(&here);
    let report = &[Group::with_level(Level::ERROR).element(
        Snippet::source(&source)
            .line_start(first)
            .fold(false)
            .annotation(AnnotationKind::Primary.span(start..end).label("here")),
    )];
    Renderer::plain().render(report)
}

/// `s` cut to at most `max` characters around character `col`; the new column of that character.
fn cut_around(s: &str, col: usize, max: usize) -> (String, usize) {
    let n = s.chars().count();
    if n <= max {
        return (s.replace('\t', " "), col);
    }
    let from = col.saturating_sub(max / 2).min(n - max);
    let cut: String = s.chars().skip(from).take(max).collect();
    (cut.replace('\t', " "), col - from)
}

/// A hint for the usual causes of a YAML syntax error at 1-based `line`.
fn syntax_hint(lines: &[&str], line: usize, info: &str) -> Option<String> {
    let at = |n: usize| lines.get(n.wrapping_sub(1)).copied().unwrap_or("");
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let tabbed = [line, line + 1, line.saturating_sub(1)]
        .into_iter()
        .find(|&n| n > 0 && at(n).trim_start_matches(' ').starts_with('\t'));
    if let Some(n) = tabbed {
        return Some(format!(
            "line {n} is indented with a tab: YAML allows only spaces for indentation"
        ));
    }
    if info.contains("tab") {
        return Some("YAML allows only spaces for indentation: replace the tabs with spaces".into());
    }
    if info.contains("trailing content after") {
        return Some(
            "a quoted value ends at its closing quote: for a quote inside, write `\\\"` inside \
             double quotes or `''` inside single quotes, or quote the value with the other kind"
                .into(),
        );
    }
    if info.contains("quoted scalar") {
        return Some("a quote is opened and not closed".into());
    }
    let here = at(line);
    let above = (1..line).rev().map(at).find(|l| !l.trim().is_empty());
    let misindented = above.filter(|a| indent(a) != indent(here) && !a.trim_end().ends_with(':'));
    if info.contains("mapping values are not allowed")
        && let Some(fix) = [here, above.unwrap_or("")].iter().find_map(|l| quote_fix(l))
    {
        return Some(format!("a value that holds `: ` must be quoted, e.g. `{fix}`"));
    }
    if info.contains("mapping values are not allowed")
        || info.contains("did not find expected key")
        || info.contains("invalid indentation")
        || info.contains("did not find expected '-'")
        || info.contains("block sequence entries are not allowed")
    {
        let which = match misindented {
            Some(a) => {
                let spaces = |n: usize| format!("{n} space{}", if n == 1 { "" } else { "s" });
                format!(
                    " (line {line} is indented {}, the line above {})",
                    spaces(indent(here)),
                    spaces(indent(a))
                )
            }
            None => String::new(),
        };
        return Some(format!(
            "check the indentation{which}: keys of one mapping start in the same column and the \
             `-` of one list line up; a value that holds `: ` must be quoted"
        ));
    }
    if info.contains("',' or ']'") || info.contains("',' or '}'") || info.contains("flow") {
        return Some(
            "a `[...]` list or `{...}` mapping is not closed, or one of its values holds `,` `:` `[` or \
             `{`: quote such values"
                .into(),
        );
    }
    if info.contains("cannot start any token") || info.contains("unexpected character") {
        return Some("a value that starts with `@`, `` ` `` or `%` must be quoted".into());
    }
    if info.contains("anchor or alias") {
        return Some("`&` starts an anchor and `*` an alias: quote a value that starts with them".into());
    }
    None
}

/// For a line `key: value: more`, the same line with the value quoted.
fn quote_fix(line: &str) -> Option<String> {
    let indent = &line[..line.len() - line.trim_start().len()];
    let body = line.trim_start();
    let (dash, body) = match body.strip_prefix("- ") {
        Some(rest) => ("- ", rest.trim_start()),
        None => ("", body),
    };
    let (key, value) = body.split_once(": ")?;
    let value = value.trim();
    if key.is_empty() || key.contains(' ') && !key.starts_with(['"', '\'']) {
        return None;
    }
    if !(value.contains(": ") || value.ends_with(':')) || value.starts_with(['"', '\'']) {
        return None;
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    Some(format!("{indent}{dash}{key}: \"{escaped}\"").trim().to_string())
}

/// Parses the one document of a YAML text into a located tree (a second one with content is an
/// error). An empty document is `Null`.
pub fn parse(file: &Arc<str>, text: &str) -> Result<Node, Box<Diagnostic>> {
    let mut b = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
        alias_bytes: 0,
        error: None,
        done: false,
    };
    // Drive the parser's (iterative) state machine ourselves: its recursive `load` overflows
    // the stack on deeply nested input.
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            // After the first document: only empty ones may follow (a trailing `---`).
            Ok((Event::Scalar(t, ..), _)) if b.done && t.is_empty() => {}
            Ok((
                Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) | Event::Alias(_),
                mark,
            )) if b.done => {
                return Err(Box::new(
                    Diagnostic::error(
                        b.loc(&mark),
                        "a second YAML document (after a `---` line) starts here; vidbatch reads one document per manifest and would ignore this one",
                    )
                    .with_help("put everything in the first document (remove the `---` line), or give the second its own file and pass both files"),
                ));
            }
            Ok((ev, mark)) => {
                b.on_event(ev, mark);
                if b.error.is_some() {
                    break;
                }
            }
            Err(e) => {
                let m = e.marker();
                return Err(Box::new(syntax_error(file, text, m.line(), m.col(), e.info())));
            }
        }
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Node {
        value: Value::Null,
        loc: SourceLocation::Yaml {
            file: file.clone(),
            line: 1,
            col: 1,
        },
    }))
}

#[cfg(test)]
mod tests;
