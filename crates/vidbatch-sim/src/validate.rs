//! Request validation of a create, like the real API: the main item here is [`validate_create`].
//!
//! Rules (every violation is a 400 whose `param` names the field, e.g. `content[1].role`):
//! - the body is a JSON object; unknown top-level fields are rejected; every field has one JSON
//!   type and `null` is rejected too (the harsher reading: omit a field instead of sending `null`);
//!   numbers must be integers where integers are expected (`5.0` is rejected);
//! - `model` required, one of [`MODELS`] (else `upstream_model_not_found`);
//! - `prompt` required, a string that is not blank; a prompt containing
//!   `sim:content-violation` is answered `upstream_content_violation` (a hook for tests), and
//!   the first task of an account whose prompt contains `sim:fails-once` ends `failed` (later
//!   ones with the same prompt run: a hook for retry tests);
//! - `ratio` in 16:9, 9:16, 4:3, 3:4, 21:9, 1:1, adaptive (default 16:9, or adaptive when images are given);
//! - `resolution` in 480p, 720p, 1080p (default 720p);
//! - `duration` -1 or 4..=12 on seedance-1.5-pro, 4..=15 on the 2.0 models (default 5);
//! - `frames` only on 1.0 models, so rejected on every model offered here (`upstream_invalid_parameter`);
//! - `seed` -1..=4294967295; `execution_expires_after` 3600..=259200 (default 172800);
//! - `camera_fixed` not accepted at all on the 2.0 models (`upstream_invalid_parameter`);
//! - `safety_identifier` at most 64 characters; `service_tier` default or flex;
//! - booleans: `generate_audio`, `input_has_video`, `camera_fixed`, `watermark`, `return_last_frame`, `draft`;
//! - `callback_url` an http(s) URL (the simulator never calls it);
//! - `tools` an array of objects `{"type": "web_search"}` (no other type or key);
//! - `content` an array of `{type, <type>: {url}, role}` with type image_url (roles first_frame,
//!   last_frame, reference_image), video_url (role reference_video), audio_url (role
//!   reference_audio), or `{"type": "draft_task", "draft_task": {"id": "vgen_..."}}` naming a
//!   completed draft task of the same account, alone in `content`. The role is required. URLs are
//!   http(s), or `asset://...` on the 2.0 models only (upstream rejects it on 1.5-pro). At most one
//!   first_frame and one last_frame, last_frame needs first_frame, at most 9 reference images
//!   (not mixed with first/last frame), at most 3 reference videos and 3 reference audios, and
//!   video/audio references only on the 2.0 models (`upstream_invalid_parameter`).

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;

/// The models the simulator offers.
pub const MODELS: [&str; 3] = ["seedance-1.5-pro", "seedance-2.0", "seedance-2.0-fast"];

const FIELDS: [&str; 19] = [
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

const RATIOS: [&str; 7] = ["16:9", "9:16", "4:3", "3:4", "21:9", "1:1", "adaptive"];
const RESOLUTIONS: [&str; 3] = ["480p", "720p", "1080p"];

/// A validated create request, with defaults filled in.
#[derive(Debug, Clone)]
pub(crate) struct CreateSpec {
    pub model: String,
    /// The prompt as sent (never echoed in answers, like the real API; kept for test checks).
    pub prompt: String,
    pub ratio: String,
    pub resolution: String,
    /// As requested: -1 or a number of seconds.
    pub duration: i64,
    pub seed: i64,
    pub return_last_frame: bool,
    pub service_tier: String,
    pub execution_expires_after: u64,
    pub input_type: &'static str,
    pub draft: bool,
    pub draft_task_id: Option<String>,
    /// The content items as `role=url` or `draft_task=id` (kept for test checks).
    pub inputs: Vec<String>,
}

impl CreateSpec {
    /// The longest duration the model accepts.
    pub fn max_duration(&self) -> i64 {
        max_duration(&self.model)
    }
}

fn max_duration(model: &str) -> i64 {
    if model == "seedance-1.5-pro" { 12 } else { 15 }
}

fn is_v2(model: &str) -> bool {
    model.starts_with("seedance-2.0")
}

fn type_error(param: &str, want: &str, got: &Value) -> ApiError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::invalid(param, format!("{param} must be {want}, got {got}"))
}

fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(type_error(key, "a string", v)),
    }
}

fn opt_int(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v @ Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| type_error(key, "an integer in range", v)),
        Some(v) => Err(type_error(key, "an integer", v)),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(type_error(key, "a boolean", v)),
    }
}

fn one_of(param: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            format!("{param} must be one of {}", allowed.join(", ")),
        ))
    }
}

fn is_http_url(url: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && url.len() > scheme.len()
            && !url.contains(char::is_whitespace)
    })
}

fn check_media_url(url: &str, model: &str, param: &str) -> Result<(), ApiError> {
    if let Some(rest) = url.strip_prefix("asset://") {
        if rest.is_empty() {
            return Err(ApiError::invalid(param, "asset:// URL without an asset id"));
        }
        if !is_v2(model) {
            return Err(ApiError::upstream_invalid(
                param,
                format!("asset:// references are not supported by {model}"),
            ));
        }
        return Ok(());
    }
    if is_http_url(url) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            format!("{param} must be an http(s) URL"),
        ))
    }
}

/// Reject keys of `obj` outside `allowed`, naming them under `prefix`.
fn no_unknown_keys(obj: &Map<String, Value>, allowed: &[&str], prefix: &str) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(
            format!("{prefix}{k}"),
            format!("unknown field {prefix}{k}"),
        )),
        None => Ok(()),
    }
}

/// What [`validate_create`] needs to know about a referenced draft task.
pub(crate) enum DraftLookup {
    /// A completed draft task of the account.
    Usable,
    /// No such task in the account.
    Missing,
    /// The task exists but is not a draft, or is not completed.
    Unusable,
}

#[derive(Default)]
struct ContentSummary {
    first: usize,
    last: usize,
    refs: usize,
    videos: usize,
    audios: usize,
    draft_task_id: Option<String>,
    /// Each item as `role=url` (or `draft_task=id`), in order.
    inputs: Vec<String>,
}

