//! The HTTP client of the five Videos API endpoints; the main structure here is [`Client`].
//!
//! One call is one request: there is no retry loop here (the runner decides what to repeat).
//! Every failure comes back as an [`ApiError`]. Bodies are read up to a cap, the API key and
//! the idempotency key never reach `Debug` output or logs.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ApiError, body_excerpt, classify_status};
use super::scrub::Scrubber;
use super::types::{CreateRequest, ListQuery, ModelList, Task, TaskList};

/// The real API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.alltoken.ai/v1";

/// An API key. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key, trimming surrounding whitespace (keys read from files end in a newline).
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into().trim().to_string())
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The `Idempotency-Key` of a create: one per job, stable across attempts. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> IdempotencyKey {
        IdempotencyKey(key.into())
    }

    /// The key itself, for the one place that sends it and the journal that keeps it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdempotencyKey(<redacted>)")
    }
}

/// How the client talks to the API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `https://api.alltoken.ai/v1`.
    pub base_url: String,
    /// Bearer key.
    pub api_key: ApiKey,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, answer included.
    pub request_timeout: Duration,
    /// Largest response body read; more is an error.
    pub max_body_bytes: usize,
}

impl ClientConfig {
    /// A configuration with the default timeouts and body cap.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            api_key,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A typed client of the Videos API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Parsed once: each request only sets its path.
    base: reqwest::Url,
    auth: HeaderValue,
    max_body_bytes: usize,
    clock: Arc<ServerClock>,
    /// Cleans server text of the key and auth values before any error carries it.
    scrub: Arc<Scrubber>,
}

/// How far the server's clock is from vidbatch's, learned from the `Date` header of its
/// answers: its timestamps are read through it, never compared raw with the local clock.
#[derive(Debug, Default)]
struct ServerClock {
    /// Server minus local, in milliseconds, smoothed over the answers.
    offset_ms: Mutex<Option<f64>>,
}

impl ServerClock {
    fn observe(&self, headers: &reqwest::header::HeaderMap) {
        let Some(server) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return;
        };
        let local = std::time::SystemTime::now();
        let sample = match server.duration_since(local) {
            Ok(ahead) => ahead.as_secs_f64() * 1000.0,
            Err(behind) => -behind.duration().as_secs_f64() * 1000.0,
        };
        // `Date` is whole seconds, cut down: on average half a second behind the truth.
        let sample = sample + 500.0;
        let mut offset = self.offset_ms.lock().unwrap_or_else(|p| p.into_inner());
        *offset = Some(match *offset {
            Some(o) => o * 0.9 + sample * 0.1,
            None => sample,
        });
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// What a client call is, for classification and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /videos/models`
    Models,
    /// `POST /videos/generations`
    Create,
    /// `GET /videos/generations/{id}`
    Get,
    /// `GET /videos/generations`
    List,
    /// `POST /videos/generations/{id}/cancel`
    Cancel,
}

impl Endpoint {
    /// Short name, as in logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Models => "models",
            Endpoint::Create => "create",
            Endpoint::Get => "get",
            Endpoint::List => "list",
            Endpoint::Cancel => "cancel",
        }
    }
}

