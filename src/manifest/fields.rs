//! The keys a job may have: the API's request fields, the content shorthands and vidbatch's
//! own keys, and the "did you mean" help for a key that is none of them.

use super::diag::{Diagnostic, SourceLocation};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("promt", job_keys()), Some("prompt"));
        assert_eq!(suggest("durations", job_keys()), Some("duration"));
        assert_eq!(suggest("Model", job_keys()), Some("model"));
        assert_eq!(suggest("zzzzzzzz", job_keys()), None);
    }
}
