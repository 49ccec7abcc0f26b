//! The endpoints' work behind the gate: one handler per route, and [`render`], a task as the API shows it.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::SimConfigPatch;
use crate::error::ApiError;
use crate::rng;
use crate::state::{self, State, Status, Task};
use crate::validate::{DraftLookup, MODELS, validate_create};

use super::gate::{Reply, json_response, v1};
use super::{Inner, Shared, unix_ms};

/// Render a task; a completed one gets fresh presigned URLs when `with_urls`.
pub(super) fn render(inner: &Inner, st: &mut State, key: &str, i: usize, with_urls: bool) -> Value {
    let view = st.next_view();
    let cfg = st.cfg.clone();
    let reads_succeeded = rng::chance(cfg.seed, "succeeded", view, cfg.succeeded_rate);
    let Some(task) = st.accounts.get(key).and_then(|a| a.tasks.get(i)) else {
        return Value::Null;
    };
    let task: Task = task.clone();
    let mut v = state::task_json(st, &task, reads_succeeded);
    if with_urls && task.status == Status::Completed {
        let short = rng::chance(cfg.seed, "short_url", view, cfg.short_url_rate);
        let now = SystemTime::now();
        let ttl = cfg.scaled(cfg.url_ttl);
        let expires_at = if short {
            st.stats.faults.short_urls += 1;
            now
        } else {
            now + ttl
        };
        let expires = unix_ms(expires_at);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "video_url".into(),
                inner.presign(&format!("/files/{}.mp4", task.id), expires).into(),
            );
            let server_expiry = state::shift(now + ttl, cfg.clock_offset_secs);
            obj.insert(
                "video_url_expires_at".into(),
                state::rfc3339(server_expiry).into(),
            );
            obj.insert("video_url_ttl".into(), ttl.as_secs().into());
            if task.spec.return_last_frame
                && !rng::chance(cfg.seed, "no_last_frame", i as u64, cfg.missing_last_frame_rate)
            {
                obj.insert(
                    "last_frame_url".into(),
                    inner
                        .presign(&format!("/files/{}.last.png", task.id), expires)
                        .into(),
                );
            }
        }
    }
    v
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

pub(super) async fn models(AxState(inner): AxState<Shared>, headers: HeaderMap) -> Response {
    v1(&inner, "models", &headers, |_, _, _, _| {
        let data: Vec<Value> = MODELS
            .iter()
            .map(|m| json!({"id": m, "object": "model", "owned_by": "chat"}))
            .collect();
        Ok(Reply::ok(json!({"object": "list", "data": data})))
    })
    .await
}

pub(super) async fn create(AxState(inner): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    v1(&inner, "create", &headers, |inner, st, key, n| {
        let lookup = |id: &str| match st
            .accounts
            .get(key)
            .and_then(|a| a.find(id).and_then(|i| a.tasks.get(i)))
        {
            None => DraftLookup::Missing,
            Some(t) if t.spec.draft && t.status == Status::Completed => DraftLookup::Usable,
            Some(_) => DraftLookup::Unusable,
        };
        let (spec, parsed) = validate_create(&body, &lookup)?;
        let hash: [u8; 32] = Sha256::digest(canonical(&parsed).as_bytes()).into();
        let lookalike = rng::chance(st.cfg.seed, "lookalike", n, st.cfg.lookalike_rate).then(|| {
            let mut other = spec.clone();
            other.prompt = format!("another client's look-alike {n}");
            other.seed = -1;
            other
        });
        let i = st.create(key, spec, hash, idempotency_key.as_deref())?;
        if let Some(other) = lookalike {
            // Another program on the same key, creating a task that lists just like this one.
            let hash: [u8; 32] = Sha256::digest(other.prompt.as_bytes()).into();
            if st.create(key, other, hash, None).is_ok() {
                st.stats.lookalike_tasks += 1;
            }
        }
        let ambiguous = rng::chance(st.cfg.seed, "ambiguous", n, st.cfg.ambiguous_create_rate);
        if ambiguous {
            st.stats.faults.ambiguous_creates += 1;
        }
        // The provider's page shows a create answered `queued`, whatever slots are free.
        let mut body = render(inner, st, key, i, false);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("status".into(), "queued".into());
            obj.insert("progress".into(), 0.into());
        }
        Ok(Reply {
            status: StatusCode::ACCEPTED,
            body,
            drop: ambiguous,
        })
    })
    .await
}

