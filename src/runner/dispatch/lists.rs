//! What a page of the task list says: statuses of the tasks in flight, their coverage, and the
//! settling of creates whose answer was lost.

use tokio::time::Instant;

use crate::api::{ApiError, Task, TaskList, TaskStatus, Timestamp};
use crate::events::{Event, FailureKind};
use crate::runner::reconcile::{self, Found};
use crate::runner::sweep::{self, Page, Seen};

use super::*;

impl Dispatcher {
    /// What a list or a read showed of a task in flight.
    pub(super) fn on_status(&mut self, task_id: &str, task: Task, now: Instant) {
        let Some(flight) = self.flights.get_mut(task_id) else {
            return;
        };
        let job = flight.job.clone();
        match &task.status {
            TaskStatus::Completed => {
                // The slot is free at once; without a URL the task is read for one, off the
                // critical path, and recorded as completed with what that read shows.
                self.flights.remove(task_id);
                self.slots.on_finished(now);
                if has_url(&task) {
                    self.completed(&job, &task);
                    self.fetch_wait.push_back((job, task, false));
                } else {
                    self.url_wait.push_back(job);
                }
            }
            TaskStatus::Failed | TaskStatus::Expired | TaskStatus::Cancelled => {
                self.flights.remove(task_id);
                self.slots.on_finished(now);
                let (kind, default) = match task.status {
                    TaskStatus::Failed => (FailureKind::TaskFailed, "the task failed"),
                    TaskStatus::Expired => (FailureKind::Expired, "the task expired"),
                    _ => (FailureKind::Cancelled, "the task was cancelled"),
                };
                self.fail(
                    &job,
                    Some(task_id.to_string()),
                    task_failure(&task, kind, default),
                );
            }
            status => {
                if flight.status != *status {
                    flight.status = status.clone();
                    self.emit(Event::TaskProgress {
                        job,
                        task_id: task_id.to_string(),
                        status: status.clone(),
                        at: Timestamp::now(),
                    });
                }
            }
        }
    }

    /// Records a task as completed, with its usage and the expiry of its video URL.
    pub(super) fn completed(&mut self, job: &str, task: &Task) {
        self.emit(Event::TaskCompleted {
            job: job.to_string(),
            task_id: task.id.clone(),
            usage: task.usage,
            completed_at: task.completed_at,
            created_at: task.created_at,
            video_url_expires_at: task.video_url_expires_at,
            at: Timestamp::now(),
        });
    }

    pub(super) fn on_sweep(&mut self, page: TaskList, now: Instant) {
        let (processing, queued) = sweep::account_load(&page);
        if !sweep::is_full(&page) || queued > 0 {
            self.slots.observe(processing, queued);
        } else {
            // Tasks start in the order they were created and a page is newest first, so a
            // queued task would be on this full page: none is, so every task seen processing
            // still runs, more than one page holds.
            let running = self
                .flights
                .values()
                .filter(|f| f.status == TaskStatus::Processing)
                .count();
            self.slots.observe(processing.max(running), 0);
        }
        let interval = self.sweep_interval();
        let view = Page::new(&page);
        let mut news: Vec<(String, Task)> = Vec::new();
        let mut uncovered = 0;
        for (id, f) in &mut self.flights {
            f.uncovered = false;
            match view.judge(id, f.created_at) {
                Seen::Listed(task) => {
                    if !f.listed {
                        f.listed = true;
                        self.lag_max = self.lag_max.max(now.duration_since(f.sent));
                        self.lag_seen = true;
                    }
                    f.absent_since = None;
                    f.next_read = None;
                    if task.status != f.status || task.status.is_terminal() {
                        news.push((id.clone(), task.clone()));
                    }
                }
                Seen::Absent => {
                    f.next_read = None;
                    f.absent_since.get_or_insert(now);
                }
                Seen::Uncovered => {
                    f.uncovered = true;
                    uncovered += 1;
                }
            }
        }
        for (id, task) in news {
            self.on_status(&id, task, now);
        }
        let covers_lost = !sweep::is_full(&page);
        self.settle_lost(std::slice::from_ref(&page), covers_lost, now);
        if uncovered > 0 {
            tracing::debug!(
                uncovered,
                in_flight = self.flights.len(),
                target = self.target(),
                "a sweep could not speak for every task"
            );
        }
        if self.status_pages.is_empty() {
            if !self.lost.is_empty() && !covers_lost {
                self.status_pages.extend(ALL);
            } else if uncovered >= STATUS_PAGES_MIN {
                self.rounds += 1;
                self.status_pages.extend(COMMON);
                if self.rounds % RARE_EVERY == 1 || self.rare_pages.len() < RARE.len() {
                    self.status_pages.extend(RARE);
                }
            }
            self.status_round.clear();
        }
        if self.status_pages.is_empty() {
            // Too few to list for: each uncovered task is read on its own.
            for f in self.flights.values_mut().filter(|f| f.uncovered) {
                f.next_read.get_or_insert(now);
            }
        }
        self.next_sweep = now + interval;
        if !self.warned_cap && self.slots.held_back(interval) {
            self.warned_cap = true;
            let cap = self.settings.concurrency.cap().unwrap_or_default();
            self.emit(Event::Notice {
                message: format!(
                    "--concurrency {cap} holds this run back: the account runs {} tasks at once \
                     and a queue ahead of them keeps its slots busy (leave --concurrency at auto)",
                    self.slots
                        .learned()
                        .map_or_else(|| format!("at least {cap}"), |s| s.to_string())
                ),
            });
        }
    }

