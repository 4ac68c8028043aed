//! Successor first, then drain: a rolling restart replaces slots one by one this way,
//! and a recycle (a guard, or a worker's own request) replaces one worker this way.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::Supervisor;
use crate::event::WorkerKey;
use crate::event::{ExitReason, LifecycleEvent};
use crate::master::program::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Roll,
    Recycle,
}

struct Handover {
    old: WorkerKey,
    new: WorkerKey,
    deadline: Instant,
    purpose: Purpose,
}

/// The handovers in progress, and the slots a rolling restart has yet to replace.
#[derive(Default)]
pub(super) struct Handovers {
    active: Vec<Handover>,
    /// `Some` while a rolling restart runs.
    roll: Option<VecDeque<crate::WorkerId>>,
    /// How many workers the running rolling restart replaces, and has replaced.
    roll_total: usize,
    roll_done: usize,
}

impl Handovers {
    /// When the earliest successor is late.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.active.iter().map(|h| h.deadline).min()
    }

    /// Whether a rolling restart runs.
    pub(super) fn rolling(&self) -> bool {
        self.roll.is_some()
    }

    pub(super) fn clear(&mut self) {
        self.active.clear();
        self.roll = None;
    }

    fn replacing(&self, old: WorkerKey) -> bool {
        self.active.iter().any(|h| h.old == old)
    }

    fn take_by_successor(&mut self, new: WorkerKey) -> Option<Handover> {
        let at = self.active.iter().position(|h| h.new == new)?;
        Some(self.active.swap_remove(at))
    }
}

impl Supervisor {
    pub(super) fn start_roll(&mut self) {
        if self.handovers.roll.is_some() {
            tracing::warn!("a rolling restart is already running");
            return;
        }
        let slots = self.table.occupied();
        tracing::info!("rolling restart of {} workers", slots.len());
        self.note(
            "roll",
            format!("rolling restart started ({} workers)", slots.len()),
        );
        self.handovers.roll_total = slots.len();
        self.handovers.roll_done = 0;
        self.handovers.roll = Some(slots.into_iter().collect());
        self.next_roll_step();
    }

    /// Starts the successor of the next worker in the roll, or ends the roll.
    fn next_roll_step(&mut self) {
        while let Some(id) = self.handovers.roll.as_mut().and_then(VecDeque::pop_front) {
            let Some(old) = self.table.current(id).map(|slot| slot.key) else {
                continue;
            };
            if self.handovers.replacing(old) {
                continue;
            }
            match self.start_handover(old, Purpose::Roll) {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(
                        "rolling restart stopped: cannot start a successor for worker {id} \
                         ({e}); the old workers keep serving"
                    );
                    self.note(
                        "roll",
                        format!(
                            "rolling restart stopped: cannot start a successor for worker \
                             {id} ({e}); the old workers keep serving"
                        ),
                    );
                    self.handovers.roll = None;
                    return;
                }
            }
        }
        if self.handovers.roll.take().is_some() {
            tracing::info!("rolling restart done");
            self.note(
                "roll",
                format!(
                    "rolling restart finished: {} of {} workers replaced",
                    self.handovers.roll_done, self.handovers.roll_total
                ),
            );
        }
    }

    /// Replaces the worker `key` gracefully.
    pub(super) fn recycle(&mut self, key: WorkerKey, reason: String) {
        if self.stopping.is_some() || self.handovers.replacing(key) {
            return;
        }
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        if slot.is_retiring() {
            return;
        }
        let worker = slot.worker();
        tracing::info!("recycling {worker}: {reason}");
        self.emit(LifecycleEvent::Recycled { worker, reason });
        if let Err(e) = self.start_handover(key, Purpose::Recycle) {
            tracing::error!("recycling {worker} failed: {e}; it keeps serving");
        }
    }

    /// Starts `old`'s successor. A rolling restart runs the program on disk or
    /// nothing (that is what it is for); a recycle may use the running image.
    fn start_handover(&mut self, old: WorkerKey, purpose: Purpose) -> Result<(), String> {
        let source = match purpose {
            Purpose::Roll => Source::FileOnDisk,
            Purpose::Recycle => Source::ClusterBuild,
        };
        let new = self.spawn_successor(old.id, source)?;
        self.handovers.active.push(Handover {
            old,
            new,
            deadline: super::timing::deadline_after(self.successor_ready_timeout),
            purpose,
        });
        Ok(())
    }

    /// `key` became ready: if it is a successor, its predecessor drains now.
    pub(super) fn on_ready(&mut self, key: WorkerKey) {
        let Some(handover) = self.handovers.take_by_successor(key) else {
            return;
        };
        let mut old = None;
        if let Some(slot) = self.table.get_mut(handover.old) {
            tracing::info!("{} replaced by its successor; draining it", slot.worker());
            slot.retire(crate::StopReason::Restart);
            old = Some(slot.worker());
        }
        if handover.purpose == Purpose::Roll {
            self.handovers.roll_done += 1;
            let new_pid = self.table.get_mut(key).map_or(0, |slot| slot.pid);
            let replaced = old.map_or_else(
                || format!("worker {}", handover.old.id),
                |old| format!("worker {} (pid {})", old.id, old.pid),
            );
            self.note(
                "roll",
                format!(
                    "{replaced} replaced by pid {new_pid}, ready; the old one drains ({}/{})",
                    self.handovers.roll_done, self.handovers.roll_total
                ),
            );
            self.next_roll_step();
        }
    }

    /// `key` exited: if it was a successor, its handover failed.
    pub(super) fn on_handover_exit(&mut self, key: WorkerKey, reason: &ExitReason) {
        let Some(handover) = self.handovers.take_by_successor(key) else {
            return;
        };
        let why = format!("its successor exited ({reason}) before it was ready");
        self.abandon(handover, &why);
    }

    pub(super) fn on_handover_timeout(&mut self) {
        let now = Instant::now();
        let (late, on_time) = std::mem::take(&mut self.handovers.active)
            .into_iter()
            .partition(|h| h.deadline <= now);
        self.handovers.active = on_time;
        for handover in late {
            if let Some(slot) = self.table.get_mut(handover.new) {
                slot.kill_retiring("as a successor not ready in time");
            }
            let why = format!(
                "its successor was not ready within {:?}",
                self.successor_ready_timeout
            );
            self.abandon(handover, &why);
        }
    }

    /// The old worker keeps serving; a rolling restart stops here.
    fn abandon(&mut self, handover: Handover, why: &str) {
        let old = self
            .table
            .get_mut(handover.old)
            .map(|slot| slot.worker().to_string())
            .unwrap_or_else(|| format!("worker {}", handover.old.id));
        match handover.purpose {
            Purpose::Roll => {
                tracing::error!(
                    "rolling restart stopped at {old}: {why}; the old workers keep serving"
                );
                self.note(
                    "roll",
                    format!(
                        "rolling restart stopped at {old}: {why}; the old workers keep serving"
                    ),
                );
                self.handovers.roll = None;
            }
            Purpose::Recycle => {
                tracing::error!("recycling {old} failed: {why}; it keeps serving");
            }
        }
    }
}
