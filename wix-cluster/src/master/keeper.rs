//! Watch mode's keeper: the first master, once an upgrade handed the cluster over,
//! stays instead of exiting, so that the process a terminal (or `cargo run`) waits for
//! lives as long as the cluster. It is the child subreaper of everything it started
//! (`PR_SET_CHILD_SUBREAPER`): each later master becomes its child when the master
//! before it exits. It forwards SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN and SIGTTOU to
//! the current master, ignores SIGINT and SIGQUIT (a terminal sends those to the whole
//! process group, so the current master has them already), and exits with the last
//! master's exit status once none is left.

use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::upgrade::Report;
use crate::event::ExitReason;

/// How often the keeper reaps the masters that became its children.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// Makes this process the reaper of its orphaned descendants (the first master in
/// watch mode, at start).
pub(crate) fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!("watch mode: cannot become the subreaper of later masters: {e}");
    }
}

/// Keeps this process until no master is left; `successor` is the master this one
/// handed over to, whose exit arrives on `reports` (tokio reaps it).
pub(crate) async fn keep(successor: u32, mut reports: mpsc::UnboundedReceiver<Report>) -> ExitCode {
    tracing::info!(
        "watch mode: the cluster runs in the new master (pid {successor}); this process \
         stays until it ends"
    );
    let forwarded = [
        (SignalKind::terminate(), Signal::SIGTERM),
        (SignalKind::hangup(), Signal::SIGHUP),
        (SignalKind::user_defined1(), Signal::SIGUSR1),
        (SignalKind::user_defined2(), Signal::SIGUSR2),
        (SignalKind::from_raw(nix::libc::SIGTTIN), Signal::SIGTTIN),
        (SignalKind::from_raw(nix::libc::SIGTTOU), Signal::SIGTTOU),
    ];
    for (kind, forward) in forwarded {
        match signal(kind) {
            Ok(mut deliveries) => {
                tokio::spawn(async move {
                    while deliveries.recv().await.is_some() {
                        for child in crate::procfs::children() {
                            crate::master::spawn::signal(child, forward);
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("watch mode: cannot forward {}: {e}", forward.as_str()),
        }
    }
    let _ = crate::signals::ignore(&[SignalKind::interrupt(), SignalKind::quit()]);

    let mut last = ExitReason::Code(0);
    while let Some(report) = reports.recv().await {
        if let Report::Exited { pid, reason } = report {
            if pid == successor {
                last = reason;
                break;
            }
        }
    }
    // Later masters, reparented here: reap them until none is left.
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => tokio::time::sleep(REAP_EVERY).await,
            Ok(WaitStatus::Exited(_, code)) => last = ExitReason::Code(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => last = ExitReason::Signal(signal as i32),
            Ok(_) => {}
            Err(_) => break, // ECHILD: nothing left
        }
    }
    tracing::info!("watch mode: the last master ended ({last}); exiting");
    match last {
        ExitReason::Code(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        ExitReason::Signal(_) => ExitCode::FAILURE,
    }
}
