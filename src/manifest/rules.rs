//! Validation of a create request against what the API accepts, per model; usable on its own
//! through [`check_request`].

use serde::Serialize;

use crate::api::{ContentItem, ContentRole, CreateRequest};

/// The models whose rules are known.
pub const KNOWN_MODELS: &[&str] = &["seedance-1.5-pro", "seedance-2.0", "seedance-2.0-fast"];
/// Tool types known to exist (others draw a warning).
pub const KNOWN_TOOLS: &[&str] = &["web_search"];
/// Longest accepted `safety_identifier`, in characters.
pub const MAX_SAFETY_IDENTIFIER: usize = 64;

/// One thing the API would reject (or, as a warning, might).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The request field, by API name; content items as `content[i]`.
    pub field: String,
    /// The value found, rendered for humans.
    pub found: String,
    /// What is allowed.
    pub expected: String,
    /// Whether this is only a warning.
    pub warning: bool,
}

fn problem(field: impl Into<String>, found: impl Into<String>, expected: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        found: found.into(),
        expected: expected.into(),
        warning: false,
    }
}

/// Whether the model is one of the 2.0 family (`asset://` allowed, no `camera_fixed`).
pub fn is_v2(model: &str) -> bool {
    model == "seedance-2.0" || model == "seedance-2.0-fast"
}

/// Whether the model is a 1.0 model (the only ones taking `frames`).
pub fn is_v1_0(model: &str) -> bool {
    model.starts_with("seedance-1.0-")
}

/// Whether the rules of the model are known.
pub fn is_known_model(model: &str) -> bool {
    KNOWN_MODELS.contains(&model) || is_v1_0(model)
}

/// The accepted duration range (besides `-1`) of a known model.
pub fn duration_range(model: &str) -> Option<(i64, i64)> {
    match model {
        "seedance-1.5-pro" => Some((4, 12)),
        m if is_v2(m) => Some((4, 15)),
        _ => None,
    }
}

/// Checks a URL's scheme and shape: `https`, `http`, and `asset://` when `allow_asset`.
pub fn check_url(url: &str, allow_asset: bool) -> Result<(), String> {
    let allowed = if allow_asset {
        "an `https://`, `http://` or `asset://` URL"
    } else {
        "an `https://` or `http://` URL"
    };
    let rest = if let Some(r) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        r
    } else if let Some(r) = url.strip_prefix("asset://") {
        if !allow_asset {
            return Err(
                "an `https://` or `http://` URL (`asset://` references work only on the 2.0 models)".into(),
            );
        }
        r
    } else {
        return Err(allowed.into());
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{allowed} with a host or asset id"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{allowed} without spaces or control characters"));
    }
    Ok(())
}

fn allowed_roles(item: &ContentItem) -> &'static [ContentRole] {
    match item {
        ContentItem::ImageUrl { .. } => &[
            ContentRole::FirstFrame,
            ContentRole::LastFrame,
            ContentRole::ReferenceImage,
        ],
        ContentItem::VideoUrl { .. } => &[ContentRole::ReferenceVideo],
        ContentItem::AudioUrl { .. } => &[ContentRole::ReferenceAudio],
        ContentItem::DraftTask { .. } => &[],
    }
}

fn role_name(r: ContentRole) -> &'static str {
    match r {
        ContentRole::FirstFrame => "first_frame",
        ContentRole::LastFrame => "last_frame",
        ContentRole::ReferenceImage => "reference_image",
        ContentRole::ReferenceVideo => "reference_video",
        ContentRole::ReferenceAudio => "reference_audio",
    }
}

fn quote(s: &str) -> String {
    format!("`{}`", super::yaml::excerpt(s, 60))
}