/// Builds the HTTP client used for API calls and downloads: redirects only to http(s),
/// at most five.
pub fn http_client(connect_timeout: Duration, timeout: Option<Duration>) -> reqwest::Result<reqwest::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if matches!(attempt.url().scheme(), "http" | "https") {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(policy)
        .user_agent(concat!("vidbatch/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    builder.build()
}

impl Client {
    /// A client for `config`. Fails only when the TLS backend cannot start or the key holds
    /// characters a header cannot carry.
    pub fn new(config: &ClientConfig) -> Result<Client, ApiError> {
        let http = http_client(config.connect_timeout, Some(config.request_timeout)).map_err(|e| {
            ApiError::Transient {
                status: None,
                reason: format!("cannot build HTTP client: {e}"),
            }
        })?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", config.api_key.expose())).map_err(|_| {
                ApiError::Unauthorized(Box::new(super::types::ErrorDetail {
                    message: "the API key holds characters that cannot be sent in a header".into(),
                    ..Default::default()
                }))
            })?;
        auth.set_sensitive(true);
        let base = reqwest::Url::parse(&config.base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ApiError::InvalidRequest {
                status: 0,
                detail: Box::new(super::types::ErrorDetail {
                    code: super::types::ErrorCode("invalid_base_url".into()),
                    message: format!("{:?} is not an http(s) URL", config.base_url),
                    param: Some("base_url".into()),
                    ..Default::default()
                }),
            })?;
        Ok(Client {
            http,
            base,
            auth,
            max_body_bytes: config.max_body_bytes,
            clock: Arc::default(),
            scrub: Arc::new(Scrubber::new(config.api_key.expose())),
        })
    }

    /// How far ahead of vidbatch's clock the server's is (negative: behind), once an answer
    /// has carried a `Date` header.
    pub fn server_offset(&self) -> Option<time::Duration> {
        let ms = (*self.clock.offset_ms.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some(time::Duration::milliseconds(ms as i64))
    }

    /// `GET /videos/models`.
    pub async fn list_models(&self) -> Result<ModelList, ApiError> {
        let req = self.request(Method::GET, "/videos/models");
        self.send(Endpoint::Models, req).await
    }

    /// `POST /videos/generations`, with the job's idempotency key.
    pub async fn create(&self, body: &CreateRequest, key: &IdempotencyKey) -> Result<Task, ApiError> {
        let mut idem = HeaderValue::from_str(key.expose()).map_err(|_| ApiError::InvalidRequest {
            status: 400,
            detail: Box::new(super::types::ErrorDetail {
                message: "idempotency key is not a valid header value".into(),
                ..Default::default()
            }),
        })?;
        idem.set_sensitive(true);
        let req = self
            .request(Method::POST, "/videos/generations")
            .header("Idempotency-Key", idem)
            .json(body);
        self.send(Endpoint::Create, req).await
    }

    /// `GET /videos/generations/{id}`.
    pub async fn get(&self, id: &str) -> Result<Task, ApiError> {
        let req = self.request(Method::GET, &format!("/videos/generations/{}", path_segment(id)));
        self.send(Endpoint::Get, req).await
    }

    /// `GET /videos/generations?limit=&status=`.
    pub async fn list(&self, query: &ListQuery) -> Result<TaskList, ApiError> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = query.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(status) = &query.status {
            pairs.push(("status", status.as_str().to_string()));
        }
        let req = self.request(Method::GET, "/videos/generations").query(&pairs);
        self.send(Endpoint::List, req).await
    }

    /// `POST /videos/generations/{id}/cancel`. Some servers answer with the task, some with
    /// nothing useful: the task is returned when the body holds one.
    pub async fn cancel(&self, id: &str) -> Result<Option<Task>, ApiError> {
        let req = self.request(
            Method::POST,
            &format!("/videos/generations/{}/cancel", path_segment(id)),
        );
        let body = self.send_raw(Endpoint::Cancel, req).await?;
        Ok(serde_json::from_slice::<Task>(&self.scrub.scrub_bytes(&body)).ok())
    }

    /// A request to `path` (already percent-encoded) under the base URL.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        self.http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
    }

    async fn send<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let body = self.send_raw(endpoint, req).await?;
        // A task's error message is server text too.
        let body = self.scrub.scrub_bytes(&body);
        serde_json::from_slice(&body).map_err(|e| {
            let reason = format!(
                "unreadable {} response ({e}): {}",
                endpoint.name(),
                body_excerpt(self.scrub.scrub(&String::from_utf8_lossy(&body)).as_bytes())
            );
            if endpoint == Endpoint::Create {
                ApiError::AmbiguousCreate { status: None, reason }
            } else {
                ApiError::Transient { status: None, reason }
            }
        })
    }

    async fn send_raw(&self, endpoint: Endpoint, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ApiError> {
        let is_create = endpoint == Endpoint::Create;
        let lost = |status: Option<u16>, reason: String| {
            let reason = self.scrub.scrub(&reason).into_owned();
            if is_create {
                ApiError::AmbiguousCreate { status, reason }
            } else {
                ApiError::Transient { status, reason }
            }
        };
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(endpoint = endpoint.name(), error = %e, "request failed");
                // A connection that was never made carried no request: safe to send again.
                if e.is_connect() {
                    return Err(ApiError::Transient {
                        status: None,
                        reason: self.scrub.scrub(&describe(&e)).into_owned(),
                    });
                }
                return Err(lost(None, describe(&e)));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        self.clock.observe(&headers);
        let body = read_capped(response, self.max_body_bytes)
            .await
            .map_err(|reason| lost(Some(status.as_u16()), reason))?;
        tracing::debug!(
            endpoint = endpoint.name(),
            status = status.as_u16(),
            bytes = body.len(),
            "answer"
        );
        if status.is_success() {
            Ok(body)
        } else {
            Err(classify_status(status, &headers, &body, is_create, &self.scrub))
        }
    }
}

/// Reads a body of at most `cap` bytes.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    if let Some(len) = response.content_length()
        && len > cap as u64
    {
        return Err(format!("response body of {len} bytes exceeds the {cap}-byte cap"));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(format!("response body exceeds the {cap}-byte cap"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("answer cut while reading: {}", describe(&e))),
        }
    }
}

/// A reqwest error in words, with its causes and without the URL (which may carry a
/// presigned signature).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "request error"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

/// Escapes a task id for use as one path segment.
fn path_segment(id: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Whether a status from a download URL means "the link no longer works, get a fresh one".
pub fn is_refused_url(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 404 | 410)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show_in_debug() {
        let cfg = ClientConfig::new("http://x/v1", ApiKey::new("sk-secret-123\n"));
        assert!(!format!("{cfg:?}").contains("sk-secret"));
        assert_eq!(cfg.api_key.expose(), "sk-secret-123");
        let client = Client::new(&cfg).unwrap();
        assert!(!format!("{client:?}").contains("sk-secret"));
        let idem = IdempotencyKey::new("idem-abc");
        assert!(!format!("{idem:?}").contains("idem-abc"));
    }

    #[test]
    fn ids_are_escaped_as_one_segment() {
        assert_eq!(path_segment("vgen_01abc"), "vgen_01abc");
        assert_eq!(path_segment("../x y"), "..%2Fx%20y");
    }
}
