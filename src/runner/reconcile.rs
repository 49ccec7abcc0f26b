//! Finding the task a lost create may have made; the main function here is [`find`].
//!
//! A create whose answer was lost (timeout, dropped connection, 5xx after sending) may have
//! made a task that is being paid for. Before anything is sent again, the task lists are read
//! and matched on what a task shows of its request: model, prompt when echoed, ratio,
//! resolution, duration, frames, service tier, and the seed. A job that sets no seed gets one
//! drawn by vidbatch, recorded before its create, so the task that shows that seed is its own
//! and can be told from any look-alike task on the key, another process's included; a task
//! that shows no seed proves nothing. Jobs whose requests still look alike (a seed
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
    /// The one task that shows the seed vidbatch drew for the job: the create made it.
    Proven(&'a Task),
    /// Tasks fit, but none proves to be the job's: its seed was set in the manifest (another
    /// run or client on the key may send the same request), the tasks show no seed, or
    /// several fit.
    Unproven(Vec<&'a Task>),
    /// No task fits on these pages.
    None,
}

/// Looks for the task a create of `req` (as sent) made, among tasks no job owns. `drawn`: the
/// seed in `req` is the one vidbatch drew for the job, so a task showing it is the job's and
/// nobody else's. `since`, when given, skips tasks created before it (by the server's clock).
pub(super) fn find<'a>(
    req: &CreateRequest,
    drawn: bool,
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
    // A task that shows no seed fits, but proves nothing.
    let shown: Vec<&Task> = fits
        .iter()
        .copied()
        .filter(|t| drawn && t.seed.is_some() && t.seed == req.seed)
        .collect();
    match shown[..] {
        _ if fits.is_empty() => Found::None,
        [task] => Found::Proven(task),
        _ => Found::Unproven(fits),
    }
}

/// Why the tasks that fit a lost create are not taken, for the job's failure.
pub(super) fn unproven(tasks: &[&Task], drawn: bool) -> String {
    let ids = tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", ");
    match tasks {
        [_] if drawn => format!(
            "unprovable: task {ids} fits the create whose answer was lost but shows no seed, so \
             nothing tells whether this run made it"
        ),
        [_] => format!(
            "unprovable: task {ids} fits the create whose answer was lost, but the seed was set \
             in the manifest, so another run or client on the key may have made it"
        ),
        _ => format!("ambiguous: tasks {ids} all fit the create whose answer was lost"),
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
        let found = find(&request(Some(42)), true, None, [&page], |id| id == "owned");
        assert!(matches!(found, Found::Proven(t) if t.id == "mine"));
        // The same seed set in the manifest proves nothing: another run may send it too.
        let set = find(&request(Some(42)), false, None, [&page], |id| id == "owned");
        assert!(matches!(set, Found::Unproven(ref v) if v.len() == 1));
        let both = find(&request(None), false, None, [&page], |id| id == "owned");
        assert!(matches!(both, Found::Unproven(ref v) if v.len() == 2));
        assert_eq!(
            find(&request(Some(1)), true, None, [&page], |_| false),
            Found::None
        );
    }

    #[test]
    fn a_task_that_shows_no_seed_never_proves_a_drawn_one() {
        let page = TaskList {
            items: vec![task(
                serde_json::json!({"id":"blank","status":"queued","model":"seedance-1.5-pro"}),
            )],
            total: None,
        };
        let found = find(&request(Some(42)), true, None, [&page], |_| false);
        assert!(
            matches!(found, Found::Unproven(ref v) if v.len() == 1),
            "{found:?}"
        );
        assert!(unproven(&[&page.items[0]], true).contains("shows no seed"));
        // Beside a task that shows the drawn seed, it does not stand in the way.
        let mut with_mine = page.clone();
        with_mine.items.push(task(
            serde_json::json!({"id":"mine","status":"queued","model":"seedance-1.5-pro","seed":42}),
        ));
        let found = find(&request(Some(42)), true, None, [&with_mine], |_| false);
        assert!(matches!(found, Found::Proven(t) if t.id == "mine"), "{found:?}");
    }
}
