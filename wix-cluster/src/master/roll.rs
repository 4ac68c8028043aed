//! Rolling restart bookkeeping: which slots are left, and the one successor being
//! waited for.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::spawn::Key;
use crate::WorkerId;

/// How long a successor has to become ready before the roll stops.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Roll {
    queue: VecDeque<WorkerId>,
    step: Option<Step>,
}

struct Step {
    old: Key,
    new: Key,
    deadline: Instant,
}

impl Roll {
    pub(crate) fn new(slots: BTreeSet<WorkerId>) -> Roll {
        Roll {
            queue: slots.into_iter().collect(),
            step: None,
        }
    }

    /// The next slot to replace.
    pub(crate) fn next_slot(&mut self) -> Option<WorkerId> {
        self.step = None;
        self.queue.pop_front()
    }

    pub(crate) fn await_successor(&mut self, old: Key, new: Key) {
        self.step = Some(Step {
            old,
            new,
            deadline: Instant::now() + READY_TIMEOUT,
        });
    }

    /// When the awaited successor is late.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.step.as_ref().map(|step| step.deadline)
    }

    pub(crate) fn successor(&self) -> Option<Key> {
        self.step.as_ref().map(|step| step.new)
    }

    /// `key` became ready; if it is the awaited successor, the worker it replaces.
    pub(crate) fn successor_ready(&mut self, key: Key) -> Option<Key> {
        match &self.step {
            Some(step) if step.new == key => {
                let old = step.old;
                self.step = None;
                Some(old)
            }
            _ => None,
        }
    }

    /// `key` exited: whether it was the awaited successor (the roll must stop).
    pub(crate) fn successor_lost(&self, key: Key) -> bool {
        self.successor() == Some(key)
    }
}
