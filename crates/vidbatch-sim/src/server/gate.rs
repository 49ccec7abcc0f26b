//! The gate every `/v1` request passes: the main function here is [`v1`].
//!
//! Every `/v1` request goes through the same gate, in this order: a sequence number `n` is taken;
//! the drop decision (`drop_rate`, hash of seed and `n`) closes the connection with nothing done;
//! bearer auth (401); the per-key rate limit (429 `rate_limit_exceeded`; a refused request
//! consumes nothing); the error decision (`error_rate`: 500 or 503, code `upstream_error` or
//! sometimes the number 503); all accounts are advanced to now; the endpoint's work. The
//! configured latency is then slept *after* the work, so a client that times out may still have
//! created a task. Rate-limit headers are sent on every answer that got past the limiter.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::config::{RetryAfterFormat, SimConfig};
use crate::error::ApiError;
use crate::rng;
use crate::state::{RateDecision, State};

use super::{DropConnection, Inner, Shared};

/// A successful `/v1` answer.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// Close the connection instead of answering (the work is done: an ambiguous create).
    pub(super) drop: bool,
}

impl Reply {
    pub(super) fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            drop: false,
        }
    }
}

pub(super) fn dropped() -> Response {
    let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    resp.extensions_mut().insert(DropConnection);
    resp
}

/// A proxy's `502 Bad Gateway` HTML page that lists the request's headers by name, the API key
/// included, near its top (where an excerpt of the body would show it).
pub(super) fn proxy_echo_page(headers: &HeaderMap) -> Response {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut lines: Vec<String> = headers
        .iter()
        .map(|(name, value)| {
            format!(
                "{}: {}",
                esc(name.as_str()),
                esc(&String::from_utf8_lossy(value.as_bytes()))
            )
        })
        .collect();
    lines.sort();
    let page = format!(
        "<html><title>502</title><h1>502 Bad Gateway</h1><pre>\n{}\n</pre><hr>proxy</html>\n",
        lines.join("\n")
    );
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

pub(super) fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Bearer ")?.trim();
    (!key.is_empty()).then_some(key)
}

pub(super) fn json_response(
    status: StatusCode,
    body: &Value,
    extra: Vec<(HeaderName, HeaderValue)>,
    request_id: &str,
) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    let headers = resp.headers_mut();
    for (k, v) in extra {
        headers.insert(k, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    resp
}

pub(super) fn header_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The gate every `/v1` request goes through (see the module doc), then `work`.
pub(super) async fn v1<F>(inner: &Shared, endpoint: &'static str, headers: &HeaderMap, work: F) -> Response
where
    F: FnOnce(&Inner, &mut State, &str, u64) -> Result<Reply, ApiError>,
{
    let (response, latency) = {
        let mut st = inner.lock();
        let n = st.next_request();
        let cfg = st.cfg.clone();
        let request_id = format!("req_{}", rng::base32(cfg.seed, "request_id", n, 24));
        if rng::chance(cfg.seed, "drop", n, cfg.drop_rate) {
            st.stats.record(endpoint, "dropped");
            st.stats.faults.drops += 1;
            (dropped(), cfg.latency)
        } else if rng::chance(cfg.seed, "proxy_echo", n, cfg.proxy_echo_rate) {
            st.stats.record(endpoint, "502");
            st.stats.faults.proxy_echoes += 1;
            (proxy_echo_page(headers), cfg.latency)
        } else {
            let mut extra = Vec::new();
            let result = gate(inner, &mut st, &cfg, headers, n, &mut extra, work);
            let response = match result {
                Ok(reply) if reply.drop => {
                    st.stats.record(endpoint, "dropped");
                    dropped()
                }
                Ok(reply) => {
                    st.stats.record(endpoint, reply.status.as_str());
                    extra.push((
                        header::DATE,
                        header_value(httpdate::fmt_http_date(st.server_now())),
                    ));
                    json_response(reply.status, &reply.body, extra, &request_id)
                }
                Err(err) => {
                    st.stats.record(endpoint, err.status.as_str());
                    extra.extend(err.headers.iter().cloned());
                    extra.push((
                        header::DATE,
                        header_value(httpdate::fmt_http_date(st.server_now())),
                    ));
                    json_response(err.status, &err.body(&request_id), extra, &request_id)
                }
            };
            (response, cfg.latency)
        }
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

pub(super) fn gate<F>(
    inner: &Inner,
    st: &mut State,
    cfg: &SimConfig,
    headers: &HeaderMap,
    n: u64,
    extra: &mut Vec<(HeaderName, HeaderValue)>,
    work: F,
) -> Result<Reply, ApiError>
where
    F: FnOnce(&Inner, &mut State, &str, u64) -> Result<Reply, ApiError>,
{
    let key = match bearer_key(headers) {
        Some(k) if cfg.api_keys.is_empty() || cfg.api_keys.iter().any(|a| a == k) => k,
        _ => {
            let mut e = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API key",
            );
            e.headers
                .push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            return Err(e);
        }
    };
    let limit = || ("x-ratelimit-limit", header_value(cfg.rpm.to_string()));
    match st.rate_limit(key) {
        RateDecision::Unlimited => {}
        RateDecision::Allowed { remaining, reset } => {
            extra.push((HeaderName::from_static(limit().0), limit().1));
            extra.push((
                HeaderName::from_static("x-ratelimit-remaining"),
                header_value(remaining.to_string()),
            ));
            extra.push((
                HeaderName::from_static("x-ratelimit-reset"),
                header_value(format!("{reset:.3}")),
            ));
        }
        RateDecision::Limited { wait } => {
            st.stats.rate_limited += 1;
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                format!("rate limit of {} requests per minute exceeded", cfg.rpm),
            );
            e.headers.push((HeaderName::from_static(limit().0), limit().1));
            e.headers.push((
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderValue::from_static("0"),
            ));
            e.headers.push((
                HeaderName::from_static("x-ratelimit-reset"),
                header_value(format!("{wait:.3}")),
            ));
            let whole = wait.ceil().max(1.0) as u64;
            match cfg.retry_after {
                None => {}
                Some(RetryAfterFormat::Seconds) => {
                    e.headers
                        .push((header::RETRY_AFTER, header_value(whole.to_string())));
                }
                Some(RetryAfterFormat::HttpDate) => {
                    let at = st.server_now() + Duration::from_secs_f64(wait);
                    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() + 1);
                    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
                    e.headers.push((header::RETRY_AFTER, header_value(date)));
                }
            }
            return Err(e);
        }
    }
    if rng::chance(cfg.seed, "error", n, cfg.error_rate) {
        st.stats.faults.errors += 1;
        let kind = rng::bits(cfg.seed, "error_kind", n);
        let (status, code) = match kind % 4 {
            0 => (StatusCode::INTERNAL_SERVER_ERROR, Value::from("upstream_error")),
            1 => (StatusCode::SERVICE_UNAVAILABLE, Value::from(503)),
            _ => (StatusCode::SERVICE_UNAVAILABLE, Value::from("upstream_error")),
        };
        let mut e = ApiError::new(
            status,
            "upstream_error",
            "the upstream service is temporarily unavailable",
        );
        e.code = code;
        return Err(e);
    }
    st.advance_all();
    let key = key.to_string();
    work(inner, st, &key, n)
}
