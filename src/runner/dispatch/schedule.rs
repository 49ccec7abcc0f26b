//! Spending the request budget: which request each token of the pacer buys (cancels, creates,
//! sweeps and status pages, URL reads, reads), and the clock that wakes the dispatcher.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::Timestamp;
use crate::events::{Event, Throttle};
use crate::runner::StopKind;
use crate::runner::reconcile;
use crate::runner::spend::Reservation;
use crate::runner::sweep::{self, PAGE};
use crate::runner::work::{self, FetchPlan, ListFor, ReadFor, Report};

use super::*;

impl Dispatcher {
    /// Spends the tokens the pacer has on the most valuable requests; returns when to look
    /// again.
    pub(super) fn spend_tokens(&mut self, now: Instant) -> Instant {
        let mut wake = self.next_tick;
        // A due sweep wakes the loop only when it could be sent: while a list is on the wire
        // (or the wire is full) its answer wakes the loop instead, so it never spins.
        if self.wants_sweep() && !self.listing && self.outstanding < MAX_OUTSTANDING {
            wake = wake.min(self.next_sweep);
        }
        let mut held = false;
        while let Some(next) = self.next_request(now) {
            match self.pacer.try_take() {
                Ok(()) => self.send(next, now),
                Err(at) => {
                    wake = wake.min(at);
                    held = true;
                    break;
                }
            }
        }
        self.note_throttle(held, now);
        wake
    }

    /// Tells the display when the pacer begins or stops holding requests back: at once for a
    /// 429's pause; after [`THROTTLE_AFTER`] of waiting without a break for the `--rpm` bucket;
    /// and that it stopped once requests have flowed that long (so the state does not flicker
    /// when the queue empties for a moment).
    pub(super) fn note_throttle(&mut self, held: bool, now: Instant) {
        let since = *self.held_since.get_or_insert(now);
        if !held {
            self.held_since = None;
        }
        let flowing = *self.flowing_since.get_or_insert(now);
        if held {
            self.flowing_since = None;
        }
        let by = match held {
            true if self.pacer.is_paused() => Some(Throttle::RateLimited),
            true if now.duration_since(since) >= THROTTLE_AFTER => Some(Throttle::Rpm),
            // Not yet worth showing; a throttle shown stays while requests wait.
            true => self.throttled.map(|_| Throttle::Rpm),
            false if now.duration_since(flowing) >= THROTTLE_AFTER => None,
            false => self.throttled,
        };
        self.tell_throttle(by);
    }

    pub(super) fn tell_throttle(&mut self, by: Option<Throttle>) {
        if by != self.throttled {
            self.throttled = by;
            self.emit(Event::Throttled { by });
        }
    }

    /// Tasks on the server or on their way there.
    pub(super) fn in_flight(&self) -> usize {
        self.flights.len() + self.creating.len() + self.lost.len()
    }

    pub(super) fn wants_sweep(&self) -> bool {
        !self.interrupted && (!self.flights.is_empty() || !self.lost.is_empty())
    }

    /// The interval between sweeps now.
    pub(super) fn sweep_interval(&self) -> Duration {
        let used = self.used.len() as f64 / USE_WINDOW.as_secs_f64();
        sweep::interval(self.settings.poll_interval, self.pacer.rpm_now() / 60.0, used)
    }

    /// The in-flight target now.
    pub(super) fn target(&self) -> usize {
        self.slots.target(self.sweep_interval())
    }

    pub(super) fn next_request(&mut self, now: Instant) -> Option<Next> {
        if self.outstanding >= MAX_OUTSTANDING {
            return None;
        }
        if let Some((job, task)) = self.cancels.front() {
            return Some(Next::Cancel(job.clone(), task.clone()));
        }
        if self.interrupted {
            return None;
        }
        if let Some(next) = self.next_create() {
            return Some(next);
        }
        if self.stop.is_none()
            && let Some(job) = self
                .upstream_reads
                .iter()
                .find(|j| !self.upstream_reading.contains(*j))
        {
            return Some(Next::UpstreamRead(job.clone()));
        }
        if !self.listing {
            if let Some(status) = self.status_pages.front() {
                return Some(Next::List(ListFor::Status(status.clone())));
            }
            if self.wants_sweep() && now >= self.next_sweep {
                return Some(Next::List(ListFor::Sweep));
            }
        }
        // A URL is read when a download can take it soon: read long before, it may expire in
        // the queue and cost another read.
        let downloads_ahead = self.fetch_wait.len() + self.fetching + self.url_reading.len();
        if downloads_ahead < 2 * self.settings.download_concurrency.max(1)
            && let Some(job) = self.url_wait.iter().find(|j| !self.url_reading.contains(*j))
        {
            return Some(Next::UrlRead(job.clone()));
        }
        self.reads
            .iter()
            .find(|(task, _)| !self.reading.contains(task))
            .map(|(task, why)| Next::Read(task.clone(), *why))
    }

