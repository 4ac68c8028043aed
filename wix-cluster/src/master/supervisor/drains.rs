//! Old workers that drain, kept in bounds: at most `max_draining` per slot at once (the
//! oldest beyond are told their drain is over), and none past the drain timeout.
//!
//! A worker that ignores its drain (an app deaf to `Worker::shutdown`, a WebSocket that
//! never closes) is killed at the drain timeout; one told its drain is over has a second
//! to close what is left and exit before it is killed. A stop has its own deadline
//! (`stop.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Supervisor;
use crate::WorkerId;
use crate::event::WorkerKey;

/// How long a worker told its drain is over may take to exit.
const HURRY_GRACE: Duration = Duration::from_secs(1);

impl Supervisor {
    fn max_draining(&self) -> usize {
        self.max_draining_override
            .unwrap_or_else(|| self.master.max_draining())
    }

    /// After every reaction: more than `max_draining` old workers of a slot draining
    /// (a roll after a roll, with long-lived connections), the oldest are told their
    /// drain is over, logged and counted.
    pub(super) fn cap_drains(&mut self) {
        let max = self.max_draining();
        let mut by_slot: BTreeMap<WorkerId, Vec<WorkerKey>> = BTreeMap::new();
        for slot in self.table.iter() {
            if slot.is_retiring() && slot.draining_since.is_some() && slot.hurried_at.is_none() {
                by_slot.entry(slot.key.id).or_default().push(slot.key);
            }
        }
        for (id, mut draining) in by_slot {
            if draining.len() <= max {
                continue;
            }
            draining.sort_by_key(|key| key.generation);
            let over = draining.len() - max;
            for key in draining.into_iter().take(over) {
                let Some(slot) = self.table.get_mut(key) else {
                    continue;
                };
                let worker = slot.worker();
                slot.hurry();
                tracing::warn!(
                    "{worker}: more than {max} old workers of slot {id} draining \
                     (max_draining); its drain is cut short"
                );
                self.master.count_drain_cut();
                self.master.event_log().record(
                    "drain",
                    Some(worker),
                    format!(
                        "drain cut short: more than {max} old workers of slot {id} draining \
                         (max_draining)"
                    ),
                );
            }
        }
    }

    /// Every second: kills the old workers still there at the drain timeout, and those
    /// told their drain is over still there after [`HURRY_GRACE`].
    pub(super) fn check_drains(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let timeout = self.master.drain_timeout();
        for slot in self.table.iter_mut() {
            if slot.sent_kill.is_some() || !slot.is_retiring() {
                continue;
            }
            if let Some(hurried) = slot.hurried_at {
                if hurried.elapsed() >= HURRY_GRACE {
                    tracing::warn!(
                        "{} still there {HURRY_GRACE:?} after its drain was cut short; \
                         killing it",
                        slot.worker()
                    );
                    slot.kill(format!(
                        "it was still there {HURRY_GRACE:?} after its drain was cut short"
                    ));
                }
            } else if slot
                .draining_since
                .is_some_and(|since| since.elapsed() >= timeout)
            {
                tracing::warn!(
                    "{} did not stop within {timeout:?}; killing it",
                    slot.worker()
                );
                slot.kill(format!(
                    "it did not stop within the drain timeout ({timeout:?})"
                ));
            }
        }
    }
}
