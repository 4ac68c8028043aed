//! Stopping the cluster: SIGTERM / SIGINT, `Master::shutdown`, start-up failure.
//!
//! A stop asked from outside first reports not ready for the drain delay (workers keep
//! serving, so that load balancers stop sending traffic first), then asks every worker
//! to drain and kills those still there after the drain timeout.

use std::time::Duration;

use tokio::time::Instant;

use super::Supervisor;

pub(super) struct Stopping {
    pub(super) code: u8,
    /// What the workers are told: a stop, or (the old master of an upgrade) a restart.
    pub(super) why: crate::StopReason,
    /// When the workers are asked to drain; `None` once they have been.
    pub(super) drain_at: Option<Instant>,
    /// When everything still there is killed, whatever the drain timeout
    /// (`hard_stop_after`); `None` for never, and once it was.
    pub(super) hard_stop: Option<Instant>,
    /// When still-running workers get killed; `None` before the drain and once they
    /// have been.
    pub(super) deadline: Option<Instant>,
}

impl Supervisor {
    pub(super) fn on_stop_signal(&mut self, name: &str) {
        if self.stopping.is_some() {
            tracing::warn!("{name} again: killing every worker now");
            for slot in self.table.iter_mut() {
                slot.kill(format!("{name} came twice: every worker is killed"));
            }
            return;
        }
        tracing::info!("{name}: stopping {} workers gracefully", self.table.len());
        self.begin_stop_after_delay(0);
    }

    /// A stop asked from outside (a signal, `Master::shutdown`): not ready for the drain
    /// delay, then drain.
    pub(super) fn begin_stop_after_delay(&mut self, code: u8) {
        let delay = self
            .drain_delay_override
            .unwrap_or(self.master.drain_delay());
        self.stop(code, delay, crate::StopReason::Stop);
    }

    /// Asks every worker to drain now for `why`; the master exits with `code` once all
    /// are gone.
    pub(super) fn begin_stop(&mut self, code: u8, why: crate::StopReason) {
        self.stop(code, Duration::ZERO, why);
    }

    fn stop(&mut self, code: u8, delay: Duration, why: crate::StopReason) {
        if self.stopping.is_some() {
            return;
        }
        self.master.set_stopping();
        let hard_stop_after = self
            .hard_stop_override
            .or_else(|| self.master.hard_stop_after())
            .or_else(|| {
                delay
                    .checked_add(self.master.drain_timeout())?
                    .checked_add(crate::config::HARD_STOP_MARGIN)
            });
        let hard_stop = hard_stop_after.and_then(|after| Instant::now().checked_add(after));
        self.stopping = Some(Stopping {
            code,
            why,
            hard_stop,
            drain_at: None,
            deadline: None,
        });
        self.pending_respawns.clear();
        self.handovers.clear();
        self.abandon_upgrade();
        if delay.is_zero() {
            self.drain_now();
        } else {
            tracing::info!("not ready from now on; workers keep serving for {delay:?}, then drain");
            if let Some(stop) = &mut self.stopping {
                stop.drain_at = Some(super::timing::deadline_after(delay));
            }
        }
    }

    /// The drain delay is over (or there is none): every worker drains.
    pub(super) fn drain_now(&mut self) {
        let timeout = self.master.drain_timeout();
        let mut why = crate::StopReason::Stop;
        if let Some(stop) = &mut self.stopping {
            stop.drain_at = None;
            stop.deadline = Some(super::timing::deadline_after(timeout));
            why = stop.why;
        }
        for slot in self.table.iter_mut() {
            slot.retire(why);
        }
    }

    /// `hard_stop_after` is over: every worker still there is killed, whatever its
    /// drain timeout, so nothing keeps a stopping master alive.
    pub(super) fn on_hard_stop(&mut self) {
        if let Some(stop) = &mut self.stopping {
            stop.hard_stop = None;
        }
        let left = self.table.len();
        if left == 0 {
            return;
        }
        tracing::warn!("hard stop: killing the {left} workers still there");
        for slot in self.table.iter_mut() {
            slot.kill("the stopping master's hard stop (hard_stop_after) came");
        }
    }

    pub(super) fn on_drain_timeout(&mut self) {
        let timeout = self.master.drain_timeout();
        for slot in self.table.iter_mut() {
            tracing::warn!(
                "{} did not stop within {timeout:?}; killing it",
                slot.worker()
            );
            slot.kill(format!(
                "it did not stop within the drain timeout ({timeout:?})"
            ));
        }
        if let Some(stop) = &mut self.stopping {
            stop.deadline = None;
        }
    }
}
