//! What plugins (through [`Master`](crate::Master)) and signals ask of the loop.

use std::time::Duration;

use super::{Supervisor, Timer};
use crate::event::LifecycleEvent;
use crate::event::WorkerKey;
use crate::master::Command;
use crate::master::program::Source;
use crate::{WorkerId, WorkerRef};

/// Between SIGABRT and SIGKILL for a stalled worker.
const ABORT_GRACE: Duration = Duration::from_secs(2);

fn key_of(worker: WorkerRef) -> WorkerKey {
    WorkerKey {
        id: worker.id,
        generation: worker.generation,
    }
}

impl Supervisor {
    pub(super) fn on_command(&mut self, command: Command) {
        if let Command::Snapshot(reply) = command {
            let _ = reply.send(self.table.iter().map(|slot| slot.info()).collect());
            return;
        }
        if self.stopping.is_some() {
            tracing::debug!("ignoring {command:?}: the cluster is stopping");
            return;
        }
        match command {
            Command::Respawn { id, after } => self.schedule_respawn(id, after),
            Command::Replace { worker, after } => {
                let Some(slot) = self.table.get_mut(key_of(worker)) else {
                    return;
                };
                if slot.is_retiring() {
                    return;
                }
                slot.retire(crate::StopReason::Restart);
                self.schedule_respawn(worker.id, after);
            }
            Command::Recycle { worker, reason } => self.recycle(key_of(worker), reason),
            Command::Abort { worker, reason } => self.abort(key_of(worker), reason),
            Command::RollingRestart => self.start_roll(),
            Command::Scale { count } => self.scale(count),
            Command::Shutdown { code } => self.begin_stop_after_delay(code),
            Command::Upgrade => self.start_upgrade(),
            Command::Snapshot(_) => {}
        }
    }

    fn schedule_respawn(&mut self, id: WorkerId, after: Duration) {
        if self.pending_respawns.contains(&id) {
            return;
        }
        if after.is_zero() {
            self.on_respawn_due(id);
            return;
        }
        self.pending_respawns.push(id);
        self.schedule(after, Timer::Respawn(id));
    }

    pub(super) fn on_respawn_due(&mut self, id: WorkerId) {
        self.pending_respawns.retain(|pending| *pending != id);
        if self.stopping.is_none() && self.table.current(id).is_none() && self.is_desired(id) {
            // A failure is retried by `Respawn` (logged and counted either way).
            let _ = self.spawn(id, Source::ClusterBuild);
        }
    }

    /// Slot `id` is within the desired worker count.
    fn is_desired(&self, id: WorkerId) -> bool {
        (id.0 as usize) <= self.master.desired_workers()
    }

    fn scale(&mut self, count: usize) {
        let count = count.clamp(1, crate::limits::MAX_WORKERS);
        self.master.set_desired_workers(count);
        let occupied = self.table.occupied();
        for id in (1..=count).map(|id| WorkerId(id as u32)) {
            if !occupied.contains(&id) && !self.pending_respawns.contains(&id) {
                let _ = self.spawn(id, Source::ClusterBuild);
            }
        }
        for slot in self.table.iter_mut() {
            if !slot.is_retiring() && (slot.key.id.0 as usize) > count {
                tracing::info!("scaling down: draining {}", slot.worker());
                slot.retire(crate::StopReason::Restart);
            }
        }
        self.pending_respawns.retain(|id| (id.0 as usize) <= count);
    }

    /// A stalled worker: SIGABRT now (a core or backtrace where enabled), SIGKILL after
    /// a grace. Its exit is unexpected, so `Respawn` replaces it.
    pub(super) fn abort(&mut self, key: WorkerKey, reason: String) {
        let Some(slot) = self.table.get_mut(key) else {
            return;
        };
        let worker = slot.worker();
        tracing::error!("{worker} stalled: {reason}; sending SIGABRT");
        slot.abort();
        self.schedule(ABORT_GRACE, Timer::Kill(key));
        self.emit(LifecycleEvent::Stalled { worker, reason });
    }
}