    /// The next job to create, with its tokens reserved, when the target allows one.
    pub(super) fn next_create(&mut self) -> Option<Next> {
        if self.stop.is_some() || self.pending.is_empty() || self.in_flight() >= self.target() {
            return None;
        }
        let (index, cost) = loop {
            let (index, cost) =
                self.pending
                    .iter()
                    .take(CREATE_LOOKAHEAD)
                    .enumerate()
                    .find_map(|(i, id)| {
                        let job = self.state.jobs.get(id)?;
                        let free = job.request.draws_seed()
                            || !self
                                .busy_keys
                                .contains(&reconcile::match_key(&job.sent_request()));
                        free.then(|| (i, job.estimated_tokens.unwrap_or(0)))
                    })?;
            let id = self.pending.get(index)?.clone();
            if !self.upstream.contains_key(&id) || self.gap(&id).is_none() {
                break (index, cost);
            }
            // Its upstream URLs went stale while it queued: back to waiting for a fresh read.
            self.pending.remove(index);
            self.waiting.insert(id.clone());
            self.try_release(&id);
        };
        match self.spend.reserve(cost) {
            Some(reservation) => Some(Next::Create(index, reservation)),
            None => {
                // Creates still unanswered may give their share back; else the budget is spent.
                if self.creating.is_empty() && self.lost.is_empty() {
                    let budget = self.spend.limit().unwrap_or_default();
                    self.stop(
                        StopKind::Limit,
                        format!("the token budget ({budget}) would be passed (--budget-tokens)"),
                    );
                }
                None
            }
        }
    }

    pub(super) fn send(&mut self, next: Next, now: Instant) {
        self.counters.api_requests += 1;
        let client = self.client.clone();
        match next {
            Next::Cancel(job, task) => {
                self.cancels.pop_front();
                self.cancelling += 1;
                self.counters.cancels += 1;
                self.spawn_api(work::cancel(client, job, task));
            }
            Next::Create(index, reservation) => {
                self.note_use(now);
                if let Some(id) = self.pending.remove(index) {
                    self.send_create(id, reservation);
                }
            }
            Next::List(what) => {
                self.counters.lists += 1;
                self.listing = true;
                if matches!(what, ListFor::Status(_)) {
                    self.status_pages.pop_front();
                }
                self.spawn_api(work::list(client, what, PAGE));
            }
            Next::UrlRead(job) => {
                self.note_use(now);
                self.counters.reads += 1;
                self.url_wait.retain(|j| *j != job);
                let Some(task) = self.task_of(&job) else {
                    return;
                };
                self.url_reading.insert(job.clone());
                self.spawn_api(work::read(client, job, task, ReadFor::Url));
            }
            Next::UpstreamRead(job) => {
                self.note_use(now);
                self.counters.reads += 1;
                self.upstream_reads.retain(|j| *j != job);
                let Some(task) = self.task_of(&job) else {
                    self.block_behind(&job, &format!("job `{job}` has no task to take it from"));
                    return;
                };
                self.upstream_reading.insert(job.clone());
                self.spawn_api(work::read(client, job, task, ReadFor::Upstream));
            }
            Next::Read(task, why) => {
                self.note_use(now);
                self.counters.reads += 1;
                self.reads.retain(|(t, _)| *t != task);
                if why == ReadFor::Candidate {
                    self.reading.insert(task.clone());
                    self.spawn_api(work::read(client, String::new(), task, why));
                    return;
                }
                let Some(flight) = self.flights.get_mut(&task) else {
                    return;
                };
                flight.read_queued = false;
                let job = flight.job.clone();
                self.reading.insert(task.clone());
                self.spawn_api(work::read(client, job, task, why));
            }
        }
    }

    /// The task a job is on now.
    pub(super) fn task_of(&self, job: &str) -> Option<String> {
        self.state
            .jobs
            .get(job)
            .and_then(|j| j.task_id())
            .map(str::to_string)
    }

    /// Starts one API request's work, counted until its report comes back.
    pub(super) fn spawn_api(&mut self, work: impl Future<Output = Report> + Send + 'static) {
        self.outstanding += 1;
        self.workers.spawn(work);
    }

    pub(super) fn note_use(&mut self, now: Instant) {
        self.used.push_back(now);
        while self
            .used
            .front()
            .is_some_and(|t| now.duration_since(*t) > USE_WINDOW)
        {
            self.used.pop_front();
        }
    }

