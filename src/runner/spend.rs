//! The token budget of `--budget-tokens`: the main structure here is [`Spend`].
//!
//! A create reserves its job's estimated tokens before it is sent; the [`Reservation`] is a
//! value that gives them back when dropped, so a create that made nothing (refused, lost and
//! not found) returns its share, and a create that made a task keeps it with
//! [`Reservation::keep`]. With a budget of k.5 jobs, exactly k jobs are bought, however many
//! creates are sent at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tokens committed to tasks (made or being made) against an optional limit.
#[derive(Debug, Clone)]
pub(super) struct Spend {
    limit: Option<u64>,
    committed: Arc<AtomicU64>,
}

/// Tokens held for one create; given back when dropped unless kept.
#[derive(Debug)]
pub(super) struct Reservation {
    committed: Arc<AtomicU64>,
    tokens: u64,
}

impl Spend {
    /// A budget of `limit` tokens (none: no limit) of which `committed` are spent already.
    pub fn new(limit: Option<u64>, committed: u64) -> Spend {
        Spend {
            limit,
            committed: Arc::new(AtomicU64::new(committed)),
        }
    }

    /// Reserves `tokens` for one create, unless that would pass the limit.
    pub fn reserve(&self, tokens: u64) -> Option<Reservation> {
        let mut now = self.committed.load(Ordering::SeqCst);
        loop {
            let after = now.saturating_add(tokens);
            if self.limit.is_some_and(|limit| after > limit) {
                return None;
            }
            match self
                .committed
                .compare_exchange(now, after, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Some(Reservation {
                        committed: self.committed.clone(),
                        tokens,
                    });
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Adds tokens of a task found without a reservation (a lost create settled by listing).
    pub fn add(&self, tokens: u64) {
        self.committed.fetch_add(tokens, Ordering::SeqCst);
    }

    /// The limit, when one is set.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
}

impl Reservation {
    /// The create made a task: its tokens stay spent.
    pub fn keep(mut self) {
        self.tokens = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.tokens > 0 {
            self.committed.fetch_sub(self.tokens, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_and_come_back_when_dropped() {
        let spend = Spend::new(Some(550), 0);
        let held: Vec<Reservation> = (0..10).filter_map(|_| spend.reserve(100)).collect();
        assert_eq!(held.len(), 5, "5.5 jobs of budget buy 5 creates at once");
        assert!(spend.reserve(100).is_none());
        let mut held = held.into_iter();
        drop(held.next());
        assert!(spend.reserve(100).is_some_and(|r| {
            r.keep();
            true
        }));
        assert!(spend.reserve(100).is_none(), "a kept reservation stays spent");
        for r in held {
            r.keep();
        }
        assert!(spend.reserve(51).is_none());
        assert!(spend.reserve(50).is_some());
        assert!(Spend::new(None, u64::MAX).reserve(u64::MAX).is_some());
    }
}