/// Every problem of a request the API would reject, plus warnings (unknown model or tool,
/// `frames` overriding `duration`). The 1.0/1.5/2.0 rules of SPEC "Facts about the real API".
pub fn check_request(req: &CreateRequest) -> Vec<Problem> {
    let mut out = Vec::new();
    let model = req.model.as_str();
    if model.trim().is_empty() {
        out.push(problem(
            "model",
            "nothing",
            "a model id such as `seedance-1.5-pro`",
        ));
    } else if !is_known_model(model) {
        out.push(Problem {
            warning: true,
            ..problem(
                "model",
                quote(model),
                format!(
                    "a known model ({}); the live list may have more",
                    KNOWN_MODELS.join(", ")
                ),
            )
        });
    }
    if req.prompt.trim().is_empty() {
        out.push(problem("prompt", "nothing", "a non-empty text description"));
    }
    if let Some(d) = req.duration {
        match duration_range(model) {
            Some((lo, hi)) if d != -1 && !(lo..=hi).contains(&d) => out.push(problem(
                "duration",
                format!("`{d}`"),
                format!("{lo}..{hi} seconds or -1 (model decides) for {model}"),
            )),
            None if d != -1 && d < 1 => out.push(problem(
                "duration",
                format!("`{d}`"),
                "a positive number of seconds or -1",
            )),
            _ => {}
        }
    }
    if let Some(f) = req.frames {
        if is_known_model(model) && !is_v1_0(model) {
            out.push(problem(
                "frames",
                format!("`{f}`"),
                format!("no `frames` for {model} (only the seedance-1.0 models take it); use `duration`"),
            ));
        } else if !(29..=289).contains(&f) || (f - 25) % 4 != 0 {
            out.push(problem(
                "frames",
                format!("`{f}`"),
                "29..289 frames of the form 25+4n (29, 33, ..., 289)",
            ));
        } else if req.duration.is_some() {
            out.push(Problem {
                warning: true,
                ..problem(
                    "frames",
                    format!("`{f}`"),
                    "either `frames` or `duration`; `frames` takes precedence",
                )
            });
        }
    }
    if let Some(s) = req.seed
        && !(-1..=4_294_967_295).contains(&s)
    {
        out.push(problem("seed", format!("`{s}`"), "-1..4294967295"));
    }
    if req.camera_fixed.is_some() && is_v2(model) {
        out.push(problem(
            "camera_fixed",
            format!("`{}`", req.camera_fixed.unwrap_or_default()),
            format!("no `camera_fixed` for {model} (not supported on the 2.0 models)"),
        ));
    }
    if let Some(e) = req.execution_expires_after
        && !(3600..=259_200).contains(&e)
    {
        out.push(problem(
            "execution_expires_after",
            format!("`{e}`"),
            "3600..259200 seconds",
        ));
    }
    if let Some(s) = &req.safety_identifier {
        let n = s.chars().count();
        if n > MAX_SAFETY_IDENTIFIER {
            out.push(problem(
                "safety_identifier",
                format!("{n} characters"),
                format!("at most {MAX_SAFETY_IDENTIFIER} characters"),
            ));
        } else if s.is_empty() {
            out.push(problem(
                "safety_identifier",
                "an empty string",
                "1..64 characters",
            ));
        }
    }
    if let Some(u) = &req.callback_url
        && let Err(exp) = check_url(u, false)
    {
        out.push(problem("callback_url", quote(u), exp));
    }
    if let Some(tools) = &req.tools {
        for (i, t) in tools.iter().enumerate() {
            if t.kind.trim().is_empty() {
                out.push(problem(
                    format!("tools[{i}]"),
                    "an empty type",
                    "a tool type such as `web_search`",
                ));
            } else if !KNOWN_TOOLS.contains(&t.kind.as_str()) {
                out.push(Problem {
                    warning: true,
                    ..problem(
                        format!("tools[{i}]"),
                        quote(&t.kind),
                        format!("a known tool ({})", KNOWN_TOOLS.join(", ")),
                    )
                });
            }
        }
    }
    check_content(req, &mut out);
    out
}

/// What is wrong with a `job://ID` item, if anything.
fn job_ref_problem(item: &ContentItem, target: &str) -> Option<String> {
    if matches!(item, ContentItem::AudioUrl { .. }) {
        return Some(
            "an audio URL (`job://` works in first_frame, last_frame, reference_image, \
             reference_video and draft_task)"
                .into(),
        );
    }
    let t = target.trim();
    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("`job://ID`, the id of another job of the plan".into());
    }
    None
}