    pub(super) fn send_create(&mut self, id: String, reservation: Reservation) {
        let Some(job) = self.state.jobs.get(&id) else {
            return;
        };
        let resolved = if job.upstream.is_empty() {
            None
        } else {
            match self.resolve(&job.request) {
                Some(content) => Some(content),
                None => {
                    drop(reservation);
                    self.waiting.insert(id.clone());
                    self.try_release(&id);
                    return;
                }
            }
        };
        let seed = job
            .request
            .draws_seed()
            .then(|| job.seed.unwrap_or_else(|| i64::from(rand::random::<u32>())));
        let key = idempotency_key(&self.run_id, job);
        let attempt = job.attempts + 1;
        discard_parts(&self.settings.out_dir, &job.name);
        let intent = self.emit(Event::SubmitIntent {
            job: id.clone(),
            attempt,
            idempotency_key: key.expose().to_string(),
            seed,
            at: Timestamp::now(),
        });
        let Some(job) = self.state.jobs.get(&id) else {
            return;
        };
        let mut request = job.sent_request();
        if let Some(content) = resolved {
            request.content = content;
        }
        self.busy_keys.insert(reconcile::match_key(&request));
        self.creating.insert(id.clone());
        self.counters.creates += 1;
        self.spawn_api(work::create(
            self.client.clone(),
            id,
            request,
            key,
            intent,
            reservation,
        ));
    }

    /// Periodic checks: backoffs that ended, deadlines, and reads that are due.
    pub(super) fn tick(&mut self, now: Instant) {
        self.next_tick = now + self.settings.poll_interval.min(Duration::from_secs(1));
        if !self.delayed.is_empty() {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            self.delayed = later;
            for (_, id) in due.into_iter().rev() {
                self.pending.push_front(id);
            }
        }
        let grace = self.lost_grace();
        for (task, f) in &mut self.flights {
            if f.read_queued || f.timing_out {
                continue;
            }
            let why = if now >= f.deadline {
                // One last look: a task that finished is not cancelled.
                f.timing_out = true;
                Some(ReadFor::Deadline)
            } else if f.next_read.is_some_and(|t| t <= now)
                || f.absent_since.is_some_and(|t| now.duration_since(t) > grace)
                || now.duration_since(f.last_read) > SAFETY_READ
            {
                Some(ReadFor::Status)
            } else {
                None
            };
            if let Some(why) = why {
                f.read_queued = true;
                if why == ReadFor::Deadline {
                    self.reads.push_front((task.clone(), why));
                } else {
                    self.reads.push_back((task.clone(), why));
                }
            }
        }
    }

    /// How long a create whose answer was lost may stay unlisted before it is taken as never
    /// made: a few times the longest lag the lists have shown for this run's own tasks, and
    /// long while they have shown none.
    pub(super) fn lost_grace(&self) -> Duration {
        if self.lag_seen {
            LOST_GRACE_MIN.max(self.lag_max * 3)
        } else {
            LOST_GRACE_UNSEEN
        }
    }

    pub(super) fn start_fetches(&mut self) {
        if self.interrupted || self.halted {
            return;
        }
        while self.fetching < self.settings.download_concurrency.max(1) {
            let Some((job, task, fresh)) = self.fetch_wait.pop_front() else {
                return;
            };
            let Some(state) = self.state.jobs.get(&job) else {
                continue;
            };
            if !fresh && url_expired(&task, self.client.server_offset()) {
                tracing::info!(job = %job, "video URL past its expiry; reading the task for a fresh one");
                self.emit(Event::UrlRefreshed {
                    job: job.clone(),
                    status: 0,
                });
                self.url_wait.push_back(job);
                continue;
            }
            let out = &self.settings.out_dir;
            let plan = FetchPlan {
                http: self.http.clone(),
                video: out.join(crate::outdir::video_file(&state.name)),
                frame: out.join(crate::outdir::last_frame_file(&state.name)),
                wants_frame: state.request.return_last_frame == Some(true),
                max_bytes: self.settings.max_video_bytes,
                retry: self.settings.retry,
                max_retries: self.settings.max_retries,
            };
            self.fetching += 1;
            if self.downstream.contains_key(&job) {
                self.fresh.insert(job.clone(), (task.clone(), false));
            }
            self.workers.spawn(work::fetch(plan, job, task));
        }
    }
}

/// Deletes the `.part` files of the job named `name`, before a create: the task it makes is
/// new, so a `.part` there holds another task's bytes (a download cut off, then its task
/// failed or expired) and must never be finished with this task's.
fn discard_parts(out_dir: &std::path::Path, name: &str) {
    for file in [
        crate::outdir::video_file(name),
        crate::outdir::last_frame_file(name),
    ] {
        let part = crate::download::part_path(&out_dir.join(file));
        match std::fs::remove_file(&part) {
            Ok(()) => tracing::info!(part = %part.display(), "deleted a partial download of an earlier task"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(part = %part.display(), error = %e, "could not delete a partial download of an earlier task")
            }
        }
    }
}
