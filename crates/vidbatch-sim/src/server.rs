//! The HTTP side of the simulator: the main structures here are [`Sim`] and its running [`SimHandle`].
//!
//! Connections are served with hyper directly (not `axum::serve`) so that a handler can ask for
//! the connection to be closed without any answer: a response carrying the [`DropConnection`]
//! marker makes the service return an error, and hyper drops the connection.
//!
//! Every `/v1` request goes through the same gate, in this order: a sequence number `n` is taken;
//! the drop decision (`drop_rate`, hash of seed and `n`) closes the connection with nothing done;
//! bearer auth (401); the per-key rate limit (429 `rate_limit_exceeded`; a refused request
//! consumes nothing); the error decision (`error_rate`: 500 or 503, code `upstream_error` or
//! sometimes the number 503); all accounts are advanced to now; the endpoint's work. The
//! configured latency is then slept *after* the work, so a client that times out may still have
//! created a task. Rate-limit headers are sent on every answer that got past the limiter.
//!
//! Downloads (`/files/...`) need no auth: the URL's `expires` (Unix ms) and `sig`
//! (hex SHA-256 of a per-process secret, the path, a newline and `expires`) are checked; a bad
//! signature or an expired URL is 403 with an S3-like XML body, a gone asset 404. `Range`
//! (`bytes=a-b`, `a-`, `-n`) gives 206 or 416; `HEAD` gives the headers only and draws no fault.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::{RetryAfterFormat, SimConfig, SimConfigPatch};
use super::error::ApiError;
use super::media::{self, RangeAnswer, StreamPlan};
use super::rng;
use super::state::{self, RateDecision, State, Status, Task};
use super::stats::SimStats;
use super::validate::{DraftLookup, MODELS, validate_create};

/// Marker in a response's extensions: close the connection instead of answering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropConnection;

/// The error a service returns to make hyper drop the connection.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the simulator")
    }
}

impl std::error::Error for Dropped {}

struct Inner {
    state: Mutex<State>,
    served: Arc<AtomicU64>,
    secret: [u8; 32],
    origin: String,
}

type Shared = Arc<Inner>;

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sign(&self, path: &str, expires: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(path.as_bytes());
        h.update(b"\n");
        h.update(expires.to_string().as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A presigned URL for `path` valid until `expires` (Unix ms).
    fn presign(&self, path: &str, expires: u64) -> String {
        format!(
            "{}{path}?expires={expires}&sig={}",
            self.origin,
            self.sign(path, expires)
        )
    }
}

/// What one task of the simulator was created with (see [`SimHandle::task_requests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTaskRequest {
    /// The task id.
    pub id: String,
    /// The prompt as sent.
    pub prompt: String,
    /// Whether it is a draft.
    pub draft: bool,
    /// The content items, as `role=url` or `draft_task=id`.
    pub inputs: Vec<String>,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The simulator; start it with [`Sim::start`] or [`Sim::bind`].
#[derive(Debug)]
pub struct Sim;

/// A running simulator. Dropping it (or [`SimHandle::shutdown`]) stops it.
pub struct SimHandle {
    addr: SocketAddr,
    inner: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").field("addr", &self.addr).finish()
    }
}

