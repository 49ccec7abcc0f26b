//! The one error type of the API client; the main structure here is [`ApiError`].
//!
//! Every failure of a request lands in one small set of classes that say what the caller may
//! do next: wait and retry, retry with backoff, reconcile before re-sending, stop, or give up on
//! the job. Decisions rest on the HTTP status and the error `code`, never on message text.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use time::OffsetDateTime;

use super::scrub::Scrubber;
use super::types::{ErrorBody, ErrorDetail};

/// Error codes of a 429 that mean the account cannot pay, not that it is too fast.
const QUOTA_CODES: &[&str] = &[
    "insufficient_quota",
    "quota_exceeded",
    "insufficient_balance",
    "balance_exhausted",
    "billing_hard_limit_reached",
];

/// Error codes of a 429 that mean the account has too many tasks waiting, not that it is too
/// fast: the answer is to keep fewer tasks queued, not to slow every request.
const QUEUE_FULL_CODES: &[&str] = &["too_many_queued_tasks", "queue_full", "too_many_tasks"];

/// A failed API call, classified.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 429: too many requests. Wait `retry_after` when the server said, then retry.
    #[error("rate limited{}", wait_suffix(*retry_after))]
    RateLimited {
        /// The wait the server asked for (`Retry-After`, else `x-ratelimit-reset`).
        retry_after: Option<Duration>,
        /// The request budget the server announced (`x-ratelimit-limit`), when it did.
        limit: Option<u32>,
        /// The error body, when there was one.
        detail: Option<Box<ErrorDetail>>,
    },
    /// 5xx, a timeout or a connection error on a request that is safe to repeat.
    #[error("transient error: {reason}")]
    Transient {
        /// HTTP status, when an answer came.
        status: Option<u16>,
        /// What happened.
        reason: String,
    },
    /// A create request was sent and no usable answer came: a task may exist.
    #[error("create outcome unknown: {reason}")]
    AmbiguousCreate {
        /// HTTP status, when an answer came.
        status: Option<u16>,
        /// What happened.
        reason: String,
    },
    /// 401: the key is missing or wrong.
    #[error("unauthorized: {}", .0.message)]
    Unauthorized(Box<ErrorDetail>),
    /// 402, or a 429 that says the quota is exhausted: the balance cannot pay.
    #[error("payment required: {}", .0.message)]
    Payment(Box<ErrorDetail>),
    /// 400 (and other 4xx without a class of their own): the request is wrong.
    #[error("invalid request ({}{}): {}", .detail.code, param_suffix(&.detail.param), .detail.message)]
    InvalidRequest {
        /// HTTP status (400, or another 4xx).
        status: u16,
        /// The error body.
        detail: Box<ErrorDetail>,
    },
    /// 404: no such task (or not this account's).
    #[error("not found: {}", .0.message)]
    NotFound(Box<ErrorDetail>),
    /// 409: the task's state does not allow this (e.g. cancelling a finished task).
    #[error("conflict: {}", .0.message)]
    Conflict(Box<ErrorDetail>),
}

fn wait_suffix(wait: Option<Duration>) -> String {
    wait.map(|d| format!(" (server asks to wait {:.1}s)", d.as_secs_f64()))
        .unwrap_or_default()
}

fn param_suffix(param: &Option<String>) -> String {
    param.as_ref().map(|p| format!(", param {p}")).unwrap_or_default()
}