    pub(super) fn on_status_page(&mut self, status: TaskStatus, page: TaskList, now: Instant) {
        let mut news: Vec<(String, Task)> = Vec::new();
        for task in &page.items {
            if let Some(f) = self.flights.get_mut(&task.id) {
                f.next_read = None;
                f.absent_since = None;
                f.uncovered = false;
                if task.status != f.status || task.status.is_terminal() {
                    news.push((task.id.clone(), task.clone()));
                }
            }
        }
        for (id, task) in news {
            self.on_status(&id, task, now);
        }
        if RARE.contains(&status) {
            self.rare_pages.insert(status.as_str().to_string(), page.clone());
        }
        self.status_round.push((status, page));
        if self.status_pages.is_empty() {
            self.end_status_round(now);
        }
    }

    /// After a status round: an uncovered task that no finished page lists, though every
    /// finished page would, is still running; any other is read on its own.
    pub(super) fn end_status_round(&mut self, now: Instant) {
        let round = std::mem::take(&mut self.status_round);
        let mut finished: Vec<&TaskList> = round
            .iter()
            .filter(|(s, _)| COMMON.contains(s))
            .map(|(_, p)| p)
            .collect();
        finished.extend(self.rare_pages.values());
        let views: Vec<Page> = finished.iter().map(|p| Page::new(p)).collect();
        let complete = finished.len() == COMMON.len() + RARE.len();
        for (id, f) in self.flights.iter_mut().filter(|(_, f)| f.uncovered) {
            let running = complete && views.iter().all(|v| v.judge(id, f.created_at) == Seen::Absent);
            if running {
                f.uncovered = false;
                f.next_read = None;
            } else {
                f.next_read.get_or_insert(now);
            }
        }
        let pages: Vec<TaskList> = round.into_iter().map(|(_, p)| p).collect();
        self.settle_lost(&pages, true, now);
    }