impl Sim {
    /// Start a simulator on `127.0.0.1` with a free port, serving in the background.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        Self::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), config).await
    }

    /// Start a simulator listening on `addr` (port 0 picks a free port), serving in the background.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new(config)),
            served: Arc::new(AtomicU64::new(0)),
            secret: rand::random(),
            origin: format!("http://{addr}"),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, router(inner.clone()), stopped));
        Ok(SimHandle {
            addr,
            inner,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

impl SimHandle {
    /// The API base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters (the same data as `GET /_sim/stats`), with every account advanced to now.
    pub fn stats(&self) -> SimStats {
        let served = self.inner.served.load(Ordering::Relaxed);
        self.inner.lock().snapshot(served)
    }

    /// The prompt each task of the account of `api_key` was created with, by task id (answers
    /// never echo prompts; this lets tests check that every job got its own task).
    pub fn task_prompts(&self, api_key: &str) -> std::collections::HashMap<String, String> {
        let st = self.inner.lock();
        st.accounts
            .get(api_key)
            .map(|a| {
                a.tasks
                    .iter()
                    .map(|t| (t.id.clone(), t.spec.prompt.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every task of the account of `api_key`, oldest first, with the prompt and content items
    /// (`role=url`, `draft_task=id`) it was created with: tests check what each create carried.
    pub fn task_requests(&self, api_key: &str) -> Vec<SimTaskRequest> {
        let st = self.inner.lock();
        st.accounts
            .get(api_key)
            .map(|a| {
                a.tasks
                    .iter()
                    .map(|t| SimTaskRequest {
                        id: t.id.clone(),
                        prompt: t.spec.prompt.clone(),
                        draft: t.spec.draft,
                        inputs: t.spec.inputs.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The current configuration.
    pub fn config(&self) -> SimConfig {
        self.inner.lock().cfg.clone()
    }

    /// Change the configuration while running. A changed `balance` becomes every account's
    /// balance; a changed `rpm`/`rate_burst` refills every bucket; a raised `concurrency` starts queued tasks now.
    pub fn update(&self, f: impl FnOnce(&mut SimConfig)) {
        self.inner.lock().reconfigure(f);
    }

    /// Stop accepting and close every connection.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, app: Router, mut stopped: oneshot::Receiver<()>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_connection(stream, app.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

async fn serve_connection(stream: tokio::net::TcpStream, app: Router) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        async move {
            let resp = match tower_service::Service::call(&mut app, req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.extensions().get::<DropConnection>().is_some() {
                Err(Dropped)
            } else {
                Ok(resp)
            }
        }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(error = %e, "connection ended");
    }
}

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/v1/videos/models", get(models))
        .route("/v1/videos/generations", post(create).get(list))
        .route("/v1/videos/generations/{id}", get(get_task))
        .route("/v1/videos/generations/{id}/cancel", post(cancel))
        .route("/files/{name}", get(download))
        .route("/_sim/stats", get(stats))
        .route("/_sim/config", post(patch_config))
        .fallback(fallback)
        .with_state(inner)
}

/// A successful `/v1` answer.
struct Reply {
    status: StatusCode,
    body: Value,
    /// Close the connection instead of answering (the work is done: an ambiguous create).
    drop: bool,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            drop: false,
        }
    }
}

fn dropped() -> Response {
    let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    resp.extensions_mut().insert(DropConnection);
    resp
}

/// A proxy's `502 Bad Gateway` HTML page that lists the request's headers by name, the API key
/// included, near its top (where an excerpt of the body would show it).
fn proxy_echo_page(headers: &HeaderMap) -> Response {
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

fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Bearer ")?.trim();
    (!key.is_empty()).then_some(key)
}

fn json_response(
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

fn header_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The gate every `/v1` request goes through (see the module doc), then `work`.
async fn v1<F>(inner: &Shared, endpoint: &'static str, headers: &HeaderMap, work: F) -> Response
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

fn gate<F>(
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

/// Render a task; a completed one gets fresh presigned URLs when `with_urls`.
fn render(inner: &Inner, st: &mut State, key: &str, i: usize, with_urls: bool) -> Value {
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

async fn models(AxState(inner): AxState<Shared>, headers: HeaderMap) -> Response {
    v1(&inner, "models", &headers, |_, _, _, _| {
        let data: Vec<Value> = MODELS
            .iter()
            .map(|m| json!({"id": m, "object": "model", "owned_by": "chat"}))
            .collect();
        Ok(Reply::ok(json!({"object": "list", "data": data})))
    })
    .await
}

async fn create(AxState(inner): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
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

async fn get_task(AxState(inner): AxState<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    v1(&inner, "get", &headers, |inner, st, key, _| {
        let i = find_task(st, key, &id)?;
        Ok(Reply::ok(render(inner, st, key, i, true)))
    })
    .await
}

async fn cancel(AxState(inner): AxState<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
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

async fn list(AxState(inner): AxState<Shared>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
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
        let with_urls = st.cfg.list_urls;
        let items: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(|&i| render(inner, st, key, i, with_urls))
            .collect();
        Ok(Reply::ok(json!({"items": items, "total": matching.len()})))
    })
    .await
}

async fn stats(AxState(inner): AxState<Shared>) -> Response {
    let served = inner.served.load(Ordering::Relaxed);
    let snapshot = inner.lock().snapshot(served);
    axum::Json(snapshot).into_response()
}

async fn patch_config(AxState(inner): AxState<Shared>, body: Bytes) -> Response {
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

async fn fallback(AxState(inner): AxState<Shared>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
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

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
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

async fn download(
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
        .map(|t| super::cost::frame_size(&t.spec.resolution, &t.spec.ratio).unwrap_or((854, 480)));
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
