//! Finding the task a lost create may have made; the main function here is [`find`].
//!
//! A create whose answer was lost (timeout, dropped connection, 5xx after sending) may have
//! made a task that is being paid for. Before anything is sent again, the task lists are read
//! and matched on what a task shows of its request: model, prompt when echoed, ratio,
//! resolution, duration, frames, service tier, and the seed. A job that sets no seed gets one
//! drawn by vidbatch, recorded before its create, so its task can be told from any look-alike
//! task on the key, another process's included. Jobs whose requests still look alike (a seed
//! the user set, shared across prompts) are created one at a time (one [`match_key`] in
//! flight), and their tasks are also matched on creation time; even so, a task that fits such
//! a job is never taken, as another run or client on the key may send the same request. Two
//! candidates for one create are never resolved by guessing.

use crate::api::{CreateRequest, Ratio, Resolution, ServiceTier, Task, TaskList, Timestamp};

/// What a task shows of a request: creates with equal keys could not be told apart.
pub(super) fn match_key(req: &CreateRequest) -> String {
    serde_json::json!([
        req.model,
        req.ratio,
        req.resolution,
        req.duration,
        req.frames,
        req.seed,
        req.service_tier,
        req.draft
    ])
    .to_string()
}

/// Whether a task shows nothing that differs from the request.
pub(super) fn matches(req: &CreateRequest, task: &Task) -> bool {
    fn same<T: PartialEq>(asked: &Option<T>, shown: &Option<T>) -> bool {
        match (asked, shown) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        }
    }
    fn same_text(asked: Option<&str>, shown: Option<&str>) -> bool {
        asked.zip(shown).is_none_or(|(a, s)| a == s)
    }
    let duration_ok = match (req.duration, task.duration) {
        (Some(d), Some(shown)) if d > 0 => (shown - d as f64).abs() < 0.5,
        _ => true,
    };
    task.model.as_deref().is_none_or(|m| m == req.model)
        && task.prompt.as_deref().is_none_or(|p| p == req.prompt)
        && same_text(req.ratio.map(Ratio::as_str), task.ratio.as_deref())
        && same_text(req.resolution.map(Resolution::as_str), task.resolution.as_deref())
        && same_text(
            req.service_tier.map(ServiceTier::as_str),
            task.service_tier.as_deref(),
        )
        && same(&req.frames, &task.frames)
        && (req.draws_seed() || same(&req.seed, &task.seed))
        && duration_ok
}

/// What the lists say of a lost create.
#[derive(Debug, PartialEq)]
pub(super) enum Found<'a> {
    /// Exactly one task fits: the create made it.
    One(&'a Task),
    /// Several tasks fit and nothing tells them apart.
    Many(Vec<&'a Task>),
    /// No task fits on these pages.
    None,
}

/// Looks for the task a create of `req` made, among tasks no job owns. `since`, when given,
/// skips tasks created before it (by the server's clock).
pub(super) fn find<'a>(
    req: &CreateRequest,
    since: Option<Timestamp>,
    pages: impl IntoIterator<Item = &'a TaskList>,
    owned: impl Fn(&str) -> bool,
) -> Found<'a> {
    let mut fits: Vec<&Task> = Vec::new();
    for task in pages.into_iter().flat_map(|p| p.items.iter()) {
        if owned(&task.id) || fits.iter().any(|f| f.id == task.id) {
            continue;
        }
        let recent = match (since, task.created_at) {
            (Some(s), Some(c)) => c >= s,
            _ => true,
        };
        if recent && matches(req, task) {
            fits.push(task);
        }
    }
    match fits.len() {
        0 => Found::None,
        1 => Found::One(fits[0]),
        _ => Found::Many(fits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(json: serde_json::Value) -> Task {
        serde_json::from_value(json).unwrap()
    }

    fn request(seed: Option<i64>) -> CreateRequest {
        CreateRequest {
            model: "seedance-1.5-pro".into(),
            prompt: "a cat".into(),
            duration: Some(5),
            ratio: Some(Ratio::Landscape),
            seed,
            ..Default::default()
        }
    }

    #[test]
    fn matching_uses_what_the_task_shows() {
        let req = request(None);
        let ok = task(
            serde_json::json!({"id":"a","status":"queued","model":"seedance-1.5-pro","duration":5,"ratio":"16:9"}),
        );
        assert!(matches(&req, &ok));
        let other_model = task(serde_json::json!({"id":"a","status":"queued","model":"seedance-2.0"}));
        assert!(!matches(&req, &other_model));
        let other_prompt =
            task(serde_json::json!({"id":"a","status":"queued","model":"seedance-1.5-pro","prompt":"a dog"}));
        assert!(!matches(&req, &other_prompt));
        let other_duration =
            task(serde_json::json!({"id":"a","status":"queued","model":"seedance-1.5-pro","duration":10}));
        assert!(!matches(&req, &other_duration));
    }

    #[test]
    fn the_seed_tells_a_look_alike_apart_and_two_fits_are_never_guessed() {
        let page = TaskList {
            items: vec![
                task(serde_json::json!({"id":"mine","status":"queued","model":"seedance-1.5-pro","seed":42})),
                task(
                    serde_json::json!({"id":"theirs","status":"queued","model":"seedance-1.5-pro","seed":7}),
                ),
                task(
                    serde_json::json!({"id":"owned","status":"queued","model":"seedance-1.5-pro","seed":42}),
                ),
            ],
            total: None,
        };
        let found = find(&request(Some(42)), None, [&page], |id| id == "owned");
        assert!(matches!(found, Found::One(t) if t.id == "mine"));
        let both = find(&request(None), None, [&page], |id| id == "owned");
        assert!(matches!(both, Found::Many(ref v) if v.len() == 2));
        assert_eq!(find(&request(Some(1)), None, [&page], |_| false), Found::None);
    }
}