fn validate_content(
    items: &[Value],
    model: &str,
    draft_lookup: &dyn Fn(&str) -> DraftLookup,
) -> Result<ContentSummary, ApiError> {
    let mut sum = ContentSummary::default();
    for (i, item) in items.iter().enumerate() {
        let p = format!("content[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| type_error(&p, "an object", item))?;
        let kind = match obj.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(v) => return Err(type_error(&format!("{p}.type"), "a string", v)),
            None => return Err(ApiError::invalid(format!("{p}.type"), "type is required")),
        };
        one_of(
            &format!("{p}.type"),
            kind,
            &["image_url", "video_url", "audio_url", "draft_task"],
        )?;
        no_unknown_keys(obj, &["type", kind, "role"], &format!("{p}."))?;
        let inner_p = format!("{p}.{kind}");
        let inner = match obj.get(kind) {
            Some(Value::Object(m)) => m,
            Some(v) => return Err(type_error(&inner_p, "an object", v)),
            None => {
                return Err(ApiError::invalid(&inner_p, format!("{inner_p} is required")));
            }
        };
        let role = opt_str(obj, "role").map_err(|e| e.with_param(format!("{p}.role")))?;
        if kind == "draft_task" {
            no_unknown_keys(inner, &["id"], &format!("{inner_p}."))?;
            let id_p = format!("{inner_p}.id");
            let id = opt_str(inner, "id")
                .map_err(|e| e.with_param(&id_p))?
                .ok_or_else(|| ApiError::invalid(&id_p, "the draft task id is required"))?;
            if role.is_some() {
                return Err(ApiError::invalid(
                    format!("{p}.role"),
                    "a draft_task item takes no role",
                ));
            }
            if items.len() != 1 {
                return Err(ApiError::invalid(
                    "content",
                    "a draft_task item must be alone in content",
                ));
            }
            match draft_lookup(id) {
                DraftLookup::Usable => {}
                DraftLookup::Missing => {
                    return Err(ApiError::invalid(&id_p, format!("draft task {id} not found")));
                }
                DraftLookup::Unusable => {
                    return Err(ApiError::invalid(
                        &id_p,
                        format!("task {id} is not a completed draft task"),
                    ));
                }
            }
            sum.draft_task_id = Some(id.to_string());
            sum.inputs.push(format!("draft_task={id}"));
            continue;
        }
        no_unknown_keys(inner, &["url"], &format!("{inner_p}."))?;
        let url_p = format!("{inner_p}.url");
        let url = opt_str(inner, "url")
            .map_err(|e| e.with_param(&url_p))?
            .ok_or_else(|| ApiError::invalid(&url_p, "url is required"))?;
        check_media_url(url, model, &url_p)?;
        let role_p = format!("{p}.role");
        let role = role.ok_or_else(|| ApiError::invalid(&role_p, "role is required"))?;
        let allowed: &[&str] = match kind {
            "image_url" => &["first_frame", "last_frame", "reference_image"],
            "video_url" => &["reference_video"],
            _ => &["reference_audio"],
        };
        one_of(&role_p, role, allowed)?;
        sum.inputs.push(format!("{role}={url}"));
        match role {
            "first_frame" => sum.first += 1,
            "last_frame" => sum.last += 1,
            "reference_image" => sum.refs += 1,
            "reference_video" => sum.videos += 1,
            _ => sum.audios += 1,
        }
        if (sum.videos > 0 || sum.audios > 0) && !is_v2(model) {
            return Err(ApiError::upstream_invalid(
                role_p,
                format!("{role} is not supported by {model}"),
            ));
        }
    }
    let bad = |msg: &str| Err(ApiError::upstream_invalid("content", msg));
    if sum.first > 1 || sum.last > 1 {
        return bad("at most one first_frame and one last_frame");
    }
    if sum.last > 0 && sum.first == 0 {
        return bad("last_frame requires a first_frame");
    }
    if sum.refs > 0 && sum.first + sum.last > 0 {
        return bad("reference_image cannot be mixed with first_frame/last_frame");
    }
    if sum.refs > 9 || sum.videos > 3 || sum.audios > 3 {
        return bad("too many references (at most 9 images, 3 videos, 3 audios)");
    }
    Ok(sum)
}