fn find_task(st: &State, key: &str, id: &str) -> Result<usize, ApiError> {
    st.accounts
        .get(key)
        .and_then(|a| a.find(id))
        .ok_or_else(|| ApiError::task_not_found(id))
}

pub(super) async fn get_task(
    AxState(inner): AxState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    v1(&inner, "get", &headers, |inner, st, key, _| {
        let i = find_task(st, key, &id)?;
        Ok(Reply::ok(render(inner, st, key, i, true)))
    })
    .await
}

pub(super) async fn cancel(
    AxState(inner): AxState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    v1(&inner, "cancel", &headers, |inner, st, key, _| {
        let i = find_task(st, key, &id)?;
        st.cancel(key, i)?;
        Ok(Reply::ok(render(inner, st, key, i, false)))
    })
    .await
}

/// Parse the list query: `limit` 1..=100 (default 20) and `status`; anything else is a 400.
fn list_query(raw: Option<&str>) -> Result<(usize, Option<Status>), ApiError> {
    let mut limit = 20;
    let mut status = None;
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| ApiError::invalid("limit", "limit must be an integer 1..100"))?;
            }
            "status" => {
                status = Some(Status::parse(v).ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        "status must be one of queued, processing, completed, failed, expired, cancelled",
                    )
                })?);
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown query parameter {other}"),
                ));
            }
        }
    }
    Ok((limit, status))
}

pub(super) async fn list(
    AxState(inner): AxState<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    v1(&inner, "list", &headers, |inner, st, key, _| {
        let (limit, status) = list_query(query.as_deref())?;
        // Lists are eventually consistent: a new task shows only after the lag.
        let (lag, now) = (st.cfg.list_lag, st.now());
        let matching: Vec<usize> = st
            .accounts
            .get(key)
            .map(|a| {
                (0..a.tasks.len())
                    .rev()
                    .filter(|&i| a.tasks[i].created + lag <= now)
                    .filter(|&i| status.is_none_or(|s| a.tasks[i].status == s))
                    .collect()
            })
            .unwrap_or_default();
        let (with_urls, with_seeds) = (st.cfg.list_urls, st.cfg.list_seeds);
        let items: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(|&i| {
                let mut item = render(inner, st, key, i, with_urls);
                if !with_seeds && let Some(fields) = item.as_object_mut() {
                    fields.remove("seed");
                }
                item
            })
            .collect();
        Ok(Reply::ok(json!({"items": items, "total": matching.len()})))
    })
    .await
}

pub(super) async fn stats(AxState(inner): AxState<Shared>) -> Response {
    let served = inner.served.load(Ordering::Relaxed);
    let snapshot = inner.lock().snapshot(served);
    axum::Json(snapshot).into_response()
}

pub(super) async fn patch_config(AxState(inner): AxState<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<SimConfigPatch>(&body) {
        Ok(patch) => {
            let mut st = inner.lock();
            st.reconfigure(|cfg| patch.apply(cfg));
            axum::Json(st.cfg.clone()).into_response()
        }
        Err(e) => {
            let err = ApiError::invalid("body", format!("bad config patch: {e}"));
            json_response(
                err.status,
                &err.body("req_sim_config"),
                Vec::new(),
                "req_sim_config",
            )
        }
    }
}

pub(super) async fn fallback(
    AxState(inner): AxState<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path().starts_with("/v1/") {
        let path = uri.path().to_string();
        return v1(&inner, "other", &headers, move |_, _, _, _| {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {path}"),
            ))
        })
        .await;
    }
    StatusCode::NOT_FOUND.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":"s"}}"#).unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#).unwrap_or_default();
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&a), canonical(&json!({"b": 2})));
    }

    #[test]
    fn list_query_rules() {
        assert!(matches!(list_query(None), Ok((20, None))));
        assert!(matches!(
            list_query(Some("limit=100&status=failed")),
            Ok((100, Some(Status::Failed)))
        ));
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "status=succeeded",
            "cursor=abc",
        ] {
            assert!(list_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
