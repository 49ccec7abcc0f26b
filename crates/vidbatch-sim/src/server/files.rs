//! Presigned downloads under `/files/`: the main function here is [`download`].
//!
//! Downloads (`/files/...`) need no auth: the URL's `expires` (Unix ms) and `sig`
//! (hex SHA-256 of a per-process secret, the path, a newline and `expires`) are checked; a bad
//! signature or an expired URL is 403 with an S3-like XML body, a gone asset 404. `Range`
//! (`bytes=a-b`, `a-`, `-n`) gives 206 or 416; `HEAD` gives the headers only and draws no fault.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::media::{self, RangeAnswer, StreamPlan};
use crate::rng;
use crate::state::Status;

use super::gate::header_value;
use super::{Shared, unix_ms};

pub(super) fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>SIM</RequestId></Error>\n"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn query_param<'a>(raw: Option<&'a str>, name: &str) -> Option<&'a str> {
    raw?.split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(super) async fn download(
    AxState(inner): AxState<Shared>,
    method: Method,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (resp, status_key) = download_inner(&inner, &method, &name, query.as_deref(), &headers);
    inner.lock().stats.record("download", &status_key);
    resp
}

fn download_inner(
    inner: &Shared,
    method: &Method,
    name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> (Response, String) {
    let path = format!("/files/{name}");
    let expires = query_param(query, "expires").and_then(|e| e.parse::<u64>().ok());
    let sig = query_param(query, "sig");
    let (Some(expires), Some(sig)) = (expires, sig) else {
        return (
            s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Query-string authentication requires the expires and sig parameters",
            ),
            "403".into(),
        );
    };
    if inner.sign(&path, expires) != sig {
        return (
            s3_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided",
            ),
            "403".into(),
        );
    }
    if unix_ms(SystemTime::now()) >= expires {
        return (
            s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired"),
            "403".into(),
        );
    }
    let (id, is_video) = match (name.strip_suffix(".mp4"), name.strip_suffix(".last.png")) {
        (Some(id), _) => (id, true),
        (_, Some(id)) => (id, false),
        _ => {
            return (
                s3_error(
                    StatusCode::NOT_FOUND,
                    "NoSuchKey",
                    "The specified key does not exist.",
                ),
                "404".into(),
            );
        }
    };
    let mut st = inner.lock();
    st.advance_all();
    let usable = st
        .accounts
        .values()
        .flat_map(|a| a.tasks.iter())
        .find(|t| t.id == id && t.status == Status::Completed)
        .map(|t| crate::cost::frame_size(&t.spec.resolution, &t.spec.ratio).unwrap_or((854, 480)));
    let Some((width, height)) = usable else {
        return (
            s3_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ),
            "404".into(),
        );
    };
    let file = if is_video {
        media::video(id, st.cfg.video_size)
    } else {
        media::last_frame(id, width as u32, height as u32)
    };
    let len = file.len();
    let range = media::parse_range(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), len);
    let (status, start, end) = match range {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        RangeAnswer::Unsatisfiable => {
            let mut resp = s3_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
            resp.headers_mut()
                .insert(header::CONTENT_RANGE, header_value(format!("bytes */{len}")));
            return (resp, "416".into());
        }
    };
    let content_type = if is_video { "video/mp4" } else { "image/png" };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{id}-{len}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1));
    }
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        let cfg = st.cfg.clone();
        let d = st.next_download();
        let slow = rng::chance(cfg.seed, "slow_download", d, cfg.slow_download_rate);
        let cut = rng::chance(cfg.seed, "cut_download", d, cfg.cut_download_rate);
        if slow {
            st.stats.faults.slow_downloads += 1;
        }
        let cut_at = cut.then(|| {
            st.stats.faults.cut_downloads += 1;
            let frac = 0.1 + 0.8 * rng::unit(cfg.seed, "cut_point", d);
            start + ((end - start) as f64 * frac) as u64
        });
        let plan = StreamPlan {
            start,
            end,
            bps: slow.then_some(cfg.slow_download_bps.max(1)),
            cut_at: cut_at.map(|c| c.min(end.saturating_sub(1))),
        };
        Body::from_stream(media::stream(file, plan, inner.served.clone()))
    };
    drop(st);
    match builder.body(body) {
        Ok(resp) => (resp, status.as_str().to_string()),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR.into_response(), "500".into()),
    }
}
