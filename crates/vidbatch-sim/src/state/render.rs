//! A task as the API shows it (`task_json`), and the server clock's times in RFC 3339.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::*;

/// `at` moved by `secs` (either way), saturating at the clock's ends.
pub(crate) fn shift(at: SystemTime, secs: f64) -> SystemTime {
    let by = Duration::try_from_secs_f64(secs.abs()).unwrap_or(Duration::ZERO);
    let moved = if secs >= 0.0 {
        at.checked_add(by)
    } else {
        at.checked_sub(by)
    };
    moved.unwrap_or(at)
}

/// RFC 3339 in whole seconds, UTC.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(at);
    dt.replace_nanosecond(0)
        .unwrap_or(dt)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The JSON of a task (without URLs); the server adds `video_url` and friends when completed.
pub(crate) fn task_json(state: &State, task: &Task, reads_succeeded: bool) -> Value {
    let status = match task.status {
        Status::Completed if reads_succeeded => "succeeded",
        s => s.as_str(),
    };
    let progress = match task.status {
        Status::Queued => 0,
        Status::Processing => {
            let done = task
                .started
                .map_or(0.0, |s| state.now().saturating_sub(s).as_secs_f64());
            ((done / task.gen_time.as_secs_f64().max(1e-9)) * 100.0).clamp(0.0, 99.0) as u64
        }
        _ => 100,
    };
    let duration = if task.spec.duration == -1 && !task.was_completed {
        -1
    } else {
        task.duration_used
    };
    let mut v = json!({
        "id": task.id,
        "object": "video.generation",
        "status": status,
        "model": task.spec.model,
        "input_type": task.spec.input_type,
        "ratio": task.spec.ratio,
        "resolution": task.spec.resolution,
        "duration": duration,
        "frames": null,
        "fps": crate::cost::FPS,
        "seed": task.seed_used,
        "created_at": state.rfc3339(task.created),
        "draft": task.spec.draft,
        "draft_task_id": task.spec.draft_task_id,
        "service_tier": task.spec.service_tier,
        "execution_expires_after": task.spec.execution_expires_after,
        "is_expired": task.status == Status::Expired,
        "error": task.error.as_ref().map(|(code, message)| json!({"code": code, "message": message})),
        "progress": progress,
        "x_sim_region": "sim-local-1",
    });
    if task.was_completed
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert(
            "usage".into(),
            json!({"completion_tokens": task.cost, "total_tokens": task.cost}),
        );
        if let Some(end) = task.ended {
            obj.insert("completed_at".into(), Value::from(state.rfc3339(end)));
        }
    }
    v
}
