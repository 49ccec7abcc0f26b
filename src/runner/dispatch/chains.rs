//! Shot chains: jobs waiting on the jobs they refer to (`job://ID`), released most work behind
//! them first with their upstream URLs, or blocked behind a failure.

use std::collections::HashMap;

use crate::api::{ApiError, ContentItem, CreateRequest, Task, TaskStatus, Timestamp};
use crate::events::{Event, FailureKind};
use crate::state::Phase;

use super::*;

/// The work a job holds up: the estimated tokens along the heaviest chain of jobs that waits
/// on it (itself included), then that chain's length. Jobs with more go first, so the longest
/// generations start early and a batch does not end waiting on one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Work {
    tokens: u64,
    jobs: usize,
}

impl Dispatcher {
    /// The work held up by a job of the plan.
    pub(super) fn work_behind(&self, id: &str) -> Work {
        self.behind
            .get(id)
            .copied()
            .unwrap_or(Work { tokens: 1, jobs: 1 })
    }

    /// Reads the chains of the plan: who refers to whom, and how long a chain waits on each.
    pub(super) fn link(&mut self, plan: &[String]) {
        self.upstream.clear();
        self.downstream.clear();
        for id in plan {
            let Some(job) = self.state.jobs.get(id) else {
                continue;
            };
            if job.upstream.is_empty() {
                continue;
            }
            for u in &job.upstream {
                self.downstream.entry(u.clone()).or_default().push(id.clone());
            }
            self.upstream.insert(id.clone(), job.upstream.clone());
        }
        // The most work behind each job, downstream first (a cycle, which validation rules
        // out, would leave its jobs at their own work).
        let weight = self.weights(plan);
        let mut left: HashMap<&str, usize> = plan
            .iter()
            .map(|id| (id.as_str(), self.downstream.get(id).map_or(0, Vec::len)))
            .collect();
        let mut ready: Vec<&str> = left.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
        let mut behind: HashMap<String, Work> = HashMap::new();
        while let Some(id) = ready.pop() {
            let most = self
                .downstream
                .get(id)
                .and_then(|ds| ds.iter().filter_map(|d| behind.get(d)).max().copied())
                .unwrap_or_default();
            let own = weight.get(id).copied().unwrap_or(1);
            behind.insert(
                id.to_string(),
                Work {
                    tokens: most.tokens.saturating_add(own),
                    jobs: most.jobs + 1,
                },
            );
            for u in self.upstream.get(id).map(Vec::as_slice).unwrap_or_default() {
                if let Some(n) = left.get_mut(u.as_str()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        ready.push(u.as_str());
                    }
                }
            }
        }
        self.behind = behind;
    }

    /// Each plan job's own work: its estimated tokens (a job without an estimate counts as the
    /// plan's mean). Under `--budget-tokens` every job counts the same, so the plan's order,
    /// not the jobs' size, decides which jobs the budget pays for.
    fn weights<'p>(&self, plan: &'p [String]) -> HashMap<&'p str, u64> {
        let estimates: Vec<(&str, Option<u64>)> = plan
            .iter()
            .filter_map(|id| Some((id.as_str(), self.state.jobs.get(id)?.estimated_tokens)))
            .collect();
        if self.settings.budget_tokens.is_some() {
            return estimates.into_iter().map(|(id, _)| (id, 1)).collect();
        }
        let known: Vec<u64> = estimates.iter().filter_map(|(_, t)| *t).collect();
        let mean = if known.is_empty() {
            1
        } else {
            known.iter().sum::<u64>() / known.len() as u64
        };
        estimates
            .into_iter()
            .map(|(id, t)| (id, t.unwrap_or(mean).max(1)))
            .collect()
    }

    /// Puts a job that is ready into the create queue, after every job with as much work
    /// behind it.
    pub(super) fn enqueue(&mut self, id: String) {
        let b = self.work_behind(&id);
        let at = self
            .pending
            .iter()
            .position(|p| self.work_behind(p) < b)
            .unwrap_or(self.pending.len());
        self.pending.insert(at, id);
    }

    /// Moves a waiting job on when it can: to the create queue when every job it refers to is
    /// done and their URLs are at hand (else their tasks are read), blocked when one of them
    /// failed or cannot give what it needs.
    pub(super) fn try_release(&mut self, id: &str) {
        if !self.waiting.contains(id) {
            return;
        }
        let ups = self.upstream.get(id).cloned().unwrap_or_default();
        for u in &ups {
            match self.state.jobs.get(u) {
                Some(j) if j.phase == Phase::Done => {}
                Some(j) if j.phase == Phase::Failed => {
                    let why = if j.is_blocked() {
                        format!("waits for job `{u}`, which is blocked")
                    } else {
                        format!("waits for job `{u}`, which failed")
                    };
                    self.block(id, why);
                    return;
                }
                _ => return,
            }
        }
        match self.gap(id) {
            None => {
                self.waiting.remove(id);
                self.enqueue(id.to_string());
            }
            Some(Gap::Read(jobs)) => {
                for u in jobs {
                    if !self.upstream_reads.contains(&u) && !self.upstream_reading.contains(&u) {
                        self.upstream_reads.push_back(u);
                    }
                }
            }
            Some(Gap::Missing(why)) => self.block(id, why),
        }
    }

    /// What keeps a job whose upstream jobs are done from being created now, if anything.
    pub(super) fn gap(&self, id: &str) -> Option<Gap> {
        let job = self.state.jobs.get(id)?;
        let offset = self.client.server_offset();
        let mut reads: Vec<String> = Vec::new();
        for item in &job.request.content {
            let Some(u) = item.job_ref().map(str::trim) else {
                continue;
            };
            let Some(up) = self.state.jobs.get(u) else {
                return Some(Gap::Missing(format!(
                    "refers to job `{u}`, which this run does not know"
                )));
            };
            if matches!(item, ContentItem::DraftTask { .. }) {
                if up.task_id().is_none() {
                    return Some(Gap::Missing(format!("job `{u}` has no task to promote")));
                }
                continue;
            }
            let want_frame = matches!(item, ContentItem::ImageUrl { .. });
            let usable = match self.fresh.get(u) {
                Some((task, by_read)) if url_fresh(task, offset) => {
                    let url = if want_frame {
                        task.last_frame_url.as_deref()
                    } else {
                        task.video_url.as_deref()
                    };
                    if url.is_some_and(|x| !x.is_empty()) {
                        true
                    } else if *by_read {
                        let what = if want_frame { "last frame" } else { "video URL" };
                        return Some(Gap::Missing(format!(
                            "job `{u}` gave no {what} (its task finished without one)"
                        )));
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !usable && !reads.iter().any(|r| r == u) {
                reads.push(u.to_string());
            }
        }
        (!reads.is_empty()).then_some(Gap::Read(reads))
    }

    /// The content of a request with each `job://` reference replaced by the URL or task id it
    /// stands for; `None` when one is not at hand.
    pub(super) fn resolve(&self, request: &CreateRequest) -> Option<Vec<ContentItem>> {
        let mut content = request.content.clone();
        for item in &mut content {
            let Some(u) = item.job_ref().map(|u| u.trim().to_string()) else {
                continue;
            };
            match item {
                ContentItem::DraftTask { draft_task, .. } => {
                    draft_task.id = self.state.jobs.get(&u)?.task_id()?.to_string();
                }
                ContentItem::ImageUrl { image_url, .. } => {
                    let (task, _) = self.fresh.get(&u)?;
                    image_url.url = task.last_frame_url.clone().filter(|x| !x.is_empty())?;
                }
                ContentItem::VideoUrl { video_url, .. } => {
                    let (task, _) = self.fresh.get(&u)?;
                    video_url.url = task.video_url.clone().filter(|x| !x.is_empty())?;
                }
                ContentItem::AudioUrl { .. } => return None,
            }
        }
        Some(content)
    }

    /// A job is done: the jobs waiting on it may go.
    pub(super) fn release_behind(&mut self, job: &str) {
        let downs = self.downstream.get(job).cloned().unwrap_or_default();
        for d in downs {
            self.try_release(&d);
        }
    }

    /// Blocks one job that was never created, and every job waiting behind it.
    pub(super) fn block(&mut self, id: &str, why: String) {
        let pending = self.state.jobs.get(id).is_some_and(|j| j.phase == Phase::Pending);
        self.waiting.remove(id);
        if !pending {
            return;
        }
        self.pending.retain(|p| p != id);
        self.delayed.retain(|(_, p)| p != id);
        tracing::info!(job = %id, reason = %why, "blocked");
        self.emit(Event::JobFailed {
            job: id.to_string(),
            task_id: None,
            failure: plain(FailureKind::Blocked, why),
            at: Timestamp::now(),
        });
        self.block_behind(id, &format!("waits for job `{id}`, which is blocked"));
    }

    /// Blocks every job not yet created that waits on `job`, with `why` naming it.
    pub(super) fn block_behind(&mut self, job: &str, why: &str) {
        let downs = self.downstream.get(job).cloned().unwrap_or_default();
        for d in downs {
            self.block(&d, why.to_string());
        }
    }

    pub(super) fn on_upstream_read(&mut self, job: String, result: Result<Task, ApiError>) {
        self.upstream_reading.remove(&job);
        match result {
            Ok(task) if task.status == TaskStatus::Completed => {
                self.upstream_errors.remove(&job);
                self.fresh.insert(job.clone(), (task, true));
                self.release_behind(&job);
            }
            Ok(task) => {
                let why = format!(
                    "waits for job `{job}`, whose task is now {} on the server (tasks are kept \
                     about 7 days): generate `{job}` again (a new id, or --fresh)",
                    task.status.as_str()
                );
                self.block_waiting_behind(&job, &why);
            }
            Err(ApiError::RateLimited { .. }) => self.upstream_reads.push_front(job),
            Err(e @ ApiError::Transient { .. }) => {
                let errors = self.upstream_errors.entry(job.clone()).or_default();
                *errors += 1;
                let attempt = *errors;
                if attempt > self.settings.max_retries {
                    let why = format!("waits for job `{job}`, whose task could not be read: {e}");
                    self.block_waiting_behind(&job, &why);
                } else {
                    let wait = self.settings.retry.delay(attempt);
                    self.note_retry(&job, "get", attempt, e.to_string(), wait);
                    self.upstream_reads.push_back(job);
                }
            }
            Err(e) if e.is_fatal() => self.fatal(&e),
            Err(e) => {
                let why = format!("waits for job `{job}`, whose task could not be read: {e}");
                self.block_waiting_behind(&job, &why);
            }
        }
    }

    /// Blocks the jobs waiting on `job` (a done job whose task can no longer serve them).
    pub(super) fn block_waiting_behind(&mut self, job: &str, why: &str) {
        let downs: Vec<String> = self
            .downstream
            .get(job)
            .map(|ds| ds.iter().filter(|d| self.waiting.contains(*d)).cloned().collect())
            .unwrap_or_default();
        for d in downs {
            self.block(&d, why.to_string());
        }
    }

    /// Jobs left waiting at the end of a run that was not stopped: they wait for jobs this run
    /// could not finish, and stay pending for the next run.
    pub fn note_left_waiting(&mut self) {
        if self.waiting.is_empty() || self.stop.is_some() || self.interrupted {
            return;
        }
        let mut left: Vec<String> = self.waiting.iter().cloned().collect();
        left.sort();
        let message = format!(
            "{} job(s) still wait for jobs this run did not finish ({}); run again to continue",
            left.len(),
            left.join(", ")
        );
        self.emit(Event::Notice { message });
    }
}