fn check_content(req: &CreateRequest, out: &mut Vec<Problem>) {
    let model = req.model.as_str();
    let allow_asset = is_v2(model) || !is_known_model(model);
    let (mut first, mut last, mut videos) = (0, 0, 0);
    for (i, item) in req.content.iter().enumerate() {
        let field = || format!("content[{i}]");
        if let Some(target) = item.job_ref() {
            // A reference to another job: the runner fills in that job's URL or task id.
            if let Some(exp) = job_ref_problem(item, target) {
                let inner = if matches!(item, ContentItem::DraftTask { .. }) {
                    "id"
                } else {
                    "url"
                };
                out.push(problem(
                    format!("{}.{}.{inner}", field(), item.type_name()),
                    quote(&format!("{}{target}", crate::api::JOB_SCHEME)),
                    exp,
                ));
            }
        } else if let Some(u) = item.url()
            && let Err(exp) = check_url(u, allow_asset)
        {
            out.push(problem(
                format!("{}.{}.url", field(), item.type_name()),
                quote(u),
                exp,
            ));
        }
        if let ContentItem::DraftTask { draft_task, .. } = item
            && draft_task.id.trim().is_empty()
        {
            out.push(problem(
                format!("{}.draft_task.id", field()),
                "nothing",
                "the id of a draft task (`vgen_...`)",
            ));
        }
        let allowed = allowed_roles(item);
        match item.role() {
            Some(r) if !allowed.contains(&r) => out.push(problem(
                format!("{}.role", field()),
                format!("`{}` on {}", role_name(r), item.type_name()),
                if allowed.is_empty() {
                    "no role on a draft_task".to_string()
                } else {
                    format!(
                        "one of {}",
                        allowed
                            .iter()
                            .map(|r| role_name(*r))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            )),
            Some(ContentRole::FirstFrame) => first += 1,
            Some(ContentRole::LastFrame) => last += 1,
            _ => {}
        }
        if matches!(item, ContentItem::VideoUrl { .. }) {
            videos += 1;
        }
    }
    if first > 1 {
        out.push(problem(
            "content",
            format!("{first} first frames"),
            "at most one first_frame",
        ));
    }
    if last > 1 {
        out.push(problem(
            "content",
            format!("{last} last frames"),
            "at most one last_frame",
        ));
    }
    if last > 0 && first == 0 {
        out.push(problem(
            "content",
            "a last_frame without a first_frame",
            "a first_frame with the last_frame",
        ));
    }
    if req.input_has_video == Some(false) && videos > 0 {
        out.push(problem(
            "input_has_video",
            "`false` with a video in content",
            "`true` (or unset)",
        ));
    }
    if req.input_has_video == Some(true) && videos == 0 {
        out.push(problem(
            "input_has_video",
            "`true` without a video in content",
            "a reference_video, or no input_has_video",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DraftTaskRef, MediaUrl, Tool};

    fn req(model: &str) -> CreateRequest {
        CreateRequest {
            model: model.into(),
            prompt: "a cat".into(),
            ..Default::default()
        }
    }

    fn fields(r: &CreateRequest) -> Vec<String> {
        check_request(r)
            .into_iter()
            .filter(|p| !p.warning)
            .map(|p| p.field)
            .collect()
    }

    fn img(url: &str, role: ContentRole) -> ContentItem {
        ContentItem::ImageUrl {
            image_url: MediaUrl { url: url.into() },
            role: Some(role),
        }
    }

    #[test]
    fn minimal_request_is_fine() {
        assert!(check_request(&req("seedance-1.5-pro")).is_empty());
    }

    #[test]
    fn model_required_and_unknown_is_warning() {
        assert_eq!(fields(&req("")), ["model"]);
        let p = check_request(&req("seedance-9"));
        assert_eq!(p.len(), 1);
        assert!(p[0].warning);
    }

    #[test]
    fn prompt_required() {
        let mut r = req("seedance-2.0");
        r.prompt = "  ".into();
        assert_eq!(fields(&r), ["prompt"]);
    }

    #[test]
    fn duration_per_model() {
        let mut r = req("seedance-1.5-pro");
        for (d, ok) in [
            (4, true),
            (12, true),
            (13, false),
            (3, false),
            (-1, true),
            (0, false),
        ] {
            r.duration = Some(d);
            assert_eq!(fields(&r).is_empty(), ok, "1.5 {d}");
        }
        r.model = "seedance-2.0-fast".into();
        for (d, ok) in [(15, true), (16, false), (-1, true)] {
            r.duration = Some(d);
            assert_eq!(fields(&r).is_empty(), ok, "2.0 {d}");
        }
    }

    #[test]
    fn frames_only_on_1_0_and_of_the_form_25_plus_4n() {
        let mut r = req("seedance-1.5-pro");
        r.frames = Some(29);
        assert_eq!(fields(&r), ["frames"]);
        r.model = "seedance-1.0-pro".into();
        assert!(fields(&r).is_empty());
        for (f, ok) in [(289, true), (30, false), (25, false), (293, false)] {
            r.frames = Some(f);
            assert_eq!(fields(&r).is_empty(), ok, "{f}");
        }
    }

    #[test]
    fn seed_range() {
        let mut r = req("seedance-2.0");
        r.seed = Some(4_294_967_296);
        assert_eq!(fields(&r), ["seed"]);
        r.seed = Some(-1);
        assert!(fields(&r).is_empty());
    }

    #[test]
    fn camera_fixed_not_on_2_0() {
        let mut r = req("seedance-2.0");
        r.camera_fixed = Some(true);
        assert_eq!(fields(&r), ["camera_fixed"]);
        r.model = "seedance-1.5-pro".into();
        assert!(fields(&r).is_empty());
    }

    #[test]
    fn execution_expires_after_range() {
        let mut r = req("seedance-2.0");
        r.execution_expires_after = Some(3599);
        assert_eq!(fields(&r), ["execution_expires_after"]);
        r.execution_expires_after = Some(259_200);
        assert!(fields(&r).is_empty());
    }

    #[test]
    fn safety_identifier_length() {
        let mut r = req("seedance-2.0");
        r.safety_identifier = Some("x".repeat(65));
        assert_eq!(fields(&r), ["safety_identifier"]);
        r.safety_identifier = Some("é".repeat(64));
        assert!(fields(&r).is_empty());
    }

    #[test]
    fn url_schemes_and_asset_only_on_2_0() {
        let mut r = req("seedance-1.5-pro");
        r.content = vec![img("asset://abc", ContentRole::FirstFrame)];
        assert_eq!(fields(&r), ["content[0].image_url.url"]);
        r.model = "seedance-2.0".into();
        assert!(fields(&r).is_empty());
        r.content = vec![img("file:///etc/passwd", ContentRole::FirstFrame)];
        assert_eq!(fields(&r), ["content[0].image_url.url"]);
        r.content = vec![img("https://", ContentRole::FirstFrame)];
        assert_eq!(fields(&r), ["content[0].image_url.url"]);
        r.callback_url = Some("ftp://x".into());
        r.content.clear();
        assert_eq!(fields(&r), ["callback_url"]);
    }

    #[test]
    fn roles_match_types_and_frames_are_single() {
        let mut r = req("seedance-2.0");
        r.content = vec![ContentItem::VideoUrl {
            video_url: MediaUrl {
                url: "https://x/v.mp4".into(),
            },
            role: Some(ContentRole::FirstFrame),
        }];
        assert_eq!(fields(&r), ["content[0].role"]);
        r.content = vec![
            img("https://x/a.png", ContentRole::FirstFrame),
            img("https://x/b.png", ContentRole::FirstFrame),
        ];
        assert_eq!(fields(&r), ["content"]);
        r.content = vec![img("https://x/a.png", ContentRole::LastFrame)];
        assert_eq!(fields(&r), ["content"]);
    }

    #[test]
    fn input_has_video_consistent() {
        let mut r = req("seedance-2.0");
        r.input_has_video = Some(true);
        assert_eq!(fields(&r), ["input_has_video"]);
    }

    #[test]
    fn draft_task_needs_an_id_and_tools_a_type() {
        let mut r = req("seedance-2.0");
        r.content = vec![ContentItem::DraftTask {
            draft_task: DraftTaskRef { id: "".into() },
            role: None,
        }];
        r.tools = Some(vec![Tool { kind: "".into() }]);
        assert_eq!(fields(&r), ["tools[0]", "content[0].draft_task.id"]);
    }
}