/// Validate a create body (raw bytes) per the rules in the module doc; returns the spec and the parsed body.
pub(crate) fn validate_create(
    body: &[u8],
    draft_lookup: &dyn Fn(&str) -> DraftLookup,
) -> Result<(CreateSpec, Value), ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = &value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a JSON object",
        ));
    };
    no_unknown_keys(obj, &FIELDS, "")?;

    let model = opt_str(obj, "model")?.ok_or_else(|| ApiError::invalid("model", "model is required"))?;
    if !MODELS.contains(&model) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "upstream_model_not_found",
            format!("model {model} not found"),
        )
        .with_param("model"));
    }
    let prompt = opt_str(obj, "prompt")?.ok_or_else(|| ApiError::invalid("prompt", "prompt is required"))?;
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    }
    if prompt.contains("sim:content-violation") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "upstream_content_violation",
            "the prompt was rejected by the content policy",
        )
        .with_param("prompt"));
    }

    let content = match obj.get("content") {
        None => ContentSummary::default(),
        Some(Value::Array(items)) => validate_content(items, model, draft_lookup)?,
        Some(v) => return Err(type_error("content", "an array", v)),
    };
    let has_images = content.first + content.last + content.refs > 0;

    let ratio = opt_str(obj, "ratio")?.unwrap_or(if has_images { "adaptive" } else { "16:9" });
    one_of("ratio", ratio, &RATIOS)?;
    let resolution = opt_str(obj, "resolution")?.unwrap_or("720p");
    one_of("resolution", resolution, &RESOLUTIONS)?;

    let duration = opt_int(obj, "duration")?.unwrap_or(5);
    let max = max_duration(model);
    if duration != -1 && !(4..=max).contains(&duration) {
        return Err(ApiError::upstream_invalid(
            "duration",
            format!("duration must be -1 or 4..{max} for {model}"),
        ));
    }
    if opt_int(obj, "frames")?.is_some() {
        return Err(ApiError::upstream_invalid(
            "frames",
            format!("frames is only supported by seedance-1.0 models, not {model}"),
        ));
    }
    let seed = opt_int(obj, "seed")?.unwrap_or(-1);
    if !(-1..=4_294_967_295).contains(&seed) {
        return Err(ApiError::invalid("seed", "seed must be -1..4294967295"));
    }
    for key in ["generate_audio", "input_has_video", "watermark"] {
        opt_bool(obj, key)?;
    }
    if opt_bool(obj, "camera_fixed")?.is_some() && is_v2(model) {
        return Err(ApiError::upstream_invalid(
            "camera_fixed",
            format!("camera_fixed is not supported by {model}"),
        ));
    }
    let return_last_frame = opt_bool(obj, "return_last_frame")?.unwrap_or(false);
    let draft = opt_bool(obj, "draft")?.unwrap_or(false);
    let eea = opt_int(obj, "execution_expires_after")?.unwrap_or(172_800);
    if !(3600..=259_200).contains(&eea) {
        return Err(ApiError::invalid(
            "execution_expires_after",
            "execution_expires_after must be 3600..259200",
        ));
    }
    if let Some(s) = opt_str(obj, "safety_identifier")?
        && s.chars().count() > 64
    {
        return Err(ApiError::invalid(
            "safety_identifier",
            "safety_identifier is at most 64 characters",
        ));
    }
    let service_tier = opt_str(obj, "service_tier")?.unwrap_or("default");
    one_of("service_tier", service_tier, &["default", "flex"])?;
    if let Some(url) = opt_str(obj, "callback_url")?
        && !is_http_url(url)
    {
        return Err(ApiError::invalid(
            "callback_url",
            "callback_url must be an http(s) URL",
        ));
    }
    match obj.get("tools") {
        None => {}
        Some(Value::Array(tools)) => {
            for (i, tool) in tools.iter().enumerate() {
                let p = format!("tools[{i}]");
                let t = tool
                    .as_object()
                    .ok_or_else(|| type_error(&p, "an object", tool))?;
                no_unknown_keys(t, &["type"], &format!("{p}."))?;
                let kind = opt_str(t, "type")
                    .map_err(|e| e.with_param(format!("{p}.type")))?
                    .ok_or_else(|| ApiError::invalid(format!("{p}.type"), "type is required"))?;
                one_of(&format!("{p}.type"), kind, &["web_search"])?;
            }
        }
        Some(v) => return Err(type_error("tools", "an array", v)),
    }

    let input_type = if content.draft_task_id.is_some() {
        "draft_task"
    } else if content.videos > 0 {
        "video"
    } else if has_images {
        "image"
    } else if content.audios > 0 {
        "audio"
    } else {
        "text"
    };
    let spec = CreateSpec {
        model: model.to_string(),
        prompt: prompt.to_string(),
        ratio: ratio.to_string(),
        resolution: resolution.to_string(),
        duration,
        seed,
        return_last_frame,
        service_tier: service_tier.to_string(),
        execution_expires_after: u64::try_from(eea).unwrap_or(172_800),
        input_type,
        draft,
        draft_task_id: content.draft_task_id,
        inputs: content.inputs,
    };
    Ok((spec, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<CreateSpec, ApiError> {
        validate_create(body.as_bytes(), &|_| DraftLookup::Missing).map(|(spec, _)| spec)
    }

    #[test]
    fn defaults_are_filled() {
        let spec = check(r#"{"model":"seedance-2.0","prompt":"a cat"}"#).expect("valid");
        assert_eq!(
            (spec.ratio.as_str(), spec.resolution.as_str(), spec.duration),
            ("16:9", "720p", 5)
        );
        assert_eq!(spec.input_type, "text");
    }

    #[test]
    fn nulls_and_floats_are_rejected() {
        let e = check(r#"{"model":"seedance-2.0","prompt":"a","seed":null}"#).expect_err("null");
        assert_eq!(e.param.as_deref(), Some("seed"));
        let e = check(r#"{"model":"seedance-2.0","prompt":"a","duration":5.0}"#).expect_err("float");
        assert_eq!(e.param.as_deref(), Some("duration"));
    }
}
