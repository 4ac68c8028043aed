//! Upgrading the master (SIGUSR2, `Master::upgrade`), as the loop sees it: the old
//! master starts the new one and drains once it is ready, or keeps serving when it is
//! not; the new master answers once its own workers are ready. The mechanism (the
//! process and the handover channel) is `master::upgrade`.

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::Supervisor;
use crate::master::spawn;
use crate::master::upgrade::{self, Report, Successor};

/// A new master started and not yet ready.
pub(super) struct Upgrading {
    successor: Successor,
    deadline: Instant,
    /// Why its channel closed, when it did before `Ready`.
    lost: Option<String>,
}

impl Upgrading {
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Supervisor {
    pub(super) fn start_upgrade(&mut self) {
        if let Some(upgrading) = &self.upgrading {
            tracing::warn!(
                "already upgrading: the new master (pid {}) is starting",
                upgrading.successor.pid
            );
            return;
        }
        if self.predecessor.is_some() {
            tracing::warn!(
                "cannot upgrade yet: this master is still taking over from the old one \
                 (its workers are not all ready)"
            );
            return;
        }
        let program = self.spawner.program();
        let management = self.management.clone();
        match upgrade::start(
            program,
            &self.listeners,
            management,
            self.master.run_time_changes(),
            self.upgrade_reports.clone(),
            self.keeper_line.as_ref(),
        ) {
            Ok(successor) => {
                tracing::info!(
                    "upgrading: started a new master (pid {}) from {}; this master serves \
                     until its workers are ready",
                    successor.pid,
                    program.path().display()
                );
                self.note(
                    "upgrade",
                    format!(
                        "upgrade started: new master pid {} from {}",
                        successor.pid,
                        program.path().display()
                    ),
                );
                self.upgrading = Some(Upgrading {
                    successor,
                    deadline: super::timing::deadline_after(self.upgrade_ready_timeout),
                    lost: None,
                });
            }
            Err(e) => {
                tracing::error!(
                    "upgrade failed: cannot start a new master: {e}; this master keeps serving"
                );
                self.note(
                    "upgrade",
                    format!(
                        "upgrade failed: cannot start a new master: {e}; this master keeps \
                         serving"
                    ),
                );
            }
        }
    }

    pub(super) fn on_upgrade_report(&mut self, report: Report) {
        let Some(upgrading) = &mut self.upgrading else {
            tracing::debug!("after the upgrade: {report:?}");
            return;
        };
        let successor = upgrading.successor.pid;
        match report {
            Report::Ready { pid, workers } if pid == successor => {
                tracing::info!(
                    "upgraded: the new master (pid {pid}) has {workers} workers ready; \
                     this master drains its workers and exits"
                );
                self.note(
                    "upgrade",
                    format!(
                        "new master ready: pid {pid} has {workers} workers ready; this master \
                         drains its workers and exits"
                    ),
                );
                self.upgrading = None;
                // Before the stop: the health pages answer for the new master from now.
                self.master.set_handed_over_to(pid);
                self.notifier.handed_over(pid);
                // The new master's management app answers on the same socket; this
                // one answers only what it accepted already (as `handed_over`).
                self.management_app.stop_accepting();
                // Its workers' clients reconnect to the new master's workers.
                self.begin_stop(0, crate::StopReason::Restart);
            }
            Report::Lost { pid, why } if pid == successor => {
                tracing::debug!("the new master (pid {pid}): {why}");
                upgrading.lost = Some(why);
            }
            Report::Exited { pid, reason } if pid == successor => {
                let lost = upgrading
                    .lost
                    .take()
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default();
                let why = format!(
                    "upgrade failed: the new master (pid {pid}) ended with {reason} before \
                     its workers were ready{lost}; this master keeps serving"
                );
                tracing::error!("{why}");
                self.note("upgrade", why);
                self.upgrading = None;
            }
            other => tracing::debug!("from an earlier upgrade: {other:?}"),
        }
    }

    /// The new master took too long: ask it to stop (it drains its workers).
    pub(super) fn on_upgrade_timeout(&mut self) {
        if let Some(upgrading) = self.upgrading.take() {
            let pid = upgrading.successor.pid;
            let why = format!(
                "upgrade failed: the new master (pid {pid}) did not get its workers ready \
                 within {:?}; stopping it, this master keeps serving",
                self.upgrade_ready_timeout
            );
            tracing::error!("{why}");
            self.note("upgrade", why);
            spawn::signal(pid, Signal::SIGTERM);
        }
    }

    /// Stops a new master that has not taken over (the cluster is stopping).
    pub(super) fn abandon_upgrade(&mut self) {
        if let Some(upgrading) = self.upgrading.take() {
            let pid = upgrading.successor.pid;
            tracing::warn!("the cluster is stopping: stopping the new master (pid {pid}) too");
            spawn::signal(pid, Signal::SIGTERM);
        }
    }

    /// On the new master: once every desired worker is ready, tells the old master,
    /// which then drains its own.
    pub(super) fn answer_predecessor(&mut self) {
        if self.stopping.is_some() {
            self.predecessor = None;
            return;
        }
        let ready = self.ready_workers();
        if ready == 0 || ready < self.master.desired_workers() {
            return;
        }
        if let Some(answer) = self.predecessor.take() {
            tracing::info!("{ready} workers ready; telling the old master to step down");
            self.note(
                "upgrade",
                format!("took over from the old master: {ready} workers ready"),
            );
            upgrade::answer_ready(&answer, ready);
            self.management_app.start();
        }
    }
}
