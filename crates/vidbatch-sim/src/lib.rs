//! The API simulator: an HTTP server that behaves like the AllToken Videos API, faults included.
//!
//! It is vidbatch's yardstick: every test and benchmark of the tool runs against it, so it
//! behaves like the real service and, where the real behaviour is unknown, takes the harsher case
//! (unknown fields and `null`s rejected, `Idempotency-Key` ignored by default, no `Retry-After`
//! unless asked, list items without video URLs, short-lived URLs that still advertise the full TTL).
//!
//! It is a crate of its own and imports nothing from vidbatch: it checks requests with its own
//! code (`validate`), written from the provider's pages, not with the client's rules, so a
//! misreading of the API in the client cannot hide behind the same misreading here. vidbatch
//! uses it behind its default `sim` feature for `--sim` and `vidbatch sim`.
//!
//! # Layout
//! - [`config`]: [`SimConfig`] (every knob) and [`SimConfigPatch`] (`POST /_sim/config`).
//! - `server`: [`Sim`], [`SimHandle`] (start, serve, stop) and the routes; `server::gate`, what
//!   every `/v1` request passes; `server::handlers`, the endpoints; `server::files`, downloads.
//! - `state`: accounts, tasks over lazily advanced simulated time, rate-limit buckets.
//! - `validate`: the create request's rules.
//! - [`cost`]: [`cost_tokens`]: tokens = width × height × 24 × seconds / 1024.
//! - `media`: the embedded MP4/PNG, per-task bytes, ranges, streamed bodies.
//! - `rng`: deterministic decisions from the seed.
//! - [`stats`]: [`SimStats`], also `GET /_sim/stats`.
//!
//! # Endpoints
//! `GET /v1/videos/models`, `POST /v1/videos/generations` (202 + task),
//! `GET /v1/videos/generations/{id}`, `GET /v1/videos/generations?limit=&status=`
//! (newest first, `{"items": [...], "total": N}`), `POST /v1/videos/generations/{id}/cancel`,
//! presigned downloads under `/files/`, and `GET /_sim/stats`, `POST /_sim/config`
//! (a [`SimConfigPatch`]) without auth.
//!
//! # Rate limit
//! A token bucket per key: capacity [`SimConfig::rate_burst`] (default one second's worth of
//! `rpm`, at least 1), refilled at `rpm / 60` tokens per second. Answers that passed the limiter
//! carry `x-ratelimit-limit` (rpm), `x-ratelimit-remaining` (whole tokens left) and
//! `x-ratelimit-reset`: seconds, as a decimal with 3 places, until one more request would be
//! allowed (`0.000` while tokens remain). A refused request gets 429 `rate_limit_exceeded` with
//! the same headers (remaining 0) and `Retry-After` only when configured. A refused request is
//! charged a token all the same ([`SimConfig::charge_refused`], on by default): the bucket goes
//! into debt, down to minus one burst, and the reset moves out. Some providers say so of their
//! own limits ("unsuccessful requests contribute to your per-minute limit"); this one does not
//! say, so the harsher case is the default. A client that keeps sending while refused stays
//! refused; one that waits the reset it was told gets through. With `rpm` 0 there is no limit
//! and no rate-limit header.
//!
//! # Determinism
//! Each random decision is a hash of the seed, a purpose and a counter: the `/v1` request number
//! (drops, 5xx, ambiguous creates, request ids), the task number (ids, generation time, failure,
//! picked duration and seed), the rendering number (`succeeded`, short URLs) and the download
//! number (slow, cut). The same seed and the same sequential requests give the same decisions.

#![deny(missing_docs)]

pub mod config;
pub mod cost;
mod error;
mod media;
mod rng;
mod server;
mod state;
pub mod stats;
mod validate;

pub use config::{BalanceErrorStatus, RetryAfterFormat, SimConfig, SimConfigPatch};
pub use cost::{cost_tokens, frame_size};
pub use server::{Sim, SimHandle, SimTaskRequest};
pub use state::account_id;
pub use stats::{FaultStats, SimStats};
pub use validate::MODELS;