impl ApiError {
    /// The HTTP status behind the error, when an answer came.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::RateLimited { .. } => Some(429),
            ApiError::Transient { status, .. } | ApiError::AmbiguousCreate { status, .. } => *status,
            ApiError::Unauthorized(_) => Some(401),
            ApiError::Payment(_) => Some(402),
            ApiError::InvalidRequest { status, .. } => Some(*status),
            ApiError::NotFound(_) => Some(404),
            ApiError::Conflict(_) => Some(409),
        }
    }

    /// The API's error body, when there was one.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            ApiError::RateLimited { detail, .. } => detail.as_deref(),
            ApiError::Unauthorized(d)
            | ApiError::Payment(d)
            | ApiError::NotFound(d)
            | ApiError::Conflict(d) => Some(d),
            ApiError::InvalidRequest { detail, .. } => Some(detail),
            ApiError::Transient { .. } | ApiError::AmbiguousCreate { .. } => None,
        }
    }

    /// A short machine-readable name of the class.
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Transient { .. } => "transient",
            ApiError::AmbiguousCreate { .. } => "ambiguous_create",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Payment(_) => "payment",
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
        }
    }

    /// Whether the error is a 429 that says too many tasks wait queued on the account.
    pub fn is_queue_full(&self) -> bool {
        matches!(self, ApiError::RateLimited { detail: Some(d), .. } if QUEUE_FULL_CODES.contains(&d.code.0.as_str()))
    }

    /// Whether the whole run must stop submitting (401, 402).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ApiError::Unauthorized(_) | ApiError::Payment(_))
    }

    /// Whether the same request may simply be tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ApiError::RateLimited { .. } | ApiError::Transient { .. })
    }
}

/// Classifies an answer whose status is not a success.
///
/// The body is server text: the key and any `Authorization`/`Bearer` value are scrubbed out of
/// it (whole, before it is cut to an excerpt) and out of the error body's fields, so no message
/// of the returned error holds a secret.
pub(crate) fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    is_create: bool,
    scrub: &Scrubber,
) -> ApiError {
    let text = String::from_utf8_lossy(body);
    let text = scrub.scrub(&text);
    let body = text.as_bytes();
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error)
        .map(|d| scrub_detail(d, scrub));
    let code = status.as_u16();
    let detail_or_text = || {
        Box::new(detail.clone().unwrap_or_else(|| ErrorDetail {
            message: body_excerpt(body),
            ..Default::default()
        }))
    };
    match code {
        429 => {
            let quota = detail
                .as_ref()
                .is_some_and(|d| QUOTA_CODES.contains(&d.code.0.as_str()));
            if quota {
                ApiError::Payment(detail_or_text())
            } else {
                ApiError::RateLimited {
                    retry_after: server_wait(headers, OffsetDateTime::now_utc()),
                    limit: headers
                        .get("x-ratelimit-limit")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok()),
                    detail: detail.map(Box::new),
                }
            }
        }
        401 => ApiError::Unauthorized(detail_or_text()),
        402 => ApiError::Payment(detail_or_text()),
        404 => ApiError::NotFound(detail_or_text()),
        409 => ApiError::Conflict(detail_or_text()),
        408 | 500..=599 => {
            let reason = match &detail {
                Some(d) => format!("HTTP {code} {}: {}", d.code, d.message),
                None => format!("HTTP {code}: {}", body_excerpt(body)),
            };
            if is_create {
                ApiError::AmbiguousCreate {
                    status: Some(code),
                    reason,
                }
            } else {
                ApiError::Transient {
                    status: Some(code),
                    reason,
                }
            }
        }
        _ => ApiError::InvalidRequest {
            status: code,
            detail: detail_or_text(),
        },
    }
}

/// The error body with every text field scrubbed (a JSON escape may have hidden a secret from
/// the scrub of the raw body).
fn scrub_detail(mut d: ErrorDetail, scrub: &Scrubber) -> ErrorDetail {
    let clean = |s: &mut String| {
        if let std::borrow::Cow::Owned(c) = scrub.scrub(s) {
            *s = c;
        }
    };
    clean(&mut d.message);
    clean(&mut d.code.0);
    for s in [&mut d.param, &mut d.kind, &mut d.request_id, &mut d.task_id]
        .into_iter()
        .flatten()
    {
        clean(s);
    }
    d
}

