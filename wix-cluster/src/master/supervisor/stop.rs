//! Stopping the cluster: SIGTERM / SIGINT, `Master::shutdown`, start-up failure.

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::Supervisor;
use crate::master::spawn;

pub(super) struct Stopping {
    pub(super) code: u8,
    /// When still-running workers get killed; `None` once they have been.
    pub(super) deadline: Option<Instant>,
}

impl Supervisor {
    pub(super) fn on_stop_signal(&mut self, name: &str) {
        if self.stopping.is_some() {
            tracing::warn!("{name} again: killing every worker now");
            for slot in self.table.iter_mut() {
                spawn::signal(slot.pid, Signal::SIGKILL);
            }
            return;
        }
        tracing::info!("{name}: stopping {} workers gracefully", self.table.len());
        self.begin_stop(0);
    }

    /// Asks every worker to drain; the master exits with `code` once all are gone.
    pub(super) fn begin_stop(&mut self, code: u8) {
        if self.stopping.is_some() {
            return;
        }
        let timeout = self.master.drain_timeout();
        self.stopping = Some(Stopping {
            code,
            deadline: Some(Instant::now() + timeout),
        });
        self.pending_respawns.clear();
        self.handovers.clear();
        self.abandon_upgrade();
        for slot in self.table.iter_mut() {
            slot.retire();
        }
    }

    pub(super) fn on_drain_timeout(&mut self) {
        let timeout = self.master.drain_timeout();
        for slot in self.table.iter_mut() {
            tracing::warn!(
                "{} did not stop within {timeout:?}; killing it",
                slot.worker()
            );
            spawn::signal(slot.pid, Signal::SIGKILL);
        }
        if let Some(stop) = &mut self.stopping {
            stop.deadline = None;
        }
    }
}
