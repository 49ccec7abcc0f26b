//! The HTTP side of the simulator: the main structures here are [`Sim`] and its running [`SimHandle`].
//!
//! Connections are served with hyper directly (not `axum::serve`) so that a handler can ask for
//! the connection to be closed without any answer: a response carrying the [`DropConnection`]
//! marker makes the service return an error, and hyper drops the connection.
//!
//! Its parts: [`gate`] (what every `/v1` request passes, in order), [`handlers`] (the endpoints'
//! work) and [`files`] (presigned downloads).

mod files;
mod gate;
mod handlers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::state::State;
use crate::stats::SimStats;

/// Marker in a response's extensions: close the connection instead of answering.
#[derive(Debug, Clone, Copy)]
pub(super) struct DropConnection;

/// The error a service returns to make hyper drop the connection.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the simulator")
    }
}

impl std::error::Error for Dropped {}

pub(super) struct Inner {
    pub(super) state: Mutex<State>,
    pub(super) served: Arc<AtomicU64>,
    pub(super) secret: [u8; 32],
    pub(super) origin: String,
}

pub(super) type Shared = Arc<Inner>;

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn sign(&self, path: &str, expires: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(path.as_bytes());
        h.update(b"\n");
        h.update(expires.to_string().as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A presigned URL for `path` valid until `expires` (Unix ms).
    pub(super) fn presign(&self, path: &str, expires: u64) -> String {
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

pub(super) fn unix_ms(at: SystemTime) -> u64 {
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
    use files::download;
    use handlers::{cancel, create, fallback, get_task, list, models, patch_config, stats};
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