    /// Looks for the tasks of lost creates on `pages`. `covering`: the pages hold every task
    /// the lost creates may have made, so one missing from them was not made, once the lists
    /// have had time to show it.
    pub(super) fn settle_lost(&mut self, pages: &[TaskList], covering: bool, now: Instant) {
        if self.lost.is_empty() {
            self.candidates.clear();
            return;
        }
        let pages = &*self.with_candidates_read(pages);
        let grace = self.lost_grace();
        let mut ids: Vec<(Instant, String)> = self.lost.iter().map(|(id, l)| (l.since, id.clone())).collect();
        ids.sort();
        for (_, id) in ids {
            let (Some(job), Some(lost)) = (self.state.jobs.get(&id), self.lost.get(&id)) else {
                self.lost.remove(&id);
                continue;
            };
            let request = job.sent_request();
            let tokens = job.estimated_tokens.unwrap_or(0);
            let (since_sent, later) = (lost.since, lost.later.clone());
            // A drawn seed is this job's alone: no time window is needed to tell its task.
            let offset = self.client.server_offset().unwrap_or(time::Duration::ZERO);
            let since =
                (!job.request.draws_seed()).then(|| Timestamp(lost.intent_at.0 + offset - CLOCK_SLACK));
            let claimed = &self.state.claimed_tasks;
            let drawn = job.request.draws_seed();
            let verdict = match reconcile::find(&request, drawn, since, pages, |t| claimed.contains(t)) {
                Found::Proven(task) => Settle::Take(Box::new(task.clone())),
                Found::Unproven(tasks) => {
                    // A fit whose list item shows no seed may show it when read on its own.
                    let unread: Vec<String> = tasks
                        .iter()
                        .filter(|t| {
                            drawn && t.seed.is_none() && !matches!(self.candidates.get(&t.id), Some(Some(_)))
                        })
                        .map(|t| t.id.clone())
                        .collect();
                    if unread.is_empty() {
                        Settle::Refuse(reconcile::unproven(&tasks, drawn))
                    } else {
                        Settle::Read(unread)
                    }
                }
                Found::None => Settle::Nothing,
            };
            match verdict {
                Settle::Read(tasks) => {
                    for task in tasks {
                        if !self.candidates.contains_key(&task) {
                            self.candidates.insert(task.clone(), None);
                            self.reads.push_back((task, ReadFor::Candidate));
                        }
                    }
                }
                Settle::Take(task) => {
                    let Some(lost) = self.lost.remove(&id) else {
                        continue;
                    };
                    self.busy_keys.remove(&lost.key);
                    match lost.reservation {
                        Some(r) => r.keep(),
                        None => self.spend.add(tokens),
                    }
                    self.counters.reconciled += 1;
                    tracing::info!(job = %id, task = %task.id, "found the task of a lost create");
                    self.emit(Event::Submitted {
                        job: id.clone(),
                        task_id: task.id.clone(),
                        at: task.created_at.unwrap_or_else(Timestamp::now),
                        reconciled: true,
                    });
                    self.fly(id, *task, lost.since, now);
                }
                Settle::Refuse(why) => {
                    // Never guess: a fit could be another's, and it and ours may both be paid for.
                    let Some(lost) = self.lost.remove(&id) else {
                        continue;
                    };
                    self.busy_keys.remove(&lost.key);
                    if let Some(r) = lost.reservation {
                        r.keep();
                    }
                    let message = format!(
                        "{why}; none is taken (check with `vidbatch status`, then rerun with --retry-failed)"
                    );
                    self.fail(&id, None, plain(FailureKind::SubmitFailed, message));
                }
                Settle::Nothing => {
                    let waited = now.duration_since(since_sent);
                    let later_listed = later
                        .as_ref()
                        .is_some_and(|l| pages.iter().any(|p| p.items.iter().any(|t| t.id == *l)));
                    if !covering || (waited < grace && !(later_listed && waited >= self.lag_max)) {
                        continue;
                    }
                    let Some(lost) = self.lost.remove(&id) else {
                        continue;
                    };
                    self.busy_keys.remove(&lost.key);
                    drop(lost.reservation);
                    self.emit(Event::SubmitNotCreated {
                        job: id.clone(),
                        reason: "no task found for the create whose answer was lost".into(),
                    });
                    self.retry_create(id, &"the create's answer was lost and it made no task", now);
                }
            }
        }
    }

    /// `pages` with each task a candidate read has shown in its read form, seed and all (the
    /// pages as they are while no candidate has been read).
    fn with_candidates_read<'p>(&self, pages: &'p [TaskList]) -> std::borrow::Cow<'p, [TaskList]> {
        if !self.candidates.values().any(Option::is_some) {
            return std::borrow::Cow::Borrowed(pages);
        }
        let read = |t: &Task| match self.candidates.get(&t.id) {
            Some(Some(seen)) => seen.clone(),
            _ => t.clone(),
        };
        pages
            .iter()
            .map(|p| TaskList {
                items: p.items.iter().map(read).collect(),
                total: p.total,
            })
            .collect()
    }

    /// Keeps what the read of a lost create's candidate showed, for the next settling; after
    /// a failed read it is read again then.
    pub(super) fn on_candidate_read(&mut self, task_id: String, result: Result<Task, ApiError>) {
        self.reading.remove(&task_id);
        match result {
            Ok(task) => {
                self.candidates.insert(task_id, Some(task));
            }
            Err(_) => {
                self.candidates.remove(&task_id);
            }
        }
    }
}

/// What settling decides for one lost create.
enum Settle {
    /// Its task, proven by the seed it shows.
    Take(Box<Task>),
    /// Tasks fit and none proves to be the job's: the job fails, for this reason.
    Refuse(String),
    /// Tasks fit whose list items show no seed: they are read on their own first.
    Read(Vec<String>),
    /// No task fits.
    Nothing,
}