/// The wait a 429 asks for: `Retry-After` (seconds or HTTP date), else `x-ratelimit-reset`
/// (seconds from now, or a Unix time when it is larger than a day's worth of seconds).
/// A date or Unix time is on the server's clock, so it is read against the answer's own
/// `Date`; `now`, the local time, stands in only for an answer without one.
pub fn server_wait(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let now = text("date")
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .map_or(now, OffsetDateTime::from);
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return secs_to_duration(secs);
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            let at = OffsetDateTime::from(at);
            return Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO));
        }
    }
    let reset = text("x-ratelimit-reset")?;
    let reset = reset.trim_end_matches('s').parse::<f64>().ok()?;
    if reset > 86_400.0 * 365.0 {
        // An absolute Unix time (seconds, or milliseconds when very large).
        let at = if reset > 1e12 { reset / 1000.0 } else { reset };
        return secs_to_duration(at - now.unix_timestamp() as f64).or(Some(Duration::ZERO));
    }
    secs_to_duration(reset)
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Some(Duration::from_secs_f64(secs.min(86_400.0)))
    } else {
        None
    }
}

/// The start of a body, as text, for messages.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "(empty body)".to_string()
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds_date_and_reset() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(
            server_wait(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(std::time::SystemTime::from(now + time::Duration::seconds(30)));
        assert_eq!(
            server_wait(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            server_wait(&headers(&[("x-ratelimit-reset", "2.5")]), now),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            server_wait(&headers(&[("x-ratelimit-reset", "1800000012")]), now),
            Some(Duration::from_secs(12))
        );
        assert_eq!(server_wait(&headers(&[]), now), None);
        assert_eq!(server_wait(&headers(&[("retry-after", "soon")]), now), None);
        // A server two hours ahead: its dates are read against its own `Date`.
        let server_now = now + time::Duration::hours(2);
        let date_then = httpdate::fmt_http_date(std::time::SystemTime::from(server_now));
        let date_later = httpdate::fmt_http_date(std::time::SystemTime::from(
            server_now + time::Duration::seconds(30),
        ));
        assert_eq!(
            server_wait(
                &headers(&[("retry-after", &date_later), ("date", &date_then)]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        let reset = (server_now.unix_timestamp() + 12).to_string();
        assert_eq!(
            server_wait(
                &headers(&[("x-ratelimit-reset", &reset), ("date", &date_then)]),
                now
            ),
            Some(Duration::from_secs(12))
        );
    }

    #[test]
    fn classification_by_status_and_code() {
        let h = HeaderMap::new();
        let body = br#"{"error":{"code":"invalid_request","message":"bad ratio","param":"ratio"}}"#;
        match classify_status(StatusCode::BAD_REQUEST, &h, body, false, &Scrubber::default()) {
            ApiError::InvalidRequest { status: 400, detail } => {
                assert_eq!(detail.param.as_deref(), Some("ratio"));
                assert_eq!(detail.code.0, "invalid_request");
            }
            other => panic!("{other:?}"),
        }
        let quota = br#"{"error":{"code":"insufficient_quota","message":"x"}}"#;
        assert!(matches!(
            classify_status(
                StatusCode::TOO_MANY_REQUESTS,
                &h,
                quota,
                false,
                &Scrubber::default()
            ),
            ApiError::Payment(_)
        ));
        assert!(matches!(
            classify_status(
                StatusCode::SERVICE_UNAVAILABLE,
                &h,
                b"<html>",
                true,
                &Scrubber::default()
            ),
            ApiError::AmbiguousCreate {
                status: Some(503),
                ..
            }
        ));
        assert!(matches!(
            classify_status(
                StatusCode::SERVICE_UNAVAILABLE,
                &h,
                b"<html>",
                false,
                &Scrubber::default()
            ),
            ApiError::Transient {
                status: Some(503),
                ..
            }
        ));
        assert!(classify_status(StatusCode::UNAUTHORIZED, &h, b"", false, &Scrubber::default()).is_fatal());
        assert!(
            classify_status(StatusCode::PAYMENT_REQUIRED, &h, b"", false, &Scrubber::default()).is_fatal()
        );
    }
}
