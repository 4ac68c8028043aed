//! Two timings for operators, logged at `info`: how long start-up took until every
//! worker was ready (`all N workers ready in X ms`, counted from the master's start),
//! and how long a slot stayed without a ready worker after its worker died unexpectedly
//! (`worker N replaced in X ms`, from the death being noticed to the replacement's
//! ready, which it sends once it holds its listener).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::Supervisor;
use crate::WorkerId;
use crate::event::WorkerKey;

#[derive(Default)]
pub(super) struct Timing {
    /// `all N workers ready` was logged (once per master).
    all_ready: bool,
    /// Slots whose worker died unexpectedly, and when that was noticed.
    vacated: HashMap<WorkerId, Instant>,
}

impl Supervisor {
    /// `key` just became ready.
    pub(super) fn time_ready(&mut self, key: WorkerKey) {
        if let Some(died) = self.timing.vacated.remove(&key.id) {
            tracing::info!(
                "worker {} replaced in {:.1} ms (unexpected death -> successor ready)",
                key.id,
                millis(died.elapsed())
            );
        }
        if self.timing.all_ready {
            return;
        }
        let desired = self.master.desired_workers();
        let ready = self
            .table
            .iter()
            .filter(|slot| slot.life().was_ready())
            .count();
        if ready >= desired {
            self.timing.all_ready = true;
            let since_start = SystemTime::now()
                .duration_since(self.master.started_at())
                .unwrap_or_default();
            tracing::info!(
                "all {desired} workers ready in {:.1} ms",
                millis(since_start)
            );
        }
    }

    /// The worker in slot `id` died without being asked to.
    pub(super) fn time_death(&mut self, id: WorkerId) {
        let covered = self
            .table
            .current(id)
            .is_some_and(|slot| slot.life().was_ready());
        if self.stopping.is_none() && !covered {
            self.timing.vacated.entry(id).or_insert_with(Instant::now);
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `after` from now, for any `after` a setting may hold: a duration too long to add to
/// the clock (`Duration::MAX` for "never") is a deadline about a century away.
pub(super) fn deadline_after(after: std::time::Duration) -> tokio::time::Instant {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    tokio::time::Instant::now() + after.min(CENTURY)
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn any_duration_makes_a_deadline_without_overflow() {
        let now = tokio::time::Instant::now();
        assert!(deadline_after(std::time::Duration::MAX) > now);
        let soon = deadline_after(std::time::Duration::from_millis(5));
        assert!(soon >= now + std::time::Duration::from_millis(5));
    }
}
