//! The API's error bodies and rate-limit headers on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue};
use vidbatch::api::{ErrorDetail, server_wait};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Body {
    error: ErrorDetail,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<Body>(data) {
        let _ = format!("{:?} {}", body.error, body.error.message);
    }
    let _ = serde_json::from_slice::<ErrorDetail>(data);
    // The same bytes as the values of the headers a 429 carries.
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let mut headers = HeaderMap::new();
    for name in ["retry-after", "x-ratelimit-reset", "x-ratelimit-limit"] {
        if let Some(v) = parts.next().and_then(|p| HeaderValue::from_bytes(p).ok()) {
            headers.insert(name, v);
        }
    }
    let _ = server_wait(&headers, time::OffsetDateTime::UNIX_EPOCH);
    let _ = server_wait(&headers, time::OffsetDateTime::now_utc());
});
